package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
)

// All names every entry an operator command applies to ("ALL" on the command line).
const All int64 = -1

// Outbox reads for operators and the status method run on the read pool.

// OutboxEntry returns outbox entry seq (ENOTFOUND when there is none).
func (db *DB) OutboxEntry(ctx context.Context, seq int64) (*outbox.Entry, error) {
	e, err := outbox.Get(ctx, db.reader, seq)
	if errors.Is(err, outbox.ErrNotFound) {
		return nil, gateway.Errorf(gateway.ENOTFOUND, "no outbox entry %d", seq)
	}
	return e, err
}

// OutboxList returns the entries f selects and how many match in all.
func (db *DB) OutboxList(ctx context.Context, f outbox.Filter) ([]*outbox.Entry, int, error) {
	return outbox.List(ctx, db.reader, f)
}

// OutboxStats summarises the outbox.
func (db *DB) OutboxStats(ctx context.Context) (*outbox.Stats, error) {
	return outbox.GetStats(ctx, db.reader)
}

// OutboxCounts returns the number of entries per open state.
func (db *DB) OutboxCounts(ctx context.Context) (map[string]int, error) {
	return outbox.Counts(ctx, db.reader)
}

// SyncStates returns each document's sync state (the sync method, docs/DESIGN.md §3); ids are
// resolved through id_map first, and the answer is keyed by the ids as given.
func (db *DB) SyncStates(ctx context.Context, ids []string) (map[string]outbox.DocState, error) {
	out := make(map[string]outbox.DocState, len(ids))
	for _, id := range ids {
		to, err := resolveID(ctx, db.reader, id)
		if err != nil {
			return nil, err
		}
		st, err := outbox.DocStates(ctx, db.reader, []string{to})
		if err != nil {
			return nil, err
		}
		out[id] = st[to]
	}
	return out, nil
}

// MetaResultsChecked is the epoch under which NeedResults last found no unchecked entry: from
// then on, until the epoch changes, only uncertain entries need the results query.
const MetaResultsChecked = "results_checked_epoch"

// NeedResults lists, per epoch, the seqs the uplink must look up in ERP5's results before
// sending anything of them under the running epoch: the uncertain entries (outbox.Uncertain)
// and the entries of earlier epochs not yet checked (outbox.Unchecked), each sorted, at most
// limit of each (0: no limit). Once a look finds no unchecked entry it records so
// (MetaResultsChecked) and, until the epoch changes, later calls read the uncertain ones only.
func (db *DB) NeedResults(ctx context.Context, limit int) (map[string][]int64, error) {
	epoch, err := db.Epoch(ctx)
	if err != nil {
		return nil, err
	}
	need, err := outbox.Uncertain(ctx, db.reader, limit)
	if err != nil {
		return nil, err
	}
	checked, err := db.Meta(ctx, MetaResultsChecked)
	if err != nil || checked == epoch {
		return need, err
	}
	unchecked, err := outbox.Unchecked(ctx, db.reader, epoch, limit)
	if err != nil {
		return nil, err
	}
	if len(unchecked) == 0 {
		return need, db.SetMeta(ctx, MetaResultsChecked, epoch)
	}
	for e, seqs := range unchecked {
		need[e] = append(need[e], seqs...)
		slices.Sort(need[e])
	}
	return need, nil
}

// uncheckTx forgets that no entry needed checking (MetaResultsChecked) when one of entries,
// now pending or deferred again, was not checked under the running epoch.
func uncheckTx(ctx context.Context, tx *sql.Tx, now time.Time, entries []*outbox.Entry) error {
	running, err := epochTx(ctx, tx, now)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e != nil && e.CheckedEpoch != running {
			_, err := tx.ExecContext(ctx, `DELETE FROM meta WHERE key = ?`, MetaResultsChecked)
			return err
		}
	}
	return nil
}

// NextDue returns when the earliest deferred entry is due; the zero time when none is.
func (db *DB) NextDue(ctx context.Context) (time.Time, error) { return outbox.NextDue(ctx, db.reader) }

