package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
)

// Write operations.
const (
	OpPost   = outbox.OpPost
	OpPut    = outbox.OpPut
	OpRemove = outbox.OpRemove
	OpAction = outbox.OpAction
)

// OperatorPeer is the peer name of writes made by the operator's command line. Peer names
// cannot contain ":", so it never meets a paired peer's write keys.
const OperatorPeer = ":operator"

// MaxKeyLength is the longest write key accepted, in bytes.
const MaxKeyLength = 200

// WriteKeyLifetime is how long a write key is remembered at least (docs/DESIGN.md §3).
const WriteKeyLifetime = 7 * 24 * time.Hour

// Write is one write as every path makes it (the data channel, `gateway docs`, later the
// downlink's conflict path). Doc values must be decoded with UseNumber (DecodeObject) so
// that number literals survive.
type Write struct {
	// Op is "post", "put", "remove" or "action".
	Op string
	// ID is the target of a put, remove or action; an old local id resolves through id_map.
	ID string
	// PortalType is a post's portal type when Doc has no portal_type.
	PortalType string
	// Doc is a post's document, or a put's JSON merge patch (absent fields unchanged, null
	// clears one; portal_type cannot change).
	Doc map[string]any
	// Body, when set, is Doc's exact JSON text; a post stores it as written (key order kept).
	Body json.RawMessage
	// Transition and Comment are an action's.
	Transition string
	Comment    string
	// Peer and Key are the write key (optional): a repeat of (Peer, Key) answers the first
	// response; the same key with another request is ECONFLICT key_reused.
	Peer string
	Key  string
	// Authorize, when set, is called inside the write's transaction with the row read there:
	// old is the stored document (nil for a post), doc the document after the write (nil for
	// a remove), patch the put's patch or the post's document. Its error is returned as is
	// and the write is not stored. Operator writes leave it nil.
	Authorize func(old, doc, patch map[string]any) error
	// Visible, when set, is called for a put, remove or action with the stored document as
	// soon as it is read, before anything else is checked; its error (the caller's "not
	// found") is returned as is, so that nothing about a document the caller may not read
	// shows in an answer (docs/DESIGN.md §3, Errors).
	Visible func(old map[string]any) error
	// CheckParent, when set, checks the parent_relative_url a post names, inside the write's
	// transaction (docs/DESIGN.md §3). It is called with the parent's id (id_map followed),
	// the new document's portal type and the parent's stored body: nil for a top-level id (a
	// module) and for a document the replica lacks (a local id of a pending post is there).
	// Its error is returned as is. A post without parent_relative_url goes to its type's
	// module and is not checked.
	CheckParent func(parent, portalType string, parentDoc map[string]any) error
}

// WriteResult is the answer to a write.
type WriteResult struct {
	// ID is the document's id: a post's new local id; for the others the id the target
	// resolved to.
	ID string `json:"id"`
	// Seq is the outbox entry the write queued.
	Seq int64 `json:"seq"`
	// Replayed is true when a repeated write key answered the first response.
	Replayed bool `json:"-"`
}

// DecodeObject decodes a JSON object with UseNumber, as Write wants its Doc.
func DecodeObject(b []byte) (map[string]any, error) { return outbox.DecodeObject(b) }

// Write applies w: in one transaction the policy closure on the row read inside it, the
// replica, the outbox entry and the write key; then a durable commit, then the answer
// (docs/DESIGN.md §5). Concurrent writes share one commit (group commit): each runs in its own
// savepoint, so an error answers only its writer, and every writer is answered after the
// commit is durable. Errors: EINVALID, ENOTFOUND (a target the replica lacks), ECONFLICT
// key_reused, ENOSPACE (disk full: nothing stored), the closure's own, or an internal error.
func (db *DB) Write(ctx context.Context, w Write) (WriteResult, error) {
	if err := w.normalise(); err != nil {
		return WriteResult{}, err
	}
	if db.writer == nil {
		return WriteResult{}, errors.New("write: database is closed")
	}
	if err := db.heldErr(); err != nil {
		return WriteResult{}, err
	}
	db.foreground.Add(1)
	defer db.foreground.Add(-1)
	req := &writeReq{ctx: ctx, w: w, done: make(chan struct{})}
	q := &db.writes
	q.mu.Lock()
	q.queue = append(q.queue, req)
	if !q.running {
		q.running = true
		if q.arrived == nil {
			q.arrived = make(chan struct{}, 1)
		}
		go db.runWrites()
	}
	arrived := q.arrived
	q.mu.Unlock()
	select {
	case arrived <- struct{}{}:
	default:
	}
	select {
	case <-req.done:
		return req.res, req.err
	case <-ctx.Done():
		return WriteResult{}, ctx.Err()
	}
}

