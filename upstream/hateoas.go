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
	"strings"
)

// URNPrefix prefixes every reference ERP5's HATEOAS interface writes (docs/DESIGN.md appendix A).
const URNPrefix = "urn:jio:get:"

// halJSON is the media type of every HATEOAS response; a request whose Accept does not allow
// it gets 406.
const halJSON = "application/hal+json"

// DefaultSearchLimit is the row count asked for when a search names none: without a limit
// ERP5 returns 10 rows.
const DefaultSearchLimit = 1000

// StripURN returns ref without the urn:jio:get: prefix.
func StripURN(ref string) string { return strings.TrimPrefix(ref, URNPrefix) }

// Root is the site root's entry points (docs/DESIGN.md appendix A). Traverse and RawSearch are RFC 6570
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
// and returns its id, read from X-Location (docs/DESIGN.md appendix A). A 2xx without X-Location is
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

// SearchOptions is a raw_search request (docs/DESIGN.md appendix A).
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
