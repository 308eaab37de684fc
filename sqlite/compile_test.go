package sqlite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

var (
	diffRounds = flag.Int("jio.rounds", 3, "rounds of the SQL/evaluator differential test (each a fresh corpus)")
	diffSeed   = flag.Uint64("jio.seed", 0, "seed of the differential test's first round (0: random)")
)

var dateKeys = []string{"date", "modification_date"}

// mustImport imports JSON Lines text into db.
func mustImport(tb testing.TB, db *sqlite.DB, lines string) {
	tb.Helper()
	if _, err := db.Import(context.Background(), strings.NewReader(lines), sqlite.ImportOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// mustParse parses a jIO query string.
func mustParse(tb testing.TB, s string) query.Query {
	tb.Helper()
	q, err := query.Parse(s)
	if err != nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return q
}

// ids returns the ids of a result's rows.
func ids(res *sqlite.QueryResult) []string {
	out := []string{}
	for _, r := range res.Rows {
		out = append(out, r.ID)
	}
	return out
}

// decodeObject decodes a JSON object as query.Exec holds it (UseNumber).
func decodeObject(tb testing.TB, raw []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

func TestDB_Query(t *testing.T) {
	db := MustOpenDB(t)
	mustImport(t, db, `{"id":"p/1","doc":{"portal_type":"Person","title":"Éric Dupont","n":10.0,"tags":["a",1e2],"date":"2012-05-02 06:07:08"}}
{"id":"p/2","doc":{"portal_type":"Person","title":"bob","a.b":"dot","a\"b":"quote","x[0]":"bracket","$":"dollar","b\\c":"backslash","\u00e9":"accent","":"empty"}}
{"id":"o/1","doc":{"portal_type":"Organisation","title":"ACME","n":"10","date":"Wed, 06 Sep 2017 00:27:13 +0000"}}
{"id":"o/2","doc":{"portal_type":"Organisation","title":null,"n":9,"tags":[]}}
`)
	tests := []struct {
		name string
		q    query.Query
		opts query.Options
		want []string
	}{
		{"All", nil, query.Options{}, []string{"p/1", "p/2", "o/1", "o/2"}},
		{"EqualNumberForms", mustParse(t, `n:10`), query.Options{}, []string{"p/1", "o/1"}},
		{"ListElement", mustParse(t, `tags:100`), query.Options{}, []string{"p/1"}},
		{"NotEqualSkipsMissing", mustParse(t, `n:!="10"`), query.Options{}, []string{"o/2"}},
		{"NotMatchesMissing", mustParse(t, `NOT n:10`), query.Options{}, []string{"p/2", "o/2"}},
		{"LikeUnicodeFold", mustParse(t, `title:"%éric%"`), query.Options{}, []string{"p/1"}},
		{"LikeUnicodeFoldUpper", mustParse(t, `title:"%ÉRIC%"`), query.Options{}, []string{"p/1"}},
		{"LikeUnderscore", mustParse(t, `title:"%_ob"`), query.Options{}, []string{"p/2"}},
		{"UnderscoreWithoutPercentIsEqual", mustParse(t, `title:"_ob"`), query.Options{}, []string{}},
		{"NullNeverMatches", mustParse(t, `title:!=x`), query.Options{}, []string{"p/1", "p/2", "o/1"}},
		{"NumberOrStringLessThan", mustParse(t, `n:<"9.5"`), query.Options{}, []string{"o/1", "o/2"}},
		{"StringLessThanByCodeUnits", mustParse(t, `n:<"9"`), query.Options{}, []string{"o/1"}},
		{"Fulltext", mustParse(t, `acm`), query.Options{}, []string{"o/1"}},
		{"FulltextNumber", mustParse(t, `"100"`), query.Options{}, []string{"p/1"}},
		{"AndIndexed", mustParse(t, `portal_type:"Person" AND title:bob`), query.Options{}, []string{"p/2"}},
		{"OrIndexed", mustParse(t, `title:bob OR title:ACME`), query.Options{}, []string{"p/2", "o/1"}},
		{"DateCoarse", mustParse(t, `date:"2012"`), query.Options{DateKeys: dateKeys}, []string{"p/1"}},
		{"DateRFC822", mustParse(t, `date:>"2017-09-05"`), query.Options{DateKeys: dateKeys}, []string{"o/1"}},
		{"DateNotADateKey", mustParse(t, `date:"2012"`), query.Options{}, []string{}},
		{"SortDescending", nil, query.Options{SortOn: []query.SortKey{{Key: "title", Descending: true}}}, []string{"p/1", "p/2", "o/1", "o/2"}},
		{"SortMissingFirstThenStable", nil, query.Options{SortOn: []query.SortKey{{Key: "n"}}}, []string{"p/2", "p/1", "o/1", "o/2"}},
		{"SkipCount", nil, query.Options{Skip: 1, Count: 2}, []string{"p/2", "o/1"}},
		{"SkipOnly", nil, query.Options{Skip: 3}, []string{"o/2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := db.Query(context.Background(), tt.q, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(res); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids = %v, want %v", got, tt.want)
			}
		})
	}

	// Keys that a JSON path would misread: each must find its own member, and only it.
	for _, key := range []string{"a.b", `a"b`, "x[0]", "$", `b\c`, "é", ""} {
		t.Run("WeirdKey/"+key, func(t *testing.T) {
			for _, op := range []string{"=", ""} {
				want := map[string]string{"a.b": "dot", `a"b`: "quote", "x[0]": "bracket", "$": "dollar", `b\c`: "backslash", "é": "accent", "": "empty"}[key]
				q := &query.Simple{Key: key, Value: want, Operator: op}
				if key == "" {
					q.Key = "" // key-less: full text
				}
				res, err := db.Query(context.Background(), q, query.Options{SelectList: []string{key}})
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(res); !reflect.DeepEqual(got, []string{"p/2"}) {
					t.Fatalf("op %q: ids = %v, want [p/2]", op, got)
				}
				wantValue, _ := json.Marshal(map[string]string{key: want})
				if got := decodeObject(t, res.Rows[0].Value); !reflect.DeepEqual(got, decodeObject(t, wantValue)) {
					t.Errorf("value = %s, want %s", res.Rows[0].Value, wantValue)
				}
			}
		})
	}

	t.Run("RowsKeepStoredText", func(t *testing.T) {
		res, err := db.Query(context.Background(), mustParse(t, `reference:x OR n:10`), query.Options{IncludeDocs: true, SelectList: []string{"tags", "n", "missing"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.TotalRows != 2 {
			t.Fatalf("total_rows = %d, want 2", res.TotalRows)
		}
		if got, want := string(res.Rows[0].Value), `{"tags":["a",1e2],"n":10.0}`; got != want {
			t.Errorf("value = %s, want %s", got, want)
		}
		if got, want := string(res.Rows[0].Doc), `{"portal_type":"Person","title":"Éric Dupont","n":10.0,"tags":["a",1e2],"date":"2012-05-02 06:07:08"}`; got != want {
			t.Errorf("doc = %s, want %s", got, want)
		}
	})

	t.Run("SelectNoneKeepsWholeBody", func(t *testing.T) {
		res, err := db.Query(context.Background(), mustParse(t, `title:ACME`), query.Options{SelectList: []string{"missing"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(res.Rows[0].Value), `{"portal_type":"Organisation","title":"ACME","n":"10","date":"Wed, 06 Sep 2017 00:27:13 +0000"}`; got != want {
			t.Errorf("value = %s, want %s", got, want)
		}
		if res.Rows[0].Doc != nil {
			t.Errorf("doc = %s without include_docs", res.Rows[0].Doc)
		}
	})

	t.Run("TotalRowsBeforeLimit", func(t *testing.T) {
		res, err := db.Query(context.Background(), nil, query.Options{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.TotalRows != 4 || len(res.Rows) != 1 {
			t.Errorf("total_rows = %d, rows = %d; want 4, 1", res.TotalRows, len(res.Rows))
		}
	})

	t.Run("TombstonesNeverMatch", func(t *testing.T) {
		if _, err := db.Writer().Exec(`UPDATE documents SET deleted = 1 WHERE id = 'o/1'`); err != nil {
			t.Fatal(err)
		}
		defer db.Writer().Exec(`UPDATE documents SET deleted = 0 WHERE id = 'o/1'`)
		for _, q := range []query.Query{nil, mustParse(t, `title:ACME`), mustParse(t, `NOT title:bob`), mustParse(t, `acme`)} {
			res, err := db.Query(context.Background(), q, query.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids(res) {
				if id == "o/1" {
					t.Errorf("query %v returned the removed document", q)
				}
			}
		}
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		var qs []query.Query
		for i := range 5000 {
			qs = append(qs, &query.Simple{Key: "title", Value: fmt.Sprint(i)})
		}
		_, err := db.Query(context.Background(), &query.Complex{Operator: "OR", Queries: qs}, query.Options{})
		if gateway.ErrorCode(err) != gateway.ETOOLARGE {
			t.Errorf("err = %v, want %s", err, gateway.ETOOLARGE)
		}
	})

	t.Run("ManyIndexedLeaves", func(t *testing.T) {
		// More pairs than a UNION (500) or a result row (2000 columns) may hold.
		qs := []query.Query{mustParse(t, `title:bob`)}
		for i := range 2500 {
			qs = append(qs, &query.Simple{Key: "title", Value: fmt.Sprint(i)})
		}
		qs = append(qs, mustParse(t, `title:ACME`))
		for _, op := range []string{"OR", "AND"} {
			res, err := db.Query(context.Background(), &query.Complex{Operator: op, Queries: qs}, query.Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{"OR": {"p/2", "o/1"}, "AND": {}}[op]
			if got := ids(res); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: ids = %v, want %v", op, got, want)
			}
		}
	})

	t.Run("WideFlatQuery", func(t *testing.T) {
		// 3000 terms in one AND: deeper than SQLite's expression limit if chained.
		qs := []query.Query{mustParse(t, `title:bob`)}
		for i := range 3000 {
			qs = append(qs, &query.Simple{Key: "title", Value: fmt.Sprint(i), Operator: "!="})
		}
		res, err := db.Query(context.Background(), &query.Complex{Operator: "AND", Queries: qs}, query.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res); !reflect.DeepEqual(got, []string{"p/2"}) {
			t.Errorf("ids = %v, want [p/2]", got)
		}
	})
}

// TestDB_Query_UserTextIsNotSQL feeds SQL-looking keys and values through every kind of leaf.
func TestDB_Query_UserTextIsNotSQL(t *testing.T) {
	db := MustOpenDB(t)
	mustImport(t, db, `{"id":"p/1","doc":{"title":"x'); DROP TABLE documents; --","k') OR 1=1 --":"v"}}
{"id":"p/2","doc":{"title":"other"}}
`)
	evil := []string{`x'); DROP TABLE documents; --`, `k') OR 1=1 --`, `" OR "1"="1`, `%' OR '1'='1`}
	for _, k := range evil {
		for _, v := range evil {
			for _, op := range []string{"", "=", "!=", "<", ">="} {
				q := &query.Complex{Operator: "OR", Queries: []query.Query{
					&query.Simple{Key: k, Value: v, Operator: op},
					&query.Simple{Value: v},
				}}
				res, err := db.Query(context.Background(), q, query.Options{SortOn: []query.SortKey{{Key: k}}, SelectList: []string{k}})
				if err != nil {
					t.Fatalf("key %q value %q: %v", k, v, err)
				}
				want := query.Exec(loadDocs(t, db), q, query.Options{SortOn: []query.SortKey{{Key: k}}, SelectList: []string{k}})
				if res.TotalRows != want.TotalRows {
					t.Errorf("key %q value %q op %q: total_rows = %d, want %d", k, v, op, res.TotalRows, want.TotalRows)
				}
			}
		}
	}
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("documents = %d, %v; want 2", n, err)
	}
}

// loadDocs returns the live documents as query.Exec takes them, in stored order.
func loadDocs(tb testing.TB, db *sqlite.DB) []query.Doc {
	tb.Helper()
	rows, err := db.Reader().Query(`SELECT id, json(body) FROM documents WHERE deleted = 0 ORDER BY rowid`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var docs []query.Doc
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			tb.Fatal(err)
		}
		docs = append(docs, query.Doc{ID: id, Body: decodeObject(tb, []byte(body))})
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return docs
}

// TestDB_Query_Differential runs random queries over random documents through SQL and through
// query.Exec, the in-memory specification, and demands the same rows. -jio.rounds=N runs
// more; -jio.seed=S replays a round.
func TestDB_Query_Differential(t *testing.T) {
	seed := *diffSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	for round := range *diffRounds {
		s := seed + uint64(round)
		if !t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { runDifferential(t, s) }) {
			t.Logf("replay with: go test ./sqlite/ -run TestDB_Query_Differential -jio.seed=%d", s)
			return
		}
	}
}

// TestDB_Query_SortNullAndContent is the differential test's fixed case for jIO 3.45's sort:
// over [{"a":null},{"c":3},{"b":2}] ascending on a jIO gives c, b, then the null; an object
// sorts by its content. SQL and query.Exec must agree, and give jIO's order.
func TestDB_Query_SortNullAndContent(t *testing.T) {
	db := MustOpenDB(t)
	mustImport(t, db, `{"id":"x","doc":{"a":null}}
{"id":"y","doc":{"c":3}}
{"id":"z","doc":{"b":2}}
{"id":"p","doc":{"t":{"content":"b","lang":"a"}}}
{"id":"q","doc":{"t":"c"}}
{"id":"r","doc":{"t":[{"content":"a"}]}}
{"id":"s","doc":{"t":{"lang":"z"}}}
`)
	docs := loadDocs(t, db)
	for _, c := range []struct {
		key  string
		desc bool
		want []string
	}{
		{"a", false, []string{"y", "z", "p", "q", "r", "s", "x"}},
		{"a", true, []string{"x", "y", "z", "p", "q", "r", "s"}},
		{"t", false, []string{"x", "y", "z", "s", "r", "p", "q"}},
	} {
		opts := query.Options{SortOn: []query.SortKey{{Key: c.key, Descending: c.desc}}}
		got, err := db.Query(context.Background(), nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := query.Exec(docs, nil, opts)
		if msg := diffResult(t, got, want, opts); msg != "" {
			t.Errorf("sort on %s (descending %v): SQL and query.Exec differ: %s", c.key, c.desc, msg)
		}
		if ids := ids(got); !reflect.DeepEqual(ids, c.want) {
			t.Errorf("sort on %s (descending %v): %v, want %v", c.key, c.desc, ids, c.want)
		}
	}
}

func runDifferential(t *testing.T, seed uint64) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 0x6a696f))
	g := &gen{r: r}
	db := MustOpenDB(t)

	// A corpus stored three ways: an import, plain SQL inserts (as the write path does, through
	// the triggers), then edits and removals with plain SQL.
	var lines strings.Builder
	const nDocs = 150
	for i := range nDocs {
		doc, _ := json.Marshal(g.doc())
		if i%3 == 2 {
			if _, err := db.Writer().Exec(`INSERT INTO documents (id, portal_type, body, updated_at) VALUES (?, NULL, jsonb(?), '')`,
				fmt.Sprintf("doc/%d", i), string(doc)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		fmt.Fprintf(&lines, `{"id":"doc/%d","doc":%s}`+"\n", i, doc)
		if i%3 == 1 {
			mustImport(t, db, lines.String())
			lines.Reset()
		}
	}
	mustImport(t, db, lines.String())
	for range 20 {
		doc, _ := json.Marshal(g.doc())
		if _, err := db.Writer().Exec(`UPDATE documents SET body = jsonb(?) WHERE id = ?`, string(doc), fmt.Sprintf("doc/%d", r.IntN(nDocs))); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if _, err := db.Writer().Exec(`UPDATE documents SET deleted = 1 WHERE id = ?`, fmt.Sprintf("doc/%d", r.IntN(nDocs))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Writer().Exec(`DELETE FROM documents WHERE id = ?`, fmt.Sprintf("doc/%d", r.IntN(nDocs))); err != nil {
		t.Fatal(err)
	}
	docs := loadDocs(t, db)

	for i := range 400 {
		q := g.query(0)
		opts := g.options()
		want := query.Exec(docs, q, opts)
		got, err := db.Query(ctx, q, opts)
		if err != nil {
			t.Fatalf("query %d %s: %v", i, query.Format(q), err)
		}
		if msg := diffResult(t, got, want, opts); msg != "" {
			qj, _ := query.MarshalJSON(q)
			t.Fatalf("query %d: %s\nquery: %s\nopts: %+v\n%s", i, query.Format(q), qj, opts, msg)
		}
	}
}

// diffResult describes how got differs from want, or returns "".
func diffResult(tb testing.TB, got *sqlite.QueryResult, want query.Result, opts query.Options) string {
	if got.TotalRows != want.TotalRows {
		return fmt.Sprintf("total_rows = %d, want %d", got.TotalRows, want.TotalRows)
	}
	gotIDs := ids(got)
	var wantIDs = []string{}
	for _, r := range want.Rows {
		wantIDs = append(wantIDs, r.ID)
	}
	if !reflect.DeepEqual(gotIDs, wantIDs) {
		return fmt.Sprintf("ids = %v\nwant  %v", gotIDs, wantIDs)
	}
	for i, r := range want.Rows {
		if v := decodeObject(tb, got.Rows[i].Value); !reflect.DeepEqual(v, r.Value) {
			return fmt.Sprintf("row %s: value = %s, want %v", r.ID, got.Rows[i].Value, r.Value)
		}
		if opts.IncludeDocs != (got.Rows[i].Doc != nil) {
			return fmt.Sprintf("row %s: doc = %s with include_docs %v", r.ID, got.Rows[i].Doc, opts.IncludeDocs)
		}
		if opts.IncludeDocs && !reflect.DeepEqual(decodeObject(tb, got.Rows[i].Doc), r.Doc) {
			return fmt.Sprintf("row %s: doc = %s, want %v", r.ID, got.Rows[i].Doc, r.Doc)
		}
	}
	return ""
}

// gen makes random documents and queries from small pools, so that they meet often.
type gen struct{ r *rand.Rand }

var (
	genKeys = []string{"title", "reference", "portal_type", "n", "tags", "date", "modification_date",
		"a.b", `we"ird`, "x[0]", "é", "nested"}
	genStrings = []string{"Éric", "éric", "ÉRIC", "eric", "straße", "STRASSE", "\u212a", "k", "K",
		"10", "100", "9", "1e2", "10.0", "", " ", "a\nb", "a%b", "a_b", "😀", "\uffff", "Person",
		"Organisation", "x", "X", "abc", "ab", "true", "null", "[object Object]", "%", "_"}
	genNumbers = []string{"10", "10.0", "1e2", "100", "9", "-0", "0", "0.1", "1e21", "1e-7",
		"12345678901234567890", "-3.5", "2.50"}
	genDates = []string{"2012", "2012-05", "2012-05-02", "2012-05-02 06:07:08", "2012-05-02T06:07:08Z",
		"2012-05-02T06:07:08.123+02:00", "Wed, 06 Sep 2017 00:27:13 +0000", "06 Sep 2017 00:27 GMT",
		"Tue, 01 May 2012 23:00:00 -0500", "2017-09-06", "2017", "not a date", "2012-13-01"}
)

func (g *gen) pick(l []string) string { return l[g.r.IntN(len(l))] }

// scalar returns a random JSON scalar (as a value json.Marshal writes back as given).
func (g *gen) scalar() any {
	switch g.r.IntN(10) {
	case 0, 1, 2, 3:
		return g.pick(genStrings)
	case 4, 5:
		return json.Number(g.pick(genNumbers))
	case 6:
		return g.pick(genDates)
	case 7:
		return g.r.IntN(2) == 0
	case 8:
		return nil
	}
	// Longer than doc_keys indexes.
	return strings.Repeat("long ", 41+g.r.IntN(3)) + g.pick(genStrings)
}

func (g *gen) value(depth int) any {
	switch n := g.r.IntN(12); {
	case n < 8 || depth > 1:
		return g.scalar()
	case n < 10:
		l := []any{}
		for range g.r.IntN(4) {
			l = append(l, g.value(depth+1))
		}
		return l
	case n < 11:
		return map[string]any{"content": g.scalar()}
	}
	return map[string]any{g.pick(genKeys): g.value(depth + 1)}
}

func (g *gen) doc() map[string]any {
	d := map[string]any{}
	for range g.r.IntN(7) {
		k := g.pick(genKeys)
		switch k {
		case "date", "modification_date":
			if g.r.IntN(4) > 0 {
				d[k] = g.pick(genDates)
				continue
			}
		case "portal_type":
			d[k] = g.pick([]string{"Person", "Organisation", "Product"})
			continue
		}
		d[k] = g.value(0)
	}
	return d
}

// queryValue returns a value for a leaf: a pool string, number, date or a LIKE pattern.
func (g *gen) queryValue() string {
	switch g.r.IntN(8) {
	case 0, 1:
		return g.pick(genStrings)
	case 2:
		return g.pick(genNumbers)
	case 3:
		return g.pick(genDates)
	case 4:
		s := g.pick(genStrings)
		if len(s) > 1 {
			s = s[:len(s)/2]
		}
		return "%" + s + "%"
	case 5:
		return g.pick([]string{"_ric", "%ric", "É%", "%", "%%", "_", "__", "%a_b%", "%\n%", "STRA%E", "k%", "%1%"})
	case 6:
		return "long %"
	}
	return strings.Repeat("long ", 41) + g.pick(genStrings)
}

func (g *gen) query(depth int) query.Query {
	if depth >= 3 || g.r.IntN(3) > 0 {
		leaf := &query.Simple{Value: g.queryValue(), Operator: g.pick([]string{"", "", "", "=", "!=", "<", "<=", ">", ">="})}
		if g.r.IntN(6) > 0 {
			leaf.Key = g.pick(genKeys)
		}
		return leaf
	}
	op := g.pick([]string{"AND", "OR", "NOT", ""})
	n := 1 + g.r.IntN(3)
	if op == "NOT" {
		n = 1
		if g.r.IntN(5) == 0 {
			n = 2
		}
	}
	c := &query.Complex{Operator: op}
	for range n {
		c.Queries = append(c.Queries, g.query(depth+1))
	}
	return c
}

func (g *gen) options() query.Options {
	opts := query.Options{DateKeys: dateKeys, IncludeDocs: g.r.IntN(2) == 0}
	for range g.r.IntN(3) {
		opts.SortOn = append(opts.SortOn, query.SortKey{Key: g.pick(genKeys), Descending: g.r.IntN(2) == 0})
	}
	switch g.r.IntN(4) {
	case 0:
		opts.Skip = g.r.IntN(20)
	case 1:
		opts.Skip, opts.Count = g.r.IntN(5), 1+g.r.IntN(10)
	}
	switch g.r.IntN(4) {
	case 0:
		opts.SelectList = []string{}
	case 1, 2:
		for range 1 + g.r.IntN(3) {
			opts.SelectList = append(opts.SelectList, g.pick(genKeys))
		}
	}
	return opts
}

// TestDB_Query_JSONBForms stores bodies in the JSONB forms SQLite makes from JSON5 text and
// from SQL values (INT5, FLOAT5, TEXT5, TEXTRAW), which Go reads itself, and checks that
// queries over them agree with query.Exec over the JSON text SQLite renders.
func TestDB_Query_JSONBForms(t *testing.T) {
	db := MustOpenDB(t)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Writer().Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('j5', jsonb(?), '')`,
		`{a: 0x1F, b: .5, c: 'x\x41\'', d: +1, e: 5., f: Infinity, g: NaN, "h": "tab\there", i: [0x10, 'q', -0X0a], 'j\u0041': 1, k: -Infinity}`)
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('raw', jsonb('{}'), '')`)
	exec(`UPDATE documents SET body = jsonb_set(body, '$.k', 'raw "quoted" \ text', '$.l', json_array('x"y', 1.5), '$."m n"', 'é') WHERE id = 'raw'`)
	exec(`INSERT INTO documents (id, body, updated_at) VALUES ('obj', jsonb_object('k"', 'v\', 'a', 31, 'i', jsonb_array('q', 16)), '')`)
	docs := loadDocs(t, db)
	values := map[string]bool{"%": true, "%A%": true, "%\\%": true}
	keys := map[string]bool{}
	for _, d := range docs {
		for k, v := range d.Body {
			keys[k] = true
			l, ok := v.([]any)
			if !ok {
				l = []any{v}
			}
			for _, e := range l {
				if s, ok := query.StringForm(e); ok {
					values[s] = true
				}
			}
		}
	}
	if len(keys) < 14 {
		t.Fatalf("keys = %v: the bodies were not stored as meant", keys)
	}
	n := 0
	for k := range keys {
		for v := range values {
			for _, op := range []string{"", "=", "!=", "<", ">="} {
				for _, q := range []query.Query{&query.Simple{Key: k, Value: v, Operator: op}, &query.Simple{Value: v}} {
					opts := query.Options{SortOn: []query.SortKey{{Key: k}}, SelectList: []string{k}, IncludeDocs: true}
					got, err := db.Query(context.Background(), q, opts)
					if err != nil {
						t.Fatal(err)
					}
					if msg := diffResult(t, got, query.Exec(docs, q, opts), opts); msg != "" {
						t.Fatalf("%s: %s", query.Format(q), msg)
					}
					n += got.TotalRows
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no query matched anything")
	}
	var stray int
	if err := db.Reader().QueryRow(`SELECT (SELECT count(*) FROM (SELECT * FROM doc_keys EXCEPT SELECT key, value, doc FROM doc_entries))
		+ (SELECT count(*) FROM (SELECT key, value, doc FROM doc_entries EXCEPT SELECT * FROM doc_keys))`).Scan(&stray); err != nil || stray != 0 {
		t.Fatalf("doc_keys differs from doc_entries by %d rows (%v)", stray, err)
	}
}
