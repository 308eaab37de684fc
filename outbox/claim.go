package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Budget bounds one batch.
type Budget struct {
	// MaxEntries is the most entries in the batch (DefaultMaxEntries when 0).
	MaxEntries int
	// MaxBytes bounds the sum of the entries' payloads before compression; 0 means no bound.
	// The first entry is taken even when it alone is larger, or it could never be sent.
	MaxBytes int
	// Epoch and SiteID, when set, restrict the claim to entries of that epoch and site: a
	// batch claimed in several short transactions keeps one epoch (docs/DESIGN.md §6).
	Epoch, SiteID string
	// Continue says the claim adds to a batch that already holds entries: MaxBytes then
	// bounds the first entry too, and the walk resumes after (AfterKey, AfterSeq), where the
	// previous claim of the batch stopped (Batch.WalkKey, Batch.WalkSeq), rather than
	// walking again over the rows that claim passed.
	Continue           bool
	AfterKey, AfterSeq int64
}

// DefaultMaxEntries is the batch size when the budget names none: docs/DESIGN.md appendix C's measured sweet
// spot (a 1,000-entry batch compresses ~7×; the receiver applies at most max_entries per
// transaction anyway).
const DefaultMaxEntries = 500

// Batch is what one Claim took: entries of one epoch and one site, at most one per document,
// each inflight with its mode, payload and hash stored.
type Batch struct {
	Epoch   string
	SiteID  string
	Entries []*Entry
	// Cancelled are the local documents whose never-sent post was followed by a never-sent
	// remove: every entry of theirs became merged with no merged_into and nothing is sent; the
	// caller deletes their tombstones in the same transaction.
	Cancelled []string
	// Merged counts the rows folded into another entry by this claim.
	Merged int
	// Noop are entries whose merged changes cancelled out (every field back to its base): they
	// were marked done without being sent.
	Noop []int64
	// WalkKey and WalkSeq are the order key and seq of the last row the claim looked at
	// (Budget.AfterKey, AfterSeq of a claim that continues the batch).
	WalkKey, WalkSeq int64
}

// Bytes is the sum of the entries' payload sizes.
func (b *Batch) Bytes() int {
	n := 0
	for _, e := range b.Entries {
		n += len(e.Payload)
	}
	return n
}

// Payloads returns the entries' stored bytes, in batch order.
func (b *Batch) Payloads() []json.RawMessage {
	out := make([]json.RawMessage, len(b.Entries))
	for i, e := range b.Entries {
		out[i] = e.Payload
	}
	return out
}

// candidateQuery selects the entries that may be sent now: pending, or deferred and due;
// checked under the running epoch (queued under it, or of an earlier epoch and confirmed
// unapplied by ERP5's results query under it); the first open entry of their document (invariant 3); naming no local id
// whose post is still open (invariant 4). It walks outbox_ready in order-key order and probes
// outbox_open per row, so its cost does not grow with the done rows the table keeps.
const candidateQuery = `SELECT ` + claimColumns + `,
	EXISTS (SELECT 1 FROM outbox q INDEXED BY outbox_open WHERE q.doc_id = outbox.doc_id
		AND (q.order_key, q.seq) > (outbox.order_key, outbox.seq) AND q.open = 1)
FROM outbox INDEXED BY outbox_ready
WHERE state IN ('pending', 'deferred')
	AND (order_key, seq) > (?1, ?2)
	AND (state = 'pending' OR next_attempt_at <= ?3)
	AND checked_epoch = ?4
	AND NOT EXISTS (SELECT 1 FROM outbox p INDEXED BY outbox_open
		WHERE p.doc_id = outbox.doc_id AND (p.order_key, p.seq) < (outbox.order_key, outbox.seq) AND p.open = 1)
	AND (refs IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(outbox.refs) r JOIN outbox p INDEXED BY outbox_open
		ON p.doc_id = r.value AND p.open = 1 WHERE p.op = 'post'))
ORDER BY order_key, seq
LIMIT ?5`

// Claim takes the next batch inside tx and returns it; the caller commits tx before the first
// byte is sent (docs/DESIGN.md §6, Claiming). running is the running epoch. Never-sent entries are
// merged first (invariant 2), encoded with enc and stored with their mode, payload and hash;
// an entry that was ever sent keeps its stored bytes (invariant 1). Every claimed entry is set
// inflight with attempts + 1. A batch holds one epoch and one site id; an entry of another is
// left for a later batch without blocking others. An empty batch has no entries. With enc
// nil (BatchEncoder), the payload is built from the stored canonical JSON and the entries'
// Fields and Base are left nil (Entry.Decode fills them).
//
// Claiming a 500-entry batch costs about a millisecond per hundred entries here (BenchmarkClaim),
// whatever the number of done rows: the walk follows the outbox_ready index and each row is
// checked with probes of outbox_open.
func Claim(ctx context.Context, tx *sql.Tx, running string, now time.Time, budget Budget, enc Encoder) (*Batch, error) {
	return claim(ctx, tx, nil, running, now, budget, enc)
}

