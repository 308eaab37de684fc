package query_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sitesync.example/gateway/query"
)

// docs builds Exec input from "id=json" strings.
func docs(tb testing.TB, specs ...string) []query.Doc {
	tb.Helper()
	out := make([]query.Doc, len(specs))
	for i, s := range specs {
		id, body, _ := strings.Cut(s, "=")
		out[i] = query.Doc{ID: id, Body: mustDoc(tb, body)}
	}
	return out
}

func ids(res query.Result) []string {
	var out []string
	for _, r := range res.Rows {
		out = append(out, r.ID)
	}
	return out
}

func TestExec(t *testing.T) {
	in := docs(t,
		`a={"title":"b","n":2,"d":"2012-05-02"}`,
		`b={"title":"a","n":10,"d":"Fri, 01 Jan 2010 00:00:00 +0000"}`,
		`c={"title":"c","n":1}`,
		`d={"n":3,"d":"2011"}`,
		`e={"title":"a","n":1,"d":"2012-05-02"}`,
	)
	tests := []struct {
		name  string
		q     string
		opts  query.Options
		want  []string
		total int
	}{
		{name: "NoQueryKeepsOrder", want: []string{"a", "b", "c", "d", "e"}, total: 5},
		{name: "Filter", q: `title:a`, want: []string{"b", "e"}, total: 2},
		{name: "SortAscendingMissingFirst", opts: query.Options{SortOn: []query.SortKey{{Key: "title"}}}, want: []string{"d", "b", "e", "a", "c"}, total: 5},
		{name: "SortDescendingMissingLast", opts: query.Options{SortOn: []query.SortKey{{Key: "title", Descending: true}}}, want: []string{"c", "a", "b", "e", "d"}, total: 5},
		{name: "SortNumbersAsStrings", opts: query.Options{SortOn: []query.SortKey{{Key: "n"}}}, want: []string{"c", "e", "b", "a", "d"}, total: 5},
		{name: "SortTieNextKey", opts: query.Options{SortOn: []query.SortKey{{Key: "title"}, {Key: "n", Descending: true}}}, want: []string{"d", "b", "e", "a", "c"}, total: 5},
		{name: "SortTieNextKeyOther", opts: query.Options{SortOn: []query.SortKey{{Key: "title"}, {Key: "n"}}}, want: []string{"d", "e", "b", "a", "c"}, total: 5},
		{name: "SortDateTimeOrder", opts: query.Options{SortOn: []query.SortKey{{Key: "d"}}, DateKeys: []string{"d"}}, want: []string{"c", "b", "d", "a", "e"}, total: 5},
		{name: "SortDateDescending", opts: query.Options{SortOn: []query.SortKey{{Key: "d", Descending: true}}, DateKeys: []string{"d"}}, want: []string{"a", "e", "d", "b", "c"}, total: 5},
		// Untyped, the RFC 822 date is a string that sorts after the ISO ones ("F" > "2").
		{name: "SortDateAsStringsWhenUntyped", opts: query.Options{SortOn: []query.SortKey{{Key: "d"}}}, want: []string{"c", "d", "a", "e", "b"}, total: 5},
		{name: "FilterDate", q: `d:<2012`, opts: query.Options{DateKeys: []string{"d"}}, want: []string{"b", "d"}, total: 2},
		{name: "Skip", opts: query.Options{Skip: 3}, want: []string{"d", "e"}, total: 5},
		{name: "SkipCount", opts: query.Options{Skip: 1, Count: 2}, want: []string{"b", "c"}, total: 5},
		{name: "CountOnly", opts: query.Options{Count: 2}, want: []string{"a", "b"}, total: 5},
		{name: "SkipBeyond", opts: query.Options{Skip: 9}, want: nil, total: 5},
		{name: "NegativeSkip", opts: query.Options{Skip: -1, Count: 1}, want: []string{"a"}, total: 5},
		{name: "FilterSortLimit", q: `n:<5`, opts: query.Options{SortOn: []query.SortKey{{Key: "n", Descending: true}}, Count: 2}, want: []string{"d", "a"}, total: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := query.Parse(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			res := query.Exec(in, q, tt.opts)
			if got := ids(res); !slices.Equal(got, tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
			if res.TotalRows != tt.total {
				t.Fatalf("TotalRows = %d, want %d", res.TotalRows, tt.total)
			}
		})
	}
}

func TestExec_Select(t *testing.T) {
	in := docs(t, `a={"title":"x","n":1,"o":{"k":true}}`, `b={"n":2}`)
	body := func(i int) map[string]any { return in[i].Body }
	tests := []struct {
		name   string
		opts   query.Options
		values []map[string]any
		docs   []map[string]any
	}{
		{name: "NoSelectList", values: []map[string]any{{}, {}}, docs: []map[string]any{nil, nil}},
		{name: "Select", opts: query.Options{SelectList: []string{"title", "o"}},
			values: []map[string]any{{"title": "x", "o": map[string]any{"k": true}}, body(1)},
			docs:   []map[string]any{nil, nil}},
		{name: "SelectSome", opts: query.Options{SelectList: []string{"n"}},
			values: []map[string]any{{"n": json.Number("1")}, {"n": json.Number("2")}},
			docs:   []map[string]any{nil, nil}},
		{name: "EmptySelectList", opts: query.Options{SelectList: []string{}},
			values: []map[string]any{body(0), body(1)}, docs: []map[string]any{nil, nil}},
		{name: "IncludeDocs", opts: query.Options{IncludeDocs: true, SelectList: []string{"n"}},
			values: []map[string]any{{"n": json.Number("1")}, {"n": json.Number("2")}},
			docs:   []map[string]any{body(0), body(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := query.Exec(in, nil, tt.opts)
			if len(res.Rows) != 2 {
				t.Fatalf("rows = %d", len(res.Rows))
			}
			for i, r := range res.Rows {
				if r.Value == nil || !reflect.DeepEqual(r.Value, tt.values[i]) {
					t.Errorf("row %d value = %v, want %v", i, r.Value, tt.values[i])
				}
				if !reflect.DeepEqual(r.Doc, tt.docs[i]) {
					t.Errorf("row %d doc = %v, want %v", i, r.Doc, tt.docs[i])
				}
			}
		})
	}
	// Values are copies: changing one leaves the document alone.
	res := query.Exec(in, nil, query.Options{SelectList: []string{}})
	res.Rows[0].Value["title"] = "changed"
	if in[0].Body["title"] != "x" {
		t.Fatal("Exec's value aliases the document body")
	}
}

// TestExec_SortNullAndContent holds Exec to jIO 3.45's sort: a null value sorts after a
// missing one (jIO's test "sort_on options do not raise in case of null value"), and an
// object sorts by its content.
func TestExec_SortNullAndContent(t *testing.T) {
	in := docs(t, `x={"a":null}`, `y={"c":3}`, `z={"b":2}`)
	asc := query.Exec(in, nil, query.Options{SortOn: []query.SortKey{{Key: "a"}}})
	if got := ids(asc); !slices.Equal(got, []string{"y", "z", "x"}) {
		t.Errorf("ascending on a: %v, want [y z x]", got)
	}
	desc := query.Exec(in, nil, query.Options{SortOn: []query.SortKey{{Key: "a", Descending: true}}})
	if got := ids(desc); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Errorf("descending on a: %v, want [x y z]", got)
	}
	in = docs(t, `p={"t":{"content":"b","lang":"a"}}`, `q={"t":"c"}`, `r={"t":[{"content":"a"}]}`, `s={"t":{"lang":"z"}}`)
	got := ids(query.Exec(in, nil, query.Options{SortOn: []query.SortKey{{Key: "t"}}}))
	if !slices.Equal(got, []string{"s", "r", "p", "q"}) {
		t.Errorf("sort by content: %v, want [s r p q]", got)
	}
}

func TestExec_StableSort(t *testing.T) {
	var specs []string
	for i := range 50 {
		specs = append(specs, string(rune('A'+i%26))+strings.Repeat("x", i/26)+`={"k":"`+string(rune('0'+i%3))+`"}`)
	}
	in := docs(t, specs...)
	res := query.Exec(in, nil, query.Options{SortOn: []query.SortKey{{Key: "k"}}})
	pos := map[string]int{}
	for i, d := range in {
		pos[d.ID] = i
	}
	for i := 1; i < len(res.Rows); i++ {
		a, b := in[pos[res.Rows[i-1].ID]], in[pos[res.Rows[i].ID]]
		ka, kb := a.Body["k"].(string), b.Body["k"].(string)
		if ka > kb || ka == kb && pos[a.ID] > pos[b.ID] {
			t.Fatalf("rows %d and %d out of order: %s(%s) before %s(%s)", i-1, i, a.ID, ka, b.ID, kb)
		}
	}
}

func TestCompareSortValues(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		name   string
		a, b   any
		isDate bool
		want   int
	}{
		{name: "Strings", a: "a", b: "b", want: -1},
		{name: "Equal", a: "a", b: "a", want: 0},
		{name: "MissingFirst", a: query.Absent, b: "", want: -1},
		{name: "NullAfterMissing", a: query.Absent, b: nil, want: -1},
		{name: "NullBeforeStrings", a: nil, b: "", want: -1},
		{name: "NullEqualsNull", a: nil, b: []any{nil}, want: 0},
		{name: "ObjectWithoutContentIsMissing", a: map[string]any{"x": 1}, b: query.Absent, want: 0},
		{name: "ObjectByContent", a: map[string]any{"content": "b", "x": "a"}, b: "a", want: 1},
		{name: "ObjectContentEqual", a: []any{map[string]any{"content": n("10")}}, b: "10", want: 0},
		{name: "ObjectNullContent", a: map[string]any{"content": nil}, b: nil, want: 0},
		{name: "ObjectContentDate", a: map[string]any{"content": "2012-01-02"}, b: "2012-01-03", isDate: true, want: -1},
		{name: "NumbersAsStrings", a: n("10"), b: n("9"), want: -1},
		{name: "NumberJSForm", a: n("10.0"), b: "10", want: 0},
		{name: "Bool", a: true, b: "true", want: 0},
		{name: "ListElementwise", a: []any{"a", "b"}, b: []any{"a", "c"}, want: -1},
		{name: "ListPrefixFirst", a: []any{"a"}, b: []any{"a", "a"}, want: -1},
		{name: "ScalarIsOneElementList", a: "a", b: []any{"a"}, want: 0},
		{name: "EmptyListIsMissing", a: []any{}, b: query.Absent, want: 0},
		{name: "ListNullFirst", a: []any{nil, "b"}, b: []any{"a"}, want: -1},
		{name: "StringPrefixFirst", a: "ab", b: "abc", want: -1},
		{name: "NULByte", a: "a\x00", b: "a", want: 1},
		{name: "NULByteVsNext", a: "a\x00", b: "a\x01", want: -1},
		{name: "UTF16Order", a: "\U0001F600", b: "\uff61", want: -1},
		{name: "CaseSensitive", a: "B", b: "a", want: -1},
		{name: "DatesTimeOrder", a: "Wed, 06 Sep 2017 00:27:13 +0000", b: "2017-09-06T00:27:14Z", isDate: true, want: -1},
		{name: "DatesPrecisionIgnored", a: "2012", b: "2012-01-01 00:00", isDate: true, want: 0},
		{name: "DatesYearBeforeLaterDay", a: "2012", b: "2012-01-02", isDate: true, want: -1},
		{name: "NonDateBeforeDate", a: "zzz", b: "1970", isDate: true, want: -1},
		{name: "NonDatesAsStrings", a: "a", b: "b", isDate: true, want: -1},
		{name: "DateMissingFirst", a: query.Absent, b: "zzz", isDate: true, want: -1},
		{name: "DatesBeforeEpoch", a: "1969-12-31", b: "1970", isDate: true, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := query.CompareSortValues(tt.a, tt.b, tt.isDate); got != tt.want {
				t.Fatalf("CompareSortValues(%#v, %#v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := query.CompareSortValues(tt.b, tt.a, tt.isDate); got != -tt.want {
				t.Fatalf("reversed = %d, want %d", got, -tt.want)
			}
			ka, kb := query.SortBytes(tt.a, tt.isDate), query.SortBytes(tt.b, tt.isDate)
			if got := bytes.Compare(ka, kb); got != tt.want {
				t.Fatalf("bytes.Compare(SortBytes) = %d, want %d", got, tt.want)
			}
			if ka == nil {
				t.Fatal("SortBytes returned nil; want an empty, non-nil slice")
			}
		})
	}
}

