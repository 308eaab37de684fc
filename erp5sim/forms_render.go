package erp5sim

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Form returns a copy of the view form of a portal type, or nil when the double renders the
// type with an open form (every property a StringField).
func (s *Server) Form(portalType string) *FormDef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.forms[portalType]; f != nil {
		return f.clone()
	}
	return nil
}

// SetForm replaces the view form of a portal type, as a head-office developer would (nil:
// the open form). The next traverse and the receiver's forms answer show it.
func (s *Server) SetForm(portalType string, f *FormDef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		delete(s.forms, portalType)
		return
	}
	s.forms[portalType] = f.clone()
}

// SetFieldTitle relabels a field of a portal type's view form.
func (s *Server) SetFieldTitle(portalType, fieldID, title string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.forms[portalType]
	if f == nil || f.Fields[fieldID] == nil {
		return fmt.Errorf("set field title: %s has no field %s", portalType, fieldID)
	}
	f = f.clone()
	f.Fields[fieldID].Title = title
	s.forms[portalType] = f
	return nil
}

// AddField adds a field at the end of a group of a portal type's view form (the group is
// created when missing).
func (s *Server) AddField(portalType, group string, ff FormField) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.forms[portalType]
	switch {
	case f == nil:
		return fmt.Errorf("add field: %s has no form", portalType)
	case ff.ID == "" || f.Fields[ff.ID] != nil:
		return fmt.Errorf("add field: %s: the field id %q is empty or taken", portalType, ff.ID)
	}
	f = f.clone()
	ff.Extra = maps.Clone(ff.Extra)
	if ff.Extra == nil {
		ff.Extra = map[string]any{}
	}
	f.Fields[ff.ID] = &ff
	i := slices.IndexFunc(f.Groups, func(g FormGroup) bool { return g.ID == group })
	if i < 0 {
		f.Groups = append(f.Groups, FormGroup{ID: group})
		i = len(f.Groups) - 1
	}
	f.Groups[i].Fields = append(f.Groups[i].Fields, ff.ID)
	s.forms[portalType] = f
	return nil
}

// Workflow returns a copy of the workflow graph of a portal type, or nil.
func (s *Server) Workflow(portalType string) *WorkflowDef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workflows[portalType]; w != nil {
		c := *w
		c.States = slices.Clone(w.States)
		c.Titles = maps.Clone(w.Titles)
		return &c
	}
	return nil
}

// flag renders a Formulator flag as ERP5 does: 1 or 0 (true/false with Options.BoolFlags,
// as jIO's fixtures write them).
func (s *Server) flag(b bool) any {
	if s.opts.BoolFlags {
		return b
	}
	if b {
		return 1
	}
	return 0
}

// hasView reports whether a traverse's view renders the document's view form: "view" (the
// object_view action every portal type has), jio_view with Options.JioView, and the names in
// Options.Views.
func (s *Server) hasView(view string) bool {
	return view == "view" || view == "jio_view" && s.opts.JioView || slices.Contains(s.opts.Views, view)
}

// titleOfLocked returns the title of a document ("" when missing).
func (s *Server) titleOfLocked(id string) string {
	if d := s.docs[id]; d != nil {
		t, _ := d.Properties["title"].(string)
		return t
	}
	return ""
}

