package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sitesync.example/gateway"
)

// scopeSeed is a replica with one document of each kind the example policy's clerk may and
// may not read.
var scopeSeed = []string{
	`{"id":"person_module/1","doc":{"portal_type":"Person","title":"Ann","validation_state":"validated"}}`,
	`{"id":"product_module/1","doc":{"portal_type":"Product","title":"Rice","reference":"R1"}}`,
	`{"id":"sale_order_module/1","doc":{"portal_type":"Sale Order","title":"O1","destination":"organisation_module/1","simulation_state":"draft"}}`,
	`{"id":"sale_order_module/1/1","doc":{"portal_type":"Sale Order Line","resource":"product_module/1","quantity":1}}`,
}

// sameRefusal checks that the answers to a request naming a hidden document and to the same
// request naming one that does not exist are the same error, up to the id in the message.
func sameRefusal(t *testing.T, what string, hidden, absent error, hiddenID, absentID string) {
	t.Helper()
	if hidden == nil || absent == nil {
		t.Fatalf("%s: errors %v and %v, want both refused", what, hidden, absent)
	}
	h, a := *errOf(t, hidden), *errOf(t, absent)
	h.Message = strings.ReplaceAll(h.Message, hiddenID, "ID")
	a.Message = strings.ReplaceAll(a.Message, absentID, "ID")
	if fmt.Sprint(h) != fmt.Sprint(a) || h.Code != gateway.ENOTFOUND {
		t.Errorf("%s: hidden document: %+v; absent one: %+v; want the same 404", what, h, a)
	}
}

// TestScope_HiddenIsAbsent: a document the peer may not read (a type its role may not use, or
// one outside its read.scope) is answered exactly as one that does not exist, by every method
// that names an id; a readable document the role may not change keeps its 403.
func TestScope_HiddenIsAbsent(t *testing.T) {
	s := newService(t, "", scopeSeed...)
	// Something waits for the order and its line: a supervisor changed them.
	mustCall(t, s, "supervisor", "put", `{"id":"sale_order_module/1","doc":{"title":"O1b"}}`)
	mustCall(t, s, "supervisor", "put", `{"id":"sale_order_module/1/1","doc":{"quantity":2}}`)
	for _, hidden := range []string{"sale_order_module/1", "sale_order_module/1/1"} {
		absent := hidden[:len(hidden)-1] + "999"
		for _, m := range []struct{ method, params string }{
			{"get", `{"id":%q}`},
			{"put", `{"id":%q,"doc":{"title":"x"}}`},
			{"put", `{"id":%q,"doc":{"portal_type":"Person"}}`},
			{"put", `{"id":%q,"doc":{"parent_relative_url":"person_module"}}`},
			{"remove", `{"id":%q}`},
			{"action", `{"id":%q,"transition":"confirm_action"}`},
		} {
			_, he := call(t, s, "clerk", m.method, fmt.Sprintf(m.params, hidden))
			_, ae := call(t, s, "clerk", m.method, fmt.Sprintf(m.params, absent))
			sameRefusal(t, m.method+" "+hidden, he, ae, hidden, absent)
		}
		got := mustCall(t, s, "clerk", "sync", fmt.Sprintf(`{"ids":[%q,%q]}`, hidden, absent))
		var res struct {
			States map[string]json.RawMessage `json:"states"`
		}
		if err := json.Unmarshal(got, &res); err != nil {
			t.Fatal(err)
		}
		if string(res.States[hidden]) != string(res.States[absent]) {
			t.Errorf("sync: hidden %s is %s, absent %s is %s; want the same", hidden, res.States[hidden], absent, res.States[absent])
		}
		// The supervisor, who reads it, sees the change waiting.
		got = mustCall(t, s, "supervisor", "sync", fmt.Sprintf(`{"ids":[%q]}`, hidden))
		if !strings.Contains(string(got), `"pending"`) {
			t.Errorf("supervisor sync %s: %s, want pending", hidden, got)
		}
	}
	// Readable documents keep their reasons.
	for _, c := range []struct{ method, params, reason string }{
		{"put", `{"id":"product_module/1","doc":{"title":"x"}}`, "method_not_allowed"},
		{"remove", `{"id":"person_module/1"}`, "denied"},
		{"action", `{"id":"person_module/1","transition":"invalidate_action"}`, "method_not_allowed"},
	} {
		_, err := call(t, s, "clerk", c.method, c.params)
		if e := errOf(t, err); e.Code != gateway.EFORBIDDEN || e.Reason != c.reason {
			t.Errorf("%s %s: %+v, want 403 %s", c.method, c.params, e, c.reason)
		}
	}
}

