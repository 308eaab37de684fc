package erp5sim_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
)

func TestServer_Root(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	root := c.root(s)
	base := c.srv.URL + erp5sim.DefaultSitePath
	if got := str(t, root, "_debug"); got != "root" {
		t.Errorf("_debug = %q", got)
	}
	want := map[string]string{
		"traverse":   base + "/ERP5Document_getHateoas?mode=traverse{&relative_url,view}",
		"raw_search": base + "/ERP5Document_getHateoas?mode=search{&query,select_list*,limit*,group_by*,sort_on*,local_roles*,selection_domain*}",
	}
	for k, v := range want {
		if got := str(t, root, "_links", k, "href"); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
		if dig(t, root, "_links", k, "templated") != true {
			t.Errorf("%s not templated", k)
		}
	}
	if got := str(t, root, "_actions", "add", "href"); got != base+"/ERP5Document_getHateoas?mode=newContent" {
		t.Errorf("add = %q", got)
	}
	if got := str(t, root, "_actions", "bulk", "method"); got != "POST" {
		t.Errorf("bulk method = %q", got)
	}
}

func TestServer_AcceptHeader(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	for _, tc := range []struct {
		accept string
		want   int
	}{
		{"application/hal+json", 200},
		{"application/json, application/hal+json;q=0.9", 200},
		{"*/*", 200},
		{"application/*", 200},
		{"application/json", 406},
		{"text/html", 406},
		{"application/hal+json;q=0", 406},
		{"", 406},
	} {
		req, _ := http.NewRequest("GET", c.siteURL(s), nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		} else {
			req.Header.Set("Accept", "")
			req.Header.Del("Accept")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Accept %q: %d, want %d", tc.accept, resp.StatusCode, tc.want)
		}
	}
}

func TestServer_Auth(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{Users: map[string]string{"zope": "secret"}, Tokens: []string{"tok123"}})
	get := func(mod func(*http.Request)) int {
		req, _ := http.NewRequest("GET", c.siteURL(s), nil)
		req.Header.Set("Accept", "application/hal+json")
		mod(req)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cookie := base64.StdEncoding.EncodeToString([]byte("zope:secret"))
	for name, tc := range map[string]struct {
		mod  func(*http.Request)
		want int
	}{
		"anonymous":   {func(*http.Request) {}, 401},
		"basic":       {func(r *http.Request) { r.SetBasicAuth("zope", "secret") }, 200},
		"basic wrong": {func(r *http.Request) { r.SetBasicAuth("zope", "nope") }, 401},
		"token":       {func(r *http.Request) { r.Header.Set("X-ACCESS-TOKEN", "tok123") }, 200},
		"bad token":   {func(r *http.Request) { r.Header.Set("X-ACCESS-TOKEN", "x") }, 401},
		"cookie":      {func(r *http.Request) { r.Header.Add("Cookie", `__ac="`+cookie+`"`) }, 200},
		"bad cookie":  {func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "__ac", Value: "Zm9vOmJhcg=="}) }, 401},
	} {
		if got := get(tc.mod); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
	// The receiver is protected too.
	req, _ := http.NewRequest("GET", c.siteURL(s)+erp5sim.CapabilityScript, nil)
	resp, _ := c.http.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("anonymous capability: %d, want 401", resp.StatusCode)
	}
}

