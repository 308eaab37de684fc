package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"sitesync.example/gateway/outbox"
)

// ClaimChunk and SettleChunk bound how many entries one claim or settle transaction takes:
// the uplink's transactions stay short (a few milliseconds), so that the writes of the LAN,
// which share the one writer connection, wait for at most one chunk (docs/DESIGN.md §5).
var (
	ClaimChunk  = 100
	SettleChunk = 64
)

// Claim takes the uplink's next batch, every entry committed before it returns and so before
// the first byte is sent (docs/DESIGN.md §6, Claiming): merges folded, entries inflight with attempts
// + 1 and their exact bytes and hash stored; the tombstones of cancelled local documents (a
// never-sent post then remove) are deleted in the same transaction. A batch of more than
// ClaimChunk entries is claimed in several short transactions, each of at most ClaimChunk
// entries, all of the first one's epoch and site. enc nil means outbox.BatchEncoder. An empty
// batch has no entries.
func (db *DB) Claim(ctx context.Context, budget outbox.Budget, enc outbox.Encoder) (*outbox.Batch, error) {
	max := budget.MaxEntries
	if max <= 0 {
		max = outbox.DefaultMaxEntries
	}
	b := &outbox.Batch{Epoch: budget.Epoch, SiteID: budget.SiteID}
	bytes := 0
	for len(b.Entries) < max {
		chunk := budget
		chunk.MaxEntries = min(max-len(b.Entries), ClaimChunk)
		chunk.Epoch, chunk.SiteID = b.Epoch, b.SiteID
		if len(b.Entries) > 0 {
			chunk.Continue, chunk.AfterKey, chunk.AfterSeq = true, b.WalkKey, b.WalkSeq
			if budget.MaxBytes > 0 {
				chunk.MaxBytes = budget.MaxBytes - bytes
				if chunk.MaxBytes <= 0 {
					break
				}
			}
		}
		c, err := db.claimTx(ctx, chunk, enc)
		if err != nil {
			if len(b.Entries) > 0 {
				// What is claimed is committed: send it; the error comes back next claim.
				break
			}
			return nil, err
		}
		if b.Epoch == "" {
			b.Epoch, b.SiteID = c.Epoch, c.SiteID
		}
		b.Entries = append(b.Entries, c.Entries...)
		b.Cancelled = append(b.Cancelled, c.Cancelled...)
		b.Noop = append(b.Noop, c.Noop...)
		b.Merged += c.Merged
		b.WalkKey, b.WalkSeq = c.WalkKey, c.WalkSeq
		bytes += c.Bytes()
		if len(c.Entries) < chunk.MaxEntries {
			break
		}
	}
	return b, nil
}

// yieldMax bounds how long one claim or settle transaction lets the LAN's writes pass first:
// under a constant stream of writes the uplink still gets the writer this often.
const yieldMax = 20 * time.Millisecond

