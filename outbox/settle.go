package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Result statuses Settle accepts. The first five are ERP5's (docs/DESIGN.md appendix B; "unknown" comes from
// the results query for a seq it never applied); the last two are the uplink's own verdict on
// a send that got no usable answer (docs/DESIGN.md §7, Outcomes).
const (
	ResultOK        = "ok"
	ResultConflict  = "conflict"
	ResultRejected  = "rejected"
	ResultSeqReused = "seq_reused"
	ResultUnknown   = "unknown"
	ResultDeferred  = "deferred"
	ResultUncertain = "uncertain"
	// ResultNotSent is the uplink's verdict on a claimed entry none of whose requests left the
	// machine: its claim is undone (attempts - 1), and it is pending again, or deferred until
	// NextAttemptAt when set. Its last error is kept unless Reason is set.
	ResultNotSent = "not_sent"
)

// Result is the outcome of one entry.
type Result struct {
	Seq    int64
	Status string
	// ID is the document's ERP5 id; required for an ok post (the id ERP5 gave it).
	ID string
	// Version is ERP5's modification time of the document after the change.
	Version string
	// State is every replicated field after the change (ok).
	State json.RawMessage
	// Current is ERP5's value of each conflicting field (conflict).
	Current json.RawMessage
	// Reason explains rejected, seq_reused, deferred and uncertain.
	Reason string
	// NextAttemptAt is when a deferred entry is due again.
	NextAttemptAt time.Time
	// Raw is ERP5's whole answer, stored as the entry's answer when set.
	Raw json.RawMessage
}

// Settled is what Settle did to one entry.
type Settled struct {
	// Entry is the entry as it was before settling.
	Entry *Entry
	// Result is the result applied.
	Result Result
	// State is the entry's new state ("" when the result was ignored: unknown seq, or an
	// entry that was already final).
	State string
}

// ErrSeqReused is the alarm a seq_reused answer raises: ERP5 holds another payload under an
// (epoch, seq) this gateway sent — a bug or tampering. The entry is held and the uplink must
// pause (invariant 6).
var ErrSeqReused = errors.New("ERP5 answered seq_reused: it holds another payload under this epoch and seq")

