package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

// countDocs returns how many rows the documents table has.
func countDocs(tb testing.TB, db *sqlite.DB) int {
	tb.Helper()
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM documents`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestDB_Import(t *testing.T) {
	ctx := context.Background()

	t.Run("JSONLines", func(t *testing.T) {
		db := MustOpenDB(t)
		in := `{"id":"person_module/1","doc":{"portal_type":"Person","title":"A","n":1.0}}

{"id":"organisation_module/1","doc":{"title":"B"},"version":"2024-05-02T06:07:08.123456Z","modification_date":"2024-05-02 06:07:08"}
{"id":"person_module/2","doc":{"portal_type":"Person"},"version":null}`
		st, err := db.Import(ctx, strings.NewReader(in), sqlite.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := (sqlite.ImportStats{Documents: 3, Created: 3, Committed: 3}); st != want {
			t.Errorf("stats = %+v, want %+v", st, want)
		}
		var pt, upVersion, upBody sql.NullString
		if err := db.Reader().QueryRow(`SELECT portal_type, upstream_version, json(upstream_body) FROM documents WHERE id = 'person_module/1'`).Scan(&pt, &upVersion, &upBody); err != nil {
			t.Fatal(err)
		}
		if pt.String != "Person" || upVersion.Valid || upBody.Valid {
			t.Errorf("person_module/1: portal_type %v, upstream %v %v; want Person, NULL, NULL", pt, upVersion, upBody)
		}
		if err := db.Reader().QueryRow(`SELECT portal_type, upstream_version, json(upstream_body) FROM documents WHERE id = 'organisation_module/1'`).Scan(&pt, &upVersion, &upBody); err != nil {
			t.Fatal(err)
		}
		if pt.Valid || upVersion.String != "2024-05-02T06:07:08.123456Z" || upBody.String != `{"title":"B"}` {
			t.Errorf("organisation_module/1: portal_type %v, upstream %v %v", pt, upVersion, upBody)
		}
		d, err := db.GetDocument(ctx, "person_module/1")
		if err != nil || string(d.Body) != `{"portal_type":"Person","title":"A","n":1.0}` {
			t.Errorf("get: %v, %v", d, err)
		}
	})

	t.Run("JSONArray", func(t *testing.T) {
		db := MustOpenDB(t)
		in := "\n [\n  {\"id\": \"a\",\n   \"doc\": {\"x\": [1, 2]}},\n  {\"id\": \"b\", \"doc\": {}}\n]\n"
		st, err := db.Import(ctx, strings.NewReader(in), sqlite.ImportOptions{})
		if err != nil || st.Committed != 2 {
			t.Fatalf("import: %+v, %v", st, err)
		}
		d, err := db.GetDocument(ctx, "a")
		if err != nil || string(d.Body) != `{"x":[1,2]}` {
			t.Errorf("get: %v, %v", d, err)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		db := MustOpenDB(t)
		for _, in := range []string{"", "\n\n", "[]"} {
			st, err := db.Import(ctx, strings.NewReader(in), sqlite.ImportOptions{})
			if err != nil || st.Documents != 0 {
				t.Errorf("%q: %+v, %v", in, st, err)
			}
		}
	})

	t.Run("ErrLine", func(t *testing.T) {
		good := `{"id":"a","doc":{}}` + "\n"
		tests := []struct {
			name, in, want string
		}{
			{"UnknownKey", good + good + `{"id":"b","doc":{},"rev":"1"}`, `line 3: unknown key "rev"`},
			{"BadID", good + `{"id":"a/../b","doc":{}}`, "line 2: id"},
			{"NoID", good + "\n" + `{"doc":{}}`, `line 3: no "id"`},
			{"IDNotString", `{"id":1,"doc":{}}`, `line 1: "id" is not a string`},
			{"NoDoc", `{"id":"a"}`, `line 1: no "doc"`},
			{"DocNotObject", `{"id":"a","doc":[1]}`, "line 1: doc: the document is not a JSON object"},
			{"DocDuplicateKey", `{"id":"a","doc":{"k":1,"k":2}}`, `line 1: doc: the document has the member "k" twice`},
			{"Syntax", good + `{"id":"a","doc":{}`, "line 2: not valid JSON"},
			{"NotObject", good + `["a"]`, "line 2: not a JSON object"},
			{"VersionNotString", `{"id":"a","doc":{},"version":3}`, `line 1: "version" is not a string`},
			{"ArrayUnknownKey", "[\n" + good + ",\n\n" + `{"id":"b","doc":{},"x":1}]`, `line 5: unknown key "x"`},
			{"ArraySyntax", "[\n" + good + ",\n{\"id\": }]", "line 4:"},
			{"ArrayNotClosed", "[\n" + good + "  ", "line 3: the JSON array is not closed"},
			{"ArrayTrailing", "[" + good + "] x", "line 2: data after the JSON array"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				db := MustOpenDB(t)
				st, err := db.Import(ctx, strings.NewReader(tt.in), sqlite.ImportOptions{})
				if gateway.ErrorCode(err) != gateway.EINVALID || !strings.Contains(gateway.ErrorMessage(err), tt.want) {
					t.Fatalf("err = %v, want EINVALID containing %q", err, tt.want)
				}
				if n := countDocs(t, db); n != 0 || st.Committed != 0 {
					t.Errorf("stored %d documents (committed %d); an import is all or nothing", n, st.Committed)
				}
			})
		}
	})

	t.Run("Chunk", func(t *testing.T) {
		db := MustOpenDB(t)
		var in strings.Builder
		for i := range 7 {
			in.WriteString(`{"id":"d/` + string(rune('a'+i)) + `","doc":{"i":"` + string(rune('a'+i)) + `"}}` + "\n")
		}
		in.WriteString(`{"id":"bad id","doc":{}}` + "\n")
		var progress []int
		st, err := db.Import(ctx, strings.NewReader(in.String()), sqlite.ImportOptions{Chunk: 3, ProgressEvery: 2,
			Progress: func(s sqlite.ImportStats) { progress = append(progress, s.Documents) }})
		if gateway.ErrorCode(err) != gateway.EINVALID || !strings.Contains(err.Error(), "line 8") {
			t.Fatalf("err = %v, want line 8 invalid", err)
		}
		if st.Committed != 6 || st.Documents != 7 {
			t.Errorf("stats = %+v, want 6 committed of 7", st)
		}
		if n := countDocs(t, db); n != 6 {
			t.Errorf("documents = %d, want the two committed chunks (6)", n)
		}
		if !reflect.DeepEqual(progress, []int{2, 4, 6}) {
			t.Errorf("progress = %v, want [2 4 6]", progress)
		}
		// The chunks are indexed.
		res, err := db.Query(ctx, mustParse(t, `i:e`), query.Options{})
		if err != nil || !reflect.DeepEqual(ids(res), []string{"d/e"}) {
			t.Errorf("query: %v, %v", res, err)
		}
	})

	t.Run("ReplaceKeepsOrder", func(t *testing.T) {
		db := MustOpenDB(t)
		mustImport(t, db, `{"id":"a","doc":{"v":"1"}}
{"id":"b","doc":{"v":"1"}}
`)
		if _, err := db.Writer().Exec(`UPDATE documents SET deleted = 1 WHERE id = 'a'`); err != nil {
			t.Fatal(err)
		}
		st, err := db.Import(ctx, strings.NewReader(`{"id":"c","doc":{"v":"2"}}
{"id":"a","doc":{"v":"2"}}
{"id":"c","doc":{"v":"3"}}
`), sqlite.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Created != 1 || st.Replaced != 2 {
			t.Errorf("stats = %+v, want 1 created, 2 replaced", st)
		}
		res, err := db.Query(ctx, nil, query.Options{SelectList: []string{"v"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
			t.Errorf("ids = %v, want [a b c] (a revived in its place)", got)
		}
		for _, q := range []string{`v:2`, `v:3`} {
			res, err := db.Query(ctx, mustParse(t, q), query.Options{})
			want := map[string][]string{`v:2`: {"a"}, `v:3`: {"c"}}[q]
			if err != nil || !reflect.DeepEqual(ids(res), want) {
				t.Errorf("%s: %v, %v; want %v", q, ids(res), err, want)
			}
		}
	})

	t.Run("Enqueue", func(t *testing.T) {
		db := MustOpenDB(t)
		mustImport(t, db, `{"id":"old","doc":{}}`+"\n")
		var seen []string
		_, err := db.Import(ctx, strings.NewReader(`{"id":"a","doc":{"portal_type":"P"},"version":"v1"}
{"id":"old","doc":{"v":2}}
{"id":"b","doc":{}}
`), sqlite.ImportOptions{Enqueue: func(ctx context.Context, tx *sql.Tx, rec sqlite.ImportRecord) error {
			// A hook that inserts rows of its own (as an outbox does) must not confuse
			// Replaced.
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, '') ON CONFLICT DO NOTHING`, "probe-"+rec.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit (id, at, actor, action, detail) VALUES (1000 + ?, '', '', '', '')`, len(seen)); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM documents WHERE id = ?`, rec.ID).Scan(&n); err != nil || n != 1 {
				t.Errorf("%s not visible in the hook's transaction: %d, %v", rec.ID, n, err)
			}
			seen = append(seen, fmt.Sprint(rec.ID, " ", rec.PortalType, " ", rec.Version, " ", string(rec.Doc), " ", rec.Replaced))
			if rec.ID == "b" {
				return errors.New("queue full")
			}
			return nil
		}})
		if err == nil || !strings.Contains(err.Error(), "line 3: queue full") {
			t.Errorf("err = %v, want the hook's error on line 3", err)
		}
		if want := []string{`a P v1 {"portal_type":"P"} false`, `old   {"v":2} true`, `b   {} false`}; !reflect.DeepEqual(seen, want) {
			t.Errorf("hook saw %q, want %q", seen, want)
		}
		if n := countDocs(t, db); n != 1 {
			t.Errorf("documents = %d after the hook failed, want the 1 from before", n)
		}
	})

	t.Run("ContextCanceled", func(t *testing.T) {
		db := MustOpenDB(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := db.Import(cctx, strings.NewReader(`{"id":"a","doc":{}}`), sqlite.ImportOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestDB_Export(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	in := `{"id":"a","doc":{"portal_type":"P","t":"<x>","n":1.50}}
{"id":"b","doc":{"portal_type":"Q"},"version":"v1"}
{"id":"c","doc":{"portal_type":"P"},"version":"v2"}
{"id":"gone","doc":{"portal_type":"P"}}
`
	mustImport(t, db, in)
	// c was edited since ERP5 sent it, gone removed.
	if _, err := db.Writer().Exec(`UPDATE documents SET body = jsonb('{"portal_type":"P","t":"edited"}') WHERE id = 'c'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(`UPDATE documents SET deleted = 1 WHERE id = 'gone'`); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := db.Export(ctx, &out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"a","doc":{"portal_type":"P","t":"<x>","n":1.50}}
{"id":"b","doc":{"portal_type":"Q"},"version":"v1"}
{"id":"c","doc":{"portal_type":"P","t":"edited"}}
`
	if n != 3 || out.String() != want {
		t.Errorf("export (%d) =\n%s\nwant\n%s", n, out.String(), want)
	}

	out.Reset()
	if _, err := db.Export(ctx, &out, mustParse(t, `portal_type:P`), nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Errorf("export of P: %d lines, want 2:\n%s", got, out.String())
	}

	// Export → import into a fresh replica gives the same documents.
	out.Reset()
	if _, err := db.Export(ctx, &out, nil, nil); err != nil {
		t.Fatal(err)
	}
	db2 := MustOpenDB(t)
	if _, err := db2.Import(ctx, bytes.NewReader(out.Bytes()), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if _, err := db2.Export(ctx, &again, nil, nil); err != nil {
		t.Fatal(err)
	}
	if again.String() != out.String() {
		t.Errorf("round trip:\n%s\nwant\n%s", again.String(), out.String())
	}
}