// entriesFor returns the entries an operator command names: seq, or (All) every entry in one
// of states.
func entriesFor(ctx context.Context, tx *sql.Tx, seq int64, states ...string) ([]*outbox.Entry, error) {
	if seq != All {
		e, err := outbox.Get(ctx, tx, seq)
		if err != nil {
			return nil, gateway.Errorf(gateway.ENOTFOUND, "no outbox entry %d", seq)
		}
		return []*outbox.Entry{e}, nil
	}
	list, _, err := outbox.List(ctx, tx, outbox.Filter{States: states})
	return list, err
}

// Hold holds entry seq, or (All) every pending, deferred and uncertain entry, and returns the
// entries held. actor names the operator in the audit table.
func (db *DB) Hold(ctx context.Context, seq int64, actor string) ([]*outbox.Entry, error) {
	var out []*outbox.Entry
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		var err error
		if seq == All {
			out, err = outbox.HoldAll(ctx, tx, "", now)
		} else {
			var e *outbox.Entry
			e, err = outbox.Hold(ctx, tx, seq, "", now)
			out = []*outbox.Entry{e}
		}
		if err != nil {
			return err
		}
		return auditTx(ctx, tx, now, actor, "hold", seqList(out))
	})
	return out, err
}

// Release releases entry seq, or (All) every held entry: never-sent ones become pending, sent
// ones uncertain (settled from ERP5's results before any resend).
func (db *DB) Release(ctx context.Context, seq int64, actor string) ([]*outbox.Entry, error) {
	var out []*outbox.Entry
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		var err error
		if seq == All {
			out, err = outbox.ReleaseAll(ctx, tx, now)
		} else {
			var e *outbox.Entry
			e, err = outbox.Release(ctx, tx, seq, now)
			out = []*outbox.Entry{e}
		}
		if err != nil {
			return err
		}
		if err := uncheckTx(ctx, tx, now, out); err != nil {
			return err
		}
		return auditTx(ctx, tx, now, actor, "release", seqList(out))
	})
	return out, err
}

// Flush makes every deferred entry due now and returns how many.
func (db *DB) Flush(ctx context.Context, actor string) (int, error) {
	var n int
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if n, err = outbox.Flush(ctx, tx, db.Now()); err != nil {
			return err
		}
		return auditTx(ctx, tx, db.Now(), actor, "flush", fmt.Sprintf("%d deferred entries due now", n))
	})
	return n, err
}

// Retried is what Retry did to one entry.
type Retried struct {
	// Entry is the entry as it was.
	Entry *outbox.Entry
	// NewSeq is the entry queued in its place (a dead or conflict entry); 0 for a deferred one
	// made due now.
	NewSeq int64
}

// FieldChange is one field of an entry seen from three sides, for the operator to confirm a
// retry or a resolve (docs/DESIGN.md §6, invariant 6).
type FieldChange struct {
	Field string `json:"field"`
	// Base is what the write was based on.
	Base any `json:"base"`
	// HeadOffice is ERP5's value as last known (its conflict answer, else upstream_body).
	HeadOffice any `json:"head_office"`
	// Local is the entry's value.
	Local any `json:"local"`
}

// HeadOffice returns, per field of e, the base its write used, ERP5's value as last known and
// e's own value: what head office changed is every field whose HeadOffice differs from Base.
func (db *DB) HeadOffice(ctx context.Context, e *outbox.Entry) ([]FieldChange, error) {
	cur, err := headOfficeValues(ctx, db.reader, e)
	if err != nil {
		return nil, err
	}
	var out []FieldChange
	for _, k := range sortedKeys(e.Fields) {
		out = append(out, FieldChange{Field: k, Base: e.Base[k], HeadOffice: cur[k], Local: e.Fields[k]})
	}
	return out, nil
}