// Settle records results inside tx (the caller's transaction, which also updates the replica)
// and returns what it did per entry, in the order given. An ok entry becomes done; conflict
// stores both values and waits for resolve; rejected is dead with its reason; seq_reused is
// held with that reason (the caller raises the alarm); deferred waits for NextAttemptAt;
// uncertain waits for the results query; unknown (the results query never saw it) makes a
// sent entry pending again, to be resent byte-identical, and marks any entry checked under
// running. Results for seqs the outbox lacks, or for final entries, are ignored.
func Settle(ctx context.Context, tx *sql.Tx, running string, now time.Time, results []Result) ([]Settled, error) {
	ts := FormatTime(now)
	out := make([]Settled, 0, len(results))
	for _, r := range results {
		e, err := Get(ctx, tx, r.Seq)
		if errors.Is(err, ErrNotFound) {
			out = append(out, Settled{Result: r})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("outbox settle: %w", err)
		}
		s := Settled{Entry: e, Result: r}
		if IsFinal(e.State) {
			out = append(out, s)
			continue
		}
		answer := r.Raw
		if len(answer) == 0 {
			answer, _ = marshalResult(r)
		}
		var q string
		var args []any
		switch r.Status {
		case ResultOK:
			if e.Op == OpPost && r.ID == "" {
				s.State = StateUncertain
				q, args = `UPDATE outbox SET state = 'uncertain', last_error = ?, answer = ?, updated_at = ? WHERE seq = ?`,
					[]any{"ERP5 answered ok for a post without its id", string(answer), ts, e.Seq}
				break
			}
			s.State = StateDone
			q, args = `UPDATE outbox SET state = 'done', open = 0, last_error = '', next_attempt_at = NULL, answer = ?, updated_at = ? WHERE seq = ?`,
				[]any{string(answer), ts, e.Seq}
		case ResultConflict:
			s.State = StateConflict
			both, err := conflictAnswer(e, r)
			if err != nil {
				return nil, fmt.Errorf("outbox settle %d: %w", e.Seq, err)
			}
			q, args = `UPDATE outbox SET state = 'conflict', last_error = ?, next_attempt_at = NULL, answer = ?, updated_at = ? WHERE seq = ?`,
				[]any{conflictMessage(r), string(both), ts, e.Seq}
		case ResultRejected:
			s.State = StateDead
			reason := r.Reason
			if reason == "" {
				reason = "rejected by ERP5"
			}
			q, args = `UPDATE outbox SET state = 'dead', last_error = ?, next_attempt_at = NULL, answer = ?, updated_at = ? WHERE seq = ?`,
				[]any{reason, string(answer), ts, e.Seq}
		case ResultSeqReused:
			s.State = StateHeld
			reason := r.Reason
			if !strings.HasPrefix(reason, "seq_reused") {
				reason = "seq_reused: ERP5 holds another payload under this epoch and seq"
			}
			q, args = `UPDATE outbox SET state = 'held', last_error = ?1, held_reason = ?1, next_attempt_at = NULL, answer = ?, updated_at = ? WHERE seq = ?`,
				[]any{reason, string(answer), ts, e.Seq}
		case ResultDeferred:
			s.State = StateDeferred
			q, args = `UPDATE outbox SET state = 'deferred', last_error = ?, next_attempt_at = ?, updated_at = ? WHERE seq = ?`,
				[]any{r.Reason, FormatTime(r.NextAttemptAt), ts, e.Seq}
		case ResultUncertain:
			s.State = StateUncertain
			q, args = `UPDATE outbox SET state = 'uncertain', last_error = ?, next_attempt_at = NULL, updated_at = ? WHERE seq = ?`,
				[]any{r.Reason, ts, e.Seq}
		case ResultNotSent:
			s.State = StatePending
			var next any
			if !r.NextAttemptAt.IsZero() {
				s.State, next = StateDeferred, FormatTime(r.NextAttemptAt)
			}
			q, args = `UPDATE outbox SET state = ?, attempts = max(attempts - 1, 0), next_attempt_at = ?,
				last_error = CASE WHEN ?3 = '' THEN last_error ELSE ?3 END, updated_at = ? WHERE seq = ?`,
				[]any{s.State, next, r.Reason, ts, e.Seq}
		case ResultUnknown:
			s.State = e.State
			if e.Frozen() && (e.State == StateInflight || e.State == StateUncertain) {
				s.State = StatePending
			}
			q, args = `UPDATE outbox SET state = ?, checked_epoch = ?, updated_at = ? WHERE seq = ?`,
				[]any{s.State, running, ts, e.Seq}
		default:
			return nil, fmt.Errorf("outbox settle %d: unknown status %q", e.Seq, r.Status)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return nil, fmt.Errorf("outbox settle %d: %w", e.Seq, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func marshalResult(r Result) ([]byte, error) {
	m := map[string]any{"seq": r.Seq, "status": r.Status}
	if r.ID != "" {
		m["id"] = r.ID
	}
	if r.Version != "" {
		m["version"] = r.Version
	}
	if len(r.State) > 0 {
		m["state"] = r.State
	}
	if len(r.Current) > 0 {
		m["current"] = r.Current
	}
	if r.Reason != "" {
		m["reason"] = r.Reason
	}
	return marshal(m)
}

// conflictAnswer is what a conflict entry stores: ERP5's current values beside the entry's own
// (local) values and bases, so `outbox show` prints both sides.
func conflictAnswer(e *Entry, r Result) ([]byte, error) {
	m := map[string]any{"status": ResultConflict, "local": nonNil(e.Fields), "base": nonNil(e.Base)}
	if len(r.Current) > 0 {
		m["current"] = r.Current
	} else {
		m["current"] = map[string]any{}
	}
	if r.Version != "" {
		m["version"] = r.Version
	}
	return marshal(m)
}

func conflictMessage(r Result) string {
	cur, err := DecodeObject(r.Current)
	if err != nil || len(cur) == 0 {
		return "conflict: changed at head office too"
	}
	keys := sortedKeys(cur)
	return "conflict: " + strings.Join(keys, ", ") + " changed at head office too"
}

// ConflictValues returns the three sides of a conflict entry: the values its write was based
// on, ERP5's current values and the local values, per field.
func ConflictValues(e *Entry) (base, current, local map[string]any) {
	base, local = nonNil(e.Base), nonNil(e.Fields)
	current = map[string]any{}
	if len(e.Answer) > 0 {
		if a, err := DecodeObject(e.Answer); err == nil {
			if c, ok := a["current"].(map[string]any); ok {
				current = c
			}
		}
	}
	return base, current, local
}

// RenameID returns s with the local id old replaced by new: s itself, or a descendant's id
// under it ("old/..." becomes "new/...").
func RenameID(s, old, new string) (string, bool) {
	if s == old {
		return new, true
	}
	if strings.HasPrefix(s, old+"/") {
		return new + s[len(old):], true
	}
	return s, false
}

// renameValues rewrites every string in v (at any depth) that names old or a descendant.
func renameValues(v any, old, new string) (any, bool) {
	switch x := v.(type) {
	case string:
		return RenameID(x, old, new)
	case []any:
		changed := false
		for i, el := range x {
			if n, ok := renameValues(el, old, new); ok {
				x[i], changed = n, true
			}
		}
		return x, changed
	case map[string]any:
		changed := false
		for k, el := range x {
			if n, ok := renameValues(el, old, new); ok {
				x[k], changed = n, true
			}
		}
		return x, changed
	}
	return v, false
}

// Rename rewrites, inside tx, every never-sent open entry that names the local id old (or a
// descendant's id under it) — its document id, parent, field values and bases — to new, once
// ERP5 has numbered the document (invariant 4). Entries ever sent are frozen and untouched.
// It returns the number of entries rewritten.
func Rename(ctx context.Context, tx *sql.Tx, old, new string, now time.Time) (int, error) {
	// The rows of the document and its children (by id, through outbox_open), and the rows
	// that name a local id elsewhere (outbox_local_refs, migration 0006): never a walk of
	// every open row.
	query := `SELECT ` + entryColumns + ` FROM outbox INDEXED BY outbox_open
		WHERE open = 1 AND attempts = 0 AND (doc_id = ?1 OR (doc_id > ?1 || '/' AND doc_id < ?1 || '0'))
		UNION SELECT ` + entryColumns + ` FROM outbox INDEXED BY outbox_local_refs
		WHERE open = 1 AND attempts = 0 AND instr(parent_id || coalesce(fields, '') || coalesce(base, ''), 'local-') > 0
		AND (instr(doc_id, ?1) > 0 OR instr(parent_id, ?1) > 0
		OR instr(coalesce(fields, ''), ?1) > 0 OR instr(coalesce(base, ''), ?1) > 0)
		ORDER BY seq`
	if !IsLocalID(old) {
		query = `SELECT ` + entryColumns + ` FROM outbox INDEXED BY outbox_open
		WHERE open = 1 AND attempts = 0 AND (instr(doc_id, ?1) > 0 OR instr(parent_id, ?1) > 0
		OR instr(coalesce(fields, ''), ?1) > 0 OR instr(coalesce(base, ''), ?1) > 0)`
	}
	entries, err := queryEntries(ctx, tx, query, old)
	if err != nil {
		return 0, fmt.Errorf("outbox rename %s: %w", old, err)
	}
	ts := FormatTime(now)
	n := 0
	for _, e := range entries {
		changed := false
		if id, ok := RenameID(e.DocID, old, new); ok {
			e.DocID, changed = id, true
		}
		if id, ok := RenameID(e.ParentID, old, new); ok {
			e.ParentID, changed = id, true
		}
		if _, ok := renameValues(e.Fields, old, new); ok {
			changed = true
		}
		if _, ok := renameValues(e.Base, old, new); ok {
			changed = true
		}
		if !changed {
			continue
		}
		e.Refs = LocalRefs(e)
		fields, base, err := storedJSON(e)
		if err != nil {
			return n, err
		}
		refs, _ := jsonText(e.Refs)
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET doc_id = ?, parent_id = ?, fields = ?, base = ?, refs = ?,
			updated_at = ? WHERE seq = ?`, e.DocID, e.ParentID, fields, base, refs, ts, e.Seq); err != nil {
			return n, fmt.Errorf("outbox rename %s: %w", old, err)
		}
		n++
	}
	return n, nil
}

// RecoverInflight turns every inflight entry into uncertain: at start, an inflight entry was
// being sent by a process that is gone, and may have been applied (invariant 1). It returns
// how many it changed. Only the process that runs the uplink calls it, before it claims.
func RecoverInflight(ctx context.Context, tx *sql.Tx, now time.Time) (int, error) {
	res, err := tx.ExecContext(ctx, `UPDATE outbox SET state = 'uncertain',
		last_error = 'the gateway stopped while it was sending this entry', updated_at = ? WHERE state = 'inflight'`, FormatTime(now))
	if err != nil {
		return 0, fmt.Errorf("outbox recover inflight: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Uncertain returns, per epoch, the uncertain entries: sent, outcome unknown, to be settled
// through ERP5's results query before anything else of them (invariant 1). At most limit seqs
// (0: no limit), lowest first.
func Uncertain(ctx context.Context, q Queryer, limit int) (map[string][]int64, error) {
	return seqsByEpoch(ctx, q, `SELECT epoch, seq FROM outbox INDEXED BY outbox_uncertain
		WHERE state = 'uncertain' ORDER BY seq`, limit)
}

// Unchecked returns, per epoch, the pending and deferred entries not checked under the
// running epoch: queued under an earlier one and not yet confirmed unapplied by ERP5's
// results query (docs/DESIGN.md §6, Identity); Settle's "unknown" checks them. It walks every
// pending entry; none becomes unchecked until the epoch changes. At most limit seqs (0: no
// limit), lowest first.
func Unchecked(ctx context.Context, q Queryer, running string, limit int) (map[string][]int64, error) {
	return seqsByEpoch(ctx, q, `SELECT epoch, seq FROM outbox INDEXED BY outbox_ready
		WHERE state IN ('pending', 'deferred') AND checked_epoch != ?1 ORDER BY seq`, limit, running)
}

func seqsByEpoch(ctx context.Context, q Queryer, query string, limit int, args ...any) (map[string][]int64, error) {
	if limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox results worklist: %w", err)
	}
	defer rows.Close()
	out := map[string][]int64{}
	for rows.Next() {
		var epoch string
		var seq int64
		if err := rows.Scan(&epoch, &seq); err != nil {
			return nil, err
		}
		out[epoch] = append(out[epoch], seq)
	}
	return out, rows.Err()
}

// NextDue returns when the earliest deferred entry is due; the zero time when none is
// deferred.
func NextDue(ctx context.Context, q Queryer) (time.Time, error) {
	var v sql.NullString
	if err := q.QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM outbox INDEXED BY outbox_deferred
		WHERE state = 'deferred'`).Scan(&v); err != nil {
		return time.Time{}, fmt.Errorf("outbox next due: %w", err)
	}
	return parseTime(v.String), nil
}
