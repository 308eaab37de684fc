package erp5sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"sitesync.example/gateway/query"
)

// HALType is the media type of every HATEOAS response.
const HALType = "application/hal+json"

// acceptsHAL reports whether the request's Accept allows application/hal+json. ERP5's script
// answers 406 otherwise, and to a request without Accept.
func acceptsHAL(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt != HALType && mt != "application/*" && mt != "*/*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("erp5sim: encode response: %v", err))
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func writeHAL(w http.ResponseWriter, status int, v any) { writeJSON(w, status, HALType, v) }

// halGate answers 406 or 405 and returns false when a HATEOAS request cannot be served.
func halGate(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if !acceptsHAL(r) {
		w.WriteHeader(http.StatusNotAcceptable)
		return false
	}
	if !slices.Contains(methods, r.Method) {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		w.WriteHeader(http.StatusMethodNotAllowed)
		return false
	}
	return true
}

func link(href string) map[string]any { return map[string]any{"href": href} }

func urn(id string) string { return "urn:jio:get:" + id }

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if !halGate(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeHAL(w, http.StatusOK, s.renderRoot(r))
}

func (s *Server) renderRoot(r *http.Request) map[string]any {
	return map[string]any{
		"_debug":       "root",
		"title":        "ERP5",
		"default_view": "view",
		"_links": map[string]any{
			"self":       link(s.baseURL(r) + "/"),
			"site_root":  link(s.baseURL(r) + "/"),
			"type":       map[string]any{"href": urn("portal_types/Web Site"), "name": "Web Site"},
			"traverse":   map[string]any{"href": s.template(r, s.routes.traverse, "relative_url,view"), "templated": true},
			"raw_search": map[string]any{"href": s.template(r, s.routes.search, "query,select_list*,limit*,group_by*,sort_on*,local_roles*,selection_domain*"), "templated": true},
		},
		"_actions": map[string]any{
			"add":  map[string]any{"href": s.href(r, s.routes.add), "method": "POST"},
			"bulk": map[string]any{"href": s.href(r, s.routes.bulk), "method": "POST"},
		},
	}
}

func (s *Server) handleTraverse(w http.ResponseWriter, r *http.Request) {
	if !halGate(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	q := r.URL.Query()
	status, v := s.traverse(r, q.Get("relative_url"), q.Get("view"))
	if v == nil {
		w.WriteHeader(status)
		return
	}
	writeHAL(w, status, v)
}

// traverse renders a relative URL; a nil value means 404 with an empty body. A document's
// view form is rendered for the views the double knows (hasView); another view of an
// existing document is not found, as ERP5 finds no such action or form.
func (s *Server) traverse(r *http.Request, id, view string) (int, map[string]any) {
	if id == "" {
		return http.StatusOK, s.renderRoot(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	module := !ok && isModule(id)
	switch {
	case module:
		return http.StatusOK, map[string]any{
			"_debug": "traverse",
			"title":  id,
			"_links": map[string]any{
				"self":   link(urn(id)),
				"type":   map[string]any{"href": urn("portal_types/" + moduleType(id)), "name": moduleType(id)},
				"parent": link(urn("")),
			},
		}
	case !ok:
		return http.StatusNotFound, nil
	case view != "" && !s.hasView(view):
		return http.StatusNotFound, map[string]any{"_debug": "traverse", "error": "no view " + view + " for " + d.PortalType}
	}
	return http.StatusOK, s.renderDocLocked(r, d.clone(), view != "", nil)
}

// moduleType names a module's portal type, e.g. "person_module" → "Person Module".
func moduleType(id string) string {
	words := strings.Split(id, "_")
	for i, w := range words {
		if w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// renderDocLocked is ERP5Document_getHateoas's traverse of a document, with its view form
// under _embedded._view when withView is set (its portal type's form, else an open form of
// every property); errs adds error_text to fields (by field id).
func (s *Server) renderDocLocked(r *http.Request, d *Document, withView bool, errs map[string]string) map[string]any {
	title, _ := d.Properties["title"].(string)
	links := map[string]any{
		"self":   link(urn(d.ID)),
		"type":   map[string]any{"href": urn("portal_types/" + d.PortalType), "name": d.PortalType},
		"parent": map[string]any{"href": urn(d.Parent()), "name": s.titleOfLocked(d.Parent())},
		"view":   []any{map[string]any{"href": s.traverseURL(r, d.ID, "view"), "name": "view", "title": "View"}},
	}
	out := map[string]any{"_debug": "traverse", "title": title, "_links": links}
	f := s.forms[d.PortalType]
	formID := strings.ReplaceAll(d.PortalType, " ", "") + "_view"
	if f != nil {
		formID = f.ID
	}
	if aw := s.actionWorkflowLocked(r, d, formID); aw != nil {
		links["action_workflow"] = aw
	}
	if !withView {
		return out
	}
	if f != nil {
		out["_embedded"] = map[string]any{"_view": s.renderFormLocked(r, d, f, errs)}
		return out
	}
	pt := portalType(d.PortalType)
	view := map[string]any{
		"_debug":  formID,
		"form_id": map[string]any{"key": "form_id", "default": formID, "editable": s.flag(false), "hidden": s.flag(true), "type": string(StringField)},
		"_links":  map[string]any{"type": map[string]any{"name": d.PortalType}},
	}
	addField := func(f Field) {
		v, ok := d.Properties[f.Name]
		if !ok || v == nil {
			v = ""
		}
		fv := map[string]any{
			"key":      "field_my_" + f.Name,
			"default":  v,
			"editable": s.flag(!f.ReadOnly && !d.ReadOnly),
			"hidden":   s.flag(false),
			"type":     string(f.Type),
			"title":    f.Title,
			"required": s.flag(false),
		}
		if e, ok := errs["my_"+f.Name]; ok {
			fv["error_text"] = e
		}
		view["my_"+f.Name] = fv
	}
	for _, f := range pt.Fields {
		addField(f)
	}
	if len(pt.Fields) == 0 {
		keys := make([]string, 0, len(d.Properties))
		for k := range d.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Contains(keys, "title") {
			keys = append([]string{"title"}, keys...)
		}
		for _, k := range keys {
			f, _ := pt.field(k)
			if k == pt.StateVar {
				f.ReadOnly = true
			}
			addField(f)
		}
	}
	view["my_id"] = map[string]any{"key": "field_my_id", "default": lastSegment(d.ID), "editable": s.flag(!d.ReadOnly), "hidden": s.flag(false), "type": string(StringField), "title": "ID", "required": s.flag(true)}
	if e, ok := errs["my_id"]; ok {
		view["my_id"].(map[string]any)["error_text"] = e
	}
	if !d.ReadOnly {
		view["_actions"] = map[string]any{"put": map[string]any{"href": s.editHref(r, d.ID), "method": "POST"}}
	}
	out["_embedded"] = map[string]any{"_view": view}
	return out
}

// traverseURL is the traverse entry point expanded for a document and a view.
func (s *Server) traverseURL(r *http.Request, id, view string) string {
	sep := "?"
	if len(s.routes.traverse.fixed) > 0 {
		sep = "&"
	}
	return s.href(r, s.routes.traverse) + sep + "relative_url=" + escapeRFC6570(id) + "&view=" + escapeRFC6570(view)
}

// escapeRFC6570 percent-encodes a value as RFC 6570 simple expansion does: everything but
// unreserved characters (ALPHA, DIGIT, "-", ".", "_", "~").
func escapeRFC6570(v string) string {
	var b strings.Builder
	for _, c := range []byte(v) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func lastSegment(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// searchParams are raw_search's parameters, decoded.
type searchParams struct {
	query      string
	selectList []string
	limit      []int
	sortOn     []query.SortKey
}

func parseSearch(r *http.Request) (searchParams, error) {
	q := r.URL.Query()
	p := searchParams{query: q.Get("query"), selectList: q["select_list"]}
	for _, l := range q["limit"] {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return p, fmt.Errorf("bad limit %q", l)
		}
		p.limit = append(p.limit, n)
	}
	if len(p.limit) > 2 {
		return p, errors.New("limit takes at most two values")
	}
	for _, so := range q["sort_on"] {
		var pair []string
		if err := json.Unmarshal([]byte(so), &pair); err != nil || len(pair) != 2 {
			return p, fmt.Errorf("bad sort_on %q: want a JSON pair", so)
		}
		switch strings.ToLower(pair[1]) {
		case "ascending", "asc":
			p.sortOn = append(p.sortOn, query.SortKey{Key: pair[0]})
		case "descending", "desc":
			p.sortOn = append(p.sortOn, query.SortKey{Key: pair[0], Descending: true})
		default:
			return p, fmt.Errorf("bad sort_on direction %q", pair[1])
		}
	}
	return p, nil
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	if !halGate(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	p, err := parseSearch(r)
	if err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"_debug": "search", "error": err.Error()})
		return
	}
	q, err := query.Parse(p.query)
	if err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"_debug": "search", "error": "query: " + err.Error()})
		return
	}
	opts := query.Options{SortOn: p.sortOn, DateKeys: dateKeys, IncludeDocs: true, Count: DefaultSearchLimit}
	switch len(p.limit) {
	case 1:
		opts.Count = p.limit[0]
	case 2:
		opts.Skip, opts.Count = p.limit[0], p.limit[1]
	}
	s.mu.Lock()
	res := query.Exec(s.queryDocsLocked(), q, opts)
	s.mu.Unlock()
	if opts.Count == 0 {
		res.Rows = nil // ERP5's SQL LIMIT n,0 returns nothing
	}
	contents := make([]any, 0, len(res.Rows))
	for _, row := range res.Rows {
		item := map[string]any{"_links": map[string]any{"self": link(urn(row.ID))}}
		for _, k := range p.selectList {
			item[k] = row.Doc[k] // nil when missing: null
		}
		contents = append(contents, item)
	}
	var limit any
	if p.limit != nil {
		limit = p.limit
	}
	sl := p.selectList
	if sl == nil {
		sl = []string{}
	}
	writeHAL(w, http.StatusOK, map[string]any{
		"_debug":        "search",
		"_query":        p.query,
		"_limit":        limit,
		"_select_list":  sl,
		"_local_roles":  nil,
		"_links":        map[string]any{"self": link(s.baseURL(r) + "/" + strings.TrimPrefix(r.URL.RequestURI(), s.sitePath+"/"))},
		"_embedded":     map[string]any{"contents": contents},
		"_total_result": res.TotalRows,
	})
}

// parseForm parses a multipart or urlencoded POST body.
func parseForm(r *http.Request) error {
	err := r.ParseMultipartForm(10 << 20)
	if errors.Is(err, http.ErrNotMultipart) {
		return r.ParseForm()
	}
	return err
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	if !halGate(w, r, http.MethodPost) {
		return
	}
	if err := parseForm(r); err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": "form: " + err.Error()})
		return
	}
	s.mu.Lock()
	d, err := s.newDocLocked(r.PostFormValue("portal_type"), r.PostFormValue("parent_relative_url"))
	if err == nil {
		s.commitLocked(nil, d, Change{Via: ViaStock, User: s.user(r), Op: "post"})
	}
	s.mu.Unlock()
	if err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	w.Header().Set("X-Location", urn(d.ID))
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	if !halGate(w, r, http.MethodPost) {
		return
	}
	if err := parseForm(r); err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": "form: " + err.Error()})
		return
	}
	var list []struct {
		RelativeURL string `json:"relative_url"`
		View        string `json:"view"`
	}
	if err := json.Unmarshal([]byte(r.PostFormValue("bulk_list")), &list); err != nil {
		writeHAL(w, http.StatusBadRequest, map[string]any{"error": "bulk_list: " + err.Error()})
		return
	}
	results := make([]any, 0, len(list))
	for _, item := range list {
		status, v := s.traverse(r, item.RelativeURL, item.View)
		if v == nil {
			v = map[string]any{"_debug": "traverse", "status": status}
		}
		results = append(results, v)
	}
	writeHAL(w, http.StatusOK, map[string]any{"_debug": "bulk", "result_list": results})
}