// headOfficeValues returns ERP5's current values of e's fields as the gateway last heard
// them: the conflict answer's current values, else the document's upstream_body; a field ERP5
// has no value for is nil.
func headOfficeValues(ctx context.Context, q queryer, e *outbox.Entry) (map[string]any, error) {
	out := map[string]any{}
	var up sql.NullString
	err := q.QueryRowContext(ctx, `SELECT json(upstream_body) FROM documents WHERE id = ?`, e.DocID).Scan(&up)
	if err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	var upstream map[string]any
	if up.Valid {
		upstream, _ = outbox.DecodeObject([]byte(up.String))
	}
	_, current, _ := outbox.ConflictValues(e)
	for k := range e.Fields {
		if v, ok := current[k]; ok {
			out[k] = v
		} else if upstream != nil {
			out[k] = upstream[k]
		} else {
			out[k] = e.Base[k]
		}
	}
	return out, nil
}

// Retry retries entry seq, or (All) every deferred, dead and conflict entry: a deferred entry
// is due now and resent as it is (invariant 1); a dead or conflict entry is replaced by a new
// entry — new seq, the running epoch, the old order key, the same changes based on ERP5's
// current values — and becomes superseded (invariant 6).
func (db *DB) Retry(ctx context.Context, seq int64, actor string) ([]Retried, error) {
	var out []Retried
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		out = nil
		now := db.Now()
		list, err := entriesFor(ctx, tx, seq, outbox.StateDeferred, outbox.StateDead, outbox.StateConflict)
		if err != nil {
			return err
		}
		for _, e := range list {
			switch e.State {
			case outbox.StateDeferred:
				if _, err := outbox.RetryNow(ctx, tx, e.Seq, now); err != nil {
					return err
				}
				out = append(out, Retried{Entry: e})
			case outbox.StateDead, outbox.StateConflict:
				n, err := db.supersedeTx(ctx, tx, e, nil)
				if err != nil {
					return err
				}
				out = append(out, Retried{Entry: e, NewSeq: n})
			default:
				return outbox.RefusalError(e, "retried", "deferred, dead or conflict")
			}
		}
		var b strings.Builder
		for i, r := range out {
			if i > 0 {
				b.WriteString(", ")
			}
			if r.NewSeq != 0 {
				fmt.Fprintf(&b, "%d (%s) superseded by %d", r.Entry.Seq, r.Entry.State, r.NewSeq)
			} else {
				fmt.Fprintf(&b, "%d (deferred) due now", r.Entry.Seq)
			}
		}
		return auditTx(ctx, tx, now, actor, "retry", b.String())
	})
	return out, err
}

// supersedeTx queues a new entry in place of dead or conflict entry e, with the same changes
// based on ERP5's current values (base overrides them per field when given).
func (db *DB) supersedeTx(ctx context.Context, tx *sql.Tx, e *outbox.Entry, base map[string]any) (int64, error) {
	now := db.Now()
	epoch, err := epochTx(ctx, tx, now)
	if err != nil {
		return 0, err
	}
	n := &outbox.Entry{Op: e.Op, DocID: e.DocID, PortalType: e.PortalType, ParentID: e.ParentID,
		Fields: e.Fields, Transition: e.Transition, Comment: e.Comment, Peer: e.Peer,
		Epoch: epoch, SiteID: db.SiteID}
	if e.Op == outbox.OpPut {
		cur, err := headOfficeValues(ctx, tx, e)
		if err != nil {
			return 0, err
		}
		for k, v := range base {
			cur[k] = v
		}
		n.Base = cur
	}
	return outbox.Supersede(ctx, tx, e, n, now)
}

