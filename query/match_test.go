package query_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"sitesync.example/gateway/query"
)

// mustDoc decodes a JSON object as documents are decoded: with UseNumber.
func mustDoc(tb testing.TB, s string) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name  string
		q     string
		doc   string
		dates []string
		want  bool
	}{
		// = and its string forms.
		{name: "EqString", q: `a:b`, doc: `{"a":"b"}`, want: true},
		{name: "EqCaseSensitive", q: `a:b`, doc: `{"a":"B"}`, want: false},
		{name: "EqWholeValue", q: `a:b`, doc: `{"a":"bb"}`, want: false},
		{name: "EqNumber", q: `a:10`, doc: `{"a":10}`, want: true},
		{name: "EqNumberString", q: `a:10`, doc: `{"a":"10"}`, want: true},
		{name: "EqNumberJSForm", q: `a:10`, doc: `{"a":10.0}`, want: true},
		{name: "EqNumberExponent", q: `a:100`, doc: `{"a":1e2}`, want: true},
		{name: "EqNumberNotLiteral", q: `a:"10.0"`, doc: `{"a":10.0}`, want: false},
		{name: "EqBool", q: `a:true`, doc: `{"a":true}`, want: true},
		{name: "EqExplicitNoWildcard", q: `a:="b%"`, doc: `{"a":"bcd"}`, want: false},
		{name: "EqExplicitPercentLiteral", q: `a:="b%"`, doc: `{"a":"b%"}`, want: true},
		{name: "EqListAny", q: `a:x`, doc: `{"a":["w","x"]}`, want: true},
		{name: "EqListNone", q: `a:x`, doc: `{"a":["w","y"]}`, want: false},
		{name: "EqListNumbers", q: `a:2`, doc: `{"a":[1,2]}`, want: true},
		{name: "EqEmptyList", q: `a:x`, doc: `{"a":[]}`, want: false},
		{name: "EqObject", q: `a:x`, doc: `{"a":{"content":"x"}}`, want: false},
		{name: "EqEmptyValue", q: `a:""`, doc: `{"a":""}`, want: true},

		// Missing and null properties.
		{name: "MissingEq", q: `a:x`, doc: `{"b":"x"}`, want: false},
		{name: "MissingNe", q: `a:!=x`, doc: `{"b":"x"}`, want: false},
		{name: "MissingLt", q: `a:<x`, doc: `{}`, want: false},
		{name: "MissingLike", q: `a:%`, doc: `{}`, want: false},
		{name: "MissingNot", q: `NOT a:x`, doc: `{}`, want: true},
		{name: "NullEq", q: `a:null`, doc: `{"a":null}`, want: false},
		{name: "NullNe", q: `a:!=x`, doc: `{"a":null}`, want: false},
		{name: "NullNot", q: `NOT a:x`, doc: `{"a":null}`, want: true},

		// !=.
		{name: "Ne", q: `a:!=x`, doc: `{"a":"y"}`, want: true},
		{name: "NeEqual", q: `a:!=x`, doc: `{"a":"x"}`, want: false},
		{name: "NeListAnyEqual", q: `a:!=x`, doc: `{"a":["y","x"]}`, want: false},
		{name: "NeListNoneEqual", q: `a:!=x`, doc: `{"a":["y","z"]}`, want: true},
		{name: "NeEmptyList", q: `a:!=x`, doc: `{"a":[]}`, want: true},
		{name: "NeNoWildcard", q: `a:!=x%`, doc: `{"a":"xy"}`, want: true},
		{name: "NeNumber", q: `a:!=10`, doc: `{"a":10.0}`, want: false},

		// LIKE.
		{name: "LikePrefix", q: `a:ab%`, doc: `{"a":"abc"}`, want: true},
		{name: "LikeWhole", q: `a:b%`, doc: `{"a":"abc"}`, want: false},
		{name: "LikeCaseInsensitive", q: `a:AB%`, doc: `{"a":"abc"}`, want: true},
		{name: "LikeUnicodeCase", q: `a:%éric%`, doc: `{"a":"Éric Dupont"}`, want: true},
		{name: "LikeUnicodeCaseGreek", q: `a:%ΣΟΦΊΑ%`, doc: `{"a":"σοφία"}`, want: true},
		{name: "LikeNewline", q: `a:a%b`, doc: `{"a":"a\n\nb"}`, want: true},
		{name: "LikeUnderscore", q: `a:a_c%`, doc: `{"a":"abc"}`, want: true},
		{name: "LikeUnderscoreIsOneRune", q: `a:a_c%`, doc: `{"a":"aéc"}`, want: true},
		{name: "LikeUnderscoreNeedsOne", q: `a:ab_%`, doc: `{"a":"ab"}`, want: false},
		{name: "LikeRegexpCharsLiteral", q: `a:"a.*(b)%"`, doc: `{"a":"a.*(b)c"}`, want: true},
		{name: "LikeRegexpCharsNotRegexp", q: `a:"a.*%"`, doc: `{"a":"abc"}`, want: false},
		{name: "LikeListAny", q: `a:%x%`, doc: `{"a":["abc","wxy"]}`, want: true},
		{name: "LikeNumber", q: `a:1%`, doc: `{"a":12.50}`, want: true},
		{name: "LikeNumberJSForm", q: `a:%.50`, doc: `{"a":12.50}`, want: false},
		{name: "LikeOnlyPercent", q: `a:%`, doc: `{"a":""}`, want: true},

		// Ordering.
		{name: "LtString", q: `a:<b`, doc: `{"a":"a"}`, want: true},
		{name: "LtStringCodeUnits", q: `a:<9`, doc: `{"a":"10"}`, want: true},
		{name: "GtNumberNumeric", q: `a:>9`, doc: `{"a":10}`, want: true},
		{name: "LeNumberEqual", q: `a:<=10`, doc: `{"a":10.0}`, want: true},
		{name: "GeNumberExponent", q: `a:>=1e3`, doc: `{"a":1000}`, want: true},
		{name: "LtNumberNaN", q: `a:<abc`, doc: `{"a":1}`, want: false},
		{name: "GeNumberNaN", q: `a:>=abc`, doc: `{"a":1}`, want: false},
		{name: "GtNumberEmptyIsZero", q: `a:>""`, doc: `{"a":1}`, want: true},
		{name: "LtNumberHex", q: `a:<0x10`, doc: `{"a":15}`, want: true},
		{name: "LtNumberSpaces", q: `a:<" 20 "`, doc: `{"a":15}`, want: true},
		{name: "GtBool", q: `a:>0`, doc: `{"a":true}`, want: true},
		{name: "LtFirstElementOnly", q: `a:<b`, doc: `{"a":["c","a"]}`, want: false},
		{name: "LtFirstElement", q: `a:<b`, doc: `{"a":["a","c"]}`, want: true},
		{name: "LtEmptyList", q: `a:<b`, doc: `{"a":[]}`, want: false},
		{name: "LtObject", q: `a:<b`, doc: `{"a":{}}`, want: false},
		{name: "LtSurrogateBeforeHighBMP", q: "a:<\uff61", doc: `{"a":"\ud83d\ude00"}`, want: true},
		{name: "EqOperatorOnOrdered", q: `a:="1"`, doc: `{"a":1}`, want: true},

		// Full text.
		{name: "FullText", q: `cem`, doc: `{"title":"Cement bags","a":"x"}`, want: true},
		{name: "FullTextAnyProperty", q: `bag`, doc: `{"a":"x","title":"Cement bags"}`, want: true},
		{name: "FullTextNone", q: `steel`, doc: `{"title":"Cement bags"}`, want: false},
		{name: "FullTextNumber", q: `42`, doc: `{"n":1420}`, want: true},
		{name: "FullTextList", q: `b`, doc: `{"tags":["a","xbx"]}`, want: true},
		{name: "FullTextIgnoresOperator", q: `<zzz`, doc: `{"a":"zzz"}`, want: true},
		{name: "FullTextWildcards", q: `c_m`, doc: `{"a":"cement"}`, want: true},
		{name: "FullTextSkipsObjects", q: `x`, doc: `{"o":{"a":"x"}}`, want: false},

		// Boolean operators.
		{name: "And", q: `a:1 b:2`, doc: `{"a":"1","b":"2"}`, want: true},
		{name: "AndOneFails", q: `a:1 AND b:3`, doc: `{"a":"1","b":"2"}`, want: false},
		{name: "Or", q: `a:9 OR b:2`, doc: `{"a":"1","b":"2"}`, want: true},
		{name: "OrNone", q: `a:9 OR b:9`, doc: `{"a":"1","b":"2"}`, want: false},
		{name: "Not", q: `NOT a:1`, doc: `{"a":"1"}`, want: false},
		{name: "NotOther", q: `NOT a:2`, doc: `{"a":"1"}`, want: true},
		{name: "Precedence", q: `a:9 AND b:9 OR c:3`, doc: `{"a":"1","b":"2","c":"3"}`, want: true},
		{name: "PrecedenceJuxtaposition", q: `c:3 a:9 OR b:9`, doc: `{"a":"1","b":"2","c":"3"}`, want: false},

		// Dates.
		{name: "DateEqCoarser", q: `d:2012`, doc: `{"d":"2012-05-02 06:07:08"}`, dates: []string{"d"}, want: true},
		{name: "DateEqDay", q: `d:"2012-05-02"`, doc: `{"d":"2012-05-02T23:59:59Z"}`, dates: []string{"d"}, want: true},
		{name: "DateEqOtherDay", q: `d:"2012-05-03"`, doc: `{"d":"2012-05-02 06:07:08"}`, dates: []string{"d"}, want: false},
		{name: "DateNotTypedIsString", q: `d:2012`, doc: `{"d":"2012-05-02 06:07:08"}`, want: false},
		{name: "DateLtYear", q: `d:<2013`, doc: `{"d":"2012-12-31 23:59:59"}`, dates: []string{"d"}, want: true},
		{name: "DateLtSameYear", q: `d:<2012`, doc: `{"d":"2012-12-31 23:59:59"}`, dates: []string{"d"}, want: false},
		{name: "DateLeSameYear", q: `d:<=2012`, doc: `{"d":"2012-12-31 23:59:59"}`, dates: []string{"d"}, want: true},
		{name: "DateGtRFC822", q: `d:>"2017-09-05"`, doc: `{"d":"Wed, 06 Sep 2017 00:27:13 +0000"}`, dates: []string{"d"}, want: true},
		{name: "DateRFC822Zone", q: `d:"2017-09-05"`, doc: `{"d":"Wed, 06 Sep 2017 00:27:13 +0200"}`, dates: []string{"d"}, want: true},
		{name: "DateQueryRFC822", q: `d:"Wed, 06 Sep 2017 00:27:13 +0000"`, doc: `{"d":"2017-09-06"}`, dates: []string{"d"}, want: true},
		{name: "DateNe", q: `d:!=2012`, doc: `{"d":"2013-01-01"}`, dates: []string{"d"}, want: true},
		{name: "DateNeEqual", q: `d:!=2012`, doc: `{"d":"2012-06-01"}`, dates: []string{"d"}, want: false},
		{name: "DateNeUnparsable", q: `d:!=2012`, doc: `{"d":"soon"}`, dates: []string{"d"}, want: false},
		{name: "DateValueUnparsable", q: `d:soon`, doc: `{"d":"soon"}`, dates: []string{"d"}, want: false},
		{name: "DatePercentIsDateEquality", q: `d:2012%`, doc: `{"d":"2012-01-01"}`, dates: []string{"d"}, want: false},
		{name: "DateList", q: `d:2012`, doc: `{"d":["2011-01-01","2012-03-04"]}`, dates: []string{"d"}, want: true},
		{name: "DateNumberIsNotDate", q: `d:2012`, doc: `{"d":2012}`, dates: []string{"d"}, want: false},
		{name: "DateFullTextIsText", q: `2012-05`, doc: `{"d":"2012-05-02"}`, dates: []string{"d"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := query.Parse(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := query.Match(q, mustDoc(t, tt.doc), tt.dates); got != tt.want {
				t.Fatalf("Match(%s, %s) = %v, want %v", tt.q, tt.doc, got, tt.want)
			}
		})
	}
}