func joinID(parent, id string) string {
	if parent == "" {
		return id
	}
	return parent + "/" + id
}

// editProps sets properties on d as ERP5's edit() would for the receiver and head office:
// values are coerced by the form's field types, properties outside a closed form are
// stored as given, and a repeated portal_type is ignored. It fails on the first protected or
// invalid property, in key order.
func editProps(d *Document, props map[string]any) error {
	pt := portalType(d.PortalType)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := props[k]
		if k == "portal_type" {
			if s, ok := v.(string); ok && s == d.PortalType {
				continue
			}
			return &valueError{k, "portal_type cannot be changed"}
		}
		if protected[k] || k == pt.StateVar {
			return &valueError{k, k + " cannot be edited"}
		}
		f, ok := pt.field(k)
		if !ok {
			d.Properties[k] = v
			continue
		}
		if f.ReadOnly {
			return &valueError{k, k + " cannot be edited"}
		}
		c, err := coerce(f, v)
		if err != nil {
			return err
		}
		d.Properties[k] = c
	}
	return nil
}

// doTransition runs a workflow transition on d.
func doTransition(d *Document, name string) error {
	pt := portalType(d.PortalType)
	t, ok := pt.Workflow[name]
	if !ok {
		return fmt.Errorf("no transition %q for %s", name, d.PortalType)
	}
	state, _ := d.Properties[pt.StateVar].(string)
	if state == "" {
		state = "draft"
	}
	if !slices.Contains(t.From, state) {
		return fmt.Errorf("transition %q is not available in state %q", name, state)
	}
	d.Properties[pt.StateVar] = t.To
	return nil
}
