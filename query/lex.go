package query

import (
	"strings"
	"unicode/utf8"
)

// tokenKind is the class of a lexical token.
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokLParen
	tokRParen
	tokAND
	tokOR
	tokNOT
	tokColon
	tokOperator
	tokWord
	tokString
)

// token is one lexical token. Text is the word, the operator or the unescaped contents of a
// quoted string; Src is the token as written; Col is its 1-based column in runes.
type token struct {
	Kind tokenKind
	Text string
	Src  string
	Col  int
}

// isSpace reports whether r is JavaScript whitespace (the `\s` class of jIO's lexer, which
// differs from unicode.IsSpace: U+FEFF is whitespace and U+0085 is not).
func isSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// isWordRune reports whether r may appear in a WORD token: anything but whitespace, `"`, `(`,
// `)`, `:`, `<`, `>`, `!` and `=`.
func isWordRune(r rune) bool {
	switch r {
	case '"', '(', ')', ':', '<', '>', '!', '=':
		return false
	}
	return !isSpace(r)
}

// isASCIIWord reports whether b is in JavaScript's `\w` class ([A-Za-z0-9_]); jison ends a
// keyword rule with `\b`, so AND, OR and NOT are keywords only when no such byte follows.
func isASCIIWord(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// keywordAt returns the keyword starting s, if any.
func keywordAt(s string) (tokenKind, int) {
	for _, kw := range [...]struct {
		text string
		kind tokenKind
	}{{"AND", tokAND}, {"OR", tokOR}, {"NOT", tokNOT}} {
		if strings.HasPrefix(s, kw.text) && (len(s) == len(kw.text) || !isASCIIWord(s[len(kw.text)])) {
			return kw.kind, len(kw.text)
		}
	}
	return tokEOF, 0
}

// lexer splits a query string into tokens, following jIO's jison lexer rule by rule, in its
// order: quote, whitespace, parentheses, keywords, colon, operator, word.
type lexer struct {
	src string
	pos int // byte offset
	col int // 1-based rune column of pos
}

// advance moves n bytes forward, keeping the column in runes.
func (l *lexer) advance(n int) {
	l.col += utf8.RuneCountInString(l.src[l.pos : l.pos+n])
	l.pos += n
}

// next returns the next token.
func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[l.pos:])
		if !isSpace(r) {
			break
		}
		l.pos += size
		l.col++
	}
	start, col := l.pos, l.col
	if l.pos >= len(l.src) {
		return token{Kind: tokEOF, Col: col}, nil
	}
	rest := l.src[l.pos:]
	tok := func(kind tokenKind, n int) (token, error) {
		l.advance(n)
		return token{Kind: kind, Text: rest[:n], Src: rest[:n], Col: col}, nil
	}
	switch rest[0] {
	case '"':
		return l.quoted(start, col)
	case '(':
		return tok(tokLParen, 1)
	case ')':
		return tok(tokRParen, 1)
	case ':':
		return tok(tokColon, 1)
	case '=':
		return tok(tokOperator, 1)
	case '<', '>':
		if len(rest) > 1 && rest[1] == '=' {
			return tok(tokOperator, 2)
		}
		return tok(tokOperator, 1)
	case '!':
		if len(rest) > 1 && rest[1] == '=' {
			return tok(tokOperator, 2)
		}
		return token{}, &ParseError{Pos: col, Msg: `unexpected "!"`}
	}
	if kind, n := keywordAt(rest); n > 0 {
		return tok(kind, n)
	}
	n := 0
	for n < len(rest) {
		r, size := utf8.DecodeRuneInString(rest[n:])
		if !isWordRune(r) {
			break
		}
		n += size
	}
	return tok(tokWord, n)
}

// quoted lexes a quoted string starting at the opening quote. Inside, `\"` stands for a quote
// and every other character, a backslash included, stands for itself.
func (l *lexer) quoted(start, col int) (token, error) {
	var b strings.Builder
	i := start + 1
	for i < len(l.src) {
		c := l.src[i]
		switch {
		case c == '\\' && i+1 < len(l.src) && l.src[i+1] == '"':
			b.WriteByte('"')
			i += 2
		case c == '"':
			l.advance(i + 1 - start)
			return token{Kind: tokString, Text: b.String(), Src: l.src[start : i+1], Col: col}, nil
		default:
			b.WriteByte(c)
			i++
		}
	}
	return token{}, &ParseError{Pos: col, Msg: "unterminated string"}
}