// DefaultGroupMax is the most writes one group commit takes. Groups form naturally: writes
// that arrive while a commit is being made wait for the next one, so a lone writer pays no
// added latency and many writers share one fsync.
const DefaultGroupMax = 256

// GroupWindow bounds how long a group waits to grow back to the size of the previous one.
// Writers answered by one commit come back with their next write a few microseconds later;
// waiting for them (never for a lone writer, whose previous group had one write) halves the
// fsyncs of a steady stream of concurrent writers.
const GroupWindow = 500 * time.Microsecond

// writeQueue is the group committer's state.
type writeQueue struct {
	mu      sync.Mutex
	queue   []*writeReq
	running bool
	// max is the most writes per transaction; 0 means DefaultGroupMax (1 makes one transaction
	// per write, for comparison in benchmarks).
	max int
	// stmts are the write path's statements, prepared once (parsing a statement costs more
	// than running it, and the documents table's triggers are compiled with it).
	stmts *writeStmts
	// arrived is signalled when a write is queued; last is the previous group's size.
	arrived chan struct{}
	last    int
	// stats
	groups, writes int64
}

// writeStmts are the prepared statements of the write path.
type writeStmts struct {
	queue                               *outbox.Queue
	savepoint, release, rollbackTo      *sql.Stmt
	keyGet, keyPut                      *sql.Stmt
	docGet, patch, docUpdate, docInsert *sql.Stmt
	docRemove                           *sql.Stmt
}

// prepareWrites prepares the write path's statements once; it runs outside any transaction
// (the writer pool has one connection).
func (db *DB) prepareWrites(ctx context.Context) (*writeStmts, error) {
	q := &db.writes
	q.mu.Lock()
	st := q.stmts
	q.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st = &writeStmts{}
	var err error
	if st.queue, err = outbox.Prepare(ctx, db.writer); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&st.savepoint, `SAVEPOINT write`},
		{&st.release, `RELEASE write`},
		{&st.rollbackTo, `ROLLBACK TO write`},
		{&st.keyGet, `SELECT request_hash, response FROM write_keys WHERE peer = ? AND key = ?`},
		{&st.keyPut, `INSERT INTO write_keys (peer, key, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?)`},
		{&st.docGet, `SELECT portal_type, json(body) FROM documents WHERE id = ? AND deleted = 0`},
		{&st.patch, `SELECT json_patch(?, ?)`},
		{&st.docUpdate, `UPDATE documents SET body = jsonb(?), updated_at = ? WHERE id = ?`},
		{&st.docInsert, `INSERT INTO documents (id, portal_type, body, deleted, updated_at) VALUES (?, ?, jsonb(?), 0, ?)`},
		{&st.docRemove, `UPDATE documents SET deleted = 1, updated_at = ? WHERE id = ?`},
	} {
		if *p.dst, err = db.writer.PrepareContext(ctx, p.query); err != nil {
			return nil, fmt.Errorf("prepare write path: %w", err)
		}
	}
	q.mu.Lock()
	if q.stmts == nil {
		q.stmts = st
	}
	st = q.stmts
	q.mu.Unlock()
	return st, nil
}

type writeReq struct {
	ctx  context.Context
	w    Write
	res  WriteResult
	err  error
	done chan struct{}
}

// GroupStats returns how many commits Write made and how many writes they carried.
func (db *DB) GroupStats() (commits, writes int64) {
	db.writes.mu.Lock()
	defer db.writes.mu.Unlock()
	return db.writes.groups, db.writes.writes
}

