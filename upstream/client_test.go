package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// loopbackOnly refuses to dial anything but 127.0.0.1: tests never reach the network.
func loopbackOnly(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("test dialed %q: only 127.0.0.1 is allowed", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// stockSite is a minimal stock ERP5 HATEOAS site with odd entry-point URLs (as jIO's own
// test double has), recording every request.
type stockSite struct {
	t    testing.TB
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []recorded
	docs map[string]map[string]string // id → field → value
	next int
	// putStatus, when set, answers puts with it.
	putStatus int
}

type recorded struct {
	method, uri, ctype string
	header             http.Header
	form               url.Values
}

func newStockSite(t testing.TB) *stockSite {
	t.Helper()
	s := &stockSite{t: t, docs: map[string]map[string]string{
		"person_module/1": {"title": "foo", "reference": "bar", "age": "0", "active": ""},
	}, next: 100}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stockSite) client() *Client {
	return &Client{
		URL:        s.srv.URL + "/erp5/web_site_module/hateoas",
		HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: loopbackOnly})},
		Auth:       Auth{User: "gw", Password: "s3cret"},
	}
}

func (s *stockSite) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

func (s *stockSite) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{r.Method, r.RequestURI, r.Header.Get("Content-Type"), r.Header.Clone(), r.PostForm})
	s.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != "gw" || p != "s3cret" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/hal+json") {
		w.WriteHeader(http.StatusNotAcceptable)
		return
	}
	site := "http://" + r.Host + "/erp5/web_site_module/hateoas/"
	w.Header().Set("Content-Type", "application/hal+json")
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/erp5/web_site_module/hateoas/":
		fmt.Fprintf(w, `{"_debug":"root","_links":{"traverse":{"href":"%[1]sodd?do=trav{&relative_url,view}","templated":true},
			"raw_search":{"href":"%[1]sodd?do=find{&query,select_list*,limit*,group_by*,sort_on*,local_roles*,selection_domain*}","templated":true}},
			"_actions":{"add":{"href":"%[1]slets?add=somedocument","method":"POST"},"bulk":{"href":"%[1]sbulk","method":"POST"}}}`, site)
	case r.URL.Path == "/erp5/web_site_module/hateoas/odd" && q.Get("do") == "trav":
		id := q.Get("relative_url")
		s.mu.Lock()
		d, ok := s.docs[id]
		s.mu.Unlock()
		if !ok || q.Get("view") != "view" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		view := map[string]any{
			"form_id":        map[string]any{"key": "form_id", "default": "Person_view"},
			"my_title":       map[string]any{"key": "field_my_title", "default": d["title"], "editable": true, "type": "StringField"},
			"my_age":         map[string]any{"key": "field_my_age", "default": 0, "editable": true, "type": "IntegerField"},
			"my_active":      map[string]any{"key": "field_my_active", "default": false, "editable": true, "type": "CheckBoxField"},
			"my_locked":      map[string]any{"key": "field_my_locked", "default": "x", "editable": false, "type": "StringField"},
			"your_reference": map[string]any{"key": "field_your_reference", "default": d["reference"], "editable": true, "type": "StringField"},
			"my_button":      map[string]any{"key": "field_my_button", "default": "b", "editable": true, "type": "ButtonField"},
			"_actions":       map[string]any{"put": map[string]any{"href": site + id + "/Base_edit"}},
		}
		json.NewEncoder(w).Encode(map[string]any{
			"title":     d["title"],
			"_links":    map[string]any{"type": map[string]any{"href": "urn:jio:get:portal_types/Person"}, "parent": map[string]any{"href": "urn:jio:get:person_module"}},
			"_embedded": map[string]any{"_view": view},
		})
	case strings.HasSuffix(r.URL.Path, "/Base_edit") && r.Method == http.MethodPost:
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/erp5/web_site_module/hateoas/"), "/Base_edit")
		s.mu.Lock()
		d, ok := s.docs[id]
		if s.putStatus != 0 {
			s.mu.Unlock()
			w.WriteHeader(s.putStatus)
			fmt.Fprint(w, `{"my_title":{"error_text":"Too long"}}`)
			return
		}
		if ok {
			for k, v := range r.PostForm {
				d[strings.TrimPrefix(strings.TrimPrefix(k, "field_my_"), "field_your_")] = v[0]
			}
		}
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/erp5/web_site_module/hateoas/lets" && r.Method == http.MethodPost:
		s.mu.Lock()
		s.next++
		id := fmt.Sprintf("%s/%d", r.PostForm.Get("parent_relative_url"), s.next)
		s.docs[id] = map[string]string{}
		s.mu.Unlock()
		w.Header().Set("X-Location", "urn:jio:get:"+id)
		w.WriteHeader(http.StatusCreated)
	case r.URL.Path == "/erp5/web_site_module/hateoas/odd" && q.Get("do") == "find":
		fmt.Fprint(w, `{"_debug":"search","_embedded":{"contents":[
			{"_links":{"self":{"href":"urn:jio:get:person_module/2"}},"reference":"foo2","title":"bar2","age":0},
			{"_links":{"self":{"href":"urn:jio:get:organisation_module/3"}},"title":"bar3","reference":null}]}}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestClient_Get(t *testing.T) {
	site := newStockSite(t)
	c := site.client()
	ctx := context.Background()
	doc, err := c.Get(ctx, "person_module/1")
	if err != nil {
		t.Fatal(err)
	}
	if doc.PortalType != "Person" || doc.ParentRelativeURL != "person_module" || doc.FormID != "Person_view" {
		t.Errorf("doc = %+v", doc)
	}
	// Falsy values are kept (jIO drops them); a non-editable my_ field and unknown types are not properties.
	want := map[string]string{"title": "foo", "reference": "bar", "age": "0", "active": "false", "portal_type": "Person", "parent_relative_url": "person_module"}
	if len(doc.Fields) != len(want) {
		t.Errorf("fields = %v, want keys of %v", doc.Fields, want)
	}
	for k, v := range want {
		if got := fmt.Sprint(doc.Fields[k]); got != v {
			t.Errorf("field %s = %q, want %q", k, got, v)
		}
	}
	if !strings.HasSuffix(doc.PutURL, "/person_module/1/Base_edit") {
		t.Errorf("put URL = %q", doc.PutURL)
	}

	// The root is fetched once; the traverse URL is the root's template expanded.
	if _, err := c.Get(ctx, "person_module/1"); err != nil {
		t.Fatal(err)
	}
	reqs := site.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (root once, two traverses)", len(reqs))
	}
	if got, want := reqs[1].uri, "/erp5/web_site_module/hateoas/odd?do=trav&relative_url=person_module%2F1&view=view"; got != want {
		t.Errorf("traverse URI = %s, want %s", got, want)
	}
	for _, r := range reqs {
		if r.header.Get("Expect") != "" {
			t.Errorf("request sent Expect: %s", r.header.Get("Expect"))
		}
		if r.header.Get("Accept-Encoding") == "" {
			t.Errorf("request did not ask for compression")
		}
	}

	_, err = c.Get(ctx, "person_module/404")
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("Get(missing) err = %v, want HTTP 404", err)
	}
	if Classify(err) != OutcomeDead {
		t.Errorf("Classify(404) = %v, want dead", Classify(err))
	}
}

func TestClient_PutPost(t *testing.T) {
	site := newStockSite(t)
	c := site.client()
	ctx := context.Background()

	id, err := c.Post(ctx, "Person", "person_module")
	if err != nil {
		t.Fatal(err)
	}
	if id != "person_module/101" {
		t.Errorf("post id = %q", id)
	}
	// First put of the type: traverse then Base_edit.
	if _, err := c.Put(ctx, id, "Person", map[string]any{"title": "barè", "reference": "r1", "age": json.Number("0"), "active": false}); err != nil {
		t.Fatal(err)
	}
	// Second put of the same type: the learned form saves the traverse.
	if _, err := c.Put(ctx, "person_module/1", "Person", map[string]any{"title": nil}); err != nil {
		t.Fatal(err)
	}
	reqs := site.requests()
	var paths []string
	for _, r := range reqs {
		u, _ := url.Parse(r.uri)
		paths = append(paths, r.method+" "+u.Path)
	}
	want := []string{
		"GET /erp5/web_site_module/hateoas/",
		"POST /erp5/web_site_module/hateoas/lets",
		"GET /erp5/web_site_module/hateoas/odd",
		"POST /erp5/web_site_module/hateoas/person_module/101/Base_edit",
		"POST /erp5/web_site_module/hateoas/person_module/1/Base_edit",
	}
	if strings.Join(paths, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
	if f := reqs[1].form; f.Get("portal_type") != "Person" || f.Get("parent_relative_url") != "person_module" {
		t.Errorf("post form = %v", f)
	}
	f := reqs[3].form
	if f.Get("form_id") != "Person_view" || f.Get("field_my_title") != "barè" || f.Get("field_your_reference") != "r1" ||
		f.Get("field_my_age") != "0" || f.Get("field_my_active") != "" || !f.Has("field_my_active") {
		t.Errorf("put form = %v", f)
	}
	if f := reqs[4].form; !f.Has("field_my_title") || f.Get("field_my_title") != "" {
		t.Errorf("cleared field form = %v, want field_my_title empty", f)
	}
	site.mu.Lock()
	if got := site.docs["person_module/101"]["title"]; got != "barè" {
		t.Errorf("stored title = %q", got)
	}
	site.mu.Unlock()

	// A field that is not on the form: not editable, dead.
	_, err = c.Put(ctx, "person_module/1", "Person", map[string]any{"locked": "y"})
	if !errors.Is(err, ErrNotEditable) || Classify(err) != OutcomeDead {
		t.Errorf("put of a read-only field: err = %v", err)
	}

	// A learned URL that answers 404 falls back to a traverse (which says 404 too here).
	n := len(site.requests())
	_, err = c.Put(ctx, "person_module/404", "Person", map[string]any{"title": "x"})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("put of a missing document: err = %v", err)
	}
	if got := len(site.requests()) - n; got != 2 {
		t.Errorf("put of a missing document took %d requests, want 2 (learned URL, then traverse)", got)
	}

	// A validation failure is dead with ERP5's field message.
	site.mu.Lock()
	site.putStatus = 400
	site.mu.Unlock()
	_, err = c.Put(ctx, "person_module/1", "Person", map[string]any{"title": "a very long title"})
	if Classify(err) != OutcomeDead || !strings.Contains(err.Error(), "my_title: Too long") {
		t.Errorf("put validation failure: err = %v (%v)", err, Classify(err))
	}
}

func TestClient_Search(t *testing.T) {
	site := newStockSite(t)
	c := site.client()
	rows, err := c.Search(context.Background(), SearchOptions{
		Query:      `title: "two"`,
		SelectList: []string{"destination", "source"},
		SortOn:     [][2]string{{"title", "descending"}, {"id", "descending"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	reqs := site.requests()
	got := reqs[len(reqs)-1].uri
	want := "/erp5/web_site_module/hateoas/odd?do=find&query=title%3A%20%22two%22&select_list=destination&select_list=source&limit=0&limit=1000&sort_on=%5B%22title%22%2C%22descending%22%5D&sort_on=%5B%22id%22%2C%22descending%22%5D"
	if got != want {
		t.Errorf("search URI\n got %s\nwant %s", got, want)
	}
	if len(rows) != 2 || rows[0].ID != "person_module/2" || rows[1].ID != "organisation_module/3" {
		t.Fatalf("rows = %+v", rows)
	}
	if v, ok := rows[1].Fields["reference"]; !ok || v != nil {
		t.Errorf("null property = %v, %v; want present and nil", v, ok)
	}
	if fmt.Sprint(rows[0].Fields["age"]) != "0" {
		t.Errorf("zero property = %v", rows[0].Fields["age"])
	}
}

func TestClient_Auth(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	for _, tt := range []struct {
		auth   Auth
		header string
		want   string
	}{
		{Auth{User: "u", Password: "p"}, "Authorization", "Basic dTpw"},
		{Auth{Token: "t0ken-xyz"}, "X-Access-Token", "t0ken-xyz"},
		{Auth{Cookie: "c00kie"}, "Cookie", "__ac=c00kie"},
	} {
		c := &Client{URL: srv.URL, Auth: tt.auth, HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: loopbackOnly})}}
		_, err := c.Root(context.Background())
		if Classify(err) != OutcomeUnauthorized {
			t.Errorf("%v: Classify = %v, want unauthorized", tt.auth, Classify(err))
		}
		if got.Get(tt.header) != tt.want {
			t.Errorf("%v: %s = %q, want %q", tt.auth, tt.header, got.Get(tt.header), tt.want)
		}
		for _, s := range []string{tt.auth.String(), fmt.Sprint(tt.auth.LogValue())} {
			if strings.Contains(s, "p)") || strings.Contains(s, "t0ken-xyz") || strings.Contains(s, "c00kie") {
				t.Errorf("auth description %q shows a secret", s)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeOK},
		{&HTTPError{Status: 400}, OutcomeDead},
		{&HTTPError{Status: 403}, OutcomeDead},
		{&HTTPError{Status: 404}, OutcomeDead},
		{&HTTPError{Status: 409}, OutcomeDead},
		{&HTTPError{Status: 422}, OutcomeDead},
		{&HTTPError{Status: 401}, OutcomeUnauthorized},
		{&HTTPError{Status: 408}, OutcomeDeferred},
		{&HTTPError{Status: 413}, OutcomeTooLarge},
		{&HTTPError{Status: 429}, OutcomeDeferred},
		{&HTTPError{Status: 500}, OutcomeDeferred},
		{&HTTPError{Status: 502}, OutcomeDeferred},
		{&HTTPError{Status: 504}, OutcomeDeferred},
		{fmt.Errorf("x: %w", errors.Join(ErrNotSent, ErrOffline, io.EOF)), OutcomeDeferred},
		{fmt.Errorf("x: %w", errors.Join(ErrNoResponse, io.ErrUnexpectedEOF)), OutcomeUncertain},
		{fmt.Errorf("x: %w", ErrBadResponse), OutcomeUncertain},
		{fmt.Errorf("x: %w", ErrNoLocation), OutcomeUncertain},
		{context.DeadlineExceeded, OutcomeUncertain},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !(&HTTPError{Status: 503}).Retryable() || (&HTTPError{Status: 422}).Retryable() {
		t.Error("Retryable wrong for 503 or 422")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{"-5", 0},
		{"999999999", MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFormatSeqs(t *testing.T) {
	tests := []struct {
		in   []int64
		want string
	}{
		{nil, ""},
		{[]int64{5}, "5"},
		{[]int64{10424, 10423}, "10423,10424"},
		{[]int64{10423, 10424, 10500, 10501, 10502, 10650}, "10423,10424,10500-10502,10650"},
		{[]int64{3, 3, 1, 2, 9}, "1-3,9"},
	}
	for _, tt := range tests {
		got := FormatSeqs(tt.in)
		if got != tt.want {
			t.Errorf("FormatSeqs(%v) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParseSeqs(got)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for _, s := range tt.in {
			seen[s] = true
		}
		if len(back) != len(seen) {
			t.Errorf("ParseSeqs(%q) = %v", got, back)
		}
		for _, s := range back {
			if !seen[s] {
				t.Errorf("ParseSeqs(%q) has %d", got, s)
			}
		}
	}
}

func TestCodec(t *testing.T) {
	body := []byte(strings.Repeat(`{"seq":1,"op":"put","id":"person_module/1","fields":{"title":"x"}},`, 50))
	for _, enc := range []string{EncodingGzip, EncodingZstd} {
		c, got, err := (&codec{}).encodeBody(enc, body)
		if err != nil {
			t.Fatal(err)
		}
		if got != enc || len(c) >= len(body)/4 {
			t.Errorf("%s: encoding %q, %d → %d bytes", enc, got, len(body), len(c))
		}
		d, err := Decompress(got, c)
		if err != nil || string(d) != string(body) {
			t.Errorf("%s: round trip failed: %v", enc, err)
		}
	}
	tiny := []byte(`{"seq":1}`)
	if c, enc, _ := (&codec{}).encodeBody(EncodingZstd, tiny); enc != "" || string(c) != string(tiny) {
		t.Errorf("tiny body was compressed (%q)", enc)
	}
	if _, err := Decompress("br", body); err == nil {
		t.Error("unknown encoding decoded")
	}
}
