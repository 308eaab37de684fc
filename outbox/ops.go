package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"sitesync.example/gateway"
)

// stateError is an operator action on an entry in a state that does not allow it.
func stateError(e *Entry, action, allowed string) error {
	return gateway.ReasonErrorf(gateway.ECONFLICT, "state",
		"entry %d is %s; only %s entries can be %s", e.Seq, e.State, allowed, action)
}

// getForUpdate reads an entry inside tx; a missing seq is ENOTFOUND.
func getForUpdate(ctx context.Context, tx *sql.Tx, seq int64) (*Entry, error) {
	e, err := Get(ctx, tx, seq)
	if errors.Is(err, ErrNotFound) {
		return nil, gateway.Errorf(gateway.ENOTFOUND, "no outbox entry %d", seq)
	}
	return e, err
}

// Holdable reports whether an entry in state s may be held: one that is waiting to be sent or
// settled. An inflight entry is being sent; dead and conflict entries wait for the operator
// already.
func Holdable(s string) bool {
	return s == StatePending || s == StateDeferred || s == StateUncertain
}

// Hold holds entry seq (pending, deferred or uncertain) inside tx; it blocks later entries of
// its document until released.
func Hold(ctx context.Context, tx *sql.Tx, seq int64, reason string, now time.Time) (*Entry, error) {
	e, err := getForUpdate(ctx, tx, seq)
	if err != nil {
		return nil, err
	}
	if e.State == StateHeld {
		return e, nil
	}
	if !Holdable(e.State) {
		return nil, stateError(e, "held", "pending, deferred or uncertain")
	}
	if reason == "" {
		reason = "held by operator"
	}
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = 'held', held_reason = ?, next_attempt_at = NULL, updated_at = ? WHERE seq = ?`,
		reason, FormatTime(now), seq)
	return e, err
}

// HoldAll holds every pending, deferred and uncertain entry and returns them.
func HoldAll(ctx context.Context, tx *sql.Tx, reason string, now time.Time) ([]*Entry, error) {
	return bulk(ctx, tx, `state IN ('pending', 'deferred', 'uncertain')`, func(e *Entry) error {
		_, err := Hold(ctx, tx, e.Seq, reason, now)
		return err
	})
}

// Release releases held entry seq: a never-sent entry becomes pending; one that was ever sent
// becomes uncertain, so that ERP5's results query settles it before any resend (invariant 1).
func Release(ctx context.Context, tx *sql.Tx, seq int64, now time.Time) (*Entry, error) {
	e, err := getForUpdate(ctx, tx, seq)
	if err != nil {
		return nil, err
	}
	if e.State != StateHeld {
		return nil, stateError(e, "released", "held")
	}
	state := StatePending
	if e.Frozen() {
		state = StateUncertain
	}
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = ?, held_reason = '', next_attempt_at = NULL, updated_at = ? WHERE seq = ?`,
		state, FormatTime(now), seq)
	return e, err
}

// ReleaseAll releases every held entry and returns them.
func ReleaseAll(ctx context.Context, tx *sql.Tx, now time.Time) ([]*Entry, error) {
	return bulk(ctx, tx, `state = 'held'`, func(e *Entry) error {
		_, err := Release(ctx, tx, e.Seq, now)
		return err
	})
}

// bulk applies fn to every entry matching where, in seq order, and returns them as they were.
func bulk(ctx context.Context, tx *sql.Tx, where string, fn func(*Entry) error) ([]*Entry, error) {
	list, err := queryEntries(ctx, tx, `SELECT `+entryColumns+` FROM outbox WHERE `+where+` ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		if err := fn(e); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// RetryNow makes deferred entry seq due now: it is resent as it is (invariant 1: a deferred
// entry may have been sent, and keeps its bytes).
func RetryNow(ctx context.Context, tx *sql.Tx, seq int64, now time.Time) (*Entry, error) {
	e, err := getForUpdate(ctx, tx, seq)
	if err != nil {
		return nil, err
	}
	if e.State != StateDeferred {
		return nil, RefusalError(e, "retried now", "deferred")
	}
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = 'pending', next_attempt_at = NULL, updated_at = ? WHERE seq = ?`,
		FormatTime(now), seq)
	return e, err
}