func TestServer_TraverseView(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	root := c.root(s)
	r := c.traverse(s, root, "person_module/2")
	if r.status != 200 || r.header.Get("Content-Type") != "application/hal+json" {
		t.Fatalf("traverse: %d %s", r.status, r.header.Get("Content-Type"))
	}
	doc := r.json(t)
	if got := str(t, doc, "_links", "type", "href"); got != "urn:jio:get:portal_types/Person" {
		t.Errorf("type = %q", got)
	}
	if got := str(t, doc, "_links", "parent", "href"); got != "urn:jio:get:person_module" {
		t.Errorf("parent = %q", got)
	}
	view := dig(t, doc, "_embedded", "_view")
	if got := str(t, view, "form_id", "default"); got != "Person_view" {
		t.Errorf("form_id = %q", got)
	}
	title := dig(t, view, "my_title").(map[string]any)
	// ERP5 writes Formulator's flags as numbers.
	if title["key"] != "field_my_title" || title["default"] != "two" || fmt.Sprint(title["editable"]) != "1" || title["type"] != "StringField" {
		t.Errorf("my_title = %v", title)
	}
	if st := dig(t, view, "my_translated_validation_state").(map[string]any); fmt.Sprint(st["editable"]) != "0" || st["default"] != "Validated" {
		t.Errorf("workflow state is editable: %v", st)
	}
	if got := str(t, view, "_actions", "put", "href"); got != c.siteURL(s)+"person_module/2/Base_edit" {
		t.Errorf("put href = %q", got)
	}
	// Missing: 404 with an empty body.
	if r := c.traverse(s, root, "person_module/99"); r.status != 404 || len(r.body) != 0 {
		t.Errorf("missing document: %d %q", r.status, r.body)
	}
	// Read-only: no put action, and Base_edit refuses.
	s.SetReadOnly("person_module/2", true)
	doc = c.traverse(s, root, "person_module/2").json(t)
	if _, ok := dig(t, doc, "_embedded", "_view").(map[string]any)["_actions"]; ok {
		t.Errorf("read-only document has _actions")
	}
	if r := c.postForm(c.siteURL(s)+"person_module/2/Base_edit", "form_id", "Person_view", "field_my_title", "x"); r.status != 403 {
		t.Errorf("Base_edit on read-only: %d", r.status)
	}
}

// TestServer_JIOAllDocs replays jIO's allDocs test exchange: the URL a client builds from the
// root template must be exactly jIO's, and the double must answer it.
func TestServer_JIOAllDocs(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	s.Edit("person_module/2", map[string]any{"destination": "organisation_module/3", "source": "x"})
	root := c.root(s)
	u := expand(str(t, root, "_links", "raw_search", "href"), map[string]any{
		"query":       `title: "two"`,
		"select_list": []string{"destination", "source"},
		"limit":       []string{"5"},
		"sort_on":     []string{`["title","descending"]`, `["id","descending"]`},
	})
	want := c.siteURL(s) + "ERP5Document_getHateoas?mode=search&query=title%3A%20%22two%22&select_list=destination&select_list=source&limit=5&sort_on=%5B%22title%22%2C%22descending%22%5D&sort_on=%5B%22id%22%2C%22descending%22%5D"
	if u != want {
		t.Fatalf("expanded URL\n%s\nwant\n%s", u, want)
	}
	r := c.get(u)
	if r.status != 200 {
		t.Fatalf("search: %d %s", r.status, r.body)
	}
	res := r.json(t)
	contents := dig(t, res, "_embedded", "contents").([]any)
	if len(contents) != 2 {
		t.Fatalf("contents = %v", contents)
	}
	// id descending among equal titles: "3" before "2".
	first, second := contents[0].(map[string]any), contents[1].(map[string]any)
	if str(t, first, "_links", "self", "href") != "urn:jio:get:organisation_module/3" || str(t, second, "_links", "self", "href") != "urn:jio:get:person_module/2" {
		t.Errorf("order: %v", contents)
	}
	if second["destination"] != "organisation_module/3" || second["source"] != "x" {
		t.Errorf("selected values: %v", second)
	}
	if v, ok := first["destination"]; !ok || v != nil {
		t.Errorf("missing property must be null: %v", first)
	}
	if got := dig(t, res, "_select_list").([]any); len(got) != 2 {
		t.Errorf("_select_list = %v", got)
	}
}