// TestSortBytes_AgreesWithCompareStrings checks the byte keys of string pairs order as
// CompareStrings does.
func TestSortBytes_AgreesWithCompareStrings(t *testing.T) {
	words := []string{"", "a", "A", "ab", "a\x00", "a\x00b", "\x00", "\xff", "é", "\uffff", "\U0001F600", "\U00010000", "\ud7ff", "10", "9", "z"}
	for _, a := range words {
		for _, b := range words {
			want := query.CompareStrings(a, b)
			if got := bytes.Compare(query.SortBytes(a, false), query.SortBytes(b, false)); got != want {
				t.Errorf("SortBytes order of %q, %q = %d; CompareStrings = %d", a, b, got, want)
			}
		}
	}
}

func TestNewSortKey(t *testing.T) {
	if k, err := query.NewSortKey("title", "ascending"); err != nil || k != (query.SortKey{Key: "title"}) {
		t.Fatalf("ascending: %+v, %v", k, err)
	}
	if k, err := query.NewSortKey("title", "descending"); err != nil || k != (query.SortKey{Key: "title", Descending: true}) {
		t.Fatalf("descending: %+v, %v", k, err)
	}
	for _, dir := range []string{"", "asc", "Ascending", "DESC"} {
		if _, err := query.NewSortKey("title", dir); err == nil || !strings.Contains(err.Error(), `"ascending" or "descending"`) {
			t.Errorf("direction %q: err = %v", dir, err)
		}
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in          []int
		skip, count int
		err         bool
	}{
		{in: nil},
		{in: []int{5}, skip: 5},
		{in: []int{5, 10}, skip: 5, count: 10},
		{in: []int{0, 0}},
		{in: []int{-1}, err: true},
		{in: []int{0, -1}, err: true},
		{in: []int{1, 2, 3}, err: true},
	}
	for _, tt := range tests {
		skip, count, err := query.ParseLimit(tt.in)
		if (err != nil) != tt.err || skip != tt.skip || count != tt.count {
			t.Errorf("ParseLimit(%v) = %d, %d, %v", tt.in, skip, count, err)
		}
	}
}
