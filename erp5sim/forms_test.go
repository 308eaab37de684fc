package erp5sim_test

import (
	"fmt"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
)

// orderDocs are organisations (two with one title), products and a draft order with a line.
func orderDocs() []*erp5sim.Document {
	at := t0.Add(-time.Hour)
	doc := func(id, pt string, p map[string]any) *erp5sim.Document {
		return &erp5sim.Document{ID: id, PortalType: pt, ModificationDate: at, Properties: p}
	}
	return []*erp5sim.Document{
		doc("organisation_module/1", "Organisation", map[string]any{"title": "Sahel SA", "validation_state": "validated"}),
		doc("organisation_module/2", "Organisation", map[string]any{"title": "Sahel SA", "validation_state": "validated"}),
		doc("organisation_module/3", "Organisation", map[string]any{"title": "Delta SARL", "validation_state": "validated"}),
		doc("person_module/1", "Person", map[string]any{"title": "Delta SARL", "validation_state": "validated"}),
		doc("sale_order_module/1", "Sale Order", map[string]any{"title": "SO1", "destination": "organisation_module/3",
			"simulation_state": "draft", "price_currency": "currency_module/EUR"}),
		doc("sale_order_module/1/1", "Sale Order Line", map[string]any{"resource": "product_module/1", "quantity": "3", "simulation_state": "draft"}),
		doc("sale_order_module/2", "Sale Order", map[string]any{"title": "SO2", "simulation_state": "ordered"}),
		doc("sale_order_module/3", "Sale Order", map[string]any{"title": "SO3", "simulation_state": "confirmed"}),
		doc("sale_order_module/4", "Sale Order", map[string]any{"title": "SO4", "simulation_state": "cancelled"}),
	}
}

// TestServer_FormRendering: a traverse renders ERP5's form: flags as 1/0 (true/false with
// BoolFlags), group_list, relation fields with the related titles and relative URLs, the
// translated state, and per-state action_workflow (one entry: an object; none: absent).
func TestServer_FormRendering(t *testing.T) {
	for _, boolFlags := range []bool{false, true} {
		s, c := newDouble(t, erp5sim.Options{BoolFlags: boolFlags})
		s.Load(orderDocs())
		root := c.root(s)
		doc := c.traverse(s, root, "sale_order_module/1").json(t)
		view := dig(t, doc, "_embedded", "_view")
		dest := dig(t, view, "my_destination_title").(map[string]any)
		wantEditable := map[bool]string{false: "1", true: "true"}[boolFlags]
		if fmt.Sprint(dest["editable"]) != wantEditable || fmt.Sprint(dest["default"]) != "[Delta SARL]" ||
			fmt.Sprint(dest["relation_item_relative_url"]) != "[organisation_module/3]" || dest["catalog_index"] != "title" {
			t.Errorf("bool flags %v: my_destination_title = %v", boolFlags, dest)
		}
		if st := dig(t, view, "my_translated_simulation_state").(map[string]any); st["default"] != "Draft" || fmt.Sprint(st["editable"]) == wantEditable {
			t.Errorf("state field = %v", st)
		}
		groups := dig(t, view, "_embedded", "form_definition", "group_list").([]any)
		if len(groups) != 4 || groups[3].([]any)[0] != "bottom" {
			t.Errorf("group_list = %v", groups)
		}
		if lb := dig(t, view, "listbox").(map[string]any); fmt.Sprint(lb["portal_type"]) != "[[Sale Order Line Sale Order Line]]" {
			t.Errorf("listbox = %v", lb)
		}
		aw := dig(t, doc, "_links", "action_workflow").([]any)
		if len(aw) != 5 {
			t.Errorf("draft offers %d transitions", len(aw))
		}
		// ordered → cancel, confirm; confirmed → none.
		if aw := dig(t, c.traverse(s, root, "sale_order_module/2").json(t), "_links", "action_workflow").([]any); len(aw) != 2 {
			t.Errorf("ordered: %v", aw)
		}
		links := dig(t, c.traverse(s, root, "sale_order_module/3").json(t), "_links").(map[string]any)
		if _, ok := links["action_workflow"]; ok {
			t.Errorf("confirmed offers %v", links["action_workflow"])
		}
		// A cancelled order: one transition, an object.
		if aw, ok := dig(t, c.traverse(s, root, "sale_order_module/4").json(t), "_links", "action_workflow").(map[string]any); !ok || aw["name"] != "delete_action" {
			t.Errorf("cancelled order: %v", aw)
		}
	}
}

