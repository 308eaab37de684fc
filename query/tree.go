package query

import "slices"

// Walk calls fn for q and, while fn returns true, for each of its descendants, depth first,
// parents before children. A nil q is not visited.
func Walk(q Query, fn func(Query) bool) {
	if q == nil || !fn(q) {
		return
	}
	if c, ok := q.(*Complex); ok {
		for _, sub := range c.Queries {
			Walk(sub, fn)
		}
	}
}

// Equal reports whether two trees are the same: same leaves (key, value, operator) and the
// same complex operators over equal children in the same order.
func Equal(a, b Query) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case *Simple:
		b, ok := b.(*Simple)
		return ok && *a == *b
	case *Complex:
		b, ok := b.(*Complex)
		if !ok || a.Operator != b.Operator || len(a.Queries) != len(b.Queries) {
			return false
		}
		for i := range a.Queries {
			if !Equal(a.Queries[i], b.Queries[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// Clone returns a deep copy of q.
func Clone(q Query) Query {
	switch q := q.(type) {
	case *Simple:
		c := *q
		return &c
	case *Complex:
		c := &Complex{Operator: q.Operator, Queries: make([]Query, len(q.Queries))}
		for i, sub := range q.Queries {
			c.Queries[i] = Clone(sub)
		}
		return c
	}
	return nil
}

// And returns the conjunction of qs as jIO's parser would build it: nil queries (match
// everything) are dropped, AND children are flattened into the result, and one query is
// returned as itself; none gives nil. The queries are shared, not copied.
func And(qs ...Query) Query {
	var list []Query
	for _, q := range qs {
		switch c := q.(type) {
		case nil:
			continue
		case *Complex:
			if c.Operator == "AND" {
				list = append(list, c.Queries...)
				continue
			}
		}
		list = append(list, q)
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return &Complex{Operator: "AND", Queries: list}
}

// Keys returns the keys q's leaves compare, sorted and without duplicates; key-less
// (full-text) leaves contribute nothing (see HasFullText).
func Keys(q Query) []string {
	var keys []string
	Walk(q, func(q Query) bool {
		if s, ok := q.(*Simple); ok && s.Key != "" {
			keys = append(keys, s.Key)
		}
		return true
	})
	slices.Sort(keys)
	return slices.Compact(keys)
}

// HasFullText reports whether q has a key-less leaf, which searches every property.
func HasFullText(q Query) bool {
	found := false
	Walk(q, func(q Query) bool {
		if s, ok := q.(*Simple); ok && s.Key == "" {
			found = true
		}
		return !found
	})
	return found
}