// TestScope_AllDocsNamesHiddenType: a query naming a type the role may not use answers as a
// query naming a type of which there is no document.
func TestScope_AllDocsNamesHiddenType(t *testing.T) {
	s := newService(t, "", scopeSeed...)
	for _, q := range []string{`portal_type:%q`, `portal_type:%q AND title:"%%O%%"`, `portal_type:%q OR reference:"R1"`} {
		hidden := mustCall(t, s, "clerk", "allDocs", fmt.Sprintf(`{"query":%q}`, fmt.Sprintf(q, "Sale Order")))
		absent := mustCall(t, s, "clerk", "allDocs", fmt.Sprintf(`{"query":%q}`, fmt.Sprintf(q, "Nuclear Reactor")))
		if string(hidden) != string(absent) {
			t.Errorf("query %s: Sale Order gives %s, a type without documents %s", q, hidden, absent)
		}
	}
}

// TestScope_NoLookupOutsideReadableModules: a get of an id the replica lacks asks ERP5 only
// when the id may be a document the peer reads; otherwise it is 404 at once, also while the
// link is down (a 503 there would tell a hidden document from a missing one).
func TestScope_NoLookupOutsideReadableModules(t *testing.T) {
	s := newService(t, "", scopeSeed...)
	var asked []string
	s.Fetch = func(_ context.Context, id string) (*gateway.Document, error) {
		asked = append(asked, id) // the link is down
		return nil, gateway.Errorf(gateway.EUNAVAILABLE, "the link is down")
	}
	for _, c := range []struct {
		role, id string
		status   int
		asks     bool
	}{
		{"clerk", "sale_order_module/5", 404, false},
		{"clerk", "sale_order_module/5/1", 404, false},
		{"clerk", "person_module/77", 503, true},
		{"storekeeper", "sale_order_module/5/1", 503, true},
		{"supervisor", "sale_order_module/5", 503, true},
	} {
		asked = nil
		_, err := call(t, s, c.role, "get", fmt.Sprintf(`{"id":%q}`, c.id))
		if e := errOf(t, err); gateway.Status(e.Code) != c.status || (len(asked) > 0) != c.asks {
			t.Errorf("%s get %s: %+v, ERP5 asked: %v; want %d, asked %v", c.role, c.id, e, asked, c.status, c.asks)
		}
	}
}

// TestScope_OutsideReadScope: a document of a type the role uses but outside its read.scope
// is answered as absent too, by every method that names it.
func TestScope_OutsideReadScope(t *testing.T) {
	const pol = `
roles:
  south:
    read: {scope: 'site:"south"', fields: "*"}
    rules:
      - {name: people, effect: allow, methods: "*", portal_types: [Person], write: "*", transitions: "*"}
`
	s := newService(t, pol,
		`{"id":"person_module/1","doc":{"portal_type":"Person","title":"A","site":"south"}}`,
		`{"id":"person_module/2","doc":{"portal_type":"Person","title":"B","site":"north"}}`)
	mustCall(t, s, "south", "get", `{"id":"person_module/1"}`)
	for _, m := range []struct{ method, params string }{
		{"get", `{"id":%q}`},
		{"put", `{"id":%q,"doc":{"title":"x"}}`},
		{"remove", `{"id":%q}`},
		{"action", `{"id":%q,"transition":"validate_action"}`},
	} {
		_, he := call(t, s, "south", m.method, fmt.Sprintf(m.params, "person_module/2"))
		_, ae := call(t, s, "south", m.method, fmt.Sprintf(m.params, "person_module/9"))
		sameRefusal(t, m.method, he, ae, "person_module/2", "person_module/9")
	}
	got := string(mustCall(t, s, "south", "allDocs", `{"query":"title:B"}`))
	if !strings.Contains(got, `"total_rows":0`) {
		t.Errorf("allDocs found the northern person: %s", got)
	}
}
