package main

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

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
