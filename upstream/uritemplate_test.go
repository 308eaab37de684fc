package upstream

import "testing"

func TestExpand(t *testing.T) {
	// RFC 6570 §3.2 example variables.
	rfc := map[string]any{
		"count": []string{"one", "two", "three"},
		"dom":   []string{"example", "com"},
		"dub":   "me/too",
		"hello": "Hello World!",
		"half":  "50%",
		"var":   "value",
		"who":   "fred",
		"base":  "http://example.com/home/",
		"path":  "/foo/bar",
		"list":  []string{"red", "green", "blue"},
		"v":     "6",
		"x":     "1024",
		"y":     "768",
		"empty": "",
		"undef": nil,
	}
	erp5 := "https://h/erp5/web_site_module/hateoas/ERP5Document_getHateoas?mode=search{&query,select_list*,limit*,group_by*,sort_on*,local_roles*,selection_domain*}"
	tests := []struct {
		name string
		tmpl string
		vars map[string]any
		want string
	}{
		// RFC 6570 §3.2.2–3.2.9.
		{"simple", "{var}", rfc, "value"},
		{"simple space", "{hello}", rfc, "Hello%20World%21"},
		{"simple pct", "{half}", rfc, "50%25"},
		{"simple empty", "O{empty}X", rfc, "OX"},
		{"simple undef", "O{undef}X", rfc, "OX"},
		{"simple two", "{x,y}", rfc, "1024,768"},
		{"simple list", "{list}", rfc, "red,green,blue"},
		{"simple list explode", "{list*}", rfc, "red,green,blue"},
		{"simple prefix", "{var:3}", rfc, "val"},
		{"reserved", "{+path}/here", rfc, "/foo/bar/here"},
		{"reserved keeps", "{+hello}", rfc, "Hello%20World!"},
		{"reserved pct kept", "{+half}", rfc, "50%25"},
		{"reserved base", "{+base}index", rfc, "http://example.com/home/index"},
		{"fragment", "{#hello}", rfc, "#Hello%20World!"},
		{"label", "X{.var}", rfc, "X.value"},
		{"label list", "X{.list*}", rfc, "X.red.green.blue"},
		{"path", "{/var,x}/here", rfc, "/value/1024/here"},
		{"path list explode", "{/list*}", rfc, "/red/green/blue"},
		{"path dub", "{/dub}", rfc, "/me%2Ftoo"},
		{"param", "{;x,y}", rfc, ";x=1024;y=768"},
		{"param empty", "{;x,y,empty}", rfc, ";x=1024;y=768;empty"},
		{"param list explode", "{;list*}", rfc, ";list=red;list=green;list=blue"},
		{"query", "{?x,y}", rfc, "?x=1024&y=768"},
		{"query empty", "{?x,y,empty}", rfc, "?x=1024&y=768&empty="},
		{"query list", "{?list}", rfc, "?list=red,green,blue"},
		{"query list explode", "{?list*}", rfc, "?list=red&list=green&list=blue"},
		{"query undef only", "X{?undef}", rfc, "X"},
		{"continuation", "?fixed=yes{&x}", rfc, "?fixed=yes&x=1024"},
		{"continuation empty", "{&x,y,empty}", rfc, "&x=1024&y=768&empty="},
		{"continuation prefix", "{&var:3}", rfc, "&var=val"},
		{"literal encoded", "a b{var}", rfc, "a%20b" + "value"},

		// docs/DESIGN.md appendix A.
		{"traverse", "https://h/s/ERP5Document_getHateoas?mode=traverse{&relative_url,view}",
			map[string]any{"relative_url": "person_module/20150119_azerty", "view": "jio_view"},
			"https://h/s/ERP5Document_getHateoas?mode=traverse&relative_url=person_module%2F20150119_azerty&view=jio_view"},
		{"traverse view undefined", "https://h/s/x?mode=traverse{&relative_url,view}",
			map[string]any{"relative_url": "a/b"},
			"https://h/s/x?mode=traverse&relative_url=a%2Fb"},
		{"search jIO example", erp5, map[string]any{
			"query":       `title: "two"`,
			"select_list": []string{"destination", "source"},
			"limit":       []int{5},
			"sort_on":     []string{`["title","descending"]`, `["id","descending"]`},
		}, "https://h/erp5/web_site_module/hateoas/ERP5Document_getHateoas?mode=search&query=title%3A%20%22two%22&select_list=destination&select_list=source&limit=5&sort_on=%5B%22title%22%2C%22descending%22%5D&sort_on=%5B%22id%22%2C%22descending%22%5D"},
		{"search limit pair empty query", erp5, map[string]any{"query": "", "limit": []int{0, 10}},
			"https://h/erp5/web_site_module/hateoas/ERP5Document_getHateoas?mode=search&query=&limit=0&limit=10"},
		{"search empty list omitted", erp5, map[string]any{"query": "a", "select_list": []string{}},
			"https://h/erp5/web_site_module/hateoas/ERP5Document_getHateoas?mode=search&query=a"},
		{"utf8", "{&q}", map[string]any{"q": "barè"}, "&q=bar%C3%A8"},
		{"plus and ampersand", "{&q}", map[string]any{"q": "a+b&c=d"}, "&q=a%2Bb%26c%3Dd"},
		{"odd jio double url", "https://d/lets?add=somedocument{&relative_url,view}",
			map[string]any{"relative_url": "x", "view": "v"}, "https://d/lets?add=somedocument&relative_url=x&view=v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.tmpl, tt.vars)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Expand(%q)\n got %s\nwant %s", tt.tmpl, got, tt.want)
			}
		})
	}
}

func TestExpand_Errors(t *testing.T) {
	for _, tmpl := range []string{"{unclosed", "stray}", "{}", "{=x}", "{x:0}", "{a b}", "{list:2}"} {
		t.Run(tmpl, func(t *testing.T) {
			if got, err := Expand(tmpl, map[string]any{"list": []string{"a"}}); err == nil {
				t.Errorf("Expand(%q) = %q, want an error", tmpl, got)
			}
		})
	}
}
