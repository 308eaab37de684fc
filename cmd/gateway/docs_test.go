package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runDocs runs the command line in-process with stdin and returns stdout, stderr and the
// exit status.
func runDocs(tb testing.TB, stdin string, argv ...string) (string, string, int) {
	tb.Helper()
	var out, errb bytes.Buffer
	m := NewMain()
	m.Stdin, m.Stdout, m.Stderr = strings.NewReader(stdin), &out, &errb
	code := exitCode(&errb, m.Run(context.Background(), argv))
	return out.String(), errb.String(), code
}

const docsSeed = `{"id":"person_module/1","doc":{"portal_type":"Person","title":"Éric Dupont","email":"eric@example.org","birthday":"1980-05-02","n":10.0}}
{"id":"person_module/2","doc":{"portal_type":"Person","title":"Anne <Martin>","birthday":"Wed, 06 Sep 1972 00:27:13 +0000","n":"9"}}
{"id":"organisation_module/1","doc":{"portal_type":"Organisation","title":"ACME\tLtd","start":"2024-05-02"},"version":"2024-05-02T06:07:08.000001Z"}
`

// seedDocs imports docsSeed into a new data directory and returns it.
func seedDocs(tb testing.TB) string {
	tb.Helper()
	tb.Chdir(tb.TempDir())
	dir := tb.TempDir()
	out, errOut, code := runDocs(tb, docsSeed, "--data-dir", dir, "docs", "import", "-")
	if code != 0 {
		tb.Fatalf("import: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "imported 3 documents (3 new, 0 replaced)") {
		tb.Fatalf("import output: %q", out)
	}
	return dir
}

func TestDocsImport(t *testing.T) {
	t.Run("File", func(t *testing.T) {
		t.Chdir(t.TempDir())
		dir := t.TempDir()
		var in strings.Builder
		in.WriteString("[\n")
		for i := range 25 {
			if i > 0 {
				in.WriteString(",\n")
			}
			in.WriteString(`{"id":"d/` + strings.Repeat("x", i+1) + `","doc":{"i":` + string(rune('0'+i%10)) + `}}`)
		}
		in.WriteString("\n]\n")
		path := filepath.Join(t.TempDir(), "seed.json")
		if err := os.WriteFile(path, []byte(in.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "import", path, "--chunk", "10")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "imported 25 documents (25 new, 0 replaced)") {
			t.Errorf("stdout = %q", out)
		}
		if n := strings.Count(out+errOut, "imported 25 documents"); n != 1 {
			t.Errorf("the summary printed %d times, want once: stdout %q, stderr %q", n, out, errOut)
		}
		out, _, _ = runDocs(t, "", "--data-dir", dir, "docs", "get", "d/xxx")
		if out != `{"i":2}`+"\n" {
			t.Errorf("get = %q", out)
		}
	})
	t.Run("ErrLine", func(t *testing.T) {
		t.Chdir(t.TempDir())
		dir := t.TempDir()
		_, errOut, code := runDocs(t, docsSeed+`{"id":"x","doc":{},"extra":1}`+"\n", "--data-dir", dir, "docs", "import", "-")
		if code != 1 || !strings.Contains(errOut, `line 4: unknown key "extra"`) {
			t.Errorf("exit %d, stderr %q; want 1 naming line 4", code, errOut)
		}
		out, _, _ := runDocs(t, "", "--data-dir", dir, "docs", "query", "-o", "json")
		if out != `{"total_rows": 0, "rows": []}`+"\n" {
			t.Errorf("after a failed import: %s", out)
		}
	})
	t.Run("Usage", func(t *testing.T) {
		t.Chdir(t.TempDir())
		dir := t.TempDir()
		for _, argv := range [][]string{
			{"docs", "import"},
			{"docs", "import", "a", "b"},
			{"docs", "import", "-", "--chunk", "-1"},
			{"docs", "import", "-", "--chunk", "x"},
		} {
			if _, errOut, code := runDocs(t, "", append([]string{"--data-dir", dir}, argv...)...); code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", argv, code, errOut)
			}
		}
		if _, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "import", filepath.Join(dir, "missing.jsonl")); code != 1 || !strings.Contains(errOut, "missing.jsonl") {
			t.Errorf("missing file: exit %d, %q; want 1", code, errOut)
		}
	})
}

func TestDocsGet(t *testing.T) {
	dir := seedDocs(t)
	out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "get", "person_module/1")
	if code != 0 || out != `{"portal_type":"Person","title":"Éric Dupont","email":"eric@example.org","birthday":"1980-05-02","n":10.0}`+"\n" {
		t.Errorf("exit %d, out %q, err %q", code, out, errOut)
	}
	if _, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "get", "person_module/9"); code != 1 || !strings.Contains(errOut, "person_module/9 not found") {
		t.Errorf("missing: exit %d, %q", code, errOut)
	}
	if _, _, code := runDocs(t, "", "--data-dir", dir, "docs", "get"); code != 2 {
		t.Errorf("no id: exit %d, want 2", code)
	}
}

// queryJSON is what `docs query -o json` prints.
type queryJSON struct {
	TotalRows int `json:"total_rows"`
	Rows      []struct {
		ID    string          `json:"id"`
		Value json.RawMessage `json:"value"`
		Doc   json.RawMessage `json:"doc"`
	} `json:"rows"`
}

