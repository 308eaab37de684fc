package erp5sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
)

// t0 is the tests' reference time.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// expand expands the RFC 6570 templates ERP5 uses: one trailing form-style expression
// ({?a,b} or {&a,b*}) with exploded lists. Values are string or []string; absent ones are
// omitted, empty strings kept.
func expand(tmpl string, vars map[string]any) string {
	i := strings.IndexByte(tmpl, '{')
	if i < 0 {
		return tmpl
	}
	expr := strings.TrimSuffix(tmpl[i+1:], "}")
	op, names := expr[:1], strings.Split(expr[1:], ",")
	var parts []string
	for _, n := range names {
		name, explode := strings.CutSuffix(n, "*")
		switch v := vars[name].(type) {
		case string:
			parts = append(parts, name+"="+pctEncode(v))
		case []string:
			if explode {
				for _, e := range v {
					parts = append(parts, name+"="+pctEncode(e))
				}
			} else if len(v) > 0 {
				es := make([]string, len(v))
				for j, e := range v {
					es[j] = pctEncode(e)
				}
				parts = append(parts, name+"="+strings.Join(es, ","))
			}
		}
	}
	out := tmpl[:i]
	if len(parts) == 0 {
		return out
	}
	return out + op + strings.Join(parts, "&")
}

func pctEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// client talks to a double the way the gateway should: Accept hal+json, credentials, and
// URLs only from the root and the forms.
type client struct {
	tb   testing.TB
	srv  *httptest.Server
	http *http.Client
	user string
	pass string
}

func newDouble(tb testing.TB, opts erp5sim.Options) (*erp5sim.Server, *client) {
	tb.Helper()
	s := erp5sim.New(opts)
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return s, &client{tb: tb, srv: ts, http: ts.Client()}
}

func (c *client) siteURL(s *erp5sim.Server) string { return c.srv.URL + s.SitePath() + "/" }

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		tb.Fatalf("response %d is not JSON: %v: %q", r.status, err, r.body)
	}
	return m
}

func (c *client) do(req *http.Request) response {
	c.tb.Helper()
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/hal+json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatalf("read %s: %v", req.URL, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (c *client) get(u string) response {
	c.tb.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return c.do(req)
}

// postForm posts fields as multipart/form-data (jIO's way), in the given order.
func (c *client) postForm(u string, fields ...string) response {
	c.tb.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	mw.Close()
	req, _ := http.NewRequest("POST", u, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return c.do(req)
}

// postURLEncoded posts fields urlencoded.
func (c *client) postURLEncoded(u string, fields ...string) response {
	c.tb.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		v.Add(fields[i], fields[i+1])
	}
	req, _ := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// root fetches the site root and returns it.
func (c *client) root(s *erp5sim.Server) map[string]any {
	c.tb.Helper()
	r := c.get(c.siteURL(s))
	if r.status != 200 {
		c.tb.Fatalf("root: %d %s", r.status, r.body)
	}
	return r.json(c.tb)
}

// dig follows a path of keys through nested JSON objects.
func dig(tb testing.TB, v any, path ...string) any {
	tb.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			tb.Fatalf("dig %v: %q is not under an object (%T)", path, p, v)
		}
		v, ok = m[p]
		if !ok {
			tb.Fatalf("dig %v: no %q in %v", path, p, m)
		}
	}
	return v
}

func str(tb testing.TB, v any, path ...string) string {
	tb.Helper()
	s, ok := dig(tb, v, path...).(string)
	if !ok {
		tb.Fatalf("dig %v: not a string", path)
	}
	return s
}

// traverse gets a document through the root's traverse template.
func (c *client) traverse(s *erp5sim.Server, root map[string]any, id string) response {
	c.tb.Helper()
	return c.get(expand(str(c.tb, root, "_links", "traverse", "href"), map[string]any{"relative_url": id, "view": "view"}))
}

func people() []*erp5sim.Document {
	return []*erp5sim.Document{
		{ID: "person_module/1", PortalType: "Person", ModificationDate: t0.Add(-time.Hour), Properties: map[string]any{"title": "one", "reference": "r1", "validation_state": "validated"}},
		{ID: "person_module/2", PortalType: "Person", ModificationDate: t0.Add(-2 * time.Hour), Properties: map[string]any{"title": "two", "reference": "foo2", "validation_state": "validated"}},
		{ID: "organisation_module/3", PortalType: "Organisation", ModificationDate: t0.Add(-3 * time.Hour), Properties: map[string]any{"title": "two", "validation_state": "draft"}},
		{ID: "product_module/4", PortalType: "Product", ModificationDate: t0.Add(-4 * time.Hour), Properties: map[string]any{"title": "pump", "base_price": json.Number("12.5"), "validation_state": "validated"}},
	}
}
