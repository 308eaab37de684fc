package query_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sitesync.example/gateway/query"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// formatTests are jIO's serialisations, to the character (docs/DESIGN.md appendix D).
var formatTests = []struct {
	name string
	in   string // a query string, or a JSON tree when it starts with "{"
	want string
}{
	{name: "SimpleOperator", in: `a:=b`, want: `a: = "b"`},
	{name: "SimpleNoOperator", in: `c:%`, want: `c:  "%"`},
	{name: "KeyLess", in: `v`, want: ` "v"`},
	{name: "KeyLessOperator", in: `<2`, want: `< "2"`},
	{name: "Complex", in: `a:=b OR d:<2`, want: `( a: = "b" OR d: < "2" )`},
	{name: "SameKeyGroup", in: `a:(b OR c)`, want: `a: (  "b" OR  "c" )`},
	{name: "SameKeyGroupFromSeparateKeys", in: `(a:b OR a:c)`, want: `a: (  "b" OR  "c" )`},
	{name: "SameKeyGroupOperators", in: `a:(>=1 AND <5)`, want: `a: ( >= "1" AND < "5" )`},
	{name: "KeyLessGroup", in: `a b`, want: `(  "a" AND  "b" )`},
	{name: "MixedKeys", in: `a:b c`, want: `( a:  "b" AND  "c" )`},
	{name: "Nested", in: `a:b AND c:d OR e:f`, want: `( ( a:  "b" AND c:  "d" ) OR e:  "f" )`},
	{name: "NestedGroupKeepsInnerGrouping", in: `x:1 OR a:(b c)`, want: `( x:  "1" OR a: (  "b" AND  "c" ) )`},
	{name: "Not", in: `NOT a:x`, want: `NOT ( a:  "x" )`},
	{name: "NotGroup", in: `NOT a:(x OR y)`, want: `NOT ( a: (  "x" OR  "y" ) )`},
	{name: "EscapedQuote", in: `a:"say \"hi\""`, want: `a:  "say \"hi\""`},
	{name: "BackslashKept", in: `a:"x\y"`, want: `a:  "x\y"`},
	{name: "TrailingBackslashBare", in: `a:x\`, want: `a:  x\`},
	{name: "TrailingBackslashBareInGroup", in: `a:(x\ OR y)`, want: `a: (  x\ OR  "y" )`},
	{name: "TreeNoOperator", in: `{"type":"complex","query_list":[{"type":"simple","value":"a"},{"type":"simple","value":"b"}]}`, want: `(  "a"   "b" )`},
	{name: "TreeOneChild", in: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b","operator":"="}]}`, want: `a: = "b"`},
	{name: "TreeNumberValue", in: `{"type":"simple","key":"n","value":10.0}`, want: `n:  "10.0"`},
	{name: "TreeNotOfNot", in: `{"type":"complex","operator":"NOT","query_list":[{"type":"complex","operator":"NOT","query_list":[{"type":"simple","key":"a","value":"b"}]}]}`, want: `NOT ( NOT ( a:  "b" ) )`},
	{name: "TreeTrailingBackslashNotAWord", in: `{"type":"simple","key":"a","value":"x y\\"}`, want: `a:  "x y\"`},
	{name: "TreeTrailingBackslashKeyword", in: `{"type":"simple","key":"a","value":"AND\\"}`, want: `a:  "AND\"`},
}