func TestDocsQuery(t *testing.T) {
	dir := seedDocs(t)
	run := func(argv ...string) (queryJSON, string) {
		t.Helper()
		out, errOut, code := runDocs(t, "", append([]string{"--data-dir", dir, "docs", "query", "-o", "json"}, argv...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", argv, code, errOut)
		}
		var res queryJSON
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil || dec.More() {
			t.Fatalf("%v: output is not one result object (%v): %s", argv, err, out)
		}
		return res, out
	}
	rowIDs := func(res queryJSON) []string {
		var out []string
		for _, r := range res.Rows {
			out = append(out, r.ID)
		}
		return out
	}

	t.Run("ExactJSON", func(t *testing.T) {
		_, out := run(`portal_type:Person`, `AND`, `title:%éric%`, "--select", "title,n", "--include-docs")
		want := `{"total_rows": 1, "rows": [{"id": "person_module/1", "value": {"title":"Éric Dupont","n":10.0}, "doc": {"portal_type":"Person","title":"Éric Dupont","email":"eric@example.org","birthday":"1980-05-02","n":10.0}}]}` + "\n"
		if out != want {
			t.Errorf("output\n%s\nwant\n%s", out, want)
		}
	})
	t.Run("AllInStoredOrder", func(t *testing.T) {
		res, out := run()
		if res.TotalRows != 3 || !reflect.DeepEqual(rowIDs(res), []string{"person_module/1", "person_module/2", "organisation_module/1"}) {
			t.Errorf("got %s", out)
		}
		if strings.Contains(out, `"doc"`) || string(res.Rows[0].Value) != "{}" {
			t.Errorf("rows carry more than id and {}: %s", out)
		}
	})
	t.Run("SortLimit", func(t *testing.T) {
		res, out := run("--sort-on", "title:descending", "--limit", "1,1")
		if res.TotalRows != 3 || !reflect.DeepEqual(rowIDs(res), []string{"person_module/2"}) {
			t.Errorf("got %s", out)
		}
		res, _ = run("--sort-on", "portal_type", "--sort-on", "n:ascending", "--limit", "2")
		if !reflect.DeepEqual(rowIDs(res), []string{"organisation_module/1", "person_module/1"}) {
			t.Errorf("sort portal_type, n: %v", rowIDs(res))
		}
	})
	t.Run("DateKey", func(t *testing.T) {
		// birthday is a date key by default; start is one only with --date-key.
		res, _ := run(`birthday:<"1975"`)
		if !reflect.DeepEqual(rowIDs(res), []string{"person_module/2"}) {
			t.Errorf("birthday: %v", rowIDs(res))
		}
		if res, _ := run(`start:"2024"`); res.TotalRows != 0 {
			t.Errorf("start without --date-key matched %v", rowIDs(res))
		}
		if res, _ := run(`start:"2024"`, "--date-key", "start"); !reflect.DeepEqual(rowIDs(res), []string{"organisation_module/1"}) {
			t.Errorf("start with --date-key: %v", rowIDs(res))
		}
	})
	t.Run("Table", func(t *testing.T) {
		out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "query", "--select", "title,missing", "--limit", "2")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "title") ||
			!strings.Contains(lines[1], "Éric Dupont") || !strings.Contains(lines[2], "Anne <Martin>") || lines[3] != "(2 of 3 rows)" {
			t.Errorf("table:\n%s", out)
		}
	})
	t.Run("Usage", func(t *testing.T) {
		for _, argv := range [][]string{
			{"--sort-on", "title:up"},
			{"--limit", "x"},
			{"--limit", "1,-2"},
			{"-o", "yaml"},
			{"a", "AND"},
			{"--nope"},
		} {
			_, errOut, code := runDocs(t, "", append([]string{"--data-dir", dir, "docs", "query"}, argv...)...)
			if code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", argv, code, errOut)
			}
		}
	})
}

func TestDocsExport(t *testing.T) {
	dir := seedDocs(t)
	out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "export")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != docsSeed {
		t.Errorf("export\n%s\nwant the seed back\n%s", out, docsSeed)
	}
	out, _, _ = runDocs(t, "", "--data-dir", dir, "docs", "export", "portal_type:Organisation")
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, `{"id":"organisation_module/1"`) {
		t.Errorf("export of a query: %s", out)
	}
	if _, _, code := runDocs(t, "", "--data-dir", dir, "docs", "export", "a", "OR"); code != 2 {
		t.Errorf("bad query: exit %d, want 2", code)
	}
}

func TestDocsSubcommands(t *testing.T) {
	saved := docsSubcommands
	defer func() { docsSubcommands = saved }()
	docsSubcommands = append(slices.Clone(docsSubcommands), func(m *Main) *cobra.Command {
		return &cobra.Command{Use: "probe", RunE: func(*cobra.Command, []string) error {
			_, err := m.Stdout.Write([]byte("probed\n"))
			return err
		}}
	})
	t.Chdir(t.TempDir())
	out, errOut, code := runDocs(t, "", "--data-dir", t.TempDir(), "docs", "probe")
	if code != 0 || out != "probed\n" {
		t.Errorf("exit %d, out %q, err %q", code, out, errOut)
	}
}
