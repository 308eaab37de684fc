package policy_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/query"
)

// flatten normalises a tree for comparison: "" becomes AND and nested complex queries with
// their parent's operator are merged into it, as the parser does.
func flatten(q query.Query) query.Query {
	c, ok := q.(*query.Complex)
	if !ok {
		return q
	}
	op := c.Operator
	if op == "" {
		op = "AND"
	}
	out := &query.Complex{Operator: op}
	for _, x := range c.Queries {
		x = flatten(x)
		if xc, ok := x.(*query.Complex); ok && xc.Operator == op && op != "NOT" {
			out.Queries = append(out.Queries, xc.Queries...)
		} else {
			out.Queries = append(out.Queries, x)
		}
	}
	return out
}

func mustQuery(tb testing.TB, s string) query.Query {
	tb.Helper()
	q, err := query.Parse(s)
	if err != nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return q
}

func TestEngine_ScopeQuery(t *testing.T) {
	e := mustParse(t, testPolicy)
	const clerkScope = `portal_type:("Person" OR "Organisation" OR "Product")`
	const clerkTypes = `portal_type:(="Organisation" OR ="Person" OR ="Product")`
	const fullText = `(email:"%ann%" OR first_name:"%ann%" OR last_name:"%ann%" OR portal_type:"%ann%" OR reference:"%ann%" OR title:"%ann%")`
	tests := []struct {
		name   string
		role   string
		peer   string
		query  string
		sortOn []string
		want   string // the scoped query, "" for none
		code   string
		reason string
	}{
		{name: "OK/empty", role: "clerk", query: "", want: clerkScope + " AND " + clerkTypes},
		{name: "OK/keyed", role: "clerk", query: `title:"Ann%"`, want: clerkScope + " AND " + clerkTypes + ` AND title:"Ann%"`},
		{name: "OK/keyless", role: "clerk", query: `ann`, want: clerkScope + " AND " + clerkTypes + " AND " + fullText},
		{name: "OK/keylessWithOperatorIgnored", role: "clerk", query: `!= "ann"`, want: clerkScope + " AND " + clerkTypes + " AND " + fullText},
		{name: "OK/orNot", role: "clerk", query: `title:x OR NOT ann`,
			want: clerkScope + " AND " + clerkTypes + ` AND (title:x OR NOT ` + fullText + `)`},
		{name: "OK/keyedSubtree", role: "clerk", query: `email:(a OR b)`, want: clerkScope + " AND " + clerkTypes + ` AND email:(a OR b)`},
		{name: "OK/sortReadable", role: "clerk", query: `title:x`, sortOn: []string{"title", "portal_type"}, want: clerkScope + " AND " + clerkTypes + ` AND title:x`},
		{name: "OK/allFieldsKeepsKeyless", role: "store", query: `ann AND secret:1`, want: `portal_type:="Sale Order" AND ann AND secret:1`},
		{name: "ErrFieldNotReadable/filter", role: "clerk", query: `salary:>10`, code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotReadable},
		{name: "ErrFieldNotReadable/underNot", role: "clerk", query: `title:a AND NOT (b OR salary:3)`, code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotReadable},
		{name: "ErrFieldNotReadable/sort", role: "clerk", query: `title:a`, sortOn: []string{"salary"}, code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotReadable},
		{name: "ErrMethodNotAllowed", role: "errs", query: `a`, code: gateway.EFORBIDDEN, reason: policy.ReasonMethodNotAllowed},
		{name: "ErrUnknownRole", role: "nobody", query: `a`, code: gateway.EFORBIDDEN, reason: policy.ReasonUnknownRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustQuery(t, tt.query)
			var opts query.Options
			for _, k := range tt.sortOn {
				opts.SortOn = append(opts.SortOn, query.SortKey{Key: k})
			}
			before := query.Format(q)
			got, _, err := e.ScopeQuery(tt.peer, tt.role, q, opts)
			checkErr(t, err, tt.code, tt.reason)
			if query.Format(q) != before {
				t.Fatalf("ScopeQuery modified its query: %s", query.Format(q))
			}
			if tt.code != "" {
				return
			}
			if g, w := query.Format(flatten(got)), query.Format(flatten(mustQuery(t, tt.want))); g != w {
				t.Fatalf("scoped =\n  %s\nwant\n  %s", g, w)
			}
		})
	}
}

func TestEngine_ScopeQuery_Limit(t *testing.T) {
	e := mustParse(t, testPolicy) // clerk: max_limit 50; store: none
	for _, tt := range []struct {
		role        string
		count, want int
	}{
		{"clerk", 0, 50}, {"clerk", 10, 10}, {"clerk", 50, 50}, {"clerk", 51, 50}, {"store", 0, 0}, {"store", 1000, 1000},
	} {
		_, opts, err := e.ScopeQuery("p", tt.role, nil, query.Options{Skip: 7, Count: tt.count})
		if err != nil {
			t.Fatal(err)
		}
		if opts.Count != tt.want || opts.Skip != 7 {
			t.Errorf("%s count %d: got %+v, want count %d", tt.role, tt.count, opts, tt.want)
		}
	}
}