// Claim is the package-level Claim with the queue's prepared statements.
func (q *Queue) Claim(ctx context.Context, tx *sql.Tx, running string, now time.Time, budget Budget, enc Encoder) (*Batch, error) {
	return claim(ctx, tx, q, running, now, budget, enc)
}

// stmt returns q's prepared statement st bound to tx, or query prepared on tx when q is nil
// (closed with the transaction).
func (q *Queue) stmt(ctx context.Context, tx *sql.Tx, st *sql.Stmt, query string) (*sql.Stmt, error) {
	if q != nil && st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

func claim(ctx context.Context, tx *sql.Tx, q *Queue, running string, now time.Time, budget Budget, enc Encoder) (*Batch, error) {
	if running == "" {
		return nil, errors.New("outbox claim: no running epoch")
	}
	max := budget.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	ts := FormatTime(now)
	b := &Batch{Epoch: budget.Epoch, SiteID: budget.SiteID}
	bytes := 0
	var afterKey, afterSeq int64 = -1 << 62, 0
	if budget.Continue {
		afterKey, afterSeq = budget.AfterKey, budget.AfterSeq
	}
	page := max + 16
	full := false
	for !full {
		cands, err := candidates(ctx, tx, q, afterKey, afterSeq, ts, running, page)
		if err != nil {
			return nil, fmt.Errorf("outbox claim: %w", err)
		}
		for _, c := range cands {
			afterKey, afterSeq = c.e.OrderKey, c.e.Seq
			e := c.e
			if b.Epoch != "" && (e.Epoch != b.Epoch || e.SiteID != b.SiteID) {
				continue
			}
			if c.more && mergeable(e, running, true) {
				res, err := fold(ctx, tx, e.DocID, running, ts)
				if err != nil {
					return nil, fmt.Errorf("outbox claim: merge %s: %w", e.DocID, err)
				}
				b.Merged += res.merged
				switch {
				case res.cancelled:
					b.Cancelled = append(b.Cancelled, e.DocID)
					continue
				case res.noop != 0:
					b.Noop = append(b.Noop, res.noop)
					continue
				case res.into != nil:
					e = res.into
				}
			}
			if !e.Frozen() {
				if e.Keys, err = foldedKeys(ctx, tx, e); err != nil {
					return nil, fmt.Errorf("outbox claim: keys of %d: %w", e.Seq, err)
				}
				if err := encode(e, enc); err != nil {
					return nil, fmt.Errorf("outbox claim: encode %d: %w", e.Seq, err)
				}
			}
			if budget.MaxBytes > 0 && (len(b.Entries) > 0 || budget.Continue) && bytes+len(e.Payload) > budget.MaxBytes {
				full = true
				break
			}
			e.State = StateInflight
			e.Attempts++
			e.ClaimedAt = now
			e.UpdatedAt = now
			if b.Epoch == "" {
				b.Epoch, b.SiteID = e.Epoch, e.SiteID
			}
			b.Entries = append(b.Entries, e)
			bytes += len(e.Payload)
			if len(b.Entries) >= max {
				full = true
				break
			}
		}
		if len(cands) < page {
			break
		}
	}
	b.WalkKey, b.WalkSeq = afterKey, afterSeq
	if err := markInflight(ctx, tx, q, b.Entries, ts); err != nil {
		return nil, fmt.Errorf("outbox claim: %w", err)
	}
	return b, nil
}

// encode sets a never-sent entry's hash, mode and payload; enc nil is BatchEncoder, done
// from one encoding of the entry.
func encode(e *Entry, enc Encoder) error {
	pre, post, err := wireParts(e)
	if err != nil {
		return err
	}
	e.Hash = Hash(joinParts(pre, post, ""))
	if enc == nil {
		e.Mode, e.Payload = ModeBatch, joinParts(pre, post, e.Hash)
		return nil
	}
	if err := e.Decode(); err != nil {
		return err
	}
	e.Mode, e.Payload, err = enc(e, e.Hash)
	return err
}

// foldedKeys returns the peer and write key of every row e covers that had a key, in seq
// order, without e's own: the writes folded into e, whose keys the receiver remembers with
// e's result (docs/DESIGN.md §7, Write keys upstream).
func foldedKeys(ctx context.Context, tx *sql.Tx, e *Entry) ([]WriteKey, error) {
	if len(e.Covers) == 0 {
		return nil, nil
	}
	covers, err := json.Marshal(e.Covers)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT peer, write_key FROM outbox
		WHERE seq IN (SELECT value FROM json_each(?)) AND write_key != '' ORDER BY seq`, string(covers))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WriteKey
	seen := map[WriteKey]bool{{Key: e.Key, Peer: e.Peer}: true}
	for rows.Next() {
		var k WriteKey
		if err := rows.Scan(&k.Peer, &k.Key); err != nil {
			return nil, err
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

type candidate struct {
	e    *Entry
	more bool // its document has later open entries
}

func candidates(ctx context.Context, tx *sql.Tx, q *Queue, afterKey, afterSeq int64, now, running string, limit int) ([]candidate, error) {
	var prepared *sql.Stmt
	if q != nil {
		prepared = q.candidates
	}
	st, err := q.stmt(ctx, tx, prepared, candidateQuery)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, afterKey, afterSeq, now, running, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var err error
		c.e, err = scanClaim(rows, &c.more)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// claimColumns are the columns a claim needs, in the order scanClaim reads them.
const claimColumns = `seq, epoch, site_id, order_key, op, doc_id, portal_type, parent_id, fields, base,
	transition, comment, peer, write_key, state, attempts, mode, payload, hash, covers, refs`

// scanClaim reads a candidate row (claimColumns, then whether its document has later open
// entries).
func scanClaim(rows *sql.Rows, more *bool) (*Entry, error) {
	var (
		e            Entry
		covers, refs sql.NullString
	)
	err := rows.Scan(&e.Seq, &e.Epoch, &e.SiteID, &e.OrderKey, &e.Op, &e.DocID, &e.PortalType, &e.ParentID,
		&e.rawFields, &e.rawBase, &e.Transition, &e.Comment, &e.Peer, &e.Key, &e.State, &e.Attempts, &e.Mode,
		&e.Payload, &e.Hash, &covers, &refs, more)
	if err != nil {
		return nil, err
	}
	if err := e.decodeJSON(sql.NullString{}, sql.NullString{}, covers, refs); err != nil {
		return nil, err
	}
	return &e, nil
}

// The claim's updates: the first claim of an entry stores its mode, bytes and hash.
const (
	claimFirstSQL = `UPDATE outbox SET state = 'inflight', attempts = attempts + 1,
		next_attempt_at = NULL, mode = ?2, payload = ?3, hash = ?4, claimed_at = ?5, updated_at = ?5 WHERE seq = ?1`
	claimAgainSQL = `UPDATE outbox SET state = 'inflight', attempts = attempts + 1,
		next_attempt_at = NULL, claimed_at = ?2, updated_at = ?2 WHERE seq = ?1`
)

// markInflight records a claim: inflight, attempts + 1, and for a never-sent entry its mode,
// exact bytes and hash. One prepared statement serves the whole batch.
func markInflight(ctx context.Context, tx *sql.Tx, q *Queue, entries []*Entry, ts string) error {
	if len(entries) == 0 {
		return nil
	}
	var pf, pa *sql.Stmt
	if q != nil {
		pf, pa = q.claimFirst, q.claimAgain
	}
	first, err := q.stmt(ctx, tx, pf, claimFirstSQL)
	if err != nil {
		return err
	}
	again, err := q.stmt(ctx, tx, pa, claimAgainSQL)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Attempts == 1 { // first claim (Attempts was incremented already)
			_, err = first.ExecContext(ctx, e.Seq, e.Mode, e.Payload, e.Hash, ts)
		} else {
			_, err = again.ExecContext(ctx, e.Seq, ts)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// mergeable reports whether e may take part in a merge run (invariant 2): never sent, pending,
// of the running epoch (rows of an earlier epoch are never merged), and a put — or a post
// leading the run.
func mergeable(e *Entry, running string, first bool) bool {
	if e.Frozen() || e.State != StatePending || e.Epoch != running {
		return false
	}
	return e.Op == OpPut || first && e.Op == OpPost
}

type foldResult struct {
	into      *Entry // the entry the run was folded into (nil: no merge)
	merged    int
	cancelled bool
	noop      int64
}

// fold merges the run of never-sent entries at the head of docID's open entries (invariant 2)
// and returns the entry to send. A run is a never-sent post or put followed by never-sent puts;
// it folds into its last entry. A never-sent post whose run is followed by a never-sent remove
// cancels: every entry becomes merged with no merged_into.
func fold(ctx context.Context, tx *sql.Tx, docID, running, ts string) (foldResult, error) {
	open, err := OpenEntries(ctx, tx, docID)
	if err != nil || len(open) == 0 {
		return foldResult{}, err
	}
	run := []*Entry{open[0]}
	for _, e := range open[1:] {
		if !mergeable(e, running, false) {
			break
		}
		run = append(run, e)
	}
	if run[0].Op == OpPost && len(run) < len(open) {
		next := open[len(run)]
		if next.Op == OpRemove && next.State == StatePending && !next.Frozen() && next.Epoch == running {
			all := append(run, next)
			for _, e := range all {
				if _, err := tx.ExecContext(ctx, `UPDATE outbox SET state = 'merged', open = 0, merged_into = NULL,
					last_error = 'cancelled: created and removed before it was sent', updated_at = ? WHERE seq = ?`, ts, e.Seq); err != nil {
					return foldResult{}, err
				}
			}
			return foldResult{merged: len(all), cancelled: true}, nil
		}
	}
	if len(run) == 1 {
		return foldResult{into: run[0]}, nil
	}
	last := run[len(run)-1]
	m := Merge(run)
	if m.Op == OpPut && len(m.Fields) == 0 {
		// Every change returned to its base: nothing to send. The run is settled as done.
		m.State = StateDone
		m.Answer = json.RawMessage(`{"status":"noop"}`)
	}
	if err := saveMerged(ctx, tx, m, ts); err != nil {
		return foldResult{}, err
	}
	for _, e := range run[:len(run)-1] {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET state = 'merged', open = 0, merged_into = ?, updated_at = ? WHERE seq = ?`,
			last.Seq, ts, e.Seq); err != nil {
			return foldResult{}, err
		}
	}
	res := foldResult{merged: len(run) - 1}
	if m.State == StateDone {
		res.noop = m.Seq
	} else {
		res.into = m
	}
	return res, nil
}

