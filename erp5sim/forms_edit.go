package erp5sim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Formulator's and ERP5's messages for the values Base_edit refuses.
const (
	msgBadDate         = "You did not enter a valid date and time."
	msgNotInList       = "You selected an item that was not in the list."
	msgRelationEmpty   = "No such document was found."
	msgRelationAmbig   = "Select appropriate document in the list."
	msgRelationTooMany = "Too many documents were found."
)

// handleEdit is Base_edit: it validates the posted fields of the document's view form, and
// applies them all or none. With a form, only its editable fields are read (a read-only
// field such as my_translated_simulation_state is ignored, as ERP5Form's validation skips
// it); dates come as subfields, relations as the related document's text (and optionally
// its uid), as docs/DESIGN.md appendix A describes.
func (s *Server) handleEdit(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if err := parseForm(r); err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": "form: " + err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	switch {
	case !ok:
		w.WriteHeader(http.StatusNotFound)
		return
	case d.ReadOnly:
		w.WriteHeader(http.StatusForbidden)
		return
	case r.PostFormValue("form_id") == "":
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": "form_id is required"})
		return
	}
	nd := d.clone()
	errs := map[string]string{} // by field id
	changes := map[string]any{}
	if f := s.forms[d.PortalType]; f != nil {
		s.editFormLocked(r.PostForm, d, nd, f, errs, changes)
	} else {
		editOpenForm(r.PostForm, d, nd, errs, changes)
	}
	if v, ok := r.PostForm["field_my_id"]; ok && len(v) > 0 && v[0] != lastSegment(d.ID) {
		newID := v[0]
		switch {
		case strings.ContainsAny(newID, "/ ") || newID == "." || newID == ".." || newID == "":
			errs["my_id"] = "This id is not valid."
		case s.docs[joinID(d.Parent(), newID)] != nil:
			errs["my_id"] = "This id is already in use."
		default:
			nd.ID = joinID(d.Parent(), newID)
		}
	}
	if len(errs) > 0 {
		out := s.renderDocLocked(r, d.clone(), true, errs)
		out["portal_status_message"] = "Input data has errors."
		writeHAL(w, http.StatusBadRequest, out)
		return
	}
	nd = s.commitLocked(d, nd, Change{Via: ViaStock, User: s.user(r), Op: "put", Fields: changes})
	if nd.ID != id {
		w.Header().Set("X-Location", urn(nd.ID))
		w.WriteHeader(http.StatusCreated)
		return
	}
	out := s.renderDocLocked(r, nd.clone(), true, nil)
	out["portal_status_message"] = "Data updated."
	writeHAL(w, http.StatusOK, out)
}

// editOpenForm applies field_my_<property> values to a document of a type without a form.
func editOpenForm(form url.Values, d, nd *Document, errs map[string]string, changes map[string]any) {
	pt := portalType(d.PortalType)
	for key, vals := range form {
		name, ok := strings.CutPrefix(key, "field_my_")
		if !ok || len(vals) == 0 || name == "id" {
			continue // your_ fields, form_id and strangers are not properties
		}
		f, ok := pt.field(name)
		if !ok || f.ReadOnly || name == pt.StateVar || protected[name] {
			continue // not an editable field of the form: ERP5 ignores it
		}
		v, err := coerce(f, vals[0])
		if err != nil {
			errs["my_"+name] = err.(*valueError).Message
			continue
		}
		nd.Properties[name] = v
		changes[name] = v
	}
}

// editFormLocked validates the form's editable fields present in the request and applies
// their values to nd.
func (s *Server) editFormLocked(form url.Values, d, nd *Document, f *FormDef, errs map[string]string, changes map[string]any) {
	pt := portalType(d.PortalType)
	for _, id := range f.order() {
		ff := f.Fields[id]
		if !ff.Editable || ff.Hidden || ff.Type == ListBox || ff.Property == "" || protected[ff.Property] || ff.Property == pt.StateVar {
			continue
		}
		key := "field_" + id
		var v any
		var msg string
		switch ff.Type {
		case DateTimeField:
			var present bool
			v, present, msg = dateSubfields(form, key)
			if !present {
				continue
			}
		case RelationStringField, MultiRelationStringField:
			vals, ok := form[key]
			if !ok || len(vals) == 0 {
				continue
			}
			var keep bool
			v, keep, msg = s.relationLocked(ff, d.Properties[ff.Property], vals[0], form.Get("subfield_"+key+"_relation"))
			if keep {
				continue
			}
			if ff.Type == MultiRelationStringField && v != nil {
				v = []any{v}
			}
		case ListField:
			vals, ok := form[key]
			if !ok || len(vals) == 0 {
				continue
			}
			if vals[0] == "" {
				v = nil
			} else if !slices.Contains(itemValues(ff.Extra["items"]), vals[0]) {
				msg = msgNotInList
			} else {
				v = vals[0]
			}
		default:
			vals, ok := form[key]
			if !ok || len(vals) == 0 {
				continue
			}
			pf, ok := pt.field(ff.Property)
			if !ok {
				pf = Field{Name: ff.Property, Type: ff.Type}
			}
			c, err := coerce(pf, vals[0])
			if err != nil {
				msg = err.(*valueError).Message
			}
			v = c
		}
		if msg != "" {
			errs[id] = msg
			continue
		}
		nd.Properties[ff.Property] = v
		changes[ff.Property] = v
	}
}

