// Package outbox holds the rules of the durable queue of writes bound for ERP5 (docs/DESIGN.md §6):
// enqueueing inside a write's transaction, claiming batches (merges folded, entries set
// inflight with their exact bytes and hash in one committed transaction), settling ERP5's
// answers, the operator's states, and listing. It works on the outbox table through
// database/sql (*sql.Tx for changes); the sqlite package owns the transactions that also
// touch the replica.
package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// States of an outbox entry (docs/DESIGN.md §6).
const (
	StatePending    = "pending"    // waiting to be sent
	StateInflight   = "inflight"   // claimed: this process is sending it
	StateDone       = "done"       // ERP5 applied it (or it had nothing to apply)
	StateDeferred   = "deferred"   // transient failure; retried at next_attempt_at, forever
	StateUncertain  = "uncertain"  // sent, outcome unknown: settled by ERP5's results query
	StateHeld       = "held"       // held by the operator, or after a seq_reused answer
	StateDead       = "dead"       // rejected by ERP5, with its reason
	StateConflict   = "conflict"   // a field changed at head office too; waits for resolve
	StateMerged     = "merged"     // folded into a later entry (merged_into), or cancelled
	StateSuperseded = "superseded" // replaced by a new entry (superseded_by), or dropped
)

// States lists every state in the order operators read them.
var States = []string{StatePending, StateInflight, StateDeferred, StateUncertain, StateHeld,
	StateDead, StateConflict, StateDone, StateMerged, StateSuperseded}

// IsState reports whether s names a state.
func IsState(s string) bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// IsFinal reports whether an entry in state s is finished: it blocks nothing and is never sent.
func IsFinal(s string) bool {
	return s == StateDone || s == StateMerged || s == StateSuperseded
}

// Operations.
const (
	OpPost   = "post"
	OpPut    = "put"
	OpRemove = "remove"
	OpAction = "action"
)

// Modes an entry is sent in; the first claim fixes it (invariant 1).
const (
	ModeBatch = "batch" // ERP5's batch receiver
	ModeStock = "stock" // stock HATEOAS forms
)

// timeLayout is how times are stored; it equals sqlite.TimeLayout (UTC, fixed width, so text
// order is time order).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// FormatTime returns t as the outbox stores it.
func FormatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// parseTime parses a stored time; "" is the zero time.
func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// sqlFinal is the SQL list of final states. (The column open is 1 exactly when the state is
// not one of them; queries on open rows use "open = 1", the outbox_open index's WHERE.)
const sqlFinal = `('done', 'merged', 'superseded')`

// WriteKey is a write's peer and write key, as a merged entry's "keys" lists them. Its
// members are declared in sorted order: its JSON is canonical.
type WriteKey struct {
	Key  string `json:"key"`
	Peer string `json:"peer"`
}

// Entry is one outbox row.
type Entry struct {
	Seq      int64
	Epoch    string
	SiteID   string
	OrderKey int64
	Op       string
	DocID    string
	// PortalType and ParentID are set for a post (ParentID is its parent_relative_url).
	PortalType string
	ParentID   string
	// Fields are the changed fields' new values (a post: the document's fields); Base the same
	// fields' values before the write (JSON null when absent). Values decode with UseNumber.
	Fields map[string]any
	Base   map[string]any
	// Transition and Comment are an action's.
	Transition string
	Comment    string
	Peer       string
	Key        string
	// Keys are the peer and write key of every write folded into this merged entry
	// (transitively) that had a key; read from the covered rows when the entry is first
	// claimed. The receiver remembers each of them with the entry's result.
	Keys []WriteKey

	State         string
	Attempts      int
	NextAttemptAt time.Time
	// Mode, Payload and Hash are fixed when the entry is first claimed.
	Mode    string
	Payload []byte
	Hash    string

	LastError string
	// HeldReason is why a held entry is held (kept apart from LastError).
	HeldReason   string
	Answer       json.RawMessage
	MergedInto   int64
	Covers       []int64
	SupersededBy int64
	CheckedEpoch string
	// Refs are the local ids other than DocID this entry names (parent, field values).
	Refs []string

	ClaimedAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time

	// rawFields and rawBase are the stored columns of an entry read by a claim, which leaves
	// Fields and Base nil (Decode fills them): the payload is built from these directly.
	rawFields, rawBase []byte
}

