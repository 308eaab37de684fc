package query

import (
	"bytes"
	"encoding/binary"
	"maps"
	"slices"
	"unicode/utf16"
)

// Doc is a document given to Exec: its id and its JSON body, decoded with UseNumber.
type Doc struct {
	ID   string
	Body map[string]any
}

// Row is one row of an allDocs result. Value holds the selected keys (see Exec); Doc is the
// body when IncludeDocs is set, else nil.
type Row struct {
	ID    string
	Value map[string]any
	Doc   map[string]any
}

// Result is an allDocs result: TotalRows counts the matching documents before the limit (a
// decided departure from jIO, which counts after it; paging needs the count before).
type Result struct {
	TotalRows int
	Rows      []Row
}

// Exec runs allDocs over docs in memory, in jIO's order: filter with Match (opts.DateKeys
// typing the date keys) → sort by opts.SortOn → limit (opts.Skip, opts.Count) → select
// (opts.SelectList) → include_docs. It is the executable specification the SQL in sqlite/
// is tested against.
//
//   - Sorting is stable: documents equal on every sort key keep their order in docs. Values
//     compare with CompareSortValues; a key in opts.DateKeys compares in time order.
//   - Skip drops the first Skip rows; Count, when positive, keeps at most Count of the rest
//     (0 means no cap). Negative numbers count as 0.
//   - SelectList nil: each row's Value is {} (jIO's allDocs without select_list). Otherwise
//     Value holds the listed keys the document has. jIO's in-memory select leaves an item
//     with none of the listed keys unchanged, and does nothing for an empty list: then Value
//     is a copy of the whole body. (An empty, non-nil SelectList is `"select_list": []`.)
//
// Exec does not modify docs or their bodies; Values are new maps, Doc shares the body.
func Exec(docs []Doc, q Query, opts Options) Result {
	var hits []Doc
	for _, d := range docs {
		if Match(q, d.Body, opts.DateKeys) {
			hits = append(hits, d)
		}
	}
	if len(opts.SortOn) > 0 {
		dates := make([]bool, len(opts.SortOn))
		for i, k := range opts.SortOn {
			dates[i] = slices.Contains(opts.DateKeys, k.Key)
		}
		slices.SortStableFunc(hits, func(a, b Doc) int {
			for i, k := range opts.SortOn {
				c := CompareSortValues(Property(a.Body, k.Key), Property(b.Body, k.Key), dates[i])
				if k.Descending {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
	}
	res := Result{TotalRows: len(hits)}
	skip := max(opts.Skip, 0)
	if skip >= len(hits) {
		hits = nil
	} else {
		hits = hits[skip:]
	}
	if opts.Count > 0 && len(hits) > opts.Count {
		hits = hits[:opts.Count]
	}
	res.Rows = make([]Row, 0, len(hits))
	for _, d := range hits {
		row := Row{ID: d.ID, Value: selectKeys(d.Body, opts.SelectList)}
		if opts.IncludeDocs {
			row.Doc = d.Body
		}
		res.Rows = append(res.Rows, row)
	}
	return res
}

// selectKeys returns a row's value for a select list (see Exec).
func selectKeys(body map[string]any, list []string) map[string]any {
	if list == nil {
		return map[string]any{}
	}
	v := map[string]any{}
	for _, k := range list {
		if x, ok := body[k]; ok {
			v[k] = x
		}
	}
	if len(v) == 0 {
		return maps.Clone(body)
	}
	return v
}

// Absent stands for a property a document lacks, where a sort compares property values
// (CompareSortValues, SortBytes); nil is JSON null, which sorts differently.
var Absent = absent{}

type absent struct{}

// Property returns body[key], or Absent when body has no such key.
func Property(body map[string]any, key string) any {
	if v, ok := body[key]; ok {
		return v
	}
	return Absent
}

// CompareSortValues orders two property values for sort_on, ascending, and returns -1, 0 or
// +1; a missing property is passed as Absent. Descending order is its negation, so documents
// missing the key come first ascending and last descending.
//
// A value is taken as the list of its elements as jIO 3.45's sortFunction takes it: a scalar,
// null or an object is a one-element list; Absent and an empty list are the empty list. Lists
// compare element by element, a list that is a prefix of the other coming first (so a null
// value sorts after a missing one, as jIO sorts [{"a":null},{"c":3},{"b":2}] on a into c, b,
// a). An object element stands for its `content` member, as jIO's metadata values
// ({"content": "x", ...}) do; an object without one, and a nested list, is skipped. A null
// element (null itself or a null content) comes before every other element. Without isDate,
// other elements compare by their string forms (StringForm) in UTF-16 code-unit order
// (CompareStrings), so 10 sorts before 9. With isDate, an element that ParseDate accepts
// compares by the instant it starts at (precision does not matter: `2012` and `2012-01-01`
// are equal), and comes after every element that is not a date; those compare by string
// form among themselves.
//
// SortBytes encodes the same order as bytes, for a database.
func CompareSortValues(a, b any, isDate bool) int {
	return bytes.Compare(SortBytes(a, isDate), SortBytes(b, isDate))
}

// SortBytes returns a byte string whose byte order (memcmp, SQLite's BLOB order) is
// CompareSortValues's order: ascending ORDER BY SortBytes(v) sorts as sort_on ascending,
// ORDER BY … DESC as descending. Each element is a tag byte (0x01 a string form, 0x02 a
// date) and its content with 0x00 escaped as 0x00 0xFF, closed by 0x00 0x01; a string form's
// content is its UTF-16 code units, big-endian; a date's is its Unix time in milliseconds as a
// big-endian int64 with the sign bit flipped; a null element is the tag 0x00 alone.
func SortBytes(v any, isDate bool) []byte {
	var out []byte
	switch v := v.(type) {
	case absent:
		return []byte{}
	case []any:
		for _, e := range v {
			out = appendSortElement(out, e, isDate)
		}
	default:
		out = appendSortElement(out, v, isDate)
	}
	if out == nil {
		out = []byte{}
	}
	return out
}

func appendSortElement(out []byte, e any, isDate bool) []byte {
	if m, ok := e.(map[string]any); ok {
		c, ok := m["content"]
		if !ok {
			return out
		}
		e = c
	}
	if e == nil {
		return append(out, 0x00, 0x00, 0x01)
	}
	if isDate {
		if s, ok := e.(string); ok {
			if t, _, ok := ParseDate(s); ok {
				var content [8]byte
				binary.BigEndian.PutUint64(content[:], uint64(t.UnixMilli())^(1<<63))
				return appendEscaped(append(out, 0x02), content[:])
			}
		}
	}
	s, ok := StringForm(e)
	if !ok {
		return out
	}
	units := utf16.Encode([]rune(s))
	content := make([]byte, 2*len(units))
	for i, u := range units {
		binary.BigEndian.PutUint16(content[2*i:], u)
	}
	return appendEscaped(append(out, 0x01), content)
}

// appendEscaped appends content with 0x00 written 0x00 0xFF, then the terminator 0x00 0x01,
// so a content that is a prefix of another sorts first and elements never run together.
func appendEscaped(out, content []byte) []byte {
	for _, c := range content {
		if c == 0 {
			out = append(out, 0, 0xFF)
		} else {
			out = append(out, c)
		}
	}
	return append(out, 0, 0x01)
}
