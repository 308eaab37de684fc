package query_test

import (
	"errors"
	"strings"
	"testing"

	"sitesync.example/gateway/query"
)

// parseTests are query strings with the jIO tree each must give (docs/DESIGN.md appendix D), or the
// error. They also seed FuzzParse.
var parseTests = []struct {
	name string
	in   string
	want string // compact JSON tree; "" when err is set
	err  string
}{
	// Lexer.
	{name: "Word", in: `abc`, want: `{"type":"simple","key":"","value":"abc"}`},
	{name: "WordChars", in: `%a_b-c/d.e%`, want: `{"type":"simple","key":"","value":"%a_b-c/d.e%"}`},
	{name: "Quoted", in: `"a b"`, want: `{"type":"simple","key":"","value":"a b"}`},
	{name: "QuotedEscapedQuote", in: `"a\"b"`, want: `{"type":"simple","key":"","value":"a\"b"}`},
	{name: "QuotedBackslashLiteral", in: `"a\nb\\c"`, want: `{"type":"simple","key":"","value":"a\\nb\\\\c"}`},
	{name: "QuotedEmpty", in: `a:""`, want: `{"type":"simple","key":"a","value":""}`},
	{name: "QuotedKeywordsAndPunctuation", in: `"AND (x): OR"`, want: `{"type":"simple","key":"","value":"AND (x): OR"}`},
	{name: "QuotedNewline", in: "\"a\nb\"", want: `{"type":"simple","key":"","value":"a\nb"}`},
	{name: "KeywordPrefixIsWord", in: `ANDy ORx NOTE`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"ANDy"},{"type":"simple","key":"","value":"ORx"},{"type":"simple","key":"","value":"NOTE"}]}`},
	{name: "LowercaseKeywordsAreWords", in: `a and b`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"and"},{"type":"simple","key":"","value":"b"}]}`},
	{name: "KeywordEndsAtNonWordByte", in: `a AND(b)`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"}]}`},
	{name: "Operators", in: `a:=1 b:!=2 c:<3 d:<=4 e:>5 f:>=6`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"a","value":"1","operator":"="},{"type":"simple","key":"b","value":"2","operator":"!="},{"type":"simple","key":"c","value":"3","operator":"<"},{"type":"simple","key":"d","value":"4","operator":"<="},{"type":"simple","key":"e","value":"5","operator":">"},{"type":"simple","key":"f","value":"6","operator":">="}]}`},
	{name: "OperatorSpaced", in: `a: >= "2"`, want: `{"type":"simple","key":"a","value":"2","operator":">="}`},
	{name: "KeySpaced", in: `a : b`, want: `{"type":"simple","key":"a","value":"b"}`},
	{name: "WhitespaceJS", in: "a\u00a0b\ufeffc\u3000d", want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"},{"type":"simple","key":"","value":"c"},{"type":"simple","key":"","value":"d"}]}`},
	{name: "NELIsWordChar", in: "a\u0085b", want: `{"type":"simple","key":"","value":"a` + "\u0085" + `b"}`},
	{name: "TrailingBackslashWord", in: `a:b\`, want: `{"type":"simple","key":"a","value":"b\\"}`},
	{name: "Unicode", in: `title:%éric%`, want: `{"type":"simple","key":"title","value":"%éric%"}`},

	// Grammar and precedence (docs/DESIGN.md appendix D examples).
	{name: "JuxtapositionIsAnd", in: `a:b c:d`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"c","value":"d"}]}`},
	{name: "OrThenJuxtaposition", in: `a:b OR c:d e:f`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"c","value":"d"},{"type":"simple","key":"e","value":"f"}]}]}`},
	{name: "JuxtapositionThenOr", in: `a b OR c`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"a"},{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"b"},{"type":"simple","key":"","value":"c"}]}]}`},
	{name: "AndBindsTighter", in: `a:b AND c:d OR e:f`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"c","value":"d"}]},{"type":"simple","key":"e","value":"f"}]}`},
	{name: "OrThenAnd", in: `a OR b AND c`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"a"},{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"b"},{"type":"simple","key":"","value":"c"}]}]}`},
	{name: "FlattenOr", in: `a OR (b OR c) OR d`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"},{"type":"simple","key":"","value":"c"},{"type":"simple","key":"","value":"d"}]}`},
	{name: "FlattenAnd", in: `x AND (y AND z) w`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"x"},{"type":"simple","key":"","value":"y"},{"type":"simple","key":"","value":"z"},{"type":"simple","key":"","value":"w"}]}`},
	{name: "NoFlattenAcrossOperators", in: `(a OR b) AND (c OR d)`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"}]},{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"c"},{"type":"simple","key":"","value":"d"}]}]}`},
	{name: "Parentheses", in: `((a))`, want: `{"type":"simple","key":"","value":"a"}`},
	{name: "Not", in: `NOT a:x`, want: `{"type":"complex","operator":"NOT","query_list":[{"type":"simple","key":"a","value":"x"}]}`},
	{name: "NotBindsTighterThanAnd", in: `NOT a AND b`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"complex","operator":"NOT","query_list":[{"type":"simple","key":"","value":"a"}]},{"type":"simple","key":"","value":"b"}]}`},
	{name: "NotGroup", in: `NOT (a OR b)`, want: `{"type":"complex","operator":"NOT","query_list":[{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"}]}]}`},
	{name: "NotOfNotGroupCancels", in: `NOT (NOT a:b)`, want: `{"type":"simple","key":"a","value":"b"}`},
	{name: "KeyOnGroup", in: `a:(b OR c)`, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"a","value":"c"}]}`},
	{name: "KeyKeepsInner", in: `a:(b:c)`, want: `{"type":"simple","key":"b","value":"c"}`},
	{name: "KeyKeepsInnerInGroup", in: `a:(b:c d)`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"b","value":"c"},{"type":"simple","key":"a","value":"d"}]}`},
	{name: "KeyChain", in: `a:b:c`, want: `{"type":"simple","key":"b","value":"c"}`},
	{name: "KeyOnNotInGroup", in: `a:(NOT b)`, want: `{"type":"complex","operator":"NOT","query_list":[{"type":"simple","key":"a","value":"b"}]}`},
	{name: "KeyOnOperatorValue", in: `a:<"2"`, want: `{"type":"simple","key":"a","value":"2","operator":"<"}`},
	{name: "DateWithoutColon", in: `date < "2011"`, want: `{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"","value":"date"},{"type":"simple","key":"","value":"2011","operator":"<"}]}`},

	// Errors.
	{name: "ErrNotNot", in: `NOT NOT x`, err: `unexpected "NOT" at column 5`},
	{name: "ErrDanglingAnd", in: `a AND`, err: `unexpected end of query at column 6`},
	{name: "ErrDanglingOr", in: `a OR `, err: `unexpected end of query at column 6`},
	{name: "ErrAndOr", in: `a AND OR b`, err: `unexpected "OR" at column 7`},
	{name: "ErrLeadingAnd", in: `AND a`, err: `unexpected "AND" at column 1`},
	{name: "ErrKeyword", in: `AND-x`, err: `unexpected "AND" at column 1`},
	{name: "ErrUnbalancedClose", in: `(a:b OR c:d))`, err: `unexpected ")" at column 13`},
	{name: "ErrUnbalancedOpen", in: `(a:b`, err: `unexpected end of query at column 5`},
	{name: "ErrEmptyGroup", in: `a:()`, err: `unexpected ")" at column 4`},
	{name: "ErrDanglingKey", in: `a:`, err: `unexpected end of query at column 3`},
	{name: "ErrKeyNot", in: `a:NOT b`, err: `unexpected "NOT" at column 3`},
	{name: "ErrOperatorGroup", in: `a:=(b)`, err: `unexpected "(" at column 4`},
	{name: "ErrOperatorOperator", in: `a:<=<b`, err: `unexpected "<" at column 5`},
	{name: "ErrBang", in: `a:!b`, err: `unexpected "!" at column 3`},
	{name: "ErrUnterminated", in: `a:"b`, err: `unterminated string at column 3`},
	{name: "ErrEscapedClosingQuote", in: `a:"b\"`, err: `unterminated string at column 3`},
	{name: "ErrQuotedKey", in: `"a":b`, err: `unexpected ":" at column 4`},
	{name: "ErrBlank", in: "  \t", err: `unexpected end of query at column 4`},
	{name: "ErrInvalidUTF8", in: "é a\xffb", err: `invalid UTF-8 at column 4`},
	{name: "ErrColumnInRunes", in: `éé )`, err: `unexpected ")" at column 4`},
	{name: "ErrDepth", in: strings.Repeat("(", query.MaxDepth+1) + "a" + strings.Repeat(")", query.MaxDepth+1), err: `query nested too deeply at column 129`},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := query.Parse(tt.in)
			if tt.err != "" {
				var pe *query.ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("Parse(%q) = %v, %v; want *ParseError %q", tt.in, q, err, tt.err)
				}
				if got := err.Error(); got != tt.err {
					t.Fatalf("error = %q, want %q", got, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			b, err := query.MarshalJSON(q)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != tt.want {
				t.Fatalf("Parse(%q)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParse_Empty(t *testing.T) {
	q, err := query.Parse("")
	if err != nil || q != nil {
		t.Fatalf(`Parse("") = %v, %v; want nil, nil`, q, err)
	}
	if !query.Match(q, map[string]any{"a": "b"}, nil) {
		t.Fatal("the empty query must match every document")
	}
	if got := query.Format(q); got != "" {
		t.Fatalf("Format(nil) = %q", got)
	}
}

func TestParseError_Fields(t *testing.T) {
	_, err := query.Parse(`title:"x" AND )`)
	var pe *query.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if pe.Pos != 15 || pe.Msg != `unexpected ")"` {
		t.Fatalf("got Pos %d Msg %q", pe.Pos, pe.Msg)
	}
}

func TestParse_LongChains(t *testing.T) {
	// Juxtaposition and AND chains are read iteratively and fold in linear time.
	const n = 20000
	for _, sep := range []string{" ", " AND ", " OR "} {
		terms := make([]string, n)
		for i := range terms {
			terms[i] = "k:v"
		}
		q, err := query.Parse(strings.Join(terms, sep))
		if err != nil {
			t.Fatalf("sep %q: %v", sep, err)
		}
		c, ok := q.(*query.Complex)
		if !ok || len(c.Queries) != n {
			t.Fatalf("sep %q: want one flat complex query of %d leaves", sep, n)
		}
	}
	// Alternating operators nest to the right: a OR b c OR d e … .
	var b strings.Builder
	for i := range 50 {
		if i > 0 {
			if i%2 == 1 {
				b.WriteString(" OR ")
			} else {
				b.WriteString(" ")
			}
		}
		b.WriteString("x")
	}
	q, err := query.Parse(b.String())
	if err != nil {
		t.Fatal(err)
	}
	again, err := query.Parse(q.String())
	if err != nil || !query.Equal(q, again) {
		t.Fatalf("round trip of %q failed: %v", b.String(), err)
	}
}

func TestParse_DepthLimit(t *testing.T) {
	ok := strings.Repeat("(", query.MaxDepth) + "a" + strings.Repeat(")", query.MaxDepth)
	if _, err := query.Parse(ok); err != nil {
		t.Fatalf("depth %d: %v", query.MaxDepth, err)
	}
	// A tree deeper than MaxDepth is refused even when its parentheses are not: each level
	// here is a NOT over an OR.
	levels := query.MaxDepth/2 + 1
	var b strings.Builder
	for range levels {
		b.WriteString("NOT (a OR ")
	}
	b.WriteString("b")
	b.WriteString(strings.Repeat(")", levels))
	_, err := query.Parse(b.String())
	var pe *query.ParseError
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "nested too deeply") {
		t.Fatalf("err = %v, want nested too deeply", err)
	}
}
