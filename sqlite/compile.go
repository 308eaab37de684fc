package sqlite

// Queries over the replica: jIO's query language (docs/DESIGN.md appendix D) compiled to parameterised
// SQL, with the results query.Exec gives in memory.
//
// The boolean structure (AND, OR, NOT) becomes SQL; each leaf becomes a call of a Go function
// registered with the driver, over the document's JSONB body:
//
//	jio_leaf(key, value, operator, is_date, body)  a keyed leaf: query.Match on body[key]
//	jio_fulltext(value, body)                     a key-less leaf: query.Match on each property
//	jio_sortkey(key, is_date, body)               query.SortBytes of body[key], for ORDER BY
//	jio_index(body)                               the pairs doc_keys holds (0002_documents.sql)
//
// so the SQL path runs the very code the in-memory evaluator runs, one property at a time; the
// differential test holds the two to the same rows. Keys and values are always parameters:
// a key is looked up by comparing it with the decoded member names of the JSONB object (see
// jbLookup), never spliced into a JSON path, so ".", "[", "\"" or "$" in a key mean nothing.
//
// Speed comes from doc_keys, an index of every top-level property's string forms maintained
// by triggers. A leaf that compares with "=" (not on a date key) is answered exactly by it;
// the planner estimates each such leaf with a bounded count and drives the query from the
// rarest one (of an AND), or the union of them (of an OR), then checks the rest of the
// predicate on those candidates only. Without such a leaf the query scans the documents.

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"modernc.org/sqlite"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// maxIndexedBytes is the longest key and string form doc_keys holds. Longer forms are
// descriptions and notes, which nobody looks up with "="; leaving them out keeps the index
// small. It must stay equal to what jio_index applies, or "=" lookups of long values would
// miss documents: a change needs a migration that rebuilds doc_keys.
const maxIndexedBytes = 200

// estimateCap bounds the count the planner makes of each indexed leaf: counting stops there,
// since beyond it the choice hardly matters and counting a common value would cost more than
// the query it plans.
const estimateCap = 1000

// fulltextCalls counts jio_fulltext calls: a test sees a cancelled query stop working.
var fulltextCalls atomic.Int64

// maxQueryLeaves caps the leaves of one query: each costs up to five SQL parameters (its
// key, value and operator, and a doc_keys lookup's two), and SQLite allows 32766.
const maxQueryLeaves = 4096

// QueryResult is the answer to an allDocs query: TotalRows counts the matching documents
// before skip and count, Rows holds the page.
type QueryResult struct {
	TotalRows int        `json:"total_rows"`
	Rows      []QueryRow `json:"rows"`
}

