package rpc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/rpc"
)

// costPolicy: a clerk with a small query budget and a deadline, and a role with neither.
const costPolicy = `
roles:
  clerk:
    read: {scope: 'portal_type:("Person" OR "Product")', fields: [title, email]}
    rules:
      - {name: r, effect: allow, methods: [get, allDocs], portal_types: [Person, Product]}
    limits: {max_query_cost: 2000, query_timeout: 200ms}
  slow:
    read: {fields: "*"}
    rules:
      - {name: r, effect: allow, methods: [get, allDocs], portal_types: [Person]}
    limits: {max_query_cost: 0, query_timeout: 200ms}
  patient:
    read: {fields: "*"}
    rules:
      - {name: r, effect: allow, methods: [get, allDocs], portal_types: [Person]}
    limits: {max_query_cost: 0, query_timeout: 30s}
`

// people returns n Person records, the first titled "needle".
func people(n int) []string {
	out := make([]string, n)
	for i := range out {
		title := fmt.Sprintf("Person %d", i)
		if i == 0 {
			title = "needle"
		}
		out[i] = fmt.Sprintf(`{"id":"person_module/%d","doc":{"portal_type":"Person","title":%q,"first_name":"Ana %d","last_name":"Lima","email":"a%d@example.org","city":"Maputo","reference":"P-%06d"}}`, i, title, i, i, i)
	}
	return out
}

// orTerms returns a jIO query of n OR'd key-less terms that match nothing, after first.
func orTerms(first string, n int) string {
	parts := []string{first}
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"%%zq%dq%%"`, i))
	}
	return strings.Join(parts, " OR ")
}

// TestQuery_TooCostly: an allDocs over the role's budget is refused before it runs, with
// 400 query_too_costly; the estimate does not depend on the types the query names.
func TestQuery_TooCostly(t *testing.T) {
	seed := append(people(100), scopeSeed...) // 101 Persons and a Product the clerk may list
	s := newService(t, costPolicy, seed...)
	// 6 key-less terms, 3 readable fields each, over 102 documents: 1836.
	mustCall(t, s, "clerk", "allDocs", fmt.Sprintf(`{"query":%q}`, orTerms(`title:x`, 5)))
	_, err := call(t, s, "clerk", "allDocs", fmt.Sprintf(`{"query":%q}`, orTerms(`title:x`, 7)))
	if e := errOf(t, err); e.Code != gateway.EINVALID || e.Reason != policy.ReasonQueryTooCostly {
		t.Fatalf("a costly query: %+v, want 400 query_too_costly", e)
	}
	for _, pt := range []string{"Sale Order", "Nuclear Reactor"} {
		_, err := call(t, s, "clerk", "allDocs", fmt.Sprintf(`{"query":%q}`, orTerms(fmt.Sprintf(`portal_type:%q`, pt), 7)))
		if e := errOf(t, err); e.Reason != policy.ReasonQueryTooCostly || strings.Contains(e.Message, pt) {
			t.Errorf("naming %s: %+v", pt, e)
		}
	}
}

// TestQuery_Timeout: an allDocs still running at the role's query_timeout is interrupted and
// answered 503 timeout; the next query gets the connection it ran on (the only one) long before
// the interrupted one would have ended (about 40 s).
func TestQuery_Timeout(t *testing.T) {
	s := newService(t, costPolicy, people(20000)...)
	_, err := call(t, s, "slow", "allDocs", fmt.Sprintf(`{"query":%q}`, orTerms(`title:needle`, 200)))
	if e := errOf(t, err); e.Code != gateway.EUNAVAILABLE || e.Reason != rpc.ReasonTimeout || gateway.Status(e.Code) != 503 {
		t.Fatalf("a query past its deadline: %+v, want 503 timeout", e)
	}
	var res rpc.AllDocsResult
	if err := json.Unmarshal(mustCall(t, s, "patient", "allDocs", `{"query":"title:needle"}`), &res); err != nil {
		t.Fatal(err)
	}
	if res.TotalRows != 1 {
		t.Errorf("the next query found %d rows, want 1", res.TotalRows)
	}
}