// TestServer_BaseEditRelations is ERP5's relation check in Base_edit: a uid names the
// document; unchanged text leaves it; empty clears it; other text is searched within the
// field's portal types (none and several are errors).
func TestServer_BaseEditRelations(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(orderDocs())
	root := c.root(s)
	put := str(t, c.traverse(s, root, "sale_order_module/1").json(t), "_embedded", "_view", "_actions", "put", "href")
	uid := func(id string) string {
		r := c.get(expand(str(t, root, "_links", "raw_search", "href"), map[string]any{"query": `relative_url:"` + id + `"`, "select_list": []string{"uid"}}))
		return fmt.Sprint(dig(t, r.json(t), "_embedded", "contents").([]any)[0].(map[string]any)["uid"])
	}
	dest := func() any { return s.Document("sale_order_module/1").Properties["destination"] }
	for _, tc := range []struct {
		name   string
		fields []string
		status int
		want   any
	}{
		{"unchanged text", []string{"field_my_destination_title", "Delta SARL"}, 200, "organisation_module/3"},
		{"ambiguous", []string{"field_my_destination_title", "Sahel SA"}, 400, "organisation_module/3"},
		{"not found", []string{"field_my_destination_title", "Nobody"}, 400, "organisation_module/3"},
		{"uid", []string{"field_my_destination_title", "Sahel SA", "subfield_field_my_destination_title_relation", uid("organisation_module/2")}, 200, "organisation_module/2"},
		{"uid of another type", []string{"field_my_destination_title", "x", "subfield_field_my_destination_title_relation", uid("sale_order_module/2")}, 400, "organisation_module/2"},
		{"searched text", []string{"field_my_destination_title", "Delta SARL"}, 400, "organisation_module/2"}, // an Organisation and a Person
		{"cleared", []string{"field_my_destination_title", ""}, 200, nil},
	} {
		r := c.postForm(put, append([]string{"form_id", "SaleOrder_view"}, tc.fields...)...)
		if r.status != tc.status || fmt.Sprint(dest()) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %d %v, want %d %v: %s", tc.name, r.status, dest(), tc.status, tc.want, r.body)
		}
	}
	r := c.postForm(put, "form_id", "SaleOrder_view", "field_my_destination_title", "Nobody")
	if got := str(t, r.json(t), "_embedded", "_view", "my_destination_title", "error_text"); got != "No such document was found." {
		t.Errorf("error_text = %q", got)
	}
}

// TestServer_BaseEditDatesListsState: dates come as subfields (a date-only field keeps the
// day), a list value must be one of the items, and a read-only state field is ignored.
func TestServer_BaseEditDatesListsState(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(orderDocs())
	root := c.root(s)
	put := str(t, c.traverse(s, root, "sale_order_module/1").json(t), "_embedded", "_view", "_actions", "put", "href")
	r := c.postForm(put, "form_id", "SaleOrder_view",
		"subfield_field_my_start_date_year", "2026", "subfield_field_my_start_date_month", "2", "subfield_field_my_start_date_day", "14",
		"field_my_price_currency", "currency_module/XOF", "field_my_translated_simulation_state", "Confirmed",
		"field_my_stop_date", "Tue, 23 Dec 2025 23:04:34 +0000")
	if r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	d := s.Document("sale_order_module/1")
	if d.Properties["start_date"] != "Sat, 14 Feb 2026 00:00:00 +0000" || d.Properties["price_currency"] != "currency_module/XOF" ||
		d.Properties["simulation_state"] != "draft" || d.Properties["stop_date"] != nil {
		t.Errorf("after put: %v", d.Properties)
	}
	for name, fields := range map[string][]string{
		"31 February": {"subfield_field_my_start_date_year", "2026", "subfield_field_my_start_date_month", "2", "subfield_field_my_start_date_day", "31"},
		"not in list": {"field_my_price_currency", "currency_module/GBP"},
	} {
		if r := c.postForm(put, append([]string{"form_id", "SaleOrder_view"}, fields...)...); r.status != 400 {
			t.Errorf("%s: %d", name, r.status)
		}
	}
	r = c.postForm(put, "form_id", "SaleOrder_view", "subfield_field_my_start_date_year", "", "subfield_field_my_start_date_month", "",
		"subfield_field_my_start_date_day", "")
	if r.status != 200 || s.Document("sale_order_module/1").Properties["start_date"] != nil {
		t.Errorf("clearing the date: %d %v", r.status, s.Document("sale_order_module/1").Properties["start_date"])
	}
	// A date and time with a time zone, on a form whose field is not date-only.
	f := s.Form("Sale Order")
	delete(f.Fields["my_stop_date"].Extra, "date_only")
	s.SetForm("Sale Order", f)
	r = c.postForm(put, "form_id", "SaleOrder_view", "subfield_field_my_stop_date_year", "2026", "subfield_field_my_stop_date_month", "1",
		"subfield_field_my_stop_date_day", "5", "subfield_field_my_stop_date_hour", "9", "subfield_field_my_stop_date_minute", "30",
		"subfield_field_my_stop_date_timezone", "GMT+1")
	if got := s.Document("sale_order_module/1").Properties["stop_date"]; r.status != 200 || got != "Mon, 05 Jan 2026 08:30:00 +0000" {
		t.Errorf("stop_date: %d %v", r.status, got)
	}
}

// TestServer_FormChangesAtRuntime: a relabel and a new field show in the next traverse and
// the forms answer's tag changes.
func TestServer_FormChangesAtRuntime(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(orderDocs())
	tag := func() string {
		_, got := c.postJSON(s, erp5sim.FormsScript, "", map[string]any{"portal_types": []string{"Person"}})
		return fmt.Sprint(got["types"].([]any)[0].(map[string]any)["tag"])
	}
	before := tag()
	if err := s.SetFieldTitle("Person", "my_title", "Full Name"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddField("Person", "right", erp5sim.FormField{ID: "my_nickname", Type: erp5sim.StringField, Title: "Nickname", Editable: true, Property: "nickname"}); err != nil {
		t.Fatal(err)
	}
	view := dig(t, c.traverse(s, c.root(s), "person_module/1").json(t), "_embedded", "_view")
	if str(t, view, "my_title", "title") != "Full Name" || str(t, view, "my_nickname", "title") != "Nickname" {
		t.Errorf("after the change: %v", view)
	}
	if tag() == before {
		t.Error("the tag did not change")
	}
	if err := s.SetFieldTitle("Person", "my_nothing", "x"); err == nil {
		t.Error("relabelled a missing field")
	}
}