// runWrites commits queued writes, group by group, until the queue is empty.
func (db *DB) runWrites() {
	q := &db.writes
	timer := time.NewTimer(GroupWindow)
	defer timer.Stop()
	for {
		q.mu.Lock()
		max := q.max
		if max <= 0 {
			max = DefaultGroupMax
		}
		if want := min(q.last, max); len(q.queue) > 0 && len(q.queue) < want {
			q.mu.Unlock()
			timer.Reset(GroupWindow)
		wait:
			for {
				select {
				case <-q.arrived:
					q.mu.Lock()
					n := len(q.queue)
					q.mu.Unlock()
					if n >= want {
						break wait
					}
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
			q.mu.Lock()
		}
		n := len(q.queue)
		if n > max {
			n = max
		}
		if n == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		group := q.queue[:n:n]
		q.queue = append([]*writeReq(nil), q.queue[n:]...)
		q.last = n
		q.groups++
		q.writes += int64(n)
		q.mu.Unlock()
		db.commitGroup(group)
	}
}

// fatalError marks an error that leaves the group's transaction unusable (an I/O error, a full
// disk): the whole group is rolled back and every writer in it gets the error.
type fatalError struct{ err error }

// Error implements error.
func (e *fatalError) Error() string { return e.err.Error() }

// Unwrap returns the database error.
func (e *fatalError) Unwrap() error { return e.err }

// fatal wraps a database error met inside a write.
func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{FormatError(err)}
}

// commitGroup runs the group in one transaction, each write in its own savepoint, commits
// once and answers every writer.
func (db *DB) commitGroup(group []*writeReq) {
	ctx := context.Background()
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	answerAll := func(err error) {
		for _, r := range live {
			if err != nil {
				r.res, r.err = WriteResult{}, err
			}
			close(r.done)
		}
	}
	stmts, err := db.prepareWrites(ctx)
	if err != nil {
		answerAll(err)
		return
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		st := &writeState{db: db, tx: tx, now: db.Now(), stmts: stmts}
		for _, r := range live {
			if _, err := st.stmt(ctx, stmts.savepoint).ExecContext(ctx); err != nil {
				return fatal(err)
			}
			res, err := st.apply(ctx, r.w)
			var fe *fatalError
			if errors.As(err, &fe) {
				return fe.err
			}
			if err != nil {
				if _, rerr := st.stmt(ctx, stmts.rollbackTo).ExecContext(ctx); rerr != nil {
					return FormatError(rerr)
				}
				r.err = err
			} else {
				r.res = res
			}
			if _, err := st.stmt(ctx, stmts.release).ExecContext(ctx); err != nil {
				return FormatError(err)
			}
		}
		return nil
	})
	answerAll(err)
}

// writeTx runs fn in one IMMEDIATE transaction on the writer connection and commits it. When
// COMMIT itself fails (a full disk), the transaction is rolled back explicitly so that the
// connection is left clean for the next one.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.writer == nil {
		return errors.New("database is closed")
	}
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return FormatError(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return FormatError(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		return FormatError(err)
	}
	return nil
}

// normalise checks what needs no database and fills Doc from Body.
func (w *Write) normalise() error {
	switch w.Op {
	case OpPost, OpPut, OpRemove, OpAction:
	default:
		return gateway.Errorf(gateway.EINVALID, "unknown write operation %q", w.Op)
	}
	if len(w.Key) > MaxKeyLength {
		return gateway.Errorf(gateway.EINVALID, "write key is longer than %d bytes", MaxKeyLength)
	}
	if len(w.Body) > 0 {
		if _, err := ParseBody(w.Body); err != nil {
			return err
		}
		m, err := outbox.DecodeObject(w.Body)
		if err != nil {
			return gateway.Errorf(gateway.EINVALID, "the document is not a JSON object: %v", err)
		}
		w.Doc = m
	}
	if valueDepth(w.Doc) > MaxDocDepth {
		return gateway.Errorf(gateway.EINVALID, "the document nests values more than %d levels deep", MaxDocDepth)
	}
	switch w.Op {
	case OpPost:
		if w.Doc == nil {
			return gateway.Errorf(gateway.EINVALID, "a post needs a document")
		}
	case OpPut:
		if w.Doc == nil {
			return gateway.Errorf(gateway.EINVALID, "a put needs a document (a JSON merge patch)")
		}
		fallthrough
	default:
		if err := gateway.ValidateID(w.ID); err != nil {
			return err
		}
	}
	if w.Op == OpAction && w.Transition == "" {
		return gateway.Errorf(gateway.EINVALID, "an action needs a transition")
	}
	return nil
}

