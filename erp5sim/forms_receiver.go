package erp5sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// FormsScript is the receiver's forms endpoint: one request returns the view form and the
// workflow graph of every portal type a site needs (erp5/sync_gateway_forms.py).
const FormsScript = "ERP5Site_getSyncGatewayForms"

// EndpointForms is the receiver's forms endpoint.
const EndpointForms Endpoint = "forms"

// maxFormTypes bounds the portal types one forms request names.
const maxFormTypes = 200

// receiverForm renders a form as the receiver's forms answer carries it: form_id, title,
// group_list ([group id, [field ids]]) and the fields with their flags and type keys (no
// document values). A relation field names its base_category.
func (s *Server) receiverForm(f *FormDef) map[string]any {
	groups := make([]any, 0, len(f.Groups))
	fields := map[string]any{}
	for _, g := range f.Groups {
		groups = append(groups, []any{g.ID, anyList(g.Fields)})
		for _, id := range g.Fields {
			ff := f.Fields[id]
			m := map[string]any{"type": string(ff.Type), "title": ff.Title, "description": ff.Description,
				"editable": s.flag(ff.Editable), "hidden": s.flag(ff.Hidden)}
			if ff.Type != ListBox {
				m["required"] = s.flag(ff.Required)
			}
			for k, v := range ff.Extra {
				m[k] = v
			}
			if ff.Type == RelationStringField || ff.Type == MultiRelationStringField {
				m["base_category"] = ff.Property
			}
			fields[id] = m
		}
	}
	return map[string]any{"form_id": f.ID, "title": f.Title, "group_list": groups, "fields": fields}
}

// receiverWorkflow renders a workflow graph as the forms answer carries it.
func receiverWorkflow(w *WorkflowDef) map[string]any {
	states := map[string]any{}
	used := map[string]bool{}
	for _, st := range w.States {
		ts := anyList(st.Transitions)
		states[st.ID] = map[string]any{"title": st.Title, "transitions": ts}
		for _, t := range st.Transitions {
			used[t] = true
		}
	}
	trans := map[string]any{}
	for t := range used {
		trans[t] = map[string]any{"title": w.Titles[t]}
	}
	return map[string]any{"id": w.ID, "state_variable": w.StateVar, "states": states, "transitions": trans}
}

// formsTag is the receiver's tag of one type's answer: the hex SHA-256 of
// {"form": …, "workflow": …} as canonical JSON (sorted keys, no spaces, no HTML escaping),
// as the Python core computes it.
func formsTag(form, workflow any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"form": form, "workflow": workflow}); err != nil {
		panic(fmt.Sprintf("erp5sim: encode forms tag: %v", err))
	}
	sum := sha256.Sum256(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	return hex.EncodeToString(sum[:])
}

// formsAnswerLocked answers a forms request: each named type in order, then the types their
// listboxes list that were not named. A type whose tag the gateway already knows is answered
// {portal_type, tag, unchanged: true}.
func (s *Server) formsAnswerLocked(types []string, known map[string]string) []any {
	out := []any{}
	for i := 0; i < len(types); i++ {
		pt := types[i]
		var form, wf any
		if f := s.forms[pt]; f != nil {
			form = s.receiverForm(f)
			for _, id := range f.order() {
				if ff := f.Fields[id]; ff.Type == ListBox {
					list, _ := ff.Extra["portal_type"].([]any)
					for _, p := range list {
						if pair, ok := p.([]any); ok && len(pair) > 0 {
							if e, ok := pair[0].(string); ok && !slices.Contains(types, e) {
								types = append(types, e)
							}
						}
					}
				}
			}
		}
		if w := s.workflows[pt]; w != nil {
			wf = receiverWorkflow(w)
		}
		tag := formsTag(form, wf)
		if known[pt] == tag {
			out = append(out, map[string]any{"portal_type": pt, "tag": tag, "unchanged": true})
			continue
		}
		out = append(out, map[string]any{"portal_type": pt, "tag": tag, "form": form, "workflow": wf})
	}
	return out
}

// parseFormsRequest checks a forms request: {"gateway", "portal_types": [..], "view",
// "known": {portal type: tag}}.
func parseFormsRequest(m map[string]any) (types []string, known map[string]string, err error) {
	if _, err := optString(m, "gateway"); err != nil {
		return nil, nil, err
	}
	if _, err := optString(m, "view"); err != nil {
		return nil, nil, err
	}
	list, ok := m["portal_types"].([]any)
	if !ok {
		return nil, nil, badRequest("portal_types must be a list")
	}
	if len(list) > maxFormTypes {
		return nil, nil, badRequest("at most %d portal_types", maxFormTypes)
	}
	for _, v := range list {
		pt, ok := v.(string)
		if !ok || strings.TrimSpace(pt) == "" {
			return nil, nil, badRequest("portal_types must hold non-empty strings")
		}
		if !slices.Contains(types, pt) {
			types = append(types, pt)
		}
	}
	known = map[string]string{}
	if kv, ok := m["known"]; ok && kv != nil {
		obj, ok := kv.(map[string]any)
		if !ok {
			return nil, nil, badRequest("known must be an object")
		}
		for k, v := range obj {
			tag, ok := v.(string)
			if !ok {
				return nil, nil, badRequest("known[%q] must be a string", k)
			}
			known[k] = tag
		}
	}
	return types, known, nil
}

