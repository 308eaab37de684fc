package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

func TestDB_GetDocument(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	const body = `{"title":"Zoë","portal_type":"Person","n":1.50,"big":12345678901234567890,"e":1E400,"u":"\u00e9\n","l":[1,{"content":"c"},null]}`
	mustImport(t, db, `{"id":"person_module/1","doc":`+body+`}
{"id":"person_module/local-2","doc":{"title":"new"}}
{"id":"person_module/gone","doc":{"title":"removed"}}
`)
	if _, err := db.Writer().Exec(`UPDATE documents SET deleted = 1 WHERE id = 'person_module/gone'`); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		d, err := db.GetDocument(ctx, "person_module/1")
		if err != nil {
			t.Fatal(err)
		}
		if d.ID != "person_module/1" || d.PortalType != "Person" {
			t.Errorf("id, portal_type = %q, %q", d.ID, d.PortalType)
		}
		if string(d.Body) != body {
			t.Errorf("body = %s, want it exactly as given: %s", d.Body, body)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []string{"person_module/404", "person_module/gone"} {
			if _, err := db.GetDocument(ctx, id); gateway.ErrorCode(err) != gateway.ENOTFOUND {
				t.Errorf("%s: err = %v, want %s", id, err, gateway.ENOTFOUND)
			}
		}
	})
	t.Run("ErrInvalidID", func(t *testing.T) {
		for _, id := range []string{"", "/a", "a/../b", "a b", "a?x=1"} {
			if _, err := db.GetDocument(ctx, id); gateway.ErrorCode(err) != gateway.EINVALID {
				t.Errorf("%q: err = %v, want %s", id, err, gateway.EINVALID)
			}
		}
	})
	t.Run("ThroughIDMap", func(t *testing.T) {
		// ERP5 numbered the local document (renamed in place), then numbered the ERP5 id's
		// earlier local name: both old ids lead to the document.
		if _, err := db.Writer().Exec(`UPDATE documents SET id = 'person_module/7' WHERE id = 'person_module/local-2'`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(`INSERT INTO id_map (local_id, erp5_id, created_at) VALUES
			('person_module/local-2', 'person_module/7', ''), ('person_module/local-1', 'person_module/local-2', '')`); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"person_module/local-2", "person_module/local-1", "person_module/7"} {
			d, err := db.GetDocument(ctx, id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if d.ID != "person_module/7" || string(d.Body) != `{"title":"new"}` {
				t.Errorf("%s: got %s %s", id, d.ID, d.Body)
			}
		}
	})
	t.Run("IDMapCycle", func(t *testing.T) {
		if _, err := db.Writer().Exec(`INSERT INTO id_map (local_id, erp5_id, created_at) VALUES
			('x/local-a', 'x/local-b', ''), ('x/local-b', 'x/local-a', '')`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetDocument(ctx, "x/local-a"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
			t.Errorf("err = %v, want %s", err, gateway.ENOTFOUND)
		}
	})
}

func TestParseBody(t *testing.T) {
	tests := []struct {
		name, body, portalType string
		ok                     bool
	}{
		{"OK", `{"portal_type":"Sale Order","title":"x"}`, "Sale Order", true},
		{"Escaped", ` {"portal\u005ftype" : "P\u00e9","a":{"portal_type":"inner"}} `, "Pé", true},
		{"NonStringPortalType", `{"portal_type":3}`, "", true},
		{"Empty", `{}`, "", true},
		{"NestedDuplicatesAllowed", `{"a":{"b":1,"b":2}}`, "", true},
		{"ErrArray", `[1]`, "", false},
		{"ErrNull", `null`, "", false},
		{"ErrSyntax", `{"a":}`, "", false},
		{"ErrJSON5", `{a:1}`, "", false},
		{"ErrDuplicate", `{"a":1,"b":2,"a":3}`, "", false},
		{"ErrDuplicateEscaped", `{"a":1,"\u0061":2}`, "", false},
		{"ErrUTF8", "{\"a\":\"\xff\"}", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := sqlite.ParseBody([]byte(tt.body))
			if tt.ok && (err != nil || pt != tt.portalType) {
				t.Errorf("ParseBody = %q, %v; want %q", pt, err, tt.portalType)
			}
			if !tt.ok && gateway.ErrorCode(err) != gateway.EINVALID {
				t.Errorf("err = %v, want %s", err, gateway.EINVALID)
			}
		})
	}
}