// MaxDocDepth bounds how deeply a document's values nest (objects and arrays). ERP5
// properties are scalars and lists. SQLite's JSON functions refuse 1000 levels (the write
// would fail as an internal error, not as an invalid document) and Python's json module
// about as many (a write acknowledged here that ERP5 could never take).
const MaxDocDepth = 64

// valueDepth returns how deeply v nests objects and arrays (a scalar is 0).
func valueDepth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, valueDepth(e))
		}
	case []any:
		for _, e := range v {
			d = max(d, valueDepth(e))
		}
	default:
		return 0
	}
	return d + 1
}

// requestHash identifies a write's request for its write key: the SHA-256 of the canonical
// JSON of what the client asked (operation, target as given, portal type, document or patch,
// transition, comment).
func (w *Write) requestHash() (string, error) {
	b, err := canonicalJSON(map[string]any{"op": w.Op, "id": w.ID, "portal_type": w.PortalType,
		"doc": w.Doc, "transition": w.Transition, "comment": w.Comment})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalJSON encodes v compactly with object keys sorted and number literals kept.
func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeState is one group transaction.
type writeState struct {
	db    *DB
	tx    *sql.Tx
	now   time.Time
	epoch string
	stmts *writeStmts
}

// stmt returns a prepared statement bound to the group's transaction.
func (st *writeState) stmt(ctx context.Context, s *sql.Stmt) *sql.Stmt {
	return st.tx.StmtContext(ctx, s)
}

// Epoch returns the epoch new rows take: the latest one made, or a new one when none exists.
func (st *writeState) Epoch(ctx context.Context) (string, error) {
	if st.epoch != "" {
		return st.epoch, nil
	}
	e, err := epochTx(ctx, st.tx, st.now)
	if err != nil {
		return "", err
	}
	st.epoch = e
	return e, nil
}

// apply runs one write inside the group's transaction (its savepoint is open).
func (st *writeState) apply(ctx context.Context, w Write) (WriteResult, error) {
	var reqHash string
	if w.Key != "" {
		var err error
		if reqHash, err = w.requestHash(); err != nil {
			return WriteResult{}, gateway.Errorf(gateway.EINVALID, "the document cannot be encoded: %v", err)
		}
		var stored, resp string
		err = st.stmt(ctx, st.stmts.keyGet).QueryRowContext(ctx, w.Peer, w.Key).Scan(&stored, &resp)
		switch {
		case err == nil:
			if stored != reqHash {
				return WriteResult{}, gateway.ReasonErrorf(gateway.ECONFLICT, "key_reused",
					"write key %q was already used for another request", w.Key)
			}
			var res WriteResult
			if err := json.Unmarshal([]byte(resp), &res); err != nil {
				return WriteResult{}, fatal(fmt.Errorf("write key %q: stored response: %w", w.Key, err))
			}
			res.Replayed = true
			return res, nil
		case !errors.Is(err, sql.ErrNoRows):
			return WriteResult{}, fatal(err)
		}
	}
	var res WriteResult
	var err error
	switch w.Op {
	case OpPost:
		res, err = st.post(ctx, w)
	case OpPut:
		res, err = st.put(ctx, w)
	default:
		res, err = st.removeOrAction(ctx, w)
	}
	if err != nil {
		return WriteResult{}, err
	}
	if w.Key != "" {
		resp, _ := json.Marshal(res)
		if _, err := st.stmt(ctx, st.stmts.keyPut).ExecContext(ctx, w.Peer, w.Key, reqHash, string(resp), FormatTime(st.now)); err != nil {
			return WriteResult{}, fatal(err)
		}
	}
	return res, nil
}

// ResolveID returns the id that id stands for now: the ERP5 id of a local id ERP5 has
// numbered (old local ids keep working, invariant 4), else id itself.
func (db *DB) ResolveID(ctx context.Context, id string) (string, error) {
	return resolveID(ctx, db.reader, id)
}

// mapValue maps a field value through id_map: a string that is a numbered local id, or such
// strings inside a top-level list (invariant 4).
func mapValue(ctx context.Context, tx *sql.Tx, v any) (any, bool, error) {
	switch x := v.(type) {
	case string:
		if !outbox.IsLocalID(x) && !strings.Contains(x, "local-") {
			return v, false, nil
		}
		to, err := resolveID(ctx, tx, x)
		if err != nil {
			return nil, false, err
		}
		return to, to != x, nil
	case []any:
		var out []any
		for i, el := range x {
			s, ok := el.(string)
			if !ok || !strings.Contains(s, "local-") {
				continue
			}
			to, err := resolveID(ctx, tx, s)
			if err != nil {
				return nil, false, err
			}
			if to != s {
				if out == nil {
					out = append([]any(nil), x...)
				}
				out[i] = to
			}
		}
		if out != nil {
			return out, true, nil
		}
	}
	return v, false, nil
}

// mapDoc maps every top-level value of doc through id_map and returns the changed keys' new
// values (nil when nothing changed); doc itself is updated.
func mapDoc(ctx context.Context, tx *sql.Tx, doc map[string]any) (map[string]any, error) {
	var changed map[string]any
	for k, v := range doc {
		nv, ok, err := mapValue(ctx, tx, v)
		if err != nil {
			return nil, err
		}
		if ok {
			if changed == nil {
				changed = map[string]any{}
			}
			changed[k] = nv
			doc[k] = nv
		}
	}
	return changed, nil
}

// post stores a new document under a local id and queues its post.
func (st *writeState) post(ctx context.Context, w Write) (WriteResult, error) {
	tx := st.tx
	doc := cloneMap(w.Doc)
	pt, err := optString(doc, "portal_type")
	if err != nil {
		return WriteResult{}, err
	}
	switch {
	case pt == "":
		pt = w.PortalType
	case w.PortalType != "" && w.PortalType != pt:
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "portal_type %q differs from the document's %q", w.PortalType, pt)
	}
	if pt == "" {
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "a post needs a portal_type")
	}
	parent, err := optString(doc, "parent_relative_url")
	if err != nil {
		return WriteResult{}, err
	}
	if parent == "" {
		modules := st.db.Modules
		if modules == nil {
			modules = gateway.DefaultModules()
		}
		parent = gateway.ModuleOf(pt, modules)
	}
	if err := gateway.ValidateID(parent); err != nil {
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "parent_relative_url: %s", gateway.ErrorMessage(err))
	}
	changed, err := mapDoc(ctx, tx, doc)
	if err != nil {
		return WriteResult{}, fatal(err)
	}
	if p, ok := doc["parent_relative_url"].(string); ok {
		parent = p
	}
	id := parent + "/local-" + ulid.Make().String()
	if err := gateway.ValidateID(id); err != nil {
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "the new document's id would be too long: %s", gateway.ErrorMessage(err))
	}
	if w.Authorize != nil {
		if err := w.Authorize(nil, doc, doc); err != nil {
			return WriteResult{}, err
		}
	}
	if _, given := doc["parent_relative_url"].(string); given && w.CheckParent != nil {
		if err := st.checkParent(ctx, w, parent, pt); err != nil {
			return WriteResult{}, err
		}
	}
	body, err := encodeDoc(w.Body, doc, changed)
	if err != nil {
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "the document cannot be encoded: %v", err)
	}
	ts := FormatTime(st.now)
	if _, err := st.stmt(ctx, st.stmts.docInsert).ExecContext(ctx, id, pt, string(body), ts); err != nil {
		return WriteResult{}, fatal(err)
	}
	fields := cloneMap(doc)
	delete(fields, "portal_type")
	delete(fields, "parent_relative_url")
	seq, err := st.enqueue(ctx, &outbox.Entry{Op: OpPost, DocID: id, PortalType: pt, ParentID: parent,
		Fields: fields, Peer: w.Peer, Key: w.Key})
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{ID: id, Seq: seq}, nil
}

