package policy_test

import (
	"fmt"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/query"
)

const costPolicy = `
roles:
  clerk:
    read: {scope: 'portal_type:("Person" OR "Product")', fields: [title, email]}
    rules:
      - {name: r, effect: allow, methods: [get, allDocs], portal_types: [Person, Product]}
    limits: {max_query_cost: 1000, query_timeout: 250ms}
  boss:
    read: {fields: "*"}
    rules:
      - {name: all, effect: allow, methods: "*", portal_types: ["*"], write: "*", transitions: "*"}
      - {name: no_secrets, effect: deny, methods: [allDocs], portal_types: [Secret]}
  free:
    read: {fields: "*"}
    rules:
      - {name: all, effect: allow, methods: [allDocs], portal_types: ["*"]}
    limits: {max_query_cost: 0, query_timeout: 0}
`

// TestQueryCost: an allDocs's cost is its terms as the role runs them times the documents of
// the types the role may list — whatever types the query itself names — and over the role's
// budget it is refused before it runs.
func TestQueryCost(t *testing.T) {
	e := mustParse(t, costPolicy)
	counts := map[string]int{"Person": 30, "Product": 20, "Sale Order": 5000, "Secret": 7}
	q := func(s string) query.Query {
		x, err := query.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, c := range []struct {
		role, q string
		want    int64
	}{
		{"clerk", `title:a`, 1 * 50},
		{"clerk", `abc`, 3 * 50}, // one LIKE per readable field: title, email, portal_type
		{"clerk", `portal_type:"Sale Order"`, 50},
		{"clerk", `portal_type:"Nuclear Reactor"`, 50},
		{"boss", `abc OR title:x`, (policy.KeylessWeight + 1) * 5050},
		{"free", `a:1 b:2`, 2 * 5057},
	} {
		if got := e.QueryCost("p", c.role, q(c.q), counts); got != c.want {
			t.Errorf("%s %s: cost %d, want %d", c.role, c.q, got, c.want)
		}
	}
	// 7 key-less terms of 3 fields over 50 documents is 1050 > 1000.
	checkErr(t, e.CheckQueryCost("p", "clerk", q(`a b c d e f g`), counts), gateway.EINVALID, policy.ReasonQueryTooCostly)
	checkErr(t, e.CheckQueryCost("p", "clerk", q(`a b c d e f`), counts), "", "")
	checkErr(t, e.CheckQueryCost("p", "free", q(`a b c d e f g h i j k l`), map[string]int{"x": 1 << 30}), "", "")
	if got := e.Limits("clerk").QueryTimeout; got != 250*time.Millisecond {
		t.Errorf("clerk query_timeout = %v", got)
	}
	if got := e.Limits("boss"); got.MaxQueryCost != policy.DefaultMaxQueryCost || got.QueryTimeout != policy.DefaultQueryTimeout {
		t.Errorf("boss limits %+v, want the defaults", got)
	}
	if got := e.Limits("free"); got.MaxQueryCost != 0 || got.QueryTimeout != 0 {
		t.Errorf("free limits %+v, want none", got)
	}
	if _, err := policy.Parse("p.yaml", []byte("roles:\n  r:\n    limits: {query_timeout: soon}\n")); err == nil {
		t.Error("a query_timeout that is not a duration was accepted")
	}
}

// TestScopeQuery_HiddenTypeIsEmpty: an "=" term naming a type the role may not list is
// rewritten as one naming a type of which there is no document — the empty OR — so that the
// query the database runs, and its plan, cannot tell whether such documents exist.
func TestScopeQuery_HiddenTypeIsEmpty(t *testing.T) {
	e := mustParse(t, costPolicy)
	scoped := func(role, s string) string {
		q, err := query.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		sq, _, err := e.ScopeQuery("p", role, q, query.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := query.MarshalJSON(sq)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, f := range []string{`portal_type:%q`, `portal_type:=%q AND title:x`, `NOT portal_type:%q OR title:"%%x%%"`} {
		hidden, absent := scoped("clerk", fmt.Sprintf(f, "Sale Order")), scoped("clerk", fmt.Sprintf(f, "Nuclear Reactor"))
		if hidden != absent {
			t.Errorf("%s: Sale Order scopes to %s, a type without documents to %s", f, hidden, absent)
		}
		if listed := scoped("clerk", fmt.Sprintf(f, "Person")); listed == absent {
			t.Errorf("%s: a listable type was rewritten too: %s", f, listed)
		}
	}
	// A role listing every type but Secret hides Secret only.
	if a, b := scoped("boss", `portal_type:"Secret"`), scoped("boss", `portal_type:"Person"`); a == b {
		t.Errorf("boss: Secret and Person scope alike: %s", a)
	}
}