// Decode fills Fields and Base when the entry was read without them (the entries of a batch
// claimed with the default encoder).
func (e *Entry) Decode() error {
	var err error
	if e.Fields == nil && e.rawFields != nil {
		if e.Fields, err = DecodeObject(e.rawFields); err != nil {
			return fmt.Errorf("outbox entry %d: fields: %w", e.Seq, err)
		}
	}
	if e.Base == nil && e.rawBase != nil {
		if e.Base, err = DecodeObject(e.rawBase); err != nil {
			return fmt.Errorf("outbox entry %d: base: %w", e.Seq, err)
		}
	}
	return nil
}

// Frozen reports whether e was ever sent: it is then never merged or rewritten and is resent
// byte-identical (invariant 1).
func (e *Entry) Frozen() bool { return e.Attempts > 0 }

// Size is the entry's size in bytes: its stored payload once claimed, else the size its
// batch payload will have (the canonical JSON with its hash).
func (e *Entry) Size() int {
	if len(e.Payload) > 0 {
		return len(e.Payload)
	}
	b, err := Canonical(e)
	if err != nil {
		return 0
	}
	return len(b) + len(`"hash":"",`) + 64
}

// entryColumns are the columns scanEntry reads, in order.
const entryColumns = `seq, epoch, site_id, order_key, op, doc_id, portal_type, parent_id, fields, base,
	transition, comment, peer, write_key, state, attempts, coalesce(next_attempt_at, ''), mode, payload,
	hash, last_error, answer, coalesce(merged_into, 0), covers, coalesce(superseded_by, 0), checked_epoch,
	refs, coalesce(claimed_at, ''), created_at, updated_at, held_reason`

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanEntry reads one row selected with entryColumns.
func scanEntry(s scanner) (*Entry, error) {
	var (
		e                           Entry
		fields, base, covers, refs  sql.NullString
		answer                      sql.NullString
		next, claimed, created, upd string
	)
	err := s.Scan(&e.Seq, &e.Epoch, &e.SiteID, &e.OrderKey, &e.Op, &e.DocID, &e.PortalType, &e.ParentID,
		&fields, &base, &e.Transition, &e.Comment, &e.Peer, &e.Key, &e.State, &e.Attempts, &next, &e.Mode,
		&e.Payload, &e.Hash, &e.LastError, &answer, &e.MergedInto, &covers, &e.SupersededBy, &e.CheckedEpoch,
		&refs, &claimed, &created, &upd, &e.HeldReason)
	if err != nil {
		return nil, err
	}
	if err := e.decodeJSON(fields, base, covers, refs); err != nil {
		return nil, err
	}
	if answer.Valid {
		e.Answer = json.RawMessage(answer.String)
	}
	e.NextAttemptAt = parseTime(next)
	e.ClaimedAt = parseTime(claimed)
	e.CreatedAt = parseTime(created)
	e.UpdatedAt = parseTime(upd)
	return &e, nil
}

// decodeJSON decodes the JSON columns of a row into e.
func (e *Entry) decodeJSON(fields, base, covers, refs sql.NullString) error {
	var err error
	if e.Fields, err = decodeObject(fields); err != nil {
		return fmt.Errorf("outbox entry %d: fields: %w", e.Seq, err)
	}
	if e.Base, err = decodeObject(base); err != nil {
		return fmt.Errorf("outbox entry %d: base: %w", e.Seq, err)
	}
	if covers.Valid && covers.String != "" {
		if err := json.Unmarshal([]byte(covers.String), &e.Covers); err != nil {
			return fmt.Errorf("outbox entry %d: covers: %w", e.Seq, err)
		}
	}
	if refs.Valid && refs.String != "" {
		if err := json.Unmarshal([]byte(refs.String), &e.Refs); err != nil {
			return fmt.Errorf("outbox entry %d: refs: %w", e.Seq, err)
		}
	}
	return nil
}