// Flush makes every deferred entry due now (the operator's "try the uplink now") and returns
// how many it touched.
func Flush(ctx context.Context, tx *sql.Tx, now time.Time) (int, error) {
	ts := FormatTime(now)
	res, err := tx.ExecContext(ctx, `UPDATE outbox SET next_attempt_at = ?1, updated_at = ?1
		WHERE state = 'deferred' AND next_attempt_at > ?1`, ts)
	if err != nil {
		return 0, fmt.Errorf("outbox flush: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Supersede queues n in place of old, a dead or conflict entry (invariant 6): n is enqueued
// with a new seq under n.Epoch, old's order key (so it keeps old's place before the later
// entries of its document), and old becomes superseded with superseded_by. ERP5 keeps a
// result per key, so n never reuses old's (epoch, seq), and it leaves old's write key out: ERP5
// remembers the first result of a (site, peer, key).
func Supersede(ctx context.Context, tx *sql.Tx, old *Entry, n *Entry, now time.Time) (int64, error) {
	cur, err := getForUpdate(ctx, tx, old.Seq)
	if err != nil {
		return 0, err
	}
	if cur.State != StateDead && cur.State != StateConflict {
		return 0, stateError(cur, "superseded", "dead or conflict")
	}
	n.Seq = 0
	n.OrderKey = cur.OrderKey
	n.State = StatePending
	n.Attempts = 0
	n.Key = ""
	if n.Op == "" {
		n.Op = cur.Op
	}
	seq, err := Enqueue(ctx, tx, n, now)
	if err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = 'superseded', open = 0, superseded_by = ?, updated_at = ? WHERE seq = ?`,
		seq, FormatTime(now), old.Seq)
	if err != nil {
		return 0, fmt.Errorf("outbox supersede %d: %w", old.Seq, err)
	}
	return seq, nil
}

// Discard ends entry seq without sending it again: it becomes superseded with no
// superseded_by and reason as its last error. Drop and resolve --keep remote use it.
func Discard(ctx context.Context, tx *sql.Tx, seq int64, reason string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE outbox SET state = 'superseded', open = 0, superseded_by = NULL, last_error = ?,
		next_attempt_at = NULL, updated_at = ? WHERE seq = ?`, reason, FormatTime(now), seq)
	return err
}

// Drop ends a dead or held entry for good (docs/DESIGN.md §6, invariant 5) and returns the entries it
// ended, as they were: the entry, and for a post every later entry of its document. A held
// entry that was ever sent may have been applied: it must be settled from ERP5's results first
// (invariant 1), so Drop refuses it. The caller reverts the replica in the same transaction.
func Drop(ctx context.Context, tx *sql.Tx, seq int64, reason string, now time.Time) ([]*Entry, error) {
	e, err := getForUpdate(ctx, tx, seq)
	if err != nil {
		return nil, err
	}
	switch {
	case e.State == StateDead:
	case e.State == StateHeld && (!e.Frozen() || e.Mode == ModeStock):
		// A held stock entry that was sent may be at ERP5, but stock ERP5 keeps no results
		// to settle it: the operator checks (the caller warns) and may drop it.
	case e.State == StateHeld:
		return nil, gateway.ReasonErrorf(gateway.ECONFLICT, "state",
			"entry %d was sent to ERP5's receiver and may have been applied: release it so that ERP5's results settle it, "+
				"or, if the receiver is gone, end it with `gateway outbox resolve %d --assume-applied|--assume-lost`", seq, seq)
	default:
		return nil, RefusalError(e, "dropped", "dead or held")
	}
	list := []*Entry{e}
	if e.Op == OpPost {
		open, err := OpenEntries(ctx, tx, e.DocID)
		if err != nil {
			return nil, err
		}
		for _, o := range open {
			if o.Seq == e.Seq {
				continue
			}
			if o.Frozen() {
				return nil, gateway.ReasonErrorf(gateway.ECONFLICT, "state",
					"entry %d of the same document was sent; it must be settled first", o.Seq)
			}
			list = append(list, o)
		}
	}
	if reason == "" {
		reason = "dropped by operator"
	}
	for _, d := range list {
		if err := Discard(ctx, tx, d.Seq, reason, now); err != nil {
			return nil, fmt.Errorf("outbox drop %d: %w", d.Seq, err)
		}
	}
	return list, nil
}

// Rebase sets, in every never-sent open entry of docID after orderKey, the base of each field
// in values to that value: after the operator keeps head office's values, later edits are
// based on them.
func Rebase(ctx context.Context, tx *sql.Tx, docID string, orderKey int64, values map[string]any, now time.Time) error {
	open, err := OpenEntries(ctx, tx, docID)
	if err != nil {
		return err
	}
	for _, e := range open {
		if e.Frozen() || e.OrderKey <= orderKey || e.Op != OpPut {
			continue
		}
		changed := false
		for k := range e.Fields {
			if v, ok := values[k]; ok {
				if e.Base == nil {
					e.Base = map[string]any{}
				}
				e.Base[k], changed = v, true
			}
		}
		if !changed {
			continue
		}
		_, base, err := storedJSON(e)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET base = ?, updated_at = ? WHERE seq = ?`, base, FormatTime(now), e.Seq); err != nil {
			return err
		}
	}
	return nil
}

// Prune deletes done, merged and superseded entries last changed before cutoff, and returns
// how many. An entry that another kept entry points at (merged_into, superseded_by) is kept,
// and so is a merged entry whose target is still open: a claim reads the write keys of the
// rows it covers.
func Prune(ctx context.Context, tx *sql.Tx, cutoff time.Time) (int, error) {
	ts := FormatTime(cutoff)
	res, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq IN (
		SELECT o.seq FROM outbox o INDEXED BY outbox_final
		WHERE o.open = 0 AND o.updated_at < ?1
		AND NOT EXISTS (SELECT 1 FROM outbox t WHERE t.seq = o.merged_into AND t.open = 1)
		AND NOT EXISTS (SELECT 1 FROM outbox r WHERE (r.merged_into = o.seq OR r.superseded_by = o.seq)
			AND NOT (r.open = 0 AND r.updated_at < ?1)))`, ts)
	if err != nil {
		return 0, fmt.Errorf("outbox prune: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Filter selects entries for List.
type Filter struct {
	// States to list; empty means the open ones (every state but done, merged, superseded).
	States []string
	// DocID, when set, lists that document's entries only.
	DocID string
	// Peer, when set, lists that peer's entries only.
	Peer string
	// CreatedBefore, when set, lists entries queued before it only.
	CreatedBefore time.Time
	// Limit is the most entries returned; 0 means all.
	Limit int
}

// OpenStates are the states List shows by default: everything still in the queue.
var OpenStates = []string{StatePending, StateInflight, StateDeferred, StateUncertain, StateHeld, StateDead, StateConflict}

// List returns the entries f selects, in seq order, and how many match in all (before Limit).
func List(ctx context.Context, q Queryer, f Filter) ([]*Entry, int, error) {
	states := f.States
	if len(states) == 0 {
		states = OpenStates
	}
	var where []string
	var args []any
	ph := make([]string, len(states))
	for i, s := range states {
		if !IsState(s) {
			return nil, 0, gateway.Errorf(gateway.EINVALID, "unknown state %q (states: %s)", s, strings.Join(States, ", "))
		}
		ph[i] = "?"
		args = append(args, s)
	}
	where = append(where, "state IN ("+strings.Join(ph, ", ")+")")
	if f.DocID != "" {
		where = append(where, "doc_id = ?")
		args = append(args, f.DocID)
	}
	if f.Peer != "" {
		where = append(where, "peer = ?")
		args = append(args, f.Peer)
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, FormatTime(f.CreatedBefore))
	}
	cond := strings.Join(where, " AND ")
	var total int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE `+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("outbox list: %w", err)
	}
	query := `SELECT ` + entryColumns + ` FROM outbox WHERE ` + cond + ` ORDER BY seq`
	if f.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	list, err := queryEntries(ctx, q, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("outbox list: %w", err)
	}
	return list, total, nil
}

// StateStats is the count and size of the entries in one state.
type StateStats struct {
	State string `json:"state"`
	Count int    `json:"count"`
	Bytes int64  `json:"bytes"`
}

// Stats summarises the outbox.
type Stats struct {
	// States has one line per state, in States order.
	States []StateStats
	// OldestPending is when the oldest entry still waiting to be sent (pending, deferred,
	// uncertain) was queued; zero when none.
	OldestPending time.Time
}

// GetStats counts entries and bytes per state. Bytes are the payloads' sizes once claimed,
// else the canonical JSON's: exact for the open states; for final entries never sent (merged)
// the stored fields' size stands in.
func GetStats(ctx context.Context, q Queryer) (*Stats, error) {
	st := &Stats{}
	by := map[string]*StateStats{}
	for _, s := range States {
		by[s] = &StateStats{State: s}
	}
	rows, err := q.QueryContext(ctx, `SELECT state, count(*), coalesce(sum(coalesce(length(payload),
		length(coalesce(fields, '')) + length(coalesce(base, '')) + length(doc_id) + 40)), 0)
		FROM outbox WHERE state IN `+sqlFinal+` GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("outbox stats: %w", err)
	}
	for rows.Next() {
		var s string
		var n int
		var b int64
		if err := rows.Scan(&s, &n, &b); err != nil {
			rows.Close()
			return nil, err
		}
		if x := by[s]; x != nil {
			x.Count, x.Bytes = n, b
		}
	}
	rows.Close()
	open, _, err := List(ctx, q, Filter{})
	if err != nil {
		return nil, err
	}
	for _, e := range open {
		x := by[e.State]
		x.Count++
		x.Bytes += int64(e.Size())
		if (e.State == StatePending || e.State == StateDeferred || e.State == StateUncertain) &&
			(st.OldestPending.IsZero() || e.CreatedAt.Before(st.OldestPending)) {
			st.OldestPending = e.CreatedAt
		}
	}
	for _, s := range States {
		st.States = append(st.States, *by[s])
	}
	return st, nil
}

// Counts returns how many entries each open state holds (states with none are absent): what
// the status method shows.
func Counts(ctx context.Context, q Queryer) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT state, count(*) FROM outbox INDEXED BY outbox_open_state
		WHERE open = 1 GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("outbox counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Document sync states, as the sync method reports them (docs/DESIGN.md §3).
const (
	SyncSynced   = "synced"
	SyncPending  = "pending"
	SyncDead     = "dead"
	SyncConflict = "conflict"
)

// DocState is what a form shows about one document's writes.
type DocState struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	Seq    int64  `json:"seq,omitempty"`
}

// DocStates returns the sync state of each id: dead or conflict when such an entry waits for
// the operator (with its reason and seq), pending when any other entry is open, else synced.
func DocStates(ctx context.Context, q Queryer, ids []string) (map[string]DocState, error) {
	out := make(map[string]DocState, len(ids))
	for _, id := range ids {
		open, err := OpenEntries(ctx, q, id)
		if err != nil {
			return nil, fmt.Errorf("outbox doc states: %w", err)
		}
		st := DocState{State: SyncSynced}
		for _, e := range open {
			switch {
			case e.State == StateDead:
				st = DocState{State: SyncDead, Reason: e.LastError, Seq: e.Seq}
			case e.State == StateConflict && st.State != SyncDead:
				st = DocState{State: SyncConflict, Reason: e.LastError, Seq: e.Seq}
			case st.State == SyncSynced:
				st = DocState{State: SyncPending, Seq: e.Seq}
			}
			if st.State == SyncDead {
				break
			}
		}
		out[id] = st
	}
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
