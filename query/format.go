package query

import "strings"

// String returns jIO's serialisation of the leaf: `key: ` (when there is a key), the operator,
// a space and the quoted value, so `a: = "b"`, `c:  "%"` and ` "v"` (key-less).
//
// One departure: a value ending in a backslash would be written `"a\"`, where the backslash
// escapes the closing quote and the result no longer parses. Such a value can only have been
// written as a bare word, so it is written back bare (`c:  a\`), which parses to the same leaf.
func (q *Simple) String() string {
	var b strings.Builder
	if q.Key != "" {
		b.WriteString(q.Key)
		b.WriteString(": ")
	}
	writeTerm(&b, q)
	return b.String()
}

// writeTerm writes the operator, a space and the value: the leaf without its key.
func writeTerm(b *strings.Builder, q *Simple) {
	b.WriteString(q.Operator)
	b.WriteByte(' ')
	if strings.HasSuffix(q.Value, `\`) && isBareWord(q.Value) {
		b.WriteString(q.Value)
		return
	}
	b.WriteByte('"')
	b.WriteString(strings.ReplaceAll(q.Value, `"`, `\"`))
	b.WriteByte('"')
}

// isBareWord reports whether s lexes as exactly one WORD token.
func isBareWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isWordRune(r) {
			return false
		}
	}
	_, n := keywordAt(s)
	return n == 0
}

// String returns jIO's serialisation of the complex query:
//
//   - `( a: = "b" OR d: < "2" )`: "( ", the children joined by " OP ", " )"; with no operator
//     the joiner is two spaces: `(  "a"   "b" )`;
//   - when every child is a leaf with the same key: `a: (  "b" OR  "c" )`, the children written
//     without their key;
//   - `NOT ( … )` around the child of a NOT (several children are taken as their AND);
//   - a complex query with one child is written as that child; one with none as "".
func (q *Complex) String() string {
	var b strings.Builder
	q.write(&b)
	return b.String()
}

func (q *Complex) write(b *strings.Builder) {
	if q.Operator == "NOT" {
		b.WriteString("NOT ( ")
		if len(q.Queries) == 1 {
			write(b, q.Queries[0])
		} else {
			(&Complex{Operator: "AND", Queries: q.Queries}).write(b)
		}
		b.WriteString(" )")
		return
	}
	switch len(q.Queries) {
	case 0:
		return
	case 1:
		write(b, q.Queries[0])
		return
	}
	key, grouped := commonKey(q.Queries)
	if grouped && key != "" {
		b.WriteString(key)
		b.WriteString(": ")
	}
	b.WriteString("( ")
	for i, sub := range q.Queries {
		if i > 0 {
			b.WriteByte(' ')
			b.WriteString(q.Operator)
			b.WriteByte(' ')
		}
		if grouped {
			writeTerm(b, sub.(*Simple))
		} else {
			write(b, sub)
		}
	}
	b.WriteString(" )")
}

// write appends q's serialisation to b.
func write(b *strings.Builder, q Query) {
	switch q := q.(type) {
	case *Simple:
		if q.Key != "" {
			b.WriteString(q.Key)
			b.WriteString(": ")
		}
		writeTerm(b, q)
	case *Complex:
		q.write(b)
	}
}

// commonKey reports whether every query is a leaf and all share one key, and returns it.
func commonKey(qs []Query) (string, bool) {
	var key string
	for i, q := range qs {
		s, ok := q.(*Simple)
		if !ok {
			return "", false
		}
		if i == 0 {
			key = s.Key
		} else if s.Key != key {
			return "", false
		}
	}
	return key, true
}

// Format returns q's serialisation; the nil query (match everything) is "".
func Format(q Query) string {
	if q == nil {
		return ""
	}
	return q.String()
}
