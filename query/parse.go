package query

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxDepth caps the nesting of a query: parentheses in a query string, and complex queries
// inside one another in a tree. Browsers send shallow queries; the cap keeps a hostile one from
// exhausting the stack of the recursive parser, serialiser and evaluator.
const MaxDepth = 128

// ParseError is a query string that does not follow the grammar. Pos is the 1-based column,
// counted in characters (runes), where the problem was found.
type ParseError struct {
	Pos int
	Msg string
}

// Error returns the message and its column, e.g. `unexpected ")" at column 14`.
func (e *ParseError) Error() string { return fmt.Sprintf("%s at column %d", e.Msg, e.Pos) }

// Parse parses a jIO query string (docs/DESIGN.md appendix D) into its tree. The string must be valid
// UTF-8.
//
// The empty string is jIO's empty query, which matches every document: Parse returns a nil
// Query and no error. A string of whitespace only is not empty and is a parse error, as in jIO.
//
// The tree is the one jIO's parser builds: juxtaposition means AND and groups at the OR level,
// to the right; AND binds tighter than OR; nested complex queries with the same operator are
// flattened; `key:expr` sets the key of every key-less leaf in expr; `NOT (NOT x)` is x.
// Errors are *ParseError.
func Parse(s string) (Query, error) {
	if s == "" {
		return nil, nil
	}
	if !utf8.ValidString(s) {
		// Queries arrive in JSON, which cannot carry invalid UTF-8; refusing it keeps every
		// parsed tree representable as a JSON tree.
		i := 0
		for i < len(s) {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		return nil, &ParseError{Pos: utf8.RuneCountInString(s[:i]) + 1, Msg: "invalid UTF-8"}
	}
	p := &parser{lex: lexer{src: s, col: 1}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	q, err := p.searchText(0)
	if err != nil {
		return nil, err
	}
	if p.tok.Kind != tokEOF {
		return nil, p.unexpected()
	}
	if depth(q) > MaxDepth {
		return nil, &ParseError{Pos: 1, Msg: "query nested too deeply"}
	}
	return q, nil
}

// parser is a recursive-descent parser over jIO's LALR grammar; the right-recursive lists
// (search_text, and_expression, key chains) are read iteratively and folded, so only
// parentheses nest calls.
type parser struct {
	lex lexer
	tok token
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// unexpected returns the error for the current token.
func (p *parser) unexpected() error {
	if p.tok.Kind == tokEOF {
		return &ParseError{Pos: p.tok.Col, Msg: "unexpected end of query"}
	}
	src := p.tok.Src
	if utf8.RuneCountInString(src) > 40 {
		src = string([]rune(src)[:40]) + "…"
	}
	return &ParseError{Pos: p.tok.Col, Msg: "unexpected " + strconv.Quote(src)}
}

// startsExpression reports whether a boolean_expression may start with the current token.
func (p *parser) startsExpression() bool {
	switch p.tok.Kind {
	case tokNOT, tokLParen, tokWord, tokOperator, tokString:
		return true
	}
	return false
}

// searchText reads
//
//	search_text : and_expression
//	            | and_expression search_text      -> AND
//	            | and_expression OR search_text   -> OR
func (p *parser) searchText(nest int) (Query, error) {
	var items []Query
	var ops []string
	for {
		q, err := p.andExpression(nest)
		if err != nil {
			return nil, err
		}
		items = append(items, q)
		switch {
		case p.tok.Kind == tokOR:
			if err := p.advance(); err != nil {
				return nil, err
			}
			ops = append(ops, "OR")
		case p.startsExpression():
			ops = append(ops, "AND")
		default:
			// Right recursion: a b OR c is AND(a, OR(b, c)).
			return foldRight(items, ops), nil
		}
	}
}

// andExpression reads
//
//	and_expression : boolean_expression
//	               | boolean_expression AND and_expression
func (p *parser) andExpression(nest int) (Query, error) {
	var items []Query
	var ops []string
	for {
		q, err := p.booleanExpression(nest)
		if err != nil {
			return nil, err
		}
		items = append(items, q)
		if p.tok.Kind != tokAND {
			return foldRight(items, ops), nil
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		ops = append(ops, "AND")
	}
}

// booleanExpression reads
//
//	boolean_expression : NOT expression | expression
//
// so `NOT NOT x` is an error, while `NOT (NOT x)` is x (jIO's mkNotQuery).
func (p *parser) booleanExpression(nest int) (Query, error) {
	if p.tok.Kind != tokNOT {
		return p.expression(nest)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	q, err := p.expression(nest)
	if err != nil {
		return nil, err
	}
	if c, ok := q.(*Complex); ok && c.Operator == "NOT" && len(c.Queries) == 1 {
		return c.Queries[0], nil
	}
	return &Complex{Operator: "NOT", Queries: []Query{q}}, nil
}

// expression reads
//
//	expression : ( search_text ) | WORD : expression | value
//	value      : OPERATOR string | string
//	string     : WORD | QUOTED
func (p *parser) expression(nest int) (Query, error) {
	var keys []string
	for p.tok.Kind == tokWord {
		// A word is a key when a colon follows; look one token ahead.
		save, saveTok := p.lex, p.tok
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.Kind != tokColon {
			p.lex, p.tok = save, saveTok
			break
		}
		keys = append(keys, saveTok.Text)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	var q Query
	switch p.tok.Kind {
	case tokLParen:
		if nest >= MaxDepth {
			return nil, &ParseError{Pos: p.tok.Col, Msg: "query nested too deeply"}
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		inner, err := p.searchText(nest + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.Kind != tokRParen {
			return nil, p.unexpected()
		}
		q = inner
	case tokWord, tokString:
		q = &Simple{Value: p.tok.Text}
	case tokOperator:
		op := p.tok.Text
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.Kind != tokWord && p.tok.Kind != tokString {
			return nil, p.unexpected()
		}
		q = &Simple{Value: p.tok.Text, Operator: op}
	default:
		return nil, p.unexpected()
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	// a:b:c keeps b: the innermost key is set first, and a key is set only where none is.
	for i := len(keys) - 1; i >= 0; i-- {
		setKey(q, keys[i])
	}
	return q, nil
}

// foldRight combines items[0] ops[0] items[1] … ops[n-2] items[n-1] to the right, as jIO's
// right-recursive rules do with mkComplexQuery(op, [l, r]): an operand that is a complex query
// with the same operator contributes its children instead of itself. Children are collected in
// reverse so that a long chain costs linear time rather than a copy per step.
func foldRight(items []Query, ops []string) Query {
	n := len(items)
	acc := items[n-1]
	accOp := ""     // "" while acc is a finished query
	var rev []Query // the open complex's children, last first
	push := func(q Query, op string) {
		if c, ok := q.(*Complex); ok && c.Operator == op {
			for j := len(c.Queries) - 1; j >= 0; j-- {
				rev = append(rev, c.Queries[j])
			}
			return
		}
		rev = append(rev, q)
	}
	for i := n - 2; i >= 0; i-- {
		op := ops[i]
		if op != accOp {
			if accOp != "" {
				acc = closeReversed(accOp, rev)
			}
			accOp, rev = op, nil
			push(acc, op)
		}
		push(items[i], op)
	}
	if accOp == "" {
		return acc
	}
	return closeReversed(accOp, rev)
}

// closeReversed returns the complex query op over rev in reverse order.
func closeReversed(op string, rev []Query) *Complex {
	qs := make([]Query, len(rev))
	for i, q := range rev {
		qs[len(rev)-1-i] = q
	}
	return &Complex{Operator: op, Queries: qs}
}

// setKey gives key to every key-less leaf of q.
func setKey(q Query, key string) {
	switch q := q.(type) {
	case *Simple:
		if q.Key == "" {
			q.Key = key
		}
	case *Complex:
		for _, sub := range q.Queries {
			setKey(sub, key)
		}
	}
}

// depth returns the number of complex queries on the longest path from q to a leaf.
func depth(q Query) int {
	c, ok := q.(*Complex)
	if !ok {
		return 0
	}
	d := 0
	for _, sub := range c.Queries {
		d = max(d, depth(sub))
	}
	return d + 1
}
