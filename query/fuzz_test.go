package query_test

import (
	"bytes"
	"testing"

	"sitesync.example/gateway/query"
)

// FuzzParse checks that Parse never panics and that every query it accepts round-trips:
// Parse(q.String()) gives the same tree, and so does ParseJSON(MarshalJSON(q)). Matching a
// small document must not panic either. `go test` runs the seed corpus (the table inputs);
// `go test -fuzz FuzzParse ./query/` explores further.
func FuzzParse(f *testing.F) {
	for _, s := range seedQueries() {
		f.Add(s)
	}
	doc := map[string]any{"a": "b", "n": []any{"1", nil, map[string]any{}}, "d": "2012-05-02"}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := query.Parse(s)
		if err != nil {
			if _, ok := err.(*query.ParseError); !ok {
				t.Fatalf("Parse(%q) error %T, want *ParseError", s, err)
			}
			return
		}
		if q == nil {
			if s != "" {
				t.Fatalf("Parse(%q) = nil without error", s)
			}
			return
		}
		str := q.String()
		again, err := query.Parse(str)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, str, err)
		}
		want, _ := query.MarshalJSON(q)
		got, _ := query.MarshalJSON(again)
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip of %q through %q\n got %s\nwant %s", s, str, got, want)
		}
		fromJSON, err := query.ParseJSON(want)
		if err != nil || !query.Equal(fromJSON, q) {
			t.Fatalf("ParseJSON(%s) = %v, %v", want, fromJSON, err)
		}
		query.Match(q, doc, []string{"d"})
	})
}

// FuzzParseJSON checks that ParseJSON never panics and that an accepted tree marshals back to
// a tree ParseJSON reads as the same, and serialises without panicking.
func FuzzParseJSON(f *testing.F) {
	for _, s := range seedQueries() {
		q, err := query.Parse(s)
		if err != nil {
			continue
		}
		b, _ := query.MarshalJSON(q)
		f.Add(string(b))
	}
	for _, s := range []string{
		`null`, `"a:b"`, `[]`, `{}`, `{"type":"simple","value":1.50}`,
		`{"type":"complex","query_list":[{"type":"simple","value":"a"},{"type":"simple","value":"b"}]}`,
		`{"type":"complex","operator":"NOT","query_list":[{"type":"complex","operator":"NOT","query_list":[{"type":"simple","key":"k","value":"x\\"}]}]}`,
		`{"type":"simple","key":"a b","value":"\"","operator":"!="}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := query.ParseJSON([]byte(s))
		if err != nil || q == nil {
			return
		}
		b, err := query.MarshalJSON(q)
		if err != nil {
			t.Fatal(err)
		}
		again, err := query.ParseJSON(b)
		if err != nil || !query.Equal(again, q) {
			t.Fatalf("ParseJSON(MarshalJSON(%s)) = %v, %v", s, again, err)
		}
		_ = q.String()
		query.Match(q, map[string]any{"a": "b"}, nil)
	})
}