// Merge folds run (a never-sent post or put followed by never-sent puts of one document, in
// order) into a copy of its last entry (invariant 2): each field takes its latest value and
// keeps the base of the earliest entry that changed it; a put's field whose merged value
// equals its base is dropped; a post leading the run makes the result a post (its fields
// cleared by a later put are left out); covers lists every folded seq and what each covered,
// sorted.
func Merge(run []*Entry) *Entry {
	last := *run[len(run)-1]
	m := &last
	fields := map[string]any{}
	base := map[string]any{}
	first := run[0]
	isPost := first.Op == OpPost
	var covers []int64
	for i, e := range run {
		for k, v := range e.Fields {
			if _, seen := fields[k]; !seen && !isPost {
				base[k] = e.Base[k] // the earliest entry that changed k
			}
			fields[k] = v
		}
		covers = append(covers, e.Covers...)
		if i < len(run)-1 {
			covers = append(covers, e.Seq)
		}
	}
	if isPost {
		m.Op = OpPost
		m.PortalType = first.PortalType
		m.ParentID = first.ParentID
		for k, v := range fields {
			if v == nil {
				delete(fields, k)
			}
		}
		base = nil
	} else {
		for k, v := range fields {
			if SameValue(v, base[k]) {
				delete(fields, k)
				delete(base, k)
			}
		}
	}
	sort.Slice(covers, func(i, j int) bool { return covers[i] < covers[j] })
	covers = dedupe(covers)
	m.Fields, m.Base, m.Covers = fields, base, covers
	m.Refs = LocalRefs(m)
	return m
}

func dedupe(s []int64) []int64 {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// saveMerged writes a merged entry's new content.
func saveMerged(ctx context.Context, tx *sql.Tx, m *Entry, ts string) error {
	fields, base, err := storedJSON(m)
	if err != nil {
		return err
	}
	covers, _ := jsonText(m.Covers)
	refs, _ := jsonText(m.Refs)
	answer, _ := jsonText(m.Answer)
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET op = ?, portal_type = ?, parent_id = ?, fields = ?, base = ?,
		covers = ?, refs = ?, state = ?, open = ?, answer = ?, updated_at = ? WHERE seq = ?`,
		m.Op, m.PortalType, m.ParentID, fields, base, covers, refs, m.State, !IsFinal(m.State), answer, ts, m.Seq)
	return err
}