// QueryRow is one row of a QueryResult. Value is a JSON object: {} without a select list,
// else the selected properties (see query.Exec). Doc is the whole body, and only set when
// the options include docs. Both hold the stored JSON text: key order and number literals as
// given.
type QueryRow struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"value"`
	Doc   json.RawMessage `json:"doc,omitempty"`
}

func init() {
	for name, f := range map[string]*sqlite.FunctionImpl{
		"jio_leaf":     {NArgs: 5, Deterministic: true, VolatileArgs: true, Scalar: sqlLeaf},
		"jio_fulltext": {NArgs: 2, Deterministic: true, VolatileArgs: true, Scalar: sqlFulltext},
		"jio_sortkey":  {NArgs: 3, Deterministic: true, VolatileArgs: true, Scalar: sqlSortKey},
		"jio_index":    {NArgs: 1, Deterministic: true, VolatileArgs: true, Scalar: sqlIndex},
	} {
		sqlite.MustRegisterFunction(name, f)
	}
}

// Query runs an allDocs query over the replica's live documents: filter by q (nil matches
// all), sort by opts.SortOn (else the order documents were first stored in), skip and count,
// then select. It returns the rows query.Exec would return for the same documents, with
// TotalRows the count before the limit. Errors: ETOOLARGE for a query with more than 4096
// leaves.
//
// Queries run on a pool of their own (DB.QueryConns connections): a query waits there for a
// connection rather than take one a get needs. Cancelling ctx interrupts the running
// statement (SQLite's interrupt) and returns ctx's error.
func (db *DB) Query(ctx context.Context, q query.Query, opts query.Options) (res *QueryResult, err error) {
	// A query runs on a thread of lower priority: a costly one leaves the processors to
	// gets and writes first.
	runLowPriority(func() { res, err = db.query(ctx, q, opts) })
	return res, err
}

// query is Query on the calling goroutine.
func (db *DB) query(ctx context.Context, q query.Query, opts query.Options) (*QueryResult, error) {
	pool := db.queries
	if pool == nil {
		pool = db.reader
	}
	tx, err := pool.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("query: %w", err)
	}
	defer tx.Rollback()
	refs, err := queryRowIDs(ctx, tx, q, opts)
	if err == nil {
		res := &QueryResult{TotalRows: len(refs)}
		refs = page(refs, opts.Skip, opts.Count)
		if res.Rows, err = buildRows(ctx, tx, refs, opts); err == nil {
			return res, nil
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("query: %w", ctx.Err())
	}
	return nil, err
}

// docRef is a matching document: its rowid and id.
type docRef struct {
	rowid int64
	id    string
}

// page applies skip and count as query.Exec does: negative numbers count as 0, count 0 is no
// cap.
func page(refs []docRef, skip, count int) []docRef {
	skip = max(skip, 0)
	if skip >= len(refs) {
		return nil
	}
	refs = refs[skip:]
	if count > 0 && len(refs) > count {
		refs = refs[:count]
	}
	return refs
}

// queryRowIDs returns the live documents matching q, in result order.
func queryRowIDs(ctx context.Context, tx *sql.Tx, q query.Query, opts query.Options) ([]docRef, error) {
	c := &compiler{dateKeys: opts.DateKeys}
	if n := countLeaves(q); n > maxQueryLeaves {
		return nil, gateway.Errorf(gateway.ETOOLARGE, "the query has %d terms, more than %d", n, maxQueryLeaves)
	}
	src, err := c.plan(ctx, tx, q)
	if err != nil {
		return nil, err
	}
	// The matches are materialised, then sorted: the whole scan happens in the statement's
	// first step, the one a cancelled context interrupts (the driver does not watch the
	// context during later steps, and a scan in rowid order would run in those).
	var sb strings.Builder
	var args []any
	sb.WriteString("WITH m AS MATERIALIZED (SELECT d.rowid AS r, d.id AS i")
	for j, k := range opts.SortOn {
		fmt.Fprintf(&sb, ", jio_sortkey(?, %s, d.body) AS k%d", boolSQL(slices.Contains(opts.DateKeys, k.Key)), j)
		args = append(args, k.Key)
	}
	sb.WriteString(" FROM documents d WHERE ")
	if src != nil {
		if len(src.pairs) == 1 {
			sb.WriteString("d.rowid IN (SELECT doc FROM doc_keys WHERE key = ? AND value = ?) AND ")
			args = append(args, src.pairs[0].key, src.pairs[0].value)
		} else {
			// One JSON parameter however many pairs: a UNION is limited to 500 terms.
			sb.WriteString("d.rowid IN (SELECT doc FROM doc_keys WHERE (key, value) IN " +
				"(SELECT e.value ->> 0, e.value ->> 1 FROM json_each(?) e)) AND ")
			args = append(args, pairsJSON(src.pairs))
		}
	}
	sb.WriteString("d.deleted = 0")
	where, wargs := c.where(q, src)
	if where != "1" {
		sb.WriteString(" AND ")
		sb.WriteString(where)
		args = append(args, wargs...)
	}
	sb.WriteString(") SELECT r, i FROM m ORDER BY ")
	for j, k := range opts.SortOn {
		fmt.Fprintf(&sb, "k%d", j)
		if k.Descending {
			sb.WriteString(" DESC")
		}
		sb.WriteString(", ")
	}
	sb.WriteString("r")
	rows, err := tx.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	var refs []docRef
	for rows.Next() {
		var r docRef
		if err := rows.Scan(&r.rowid, &r.id); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		refs = append(refs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return refs, nil
}

// buildRows reads what the rows of a page show: the body when opts ask for docs or a select
// list, else only ids.
func buildRows(ctx context.Context, tx *sql.Tx, refs []docRef, opts query.Options) ([]QueryRow, error) {
	out := make([]QueryRow, len(refs))
	for i, r := range refs {
		out[i] = QueryRow{ID: r.id, Value: json.RawMessage(`{}`)}
	}
	if len(refs) == 0 || (!opts.IncludeDocs && opts.SelectList == nil) {
		return out, nil
	}
	bodies, err := readBodies(ctx, tx, refs)
	if err != nil {
		return nil, err
	}
	for i, r := range refs {
		body := bodies[r.rowid]
		if opts.IncludeDocs {
			out[i].Doc = body
		}
		if opts.SelectList != nil {
			if out[i].Value, err = selectValue(body, opts.SelectList); err != nil {
				return nil, fmt.Errorf("query: document %s: %w", r.id, err)
			}
		}
	}
	return out, nil
}

// readBodies returns the JSON text of the documents' bodies by rowid.
func readBodies(ctx context.Context, tx *sql.Tx, refs []docRef) (map[int64]json.RawMessage, error) {
	ids := make([]byte, 0, 8*len(refs))
	ids = append(ids, '[')
	for i, r := range refs {
		if i > 0 {
			ids = append(ids, ',')
		}
		ids = strconv.AppendInt(ids, r.rowid, 10)
	}
	ids = append(ids, ']')
	rows, err := tx.QueryContext(ctx, `SELECT d.rowid, json(d.body) FROM documents d
		WHERE d.rowid IN (SELECT value FROM json_each(?))`, string(ids))
	if err != nil {
		return nil, fmt.Errorf("query: read documents: %w", err)
	}
	defer rows.Close()
	bodies := make(map[int64]json.RawMessage, len(refs))
	for rows.Next() {
		var rowid int64
		var body string
		if err := rows.Scan(&rowid, &body); err != nil {
			return nil, fmt.Errorf("query: read documents: %w", err)
		}
		bodies[rowid] = json.RawMessage(body)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: read documents: %w", err)
	}
	return bodies, nil
}

// selectValue returns a row's value for a non-nil select list, as query.Exec builds it: the
// listed properties the body has, in list order; the whole body when it has none of them (jIO
// leaves such an item unchanged), which includes the empty list.
func selectValue(body json.RawMessage, list []string) (json.RawMessage, error) {
	members, err := objectMembers(body)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	seen := make(map[string]bool, len(list))
	for _, k := range list {
		v, ok := members[k]
		if !ok || seen[k] {
			continue
		}
		seen[k] = true
		if b.Len() == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		b.Write(v)
	}
	if b.Len() == 0 {
		return body, nil
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// objectMembers splits a JSON object's text into its members' values by name, the last of
// duplicate names winning (as JavaScript's JSON.parse and encoding/json do).
func objectMembers(obj []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("body is not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// writeJSONString writes s as a JSON string, without encoding/json's HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode's newline
}

// boolSQL is the SQL literal of a flag the compiler decides (never user input).
func boolSQL(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// countLeaves returns the number of leaves of q.
func countLeaves(q query.Query) int {
	switch q := q.(type) {
	case *query.Simple:
		return 1
	case *query.Complex:
		n := 0
		for _, sub := range q.Queries {
			n += countLeaves(sub)
		}
		return n
	}
	return 0
}

// compiler turns a query into SQL text and its parameters.
type compiler struct {
	dateKeys []string
}

// pair is a doc_keys lookup: a key and a string form.
type pair struct{ key, value string }

// source is a set of candidate documents read from doc_keys: the union of its pairs' rows,
// est of them at most (as far as the planner counted).
type source struct {
	pairs []pair
	est   int
	// exact: the pairs' documents (live or not) are exactly those matching the node.
	exact bool
	// via: for an AND, the child whose exact source this is; that child needs no check.
	via query.Query
}

// indexable returns the doc_keys pair that answers a leaf exactly: a keyed leaf whose
// effective operator is "=" on a key that is not a date key, within maxIndexedBytes.
func (c *compiler) indexable(s *query.Simple) (pair, bool) {
	if s.Key == "" || query.EffectiveOperator(s) != query.OpEQ || slices.Contains(c.dateKeys, s.Key) {
		return pair{}, false
	}
	if len(s.Key) > maxIndexedBytes || len(s.Value) > maxIndexedBytes {
		return pair{}, false
	}
	return pair{s.Key, s.Value}, true
}

// plan picks the doc_keys lookups that drive the query, or nil for a scan. It counts, up to
// estimateCap, the documents of every indexable leaf, in one statement (none for a single
// leaf: there is no choice to make).
func (c *compiler) plan(ctx context.Context, tx *sql.Tx, q query.Query) (*source, error) {
	var pairs []pair
	collect(q, func(s *query.Simple) {
		if p, ok := c.indexable(s); ok && !slices.Contains(pairs, p) {
			pairs = append(pairs, p)
		}
	})
	if len(pairs) == 0 {
		return nil, nil
	}
	est := map[pair]int{pairs[0]: 0}
	if len(pairs) > 1 {
		rows, err := tx.QueryContext(ctx, `SELECT e.key, (SELECT count(*) FROM (SELECT 1 FROM doc_keys
			WHERE key = e.value ->> 0 AND value = e.value ->> 1 LIMIT ?)) FROM json_each(?) e`,
			estimateCap, pairsJSON(pairs))
		if err != nil {
			return nil, fmt.Errorf("query: plan: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var i, n int
			if err := rows.Scan(&i, &n); err != nil {
				return nil, fmt.Errorf("query: plan: %w", err)
			}
			est[pairs[i]] = n
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("query: plan: %w", err)
		}
	}
	return c.source(q, est), nil
}

// pairsJSON writes pairs as a JSON array of [key, value] arrays, for json_each.
func pairsJSON(pairs []pair) string {
	l := make([][2]string, len(pairs))
	for i, p := range pairs {
		l[i] = [2]string{p.key, p.value}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// collect calls fn for every leaf of q.
func collect(q query.Query, fn func(*query.Simple)) {
	switch q := q.(type) {
	case *query.Simple:
		fn(q)
	case *query.Complex:
		for _, sub := range q.Queries {
			collect(sub, fn)
		}
	}
}

// source returns the cheapest doc_keys lookups whose documents include every match of q, or
// nil when there are none: a leaf's pair; for an AND the cheapest of its children's sources;
// for an OR the union of its children's, when each has one. NOT has none.
func (c *compiler) source(q query.Query, est map[pair]int) *source {
	switch q := q.(type) {
	case *query.Simple:
		p, ok := c.indexable(q)
		if !ok {
			return nil
		}
		return &source{pairs: []pair{p}, est: est[p], exact: true}
	case *query.Complex:
		switch q.Operator {
		case "NOT":
			return nil
		case "OR":
			if len(q.Queries) == 0 {
				return nil
			}
			u := &source{exact: true}
			for _, sub := range q.Queries {
				s := c.source(sub, est)
				if s == nil {
					return nil
				}
				u.est += s.est
				u.exact = u.exact && s.exact
				for _, p := range s.pairs {
					if !slices.Contains(u.pairs, p) {
						u.pairs = append(u.pairs, p)
					}
				}
			}
			return u
		default:
			var best *source
			var bestChild query.Query
			for _, sub := range q.Queries {
				if s := c.source(sub, est); s != nil && (best == nil || s.est < best.est) {
					best, bestChild = s, sub
				}
			}
			if best == nil || len(q.Queries) == 1 {
				return best
			}
			s := &source{pairs: best.pairs, est: best.est}
			if best.exact {
				s.via = bestChild
			}
			return s
		}
	}
	return nil
}

// where returns the SQL predicate of q over the row alias d, and its parameters. What the
// source answers exactly is left out: all of q ("1"), or the child of q's AND it came from.
func (c *compiler) where(q query.Query, src *source) (string, []any) {
	var sb strings.Builder
	var args []any
	if src != nil && src.exact {
		return "1", nil
	}
	if cq, ok := q.(*query.Complex); ok && src != nil && src.via != nil && cq.Operator != "OR" && cq.Operator != "NOT" {
		rest := make([]query.Query, 0, len(cq.Queries))
		skipped := false
		for _, sub := range cq.Queries {
			if !skipped && sub == src.via {
				skipped = true
				continue
			}
			rest = append(rest, sub)
		}
		if len(rest) == 0 {
			return "1", nil
		}
		c.writeAnd(&sb, &args, rest)
		return sb.String(), args
	}
	c.write(&sb, &args, q)
	return sb.String(), args
}

// write appends the SQL of q. Every term is 0 or 1, never NULL, so NOT is exact.
func (c *compiler) write(sb *strings.Builder, args *[]any, q query.Query) {
	switch q := q.(type) {
	case nil:
		sb.WriteString("1")
	case *query.Simple:
		if q.Key == "" {
			sb.WriteString("jio_fulltext(?, d.body)")
			*args = append(*args, q.Value)
			return
		}
		sb.WriteString("jio_leaf(?, ?, ?, ")
		sb.WriteString(boolSQL(slices.Contains(c.dateKeys, q.Key)))
		sb.WriteString(", d.body)")
		*args = append(*args, q.Key, q.Value, q.Operator)
	case *query.Complex:
		switch q.Operator {
		case "OR":
			c.writeBalanced(sb, args, q.Queries, " OR ", "0")
		case "NOT":
			// A NOT over several children negates their AND (query.Match).
			sb.WriteString("NOT ")
			c.writeAnd(sb, args, q.Queries)
		default:
			c.writeAnd(sb, args, q.Queries)
		}
	default:
		sb.WriteString("0")
	}
}

func (c *compiler) writeAnd(sb *strings.Builder, args *[]any, qs []query.Query) {
	c.writeBalanced(sb, args, qs, " AND ", "1")
}

// writeBalanced joins qs with op as a balanced tree of parentheses: SQLite limits expression
// depth to 1000, and a flat chain of n terms is n deep. empty is the SQL of no terms.
func (c *compiler) writeBalanced(sb *strings.Builder, args *[]any, qs []query.Query, op, empty string) {
	switch len(qs) {
	case 0:
		sb.WriteString(empty)
		return
	case 1:
		sb.WriteByte('(')
		c.write(sb, args, qs[0])
		sb.WriteByte(')')
		return
	}
	if len(qs) <= 8 {
		sb.WriteByte('(')
		for i, sub := range qs {
			if i > 0 {
				sb.WriteString(op)
			}
			c.write(sb, args, sub)
		}
		sb.WriteByte(')')
		return
	}
	mid := len(qs) / 2
	sb.WriteByte('(')
	c.writeBalanced(sb, args, qs[:mid], op, empty)
	sb.WriteString(op)
	c.writeBalanced(sb, args, qs[mid:], op, empty)
	sb.WriteByte(')')
}

// The SQL functions. Arguments come as views into SQLite's memory (VolatileArgs): nothing
// here keeps them past the call.

// sqlLeaf is jio_leaf(key, value, operator, is_date, body): whether the document matches the
// keyed leaf, by query.Match on the one property it reads.
func sqlLeaf(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
	key := argText(a[0])
	v, found, err := lookupValue(a[4], key)
	if err != nil || !found {
		return int64(0), err
	}
	if s, ok := v.(string); ok && a[3] == int64(0) {
		// The common case, a string property not typed as a date, without the detour through
		// Match's map; the same rules (query.Match: a string's string form is itself).
		value := argText(a[1])
		switch op := argText(a[2]); {
		case op == query.OpEQ || op == "" && !strings.Contains(value, "%"):
			return s == value, nil
		case op == query.OpNE:
			return s != value, nil
		case op == "":
			return query.Like(value, s), nil
		}
	}
	m := leafPool.Get().(*leafMatch)
	defer leafPool.Put(m)
	m.leaf = query.Simple{Key: key, Value: argText(a[1]), Operator: argText(a[2])}
	clear(m.doc)
	m.doc[key] = v
	var dateKeys []string
	if n, _ := a[3].(int64); n != 0 {
		m.dateKey[0] = key
		dateKeys = m.dateKey[:]
	}
	ok := query.Match(&m.leaf, m.doc, dateKeys)
	clear(m.doc)
	m.leaf = query.Simple{}
	m.dateKey[0] = ""
	return ok, nil
}

// leafMatch is what sqlLeaf hands query.Match, reused across calls (a LIKE scan calls it for
// every document).
type leafMatch struct {
	leaf    query.Simple
	doc     map[string]any
	dateKey [1]string
}

var leafPool = sync.Pool{New: func() any { return &leafMatch{doc: make(map[string]any, 1)} }}

// sqlFulltext is jio_fulltext(value, body): whether some property matches the key-less leaf.
func sqlFulltext(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
	fulltextCalls.Add(1)
	leaf := &query.Simple{Value: argText(a[0])}
	body, ok := a[1].([]byte)
	if !ok {
		return nil, errNotJSONB
	}
	type member struct {
		key string
		val []byte
	}
	var members []member
	err := jbEachMember(body, func(key string, val []byte) (bool, error) {
		// A repeated member name: the last one wins, as in jbLookup.
		members = slices.DeleteFunc(members, func(m member) bool { return m.key == key })
		members = append(members, member{key, val})
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		v, err := jbDecode(m.val)
		if err != nil {
			return nil, err
		}
		if query.Match(leaf, map[string]any{m.key: v}, nil) {
			return true, nil
		}
	}
	return false, nil
}

// sqlSortKey is jio_sortkey(key, is_date, body): query.SortBytes of the property, which sorts
// as query.CompareSortValues in SQLite's BLOB order.
func sqlSortKey(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
	v, found, err := lookupValue(a[2], argText(a[0]))
	if err != nil {
		return nil, err
	}
	if !found {
		v = query.Absent
	}
	n, _ := a[1].(int64)
	return query.SortBytes(v, n != 0), nil
}

// sqlIndex is jio_index(body): the doc_keys pairs of a document as a JSONB object with one
// member per pair (so a key may appear more than once; json_each lists them all). For each
// top-level property and each element of it (a list stands for its elements, as in
// query.Match), the element's query.StringForm, when it has one; keys and forms longer than
// maxIndexedBytes are left out, and so are duplicates. Of members with the same name, only
// the last counts, as for a lookup.
func sqlIndex(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
	type kv struct{ k, v string }
	pairs := make([]kv, 0, 16)
	add := func(key, form string) {
		if len(form) <= maxIndexedBytes && !slices.Contains(pairs, kv{key, form}) {
			pairs = append(pairs, kv{key, form})
		}
	}
	visit := func(key string, val []byte) (bool, error) {
		// A repeated member name: the last one wins, as in jbLookup.
		for i := 0; i < len(pairs); i++ {
			if pairs[i].k == key {
				pairs = slices.Delete(pairs, i, i+1)
				i--
			}
		}
		if len(key) > maxIndexedBytes {
			return true, nil
		}
		typ, payload, _, err := jbElem(val)
		if err != nil {
			return false, err
		}
		if typ != jbArray {
			payload = val
		}
		for len(payload) > 0 {
			_, _, size, err := jbElem(payload)
			if err != nil {
				return false, err
			}
			form, ok, err := jbStringForm(payload[:size])
			if err != nil {
				return false, err
			}
			if ok {
				add(key, form)
			}
			payload = payload[size:]
		}
		return true, nil
	}
	body, ok := a[0].([]byte)
	if !ok {
		return nil, errNotJSONB
	}
	if err := jbEachMember(body, visit); err != nil {
		return nil, err
	}
	n := 0
	for _, p := range pairs {
		n += jbHeaderSize(len(p.k)) + len(p.k) + jbHeaderSize(len(p.v)) + len(p.v)
	}
	out := jbAppendHeader(make([]byte, 0, n+9), jbObject, n)
	for _, p := range pairs {
		out = jbAppendText(out, p.k)
		out = jbAppendText(out, p.v)
	}
	return out, nil
}

// argText returns a text argument as a string ("" for NULL).
func argText(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return ""
}

// lookupValue returns the decoded top-level property key of a JSONB body.
func lookupValue(body driver.Value, key string) (any, bool, error) {
	b, ok := body.([]byte)
	if !ok {
		return nil, false, errNotJSONB
	}
	elem, found, err := jbLookup(b, key)
	if err != nil || !found {
		return nil, false, err
	}
	v, err := jbDecode(elem)
	return v, err == nil, err
}

// JSONB, SQLite's binary JSON (https://sqlite.org/jsonb.html), read in Go so that a leaf
// reads one property without SQLite rendering JSON text and Go parsing it again. An element
// is a header (type in the low nibble of the first byte; payload size in the high nibble, or
// in the 1, 2, 4 or 8 big-endian bytes that follow when the nibble is 12 to 15) and a payload.
const (
	jbNull    = 0x0
	jbTrue    = 0x1
	jbFalse   = 0x2
	jbInt     = 0x3 // decimal integer text
	jbInt5    = 0x4 // JSON5 integer text (hexadecimal, leading +)
	jbFloat   = 0x5 // JSON float text
	jbFloat5  = 0x6 // JSON5 float text (.5, 5., leading +)
	jbText    = 0x7 // string needing no escapes
	jbTextJ   = 0x8 // string with JSON escapes
	jbText5   = 0x9 // string with JSON5 escapes
	jbTextRaw = 0xA // string as is, possibly with characters JSON would escape
	jbArray   = 0xB
	jbObject  = 0xC
)

// errJSONB reports a body that is not well-formed JSONB.
var errJSONB = errors.New("malformed JSONB document body")

// errNotJSONB reports a body given as something else than a BLOB.
var errNotJSONB = errors.New("document body is not JSONB")

// jbElem splits the element at the start of b into its type and payload, and returns its
// whole size.
func jbElem(b []byte) (typ byte, payload []byte, size int, err error) {
	if len(b) == 0 {
		return 0, nil, 0, errJSONB
	}
	typ = b[0] & 0x0f
	hdr, n := 1, uint64(b[0]>>4)
	switch n {
	case 12:
		if len(b) < 2 {
			return 0, nil, 0, errJSONB
		}
		hdr, n = 2, uint64(b[1])
	case 13:
		if len(b) < 3 {
			return 0, nil, 0, errJSONB
		}
		hdr, n = 3, uint64(binary.BigEndian.Uint16(b[1:]))
	case 14:
		if len(b) < 5 {
			return 0, nil, 0, errJSONB
		}
		hdr, n = 5, uint64(binary.BigEndian.Uint32(b[1:]))
	case 15:
		if len(b) < 9 {
			return 0, nil, 0, errJSONB
		}
		hdr, n = 9, binary.BigEndian.Uint64(b[1:])
	}
	if typ > jbObject || n > uint64(len(b)-hdr) {
		return 0, nil, 0, errJSONB
	}
	return typ, b[hdr : hdr+int(n)], hdr + int(n), nil
}

// jbEachMember calls fn with the name and value element of each member of the object b, in
// stored order, until fn returns false. A body that is not an object has no members.
func jbEachMember(b []byte, fn func(key string, val []byte) (bool, error)) error {
	typ, p, _, err := jbElem(b)
	if err != nil || typ != jbObject {
		return err
	}
	for len(p) > 0 {
		ktyp, kp, ksize, err := jbElem(p)
		if err != nil {
			return err
		}
		_, _, vsize, err := jbElem(p[ksize:])
		if err != nil {
			return err
		}
		key, err := jbString(ktyp, kp)
		if err != nil {
			return err
		}
		more, err := fn(key, p[ksize:ksize+vsize])
		if err != nil || !more {
			return err
		}
		p = p[ksize+vsize:]
	}
	return nil
}

// jbLookup returns the value element of the object b's member named key; the last one wins
// when several have that name, as in JavaScript and encoding/json.
func jbLookup(b []byte, key string) (elem []byte, found bool, err error) {
	typ, p, _, err := jbElem(b)
	if err != nil || typ != jbObject {
		return nil, false, err
	}
	for len(p) > 0 {
		ktyp, kp, ksize, err := jbElem(p)
		if err != nil {
			return nil, false, err
		}
		_, _, vsize, err := jbElem(p[ksize:])
		if err != nil {
			return nil, false, err
		}
		var match bool
		switch ktyp {
		case jbText, jbTextRaw:
			match = string(kp) == key
		case jbTextJ, jbText5:
			k, err := jbString(ktyp, kp)
			if err != nil {
				return nil, false, err
			}
			match = k == key
		default:
			return nil, false, errJSONB
		}
		if match {
			elem, found = p[ksize:ksize+vsize], true
		}
		p = p[ksize+vsize:]
	}
	return elem, found, nil
}

// jbString decodes a string element's payload.
func jbString(typ byte, p []byte) (string, error) {
	switch typ {
	case jbText, jbTextRaw:
		return validString(p), nil
	case jbTextJ:
		return unescape(p, false), nil
	case jbText5:
		return unescape(p, true), nil
	}
	return "", errJSONB
}

// validString returns p as a string with each invalid UTF-8 byte replaced by U+FFFD, as
// encoding/json decodes it.
func validString(p []byte) string {
	if utf8.Valid(p) {
		return string(p)
	}
	var b strings.Builder
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		b.WriteRune(r)
		p = p[n:]
	}
	return b.String()
}

// unescape decodes JSON (and, with json5, JSON5) backslash escapes the way encoding/json
// does: an unpaired surrogate becomes U+FFFD. An escape it does not know stays as written.
func unescape(p []byte, json5 bool) string {
	if bytes.IndexByte(p, '\\') < 0 {
		return validString(p)
	}
	var b strings.Builder
	for len(p) > 0 {
		c := p[0]
		if c != '\\' || len(p) < 2 {
			r, n := utf8.DecodeRune(p)
			b.WriteRune(r)
			p = p[n:]
			continue
		}
		switch e := p[1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
			p = p[2:]
		case 'b':
			b.WriteByte('\b')
			p = p[2:]
		case 'f':
			b.WriteByte('\f')
			p = p[2:]
		case 'n':
			b.WriteByte('\n')
			p = p[2:]
		case 'r':
			b.WriteByte('\r')
			p = p[2:]
		case 't':
			b.WriteByte('\t')
			p = p[2:]
		case 'u':
			r, ok := hex4(p[2:])
			if !ok {
				b.WriteByte('\\')
				p = p[1:]
				continue
			}
			p = p[6:]
			if utf16.IsSurrogate(r) {
				if len(p) >= 6 && p[0] == '\\' && p[1] == 'u' {
					if r2, ok := hex4(p[2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != unicode.ReplacementChar {
							b.WriteRune(d)
							p = p[6:]
							continue
						}
					}
				}
				r = unicode.ReplacementChar
			}
			b.WriteRune(r)
		default:
			if !json5 {
				b.WriteByte('\\')
				p = p[1:]
				continue
			}
			switch e {
			case '\'':
				b.WriteByte('\'')
				p = p[2:]
			case 'v':
				b.WriteByte('\v')
				p = p[2:]
			case '0':
				b.WriteByte(0)
				p = p[2:]
			case 'x':
				if len(p) >= 4 {
					if v, err := strconv.ParseUint(string(p[2:4]), 16, 8); err == nil {
						b.WriteRune(rune(v))
						p = p[4:]
						continue
					}
				}
				b.WriteByte('\\')
				p = p[1:]
			case '\n':
				p = p[2:]
			case '\r':
				p = p[2:]
				if len(p) > 0 && p[0] == '\n' {
					p = p[1:]
				}
			default:
				// A line continuation with U+2028 or U+2029, or an escaped character
				// standing for itself.
				r, n := utf8.DecodeRune(p[1:])
				if r != 0x2028 && r != 0x2029 {
					b.WriteRune(r)
				}
				p = p[1+n:]
			}
		}
	}
	return b.String()
}

// hex4 reads four hexadecimal digits.
func hex4(p []byte) (rune, bool) {
	if len(p) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p[:4]), 16, 16)
	return rune(v), err == nil
}

// jbDecode decodes an element as encoding/json with UseNumber does: string, json.Number,
// bool, nil, []any, map[string]any.
func jbDecode(b []byte) (any, error) {
	typ, p, _, err := jbElem(b)
	if err != nil {
		return nil, err
	}
	switch typ {
	case jbNull:
		return nil, nil
	case jbTrue:
		return true, nil
	case jbFalse:
		return false, nil
	case jbInt, jbFloat:
		return json.Number(p), nil
	case jbInt5:
		return int5(p)
	case jbFloat5:
		return float5(p), nil
	case jbText, jbTextRaw, jbTextJ, jbText5:
		return jbString(typ, p)
	case jbArray:
		l := []any{}
		for len(p) > 0 {
			_, _, size, err := jbElem(p)
			if err != nil {
				return nil, err
			}
			v, err := jbDecode(p[:size])
			if err != nil {
				return nil, err
			}
			l = append(l, v)
			p = p[size:]
		}
		return l, nil
	case jbObject:
		m := map[string]any{}
		err := jbEachMember(b, func(key string, val []byte) (bool, error) {
			v, err := jbDecode(val)
			m[key] = v
			return true, err
		})
		return m, err
	}
	return nil, errJSONB
}

// jbStringForm returns query.StringForm of a scalar element without decoding containers
// (which have none).
func jbStringForm(b []byte) (string, bool, error) {
	typ, _, _, err := jbElem(b)
	if err != nil {
		return "", false, err
	}
	switch typ {
	case jbNull, jbArray, jbObject:
		return "", false, nil
	}
	v, err := jbDecode(b)
	if err != nil {
		return "", false, err
	}
	s, ok := query.StringForm(v)
	return s, ok, nil
}

// int5 converts a JSON5 integer (hexadecimal, leading +) to a decimal json.Number.
func int5(p []byte) (json.Number, error) {
	s := string(p)
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		s, neg = s[1:], true
	}
	n, ok := new(big.Int).SetString(s, 0)
	if !ok {
		return "", errJSONB
	}
	if neg {
		n.Neg(n)
	}
	return json.Number(n.String()), nil
}

// float5 converts a JSON5 float (.5, 5., leading +, Infinity, NaN) to what JSON text would
// carry: a number literal, or nil for NaN (SQLite's json() writes null).
func float5(p []byte) any {
	s := strings.TrimPrefix(string(p), "+")
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	switch body {
	case "Infinity", "Inf":
		if neg {
			return json.Number("-9e999")
		}
		return json.Number("9e999")
	case "NaN":
		return nil
	}
	if strings.HasPrefix(body, ".") {
		body = "0" + body
	}
	body = strings.Replace(body, ".e", ".0e", 1)
	body = strings.Replace(body, ".E", ".0E", 1)
	if strings.HasSuffix(body, ".") {
		body += "0"
	}
	if neg {
		body = "-" + body
	}
	return json.Number(body)
}

// jbAppendHeader appends an element header for typ and a payload of n bytes.
func jbAppendHeader(b []byte, typ byte, n int) []byte {
	switch {
	case n <= 11:
		return append(b, byte(n)<<4|typ)
	case n <= 0xff:
		return append(b, 12<<4|typ, byte(n))
	case n <= 0xffff:
		return append(b, 13<<4|typ, byte(n>>8), byte(n))
	}
	return append(b, 14<<4|typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// jbHeaderSize is the size of the header jbAppendHeader writes for a payload of n bytes.
func jbHeaderSize(n int) int {
	switch {
	case n <= 11:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	}
	return 5
}

// jbAppendText appends s as a TEXTRAW element.
func jbAppendText(b []byte, s string) []byte {
	return append(jbAppendHeader(b, jbTextRaw, len(s)), s...)
}