// Drop drops entry seq, or (All) every dead entry and every never-sent held entry (docs/DESIGN.md §6,
// invariant 5): the entry ends (superseded, with no superseded_by, "dropped by operator"), its
// fields in the replica revert to upstream_body (fields a later open entry changes keep
// their local value), a dropped remove restores the document, and a dropped post also ends
// its document's later entries and removes the local document. One audit line per entry,
// with the entry as it was.
func (db *DB) Drop(ctx context.Context, seq int64, actor string) ([]*outbox.Entry, error) {
	var out []*outbox.Entry
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		out = nil
		now := db.Now()
		list, err := entriesFor(ctx, tx, seq, outbox.StateDead, outbox.StateHeld)
		if err != nil {
			return err
		}
		for _, e := range list {
			if seq == All && e.State == outbox.StateHeld && e.Frozen() && e.Mode != outbox.ModeStock {
				continue // sent to the receiver: settled from ERP5's results first
			}
			cur, err := outbox.Get(ctx, tx, e.Seq)
			if err != nil {
				return err
			}
			if outbox.IsFinal(cur.State) {
				continue // ended with an earlier post of its document
			}
			dropped, err := outbox.Drop(ctx, tx, e.Seq, "", now)
			if err != nil {
				return err
			}
			if err := revertTx(ctx, tx, db, dropped); err != nil {
				return fmt.Errorf("drop %d: revert: %w", e.Seq, err)
			}
			for _, d := range dropped {
				canon, _ := outbox.Canonical(d)
				if err := auditTx(ctx, tx, now, actor, "drop",
					fmt.Sprintf("entry %d (%s, %s %s) dropped: %s", d.Seq, d.State, d.Op, d.DocID, canon)); err != nil {
					return err
				}
			}
			out = append(out, dropped...)
		}
		return nil
	})
	return out, err
}

