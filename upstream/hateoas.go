package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// URNPrefix prefixes every reference ERP5's HATEOAS interface writes (ERP5.md §1).
const URNPrefix = "urn:jio:get:"

// halJSON is the media type of every HATEOAS response; a request whose Accept does not allow
// it gets 406.
const halJSON = "application/hal+json"

// DefaultSearchLimit is the row count asked for when a search names none: without a limit
// ERP5 returns 10 rows.
const DefaultSearchLimit = 1000

// StripURN returns ref without the urn:jio:get: prefix.
func StripURN(ref string) string { return strings.TrimPrefix(ref, URNPrefix) }

// Root is the site root's entry points (ERP5.md §1). Traverse and RawSearch are RFC 6570
// templates; Add and Bulk are action URLs.
type Root struct {
	Traverse  string
	RawSearch string
	Add       string
	Bulk      string
}

type halLink struct {
	Href      string `json:"href"`
	Templated bool   `json:"templated"`
	Method    string `json:"method"`
}

// halLinks is a HAL _links or _actions object. A relation's value is a link object or, as
// ERP5 writes for views and actions, an array of them; the first is taken.
type halLinks map[string]json.RawMessage

func (l halLinks) get(name string) halLink {
	raw := bytes.TrimSpace(l[name])
	var h halLink
	switch {
	case len(raw) == 0:
	case raw[0] == '{':
		json.Unmarshal(raw, &h)
	case raw[0] == '[':
		var list []halLink
		if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
			h = list[0]
		}
	}
	return h
}

// Root returns the site's entry points, fetching the root once and caching it; ResetRoot
// forgets it.
func (c *Client) Root(ctx context.Context) (*Root, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	r := c.root
	c.mu.Unlock()
	if r != nil {
		return r, nil
	}
	ex, err := c.do(ctx, request{method: http.MethodGet, url: c.base.String(), accept: halJSON, expect: 2048})
	if err != nil {
		return nil, fmt.Errorf("erp5 root: %w", err)
	}
	var doc struct {
		Links   halLinks `json:"_links"`
		Actions halLinks `json:"_actions"`
	}
	if err := json.Unmarshal(ex.body, &doc); err != nil {
		return nil, fmt.Errorf("erp5 root: %w", errors.Join(ErrBadResponse, err))
	}
	r = &Root{
		Traverse:  doc.Links.get("traverse").Href,
		RawSearch: doc.Links.get("raw_search").Href,
		Add:       doc.Actions.get("add").Href,
		Bulk:      doc.Actions.get("bulk").Href,
	}
	if r.Traverse == "" || r.RawSearch == "" || r.Add == "" {
		return nil, fmt.Errorf("erp5 root: %w: no traverse, raw_search or add entry point", ErrBadResponse)
	}
	c.mu.Lock()
	if c.root == nil {
		c.root = r
	}
	r = c.root
	c.mu.Unlock()
	return r, nil
}

// ResetRoot forgets the cached root and learned forms (after ERP5 is reconfigured).
func (c *Client) ResetRoot() {
	c.mu.Lock()
	c.root = nil
	c.forms = map[string]*learnedForm{}
	c.mu.Unlock()
}

// expand expands a root template and resolves it against the site URL.
func (c *Client) expand(tmpl string, vars map[string]any) (string, error) {
	s, err := Expand(tmpl, vars)
	if err != nil {
		return "", fmt.Errorf("erp5 root: %w", err)
	}
	return c.resolve(s)
}

// Document is an ERP5 document as the stock interface shows it: its editable form turned
// into properties (ERP5.md §1). Unlike jIO, falsy values (0, false, "") are kept.
type Document struct {
	ID                string
	PortalType        string
	ParentRelativeURL string
	// Fields maps a property (the field id without my_ or your_) to its value: a string, a
	// json.Number, a bool, a []any, or nil.
	Fields map[string]any
	// FormID is the form's id (form_id), sent back with a put.
	FormID string
	// PutURL is where a put posts; "" when the user may not modify the document.
	PutURL string
	// Keys maps a property to its form field's key (field_my_title).
	Keys map[string]string
	// Types maps a property to its field type (StringField…).
	Types map[string]string
}

// FieldTypes are the form field types turned into properties. jIO takes the first five; the
// others carry values a site's forms edit too (dates, check boxes, lists).
var FieldTypes = map[string]bool{
	"StringField": true, "EmailField": true, "IntegerField": true, "FloatField": true, "TextAreaField": true,
	"DateTimeField": true, "CheckBoxField": true, "ListField": true, "RadioField": true, "LinesField": true,
	"MultiListField": true, "MultiCheckBoxField": true, "LinkField": true, "PasswordField": false,
	"RelationStringField": true, "StringLinkField": true,
}