// docKeys returns doc_keys as sorted "key=value@id" strings.
func docKeys(tb testing.TB, db *sqlite.DB) []string {
	tb.Helper()
	rows, err := db.Reader().Query(`SELECT k.key, k.value, d.id FROM doc_keys k JOIN documents d ON d.rowid = k.doc`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var k, v, id string
		if err := rows.Scan(&k, &v, &id); err != nil {
			tb.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%s@%s", k, v, id))
	}
	sort.Strings(out)
	return out
}

// TestDocKeys_PlainSQL writes documents with plain SQL, as the write path does, and checks
// the index the triggers keep.
func TestDocKeys_PlainSQL(t *testing.T) {
	db := MustOpenDB(t)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Writer().Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	long := fmt.Sprintf("%0201d", 7)
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('a', jsonb(?), '')`,
		`{"t":"x","n":10.0,"l":["y",1e2,true,null,["nested"],{"content":"c"},"y"],"o":{"k":"v"},"z":null,"long":"`+long+`","a.b":"q"}`)
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('b', jsonb(?), '')`, `{"t":"text body"}`)
	want := []string{"a.b=q@a", "l=100@a", "l=true@a", "l=y@a", "n=10@a", "t=text body@b", "t=x@a"}
	if got := docKeys(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after insert: %v\nwant %v", got, want)
	}

	exec(`UPDATE documents SET body = jsonb(?) WHERE id = 'a'`, `{"t":"x2","n":-0}`)
	exec(`UPDATE documents SET deleted = 1 WHERE id = 'b'`)
	want = []string{"n=0@a", "t=text body@b", "t=x2@a"}
	if got := docKeys(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after update: %v\nwant %v", got, want)
	}
	// A tombstone keeps its rows but never matches.
	res, err := db.Query(context.Background(), mustParse(t, `t:"text body"`), query.Options{})
	if err != nil || res.TotalRows != 0 {
		t.Fatalf("query a tombstone: %+v, %v", res, err)
	}

	exec(`UPDATE documents SET id = 'a2' WHERE id = 'a'`)
	exec(`DELETE FROM documents WHERE id = 'b'`)
	want = []string{"n=0@a2", "t=x2@a2"}
	if got := docKeys(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after rename and delete: %v\nwant %v", got, want)
	}
	res, err = db.Query(context.Background(), mustParse(t, `t:x2 AND n:0`), query.Options{})
	if err != nil || !reflect.DeepEqual(ids(res), []string{"a2"}) {
		t.Fatalf("query: %+v, %v", res, err)
	}

	// A body with a repeated member name (possible through plain SQL) counts its last one,
	// for the index as for a query.
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('dup', jsonb(?), '')`, `{"d":"first","e":1,"d":"last"}`)
	for q, want := range map[string][]string{`d:first`: {}, `d:last`: {"dup"}, `e:1`: {"dup"}, `first`: {}, `last`: {"dup"}} {
		res, err := db.Query(context.Background(), mustParse(t, q), query.Options{})
		if err != nil || !reflect.DeepEqual(ids(res), want) {
			t.Errorf("%s: %v, %v; want %v", q, ids(res), err, want)
		}
	}

	// Every row of doc_keys is what doc_entries computes, and nothing else.
	var stray int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM (SELECT key, value, doc FROM doc_keys
		EXCEPT SELECT key, value, doc FROM doc_entries)`).Scan(&stray); err != nil || stray != 0 {
		t.Fatalf("stray doc_keys rows: %d, %v", stray, err)
	}
}

// TestDB_Query_LongValues checks "=" on values doc_keys leaves out.
func TestDB_Query_LongValues(t *testing.T) {
	db := MustOpenDB(t)
	long := fmt.Sprintf("%0300d", 42)
	doc, _ := json.Marshal(map[string]any{"t": long, "l": []string{"s", long}})
	mustImport(t, db, fmt.Sprintf(`{"id":"a","doc":%s}`+"\n"+`{"id":"b","doc":{"t":"s"}}`+"\n", doc))
	for _, q := range []query.Query{
		&query.Simple{Key: "t", Value: long},
		&query.Simple{Key: "l", Value: long, Operator: "="},
		&query.Complex{Operator: "AND", Queries: []query.Query{&query.Simple{Key: "l", Value: "s"}, &query.Simple{Key: "l", Value: long}}},
	} {
		res, err := db.Query(context.Background(), q, query.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("%s: ids = %v, want [a]", query.Format(q), got)
		}
	}
}
