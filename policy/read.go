package policy

import (
	"slices"
	"sort"
	"strings"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// ScopeQuery authorizes an allDocs of role and rewrites its query and options (docs/DESIGN.md §4):
//
//   - the role's read.scope, and the portal types its rules let it list, are ANDed onto q;
//   - a filter or a sort on a field outside read.fields is refused (ReasonFieldNotReadable);
//   - a key-less (full-text) term, which jIO matches against every property, becomes an OR
//     of the same LIKE term over each readable field (left key-less when fields is "*"); a
//     field in opts.DateKeys, which compares as a date, is searched as a date (see fullText);
//   - the count is capped at max_limit (a count of 0, "no cap", becomes max_limit).
//
// Conditions on doc or old never apply to allDocs; conditions on peer and request do. q may be
// nil (every document); so may the result (no restriction at all). The result is a new tree:
// q is not modified and the caller may keep or change what it gets. Rows still carry
// unreadable fields: pass each document through FilterDoc.
//
// Errors: gateway.EFORBIDDEN with a Reason* word; gateway.EINVALID for a malformed tree.
func (e *Engine) ScopeQuery(peer, role string, q query.Query, opts query.Options) (query.Query, query.Options, error) {
	r := e.roles[role]
	if r == nil {
		return nil, opts, forbidden(ReasonUnknownRole, "role %q is not in the policy", role)
	}
	types, err := e.listTypes(r, peer)
	if err != nil {
		return nil, opts, err
	}
	for _, k := range opts.SortOn {
		if !r.readable(k.Key) {
			return nil, opts, forbidden(ReasonFieldNotReadable, "role %s may not sort on %s", r.name, k.Key)
		}
	}
	parts := make([]query.Query, 0, 3)
	if r.scope != nil {
		parts = append(parts, clone(r.scope))
	}
	if types != nil {
		parts = append(parts, types)
	}
	if q != nil {
		// A type the role may not list is one without documents, to the role: an "=" term
		// naming it matches nothing, and becomes the empty OR, so that the query (its SQL,
		// its plan, its time) is the same whether such documents exist or not.
		hidden := func(pt string) bool {
			return types != nil && !e.matchDoc(types, map[string]any{"portal_type": pt})
		}
		uq, err := r.rewrite(q, opts.DateKeys, hidden)
		if err != nil {
			return nil, opts, err
		}
		parts = append(parts, uq)
	}
	if max := r.limits.MaxLimit; max > 0 && (opts.Count == 0 || opts.Count > max) {
		opts.Count = max
	}
	switch len(parts) {
	case 0:
		return nil, opts, nil
	case 1:
		return parts[0], opts, nil
	}
	return &query.Complex{Operator: "AND", Queries: parts}, opts, nil
}

// listTypes returns the portal_type restriction of an allDocs by role (nil: none), or the
// refusal when its rules let it list nothing.
func (e *Engine) listTypes(r *role, peer string) (query.Query, error) {
	in := WriteInput{Peer: peer, Role: r.name, Method: gateway.MethodAllDocs}
	ev := &evaluator{e: e, in: &in}
	// holds reports whether a rule's condition holds for a list; conditions on doc or old do
	// not apply (true for allow rules, and such deny rules never deny a list). An evaluation
	// error counts against the request.
	holds := func(ru *rule) bool {
		if ru.when == nil || ru.when.usesDoc {
			return ru.effect == effectAllow || ru.when == nil
		}
		ok, err := ev.eval(ru.when, ru.name)
		if err != nil {
			return ru.effect == effectDeny
		}
		return ok
	}
	var denied []string
	for _, ru := range r.deny {
		if !ru.methods.has(mAllDocs) || ru.hasWrite || !holds(ru) {
			continue
		}
		if ru.allTypes {
			return nil, forbidden(ReasonDenied, "role %s may not list documents (rule %s)", r.name, ru.name)
		}
		denied = append(denied, ru.typeList...)
	}
	allowAll := false
	var allowed []string
	for _, ru := range r.allow {
		if !ru.methods.has(mAllDocs) || !holds(ru) {
			continue
		}
		if ru.allTypes {
			allowAll = true
		} else {
			allowed = append(allowed, ru.typeList...)
		}
	}
	if allowAll {
		if len(denied) == 0 {
			return nil, nil
		}
		return &query.Complex{Operator: "NOT", Queries: []query.Query{typeIn(unique(denied))}}, nil
	}
	allowed = unique(allowed)
	if len(denied) > 0 {
		out := allowed[:0]
		for _, t := range allowed {
			if !contains(denied, t) {
				out = append(out, t)
			}
		}
		allowed = out
	}
	if len(allowed) == 0 {
		return nil, forbidden(ReasonMethodNotAllowed, "role %s may not list documents", r.name)
	}
	return typeIn(allowed), nil
}

// typeIn returns `portal_type: = "A"`, or an OR of such terms. The operator is written so
// that a type holding % or _ is still compared exactly, not with LIKE.
func typeIn(types []string) query.Query {
	if len(types) == 1 {
		return &query.Simple{Key: "portal_type", Value: types[0], Operator: query.OpEQ}
	}
	qs := make([]query.Query, len(types))
	for i, t := range types {
		qs[i] = &query.Simple{Key: "portal_type", Value: t, Operator: query.OpEQ}
	}
	return &query.Complex{Operator: "OR", Queries: qs}
}

// readable reports whether the role may read, filter and sort on a field. portal_type is
// always readable: read.scope and describe reveal it anyway, and forms filter on it.
func (r *role) readable(f string) bool { return r.allFields || r.fieldSet[f] }

// rewrite copies q, refusing keys the role may not read and turning key-less terms into
// searches over the readable fields.
func (r *role) rewrite(q query.Query, dateKeys []string, hidden func(string) bool) (query.Query, error) {
	switch q := q.(type) {
	case *query.Simple:
		if q == nil {
			break
		}
		exact := q.Operator == query.OpEQ || q.Operator == "" && !strings.Contains(q.Value, "%")
		if q.Key == "portal_type" && exact && !slices.Contains(dateKeys, q.Key) && hidden(q.Value) {
			return &query.Complex{Operator: "OR"}, nil
		}
		if q.Key == "" {
			if r.allFields {
				c := *q
				return &c, nil
			}
			return r.fullText(q, dateKeys), nil
		}
		if !r.readable(q.Key) {
			return nil, forbidden(ReasonFieldNotReadable, "role %s may not filter on %s", r.name, q.Key)
		}
		c := *q
		return &c, nil
	case *query.Complex:
		if q == nil {
			break
		}
		out := &query.Complex{Operator: q.Operator, Queries: make([]query.Query, len(q.Queries))}
		for i, c := range q.Queries {
			x, err := r.rewrite(c, dateKeys, hidden)
			if err != nil {
				return nil, err
			}
			out.Queries[i] = x
		}
		return out, nil
	}
	return nil, gateway.Errorf(gateway.EINVALID, "the query has an empty node")
}

// fullText returns a key-less term restricted to the readable fields. A key-less term
// matches when some property's text is LIKE %value% (its operator is ignored); a keyed term
// without operator whose value holds "%" is that LIKE on one property. So the OR of
// `field: "%value%"` over the readable fields matches exactly when a readable property does.
// A date key compares as a date whatever its value, so no keyed term is a LIKE on it: a date
// field joins the OR as `field: value` (same date at the coarser precision) when value is a
// date, and is left out otherwise.
func (r *role) fullText(s *query.Simple, dateKeys []string) query.Query {
	qs := make([]query.Query, 0, len(r.fields))
	for _, f := range r.fields {
		switch {
		case !slices.Contains(dateKeys, f):
			qs = append(qs, &query.Simple{Key: f, Value: "%" + s.Value + "%"})
		case isQueryDate(s.Value):
			qs = append(qs, &query.Simple{Key: f, Value: s.Value})
		}
	}
	if len(qs) == 1 {
		return qs[0]
	}
	// With no field left, an empty OR matches nothing, as the term matches nothing readable.
	return &query.Complex{Operator: "OR", Queries: qs}
}

// isQueryDate reports whether a query value is a date the query language compares as one.
func isQueryDate(v string) bool {
	if strings.Contains(v, "%") {
		return false
	}
	_, _, ok := query.ParseDate(v)
	return ok
}

// clone returns a deep copy of a query tree.
func clone(q query.Query) query.Query {
	switch q := q.(type) {
	case *query.Simple:
		c := *q
		return &c
	case *query.Complex:
		c := &query.Complex{Operator: q.Operator, Queries: make([]query.Query, len(q.Queries))}
		for i, x := range q.Queries {
			c.Queries[i] = clone(x)
		}
		return c
	}
	return q
}

// FilterDoc returns doc without the fields role may not read: doc itself when the role reads
// every field ("*"), else a new map. An unknown role reads nothing.
func (e *Engine) FilterDoc(role string, doc map[string]any) map[string]any {
	r := e.roles[role]
	if r == nil {
		return map[string]any{}
	}
	if r.allFields || doc == nil {
		return doc
	}
	out := make(map[string]any, len(r.fields))
	for _, f := range r.fields {
		if v, ok := doc[f]; ok {
			out[f] = v
		}
	}
	return out
}

// Readable returns the fields role may read, sorted, or all true when it reads every field.
func (e *Engine) Readable(role string) (fields []string, all bool) {
	r := e.roles[role]
	if r == nil {
		return nil, false
	}
	if r.allFields {
		return nil, true
	}
	return append([]string(nil), r.fields...), false
}

// unique returns the distinct strings of s, sorted.
func unique(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// contains reports whether s holds x.
func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// matchDoc reports whether doc matches q, with the engine's date keys.
func (e *Engine) matchDoc(q query.Query, doc map[string]any) bool {
	return query.Match(q, doc, e.DateKeys)
}