func TestServer_SearchLimitsAndDates(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(erp5sim.Generate(1, 150, t0))
	root := c.root(s)
	tmpl := str(t, root, "_links", "raw_search", "href")
	search := func(vars map[string]any) []any {
		r := c.get(expand(tmpl, vars))
		if r.status != 200 {
			t.Fatalf("search %v: %d %s", vars, r.status, r.body)
		}
		return dig(t, r.json(t), "_embedded", "contents").([]any)
	}
	if got := search(map[string]any{"query": `portal_type:"Person"`}); len(got) != 10 {
		t.Errorf("no limit: %d rows, want 10", len(got))
	}
	all := search(map[string]any{"query": `portal_type:"Person"`, "limit": []string{"0", "100"}, "select_list": []string{"modification_date", "title"},
		"sort_on": []string{`["modification_date","ascending"]`}})
	if len(all) != 60 {
		t.Fatalf("limit 0,100: %d rows, want 60 people", len(all))
	}
	var prev time.Time
	for _, row := range all {
		md := row.(map[string]any)["modification_date"].(string)
		tm, err := time.Parse(time.RFC1123Z, md)
		if err != nil {
			t.Fatalf("modification_date %q is not RFC 822: %v", md, err)
		}
		if tm.Before(prev) {
			t.Errorf("not sorted by date: %v after %v", tm, prev)
		}
		prev = tm
	}
	page := search(map[string]any{"query": `portal_type:"Person"`, "limit": []string{"55", "100"}})
	if len(page) != 5 {
		t.Errorf("limit 55,100: %d rows, want 5", len(page))
	}
	if r := c.get(expand(tmpl, map[string]any{"query": `title:(`})); r.status != 400 {
		t.Errorf("bad query: %d", r.status)
	}
	if r := c.get(expand(tmpl, map[string]any{"sort_on": []string{`["title","sideways"]`}})); r.status != 400 {
		t.Errorf("bad sort_on: %d", r.status)
	}
}

// TestServer_JIOPostPut replays jIO's post and put exchanges through the root and the form.
func TestServer_JIOPostPut(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	root := c.root(s)
	r := c.postForm(str(t, root, "_actions", "add", "href"), "portal_type", "Foo", "parent_relative_url", "foo_module")
	if r.status != 201 || len(r.body) != 0 {
		t.Fatalf("post: %d %q", r.status, r.body)
	}
	loc := r.header.Get("X-Location")
	if loc != "urn:jio:get:foo_module/1" {
		t.Fatalf("X-Location = %q", loc)
	}
	id := strings.TrimPrefix(loc, "urn:jio:get:")
	doc := c.traverse(s, root, id).json(t)
	put := str(t, doc, "_embedded", "_view", "_actions", "put", "href")
	formID := str(t, doc, "_embedded", "_view", "form_id", "default")

	r = c.postForm(put, "form_id", formID, "field_my_title", "barè", "field_your_reference", "bar2")
	if r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	if got := s.Document(id).Properties["title"]; got != "barè" {
		t.Errorf("title = %v", got)
	}
	if _, ok := s.Document(id).Properties["reference"]; ok {
		t.Errorf("a your_ field was stored as a property")
	}
	// field_my_id renames: 201 with the new location.
	r = c.postForm(put, "form_id", formID, "field_my_title", "barè", "field_my_id", "foo")
	if r.status != 201 || r.header.Get("X-Location") != "urn:jio:get:foo_module/foo" {
		t.Fatalf("rename: %d %q", r.status, r.header.Get("X-Location"))
	}
	if s.Document(id) != nil || s.Document("foo_module/foo") == nil {
		t.Errorf("document not renamed")
	}
	// The old put URL is gone: a client must fall back to a traverse.
	if r := c.postForm(put, "form_id", formID, "field_my_title", "x"); r.status != 404 {
		t.Errorf("old put URL: %d, want 404", r.status)
	}
	// urlencoded works too.
	doc = c.traverse(s, root, "foo_module/foo").json(t)
	r = c.postURLEncoded(str(t, doc, "_embedded", "_view", "_actions", "put", "href"), "form_id", formID, "field_my_title", "urlencoded")
	if r.status != 200 || s.Document("foo_module/foo").Properties["title"] != "urlencoded" {
		t.Errorf("urlencoded put: %d", r.status)
	}
	// A second post gets the next id.
	r = c.postForm(str(t, root, "_actions", "add", "href"), "portal_type", "Foo", "parent_relative_url", "foo_module")
	if loc := r.header.Get("X-Location"); loc != "urn:jio:get:foo_module/2" {
		t.Errorf("second post: %q", loc)
	}
}

