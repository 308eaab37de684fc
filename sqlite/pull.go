package sqlite

// Applying what the downlink pulls from ERP5 (docs/DESIGN.md §7, Downlink): one transaction per page,
// rows applied only when newer than the replica's upstream version, pending local edits kept
// (upstream_body still updated, for three-way merges), fields changed on both sides turned
// into conflict entries, and documents that left their scope removed.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
)

// PullRow is one document as ERP5 sent it to the downlink.
type PullRow struct {
	// ID is the document's relative URL.
	ID string
	// Version is ERP5's modification time of the document, RFC 3339 (the receiver's versions
	// carry microseconds).
	Version string
	// Coarse marks a version known to the second only (the stock search's modification_date):
	// a row in the same second as the replica's version then applies when its fields differ
	// from the replica's upstream_body (a later edit within that second), and is skipped
	// otherwise.
	Coarse bool
	// Fields are the document's values of the scope's fields, decoded with UseNumber; nil
	// stands for a property ERP5 does not have.
	Fields map[string]any
}

// PullPage is what one downlink exchange brought for one scope.
type PullPage struct {
	// Scope names the scope; PortalType is the portal type its documents carry (stored in the
	// body whatever the row says).
	Scope      string
	PortalType string
	// Fields are the fields the scope replicates, in the order a new body lists them; nil
	// means the rows' own keys (the scope replicates every property).
	Fields []string
	// Rows are the changed documents.
	Rows []PullRow
	// Gone are ids found to have left the scope (reconciliation): removed from the replica
	// unless they have pending local edits.
	Gone []string
	// AtLeast applies a row at the replica's own version too (not only newer ones): the
	// initial sync of a scope whose definition changed must refill every document.
	AtLeast bool
	// Cursor, when set, is stored in the same transaction.
	Cursor *SyncCursor
}

// PullReport is what ApplyPull did.
type PullReport struct {
	// Inserted and Updated count rows stored (new documents, newer versions); Skipped rows
	// that were not newer; Kept rows that met pending local edits (some fields kept).
	Inserted, Updated, Skipped, Kept int
	// Removed counts documents removed because they left their scope.
	Removed int
	// Conflicts are the outbox entries a pull turned into conflicts (or whose head-office
	// values it refreshed).
	Conflicts []int64
	// Changed are the ids whose replica document changed (body, removal, conflict state), in
	// the order met: what the `changed` notification carries.
	Changed []string
}