func TestEngine_ScopeQuery_Rules(t *testing.T) {
	e := mustParse(t, `
roles:
  r:
    read: {fields: "*"}
    rules:
      - {name: all, effect: allow, methods: [allDocs], portal_types: ["*"]}
      - {name: no_secret, effect: deny, methods: [allDocs], portal_types: [Secret]}
      - {name: kiosk, effect: deny, methods: [allDocs], portal_types: ["*"], when: 'peer.name == "kiosk"'}
      - {name: doc_cond, effect: deny, methods: [allDocs, get], portal_types: ["*"], when: 'doc.hidden == true'}
  s:
    read: {fields: "*"}
    rules:
      - {name: persons, effect: allow, methods: [allDocs], portal_types: [Person, Product]}
      - {name: vip, effect: allow, methods: [allDocs], portal_types: [Order], when: 'peer.name.startsWith("vip")'}
      - {name: broken, effect: allow, methods: [allDocs], portal_types: [Broken], when: 'request.nothing == "x"'}
      - {name: no_products, effect: deny, methods: [allDocs], portal_types: [Product]}
`)
	if w := e.Warnings(); len(w) != 1 || w[0].Rule != "doc_cond" {
		t.Fatalf("warnings = %v, want one about doc_cond", w)
	}
	tests := []struct {
		peer, role string
		want       string
		reason     string
	}{
		// Every type but the denied one; the deny rule's condition on doc does not apply.
		{"p", "r", `NOT portal_type:="Secret"`, ""},
		{"kiosk", "r", "", policy.ReasonDenied},
		{"p", "s", `portal_type:="Person"`, ""},
		// The peer condition holds; the broken one fails to evaluate and grants nothing.
		{"vip1", "s", `portal_type:(="Order" OR ="Person")`, ""},
	}
	for _, tt := range tests {
		got, _, err := e.ScopeQuery(tt.peer, tt.role, nil, query.Options{})
		if tt.reason != "" {
			checkErr(t, err, gateway.EFORBIDDEN, tt.reason)
			continue
		}
		checkErr(t, err, "", "")
		if g, w := query.Format(flatten(got)), query.Format(flatten(mustQuery(t, tt.want))); g != w {
			t.Errorf("%s/%s: scoped = %s, want %s", tt.role, tt.peer, g, w)
		}
	}
}

// scopePolicy is the role the property tests scope queries for.
const scopePolicy = `
roles:
  r:
    read:
      scope: 'portal_type:("Person" OR "Product" OR "Organisation") AND NOT title:"%secret%"'
      fields: [title, email, start_date]
    rules:
      - {effect: allow, methods: [allDocs], portal_types: [Person, Organisation]}
    limits: {max_limit: 5}
`

var (
	propKeys     = []string{"title", "email", "start_date", "portal_type", "salary", "notes", "", "", ""}
	propValues   = []string{"ann", "Ann", "%an%", "an", "a_n", "%", "1", "10", "2024", "2024-05", "2024-05-02", "Person", "Product", "secret", "x y", ""}
	propOps      = []string{"", "", "", "=", "!=", "<", "<=", ">", ">="}
	propDocKeys  = []string{"title", "email", "start_date", "salary", "notes"}
	propDocTypes = []any{"Person", "Product", "Organisation", "Sale Order", nil}
	propDocVals  = []any{"Ann", "ann", "bob", "an_n", "Person", "Product", "top secret", "2024-05-02", "2023-12-31 10:00",
		json.Number("1"), json.Number("10.0"), json.Number("2024"), true, nil, []any{"ann", "x"}, []any{}, []any{json.Number("3"), "2024"}}
	readableSet = map[string]bool{"title": true, "email": true, "start_date": true, "portal_type": true}
)

// randomQuery returns a random tree of depth at most d.
func randomQuery(r *rand.Rand, d int) query.Query {
	if d == 0 || r.IntN(3) == 0 {
		return &query.Simple{Key: propKeys[r.IntN(len(propKeys))], Value: propValues[r.IntN(len(propValues))], Operator: propOps[r.IntN(len(propOps))]}
	}
	switch r.IntN(4) {
	case 0:
		return &query.Complex{Operator: "NOT", Queries: []query.Query{randomQuery(r, d-1)}}
	case 1:
		return &query.Complex{Operator: "OR", Queries: []query.Query{randomQuery(r, d-1), randomQuery(r, d-1)}}
	case 2:
		return &query.Complex{Operator: "", Queries: []query.Query{randomQuery(r, d-1), randomQuery(r, d-1)}}
	}
	return &query.Complex{Operator: "AND", Queries: []query.Query{randomQuery(r, d-1), randomQuery(r, d-1), randomQuery(r, d-1)}}
}

// randomDoc returns a random document; portal_type is a scalar or absent.
func randomDoc(r *rand.Rand) map[string]any {
	doc := map[string]any{}
	if t := propDocTypes[r.IntN(len(propDocTypes))]; t != nil {
		doc["portal_type"] = t
	}
	for _, k := range propDocKeys {
		if r.IntN(3) > 0 {
			doc[k] = propDocVals[r.IntN(len(propDocVals))]
		}
	}
	return doc
}