func TestServer_BaseEditValidation(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	root := c.root(s)
	put := str(t, c.traverse(s, root, "product_module/4").json(t), "_embedded", "_view", "_actions", "put", "href")
	before := s.Document("product_module/4")
	r := c.postForm(put, "form_id", "Product_view", "field_my_title", "new title", "field_my_base_price", "cheap", "field_my_weight", "1,5")
	if r.status != 400 {
		t.Fatalf("invalid put: %d", r.status)
	}
	view := dig(t, r.json(t), "_embedded", "_view")
	if got := str(t, view, "my_base_price", "error_text"); got != "You did not enter a floating point number." {
		t.Errorf("base_price error_text = %q", got)
	}
	if _, ok := dig(t, view, "my_weight").(map[string]any)["error_text"]; !ok {
		t.Errorf("weight has no error_text")
	}
	if _, ok := dig(t, view, "my_title").(map[string]any)["error_text"]; ok {
		t.Errorf("valid field has error_text")
	}
	after := s.Document("product_module/4")
	if after.Properties["title"] != "pump" || after.Version() != before.Version() {
		t.Errorf("a failed Base_edit changed the document: %v", after.Properties)
	}
	if r := c.postForm(put, "field_my_title", "no form id"); r.status != 400 {
		t.Errorf("missing form_id: %d", r.status)
	}
	r = c.postForm(put, "form_id", "Product_view", "field_my_base_price", "13.25", "field_my_validation_state", "deleted")
	if r.status != 200 {
		t.Fatalf("valid put: %d %s", r.status, r.body)
	}
	d := s.Document("product_module/4")
	if d.Properties["base_price"] != json.Number("13.25") || d.Properties["validation_state"] != "validated" {
		t.Errorf("after put: %v", d.Properties)
	}
}

func TestServer_OddRoutes(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{Routes: erp5sim.OddRoutes, SitePath: "/odd/site"})
	s.Load(people())
	root := c.root(s)
	if got := str(t, root, "_actions", "add", "href"); got != c.srv.URL+"/odd/site/lets?add=somedocument" {
		t.Errorf("add = %q", got)
	}
	r := c.traverse(s, root, "person_module/1")
	if r.status != 200 {
		t.Fatalf("traverse via the root: %d", r.status)
	}
	put := str(t, r.json(t), "_embedded", "_view", "_actions", "put", "href")
	if !strings.Contains(put, "person_module/1") || strings.HasSuffix(put, "/Base_edit") {
		t.Errorf("odd put href = %q", put)
	}
	if r := c.postForm(put, "form_id", "Person_view", "field_my_title", "odd"); r.status != 200 {
		t.Errorf("odd put: %d", r.status)
	}
	// Hand-built ERP5 URLs do not exist here.
	if r := c.get(c.srv.URL + "/odd/site/ERP5Document_getHateoas?mode=traverse&relative_url=person_module%2F1&view=view"); r.status != 404 {
		t.Errorf("hand-built traverse: %d, want 404", r.status)
	}
	if r := c.postForm(c.srv.URL+"/odd/site/person_module/1/Base_edit", "form_id", "Person_view", "field_my_title", "x"); r.status != 404 {
		t.Errorf("hand-built Base_edit: %d, want 404", r.status)
	}
	res := c.get(expand(str(t, root, "_links", "raw_search", "href"), map[string]any{"query": `title:"odd"`, "select_list": []string{"title"}}))
	if got := dig(t, res.json(t), "_embedded", "contents").([]any); len(got) != 1 {
		t.Errorf("odd search: %v", got)
	}
}

