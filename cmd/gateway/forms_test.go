package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/rpc"
)

// describeTypes is describe's result as the web app reads it.
type describeTypes struct {
	FormsHash    string `json:"forms_hash"`
	UpstreamMode string `json:"upstream_mode"`
	Types        []struct {
		PortalType string `json:"portal_type"`
		Form       *struct {
			FormID    string `json:"form_id"`
			Title     string `json:"title"`
			Hash      string `json:"hash"`
			LearnedAt string `json:"learned_at"`
			Groups    []struct {
				ID     string   `json:"id"`
				Fields []string `json:"fields"`
			} `json:"groups"`
			Fields map[string]map[string]any `json:"fields"`
		} `json:"form"`
		Workflow *struct {
			StateField string `json:"state_field"`
			States     map[string]struct {
				Title       string `json:"title"`
				Transitions []struct {
					Name  string `json:"name"`
					Title string `json:"title"`
				} `json:"transitions"`
			} `json:"states"`
			Complete bool `json:"complete"`
		} `json:"workflow"`
	} `json:"types"`
}

// TestDemo_FormsLearned: the demo starts with the five types' ERP5 forms and workflows
// learned (its export carries them), describe serves them with forms_hash and the upstream
// mode, and the seeded lines sit under their orders.
func TestDemo_FormsLearned(t *testing.T) {
	for _, stock := range []bool{false, true} {
		name := "receiver"
		if stock {
			name = "stock"
		}
		t.Run(name, func(t *testing.T) {
			d, _ := startTestDemo(t, DemoOptions{Seed: 3, Docs: 150, Open: true, Role: "supervisor", Stock: stock})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, d.Server.URL(), client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var res describeTypes
			waitUntil(t, 30*time.Second, "the upstream mode", func() bool {
				if err := c.Call(ctx, "describe", map[string]any{}, &res); err != nil {
					t.Fatal(err)
				}
				return res.UpstreamMode != rpc.UpstreamUnknown
			})
			if want := map[bool]string{false: rpc.UpstreamReceiver, true: rpc.UpstreamStock}[stock]; res.UpstreamMode != want {
				t.Errorf("upstream_mode = %q, want %q", res.UpstreamMode, want)
			}
			if res.FormsHash == "" {
				t.Error("no forms_hash")
			}
			got := map[string]bool{}
			for _, ty := range res.Types {
				if ty.Form == nil {
					continue
				}
				got[ty.PortalType] = true
				if ty.Form.Hash == "" || ty.Form.LearnedAt == "" || len(ty.Form.Groups) == 0 {
					t.Errorf("%s: form without hash, learned_at or groups: %+v", ty.PortalType, ty.Form)
				}
				switch ty.PortalType {
				case "Sale Order":
					lb := ty.Form.Fields["listbox"]
					if lb["type"] != "ListBox" || !slices.Equal(anyStrings(lb["listbox_portal_types"]), []string{"Sale Order Line"}) {
						t.Errorf("Sale Order listbox: %v", lb)
					}
					dest := ty.Form.Fields["my_destination_title"]
					if dest["property"] != "destination" || dest["editable"] != true || dest["type"] != "RelationStringField" {
						t.Errorf("my_destination_title: %v", dest)
					}
					st := ty.Form.Fields["my_translated_simulation_state"]
					if st["editable"] != false || st["property"] != "simulation_state" {
						t.Errorf("state field: %v", st)
					}
					if ty.Workflow == nil || ty.Workflow.StateField != "simulation_state" || !ty.Workflow.Complete {
						t.Fatalf("Sale Order workflow: %+v", ty.Workflow)
					}
					if n := len(ty.Workflow.States["confirmed"].Transitions); n != 0 {
						t.Errorf("confirmed offers %d transitions", n)
					}
					var names []string
					for _, tr := range ty.Workflow.States["planned"].Transitions {
						names = append(names, tr.Name)
					}
					if !slices.Equal(names, []string{"cancel_action", "confirm_action", "order_action"}) {
						t.Errorf("planned offers %v", names)
					}
				case "Product":
					items, _ := ty.Form.Fields["my_quantity_unit"]["items"].([]any)
					if len(items) < 5 {
						t.Errorf("quantity unit items: %v", items)
					}
				}
			}
			for _, pt := range []string{"Person", "Organisation", "Product", "Sale Order", "Sale Order Line"} {
				if !got[pt] {
					t.Errorf("no form learned for %s", pt)
				}
			}
			// Lines are under their orders.
			var lines struct {
				Rows []struct {
					ID  string          `json:"id"`
					Doc json.RawMessage `json:"doc"`
				} `json:"rows"`
			}
			q := map[string]any{"query": `portal_type:"Sale Order Line"`, "include_docs": true, "limit": []int{0, 5}}
			if err := c.Call(ctx, "allDocs", q, &lines); err != nil {
				t.Fatal(err)
			}
			if len(lines.Rows) == 0 {
				t.Fatal("no lines")
			}
			for _, r := range lines.Rows {
				var doc map[string]any
				json.Unmarshal(r.Doc, &doc)
				if p, _ := doc["parent_relative_url"].(string); p == "" || r.ID[:len(p)] != p {
					t.Errorf("line %s has parent_relative_url %v", r.ID, doc["parent_relative_url"])
				}
			}
		})
	}
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// TestDemo_OrderWithLines is the write side of ERP5's forms, in both modes: an order whose
// customer was picked (a relative URL) and whose date was chosen, three lines posted under
// the order while its own post is still pending, and a confirmation (shown as pending with
// its transition while the link is down). The double ends with the order's relation as that
// document, the date as chosen and the three lines under the order; with the receiver the
// order is confirmed, in stock mode the action waits for the receiver.
func TestDemo_OrderWithLines(t *testing.T) {
	for _, stock := range []bool{false, true} {
		name := map[bool]string{false: "receiver", true: "stock"}[stock]
		t.Run(name, func(t *testing.T) {
			d, _ := startTestDemo(t, DemoOptions{Seed: 4, Docs: 150, Open: true, Role: "supervisor", Stock: stock})
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, d.Server.URL(), client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Two organisations share a title: only the relative URL says which one.
			must(t, d.Sim.Edit("organisation_module/3", map[string]any{"title": "Twin SA"}))
			must(t, d.Sim.Edit("organisation_module/4", map[string]any{"title": "Twin SA"}))
			d.Link.SetDown(true)
			var res struct {
				ID string `json:"id"`
			}
			call := func(method string, params any) {
				t.Helper()
				if err := c.Call(ctx, method, params, &res); err != nil {
					t.Fatalf("%s: %v", method, err)
				}
			}
			call("post", map[string]any{"doc": map[string]any{"portal_type": "Sale Order", "title": "Site order 77",
				"destination": "organisation_module/4", "start_date": "Tue, 23 Dec 2025 00:00:00 +0100"}})
			order := res.ID
			for i := range 3 {
				call("post", map[string]any{"doc": map[string]any{"portal_type": "Sale Order Line", "parent_relative_url": order,
					"resource": fmt.Sprintf("product_module/%d", i+1), "quantity": i + 2}})
			}
			call("action", map[string]any{"id": order, "transition": "confirm_action"})
			var st struct {
				States map[string]struct {
					State      string `json:"state"`
					Transition string `json:"transition"`
				} `json:"states"`
			}
			if err := c.Call(ctx, "sync", map[string]any{"ids": []string{order}}, &st); err != nil {
				t.Fatal(err)
			}
			if s := st.States[order]; s.State != "pending" || s.Transition != "confirm_action" {
				t.Errorf("sync state of the order: %+v", s)
			}
			d.Link.SetDown(false)
			d.Server.Uplink.Flush()
			var so *erp5sim.Document
			waitUntil(t, 90*time.Second, "the order and its lines at the double", func() bool {
				so = nil
				lines := 0
				for _, doc := range d.Sim.Documents() {
					if doc.PortalType == "Sale Order" && doc.Properties["title"] == "Site order 77" {
						so = doc
					}
				}
				if so == nil {
					return false
				}
				for _, doc := range d.Sim.Documents() {
					if doc.PortalType == "Sale Order Line" && strings.HasPrefix(doc.ID, so.ID+"/") && doc.Properties["resource"] != nil {
						lines++
					}
				}
				return lines == 3 && (stock || so.Properties["simulation_state"] == "confirmed")
			})
			if so.Properties["destination"] != "organisation_module/4" {
				t.Errorf("destination = %v", so.Properties["destination"])
			}
			got, _ := time.Parse(time.RFC1123Z, fmt.Sprint(so.Properties["start_date"]))
			if stock {
				// Base_edit's date-only subfields: the day chosen.
				if y, m, day := got.Date(); y != 2025 || m != 12 || day != 23 {
					t.Errorf("start_date = %v", so.Properties["start_date"])
				}
			} else if want := time.Date(2025, 12, 22, 23, 0, 0, 0, time.UTC); !got.Equal(want) {
				t.Errorf("start_date = %v, want the instant %v", so.Properties["start_date"], want)
			}
			if stock && so.Properties["simulation_state"] != "draft" {
				t.Errorf("stock ERP5 applied a workflow action: %v", so.Properties["simulation_state"])
			}
			// status carries the forms hash describe gives.
			var status struct {
				FormsHash    string `json:"forms_hash"`
				UpstreamMode string `json:"upstream_mode"`
			}
			var desc describeTypes
			if err := c.Call(ctx, "status", map[string]any{}, &status); err != nil {
				t.Fatal(err)
			}
			if err := c.Call(ctx, "describe", map[string]any{}, &desc); err != nil {
				t.Fatal(err)
			}
			if status.FormsHash == "" || status.FormsHash != desc.FormsHash || status.UpstreamMode != desc.UpstreamMode {
				t.Errorf("status %+v, describe %s %s", status, desc.FormsHash, desc.UpstreamMode)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDocsImport_Forms: an export's forms line is learned by `docs import --set-cursors`;
// a bad one fails the import with its reason; a plain import leaves forms lines to the
// importer (they are not documents).
func TestDocsImport_Forms(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	sim := erp5sim.New(erp5sim.Options{})
	forms, err := json.Marshal(map[string]any{"forms": sim.FormsAnswer([]string{"Person", "Sale Order"})})
	if err != nil {
		t.Fatal(err)
	}
	in := string(forms) + "\n" + `{"id":"person_module/7","doc":{"portal_type":"Person","title":"Known"},"version":"2026-11-20T10:00:00.000001Z"}` + "\n"
	out, errOut, code := runDocs(t, in, "--data-dir", dir, "docs", "import", "--set-cursors", "-")
	if code != 0 || !strings.Contains(out, "learned the forms of 3 portal types") || !strings.Contains(out, "imported 1 documents") {
		t.Fatalf("import: exit %d: %s %s", code, out, errOut)
	}
	m := NewMain()
	m.Config = DefaultConfig()
	m.Config.DataDir = dir
	db, err := m.OpenDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.LearnedForms(context.Background())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range rows {
		types = append(types, r.PortalType)
	}
	if !slices.Equal(types, []string{"Person", "Sale Order", "Sale Order Line"}) {
		t.Errorf("learned %v", types)
	}
	bad := `{"forms":{"types":[{"portal_type":"Person","form":{"group_list":[["left"]]}}]}}` + "\n"
	if _, errOut, code := runDocs(t, bad, "--data-dir", t.TempDir(), "docs", "import", "--set-cursors", "-"); code == 0 || !strings.Contains(errOut, "forms record") {
		t.Errorf("a bad forms line: exit %d: %s", code, errOut)
	}
}