// revertTx undoes dropped entries in the replica (invariant 5). dropped[0] is the entry
// dropped; for a post the rest are its document's later entries.
func revertTx(ctx context.Context, tx *sql.Tx, db *DB, dropped []*outbox.Entry) error {
	e := dropped[0]
	ts := FormatTime(db.Now())
	switch e.Op {
	case outbox.OpPost:
		_, err := tx.ExecContext(ctx, `DELETE FROM documents WHERE id = ?`, e.DocID)
		return err
	case outbox.OpRemove:
		_, err := tx.ExecContext(ctx, `UPDATE documents SET deleted = 0, updated_at = ? WHERE id = ?`, ts, e.DocID)
		return err
	case outbox.OpPut:
		open, err := outbox.OpenEntries(ctx, tx, e.DocID)
		if err != nil {
			return err
		}
		keep := map[string]bool{}
		for _, o := range open {
			for k := range o.Fields {
				keep[k] = true
			}
		}
		var up sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT json(upstream_body) FROM documents WHERE id = ?`, e.DocID).Scan(&up); err != nil {
			if err == sql.ErrNoRows {
				return nil
			}
			return err
		}
		var upstream map[string]any
		if up.Valid {
			upstream, _ = outbox.DecodeObject([]byte(up.String))
		}
		clear, set := map[string]any{}, map[string]any{}
		for k := range e.Fields {
			if keep[k] {
				continue
			}
			v, ok := e.Base[k], true
			if upstream != nil {
				v, ok = upstream[k]
			}
			clear[k] = nil
			if ok && v != nil {
				set[k] = v
			}
		}
		if len(clear) == 0 {
			return nil
		}
		c, _ := canonicalJSON(clear)
		s, _ := canonicalJSON(set)
		_, err = tx.ExecContext(ctx, `UPDATE documents SET body = jsonb_patch(jsonb_patch(body, ?), ?), updated_at = ? WHERE id = ?`,
			string(c), string(s), ts, e.DocID)
		return err
	}
	return nil
}

// Resolution choices for a conflict entry.
const (
	KeepLocal  = "local"
	KeepRemote = "remote"
)

// Resolve settles conflict entry seq. KeepLocal queues a new entry with the same changes
// based on head office's current values and supersedes the old one (invariant 6); KeepRemote
// takes head office's values into the replica for the entry's fields, ends the entry
// (superseded, no superseded_by) and bases later never-sent edits of those fields on head
// office's values. It returns the new entry's seq (KeepLocal).
func (db *DB) Resolve(ctx context.Context, seq int64, keep, actor string) (int64, error) {
	var newSeq int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		e, err := outbox.Get(ctx, tx, seq)
		if err != nil {
			return gateway.Errorf(gateway.ENOTFOUND, "no outbox entry %d", seq)
		}
		if e.State != outbox.StateConflict {
			return gateway.ReasonErrorf(gateway.ECONFLICT, "state", "entry %d is %s; only conflict entries can be resolved", seq, e.State)
		}
		switch keep {
		case KeepLocal:
			if newSeq, err = db.supersedeTx(ctx, tx, e, nil); err != nil {
				return err
			}
			return auditTx(ctx, tx, now, actor, "resolve", fmt.Sprintf("entry %d kept local: superseded by %d", seq, newSeq))
		case KeepRemote:
			cur, err := headOfficeValues(ctx, tx, e)
			if err != nil {
				return err
			}
			_, current, _ := outbox.ConflictValues(e)
			clear, set := map[string]any{}, map[string]any{}
			for k, v := range cur {
				clear[k] = nil
				if v != nil {
					set[k] = v
				}
			}
			c, _ := canonicalJSON(clear)
			s, _ := canonicalJSON(set)
			cj, _ := canonicalJSON(current)
			if _, err := tx.ExecContext(ctx, `UPDATE documents SET body = jsonb_patch(jsonb_patch(body, ?1), ?2),
				upstream_body = CASE WHEN upstream_body IS NULL THEN NULL ELSE jsonb_patch(upstream_body, ?3) END,
				updated_at = ?4 WHERE id = ?5`, string(c), string(s), string(cj), FormatTime(now), e.DocID); err != nil {
				return err
			}
			if err := outbox.Discard(ctx, tx, seq, "resolved: kept head office's values", now); err != nil {
				return err
			}
			if err := outbox.Rebase(ctx, tx, e.DocID, e.OrderKey, cur, now); err != nil {
				return err
			}
			return auditTx(ctx, tx, now, actor, "resolve", fmt.Sprintf("entry %d kept remote: %s", seq, cj))
		default:
			return gateway.Errorf(gateway.EINVALID, "--keep must be local or remote, not %q", keep)
		}
	})
	return newSeq, err
}

// Audit appends a line to the audit table.
func (db *DB) Audit(ctx context.Context, actor, action, detail string) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error { return auditTx(ctx, tx, db.Now(), actor, action, detail) })
}

func seqList(list []*outbox.Entry) string {
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = fmt.Sprint(e.Seq)
	}
	if len(parts) == 0 {
		return "no entries"
	}
	return "entries " + strings.Join(parts, ", ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnqueueImported queues an imported document for ERP5, inside the import's transaction: the
// hook of `docs import --enqueue` (ImportOptions.Enqueue). A document under a local id is
// queued as a post (its parent is the id's container); any other as a put of all its fields,
// with no base (ERP5 then reports a conflict for a field it holds a different value of). The
// entries carry the running epoch, the database's site id and the operator's peer name.
func (db *DB) EnqueueImported(ctx context.Context, tx *sql.Tx, rec ImportRecord) error {
	doc, err := outbox.DecodeObject(rec.Doc)
	if err != nil {
		return gateway.Errorf(gateway.EINVALID, "line %d: %v", rec.Line, err)
	}
	now := db.Now()
	epoch, err := epochTx(ctx, tx, now)
	if err != nil {
		return err
	}
	fields := cloneMap(doc)
	delete(fields, "portal_type")
	delete(fields, "parent_relative_url")
	e := &outbox.Entry{Op: outbox.OpPut, DocID: rec.ID, Fields: fields, Base: map[string]any{},
		Epoch: epoch, SiteID: db.SiteID, Peer: OperatorPeer}
	if outbox.IsLocalID(rec.ID) {
		e.Op, e.PortalType, e.ParentID, e.Base = outbox.OpPost, rec.PortalType, parentOf(rec.ID), nil
	}
	_, err = outbox.Enqueue(ctx, tx, e, now)
	return err
}