func TestMatch_ComplexWithoutOperatorIsAnd(t *testing.T) {
	q, err := query.ParseJSON([]byte(`{"type":"complex","query_list":[{"type":"simple","key":"a","value":"1"},{"type":"simple","key":"b","value":"2"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !query.Match(q, mustDoc(t, `{"a":"1","b":"2"}`), nil) {
		t.Fatal("want a match when both children match")
	}
	if query.Match(q, mustDoc(t, `{"a":"1","b":"3"}`), nil) {
		t.Fatal("want no match when one child fails")
	}
}

func TestStringForm(t *testing.T) {
	tests := []struct {
		in   any
		want string
		ok   bool
	}{
		{"x", "x", true},
		{json.Number("10"), "10", true},
		{json.Number("10.0"), "10", true},
		{json.Number("1e2"), "100", true},
		{json.Number("-0"), "0", true},
		{json.Number("0.1"), "0.1", true},
		{json.Number("1.5e-7"), "1.5e-7", true},
		{json.Number("0.000001"), "0.000001", true},
		{json.Number("1e21"), "1e+21", true},
		{json.Number("123456789012345678901"), "123456789012345680000", true},
		{json.Number("1e400"), "Infinity", true},
		{json.Number("-1e400"), "-Infinity", true},
		{json.Number("12345678901234567890123"), "1.2345678901234568e+22", true},
		{json.Number("0.1e1"), "1", true},
		{json.Number("-2.50"), "-2.5", true},
		{float64(0.3), "0.3", true},
		{sum(0.1, 0.2), "0.30000000000000004", true},
		{int64(7), "7", true},
		{3, "3", true},
		{true, "true", true},
		{false, "false", true},
		{nil, "", false},
		{map[string]any{}, "", false},
		{[]any{"a"}, "", false},
	}
	for _, tt := range tests {
		got, ok := query.StringForm(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("StringForm(%#v) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// sum adds at run time (constant expressions are exact in Go).
func sum(a, b float64) float64 { return a + b }

func TestLike(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"%", "", true},
		{"%", "anything\nat all", true},
		{"%%", "x", true},
		{"_", "", false},
		{"_", "é", true},
		{"_", "\n", true},
		{"__", "é", false},
		{"a%", "ABC", true},
		{"%c", "ABC", true},
		{"%b%", "ABC", true},
		{"a%c", "abbbc", true},
		{"a%c", "abbbd", false},
		{"a%b%c", "aXbYc", true},
		{"a%b%c", "aXcYb", false},
		{"%a%a%a%a%b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"ÉRIC", "éric", true},
		{"straße", "STRASSE", false}, // simple folding: ß does not become SS
		{"k", "\u212a", true},        // Kelvin sign folds to k
		{"s", "\u017f", true},        // long s folds to s
		{"İ", "i", false},
		{"ǅ", "ǆ", true},
		{"a.c", "abc", false},
		{"[a]", "[A]", true},
		{"\\%", "\\x", true},
		{"\xff", "\ufffd", true},
	}
	for _, tt := range tests {
		if got := query.Like(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Like(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestCompareOrdered(t *testing.T) {
	tests := []struct {
		v     any
		value string
		want  int
		ok    bool
	}{
		{"a", "b", -1, true},
		{"b", "a", 1, true},
		{"a", "a", 0, true},
		{"a", "ab", -1, true},
		{"10", "9", -1, true},
		{"Z", "a", -1, true},
		{"\U0001F600", "\uff61", -1, true},
		{"\uff61", "\U0001F600", 1, true},
		{json.Number("10"), "9", 1, true},
		{json.Number("10"), "10.0", 0, true},
		{json.Number("10"), "1e1", 0, true},
		{json.Number("10"), " 10\n", 0, true},
		{json.Number("0"), "", 0, true},
		{json.Number("0"), "   ", 0, true},
		{json.Number("16"), "0x10", 0, true},
		{json.Number("8"), "0o10", 0, true},
		{json.Number("2"), "0b10", 0, true},
		{json.Number("2"), "-0b10", 0, false},
		{json.Number("1"), ".5", 1, true},
		{json.Number("1"), "5.", -1, true},
		{json.Number("1"), "+1", 0, true},
		{json.Number("1"), "Infinity", -1, true},
		{json.Number("1"), "-Infinity", 1, true},
		{json.Number("1"), "infinity", 0, false},
		{json.Number("1"), "1_000", 0, false},
		{json.Number("1"), "1e", 0, false},
		{json.Number("1"), "abc", 0, false},
		{json.Number("1"), "NaN", 0, false},
		{json.Number("1e400"), "1e308", 1, true},
		{float64(2.5), "2.5", 0, true},
		{int64(3), "2", 1, true},
		{true, "1", 0, true},
		{false, "0.5", -1, true},
		{nil, "a", 0, false},
		{[]any{"a"}, "a", 0, false},
		{map[string]any{}, "a", 0, false},
		{math.NaN(), "1", 0, false},
	}
	for _, tt := range tests {
		got, ok := query.CompareOrdered(tt.v, tt.value)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CompareOrdered(%#v, %q) = %d, %v; want %d, %v", tt.v, tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCompareStrings(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "a", -1},
		{"a", "", 1},
		{"abc", "abd", -1},
		{"é", "z", 1},
		{"\U0001F600", "\uffff", -1}, // surrogate pair before U+E000…U+FFFF
		{"\U0001F600", "\ud7ff", 1},  // but after U+D7FF
		{"\U0001F600", "\U0001F601", -1},
		{"\U00010000", "\U0010FFFF", -1},
	}
	for _, tt := range tests {
		if got := query.CompareStrings(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareStrings(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestEffectiveOperator(t *testing.T) {
	for _, tt := range []struct {
		q    query.Simple
		want string
	}{
		{query.Simple{Value: "a"}, "="},
		{query.Simple{Value: "a%"}, "like"},
		{query.Simple{Value: "a%", Operator: "="}, "="},
		{query.Simple{Value: "a", Operator: "<"}, "<"},
	} {
		if got := query.EffectiveOperator(&tt.q); got != tt.want {
			t.Errorf("EffectiveOperator(%+v) = %q, want %q", tt.q, got, tt.want)
		}
	}
}