// checkParent loads a post's parent (unless it is a module) and asks w.CheckParent.
func (st *writeState) checkParent(ctx context.Context, w Write, parent, pt string) error {
	var pdoc map[string]any
	if strings.Contains(parent, "/") {
		_, text, err := st.loadDoc(ctx, parent)
		if gateway.ErrorCode(err) == gateway.ENOTFOUND {
			return w.CheckParent(parent, pt, nil)
		}
		if err != nil {
			return err
		}
		if pdoc, err = outbox.DecodeObject([]byte(text)); err != nil {
			return fatal(fmt.Errorf("document %s: stored body: %w", parent, err))
		}
	}
	return w.CheckParent(parent, pt, pdoc)
}

// enqueue appends e under the group's epoch and the database's site id.
func (st *writeState) enqueue(ctx context.Context, e *outbox.Entry) (int64, error) {
	epoch, err := st.Epoch(ctx)
	if err != nil {
		return 0, fatal(err)
	}
	e.Epoch, e.SiteID = epoch, st.db.SiteID
	seq, err := st.stmts.queue.Enqueue(ctx, st.tx, e, st.now)
	if err != nil {
		return 0, fatal(err)
	}
	return seq, nil
}

// loadDoc reads a live (not removed) document inside the transaction; ENOTFOUND when the
// replica lacks it.
func (st *writeState) loadDoc(ctx context.Context, id string) (pt string, body string, err error) {
	var ptn sql.NullString
	err = st.stmt(ctx, st.stmts.docGet).QueryRowContext(ctx, id).Scan(&ptn, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
	}
	if err != nil {
		return "", "", fatal(err)
	}
	return ptn.String, body, nil
}