func TestFormat(t *testing.T) {
	for _, tt := range formatTests {
		t.Run(tt.name, func(t *testing.T) {
			var q query.Query
			var err error
			if strings.HasPrefix(tt.in, "{") {
				q, err = query.ParseJSON([]byte(tt.in))
			} else {
				q, err = query.Parse(tt.in)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := q.String(); got != tt.want {
				t.Fatalf("String()\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestRoundTrip checks Parse → String → Parse gives the same tree for every table input.
func TestRoundTrip(t *testing.T) {
	for _, in := range seedQueries() {
		q, err := query.Parse(in)
		if err != nil || q == nil {
			continue
		}
		checkRoundTrip(t, in, q)
	}
}

func checkRoundTrip(t *testing.T, in string, q query.Query) {
	t.Helper()
	s := q.String()
	again, err := query.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q) → %q does not parse: %v", in, s, err)
	}
	a, _ := query.MarshalJSON(q)
	b, _ := query.MarshalJSON(again)
	if !bytes.Equal(a, b) || !query.Equal(q, again) {
		t.Fatalf("round trip of %q through %q\n got %s\nwant %s", in, s, b, a)
	}
}

// seedQueries returns every query string of the tables.
func seedQueries() []string {
	var out []string
	for _, tt := range parseTests {
		out = append(out, tt.in)
	}
	for _, tt := range formatTests {
		if !strings.HasPrefix(tt.in, "{") {
			out = append(out, tt.in)
		}
	}
	for _, in := range goldenQueries {
		out = append(out, in)
	}
	return out
}

// goldenQueries are serialised into testdata/parse.golden: the tree and jIO's string of each.
var goldenQueries = []string{
	``,
	`portal_type:"Sale Order"`,
	`portal_type:"Sale Order" AND title:%cement%`,
	`portal_type:("Sale Order" OR "Purchase Order") AND simulation_state:confirmed`,
	`delivery.start_date:>="2017-09-01" delivery.start_date:<"2017-10-01"`,
	`NOT simulation_state:(cancelled OR deleted) reference:SO-%`,
	`a:b OR c:d e:f`,
	`a b OR c`,
	`a:b AND c:d OR e:f`,
	`date < "2011"`,
	`title:"say \"hi\"" quantity:!=0`,
	`%éric% OR title:_`,
	`a:(b:c d) x:(NOT y)`,
	`((a OR b) (c OR d)) OR (e AND f)`,
	`path:C:\Temp\`,
}

func TestGolden(t *testing.T) {
	var b strings.Builder
	for _, in := range goldenQueries {
		q, err := query.Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		j, _ := query.MarshalJSON(q)
		fmt.Fprintf(&b, "query:  %s\ntree:   %s\nstring: %s\n\n", in, j, query.Format(q))
	}
	golden(t, "parse.golden", b.String())
}

// golden compares got with testdata/name, or rewrites the file under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./query/ -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Fatalf("%s differs from the output (go test -update rewrites it):\n%s", path, diff(string(want), got))
	}
}

// diff returns the first differing line of two texts.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d\nwant: %s\n got: %s", i+1, w, g)
		}
	}
	return ""
}

func TestMarshalJSON(t *testing.T) {
	t.Run("HTMLNotEscaped", func(t *testing.T) {
		b, _ := query.MarshalJSON(&query.Simple{Key: "a&b", Value: "<x>", Operator: "<="})
		if got, want := string(b), `{"type":"simple","key":"a&b","value":"<x>","operator":"<="}`; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
	t.Run("Escapes", func(t *testing.T) {
		q := &query.Simple{Value: "q\"b\\n\n\t\x01\u2028\xff"}
		b, _ := query.MarshalJSON(q)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got, want := v["value"], "q\"b\\n\n\t\x01\u2028\ufffd"; got != want {
			t.Fatalf("value = %q, want %q", got, want)
		}
		if bytes.Contains(b, []byte("\u2028")) {
			t.Fatalf("U+2028 not escaped: %s", b)
		}
	})
	t.Run("EmptyOperatorOmitted", func(t *testing.T) {
		b, _ := query.MarshalJSON(&query.Complex{Queries: []query.Query{&query.Simple{Value: "a"}}})
		if got, want := string(b), `{"type":"complex","query_list":[{"type":"simple","key":"","value":"a"}]}`; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
	t.Run("Nil", func(t *testing.T) {
		b, _ := query.MarshalJSON(nil)
		if string(b) != "null" {
			t.Fatalf("got %s", b)
		}
	})
	t.Run("Method", func(t *testing.T) {
		q, _ := query.Parse(`a:(b OR <c)`)
		b, err := json.Marshal(map[string]any{"query": q})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"query":{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"a","value":"c","operator":"\u003c"}]}}`
		if string(b) != want {
			t.Fatalf("got %s, want %s", b, want)
		}
	})
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // MarshalJSON of the result, or "null"
		err  string
	}{
		{name: "Simple", in: `{"type":"simple","key":"a","value":"b","operator":"="}`, want: `{"type":"simple","key":"a","value":"b","operator":"="}`},
		{name: "KeyMissing", in: `{"type":"simple","value":"b"}`, want: `{"type":"simple","key":"","value":"b"}`},
		{name: "EmptyOperatorIsNone", in: `{"type":"simple","key":"a","value":"b","operator":""}`, want: `{"type":"simple","key":"a","value":"b"}`},
		{name: "NumberKeptLiteral", in: `{"type":"simple","key":"a","value":1e2}`, want: `{"type":"simple","key":"a","value":"1e2"}`},
		{name: "UnknownMembersIgnored", in: `{"type":"simple","key":"a","value":"b","extra":[1]}`, want: `{"type":"simple","key":"a","value":"b"}`},
		{name: "ComplexNoOperator", in: `{"type":"complex","query_list":[{"type":"simple","value":"a"}]}`, want: `{"type":"complex","query_list":[{"type":"simple","key":"","value":"a"}]}`},
		{name: "ComplexNested", in: `{"type":"complex","operator":"NOT","query_list":[{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"1"},{"type":"simple","key":"b","value":"2"}]}]}`, want: `{"type":"complex","operator":"NOT","query_list":[{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"1"},{"type":"simple","key":"b","value":"2"}]}]}`},
		{name: "Null", in: `null`, want: `null`},
		{name: "StringIsParsed", in: `"a:(b OR c)"`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"a","value":"c"}]}`},
		{name: "ErrStringParse", in: `"a AND"`, err: `unexpected end of query at column 6`},
		{name: "ErrEmpty", in: ``, err: `empty query tree`},
		{name: "ErrSyntax", in: `{"type":`, err: `decode query tree: unexpected EOF`},
		{name: "ErrTrailing", in: `{"type":"simple","value":"a"} {}`, err: `decode query tree: data after the tree`},
		{name: "ErrNotObject", in: `[1]`, err: `query tree: want an object, got an array`},
		{name: "ErrNoType", in: `{"value":"a"}`, err: `query tree: missing "type"`},
		{name: "ErrTypeType", in: `{"type":1}`, err: `query tree: type: want a string, got a number`},
		{name: "ErrTypeUnknown", in: `{"type":"fancy"}`, err: `query tree: type: want "simple" or "complex", got "fancy"`},
		{name: "ErrKeyType", in: `{"type":"simple","key":3,"value":"a"}`, err: `query tree: key: want a string, got a number`},
		{name: "ErrNoValue", in: `{"type":"simple","key":"a"}`, err: `query tree: missing "value"`},
		{name: "ErrValueBool", in: `{"type":"simple","key":"a","value":true}`, err: `query tree: value: want a string or a number, got a boolean`},
		{name: "ErrValueNull", in: `{"type":"simple","key":"a","value":null}`, err: `query tree: value: want a string or a number, got null`},
		{name: "ErrSimpleOperator", in: `{"type":"simple","key":"a","value":"b","operator":"like"}`, err: `query tree: operator: unknown operator "like"`},
		{name: "ErrComplexOperator", in: `{"type":"complex","operator":"XOR","query_list":[{"type":"simple","value":"a"}]}`, err: `query tree: operator: unknown operator "XOR"`},
		{name: "ErrComplexOperatorLower", in: `{"type":"complex","operator":"and","query_list":[{"type":"simple","value":"a"}]}`, err: `query tree: operator: unknown operator "and"`},
		{name: "ErrOperatorType", in: `{"type":"complex","operator":1,"query_list":[]}`, err: `query tree: operator: want a string, got a number`},
		{name: "ErrNoList", in: `{"type":"complex","operator":"AND"}`, err: `query tree: missing "query_list"`},
		{name: "ErrListType", in: `{"type":"complex","query_list":{}}`, err: `query tree: query_list: want an array, got an object`},
		{name: "ErrListEmpty", in: `{"type":"complex","query_list":[]}`, err: `query tree: query_list: empty`},
		{name: "ErrNotTwo", in: `{"type":"complex","operator":"NOT","query_list":[{"type":"simple","value":"a"},{"type":"simple","value":"b"}]}`, err: `query tree: query_list: NOT takes exactly one query, got 2`},
		{name: "ErrPath", in: `{"type":"complex","query_list":[{"type":"simple","value":"a"},{"type":"complex","operator":"OR","query_list":[{"type":"simple","value":"x","operator":"~"}]}]}`, err: `query tree: query_list[1].query_list[0].operator: unknown operator "~"`},
		{name: "ErrDepth", in: strings.Repeat(`{"type":"complex","query_list":[`, query.MaxDepth+2) + `{"type":"simple","value":"a"}` + strings.Repeat(`]}`, query.MaxDepth+2), err: `nested too deeply`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := query.ParseJSON([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if !strings.HasSuffix(tt.err, "nested too deeply") && err.Error() != tt.err {
					t.Fatalf("err = %q, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := query.MarshalJSON(q)
			if string(b) != tt.want {
				t.Fatalf("got %s\nwant %s", b, tt.want)
			}
			// The tree reads back to itself.
			again, err := query.ParseJSON(b)
			if err != nil || !query.Equal(q, again) {
				t.Fatalf("ParseJSON(MarshalJSON) = %v, %v", again, err)
			}
		})
	}
}

func TestTreeFromJSON(t *testing.T) {
	// Decoded without UseNumber: float64 values are written in JavaScript's form.
	var v any
	if err := json.Unmarshal([]byte(`{"type":"simple","key":"n","value":1e21}`), &v); err != nil {
		t.Fatal(err)
	}
	q, err := query.TreeFromJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.(*query.Simple).Value; got != "1e+21" {
		t.Fatalf("value = %q, want 1e+21", got)
	}
}