// ApplyPull applies pages in one transaction (docs/DESIGN.md §7, Downlink):
//
//   - a row applies only when newer than the replica's upstream_version (at it too with
//     AtLeast; same second and different fields for a Coarse row): the site's own edits,
//     whose version the uplink's settle already recorded, are skipped at exactly that version;
//   - a new document is stored with body and upstream_body from the row and portal_type from
//     the scope;
//   - a document without pending local edits takes the row's values of the scope's fields;
//     other fields of its body stay;
//   - a document with pending local edits (an outbox entry neither done, merged nor
//     superseded) keeps the locally edited fields; the others, and upstream_body, take the
//     row's values;
//   - a pending, never-sent put whose field ERP5 changed to a value other than both the
//     entry's base and its own value becomes a conflict entry holding both sides (the answer
//     the receiver gives for a conflict), unless an entry before it already blocks the
//     document; a conflict entry has its head-office values refreshed;
//   - Gone documents are removed, unless they have pending local edits.
//
// Cursors given with the pages are stored in the same transaction.
func (db *DB) ApplyPull(ctx context.Context, pages []PullPage) (*PullReport, error) {
	rep := &PullReport{}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		*rep = PullReport{}
		ap, err := newApplier(ctx, tx, db)
		if err != nil {
			return err
		}
		defer ap.close()
		for i := range pages {
			if err := ap.page(ctx, &pages[i], rep); err != nil {
				return fmt.Errorf("scope %s: %w", pages[i].Scope, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply pull: %w", err)
	}
	return rep, nil
}

// applier is one ApplyPull transaction.
type applier struct {
	db      *DB
	tx      *sql.Tx
	now     time.Time
	ts      string
	running string
	enc     encoder

	insert, update, updateKept, upstreamOnly, remove *sql.Stmt

	// inserts and updates are the page's new documents and plain updates, written by flush.
	inserts, updates [][]any
}

// flush writes the page's batched inserts and updates. The new documents' query-index rows
// are added in one sorted statement, as a bulk load does (doc_keys_deferred suspends the
// insert trigger inside this transaction only): visiting the index in order costs half as
// much as row by row.
func (ap *applier) flush(ctx context.Context, portalType string) error {
	if len(ap.updates) > 0 {
		list, err := json.Marshal(ap.updates)
		if err != nil {
			return err
		}
		if _, err := ap.update.ExecContext(ctx, nullString(portalType), ap.ts, string(list)); err != nil {
			return fmt.Errorf("update documents: %w", FormatError(err))
		}
	}
	if len(ap.inserts) == 0 {
		return nil
	}
	list, err := json.Marshal(ap.inserts)
	if err != nil {
		return err
	}
	var maxRowID int64
	if err := ap.tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM documents`).Scan(&maxRowID); err != nil {
		return fmt.Errorf("insert documents: %w", err)
	}
	if _, err := ap.tx.ExecContext(ctx, `INSERT OR IGNORE INTO doc_keys_deferred (x) VALUES (1)`); err != nil {
		return fmt.Errorf("insert documents: %w", err)
	}
	if _, err := ap.insert.ExecContext(ctx, nullString(portalType), ap.ts, string(list)); err != nil {
		return fmt.Errorf("insert documents: %w", FormatError(err))
	}
	if _, err := ap.tx.ExecContext(ctx, `INSERT OR IGNORE INTO doc_keys (key, value, doc)
		SELECT key, value, doc FROM doc_entries WHERE doc > ? ORDER BY key, value, doc`, maxRowID); err != nil {
		return fmt.Errorf("index documents: %w", FormatError(err))
	}
	if _, err := ap.tx.ExecContext(ctx, `DELETE FROM doc_keys_deferred`); err != nil {
		return fmt.Errorf("insert documents: %w", err)
	}
	return nil
}

func newApplier(ctx context.Context, tx *sql.Tx, db *DB) (*applier, error) {
	ap := &applier{db: db, tx: tx, now: db.Now()}
	ap.ts = FormatTime(ap.now)
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		// One statement per page: a statement inside a transaction journals every page it
		// touches first, so one statement for a thousand rows journals each page once. ?3 is
		// a JSON array of [id, body, version].
		{&ap.insert, `WITH r AS MATERIALIZED (SELECT value->>0 AS id, jsonb(value->>1) AS b, value->>2 AS v FROM json_each(?3))
			INSERT INTO documents (id, portal_type, body, upstream_body, upstream_version, deleted, updated_at)
			SELECT id, ?1, b, b, v, 0, ?2 FROM r`},
		// ?3 is a JSON array of [id, clear, patch, version]: clear (or null) removes the keys
		// whose new value is an object (a merge patch would merge it), patch sets the values.
		{&ap.update, `UPDATE documents SET portal_type = ?1,
			body = jsonb_patch(CASE WHEN u.c IS NULL THEN body ELSE jsonb_patch(body, u.c) END, u.p),
			upstream_body = jsonb_patch(CASE WHEN u.c IS NULL THEN coalesce(upstream_body, jsonb('{}'))
				ELSE jsonb_patch(coalesce(upstream_body, jsonb('{}')), u.c) END, u.p),
			upstream_version = u.v, deleted = 0, updated_at = ?2
			FROM (SELECT value->>0 AS id, value->>1 AS c, value->>2 AS p, value->>3 AS v FROM json_each(?3)) AS u
			WHERE documents.id = u.id`},
		// The body takes ?6/?7 (the fields no pending edit holds), upstream_body ?2/?3.
		{&ap.updateKept, `UPDATE documents SET portal_type = ?1,
			body = jsonb_patch(CASE WHEN ?6 IS NULL THEN body ELSE jsonb_patch(body, ?6) END, ?7),
			upstream_body = jsonb_patch(CASE WHEN ?2 IS NULL THEN coalesce(upstream_body, jsonb('{}'))
				ELSE jsonb_patch(coalesce(upstream_body, jsonb('{}')), ?2) END, ?3),
			upstream_version = ?4, updated_at = ?5 WHERE id = ?8`},
		{&ap.upstreamOnly, `UPDATE documents SET
			upstream_body = jsonb_patch(CASE WHEN ?1 IS NULL THEN coalesce(upstream_body, jsonb('{}'))
				ELSE jsonb_patch(coalesce(upstream_body, jsonb('{}')), ?1) END, ?2),
			upstream_version = ?3 WHERE id = ?4`},
		{&ap.remove, `DELETE FROM documents WHERE id = ?`},
	} {
		st, err := tx.PrepareContext(ctx, p.q)
		if err != nil {
			ap.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return ap, nil
}

func (ap *applier) close() {
	for _, st := range []*sql.Stmt{ap.insert, ap.update, ap.updateKept, ap.upstreamOnly, ap.remove} {
		if st != nil {
			st.Close()
		}
	}
}

// existing is a document's row as a page finds it.
type existing struct {
	portalType string
	body       string
	upBody     string // "" for NULL
	upVersion  string
	deleted    bool
}

// page applies one page.
func (ap *applier) page(ctx context.Context, p *PullPage, rep *PullReport) error {
	ctx = context.WithoutCancel(ctx) // a page is applied whole or not at all
	ids := make([]string, 0, len(p.Rows)+len(p.Gone))
	for _, r := range p.Rows {
		ids = append(ids, r.ID)
	}
	ids = append(ids, p.Gone...)
	rows, err := ap.existing(ctx, ids)
	if err != nil {
		return err
	}
	open, err := ap.openDocs(ctx, ids)
	if err != nil {
		return err
	}
	// A page names a document once: a repeated id keeps its last row (the latest).
	last := make(map[string]int, len(p.Rows))
	for i := range p.Rows {
		last[p.Rows[i].ID] = i
	}
	ap.inserts, ap.updates = ap.inserts[:0], ap.updates[:0]
	for i := range p.Rows {
		r := &p.Rows[i]
		if last[r.ID] != i {
			continue
		}
		if err := gateway.ValidateID(r.ID); err != nil {
			return fmt.Errorf("row %q: %w", r.ID, err)
		}
		if err := ap.row(ctx, p, r, rows, open, rep); err != nil {
			return fmt.Errorf("document %s: %w", r.ID, err)
		}
	}
	if err := ap.flush(ctx, p.PortalType); err != nil {
		return err
	}
	for _, id := range p.Gone {
		if _, ok := rows[id]; !ok || open[id] {
			continue
		}
		if _, err := ap.remove.ExecContext(ctx, id); err != nil {
			return fmt.Errorf("remove %s: %w", id, FormatError(err))
		}
		delete(rows, id)
		rep.Removed++
		rep.Changed = append(rep.Changed, id)
	}
	if p.Cursor != nil {
		c := *p.Cursor
		if c.Scope == "" {
			c.Scope = p.Scope
		}
		if err := setCursorTx(ctx, ap.tx, c, ap.ts); err != nil {
			return err
		}
	}
	return nil
}

// existing reads the rows of ids that the replica holds.
func (ap *applier) existing(ctx context.Context, ids []string) (map[string]*existing, error) {
	out := make(map[string]*existing, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(ids)
	rows, err := ap.tx.QueryContext(ctx, `SELECT id, coalesce(portal_type, ''), json(body),
		coalesce(json(upstream_body), ''), coalesce(upstream_version, ''), deleted
		FROM documents WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		e := &existing{}
		if err := rows.Scan(&id, &e.portalType, &e.body, &e.upBody, &e.upVersion, &e.deleted); err != nil {
			return nil, fmt.Errorf("read documents: %w", err)
		}
		out[id] = e
	}
	return out, rows.Err()
}

// openDocs returns which of ids have an open outbox entry (pending local edits).
func (ap *applier) openDocs(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(ids)
	rows, err := ap.tx.QueryContext(ctx, `SELECT DISTINCT doc_id FROM outbox INDEXED BY outbox_open
		WHERE open = 1 AND doc_id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// row applies one row.
func (ap *applier) row(ctx context.Context, p *PullPage, r *PullRow, rows map[string]*existing, open map[string]bool, rep *PullReport) error {
	keys := p.Fields
	if keys == nil {
		keys = make([]string, 0, len(r.Fields))
		for k := range r.Fields {
			if k != "portal_type" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
	}
	ex, found := rows[r.ID]
	if !found {
		body, err := ap.enc.body(p.PortalType, keys, r.Fields)
		if err != nil {
			return err
		}
		ap.inserts = append(ap.inserts, []any{r.ID, string(body), nullString(r.Version)})
		rows[r.ID] = &existing{portalType: p.PortalType, body: string(body), upBody: string(body), upVersion: r.Version}
		rep.Inserted++
		rep.Changed = append(rep.Changed, r.ID)
		return nil
	}
	switch c := compareVersions(r.Version, r.Coarse, ex.upVersion); {
	case c < 0, c == 0 && !r.Coarse && !p.AtLeast:
		rep.Skipped++
		return nil
	case c == 0 && r.Coarse:
		up, err := decodeOrEmpty(ex.upBody)
		if err != nil {
			return err
		}
		if ex.portalType == p.PortalType && sameFields(keys, up, r.Fields) {
			rep.Skipped++
			return nil
		}
	}
	clear, patch, err := ap.enc.patch(p.PortalType, keys, r.Fields, nil)
	if err != nil {
		return err
	}
	version := r.Version
	if version == "" || compareVersions(r.Version, false, ex.upVersion) < 0 {
		// A coarse row applied in the replica's second must not move the version back.
		version = ex.upVersion
	}
	if ex.deleted && !open[r.ID] {
		// A tombstone whose remove is settled: the document is at ERP5 after all.
		ex.deleted = false
	}
	switch {
	case ex.deleted:
		// A removal waits for ERP5: the tombstone stays, ERP5's state is recorded.
		if _, err := ap.upstreamOnly.ExecContext(ctx, clear, string(patch), nullString(version), r.ID); err != nil {
			return FormatError(err)
		}
		rep.Kept++
	case !open[r.ID]:
		old, err := decodeOrEmpty(ex.body)
		if err != nil {
			return err
		}
		ap.updates = append(ap.updates, []any{r.ID, clear, string(patch), nullString(version)})
		rep.Updated++
		if ex.portalType != p.PortalType || old["portal_type"] != p.PortalType || !sameFields(keys, old, r.Fields) {
			rep.Changed = append(rep.Changed, r.ID)
		}
	default:
		changed, err := ap.kept(ctx, p, r, ex, keys, clear, patch, version, rep)
		if err != nil {
			return err
		}
		rep.Kept++
		if changed {
			rep.Changed = append(rep.Changed, r.ID)
		}
	}
	ex.upVersion = version
	return nil
}

// kept applies a row to a document with pending local edits: the fields its open entries
// change keep their local values; the others and upstream_body take the row's. It reports
// whether the document changed for a reader (a field, or its sync state).
func (ap *applier) kept(ctx context.Context, p *PullPage, r *PullRow, ex *existing, keys []string,
	clear any, patch []byte, version string, rep *PullReport) (bool, error) {
	entries, err := outbox.OpenEntries(ctx, ap.tx, r.ID)
	if err != nil {
		return false, err
	}
	held := map[string]bool{}
	for _, e := range entries {
		for k := range e.Fields {
			held[k] = true
		}
	}
	old, err := decodeOrEmpty(ex.body)
	if err != nil {
		return false, err
	}
	bodyClear, bodyPatch, err := ap.enc.patch(p.PortalType, keys, r.Fields, held)
	if err != nil {
		return false, err
	}
	if _, err := ap.updateKept.ExecContext(ctx, nullString(p.PortalType), clear, string(patch), nullString(version),
		ap.ts, bodyClear, string(bodyPatch), r.ID); err != nil {
		return false, FormatError(err)
	}
	changed := false
	for _, k := range keys {
		if !held[k] && !equalJSON(old[k], r.Fields[k]) {
			changed = true
			break
		}
	}
	inScope := make(map[string]bool, len(keys))
	for _, k := range keys {
		inScope[k] = true
	}
	e, current := conflictOf(entries, r.Fields, inScope)
	if e == nil {
		return changed, nil
	}
	cur, err := json.Marshal(current)
	if err != nil {
		return false, err
	}
	if ap.running == "" {
		if ap.running, err = epochTx(ctx, ap.tx, ap.now); err != nil {
			return false, err
		}
	}
	if _, err := outbox.Settle(ctx, ap.tx, ap.running, ap.now, []outbox.Result{{Seq: e.Seq,
		Status: outbox.ResultConflict, Current: cur, Version: r.Version}}); err != nil {
		return false, err
	}
	rep.Conflicts = append(rep.Conflicts, e.Seq)
	return true, nil
}

// conflictOf finds the entry a pulled row puts in conflict, and ERP5's values of its
// conflicting fields. Entries are walked in order: sent ones are skipped (ERP5 itself judges
// them against their base, and may have applied them); a dead, held or conflict entry blocks
// the document's later entries, so the walk stops there, except that a conflict entry whose
// head-office values changed is refreshed. The first never-sent pending put with a field
// whose new ERP5 value differs from both the entry's base and its own value (null, "" and
// absent equal, as at the receiver) is the one. Later entries wait behind it and are judged
// once it is resolved.
func conflictOf(entries []*outbox.Entry, current map[string]any, inScope map[string]bool) (*outbox.Entry, map[string]any) {
	conflicting := func(e *outbox.Entry) map[string]any {
		var out map[string]any
		for k, local := range e.Fields {
			if !inScope[k] {
				continue
			}
			v := current[k]
			if !outbox.SameValue(v, e.Base[k]) && !outbox.SameValue(v, local) {
				if out == nil {
					out = map[string]any{}
				}
				out[k] = v
			}
		}
		return out
	}
	for _, e := range entries {
		switch e.State {
		case outbox.StateConflict:
			cur := conflicting(e)
			if len(cur) == 0 {
				return nil, nil
			}
			_, stored, _ := outbox.ConflictValues(e)
			for k, v := range cur {
				if sv, ok := stored[k]; !ok || !equalJSON(sv, v) {
					return e, cur
				}
			}
			return nil, nil
		case outbox.StateDead, outbox.StateHeld:
			return nil, nil
		}
		if e.Frozen() || e.State != outbox.StatePending || e.Op != outbox.OpPut {
			continue
		}
		if cur := conflicting(e); len(cur) > 0 {
			return e, cur
		}
	}
	return nil, nil
}

// compareVersions compares a pulled row's version with the replica's: -1 older, 0 the same,
// 1 newer. A coarse version is compared to the second. A replica without a version is older
// than any row; versions that do not parse as RFC 3339 compare as text.
func compareVersions(row string, coarse bool, replica string) int {
	if replica == "" {
		return 1
	}
	if row == "" {
		return -1
	}
	a, errA := time.Parse(time.RFC3339Nano, row)
	b, errB := time.Parse(time.RFC3339Nano, replica)
	if errA != nil || errB != nil {
		return strings.Compare(row, replica)
	}
	if coarse {
		a, b = a.Truncate(time.Second), b.Truncate(time.Second)
	}
	return a.Compare(b)
}

// sameFields reports whether doc holds the row's values of keys (absent and null equal).
func sameFields(keys []string, doc, fields map[string]any) bool {
	for _, k := range keys {
		if !equalJSON(doc[k], fields[k]) {
			return false
		}
	}
	return true
}

// equalJSON compares two decoded JSON values by their encodings (map keys sorted); nil is
// JSON null, which stands for an absent property.
func equalJSON(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if sa, ok := a.(string); ok {
		sb, ok := b.(string)
		return ok && sa == sb
	}
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// decodeOrEmpty decodes a stored body; "" (NULL) gives an empty map.
func decodeOrEmpty(s string) (map[string]any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	return outbox.DecodeObject([]byte(s))
}

// encoder writes bodies and merge patches, reusing its buffer.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func (e *encoder) value(v any) error {
	if e.enc == nil {
		e.enc = json.NewEncoder(&e.buf)
		e.enc.SetEscapeHTML(false)
	}
	if err := e.enc.Encode(v); err != nil {
		return err
	}
	e.buf.Truncate(e.buf.Len() - 1) // Encode's newline
	return nil
}

// body returns a new document's JSON: portal_type first, then keys in order; absent and null
// values are left out.
func (e *encoder) body(portalType string, keys []string, fields map[string]any) ([]byte, error) {
	e.buf.Reset()
	e.buf.WriteByte('{')
	n := 0
	if portalType != "" {
		e.buf.WriteString(`"portal_type":`)
		if err := e.value(portalType); err != nil {
			return nil, err
		}
		n++
	}
	for _, k := range keys {
		v := fields[k]
		if v == nil || k == "portal_type" {
			continue
		}
		if n > 0 {
			e.buf.WriteByte(',')
		}
		if err := e.value(k); err != nil {
			return nil, err
		}
		e.buf.WriteByte(':')
		if err := e.value(v); err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		n++
	}
	e.buf.WriteByte('}')
	return bytes.Clone(e.buf.Bytes()), nil
}

// patch returns the merge patch that sets keys to the row's values (null removes an absent
// one) and portal_type, skipping the keys in skip; and, when a value is an object (which a
// merge patch would merge into the old one), a first patch that clears those keys (nil when
// there is none).
func (e *encoder) patch(portalType string, keys []string, fields map[string]any, skip map[string]bool) (any, []byte, error) {
	e.buf.Reset()
	e.buf.WriteByte('{')
	var objects []string
	n := 0
	if portalType != "" {
		e.buf.WriteString(`"portal_type":`)
		if err := e.value(portalType); err != nil {
			return nil, nil, err
		}
		n++
	}
	for _, k := range keys {
		if k == "portal_type" || skip[k] {
			continue
		}
		v := fields[k]
		if _, ok := v.(map[string]any); ok {
			objects = append(objects, k)
		}
		if n > 0 {
			e.buf.WriteByte(',')
		}
		if err := e.value(k); err != nil {
			return nil, nil, err
		}
		e.buf.WriteByte(':')
		if err := e.value(v); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", k, err)
		}
		n++
	}
	e.buf.WriteByte('}')
	patch := bytes.Clone(e.buf.Bytes())
	if len(objects) == 0 {
		return nil, patch, nil
	}
	clear := map[string]any{}
	for _, k := range objects {
		clear[k] = nil
	}
	b, err := json.Marshal(clear)
	if err != nil {
		return nil, nil, err
	}
	return string(b), patch, nil
}

// ReplicaIDs returns the ids of the replica's documents of portalType that ERP5 knows (local
// ids left out), removed ones included: what a reconciliation compares with the ids ERP5 has
// in the type's scopes.
func (db *DB) ReplicaIDs(ctx context.Context, portalType string) ([]string, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id FROM documents WHERE portal_type = ? ORDER BY id`, portalType)
	if err != nil {
		return nil, fmt.Errorf("replica ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("replica ids: %w", err)
		}
		if !gateway.IsLocalID(id) {
			out = append(out, id)
		}
	}
	return out, rows.Err()
}

// CacheDocument stores a document fetched from ERP5 outside every scope (a get the replica
// could not answer, docs/DESIGN.md §4) unless the replica has gained it meanwhile, and returns the
// replica's document. Its body and upstream_body are fields plus portal_type; its version is
// unknown, so any pulled row of it applies.
func (db *DB) CacheDocument(ctx context.Context, id, portalType string, fields map[string]any) (*gateway.Document, error) {
	if err := gateway.ValidateID(id); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if k != "portal_type" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var enc encoder
	body, err := enc.body(portalType, keys, fields)
	if err != nil {
		return nil, fmt.Errorf("cache document %s: %w", id, err)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO documents (id, portal_type, body, upstream_body, deleted, updated_at)
			VALUES (?1, ?2, jsonb(?3), jsonb(?3), 0, ?4) ON CONFLICT (id) DO NOTHING`,
			id, nullString(portalType), string(body), db.NowText())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cache document %s: %w", id, FormatError(err))
	}
	return db.GetDocument(ctx, id)
}