// decodeObject decodes a stored JSON object with UseNumber; NULL gives nil.
func decodeObject(s sql.NullString) (map[string]any, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	return DecodeObject([]byte(s.String))
}

// DecodeObject decodes a JSON object, numbers as json.Number so that their literals survive.
func DecodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// Queryer is what read functions need: *sql.DB, *sql.Tx and *sql.Conn all satisfy it.
type Queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ErrNotFound is returned for a seq the outbox does not hold.
var ErrNotFound = errors.New("no such outbox entry")

// Get returns the entry with seq, or ErrNotFound.
func Get(ctx context.Context, q Queryer, seq int64) (*Entry, error) {
	e, err := scanEntry(q.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM outbox WHERE seq = ?`, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("outbox entry %d: %w", seq, ErrNotFound)
	}
	return e, err
}

// queryEntries runs a query selecting entryColumns.
func queryEntries(ctx context.Context, q Queryer, query string, args ...any) ([]*Entry, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// OpenEntries returns the entries of docID that are not final, in order-key order.
func OpenEntries(ctx context.Context, q Queryer, docID string) ([]*Entry, error) {
	return queryEntries(ctx, q, `SELECT `+entryColumns+` FROM outbox INDEXED BY outbox_open
		WHERE doc_id = ? AND open = 1 ORDER BY order_key, seq`, docID)
}

// jsonText encodes v for a TEXT column: nil maps and slices become NULL.
func jsonText(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return nil, nil
		}
	case []int64:
		if len(x) == 0 {
			return nil, nil
		}
	case []string:
		if len(x) == 0 {
			return nil, nil
		}
	case json.RawMessage:
		if len(x) == 0 {
			return nil, nil
		}
		return string(x), nil
	}
	b, err := marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// storedJSON returns the fields and base columns of e: canonical JSON (keys sorted, no
// spaces), base holding exactly the fields' keys (null for a field that was absent). Every
// write of those columns goes through it, so that a claim can copy them into the payload
// without decoding them (wireParts).
func storedJSON(e *Entry) (fields, base any, err error) {
	switch e.Op {
	case OpPost, OpPut:
	default:
		if len(e.Fields) == 0 {
			return nil, nil, nil
		}
	}
	f := nonNil(e.Fields)
	fb, err := marshal(f)
	if err != nil {
		return nil, nil, err
	}
	if e.Op != OpPut {
		return string(fb), nil, nil
	}
	bm := make(map[string]any, len(f))
	for k := range f {
		bm[k] = e.Base[k]
	}
	bb, err := marshal(bm)
	if err != nil {
		return nil, nil, err
	}
	return string(fb), string(bb), nil
}

// nullTime returns t for a TEXT column, NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return FormatTime(t)
}

// nullInt returns n, NULL for 0 (the foreign-key columns).
func nullInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

// enqueueSQL inserts a row. Its seq is the next AUTOINCREMENT value, written explicitly so
// that an entry without an order key takes its own seq in the same statement (AUTOINCREMENT
// hands out max(sqlite_sequence, largest rowid) + 1, and sqlite_sequence is never below the
// largest rowid); the high-water mark moves as with any insert, so no seq is ever reused.
const enqueueSQL = `INSERT INTO outbox (seq, order_key, epoch, checked_epoch, site_id, op, doc_id, portal_type,
	parent_id, fields, base, transition, comment, peer, write_key, state, open, covers, refs, answer,
	created_at, updated_at)
	SELECT n.seq, CASE WHEN ?1 = 0 THEN n.seq ELSE ?1 END, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
		?14, ?15, ?16, ?17, ?18, ?19, ?19
	FROM (SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0) + 1 AS seq) AS n
	RETURNING seq, order_key`

// Queue is the outbox on one database with its hot statements prepared: the write path
// enqueues through it. Prepare it outside any transaction of a one-connection pool (preparing
// needs the connection).
type Queue struct {
	enqueue, candidates, claimFirst, claimAgain *sql.Stmt
}

// Prepare returns a Queue whose statements are prepared on db.
func Prepare(ctx context.Context, db *sql.DB) (*Queue, error) {
	q := &Queue{}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&q.enqueue, enqueueSQL}, {&q.candidates, candidateQuery},
		{&q.claimFirst, claimFirstSQL}, {&q.claimAgain, claimAgainSQL},
	} {
		st, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			q.Close()
			return nil, fmt.Errorf("outbox prepare: %w", err)
		}
		*p.dst = st
	}
	return q, nil
}

// Close releases the prepared statements.
func (q *Queue) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{q.enqueue, q.candidates, q.claimFirst, q.claimAgain} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// Enqueue appends e inside tx with the prepared statement (see the package-level Enqueue).
func (q *Queue) Enqueue(ctx context.Context, tx *sql.Tx, e *Entry, now time.Time) (int64, error) {
	return enqueue(ctx, tx.StmtContext(ctx, q.enqueue), e, now)
}

// Enqueue appends e to the outbox inside tx, the transaction of the write it records, and
// returns its seq. e.State defaults to pending; e.OrderKey 0 means the new seq. Refs are
// computed from the entry's parent and fields.
func Enqueue(ctx context.Context, tx *sql.Tx, e *Entry, now time.Time) (int64, error) {
	st, err := tx.PrepareContext(ctx, enqueueSQL)
	if err != nil {
		return 0, fmt.Errorf("outbox enqueue: %w", err)
	}
	defer st.Close()
	return enqueue(ctx, st, e, now)
}

func enqueue(ctx context.Context, st *sql.Stmt, e *Entry, now time.Time) (int64, error) {
	if e.State == "" {
		e.State = StatePending
	}
	switch e.Op {
	case OpPost, OpPut, OpRemove, OpAction:
	default:
		return 0, fmt.Errorf("outbox enqueue: unknown op %q", e.Op)
	}
	if e.Epoch == "" {
		return 0, errors.New("outbox enqueue: no epoch")
	}
	e.Refs = LocalRefs(e)
	fields, base, err := storedJSON(e)
	if err != nil {
		return 0, fmt.Errorf("outbox enqueue: %w", err)
	}
	covers, _ := jsonText(e.Covers)
	refs, _ := jsonText(e.Refs)
	answer, _ := jsonText(e.Answer)
	err = st.QueryRowContext(ctx, e.OrderKey, e.Epoch, e.SiteID, e.Op, e.DocID, e.PortalType, e.ParentID,
		fields, base, e.Transition, e.Comment, e.Peer, e.Key, e.State, !IsFinal(e.State), covers, refs, answer,
		FormatTime(now)).Scan(&e.Seq, &e.OrderKey)
	if err != nil {
		return 0, fmt.Errorf("outbox enqueue: %w", err)
	}
	e.CreatedAt, e.UpdatedAt = now, now
	return e.Seq, nil
}

// IsLocalID reports whether id was made by the gateway for a document ERP5 has not numbered:
// its last segment starts with "local-" (the same rule as gateway.IsLocalID).
func IsLocalID(id string) bool {
	if id == "" {
		return false
	}
	i := strings.LastIndexByte(id, '/')
	return strings.HasPrefix(id[i+1:], "local-")
}

// LocalRefs returns the local ids e names besides its own document: its parent and every
// string field value (top level, or an element of a top-level list) that is a local id.
func LocalRefs(e *Entry) []string {
	seen := map[string]bool{}
	add := func(s string) {
		if s != e.DocID && IsLocalID(s) {
			seen[s] = true
		}
	}
	add(e.ParentID)
	for _, v := range e.Fields {
		switch x := v.(type) {
		case string:
			add(x)
		case []any:
			for _, el := range x {
				if s, ok := el.(string); ok {
					add(s)
				}
			}
		}
	}
	if len(seen) == 0 {
		return nil
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