// yieldToWrites waits, up to yieldMax, while writes of the LAN (Write) are queued or being
// committed: the uplink's transactions go between them, so that a browser's write never
// waits behind a run of claim and settle chunks (database/sql hands the one writer
// connection to its waiters in no particular order).
func (db *DB) yieldToWrites(ctx context.Context) {
	if db.foreground.Load() == 0 {
		return
	}
	deadline := time.Now().Add(yieldMax)
	for db.foreground.Load() > 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// claimTx claims one chunk of a batch in one committed transaction.
func (db *DB) claimTx(ctx context.Context, budget outbox.Budget, enc outbox.Encoder) (*outbox.Batch, error) {
	db.yieldToWrites(ctx)
	var b *outbox.Batch
	stmts, err := db.prepareWrites(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		running, err := epochTx(ctx, tx, now)
		if err != nil {
			return err
		}
		if b, err = stmts.queue.Claim(ctx, tx, running, now, budget, enc); err != nil {
			return err
		}
		for _, id := range b.Cancelled {
			if _, err := tx.ExecContext(ctx, `DELETE FROM documents WHERE id = ? AND deleted = 1`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return b, nil
}

// SettleReport is what Settle did.
type SettleReport struct {
	// Settled has one item per result, in order.
	Settled []outbox.Settled
	// Renamed maps each local id ERP5 numbered (its children's ids included) to its new id:
	// what the `changed` notification's "renamed" carries.
	Renamed map[string]string
	// Changed are the ids of documents whose replica row changed (new state from ERP5, a
	// rename, a removal confirmed).
	Changed []string
	// Alarm is outbox.ErrSeqReused when an entry was answered seq_reused: the uplink pauses
	// and raises an alarm (invariant 6).
	Alarm error
}

// Settle records a batch's per-entry results (or the results query's) in short transactions
// (docs/DESIGN.md §7): the outbox states (outbox.Settle), and the replica — for an ok post, id_map and
// the rename of the document, its children and every reference to it in other documents and
// in later never-sent entries (invariant 4); for an ok entry, ERP5's state and version as the
// document's upstream_body and upstream_version, and the state's fields in the body where no
// local edit is pending; for an ok remove, the tombstone deleted.
//
// Results are settled SettleChunk at a time, each chunk in its own short transaction: an
// entry's settlement (its state and its document's replica row) is always whole, and a crash
// between chunks leaves the later entries inflight, hence uncertain at the next start and
// settled through ERP5's results query (docs/DESIGN.md §6).
func (db *DB) Settle(ctx context.Context, results []outbox.Result) (*SettleReport, error) {
	rep := &SettleReport{Renamed: map[string]string{}}
	for len(results) > 0 {
		n := min(len(results), max(SettleChunk, 1))
		r, err := db.settleTx(ctx, results[:n])
		if err != nil {
			return rep, err
		}
		results = results[n:]
		rep.Settled = append(rep.Settled, r.Settled...)
		for k, v := range r.Renamed {
			rep.Renamed[k] = v
		}
		rep.Changed = append(rep.Changed, r.Changed...)
		if r.Alarm != nil {
			rep.Alarm = r.Alarm
		}
	}
	return rep, nil
}

// settleTx settles results in one transaction.
func (db *DB) settleTx(ctx context.Context, results []outbox.Result) (*SettleReport, error) {
	db.yieldToWrites(ctx)
	var rep *SettleReport
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		rep = &SettleReport{Renamed: map[string]string{}}
		now := db.Now()
		running, err := epochTx(ctx, tx, now)
		if err != nil {
			return err
		}
		settled, err := outbox.Settle(ctx, tx, running, now, results)
		if err != nil {
			return err
		}
		rep.Settled = settled
		var back []*outbox.Entry // entries back to pending or deferred without a check
		for _, s := range settled {
			if s.Entry != nil && s.Result.Status != outbox.ResultUnknown &&
				(s.State == outbox.StatePending || s.State == outbox.StateDeferred) {
				back = append(back, s.Entry)
			}
		}
		if err := uncheckTx(ctx, tx, now, back); err != nil {
			return err
		}
		for _, s := range settled {
			if s.Result.Status == outbox.ResultSeqReused && s.State == outbox.StateHeld {
				rep.Alarm = outbox.ErrSeqReused
			}
			if s.State != outbox.StateDone || s.Entry == nil || s.Result.Status != outbox.ResultOK {
				continue
			}
			e := s.Entry
			id := e.DocID
			switch e.Op {
			case outbox.OpRemove:
				if _, err := tx.ExecContext(ctx, `DELETE FROM documents WHERE id = ? AND deleted = 1`, id); err != nil {
					return err
				}
				rep.Changed = append(rep.Changed, id)
				continue
			case outbox.OpPost:
				if s.Result.ID != "" && s.Result.ID != id {
					renamed, err := renameTx(ctx, tx, db, id, s.Result.ID)
					if err != nil {
						return fmt.Errorf("rename %s to %s: %w", id, s.Result.ID, err)
					}
					for k, v := range renamed {
						rep.Renamed[k] = v
						rep.Changed = append(rep.Changed, v)
					}
					id = s.Result.ID
				}
			}
			if err := applyUpstream(ctx, tx, db, id, s.Result.State, s.Result.Version); err != nil {
				return fmt.Errorf("settle %d: %w", e.Seq, err)
			}
			if len(s.Result.State) > 0 {
				rep.Changed = append(rep.Changed, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("settle: %w", err)
	}
	return rep, nil
}

// applyUpstream records ERP5's state and version of a document after one of its entries was
// applied: upstream_body takes the state's fields, upstream_version the version, and the body
// takes the state's fields that no open entry of the document changes (those keep the local
// edit, which ERP5 has not seen yet).
func applyUpstream(ctx context.Context, tx *sql.Tx, db *DB, id string, state json.RawMessage, version string) error {
	if len(state) == 0 && version == "" {
		return nil
	}
	if len(state) > 0 {
		st, err := outbox.DecodeObject(state)
		if err != nil {
			return fmt.Errorf("ERP5's state of %s is not a JSON object: %w", id, err)
		}
		open, err := outbox.OpenEntries(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, o := range open {
			for k := range o.Fields {
				delete(st, k)
			}
		}
		patch, err := canonicalJSON(st)
		if err != nil {
			return err
		}
		// One statement for the state and the version: each UPDATE of a document rewrites
		// its row and runs its index trigger.
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET
			upstream_body = jsonb_patch(coalesce(upstream_body, jsonb('{}')), ?2),
			body = jsonb_patch(body, ?3), updated_at = ?4,
			upstream_version = CASE WHEN ?5 != '' THEN ?5 ELSE upstream_version END WHERE id = ?1`,
			id, string(state), string(patch), FormatTime(db.Now()), version); err != nil {
			return err
		}
		return nil
	}
	if version != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET upstream_version = ? WHERE id = ?`, version, id); err != nil {
			return err
		}
	}
	return nil
}

// renameTx gives the local document old (and every child under it) the id ERP5 assigned, in
// the replica, id_map, the references of other documents, and later never-sent outbox
// entries (invariant 4). It returns old id → new id for every document renamed.
func renameTx(ctx context.Context, tx *sql.Tx, db *DB, old, new string) (map[string]string, error) {
	now := db.Now()
	ts := FormatTime(now)
	renamed := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM documents WHERE id = ?1 OR (id > ?1 || '/' AND id < ?1 || '0')`, old)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		to, _ := outbox.RenameID(id, old, new)
		// A row already under the new id (pulled by the downlink first) gives way: the local
		// row carries the site's edits and the state ERP5 just returned.
		if _, err := tx.ExecContext(ctx, `DELETE FROM documents WHERE id = ?`, to); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET id = ?, updated_at = ? WHERE id = ?`, to, ts, id); err != nil {
			return nil, err
		}
		renamed[id] = to
	}
	if len(ids) == 0 {
		renamed[old] = new
	}
	for from, to := range renamed {
		if _, err := tx.ExecContext(ctx, `INSERT INTO id_map (local_id, erp5_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT (local_id) DO UPDATE SET erp5_id = excluded.erp5_id`, from, to, ts); err != nil {
			return nil, err
		}
		// Older ids that led to from now lead to to: lookups stay one step.
		if _, err := tx.ExecContext(ctx, `UPDATE id_map SET erp5_id = ? WHERE erp5_id = ?`, to, from); err != nil {
			return nil, err
		}
	}
	if err := renameReferences(ctx, tx, old, new, ts); err != nil {
		return nil, err
	}
	if _, err := outbox.Rename(ctx, tx, old, new, now); err != nil {
		return nil, err
	}
	return renamed, nil
}

// renameReferences rewrites every string value in the replica's bodies that is old or an id
// under it. Candidates are found by a byte search for old's last segment in the stored JSONB
// (a local id's "local-<ulid>" is unique), then the matching values are located with
// json_tree and replaced in place with jsonb_set, so key order and number literals stay.
func renameReferences(ctx context.Context, tx *sql.Tx, old, new, ts string) error {
	seg := old[strings.LastIndexByte(old, '/')+1:]
	// documents_local_refs (migration 0006) holds the bodies that name any local id.
	from := `documents d INDEXED BY documents_local_refs, json_tree(d.body) t
		WHERE instr(d.body, X'6c6f63616c2d') > 0 AND`
	if !outbox.IsLocalID(old) {
		from = `documents d, json_tree(d.body) t WHERE`
	}
	rows, err := tx.QueryContext(ctx, `SELECT d.id, t.fullkey, t.value FROM `+from+` instr(d.body, CAST(?2 AS BLOB)) > 0 AND t.type = 'text'
		AND (t.value = ?1 OR substr(t.value, 1, length(?1) + 1) = ?1 || '/')`, old, seg)
	if err != nil {
		return err
	}
	type hit struct{ id, path, to string }
	var hits []hit
	for rows.Next() {
		var h hit
		var v string
		if err := rows.Scan(&h.id, &h.path, &v); err != nil {
			rows.Close()
			return err
		}
		h.to, _ = outbox.RenameID(v, old, new)
		hits = append(hits, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, h := range hits {
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET body = jsonb_set(body, ?, ?), updated_at = ? WHERE id = ?`,
			h.path, h.to, ts, h.id); err != nil {
			return err
		}
	}
	return nil
}