// itemValues returns the values of a ListField's items ([label, value] pairs).
func itemValues(items any) []string {
	list, _ := items.([]any)
	var out []string
	for _, it := range list {
		if p, ok := it.([]any); ok && len(p) == 2 {
			if s, ok := p[1].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// dateSubfields reads a DateTimeField from its subfields (year, month, day, hour, minute,
// ampm, timezone): present is false when the request has none of them; all empty clears the
// date. A date without a timezone subfield is in the server's zone (UTC here).
func dateSubfields(form url.Values, key string) (v any, present bool, msg string) {
	parts := map[string]string{}
	for _, p := range []string{"year", "month", "day", "hour", "minute", "ampm", "timezone"} {
		if vals, ok := form["subfield_"+key+"_"+p]; ok && len(vals) > 0 {
			parts[p] = strings.TrimSpace(vals[0])
			present = true
		}
	}
	if !present {
		return nil, false, ""
	}
	if parts["year"] == "" && parts["month"] == "" && parts["day"] == "" {
		return nil, true, ""
	}
	num := func(p string, def int) (int, bool) {
		s := parts[p]
		if s == "" {
			return def, def >= 0
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	y, ok1 := num("year", -1)
	mo, ok2 := num("month", -1)
	day, ok3 := num("day", -1)
	h, ok4 := num("hour", 0)
	mi, ok5 := num("minute", 0)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || mo < 1 || mo > 12 || day < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || y < 1 {
		return nil, true, msgBadDate
	}
	switch strings.ToLower(parts["ampm"]) {
	case "pm":
		if h < 12 {
			h += 12
		}
	case "am":
		if h == 12 {
			h = 0
		}
	}
	loc := time.UTC
	if tz := parts["timezone"]; tz != "" {
		off, ok := parseGMTOffset(tz)
		if !ok {
			return nil, true, msgBadDate
		}
		loc = time.FixedZone(tz, off)
	}
	t := time.Date(y, time.Month(mo), day, h, mi, 0, 0, loc)
	if t.Day() != day || int(t.Month()) != mo {
		return nil, true, msgBadDate // 31 February
	}
	return formatRFC822(t), true, ""
}

// parseGMTOffset reads ERP5's timezone subfield: "GMT", "GMT+1", "GMT-05:30".
func parseGMTOffset(s string) (int, bool) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "GMT")
	if !ok {
		return 0, false
	}
	if rest == "" {
		return 0, true
	}
	sign := 1
	switch rest[0] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, false
	}
	hs, ms, _ := strings.Cut(rest[1:], ":")
	h, err := strconv.Atoi(hs)
	if err != nil || h > 14 {
		return 0, false
	}
	m := 0
	if ms != "" {
		if m, err = strconv.Atoi(ms); err != nil || m > 59 {
			return 0, false
		}
	}
	return sign * (h*3600 + m*60), true
}

// relationLocked is ERP5's relation check (docs/DESIGN.md appendix A): a uid in the relation subfield
// names the document; otherwise unchanged text leaves the relation as it is (keep), empty
// text clears it, and other text is searched by the field's catalog index within its portal
// types: one hit sets it, none or several are errors.
func (s *Server) relationLocked(ff *FormField, current any, text, uid string) (v any, keep bool, msg string) {
	pts := map[string]bool{}
	if list, ok := ff.Extra["portal_types"].([]any); ok {
		for _, p := range list {
			if ps, ok := p.(string); ok {
				pts[ps] = true
			}
		}
	}
	inTypes := func(d *Document) bool { return len(pts) == 0 || pts[d.PortalType] }
	if uid != "" && !strings.HasPrefix(uid, "_newContent_") {
		n, err := strconv.ParseInt(uid, 10, 64)
		if err == nil {
			for rel, u := range s.uids {
				if u == n {
					if d := s.docs[rel]; d != nil && inTypes(d) {
						return rel, false, ""
					}
				}
			}
		}
		return nil, false, msgRelationEmpty
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, false, ""
	}
	index, _ := ff.Extra["catalog_index"].(string)
	if index == "" {
		index = "title"
	}
	cur := relationValues(current)
	if len(cur) == 1 {
		if d := s.docs[cur[0]]; d != nil && fmt.Sprint(d.Properties[index]) == text {
			return nil, true, ""
		}
	}
	var hits []string
	for rel, d := range s.docs {
		if inTypes(d) && fmt.Sprint(d.Properties[index]) == text {
			hits = append(hits, rel)
		}
	}
	switch {
	case len(hits) == 0:
		return nil, false, msgRelationEmpty
	case len(hits) >= 30:
		return nil, false, msgRelationTooMany
	case len(hits) > 1:
		return nil, false, msgRelationAmbig
	}
	return hits[0], false, ""
}