// resolve returns the id a target stands for now (an old local id resolves through id_map).
func (st *writeState) resolve(ctx context.Context, id string) (string, error) {
	if !strings.Contains(id, "local-") {
		return id, nil
	}
	return resolveID(ctx, st.tx, id)
}

// put applies a JSON merge patch to a stored document and queues the fields it changed.
func (st *writeState) put(ctx context.Context, w Write) (WriteResult, error) {
	tx := st.tx
	id, err := st.resolve(ctx, w.ID)
	if err != nil {
		return WriteResult{}, fatal(err)
	}
	pt, oldText, err := st.loadDoc(ctx, id)
	if err != nil {
		return WriteResult{}, err
	}
	old, err := outbox.DecodeObject([]byte(oldText))
	if err != nil {
		return WriteResult{}, fatal(fmt.Errorf("document %s: stored body: %w", id, err))
	}
	if w.Visible != nil {
		if err := w.Visible(old); err != nil {
			return WriteResult{}, err
		}
	}
	patch := cloneMap(w.Doc)
	if v, ok := patch["portal_type"]; ok {
		cur := pt
		if s, ok := old["portal_type"].(string); ok && s != "" {
			cur = s
		}
		if s, _ := v.(string); s != cur {
			return WriteResult{}, gateway.Errorf(gateway.EINVALID, "portal_type cannot change (it is %q)", cur)
		}
		delete(patch, "portal_type")
	}
	if v, ok := patch["parent_relative_url"]; ok {
		s, _ := v.(string)
		cur, _ := old["parent_relative_url"].(string)
		if to, err := resolveID(ctx, tx, s); err == nil {
			s = to
		}
		if s != cur && s != parentOf(id) {
			return WriteResult{}, gateway.Errorf(gateway.EINVALID, "parent_relative_url cannot change (a document cannot be moved)")
		}
		delete(patch, "parent_relative_url")
	}
	if _, err := mapDoc(ctx, tx, patch); err != nil {
		return WriteResult{}, fatal(err)
	}
	patchText, err := canonicalJSON(patch)
	if err != nil {
		return WriteResult{}, gateway.Errorf(gateway.EINVALID, "the patch cannot be encoded: %v", err)
	}
	var newText string
	if err := st.stmt(ctx, st.stmts.patch).QueryRowContext(ctx, oldText, string(patchText)).Scan(&newText); err != nil {
		return WriteResult{}, fatal(err)
	}
	doc, err := outbox.DecodeObject([]byte(newText))
	if err != nil {
		return WriteResult{}, fatal(err)
	}
	if w.Authorize != nil {
		if err := w.Authorize(old, doc, patch); err != nil {
			return WriteResult{}, err
		}
	}
	fields, base := map[string]any{}, map[string]any{}
	for k := range patch {
		if !outbox.SameValue(old[k], doc[k]) {
			fields[k], base[k] = doc[k], old[k]
		}
	}
	if newText != oldText {
		if _, err := st.stmt(ctx, st.stmts.docUpdate).ExecContext(ctx, newText, FormatTime(st.now), id); err != nil {
			return WriteResult{}, fatal(err)
		}
	}
	e := &outbox.Entry{Op: OpPut, DocID: id, Fields: fields, Base: base, Peer: w.Peer, Key: w.Key}
	if len(fields) == 0 {
		// Nothing ERP5 would see changed: the write is recorded, and settled at once.
		e.State = outbox.StateDone
		e.Answer = json.RawMessage(`{"status":"noop"}`)
	}
	seq, err := st.enqueue(ctx, e)
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{ID: id, Seq: seq}, nil
}