func TestServer_Bulk(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	root := c.root(s)
	r := c.postForm(str(t, root, "_actions", "bulk", "href"), "bulk_list", `[{"relative_url":"person_module/1","view":"view"},{"relative_url":"person_module/9","view":"view"}]`)
	if r.status != 200 {
		t.Fatalf("bulk: %d %s", r.status, r.body)
	}
	list := dig(t, r.json(t), "result_list").([]any)
	if len(list) != 2 || str(t, list[0], "title") != "one" || dig(t, list[1], "status") != json.Number("404") {
		t.Errorf("result_list = %v", list)
	}
}

// TestServer_VersionsAndIndexLag checks full-precision versions under a stopped clock and
// that searches see an edit only after the index lag.
func TestServer_VersionsAndIndexLag(t *testing.T) {
	clock := erp5sim.NewClock(t0)
	s, c := newDouble(t, erp5sim.Options{Now: clock.Now, IndexLag: 5 * time.Second})
	s.Load(people())
	root := c.root(s)
	before := s.Document("person_module/1")
	clock.Set(t0.Add(300 * time.Millisecond))
	s.Edit("person_module/1", map[string]any{"title": "first edit"})
	v1 := s.Document("person_module/1")
	s.Edit("person_module/1", map[string]any{"title": "second edit"}) // same instant
	v2 := s.Document("person_module/1")
	if v1.Version() != "2026-03-01T10:00:00.300000Z" {
		t.Errorf("version = %q", v1.Version())
	}
	if !(before.Version() < v1.Version() && v1.Version() < v2.Version()) {
		t.Errorf("versions not increasing: %s %s %s", before.Version(), v1.Version(), v2.Version())
	}
	if v1.ModificationDate.Truncate(time.Second) != v2.ModificationDate.Truncate(time.Second) {
		t.Errorf("edits in one second have different seconds")
	}
	// A no-op edit changes nothing.
	s.Edit("person_module/1", map[string]any{"title": "second edit"})
	if s.Document("person_module/1").Version() != v2.Version() {
		t.Errorf("a no-op edit bumped the version")
	}
	tmpl := str(t, root, "_links", "raw_search", "href")
	find := func() int {
		r := c.get(expand(tmpl, map[string]any{"query": `title:"second edit"`}))
		return len(dig(t, r.json(t), "_embedded", "contents").([]any))
	}
	clock.Advance(4 * time.Second)
	if n := find(); n != 0 {
		t.Errorf("search saw the edit before the index lag")
	}
	clock.Advance(time.Second)
	if n := find(); n != 1 {
		t.Errorf("search does not see the edit after the index lag: %d", n)
	}
	s.Edit("person_module/2", map[string]any{"title": "second edit"})
	s.Reindex()
	if n := find(); n != 2 {
		t.Errorf("Reindex: %d rows, want 2", n)
	}
}

func TestGenerate_Deterministic(t *testing.T) {
	a := erp5sim.Generate(7, 3000, t0)
	b := erp5sim.Generate(7, 3000, t0)
	c := erp5sim.Generate(8, 3000, t0)
	if len(a) != 3000 {
		t.Fatalf("%d documents, want 3000", len(a))
	}
	types := map[string]int{}
	for i := range a {
		types[a[i].PortalType]++
		ja, _ := json.Marshal(a[i])
		jb, _ := json.Marshal(b[i])
		if string(ja) != string(jb) {
			t.Fatalf("document %d differs between runs with one seed", i)
		}
	}
	for _, pt := range []string{"Person", "Organisation", "Product", "Sale Order", "Sale Order Line"} {
		if types[pt] == 0 {
			t.Errorf("no %s generated", pt)
		}
	}
	same := 0
	for i := range c {
		if c[i].Properties["title"] == a[i].Properties["title"] {
			same++
		}
	}
	if same == len(a) {
		t.Errorf("seeds 7 and 8 gave the same titles")
	}
	// Every generated line sits in an existing order; every property fits its field.
	s := erp5sim.New(erp5sim.Options{})
	s.Load(a)
	for _, d := range a {
		if d.PortalType == "Sale Order Line" && s.Document(d.Parent()) == nil {
			t.Errorf("%s has no parent", d.ID)
		}
	}
}