// Get traverses id with view=jio_view and returns the document. A missing document is an
// *HTTPError with Status 404.
func (c *Client) Get(ctx context.Context, id string) (*Document, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return nil, err
	}
	u, err := c.expand(root.Traverse, map[string]any{"relative_url": id, "view": "jio_view"})
	if err != nil {
		return nil, err
	}
	ex, err := c.do(ctx, request{method: http.MethodGet, url: u, accept: halJSON, expect: 8192})
	if err != nil {
		return nil, fmt.Errorf("erp5 get %s: %w", id, err)
	}
	doc, err := ParseDocument(id, ex.body)
	if err != nil {
		return nil, fmt.Errorf("erp5 get %s: %w", id, errors.Join(ErrBadResponse, err))
	}
	if doc.PutURL != "" {
		if doc.PutURL, err = c.resolve(doc.PutURL); err != nil {
			return nil, err
		}
		c.learn(doc)
	}
	return doc, nil
}

// ParseDocument turns a traverse response (view=jio_view) into a Document: each editable
// my_ field and each your_ field of a known type becomes a property valued by its default,
// plus portal_type and parent_relative_url from the links.
func ParseDocument(id string, body []byte) (*Document, error) {
	var raw struct {
		Links    halLinks `json:"_links"`
		Embedded struct {
			View map[string]json.RawMessage `json:"_view"`
		} `json:"_embedded"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	doc := &Document{
		ID:                id,
		PortalType:        strings.TrimPrefix(StripURN(raw.Links.get("type").Href), "portal_types/"),
		ParentRelativeURL: StripURN(raw.Links.get("parent").Href),
		Fields:            map[string]any{},
		Keys:              map[string]string{},
		Types:             map[string]string{},
	}
	for name, msg := range raw.Embedded.View {
		switch name {
		case "_actions":
			var a halLinks
			if err := json.Unmarshal(msg, &a); err == nil {
				doc.PutURL = a.get("put").Href
			}
			continue
		case "form_id":
			var f struct {
				Default any `json:"default"`
			}
			if err := json.Unmarshal(msg, &f); err == nil {
				if s, ok := f.Default.(string); ok {
					doc.FormID = s
				}
			}
			continue
		}
		var f struct {
			Key      string `json:"key"`
			Default  any    `json:"default"`
			Editable bool   `json:"editable"`
			Type     string `json:"type"`
		}
		d := json.NewDecoder(bytes.NewReader(msg))
		d.UseNumber()
		if err := d.Decode(&f); err != nil || !FieldTypes[f.Type] {
			continue
		}
		var prop string
		switch {
		case strings.HasPrefix(name, "my_") && f.Editable:
			prop = strings.TrimPrefix(name, "my_")
		case strings.HasPrefix(name, "your_"):
			prop = strings.TrimPrefix(name, "your_")
		default:
			continue
		}
		doc.Fields[prop] = f.Default
		doc.Keys[prop] = f.Key
		doc.Types[prop] = f.Type
	}
	if doc.PortalType != "" {
		doc.Fields["portal_type"] = doc.PortalType
	}
	if doc.ParentRelativeURL != "" {
		doc.Fields["parent_relative_url"] = doc.ParentRelativeURL
	}
	return doc, nil
}

// learnedForm is what one traverse taught about a portal type's form, and about the form of
// the documents at the same place (same module, same depth: an outbox put does not carry its
// portal type): the put URL with the relative URL cut out (prefix + id + suffix), the form id
// and the field keys. A put of another such document skips its traverse; a 404, 403 or 400
// on the learned URL (wrong URL, wrong form) falls back to one.
type learnedForm struct {
	prefix, suffix string
	formID         string
	keys           map[string]string
}

func (c *Client) learn(doc *Document) {
	if doc.PortalType == "" || doc.FormID == "" {
		return
	}
	i := strings.Index(doc.PutURL, "/"+doc.ID+"/")
	if i < 0 {
		return
	}
	f := &learnedForm{
		prefix: doc.PutURL[:i+1],
		suffix: doc.PutURL[i+1+len(doc.ID):],
		formID: doc.FormID,
		keys:   doc.Keys,
	}
	c.mu.Lock()
	c.forms["type:"+doc.PortalType] = f
	c.forms["place:"+place(doc.ID)] = f
	c.mu.Unlock()
}

// learned returns the form learned for portalType, else for documents placed like id.
func (c *Client) learned(id, portalType string) *learnedForm {
	c.mu.Lock()
	defer c.mu.Unlock()
	if portalType != "" {
		if f := c.forms["type:"+portalType]; f != nil {
			return f
		}
	}
	return c.forms["place:"+place(id)]
}

// place is where a document lives, for learned forms: its module and its depth
// ("sale_order_module/*/*" for a line of an order).
func place(id string) string {
	first, _, _ := strings.Cut(id, "/")
	return first + "/" + strconv.Itoa(strings.Count(id, "/"))
}

// Put edits the document id: a form POST of fields to its put URL (ERP5.md §1). A form
// learned from an earlier traverse of the same portal type (when given) or of a document at
// the same place saves the traverse; a 404, 403 or 400 on the learned URL falls back to one. A nil value clears the field (sent as "").
// It returns the document's id afterwards: a 201 with X-Location means the edit renamed it.
// A field the form does not let the user edit is ErrNotEditable.
func (c *Client) Put(ctx context.Context, id, portalType string, fields map[string]any) (string, error) {
	if err := c.init(); err != nil {
		return "", err
	}
	if f := c.learned(id, portalType); f != nil {
		if form, ok := buildForm(f.formID, f.keys, fields); ok {
			newID, err := c.postForm(ctx, f.prefix+id+f.suffix, form, id)
			var he *HTTPError
			if !errors.As(err, &he) || (he.Status != http.StatusNotFound && he.Status != http.StatusForbidden &&
				he.Status != http.StatusBadRequest) {
				return newID, err
			}
			// The learned URL or form is wrong for this document (ERP5 applied nothing): ask
			// the document itself.
		}
	}
	doc, err := c.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if doc.PutURL == "" {
		return "", fmt.Errorf("erp5 put %s: %w: the document offers no put action", id, ErrNotEditable)
	}
	form, ok := buildForm(doc.FormID, doc.Keys, fields)
	if !ok {
		var missing []string
		for k := range fields {
			if _, ok := doc.Keys[k]; !ok {
				missing = append(missing, k)
			}
		}
		sort.Strings(missing)
		return "", fmt.Errorf("erp5 put %s: %w: field %s is not on form %s", id, ErrNotEditable, strings.Join(missing, ", "), doc.FormID)
	}
	return c.postForm(ctx, doc.PutURL, form, id)
}

// buildForm returns the form values of a put, and false when a field has no key.
func buildForm(formID string, keys map[string]string, fields map[string]any) (url.Values, bool) {
	form := url.Values{"form_id": {formID}}
	for prop, v := range fields {
		if prop == "portal_type" || prop == "parent_relative_url" {
			continue
		}
		key, ok := keys[prop]
		if !ok {
			return nil, false
		}
		form[key] = FormValues(v)
	}
	return form, true
}

// FormValues renders a JSON value as form values for Base_edit: strings as they are, numbers
// as written, true as "1" and false as "" (Formulator's check box reads any non-empty value
// as checked), nil as "" (a cleared field, DESIGN §7), lists as repeated values, objects as
// JSON.
func FormValues(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{""}
	case string:
		return []string{x}
	case json.Number:
		return []string{x.String()}
	case float64:
		return []string{strconv.FormatFloat(x, 'f', -1, 64)}
	case int:
		return []string{strconv.Itoa(x)}
	case int64:
		return []string{strconv.FormatInt(x, 10)}
	case bool:
		if x {
			return []string{"1"}
		}
		return []string{""}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, FormValues(e)...)
		}
		return out
	case []string:
		return x
	}
	b, _ := json.Marshal(v)
	return []string{string(b)}
}

// postForm posts an urlencoded form to u and returns the document's id afterwards.
func (c *Client) postForm(ctx context.Context, u string, form url.Values, id string) (string, error) {
	ex, err := c.do(ctx, request{
		method:      http.MethodPost,
		url:         u,
		contentType: "application/x-www-form-urlencoded",
		accept:      halJSON,
		body:        []byte(form.Encode()),
		expect:      4096,
	})
	if err != nil {
		return "", fmt.Errorf("erp5 put %s: %w", id, err)
	}
	// Success re-renders the form as hal+json, or answers 204: a body that is not JSON is a
	// front end's page, and says nothing about whether the edit happened.
	if b := bytes.TrimSpace(ex.body); len(b) > 0 && !json.Valid(b) {
		return "", fmt.Errorf("erp5 put %s: HTTP %d: %w", id, ex.resp.StatusCode, ErrBadResponse)
	}
	if ex.resp.StatusCode == http.StatusCreated {
		if loc := ex.resp.Header.Get("X-Location"); loc != "" {
			return StripURN(loc), nil
		}
	}
	return id, nil
}

// Post creates an empty document of portalType inside parent through the root's add action
// and returns its id, read from X-Location (ERP5.md §1). A 2xx without X-Location is
// ErrNoLocation: something may have been created.
func (c *Client) Post(ctx context.Context, portalType, parent string) (string, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return "", err
	}
	u, err := c.resolve(root.Add)
	if err != nil {
		return "", err
	}
	form := url.Values{"portal_type": {portalType}, "parent_relative_url": {parent}}
	ex, err := c.do(ctx, request{
		method:      http.MethodPost,
		url:         u,
		contentType: "application/x-www-form-urlencoded",
		accept:      halJSON,
		body:        []byte(form.Encode()),
		expect:      512,
	})
	if err != nil {
		return "", fmt.Errorf("erp5 post %s in %s: %w", portalType, parent, err)
	}
	loc := ex.resp.Header.Get("X-Location")
	if loc == "" {
		return "", fmt.Errorf("erp5 post %s in %s: HTTP %d: %w", portalType, parent, ex.resp.StatusCode, ErrNoLocation)
	}
	return StripURN(loc), nil
}

// SearchOptions is a raw_search request (ERP5.md §1).
type SearchOptions struct {
	// Query is a jIO query string; "" matches everything the user may see.
	Query string
	// SelectList names the properties to return.
	SelectList []string
	// Limit is [skip, count] or [count]; empty means [0, DefaultSearchLimit]. It is always
	// sent: without it ERP5 returns 10 rows.
	Limit []int
	// SortOn is a list of [property, "ascending"|"descending"] pairs.
	SortOn [][2]string
}

// SearchRow is one search result: the document's id and the selected properties (a missing
// property is nil).
type SearchRow struct {
	ID     string
	Fields map[string]any
}

// Search runs a raw_search.
func (c *Client) Search(ctx context.Context, o SearchOptions) ([]SearchRow, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return nil, err
	}
	limit := o.Limit
	if len(limit) == 0 {
		limit = []int{0, DefaultSearchLimit}
	}
	vars := map[string]any{"query": o.Query, "limit": limit}
	if len(o.SelectList) > 0 {
		vars["select_list"] = o.SelectList
	}
	if len(o.SortOn) > 0 {
		s := make([]string, len(o.SortOn))
		for i, p := range o.SortOn {
			b, _ := json.Marshal([]string{p[0], p[1]})
			s[i] = string(b)
		}
		vars["sort_on"] = s
	}
	u, err := c.expand(root.RawSearch, vars)
	if err != nil {
		return nil, err
	}
	n := DefaultSearchLimit
	if len(limit) > 0 {
		n = limit[len(limit)-1]
	}
	ex, err := c.do(ctx, request{method: http.MethodGet, url: u, accept: halJSON, expect: 256 * n})
	if err != nil {
		return nil, fmt.Errorf("erp5 search: %w", err)
	}
	var raw struct {
		Embedded struct {
			Contents []map[string]json.RawMessage `json:"contents"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal(ex.body, &raw); err != nil {
		return nil, fmt.Errorf("erp5 search: %w", errors.Join(ErrBadResponse, err))
	}
	rows := make([]SearchRow, 0, len(raw.Embedded.Contents))
	for _, item := range raw.Embedded.Contents {
		row := SearchRow{Fields: map[string]any{}}
		for k, v := range item {
			if k == "_links" {
				var l halLinks
				if err := json.Unmarshal(v, &l); err == nil {
					row.ID = StripURN(l.get("self").Href)
				}
				continue
			}
			d := json.NewDecoder(bytes.NewReader(v))
			d.UseNumber()
			var val any
			if err := d.Decode(&val); err == nil {
				row.Fields[k] = val
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// jsonErrorMessage pulls a message out of an error body: a receiver's reason or message, or
// the error_text of a Base_edit validation failure (field by field).
func jsonErrorMessage(body []byte) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return ""
	}
	for _, k := range []string{"reason", "message", "error_text", "error"} {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	// A Base_edit validation failure re-renders the form with error_text per field.
	var parts []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		if s, ok := obj["error_text"].(string); ok && s != "" {
			parts = append(parts, prefix+": "+s)
			return
		}
		for k, sub := range obj {
			if strings.HasPrefix(k, "_links") {
				continue
			}
			walk(k, sub)
		}
	}
	walk("", m)
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