// relationValues returns the relative URLs a relation property holds.
func relationValues(v any) []string {
	switch x := v.(type) {
	case string:
		if x != "" {
			return []string{x}
		}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// renderFormLocked renders a document's `_embedded._view` from its portal type's form, as
// ERP5Document_getHateoas's renderForm does: form_id, the form definition with its
// group_list, one entry per field with its value, and the put action.
func (s *Server) renderFormLocked(r *http.Request, d *Document, f *FormDef, errs map[string]string) map[string]any {
	title, _ := d.Properties["title"].(string)
	view := map[string]any{
		"_debug": f.ID,
		"form_id": map[string]any{"key": "form_id", "default": f.ID, "editable": s.flag(false), "hidden": s.flag(true),
			"type": string(StringField), "title": "form_id", "description": "", "css_class": "", "required": s.flag(false)},
		"_links": map[string]any{
			"self":               link(s.traverseURL(r, d.ID, "view")),
			"traversed_document": map[string]any{"href": urn(d.ID), "name": d.ID, "title": title},
			"form_definition":    map[string]any{"href": urn("portal_skins/erp5_sim/" + f.ID), "name": f.ID},
		},
	}
	var groups []any
	for _, g := range f.Groups {
		list := make([]any, 0, len(g.Fields))
		for _, id := range g.Fields {
			list = append(list, []any{id, map[string]any{"meta_type": "ProxyField"}})
		}
		groups = append(groups, []any{g.ID, list})
	}
	view["_embedded"] = map[string]any{"form_definition": map[string]any{
		"group_list": groups, "title": f.Title, "pt": "form_view", "action": "Base_edit", "action_title": "",
		"update_action": "", "update_action_title": "",
	}}
	state := ""
	if w := s.workflows[d.PortalType]; w != nil {
		state, _ = d.Properties[w.StateVar].(string)
	}
	for _, id := range f.order() {
		ff := f.Fields[id]
		fv := map[string]any{
			"key": "field_" + id, "type": string(ff.Type), "title": ff.Title, "description": ff.Description,
			"css_class": "", "editable": s.flag(ff.Editable && !d.ReadOnly), "hidden": s.flag(ff.Hidden),
		}
		if ff.Type != ListBox {
			fv["required"] = s.flag(ff.Required)
		}
		for k, v := range ff.Extra {
			fv[k] = v
		}
		var val any
		if ff.Property != "" {
			val = d.Properties[ff.Property]
		}
		switch {
		case ff.Type == ListBox:
			fv["query"] = "urn:jio:allDocs?query="
			fv["list_method_template"] = s.href(r, s.routes.search) + "&relative_url=" + escapeRFC6570(d.ID) +
				"&form_relative_url=" + escapeRFC6570("portal_skins/erp5_sim/"+f.ID+"/"+id) + "{&query,select_list*,limit*,sort_on*}"
			fv["lines"] = ff.Extra["lines"]
		case ff.Type == RelationStringField || ff.Type == MultiRelationStringField:
			rels := relationValues(val)
			titles, uids := make([]any, 0, len(rels)), make([]any, 0, len(rels))
			relURLs := make([]any, 0, len(rels))
			for _, rel := range rels {
				titles = append(titles, s.titleOfLocked(rel))
				relURLs = append(relURLs, rel)
				if u, ok := s.uids[rel]; ok {
					uids = append(uids, strconv.FormatInt(u, 10))
				} else {
					uids = append(uids, "")
				}
			}
			if len(titles) == 0 {
				titles = append(titles, "")
			}
			fv["default"] = titles
			fv["url"] = d.ID
			fv["relation_field_id"] = "subfield_field_" + id + "_relation"
			fv["relation_item_key"] = "subfield_field_" + id + "_item"
			fv["relation_item_relative_url"] = relURLs
			fv["relation_item_uid"] = uids
			pts, _ := ff.Extra["portal_types"].([]any)
			var q []string
			for _, pt := range pts {
				q = append(q, fmt.Sprintf("portal_type:%q", pt))
			}
			fv["query"] = "urn:jio:allDocs?query=" + escapeRFC6570(strings.Join(q, " OR "))
			fv["translated_portal_types"] = pts
		case ff.Property != "" && ff.Property == stateVarOf(s.workflows[d.PortalType]) && strings.HasPrefix(id, "my_translated_"):
			// The translated state shows the state's title.
			t := state
			if w := s.workflows[d.PortalType]; w != nil {
				if st := w.state(state); st != nil {
					t = st.Title
				}
			}
			fv["default"] = t
		case ff.Type == DateTimeField:
			if val == nil {
				val = ""
			}
			fv["default"] = val
			for _, p := range []string{"year", "month", "day", "hour", "minute", "ampm", "timezone"} {
				fv["subfield_"+p+"_key"] = "subfield_field_" + id + "_" + p
			}
		case ff.Property == "total_price" && val == nil:
			fv["default"] = lineTotal(d)
		default:
			if val == nil {
				val = ""
			}
			fv["default"] = val
		}
		if e, ok := errs[id]; ok {
			fv["error_text"] = e
		}
		view[id] = fv
	}
	view["my_id"] = map[string]any{"key": "field_my_id", "default": lastSegment(d.ID), "editable": s.flag(!d.ReadOnly),
		"hidden": s.flag(false), "type": string(StringField), "title": "ID", "required": s.flag(true), "description": "", "css_class": ""}
	if e, ok := errs["my_id"]; ok {
		view["my_id"].(map[string]any)["error_text"] = e
	}
	if !d.ReadOnly {
		view["_actions"] = map[string]any{"put": map[string]any{"href": s.editHref(r, d.ID), "action": "Base_edit", "method": "POST"}}
	}
	return view
}

func stateVarOf(w *WorkflowDef) string {
	if w == nil {
		return ""
	}
	return w.StateVar
}

// lineTotal is a line's quantity × price, as ERP5's getTotalPrice computes it; nil when one is
// missing.
func lineTotal(d *Document) any {
	q, ok1 := number(d.Properties["quantity"])
	p, ok2 := number(d.Properties["price"])
	if !ok1 || !ok2 {
		return nil
	}
	return json.Number(formatFloat(q * p))
}

// actionWorkflowLocked returns a document's `_links.action_workflow`: the transitions of its
// state, each a traverse link to the transition's dialog. A one-entry list is an object, as
// ERP5 writes it; none is nil.
func (s *Server) actionWorkflowLocked(r *http.Request, d *Document, formID string) any {
	w := s.workflows[d.PortalType]
	if w == nil {
		return nil
	}
	state, _ := d.Properties[w.StateVar].(string)
	st := w.state(state)
	if st == nil || len(st.Transitions) == 0 {
		return nil
	}
	var out []any
	for _, t := range st.Transitions {
		href := s.traverseURL(r, d.ID, t)
		if formID != "" {
			href += "&extra_param_json=" + escapeRFC6570(b64JSON(map[string]any{"form_id": formID}))
		}
		out = append(out, map[string]any{"href": href, "name": t, "title": w.Titles[t], "icon": ""})
	}
	if len(out) == 1 {
		return out[0]
	}
	return out
}

// b64JSON is ERP5's *_param_json encoding: base64 of the JSON.
func b64JSON(v any) string {
	b, _ := json.Marshal(v)
	return base64.StdEncoding.EncodeToString(b)
}

// gzipHAL compresses a recorded hal+json answer when the request accepts gzip.
func gzipHAL(r *http.Request, rec *recorder) {
	if rec.header.Get("Content-Type") != HALType || rec.header.Get("Content-Encoding") != "" || rec.body.Len() == 0 ||
		!strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		return
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(rec.body.Bytes())
	zw.Close()
	rec.body.Reset()
	rec.body.Write(b.Bytes())
	rec.header.Set("Content-Encoding", "gzip")
	rec.header.Add("Vary", "Accept-Encoding")
}