func (s *Server) handleForms(w http.ResponseWriter, r *http.Request) {
	m, enc, ok := s.readJSONPost(w, r)
	if !ok {
		return
	}
	types, known, err := parseFormsRequest(m)
	if err != nil {
		writeReceiverError(w, err)
		return
	}
	s.mu.Lock()
	out := s.formsAnswerLocked(types, known)
	s.mu.Unlock()
	writeEncoded(w, enc, map[string]any{"types": out})
}

// FormsAnswer returns the receiver's forms answer ({"types": […]}) for portal types, as an
// ERP5 export for offline seeding carries it.
func (s *Server) FormsAnswer(portalTypes []string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"types": s.formsAnswerLocked(slices.Clone(portalTypes), nil)}
}

// SetWorkflow replaces the workflow graph a portal type's documents and the forms answer
// show (nil: none). The transitions the double applies stay its own (schema.go).
func (s *Server) SetWorkflow(portalType string, w *WorkflowDef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w == nil {
		delete(s.workflows, portalType)
		return
	}
	c := *w
	c.States = slices.Clone(w.States)
	s.workflows[portalType] = &c
}

// FormFromReceiver builds a form from the forms answer's form object (the inverse of what the
// receiver sends): fields keep every key but the common ones as Extra.
func FormFromReceiver(m map[string]any) (*FormDef, error) {
	f := &FormDef{Fields: map[string]*FormField{}}
	f.ID, _ = m["form_id"].(string)
	f.Title, _ = m["title"].(string)
	fields, _ := m["fields"].(map[string]any)
	groups, _ := m["group_list"].([]any)
	for _, g := range groups {
		pair, ok := g.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("form %s: a group is not [id, fields]", f.ID)
		}
		gid, _ := pair[0].(string)
		ids, _ := pair[1].([]any)
		grp := FormGroup{ID: gid}
		for _, x := range ids {
			id, _ := x.(string)
			raw, ok := fields[id].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("form %s: group %s names %q, which is not a field", f.ID, gid, id)
			}
			ff := &FormField{ID: id, Extra: map[string]any{}}
			for k, v := range raw {
				switch k {
				case "type":
					s, _ := v.(string)
					ff.Type = FieldType(s)
				case "title":
					ff.Title, _ = v.(string)
				case "description":
					ff.Description, _ = v.(string)
				case "editable":
					ff.Editable = truthy(v)
				case "required":
					ff.Required = truthy(v)
				case "hidden":
					ff.Hidden = truthy(v)
				case "base_category":
					ff.Property, _ = v.(string)
				default:
					ff.Extra[k] = v
				}
			}
			if ff.Property == "" && ff.Type != ListBox {
				ff.Property = strings.TrimPrefix(id, "my_")
				if st, ok := strings.CutPrefix(ff.Property, "translated_"); ok && strings.HasSuffix(st, "_state") {
					ff.Property = st
				}
			}
			grp.Fields = append(grp.Fields, id)
			f.Fields[id] = ff
		}
		f.Groups = append(f.Groups, grp)
	}
	return f, nil
}

// truthy reads a Formulator flag given as 1/0 or true/false.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case json.Number:
		return x.String() == "1"
	case float64:
		return x == 1
	case int:
		return x == 1
	}
	return false
}

// WorkflowFromReceiver builds a workflow graph from the forms answer's workflow object.
func WorkflowFromReceiver(m map[string]any) (*WorkflowDef, error) {
	w := &WorkflowDef{Titles: map[string]string{}}
	w.ID, _ = m["id"].(string)
	w.StateVar, _ = m["state_variable"].(string)
	if w.StateVar == "" {
		return nil, fmt.Errorf("workflow %s: no state_variable", w.ID)
	}
	states, _ := m["states"].(map[string]any)
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		st, _ := states[id].(map[string]any)
		ws := WorkflowState{ID: id}
		ws.Title, _ = st["title"].(string)
		list, _ := st["transitions"].([]any)
		for _, t := range list {
			if s, ok := t.(string); ok {
				ws.Transitions = append(ws.Transitions, s)
			}
		}
		w.States = append(w.States, ws)
	}
	trans, _ := m["transitions"].(map[string]any)
	for id, t := range trans {
		tm, _ := t.(map[string]any)
		w.Titles[id], _ = tm["title"].(string)
	}
	return w, nil
}
