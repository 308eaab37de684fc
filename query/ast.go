// Package query implements the jIO query language (docs/DESIGN.md appendix D, jIO 3.45.0): lexer, parser,
// the jIO JSON tree, jIO's serialisation to the character, and an in-memory evaluator that is
// the executable specification the SQL compiler in sqlite/ is tested against. Pure: no I/O.
//
// Parse reads a query string, ParseJSON a client's tree; String (Format for a possibly nil
// query) and MarshalJSON write them back. Match and Exec evaluate. sqlite/ registers Like,
// CompareDates, CompareOrdered and StringForm as SQL functions and orders by SortBytes, so the
// SQL and Exec agree by construction where the rules are not plain SQL.
//
// Where jIO leaves a choice open or misbehaves, the package decides, and says so at the
// function concerned: the empty query string is nil and matches everything; `\"` is the only
// escape in a quoted string; AND, OR and NOT are keywords unless a letter, digit or `_`
// follows (jison's `\b`); a value ending in a backslash is written back as a bare word; null
// properties never match; dates without a zone are UTC; total_rows counts before the limit.
package query

// Query is a node of a parsed jIO query: *Simple or *Complex.
type Query interface {
	// String returns jIO's serialisation of the query (docs/DESIGN.md appendix D, "Tree and serialisation").
	String() string
	isQuery()
}

// Simple is a leaf: key, value and an optional comparison operator.
//
// Key is "" for a key-less (full-text) term. Operator is "" when none was written; then the
// term matches with LIKE when Value contains "%", else with "=".
type Simple struct {
	Key      string
	Value    string
	Operator string // "", "=", "!=", "<", "<=", ">", ">="
}

// Complex combines queries with AND, OR or NOT. Operator "" (a client tree that omitted it)
// means AND. A NOT has exactly one child.
type Complex struct {
	Operator string // "AND", "OR", "NOT" or ""
	Queries  []Query
}

func (*Simple) isQuery()  {}
func (*Complex) isQuery() {}

// Operators that may lead a value.
const (
	OpEQ = "="
	OpNE = "!="
	OpLT = "<"
	OpLE = "<="
	OpGT = ">"
	OpGE = ">="
)

// SortKey is one element of jIO's sort_on: a key and its direction.
type SortKey struct {
	Key        string
	Descending bool
}

// Options are allDocs' options besides the query (docs/DESIGN.md appendix D, "Options"). Skip and Count
// come from limit: [skip] or [skip, count]; Count 0 means no cap. SelectList nil means no
// select_list was given, and differs from an empty one (see Exec).
type Options struct {
	SortOn      []SortKey
	Skip        int
	Count       int
	SelectList  []string
	IncludeDocs bool
	// DateKeys names the keys compared and sorted as dates (query.date_keys).
	DateKeys []string
}
