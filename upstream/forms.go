package upstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Form is an ERP5 view form as the site serves it to the web app (docs/DESIGN.md §3,
// describe): ERP5's groups in order, and per field its type, labels, flags normalised to
// booleans, the replica property it reads and writes, and the keys of its type.
type Form struct {
	FormID string      `json:"form_id"`
	Title  string      `json:"title"`
	Groups []FormGroup `json:"groups"`
	// Fields maps a field id (my_title) to its description: type, title, description,
	// required, editable, property, then the type's own keys (items, date_only, precision,
	// portal_types, catalog_index, column_list, listbox_portal_types…).
	Fields map[string]map[string]any `json:"fields"`
}

// FormGroup is one group of a form (left, right, center, bottom) with its fields in order.
type FormGroup struct {
	ID     string   `json:"id"`
	Fields []string `json:"fields"`
}

// Workflow is the workflow graph of a portal type: its state variable and, per state, the
// transitions ERP5 offers in it. Complete is false when it was learned from documents'
// links and some states were never seen.
type Workflow struct {
	StateField string                    `json:"state_field"`
	States     map[string]*WorkflowState `json:"states"`
	Complete   bool                      `json:"complete"`
}

// WorkflowState is one state: its title and the transitions available in it.
type WorkflowState struct {
	Title       string               `json:"title"`
	Transitions []WorkflowTransition `json:"transitions"`
}

// WorkflowTransition is a transition (ERP5's action id, e.g. confirm_action) and its title.
type WorkflowTransition struct {
	Name  string `json:"name"`
	Title string `json:"title"`
}

// LearnedType is what the downlink learned about one portal type: its view form and its
// workflow (either may be nil), their hash, and ERP5's tag of its answer (the receiver's;
// "" in stock mode).
type LearnedType struct {
	PortalType string
	Form       *Form
	Workflow   *Workflow
	Tag        string
}

// Hash returns the hex SHA-256 of the type's form and workflow as the site stores them: it
// changes whenever either does.
func (t *LearnedType) Hash() string {
	b, _ := marshalCanonical(map[string]any{"form": t.Form, "workflow": t.Workflow})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// marshalCanonical encodes v as JSON with sorted keys and no HTML escaping.
func marshalCanonical(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Flag reads a Formulator flag (editable, hidden, required) as ERP5 writes it: 1 or 0, and
// true or false as jIO's fixtures write it. Anything else is false (docs/DESIGN.md appendix A).
func Flag(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case json.Number:
		return x.String() == "1" || x.String() == "1.0"
	case float64:
		return x == 1
	case int:
		return x == 1
	case json.RawMessage:
		var y any
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		if d.Decode(&y) != nil {
			return false
		}
		return Flag(y)
	}
	return false
}

// relationTypes are the field types whose value is a relation (docs/DESIGN.md appendix A).
var relationTypes = map[string]bool{"RelationStringField": true, "MultiRelationStringField": true}

// multiTypes are the field types whose value is a list.
var multiTypes = map[string]bool{"MultiRelationStringField": true, "MultiListField": true, "MultiCheckBoxField": true,
	"ParallelListField": true, "LinesField": true}

// FieldProperty returns the replica property a form field reads and writes: for a my_ field
// its id without my_; for a relation field its base category (the field's base_category
// when ERP5 gives it, else my_destination_title without its catalog index →
// destination); for ERP5's translated state fields (my_translated_simulation_state) the
// state variable. Other fields (your_, ListBox) have none: "".
func FieldProperty(id, typ string, spec map[string]any) string {
	rest, ok := strings.CutPrefix(id, "my_")
	if !ok || typ == "ListBox" || typ == "FormBox" || typ == "MatrixBox" {
		return ""
	}
	if relationTypes[typ] {
		if bc, ok := spec["base_category"].(string); ok && bc != "" {
			return bc
		}
		index, _ := spec["catalog_index"].(string)
		if index == "" {
			index = "title"
		}
		rest = strings.TrimSuffix(rest, "_list")
		if r, ok := strings.CutSuffix(rest, "_"+index); ok && r != "" {
			return r
		}
		return rest
	}
	if st, ok := strings.CutPrefix(rest, "translated_"); ok && strings.HasSuffix(st, "_state") {
		return st
	}
	return rest
}

// passKeys are the type-specific keys a form field keeps (docs/DESIGN.md appendix A), as ERP5 sends
// them. Document-specific keys (default, key, url, relation_item_*, query,
// list_method_template) are left out.
var passKeys = []string{
	"items", "first_item", "select_first_item", "orientation", "sub_select_key", "sub_input_key",
	"date_only", "ampm_time_style", "timezone_style", "allow_empty_time", "hide_day", "hidden_day_is_last_day",
	"precision", "input_style",
	"portal_types", "catalog_index", "allow_jump", "allow_creation", "base_category",
	"column_list", "all_column_list", "search_column_list", "sort_column_list", "editable_column_list",
	"sort", "show_anchor", "lines", "list_method", "default_params",
}

// boolKeys are type-specific keys that are Formulator flags: normalised to booleans too.
var boolKeys = map[string]bool{"date_only": true, "ampm_time_style": true, "timezone_style": true, "allow_empty_time": true,
	"hide_day": true, "hidden_day_is_last_day": true, "allow_jump": true, "allow_creation": true, "first_item": true,
	"select_first_item": true, "show_anchor": true}

// normaliseField turns one field as ERP5 renders it into the site's description.
func normaliseField(id string, raw map[string]any) map[string]any {
	typ, _ := raw["type"].(string)
	title, _ := raw["title"].(string)
	desc, _ := raw["description"].(string)
	f := map[string]any{
		"type": typ, "title": title, "description": desc,
		"required": Flag(raw["required"]), "editable": Flag(raw["editable"]),
		"property": FieldProperty(id, typ, raw),
	}
	for _, k := range passKeys {
		v, ok := raw[k]
		if !ok {
			continue
		}
		if boolKeys[k] {
			v = Flag(v)
		}
		f[k] = v
	}
	if multiTypes[typ] {
		f["multiple"] = true
	}
	if typ == "ListBox" {
		// ListBox's portal_type is a list of [id, title] pairs: the ids are the types listed.
		var pts []any
		if list, ok := raw["portal_type"].([]any); ok {
			for _, p := range list {
				switch x := p.(type) {
				case []any:
					if len(x) > 0 {
						pts = append(pts, x[0])
					}
				case string:
					pts = append(pts, x)
				}
			}
		}
		if pts == nil {
			pts = []any{}
		}
		f["listbox_portal_types"] = pts
		f["editable"] = false
	}
	return f
}

// formSource is a form as either ERP5 answer carries it: id, title, ordered groups of field
// ids, and the raw fields.
type formSource struct {
	formID, title string
	groups        []FormGroup
	fields        map[string]map[string]any
}

// normalise builds the site's form: groups in ERP5's order without the hidden group, only
// fields ERP5 rendered and did not hide; a form without groups gets every my_ field in one
// "left" group, sorted.
func (src formSource) normalise() *Form {
	f := &Form{FormID: src.formID, Title: src.title, Groups: []FormGroup{}, Fields: map[string]map[string]any{}}
	usable := func(id string) bool {
		raw, ok := src.fields[id]
		return ok && id != "form_id" && !Flag(raw["hidden"])
	}
	groups := src.groups
	if len(groups) == 0 {
		var ids []string
		for id := range src.fields {
			if strings.HasPrefix(id, "my_") && id != "my_id" {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		groups = []FormGroup{{ID: "left", Fields: ids}}
	}
	for _, g := range groups {
		if g.ID == "hidden" {
			continue
		}
		out := FormGroup{ID: g.ID, Fields: []string{}}
		for _, id := range g.Fields {
			if !usable(id) || f.Fields[id] != nil {
				continue
			}
			out.Fields = append(out.Fields, id)
			f.Fields[id] = normaliseField(id, src.fields[id])
		}
		f.Groups = append(f.Groups, out)
	}
	return f
}

// decodeUseNumber decodes JSON with numbers kept as json.Number.
func decodeUseNumber(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// ParseViewForm builds the site's form from a traverse's `_embedded._view` (docs/DESIGN.md appendix A
// §1): form_id's default, form_definition's title and group_list, and the rendered fields.
// It returns nil when the answer carries no view.
func ParseViewForm(view map[string]json.RawMessage) (*Form, error) {
	if len(view) == 0 {
		return nil, nil
	}
	src := formSource{fields: map[string]map[string]any{}}
	for id, msg := range view {
		if strings.HasPrefix(id, "_") {
			continue
		}
		var raw map[string]any
		if err := decodeUseNumber(msg, &raw); err != nil {
			continue // not a field
		}
		if _, ok := raw["type"]; !ok && id != "form_id" {
			continue
		}
		src.fields[id] = raw
	}
	if fid, ok := src.fields["form_id"]; ok {
		src.formID, _ = fid["default"].(string)
	}
	var emb struct {
		FormDefinition struct {
			Title     string            `json:"title"`
			GroupList []json.RawMessage `json:"group_list"`
		} `json:"form_definition"`
	}
	if raw, ok := view["_embedded"]; ok {
		if err := json.Unmarshal(raw, &emb); err != nil {
			return nil, fmt.Errorf("form_definition: %w", err)
		}
	}
	src.title = emb.FormDefinition.Title
	for _, g := range emb.FormDefinition.GroupList {
		// [group_id, [[field_id, {meta_type}], …]]
		var pair []json.RawMessage
		if err := json.Unmarshal(g, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("group_list: a group is not [id, fields]")
		}
		var gid string
		if err := json.Unmarshal(pair[0], &gid); err != nil {
			return nil, fmt.Errorf("group_list: a group id is not a string")
		}
		var entries []json.RawMessage
		if err := json.Unmarshal(pair[1], &entries); err != nil {
			return nil, fmt.Errorf("group_list: group %s: fields are not a list", gid)
		}
		grp := FormGroup{ID: gid}
		for _, e := range entries {
			var fe []json.RawMessage
			var id string
			if json.Unmarshal(e, &fe) == nil && len(fe) > 0 {
				json.Unmarshal(fe[0], &id)
			} else {
				json.Unmarshal(e, &id)
			}
			if id != "" {
				grp.Fields = append(grp.Fields, id)
			}
		}
		src.groups = append(src.groups, grp)
	}
	return src.normalise(), nil
}

// ParseActionWorkflow reads a document's `_links.action_workflow`: a list of links, or one
// link object (ERP5 writes a one-entry list as an object); absent is none.
func ParseActionWorkflow(raw json.RawMessage) ([]WorkflowTransition, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return []WorkflowTransition{}, nil
	}
	type entry struct {
		Name  string `json:"name"`
		Title string `json:"title"`
	}
	var list []entry
	if raw[0] == '{' {
		var one entry
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("action_workflow: %w", err)
		}
		list = []entry{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("action_workflow: %w", err)
	}
	out := make([]WorkflowTransition, 0, len(list))
	for _, e := range list {
		if e.Name == "" {
			continue
		}
		out = append(out, WorkflowTransition{Name: e.Name, Title: e.Title})
	}
	return out, nil
}

// StateField returns the workflow state variable a form shows (the property of a field
// such as my_translated_simulation_state), "" when it shows none.
func (f *Form) StateField() string {
	if f == nil {
		return ""
	}
	for _, g := range f.Groups {
		for _, id := range g.Fields {
			p, _ := f.Fields[id]["property"].(string)
			if strings.HasSuffix(p, "_state") {
				return p
			}
		}
	}
	return ""
}

// EmbeddedTypes returns the portal types a form's listboxes list (Sale Order Line for a
// Sale Order), in order.
func (f *Form) EmbeddedTypes() []string {
	if f == nil {
		return nil
	}
	var out []string
	for _, g := range f.Groups {
		for _, id := range g.Fields {
			list, _ := f.Fields[id]["listbox_portal_types"].([]any)
			for _, p := range list {
				if s, ok := p.(string); ok && s != "" && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}
