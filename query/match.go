package query

import (
	"encoding/json"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Match reports whether doc matches q under jIO's rules (docs/DESIGN.md appendix D, "Matching"); the nil
// query matches every document. doc is a JSON object decoded with json.Decoder.UseNumber:
// its values are string, json.Number, bool, nil, []any and map[string]any (float64, int64 and
// int are accepted as numbers too). dateKeys names the keys whose values are dates.
//
// A leaf with a key K reads doc[K]; a missing or null property never matches, whatever the
// operator (`NOT a:x` does match it). A list value stands for its elements. Then, by
// operator (no operator means LIKE when the value contains "%", else "="):
//
//   - "=": some element's string form (StringForm) equals the value, case-sensitively.
//   - "!=": no element's string form equals the value (so an empty list matches).
//   - LIKE: some element's string form matches the value as a Like pattern.
//   - "<", "<=", ">", ">=": the first element only, compared with CompareOrdered; an empty
//     list never matches.
//
// Elements without a string form (null, objects, nested lists) equal nothing and match no
// pattern. When K is a date key every operator compares dates instead (CompareDates): the
// value, and each element, must be a string that ParseDate accepts, else that side compares as
// nothing: "=" (and a missing operator, "%" or not) needs some element equal at the coarser
// precision, "!=" needs every element to be a date and none equal, the ordering operators
// compare the first element.
//
// A key-less leaf is full text: the operator is ignored and the leaf matches when any element
// of any property of doc matches Like("%"+value+"%", …).
//
// A complex query is the AND (operator "AND" or ""), OR or NOT of its children; a NOT over
// several children negates their AND.
func Match(q Query, doc map[string]any, dateKeys []string) bool {
	switch q := q.(type) {
	case nil:
		return true
	case *Simple:
		return matchSimple(q, doc, dateKeys)
	case *Complex:
		switch q.Operator {
		case "OR":
			for _, sub := range q.Queries {
				if Match(sub, doc, dateKeys) {
					return true
				}
			}
			return false
		case "NOT":
			if len(q.Queries) == 1 {
				return !Match(q.Queries[0], doc, dateKeys)
			}
			return !Match(&Complex{Operator: "AND", Queries: q.Queries}, doc, dateKeys)
		default:
			for _, sub := range q.Queries {
				if !Match(sub, doc, dateKeys) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// Effective operators besides the written ones.
const opLike = "like"

// EffectiveOperator returns the operator a leaf matches with: its own, else "like" when the
// value contains "%", else "=".
func EffectiveOperator(q *Simple) string {
	if q.Operator != "" {
		return q.Operator
	}
	if strings.Contains(q.Value, "%") {
		return opLike
	}
	return OpEQ
}

func matchSimple(q *Simple, doc map[string]any, dateKeys []string) bool {
	if q.Key == "" {
		pattern := "%" + q.Value + "%"
		var buf [1]any
		for _, v := range doc {
			for _, e := range elements(v, buf[:0]) {
				if s, ok := StringForm(e); ok && Like(pattern, s) {
					return true
				}
			}
		}
		return false
	}
	v, ok := doc[q.Key]
	if !ok || v == nil {
		return false
	}
	op := EffectiveOperator(q)
	if slices.Contains(dateKeys, q.Key) {
		return matchDate(op, v, q.Value)
	}
	var buf [1]any
	els := elements(v, buf[:0])
	switch op {
	case OpEQ:
		for _, e := range els {
			if s, ok := StringForm(e); ok && s == q.Value {
				return true
			}
		}
		return false
	case OpNE:
		for _, e := range els {
			if s, ok := StringForm(e); ok && s == q.Value {
				return false
			}
		}
		return true
	case opLike:
		for _, e := range els {
			if s, ok := StringForm(e); ok && Like(q.Value, s) {
				return true
			}
		}
		return false
	}
	if len(els) == 0 {
		return false
	}
	c, ok := CompareOrdered(els[0], q.Value)
	return ok && holds(op, c)
}

// holds applies an ordering operator to a comparison result.
func holds(op string, c int) bool {
	switch op {
	case OpLT:
		return c < 0
	case OpLE:
		return c <= 0
	case OpGT:
		return c > 0
	case OpGE:
		return c >= 0
	case OpEQ:
		return c == 0
	case OpNE:
		return c != 0
	}
	return false
}

func matchDate(op string, v any, value string) bool {
	if _, _, ok := ParseDate(value); !ok {
		return false
	}
	var buf [1]any
	els := elements(v, buf[:0])
	cmp := func(e any) (int, bool) {
		s, ok := e.(string)
		if !ok {
			return 0, false
		}
		return CompareDates(s, value)
	}
	switch op {
	case OpEQ, opLike:
		for _, e := range els {
			if c, ok := cmp(e); ok && c == 0 {
				return true
			}
		}
		return false
	case OpNE:
		for _, e := range els {
			if c, ok := cmp(e); !ok || c == 0 {
				return false
			}
		}
		return true
	}
	if len(els) == 0 {
		return false
	}
	c, ok := cmp(els[0])
	return ok && holds(op, c)
}

// elements returns a list's elements, or any other value appended to buf (a caller's
// one-element array, which keeps the common scalar case free of allocations).
func elements(v any, buf []any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return append(buf, v)
}

// StringForm returns the string a JSON value is compared as: a string itself; a number in
// JavaScript's form (String(n): 10.0 → "10", 1e2 → "100", 1e21 → "1e+21", 0.0000001 →
// "1e-7", -0 → "0"); a boolean "true" or "false". Null, objects and lists have none (false).
// Numbers may be json.Number, float64, int64 or int.
func StringForm(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return jsNumberString(parseJSONNumber(v)), true
	case float64:
		return jsNumberString(v), true
	case int64:
		return jsNumberString(float64(v)), true
	case int:
		return jsNumberString(float64(v)), true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// parseJSONNumber returns a JSON number literal's value as JavaScript reads it: the nearest
// double, ±Infinity beyond the range.
func parseJSONNumber(n json.Number) float64 {
	f, _ := strconv.ParseFloat(string(n), 64) // ErrRange still returns ±Inf or 0, as JavaScript
	return f
}

// jsNumberString formats f as JavaScript's Number.prototype.toString does (ECMA-262
// Number::toString with radix 10): shortest round-trip digits, plain notation for exponents
// from -7 to 20, else d.ddde±x.
func jsNumberString(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	case f < 0:
		return "-" + jsNumberString(-f)
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±xx
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1
	switch {
	case k <= n && n <= 21:
		return digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return "0." + strings.Repeat("0", -n) + digits
	}
	sign := "+"
	if n-1 < 0 {
		sign = "-"
	}
	exps := sign + strconv.Itoa(abs(n-1))
	if k == 1 {
		return digits + "e" + exps
	}
	return digits[:1] + "." + digits[1:] + "e" + exps
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// CompareOrdered compares a document value v with a query value as JavaScript's `v < value`
// family does, and returns -1, 0 or +1; ok is false when the two are not comparable, and then
// every ordering operator is false.
//
//   - v a string: the strings compare by UTF-16 code units (CompareStrings), so "10" < "9".
//   - v a number or a boolean (true is 1, false 0): the value is converted with JavaScript's
//     Number(value) (ToNumber) and the two compare numerically. Number accepts surrounding
//     whitespace, decimal literals with optional sign, fraction and exponent ("1e3", ".5",
//     "5."), "Infinity" with optional sign, and unsigned 0x/0o/0b integers; the empty or blank
//     string is 0; anything else is NaN, which compares with nothing.
//   - v null, a list, an object: not comparable.
func CompareOrdered(v any, value string) (int, bool) {
	var x float64
	switch v := v.(type) {
	case string:
		return CompareStrings(v, value), true
	case json.Number:
		x = parseJSONNumber(v)
	case float64:
		x = v
	case int64:
		x = float64(v)
	case int:
		x = float64(v)
	case bool:
		if v {
			x = 1
		}
	default:
		return 0, false
	}
	y, ok := jsToNumber(value)
	if !ok || math.IsNaN(x) {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// jsToNumber is JavaScript's ToNumber applied to a string (ECMA-262 StringToNumber); false
// means NaN.
func jsToNumber(s string) (float64, bool) {
	s = strings.TrimFunc(s, isSpace)
	if s == "" {
		return 0, true
	}
	switch s {
	case "Infinity", "+Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if len(s) > 2 && s[0] == '0' {
		base := 0
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 0 {
			n, ok := new(big.Int).SetString(s[2:], base)
			if !ok || strings.ContainsAny(s[2:], "_+-") {
				return 0, false
			}
			f, _ := new(big.Float).SetInt(n).Float64()
			return f, true
		}
	}
	if !isDecimalLiteral(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeError(err) {
		return 0, false
	}
	return f, true
}

func isRangeError(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// isDecimalLiteral reports whether s is a StrDecimalLiteral without Infinity:
// [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?
func isDecimalLiteral(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	intDigits := digits()
	fracDigits := 0
	if i < len(s) && s[i] == '.' {
		i++
		fracDigits = digits()
	}
	if intDigits == 0 && fracDigits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// CompareStrings compares two strings by UTF-16 code units, as JavaScript's relational
// operators do, and returns -1, 0 or +1. It differs from byte order only where a character
// above U+FFFF (a surrogate pair, 0xD800…) meets one in U+E000–U+FFFF: JavaScript sorts the
// former first. Invalid UTF-8 bytes count as U+FFFD.
func CompareStrings(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ka, kb := utf16Key(ra), utf16Key(rb)
			if ka < kb {
				return -1
			}
			if ka > kb {
				return 1
			}
			if ra < rb {
				return -1
			}
			return 1
		}
		a, b = a[na:], b[nb:]
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

// utf16Key returns the first UTF-16 code unit of r, which orders runes as JavaScript does
// (runes with the same first unit are supplementary runes, ordered by code point).
func utf16Key(r rune) rune {
	if r >= 0x10000 {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}

// Like reports whether s matches the LIKE pattern as a whole: "%" matches any run of
// characters (newlines included), "_" exactly one character (rune), and every other character
// itself, compared case-insensitively under Unicode simple case folding (so "%éric%" matches
// "Éric" and "k" matches the Kelvin sign). There is no escape character. Invalid UTF-8 bytes
// count as U+FFFD. sqlite/ registers this very function, so SQL and Match agree.
func Like(pattern, s string) bool {
	// Iterative wildcard matching with one backtrack point: on a mismatch, retry from the last
	// "%" with one more character consumed by it. Worst case O(len(pattern)·len(s)).
	var starP, starS = -1, 0
	p, i := 0, 0
	for i < len(s) {
		if p < len(pattern) {
			pr, pn := utf8.DecodeRuneInString(pattern[p:])
			switch pr {
			case '%':
				starP, starS = p+pn, i
				p += pn
				continue
			case '_':
				_, sn := utf8.DecodeRuneInString(s[i:])
				p, i = p+pn, i+sn
				continue
			default:
				sr, sn := utf8.DecodeRuneInString(s[i:])
				if foldEqual(pr, sr) {
					p, i = p+pn, i+sn
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		p, i = starP, starS
	}
	for p < len(pattern) && pattern[p] == '%' {
		p++
	}
	return p == len(pattern)
}

// foldEqual reports whether a and b are equal under Unicode simple case folding.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		return a == b
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}
