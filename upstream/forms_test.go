package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/sqlite"
)

// formsAdapter is FormStore over *sqlite.DB: the conversion cmd/gateway makes too.
type formsAdapter struct{ *sqlite.DB }

func (f formsAdapter) LearnedForms(ctx context.Context) ([]StoredForm, error) {
	rows, err := f.DB.LearnedForms(ctx)
	out := make([]StoredForm, len(rows))
	for i, r := range rows {
		out[i] = StoredForm(r)
	}
	return out, err
}

func (f formsAdapter) SetLearnedForms(ctx context.Context, forms []StoredForm) error {
	rows := make([]sqlite.LearnedForm, len(forms))
	for i, r := range forms {
		rows[i] = sqlite.LearnedForm(r)
	}
	return f.DB.SetLearnedForms(ctx, rows)
}

// demoScopes are the demo's five scopes: every field of every generated type.
var demoScopes = []Scope{{PortalType: "Person"}, {PortalType: "Organisation"}, {PortalType: "Product"},
	{PortalType: "Sale Order"}, {PortalType: "Sale Order Line"}}

// learned reads what the store holds, by portal type.
func learned(t testing.TB, db *sqlite.DB) map[string]*LearnedType {
	t.Helper()
	rows, err := db.LearnedForms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*LearnedType{}
	for _, r := range rows {
		lt, err := ParseStored(StoredForm(r))
		if err != nil {
			t.Fatal(err)
		}
		if lt.Hash() != r.Hash {
			t.Errorf("%s: stored hash %s, computed %s", r.PortalType, r.Hash, lt.Hash())
		}
		out[r.PortalType] = lt
	}
	return out
}

func TestFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{{"1", true}, {"0", false}, {"true", true}, {"false", false}, {`"1"`, false}, {"2", false}, {"null", false}, {"1.0", true}} {
		if got := Flag(json.RawMessage(tc.in)); got != tc.want {
			t.Errorf("Flag(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestFieldProperty(t *testing.T) {
	for _, tc := range []struct {
		id, typ string
		spec    map[string]any
		want    string
	}{
		{"my_title", "StringField", nil, "title"},
		{"my_destination_title", "RelationStringField", map[string]any{"catalog_index": "title"}, "destination"},
		{"my_resource_reference", "RelationStringField", map[string]any{"catalog_index": "reference"}, "resource"},
		{"my_source_title", "RelationStringField", map[string]any{"base_category": "source_section"}, "source_section"},
		{"my_follow_up_title_list", "MultiRelationStringField", nil, "follow_up"},
		{"my_translated_simulation_state", "StringField", nil, "simulation_state"},
		{"my_translated_portal_type", "StringField", nil, "translated_portal_type"},
		{"listbox", "ListBox", nil, ""},
		{"your_comment", "TextAreaField", nil, ""},
	} {
		if got := FieldProperty(tc.id, tc.typ, tc.spec); got != tc.want {
			t.Errorf("FieldProperty(%s) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestClient_GetFormFlags reads a document of the double whose form flags are ERP5's 1/0
// and jIO's true/false alike, and edits it: a stock put no longer finds "no editable field".
func TestClient_GetFormFlags(t *testing.T) {
	for _, boolFlags := range []bool{false, true} {
		sim, c := newSimClient(t, erp5sim.Options{BoolFlags: boolFlags})
		sim.Load(erp5sim.Generate(1, 60, time.Now()))
		ctx := context.Background()
		doc, err := c.Get(ctx, "person_module/1")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"title", "first_name", "default_email_text", "subordination", "start_date"} {
			if _, ok := doc.Specs[p]; !ok {
				t.Errorf("bool flags %v: %s is not editable: %v", boolFlags, p, doc.Specs)
			}
		}
		if _, ok := doc.Specs["validation_state"]; ok {
			t.Errorf("the state field is editable")
		}
		if doc.States["validation_state"] == "" || doc.Form == nil || doc.Form.FormID != "Person_view" {
			t.Errorf("state %v, form %+v", doc.States, doc.Form)
		}
		if _, err := c.Put(ctx, "person_module/1", "Person", map[string]any{"title": "Renamed"}); err != nil {
			t.Fatal(err)
		}
		if got := sim.Document("person_module/1").Properties["title"]; got != "Renamed" {
			t.Errorf("title = %v", got)
		}
	}
}

// TestClient_ViewFallback traverses with a configured view, and with ERP5's view when the
// named one is missing.
func TestClient_ViewFallback(t *testing.T) {
	sim, c := newSimClient(t, erp5sim.Options{Views: []string{"site_view"}})
	sim.Load(erp5sim.Generate(1, 30, time.Now()))
	ctx := context.Background()
	c.View = "site_view"
	if _, err := c.Get(ctx, "person_module/1"); err != nil {
		t.Fatal(err)
	}
	if n := sim.Stats().Requests[erp5sim.EndpointTraverse]; n != 1 {
		t.Errorf("%d traverses with an existing view", n)
	}
	c.View = "jio_view" // a generic ERP5 has none
	doc, err := c.Get(ctx, "person_module/2")
	if err != nil {
		t.Fatal(err)
	}
	if doc.FormID != "Person_view" || sim.Stats().Requests[erp5sim.EndpointTraverse] != 3 {
		t.Errorf("form %q after %d traverses", doc.FormID, sim.Stats().Requests[erp5sim.EndpointTraverse])
	}
	if _, err := c.Get(ctx, "person_module/999999"); !isStatus(err, 404) {
		t.Errorf("missing document: %v", err)
	}
}

func isStatus(err error, status int) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == status
}

// relationDocs are two organisations with one title, one with another, and an order.
func relationDocs() []*erp5sim.Document {
	now := time.Now().Add(-time.Hour)
	return []*erp5sim.Document{
		{ID: "organisation_module/1", PortalType: "Organisation", ModificationDate: now, Properties: map[string]any{"title": "Sahel SA", "validation_state": "validated"}},
		{ID: "organisation_module/2", PortalType: "Organisation", ModificationDate: now, Properties: map[string]any{"title": "Sahel SA", "validation_state": "validated"}},
		{ID: "organisation_module/3", PortalType: "Organisation", ModificationDate: now, Properties: map[string]any{"title": "Delta SARL", "validation_state": "validated"}},
		{ID: "sale_order_module/1", PortalType: "Sale Order", ModificationDate: now, Properties: map[string]any{"title": "SO1",
			"destination": "organisation_module/3", "simulation_state": "draft"}},
	}
}

// TestClient_PutRelationAndDate: a relation picked at the site reaches stock ERP5 as exactly
// that document, even when its title is ambiguous (the uid in the relation subfield), and a
// date as its subfields.
func TestClient_PutRelationAndDate(t *testing.T) {
	sim, c := newSimClient(t, erp5sim.Options{})
	sim.Load(relationDocs())
	ctx := context.Background()
	_, err := c.Put(ctx, "sale_order_module/1", "Sale Order", map[string]any{
		"destination": "organisation_module/2", "start_date": "Tue, 23 Dec 2025 00:00:00 +0100"})
	if err != nil {
		t.Fatal(err)
	}
	d := sim.Document("sale_order_module/1")
	if d.Properties["destination"] != "organisation_module/2" {
		t.Errorf("destination = %v", d.Properties["destination"])
	}
	// start_date is date-only on SaleOrder_view: the day as written at the site.
	if d.Properties["start_date"] != "Tue, 23 Dec 2025 00:00:00 +0000" {
		t.Errorf("start_date = %v", d.Properties["start_date"])
	}
	if n := sim.Stats().Requests[erp5sim.EndpointSearch]; n != 1 {
		t.Errorf("%d searches for the related uid without a replica", n)
	}
	// With the replica's uid no search is made; clearing sends empty text.
	c.Related = func(_ context.Context, id, index string) (Related, bool) {
		if id == "organisation_module/1" {
			return Related{Text: "Sahel SA", UID: "1"}, true
		}
		return Related{}, false
	}
	if _, err := c.Put(ctx, "sale_order_module/1", "Sale Order", map[string]any{"destination": "organisation_module/1", "stop_date": nil}); err != nil {
		t.Fatal(err)
	}
	if d := sim.Document("sale_order_module/1"); d.Properties["destination"] != "organisation_module/1" || sim.Stats().Requests[erp5sim.EndpointSearch] != 1 {
		t.Errorf("destination = %v after %d searches", d.Properties["destination"], sim.Stats().Requests[erp5sim.EndpointSearch])
	}
	if _, err := c.Put(ctx, "sale_order_module/1", "Sale Order", map[string]any{"destination": nil}); err != nil {
		t.Fatal(err)
	}
	if v := sim.Document("sale_order_module/1").Properties["destination"]; v != nil {
		t.Errorf("cleared destination = %v", v)
	}
	// A state field is never written.
	if _, err := c.Put(ctx, "sale_order_module/1", "Sale Order", map[string]any{"simulation_state": "confirmed"}); err == nil {
		t.Error("a put of simulation_state was sent")
	}
}

// newSimClient serves a double on loopback and returns a client of it.
func newSimClient(t *testing.T, o erp5sim.Options) (*erp5sim.Server, *Client) {
	t.Helper()
	o.Logger = discardLogger()
	sim := erp5sim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, &Client{URL: srv.URL + sim.SitePath() + "/", Logger: discardLogger()}
}

// learnEnv is the downlink with a form store over a demo data set.
func learnEnv(t *testing.T, mode string, docs int) *dlEnv {
	return learnEnvOpts(t, mode, docs, erp5sim.Options{})
}

func learnEnvOpts(t *testing.T, mode string, docs int, o erp5sim.Options) *dlEnv {
	e := newDLEnv(t, linksim.Thuraya, optsFor(mode, o), demoScopes...)
	e.sim.Load(erp5sim.Generate(7, docs, time.Now().Add(-time.Hour)))
	e.dl.Forms = formsAdapter{e.store.DB}
	e.dl.Interval = time.Hour
	return e
}

// TestDownlink_LearnsForms learns the five demo types' forms (the lines' through the order's
// listbox) and workflows in both modes, and a head-office relabel or new field at the next
// refresh; an unchanged form keeps its learned_at.
func TestDownlink_LearnsForms(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := learnEnv(t, mode, 400)
				e.dl.Scopes = demoScopes[:4] // the lines come with the order's listbox
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				waitFor(t, time.Hour, "forms", func() bool { return len(learned(t, e.store.DB)) == 5 })
				got := learned(t, e.store.DB)
				so := got["Sale Order"]
				if so.Form == nil || so.Form.FormID != "SaleOrder_view" || so.Workflow == nil {
					t.Fatalf("Sale Order: %+v", so)
				}
				if so.Workflow.Complete != (mode == ModeBatch) {
					t.Errorf("workflow complete = %v", so.Workflow.Complete)
				}
				if st := so.Workflow.States["confirmed"]; st == nil || len(st.Transitions) != 0 || st.Title != "Confirmed" {
					t.Errorf("confirmed: %+v", st)
				}
				if st := so.Workflow.States["draft"]; st == nil || len(st.Transitions) != 5 || st.Transitions[2] != (WorkflowTransition{"confirm_action", "Confirm"}) {
					t.Errorf("draft: %+v", st)
				}
				if got["Sale Order Line"].Form == nil || got["Sale Order Line"].Workflow != nil {
					t.Errorf("line: %+v", got["Sale Order Line"])
				}
				if f := got["Person"].Form.Fields["my_subordination_title"]; f["property"] != "subordination" || f["editable"] != true {
					t.Errorf("relation field: %v", f)
				}
				rows, _ := e.store.DB.LearnedForms(context.Background())
				before := map[string]sqlite.LearnedForm{}
				for _, r := range rows {
					before[r.PortalType] = r
				}
				// Head office relabels a field and adds one.
				time.Sleep(time.Minute)
				must(t, e.sim.SetFieldTitle("Person", "my_title", "Full Name"))
				must(t, e.sim.AddField("Product", "right", erp5sim.FormField{ID: "my_hs_code", Type: erp5sim.StringField,
					Title: "HS Code", Editable: true, Property: "hs_code"}))
				e.settle("a pull without refresh")
				if learned(t, e.store.DB)["Person"].Form.Fields["my_title"]["title"] != "Title" {
					t.Error("the form was asked again before its interval")
				}
				e.dl.RefreshForms()
				waitFor(t, time.Hour, "the relabel", func() bool {
					return learned(t, e.store.DB)["Person"].Form.Fields["my_title"]["title"] == "Full Name"
				})
				after := learned(t, e.store.DB)
				if !slices.Contains(after["Product"].Form.Groups[1].Fields, "my_hs_code") {
					t.Errorf("the new field is missing: %+v", after["Product"].Form.Groups)
				}
				rows, _ = e.store.DB.LearnedForms(context.Background())
				for _, r := range rows {
					b := before[r.PortalType]
					changed := r.PortalType == "Person" || r.PortalType == "Product"
					if (r.Hash != b.Hash) != changed || r.LearnedAt.Equal(b.LearnedAt) == changed || !r.CheckedAt.After(b.CheckedAt) {
						t.Errorf("%s: hash %s→%s learned %v→%v checked %v→%v", r.PortalType, b.Hash[:8], r.Hash[:8],
							b.LearnedAt, r.LearnedAt, b.CheckedAt, r.CheckedAt)
					}
				}
			})
		})
	}
}

