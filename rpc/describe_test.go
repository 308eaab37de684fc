package rpc_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
)

func openService(t *testing.T) *rpc.Service {
	t.Helper()
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "gateway.db"))
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := policy.Parse("policy.example.yaml", gateway.ExamplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	return rpc.NewService(db, p)
}

// TestDescribe_Forms: without learned forms every type's form and workflow are null and
// forms_hash is empty; a learned form shows with its hash and learned_at, and forms_hash
// follows every change.
func TestDescribe_Forms(t *testing.T) {
	s := openService(t)
	ctx := context.Background()
	a := gateway.Actor{Peer: "p", Role: "supervisor"}
	call := func() map[string]any {
		raw, err := s.Call(ctx, a, gateway.MethodDescribe, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
	typeOf := func(m map[string]any, pt string) map[string]any {
		for _, ty := range m["types"].([]any) {
			if ty.(map[string]any)["portal_type"] == pt {
				return ty.(map[string]any)
			}
		}
		t.Fatalf("no %s in %v", pt, m)
		return nil
	}
	m := call()
	if m["forms_hash"] != "" || m["upstream_mode"] != rpc.UpstreamUnknown {
		t.Errorf("empty: %v %v", m["forms_hash"], m["upstream_mode"])
	}
	if p := typeOf(m, "Person"); p["form"] != nil || p["workflow"] != nil || p["schema"] == nil || p["writable"] == nil {
		t.Errorf("Person without a form: %v", p)
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	form := json.RawMessage(`{"form_id":"Person_view","title":"Person","groups":[{"id":"left","fields":["my_title"]}],"fields":{"my_title":{"type":"StringField","title":"Title","description":"","required":true,"editable":true,"property":"title"}}}`)
	wf := json.RawMessage(`{"state_field":"validation_state","states":{"draft":{"title":"Draft","transitions":[]}},"complete":true}`)
	if err := s.DB.SetLearnedForms(ctx, []sqlite.LearnedForm{{PortalType: "Person", Form: form, Workflow: wf, Hash: "h1", LearnedAt: at, CheckedAt: at}}); err != nil {
		t.Fatal(err)
	}
	s.UpstreamMode = func() string { return rpc.UpstreamStock }
	m = call()
	p := typeOf(m, "Person")
	f, _ := p["form"].(map[string]any)
	if f == nil || f["hash"] != "h1" || f["learned_at"] != "2026-05-01T10:00:00Z" || f["form_id"] != "Person_view" {
		t.Errorf("Person form: %v", p["form"])
	}
	if w, _ := p["workflow"].(map[string]any); w == nil || w["state_field"] != "validation_state" {
		t.Errorf("Person workflow: %v", p["workflow"])
	}
	h1 := m["forms_hash"]
	if h1 == "" || m["upstream_mode"] != rpc.UpstreamStock {
		t.Errorf("after learning: %v %v", h1, m["upstream_mode"])
	}
	// The same hash again keeps learned_at; a new one changes forms_hash.
	later := at.Add(time.Hour)
	must(t, s.DB.SetLearnedForms(ctx, []sqlite.LearnedForm{{PortalType: "Person", Form: form, Workflow: wf, Hash: "h1", LearnedAt: later, CheckedAt: later}}))
	if f := typeOf(call(), "Person")["form"].(map[string]any); f["learned_at"] != "2026-05-01T10:00:00Z" {
		t.Errorf("an unchanged form was re-dated: %v", f["learned_at"])
	}
	must(t, s.DB.SetLearnedForms(ctx, []sqlite.LearnedForm{{PortalType: "Person", Form: form, Workflow: wf, Hash: "h2", LearnedAt: later, CheckedAt: later}}))
	m = call()
	if m["forms_hash"] == h1 {
		t.Error("forms_hash did not change")
	}
	st, err := s.Status(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if st.FormsHash != m["forms_hash"] || st.UpstreamMode != rpc.UpstreamStock {
		t.Errorf("status: %+v", st)
	}
	if err := s.DB.SetLearnedForms(ctx, []sqlite.LearnedForm{{PortalType: "Person", Form: json.RawMessage(`{`), Hash: "h3"}}); err == nil {
		t.Error("stored a form that is not JSON")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
