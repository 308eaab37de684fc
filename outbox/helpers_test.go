package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// env is a real database file with helpers to drive the outbox through the write path.
type env struct {
	tb  testing.TB
	db  *sqlite.DB
	ctx context.Context
	now time.Time
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	db := sqlite.NewDB(filepath.Join(tb.TempDir(), sqlite.FileName))
	e := &env{tb: tb, db: db, ctx: context.Background(), now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	db.Now = func() time.Time { return e.now }
	db.SiteID = "site-a"
	if err := db.Open(e.ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// The open column mirrors the state in every row, whatever the test did.
		var bad int
		if err := db.Reader().QueryRow(`SELECT count(*) FROM outbox
			WHERE open != (state NOT IN ('done', 'merged', 'superseded'))`).Scan(&bad); err != nil || bad != 0 {
			tb.Errorf("%d outbox rows whose open column disagrees with their state (%v)", bad, err)
		}
		db.Close()
	})
	return e
}

func (e *env) advance(d time.Duration) { e.now = e.now.Add(d) }

func obj(tb testing.TB, s string) map[string]any {
	tb.Helper()
	m, err := outbox.DecodeObject([]byte(s))
	if err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// post stores a new document and returns its id.
func (e *env) post(doc string) string {
	e.tb.Helper()
	r, err := e.db.Write(e.ctx, sqlite.Write{Op: "post", Body: json.RawMessage(doc)})
	if err != nil {
		e.tb.Fatalf("post %s: %v", doc, err)
	}
	return r.ID
}

func (e *env) put(id, patch string) int64 {
	e.tb.Helper()
	r, err := e.db.Write(e.ctx, sqlite.Write{Op: "put", ID: id, Body: json.RawMessage(patch)})
	if err != nil {
		e.tb.Fatalf("put %s %s: %v", id, patch, err)
	}
	return r.Seq
}

func (e *env) remove(id string) int64 {
	e.tb.Helper()
	r, err := e.db.Write(e.ctx, sqlite.Write{Op: "remove", ID: id})
	if err != nil {
		e.tb.Fatalf("remove %s: %v", id, err)
	}
	return r.Seq
}

func (e *env) action(id, transition string) int64 {
	e.tb.Helper()
	r, err := e.db.Write(e.ctx, sqlite.Write{Op: "action", ID: id, Transition: transition})
	if err != nil {
		e.tb.Fatalf("action %s: %v", id, err)
	}
	return r.Seq
}

// seed stores a document as if pulled from ERP5 (no outbox entry), with upstream_body.
func (e *env) seed(id, body string) {
	e.tb.Helper()
	var pt sql.NullString
	if m := obj(e.tb, body); m["portal_type"] != nil {
		pt.String, pt.Valid = m["portal_type"].(string), true
	}
	_, err := e.db.Writer().Exec(`INSERT INTO documents (id, portal_type, body, upstream_body, upstream_version, updated_at)
		VALUES (?, ?, jsonb(?), jsonb(?), 'v0', 'x')`, id, pt, body, body)
	if err != nil {
		e.tb.Fatal(err)
	}
}

func (e *env) claim(b outbox.Budget) *outbox.Batch {
	e.tb.Helper()
	batch, err := e.db.Claim(e.ctx, b, nil)
	if err != nil {
		e.tb.Fatalf("claim: %v", err)
	}
	return batch
}

func (e *env) settle(rs ...outbox.Result) *sqlite.SettleReport {
	e.tb.Helper()
	rep, err := e.db.Settle(e.ctx, rs)
	if err != nil {
		e.tb.Fatalf("settle: %v", err)
	}
	return rep
}

func (e *env) entry(seq int64) *outbox.Entry {
	e.tb.Helper()
	en, err := outbox.Get(e.ctx, e.db.Reader(), seq)
	if err != nil {
		e.tb.Fatalf("entry %d: %v", seq, err)
	}
	return en
}

func (e *env) lastSeq() int64 {
	e.tb.Helper()
	var n int64
	if err := e.db.Reader().QueryRow(`SELECT max(seq) FROM outbox`).Scan(&n); err != nil {
		e.tb.Fatal(err)
	}
	return n
}

func (e *env) body(id string) map[string]any {
	e.tb.Helper()
	d, err := e.db.GetDocument(e.ctx, id)
	if err != nil {
		e.tb.Fatalf("get %s: %v", id, err)
	}
	return obj(e.tb, string(d.Body))
}

func (e *env) docExists(id string) (exists, deleted bool) {
	e.tb.Helper()
	var del bool
	err := e.db.Reader().QueryRow(`SELECT deleted FROM documents WHERE id = ?`, id).Scan(&del)
	if err == sql.ErrNoRows {
		return false, false
	}
	if err != nil {
		e.tb.Fatal(err)
	}
	return true, del
}

func seqs(b *outbox.Batch) []int64 {
	var out []int64
	for _, e := range b.Entries {
		out = append(out, e.Seq)
	}
	return out
}

func docs(b *outbox.Batch) []string {
	var out []string
	for _, e := range b.Entries {
		out = append(out, e.DocID)
	}
	return out
}

// ok is an ok result for an entry of the batch.
func ok(seq int64) outbox.Result { return outbox.Result{Seq: seq, Status: outbox.ResultOK} }

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