// keys returns whether q filters on an unreadable key, and whether it has key-less terms.
func inspect(q query.Query) (unreadable, keyless bool) {
	switch q := q.(type) {
	case *query.Simple:
		return q.Key != "" && !readableSet[q.Key], q.Key == ""
	case *query.Complex:
		for _, x := range q.Queries {
			u, k := inspect(x)
			unreadable, keyless = unreadable || u, keyless || k
		}
	}
	return
}

// project keeps the readable fields of doc.
func project(doc map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range doc {
		if readableSet[k] {
			out[k] = v
		}
	}
	return out
}

// TestEngine_ScopeQuery_Property checks, over random queries and documents, that a scoped
// query never matches a document outside the role's scope and never depends on a field the
// role cannot read. Without date keys it is exact: the scoped query matches a document when
// the document is in scope and the peer's query matches the document's readable fields.
func TestEngine_ScopeQuery_Property(t *testing.T) {
	e := mustParse(t, scopePolicy)
	scope := mustQuery(t, `portal_type:("Person" OR "Product" OR "Organisation") AND NOT title:"%secret%"`)
	r := rand.New(rand.NewPCG(1, 2))
	docs := make([]query.Doc, 300)
	projected := make([]query.Doc, len(docs))
	for i := range docs {
		docs[i] = query.Doc{ID: fmt.Sprint(i), Body: randomDoc(r)}
		projected[i] = query.Doc{ID: docs[i].ID, Body: project(docs[i].Body)}
	}
	inScope := func(doc map[string]any, dateKeys []string) bool {
		pt := doc["portal_type"]
		return query.Match(scope, doc, dateKeys) && (pt == "Person" || pt == "Organisation")
	}
	var checked, refused, matched int
	for _, dateKeys := range [][]string{nil, {"start_date"}} {
		for i := 0; i < 1500; i++ {
			q := randomQuery(r, 3)
			unreadable, keyless := inspect(q)
			var opts query.Options
			opts.DateKeys = dateKeys
			if r.IntN(2) == 0 {
				opts.SortOn = []query.SortKey{{Key: []string{"title", "start_date", "email"}[r.IntN(3)], Descending: r.IntN(2) == 0}}
			}
			scoped, sopts, err := e.ScopeQuery("p", "r", q, opts)
			if unreadable {
				if gateway.ErrorReason(err) != policy.ReasonFieldNotReadable {
					t.Fatalf("%s: err = %v, want field_not_readable", query.Format(q), err)
				}
				refused++
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", query.Format(q), err)
			}
			checked++
			exact := dateKeys == nil || !keyless
			for j, d := range docs {
				got := query.Match(scoped, d.Body, dateKeys)
				if got {
					matched++
				}
				if got && !inScope(d.Body, dateKeys) {
					t.Fatalf("%s scoped to %s matches %v, outside the scope", query.Format(q), query.Format(scoped), d.Body)
				}
				if p := query.Match(scoped, projected[j].Body, dateKeys); p != got {
					t.Fatalf("%s scoped to %s: %v on %v but %v on its readable fields", query.Format(q), query.Format(scoped), got, d.Body, p)
				}
				if exact {
					if want := inScope(d.Body, dateKeys) && query.Match(q, projected[j].Body, dateKeys); got != want {
						t.Fatalf("%s scoped to %s: %v on %v, want %v", query.Format(q), query.Format(scoped), got, d.Body, want)
					}
				}
			}
			// The same through Exec, with the limit capped: the rows are the same whether the
			// unreadable fields are there or not, and all in scope.
			res := query.Exec(docs, scoped, sopts)
			pres := query.Exec(projected, scoped, sopts)
			if sopts.Count != 5 || len(res.Rows) > 5 || res.TotalRows != pres.TotalRows || len(res.Rows) != len(pres.Rows) {
				t.Fatalf("%s: Exec %d/%d rows vs %d/%d on readable fields (count %d)", query.Format(q), len(res.Rows), res.TotalRows, len(pres.Rows), pres.TotalRows, sopts.Count)
			}
			for k, row := range res.Rows {
				if row.ID != pres.Rows[k].ID {
					t.Fatalf("%s: row %d is %s, %s on readable fields", query.Format(q), k, row.ID, pres.Rows[k].ID)
				}
				n := slices.IndexFunc(docs, func(d query.Doc) bool { return d.ID == row.ID })
				if !inScope(docs[n].Body, dateKeys) {
					t.Fatalf("%s: Exec returned %v outside the scope", query.Format(q), docs[n].Body)
				}
			}
		}
	}
	if checked < 500 || refused < 500 || matched < 1000 {
		t.Fatalf("the generator is too narrow: %d scoped, %d refused, %d matches", checked, refused, matched)
	}
	t.Logf("%d scoped queries, %d refused, %d matches", checked, refused, matched)
}
