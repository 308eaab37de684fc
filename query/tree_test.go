package query_test

import (
	"slices"
	"testing"

	"sitesync.example/gateway/query"
)

func mustParse(tb testing.TB, s string) query.Query {
	tb.Helper()
	q, err := query.Parse(s)
	if err != nil {
		tb.Fatalf("Parse(%q): %v", s, err)
	}
	return q
}

func TestAnd(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{name: "None", in: nil, want: ""},
		{name: "AllEmpty", in: []string{"", ""}, want: ""},
		{name: "One", in: []string{"a:b", ""}, want: `a:  "b"`},
		{name: "Flattens", in: []string{"a:b c:d", "e:f"}, want: `( a:  "b" AND c:  "d" AND e:  "f" )`},
		{name: "KeepsOr", in: []string{"portal_type:(x OR y)", "title:%z%"}, want: `( portal_type: (  "x" OR  "y" ) AND title:  "%z%" )`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var qs []query.Query
			for _, s := range tt.in {
				qs = append(qs, mustParse(t, s))
			}
			if got := query.Format(query.And(qs...)); got != tt.want {
				t.Fatalf("And = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWalk(t *testing.T) {
	q := mustParse(t, `a:1 OR NOT (b:2 c)`)
	var seen []string
	query.Walk(q, func(q query.Query) bool {
		switch q := q.(type) {
		case *query.Simple:
			seen = append(seen, "leaf "+q.Key)
		case *query.Complex:
			seen = append(seen, q.Operator)
		}
		return true
	})
	want := []string{"OR", "leaf a", "NOT", "AND", "leaf b", "leaf "}
	if !slices.Equal(seen, want) {
		t.Fatalf("visited %q, want %q", seen, want)
	}
	// Returning false prunes the subtree.
	seen = nil
	query.Walk(q, func(q query.Query) bool {
		c, ok := q.(*query.Complex)
		if ok {
			seen = append(seen, c.Operator)
		}
		return !ok || c.Operator != "NOT"
	})
	if !slices.Equal(seen, []string{"OR", "NOT"}) {
		t.Fatalf("visited %q with pruning", seen)
	}
	query.Walk(nil, func(query.Query) bool { t.Fatal("visited nil"); return true })
}

func TestEqualClone(t *testing.T) {
	q := mustParse(t, `a:(b OR <c) NOT d`)
	c := query.Clone(q)
	if !query.Equal(q, c) {
		t.Fatal("clone differs")
	}
	c.(*query.Complex).Queries[0].(*query.Complex).Queries[0].(*query.Simple).Value = "z"
	if query.Equal(q, c) {
		t.Fatal("Equal missed a changed value, or Clone shares leaves")
	}
	if q.String() != `( a: (  "b" OR < "c" ) AND NOT (  "d" ) )` {
		t.Fatalf("original changed: %s", q)
	}
	if query.Equal(q, nil) || !query.Equal(nil, nil) || query.Clone(nil) != nil {
		t.Fatal("nil handling")
	}
	if query.Equal(mustParse(t, "a OR b"), mustParse(t, "a b")) {
		t.Fatal("Equal ignored the operator")
	}
}

func TestKeys(t *testing.T) {
	q := mustParse(t, `b:1 a:(x OR y) NOT c:2 free b:3`)
	if got, want := query.Keys(q), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Keys = %v, want %v", got, want)
	}
	if !query.HasFullText(q) {
		t.Fatal("HasFullText missed the key-less term")
	}
	if query.HasFullText(mustParse(t, `a:(x OR y)`)) || query.HasFullText(nil) {
		t.Fatal("HasFullText found a key-less term where there is none")
	}
}