// TestFormsLearning_Figures measures what learning the five demo types' forms costs on the
// simulated Thuraya link: the first learning and a daily refresh, in bytes (both ways, as
// the link carries them) and round trips, with the receiver and with stock ERP5.
func TestFormsLearning_Figures(t *testing.T) {
	for _, tc := range []struct {
		mode string
		gzip bool // stock ERP5 behind a front end that compresses
	}{{ModeBatch, false}, {ModeStock, false}, {ModeStock, true}} {
		mode := tc.mode
		name := mode
		if tc.gzip {
			name += "-gzip"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := learnEnvOpts(t, mode, 3000, erp5sim.Options{GzipHAL: tc.gzip})
				e.dl.FormsInterval = -1 // learnt below, by hand
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				e.dl.Close(context.Background())
				ctx := context.Background()
				// Lines carry their order.
				line, err := e.store.GetDocument(ctx, "sale_order_module/1/1")
				must(t, err)
				if body, _ := sqlite.DecodeObject(line.Body); body["parent_relative_url"] != "sale_order_module/1" {
					t.Errorf("line: %v", body)
				}
				measure := func(what string) (int64, int) {
					m0, s0 := e.meter.Reading(), e.sim.Stats()
					rows, err := e.dl.Forms.LearnedForms(ctx)
					must(t, err)
					stored := map[string]*LearnedType{}
					for _, r := range rows {
						lt, _ := ParseStored(r)
						stored[r.PortalType] = lt
					}
					types := e.dl.formTypes(stored)
					if mode == ModeBatch {
						must(t, e.dl.learnReceiver(ctx, types, stored, &Capability{Encodings: []string{EncodingGzip}}))
					} else {
						must(t, e.dl.learnStock(ctx, types, stored))
					}
					m1, s1 := e.meter.Reading(), e.sim.Stats()
					n := 0
					var body int64
					for ep, c := range s1.Requests {
						n += c - s0.Requests[ep]
						body += s1.BytesOut[ep] - s0.BytesOut[ep]
					}
					total := m1.UpTotal + m1.DownTotal - m0.UpTotal - m0.DownTotal
					t.Logf("%-11s %-14s %6d B on the link (up %d, down %d), %d round trips, answers %d B",
						name, what, total, m1.UpTotal-m0.UpTotal, m1.DownTotal-m0.DownTotal, n, body)
					return total, n
				}
				first, _ := measure("first learning")
				if got := len(learned(t, e.store.DB)); got != 5 {
					t.Fatalf("%d types learned", got)
				}
				refresh, _ := measure("daily refresh")
				if (mode == ModeBatch || tc.gzip) && (first > 30_000 || refresh > 30_000) {
					t.Errorf("%s: first learning %d B, refresh %d B", name, first, refresh)
				}
				if mode == ModeBatch && refresh >= first {
					t.Errorf("receiver: the refresh (%d B) costs as much as the first learning (%d B)", refresh, first)
				}
				if mode == ModeStock && !tc.gzip {
					// What the answers weigh gzipped (a front end that compresses).
					var raw bytes.Buffer
					for _, id := range []string{"person_module/1", "organisation_module/1", "product_module/1", "sale_order_module/1", "sale_order_module/1/1"} {
						doc, err := e.client.traverseRaw(ctx, id)
						must(t, err)
						raw.Write(doc)
					}
					var z bytes.Buffer
					w := gzip.NewWriter(&z)
					w.Write(raw.Bytes())
					w.Close()
					t.Logf("stock: one traverse per type: %d B of answers, %d B gzipped", raw.Len(), z.Len())
				}
			})
		})
	}
}

// traverseRaw returns a document's traverse answer as sent.
func (c *Client) traverseRaw(ctx context.Context, id string) ([]byte, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return nil, err
	}
	u, err := c.expand(root.Traverse, map[string]any{"relative_url": id, "view": c.view()})
	if err != nil {
		return nil, err
	}
	ex, err := c.do(ctx, request{method: "GET", url: u, accept: halJSON, expect: 8192})
	if err != nil {
		return nil, err
	}
	return ex.body, nil
}