// removeOrAction queues a remove (leaving a tombstone) or an action on a stored document.
func (st *writeState) removeOrAction(ctx context.Context, w Write) (WriteResult, error) {
	id, err := st.resolve(ctx, w.ID)
	if err != nil {
		return WriteResult{}, fatal(err)
	}
	_, oldText, err := st.loadDoc(ctx, id)
	if err != nil {
		return WriteResult{}, err
	}
	old, err := outbox.DecodeObject([]byte(oldText))
	if err != nil {
		return WriteResult{}, fatal(fmt.Errorf("document %s: stored body: %w", id, err))
	}
	if w.Visible != nil {
		if err := w.Visible(old); err != nil {
			return WriteResult{}, err
		}
	}
	e := &outbox.Entry{Op: w.Op, DocID: id, Peer: w.Peer, Key: w.Key}
	if w.Op == OpRemove {
		if w.Authorize != nil {
			if err := w.Authorize(old, nil, nil); err != nil {
				return WriteResult{}, err
			}
		}
		if _, err := st.stmt(ctx, st.stmts.docRemove).ExecContext(ctx, FormatTime(st.now), id); err != nil {
			return WriteResult{}, fatal(err)
		}
	} else {
		if w.Authorize != nil {
			if err := w.Authorize(old, old, nil); err != nil {
				return WriteResult{}, err
			}
		}
		e.Transition, e.Comment = w.Transition, w.Comment
	}
	seq, err := st.enqueue(ctx, e)
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{ID: id, Seq: seq}, nil
}

// parentOf returns the id of the container of id ("" for a top-level id).
func parentOf(id string) string {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return ""
	}
	return id[:i]
}

func optString(doc map[string]any, key string) (string, error) {
	v, ok := doc[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", gateway.Errorf(gateway.EINVALID, "%s must be a string", key)
	}
	return s, nil
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// encodeDoc returns the JSON text to store for a posted document: raw as written when given
// (key order and literals kept), with the top-level values in changed replaced in place;
// else doc encoded with sorted keys.
func encodeDoc(raw json.RawMessage, doc map[string]any, changed map[string]any) ([]byte, error) {
	if len(raw) == 0 {
		return canonicalJSON(doc)
	}
	members, err := splitObject(raw)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		if v, ok := changed[m.key]; ok {
			enc, err := canonicalJSON(v)
			if err != nil {
				return nil, err
			}
			b.Write(enc)
		} else {
			b.Write(m.value)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type member struct {
	key   string
	value json.RawMessage
}

// splitObject returns a JSON object's members in the order written; a repeated key keeps its
// last value at its first position, as SQLite's json functions read it.
func splitObject(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	index := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if i, ok := index[key]; ok {
			out[i].value = v
			continue
		}
		index[key] = len(out)
		out = append(out, member{key, v})
	}
	return out, nil
}
