package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

var personFields = []string{"title", "first_name", "reference"}

func pullPage(rows ...sqlite.PullRow) sqlite.PullPage {
	return sqlite.PullPage{Scope: "Person", PortalType: "Person", Fields: personFields, Rows: rows}
}

func mustPull(tb testing.TB, db *sqlite.DB, pages ...sqlite.PullPage) *sqlite.PullReport {
	tb.Helper()
	rep, err := db.ApplyPull(context.Background(), pages)
	if err != nil {
		tb.Fatalf("apply pull: %v", err)
	}
	return rep
}

func upstreamOf(tb testing.TB, db *sqlite.DB, id string) (body, version string) {
	tb.Helper()
	if err := db.Reader().QueryRow(`SELECT coalesce(json(upstream_body), ''), coalesce(upstream_version, '')
		FROM documents WHERE id = ?`, id).Scan(&body, &version); err != nil {
		tb.Fatalf("upstream of %s: %v", id, err)
	}
	return body, version
}

func TestApplyPull_InsertAndNewer(t *testing.T) {
	db := MustOpenDB(t)
	rep := mustPull(t, db, pullPage(
		sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T10:00:00.000001Z",
			Fields: map[string]any{"title": "Ann", "first_name": "Ann", "reference": nil, "extra": "ignored"}},
		sqlite.PullRow{ID: "person_module/2", Version: "2026-01-01T10:00:00.000002Z",
			Fields: map[string]any{"title": "Bob", "first_name": nil, "reference": json.Number("7")}},
	))
	if rep.Inserted != 2 || !slices.Equal(rep.Changed, []string{"person_module/1", "person_module/2"}) {
		t.Fatalf("report %+v", rep)
	}
	if got, want := storedBody(t, db, "person_module/1"), `{"portal_type":"Person","title":"Ann","first_name":"Ann"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if got := storedBody(t, db, "person_module/2"); got != `{"portal_type":"Person","title":"Bob","reference":7}` {
		t.Errorf("body %s", got)
	}
	up, v := upstreamOf(t, db, "person_module/1")
	if up != storedBody(t, db, "person_module/1") || v != "2026-01-01T10:00:00.000001Z" {
		t.Errorf("upstream %s %s", up, v)
	}

	// The same version again, an older one: skipped. A newer one: applied, Changed only when
	// the body changed.
	rep = mustPull(t, db, pullPage(
		sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T10:00:00.000001Z", Fields: map[string]any{"title": "Zed"}},
		sqlite.PullRow{ID: "person_module/2", Version: "2026-01-01T09:00:00Z", Fields: map[string]any{"title": "Old"}},
	))
	if rep.Skipped != 2 || len(rep.Changed) != 0 || storedBody(t, db, "person_module/1") != `{"portal_type":"Person","title":"Ann","first_name":"Ann"}` {
		t.Fatalf("not-newer rows applied: %+v %s", rep, storedBody(t, db, "person_module/1"))
	}
	rep = mustPull(t, db, pullPage(
		sqlite.PullRow{ID: "person_module/1", Version: "2026-01-02T00:00:00Z", Fields: map[string]any{"title": "Ann B", "first_name": "Ann"}},
		sqlite.PullRow{ID: "person_module/2", Version: "2026-01-02T00:00:00Z", Fields: map[string]any{"title": "Bob", "reference": json.Number("7")}},
	))
	if rep.Updated != 2 || !slices.Equal(rep.Changed, []string{"person_module/1"}) {
		t.Fatalf("report %+v", rep)
	}
	if got := storedBody(t, db, "person_module/1"); got != `{"portal_type":"Person","title":"Ann B","first_name":"Ann"}` {
		t.Errorf("body %s", got)
	}
	if _, v := upstreamOf(t, db, "person_module/2"); v != "2026-01-02T00:00:00Z" {
		t.Errorf("version %s", v)
	}

	// A field ERP5 no longer has is removed; a field outside the scope stays.
	if _, err := db.Writer().Exec(`UPDATE documents SET body = jsonb_set(body, '$.note', 'kept') WHERE id = 'person_module/1'`); err != nil {
		t.Fatal(err)
	}
	mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-03T00:00:00Z", Fields: map[string]any{"title": "Ann C"}}))
	if got := storedBody(t, db, "person_module/1"); got != `{"portal_type":"Person","title":"Ann C","note":"kept"}` {
		t.Errorf("body %s", got)
	}
	// The replica's queries see pulled documents (the index triggers ran).
	if n := count(t, db, `SELECT count(*) FROM doc_keys k JOIN documents d ON d.rowid = k.doc
		WHERE d.id = 'person_module/1' AND k.key = 'title' AND k.value = 'Ann C'`); n != 1 {
		t.Errorf("index rows for the new title: %d", n)
	}
}

func TestApplyPull_AtLeastAndCoarse(t *testing.T) {
	db := MustOpenDB(t)
	mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T10:00:00.5Z", Fields: map[string]any{"title": "A"}}))
	p := pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T10:00:00.5Z", Fields: map[string]any{"title": "A2"}})
	p.AtLeast = true
	if rep := mustPull(t, db, p); rep.Updated != 1 {
		t.Fatalf("AtLeast row at the same version not applied: %+v", rep)
	}
	// Coarse rows (stock search, to the second).
	coarse := func(v, title string) sqlite.PullRow {
		return sqlite.PullRow{ID: "person_module/1", Version: v, Coarse: true, Fields: map[string]any{"title": title}}
	}
	if rep := mustPull(t, db, pullPage(coarse("2026-01-01T10:00:00Z", "A2"))); rep.Skipped != 1 {
		t.Errorf("same second, same fields: %+v", rep)
	}
	if rep := mustPull(t, db, pullPage(coarse("2026-01-01T09:59:59Z", "older"))); rep.Skipped != 1 {
		t.Errorf("older second: %+v", rep)
	}
	if rep := mustPull(t, db, pullPage(coarse("2026-01-01T10:00:00Z", "A3"))); rep.Updated != 1 {
		t.Errorf("same second, other fields (a later edit in that second): %+v", rep)
	}
	if got := storedBody(t, db, "person_module/1"); !strings.Contains(got, `"A3"`) {
		t.Errorf("body %s", got)
	}
	// The version never moves back.
	if _, v := upstreamOf(t, db, "person_module/1"); v != "2026-01-01T10:00:00.5Z" {
		t.Errorf("version %s", v)
	}
	if rep := mustPull(t, db, pullPage(coarse("2026-01-01T10:00:01Z", "A4"))); rep.Updated != 1 {
		t.Errorf("later second: %+v", rep)
	}
}

// seedPulled stores one pulled Person.
func seedPulled(tb testing.TB, db *sqlite.DB, id, version string, fields map[string]any) {
	tb.Helper()
	mustPull(tb, db, pullPage(sqlite.PullRow{ID: id, Version: version, Fields: fields}))
}

func TestApplyPull_OwnEditSkippedAtItsVersion(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	seedPulled(t, db, "person_module/1", "2026-01-01T00:00:00.000001Z", map[string]any{"title": "A", "reference": "R"})
	w := mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "site"}, Peer: "p"})
	claim(t, db)
	state := `{"portal_type":"Person","title":"site","reference":"R"}`
	if _, err := db.Settle(ctx, []outbox.Result{{Seq: w.Seq, Status: outbox.ResultOK, ID: "person_module/1",
		Version: "2026-01-01T00:05:00.000007Z", State: json.RawMessage(state)}}); err != nil {
		t.Fatal(err)
	}
	// A row at exactly the version the site's own entry produced is the site's edit: skipped,
	// even with other values (a stale catalog row).
	rep := mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T00:05:00.000007Z",
		Fields: map[string]any{"title": "stale", "reference": "R"}}))
	if rep.Skipped != 1 || !strings.Contains(storedBody(t, db, "person_module/1"), `"site"`) {
		t.Fatalf("own edit pulled back: %+v %s", rep, storedBody(t, db, "person_module/1"))
	}
	// A later version (head office edited after) applies.
	rep = mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T00:05:00.000008Z",
		Fields: map[string]any{"title": "head office", "reference": "R"}}))
	if rep.Updated != 1 || !strings.Contains(storedBody(t, db, "person_module/1"), `"head office"`) {
		t.Fatalf("later edit not applied: %+v", rep)
	}
}

// claim claims every due entry, as the uplink does before sending.
func claim(tb testing.TB, db *sqlite.DB) *outbox.Batch {
	tb.Helper()
	b, err := db.Claim(context.Background(), outbox.Budget{MaxEntries: 1000}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestApplyPull_PendingEditKept(t *testing.T) {
	db := MustOpenDB(t)
	seedPulled(t, db, "person_module/1", "2026-01-01T00:00:00Z", map[string]any{"title": "A", "first_name": "F", "reference": "R"})
	w := mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "local"}, Peer: "p"})
	// Head office changed another field: the local title stays, the rest follows ERP5.
	rep := mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-02T00:00:00Z",
		Fields: map[string]any{"title": "A", "first_name": "F2", "reference": "R"}}))
	if rep.Kept != 1 || len(rep.Conflicts) != 0 || !slices.Equal(rep.Changed, []string{"person_module/1"}) {
		t.Fatalf("report %+v", rep)
	}
	if got := storedBody(t, db, "person_module/1"); got != `{"portal_type":"Person","title":"local","first_name":"F2","reference":"R"}` {
		t.Errorf("body %s", got)
	}
	up, v := upstreamOf(t, db, "person_module/1")
	if up != `{"portal_type":"Person","title":"A","first_name":"F2","reference":"R"}` || v != "2026-01-02T00:00:00Z" {
		t.Errorf("upstream %s %s", up, v)
	}
	if e := entry(t, db, w.Seq); e.State != outbox.StatePending {
		t.Errorf("entry %s", e.State)
	}
	// Head office set the same value the site did: no conflict either.
	rep = mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-03T00:00:00Z",
		Fields: map[string]any{"title": "local", "first_name": "F2", "reference": "R"}}))
	if len(rep.Conflicts) != 0 || entry(t, db, w.Seq).State != outbox.StatePending {
		t.Errorf("same value on both sides made a conflict: %+v", rep)
	}
}

func TestApplyPull_ConflictBothValues(t *testing.T) {
	for _, keep := range []string{sqlite.KeepLocal, sqlite.KeepRemote} {
		t.Run(keep, func(t *testing.T) {
			db := MustOpenDB(t)
			ctx := context.Background()
			seedPulled(t, db, "person_module/1", "2026-01-01T00:00:00Z", map[string]any{"title": "A", "reference": "R"})
			w := mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "local", "reference": "R2"}, Peer: "p"})
			rep := mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-02T00:00:00Z",
				Fields: map[string]any{"title": "remote", "reference": "R"}}))
			if !slices.Equal(rep.Conflicts, []int64{w.Seq}) || !slices.Equal(rep.Changed, []string{"person_module/1"}) {
				t.Fatalf("report %+v", rep)
			}
			e := entry(t, db, w.Seq)
			if e.State != outbox.StateConflict || !strings.Contains(e.LastError, "title") {
				t.Fatalf("entry %s %q", e.State, e.LastError)
			}
			base, current, local := outbox.ConflictValues(e)
			if base["title"] != "A" || current["title"] != "remote" || local["title"] != "local" {
				t.Errorf("conflict values: base %v current %v local %v", base, current, local)
			}
			if _, ok := current["reference"]; ok {
				t.Errorf("reference changed on one side only is not a conflict: %v", current)
			}
			var ans map[string]any
			json.Unmarshal(e.Answer, &ans)
			if ans["status"] != "conflict" || ans["local"] == nil || ans["current"] == nil || ans["base"] == nil {
				t.Errorf("answer %s", e.Answer)
			}
			// The pending edit is never overwritten.
			if got := storedBody(t, db, "person_module/1"); got != `{"portal_type":"Person","title":"local","reference":"R2"}` {
				t.Errorf("body %s", got)
			}
			// Another pull of the same state changes nothing more.
			rep = mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-02T00:00:00Z",
				Fields: map[string]any{"title": "remote", "reference": "R"}}))
			if len(rep.Conflicts) != 0 {
				t.Errorf("repeated conflict: %+v", rep)
			}
			// Head office changes the title again: the conflict's head-office value follows.
			rep = mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-03T00:00:00Z",
				Fields: map[string]any{"title": "remote 2", "reference": "R"}}))
			if _, cur, _ := outbox.ConflictValues(entry(t, db, w.Seq)); cur["title"] != "remote 2" || len(rep.Conflicts) != 1 {
				t.Errorf("conflict not refreshed: %v %+v", cur, rep)
			}
			newSeq, err := db.Resolve(ctx, w.Seq, keep, "op")
			if err != nil {
				t.Fatal(err)
			}
			body := storedBody(t, db, "person_module/1")
			switch keep {
			case sqlite.KeepLocal:
				n := entry(t, db, newSeq)
				if n.State != outbox.StatePending || n.Base["title"] != "remote 2" || n.Fields["title"] != "local" {
					t.Errorf("new entry %+v", n)
				}
				if body != `{"portal_type":"Person","title":"local","reference":"R2"}` {
					t.Errorf("body %s", body)
				}
			case sqlite.KeepRemote:
				if !strings.Contains(body, `"title":"remote 2"`) {
					t.Errorf("body %s", body)
				}
			}
		})
	}
}

func TestApplyPull_ConflictOnlyForNeverSent(t *testing.T) {
	db := MustOpenDB(t)
	seedPulled(t, db, "person_module/1", "2026-01-01T00:00:00Z", map[string]any{"title": "A"})
	w1 := mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "sent"}, Peer: "p"})
	claim(t, db) // w1 is inflight: possibly applied, ERP5 judges it
	w2 := mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "later"}, Peer: "p"})
	rep := mustPull(t, db, pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-02T00:00:00Z", Fields: map[string]any{"title": "remote"}}))
	if entry(t, db, w1.Seq).State != outbox.StateInflight {
		t.Errorf("a sent entry was touched")
	}
	// w2 is based on "sent"; ERP5 has "remote": the never-sent w2 is the conflict.
	if !slices.Equal(rep.Conflicts, []int64{w2.Seq}) || entry(t, db, w2.Seq).State != outbox.StateConflict {
		t.Errorf("report %+v, w2 %s", rep, entry(t, db, w2.Seq).State)
	}
	if got := storedBody(t, db, "person_module/1"); got != `{"portal_type":"Person","title":"later"}` {
		t.Errorf("body %s", got)
	}
}

func TestApplyPull_GoneAndTombstone(t *testing.T) {
	db := MustOpenDB(t)
	for i := 1; i <= 4; i++ {
		seedPulled(t, db, fmt.Sprintf("person_module/%d", i), "2026-01-01T00:00:00Z", map[string]any{"title": fmt.Sprint(i)})
	}
	mustWrite(t, db, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/2", Doc: map[string]any{"title": "local"}, Peer: "p"})
	mustWrite(t, db, sqlite.Write{Op: sqlite.OpRemove, ID: "person_module/3", Peer: "p"})
	p := pullPage()
	p.Gone = []string{"person_module/1", "person_module/2", "person_module/9"}
	p.Rows = []sqlite.PullRow{{ID: "person_module/3", Version: "2026-01-02T00:00:00Z", Fields: map[string]any{"title": "3b"}}}
	rep := mustPull(t, db, p)
	if rep.Removed != 1 || !slices.Equal(rep.Changed, []string{"person_module/1"}) {
		t.Fatalf("report %+v", rep)
	}
	ctx := context.Background()
	if _, err := db.GetDocument(ctx, "person_module/1"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("gone document still there: %v", err)
	}
	if _, err := db.GetDocument(ctx, "person_module/2"); err != nil {
		t.Errorf("a document with a pending edit was removed: %v", err)
	}
	// The tombstone of a pending remove stays; ERP5's state is recorded.
	if _, err := db.GetDocument(ctx, "person_module/3"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("tombstone revived: %v", err)
	}
	if up, v := upstreamOf(t, db, "person_module/3"); !strings.Contains(up, "3b") || v != "2026-01-02T00:00:00Z" {
		t.Errorf("tombstone upstream %s %s", up, v)
	}
	ids, err := db.ReplicaIDs(ctx, "Person")
	if err != nil || !slices.Equal(ids, []string{"person_module/2", "person_module/3", "person_module/4"}) {
		t.Errorf("replica ids %v %v", ids, err)
	}
}

func TestSyncCursors(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	p := pullPage(sqlite.PullRow{ID: "person_module/1", Version: "2026-01-01T00:00:00Z", Fields: map[string]any{"title": "A"}})
	p.Cursor = &sqlite.SyncCursor{Cursor: `{"r":"abc"}`, FreshAt: at}
	mustPull(t, db, p)
	got, err := db.SyncCursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := got["Person"]
	if c.Cursor != `{"r":"abc"}` || c.Complete || !c.FreshAt.Equal(at) {
		t.Errorf("cursor %+v", c)
	}
	// A zero FreshAt keeps the stored one; Complete is set.
	if err := db.SetSyncCursors(ctx, []sqlite.SyncCursor{{Scope: "Person", Cursor: `{"r":"def"}`, Complete: true}}); err != nil {
		t.Fatal(err)
	}
	got, _ = db.SyncCursors(ctx)
	if c := got["Person"]; c.Cursor != `{"r":"def"}` || !c.Complete || !c.FreshAt.Equal(at) {
		t.Errorf("cursor %+v", c)
	}
	fresh, err := db.FreshAt(ctx)
	if err != nil || !fresh["Person"].Equal(at) {
		t.Errorf("fresh_at %v %v", fresh, err)
	}
	if err := db.DeleteSyncCursors(ctx, []string{"Person"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.SyncCursors(ctx); len(got) != 0 {
		t.Errorf("cursors left: %v", got)
	}
	// A failed page stores nothing, its cursor included.
	bad := pullPage(sqlite.PullRow{ID: "not an id", Version: "2026-01-01T00:00:00Z"})
	bad.Cursor = &sqlite.SyncCursor{Cursor: "x"}
	if _, err := db.ApplyPull(ctx, []sqlite.PullPage{bad}); err == nil {
		t.Fatal("bad id accepted")
	}
	if got, _ := db.SyncCursors(ctx); len(got) != 0 {
		t.Errorf("cursor of a failed page stored: %v", got)
	}
}

func TestCacheDocument(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	doc, err := db.CacheDocument(ctx, "organisation_module/7", "Organisation", map[string]any{"title": "Acme", "role": "client"})
	if err != nil {
		t.Fatal(err)
	}
	if string(doc.Body) != `{"portal_type":"Organisation","role":"client","title":"Acme"}` || doc.PortalType != "Organisation" {
		t.Errorf("cached %s %s", doc.PortalType, doc.Body)
	}
	// A document the replica already has is not replaced.
	doc, err = db.CacheDocument(ctx, "organisation_module/7", "Organisation", map[string]any{"title": "Other"})
	if err != nil || !strings.Contains(string(doc.Body), "Acme") {
		t.Errorf("cache replaced the replica's document: %s %v", doc.Body, err)
	}
	// Any pulled row applies over it (its version is unknown).
	rep := mustPull(t, db, sqlite.PullPage{Scope: "Org", PortalType: "Organisation", Fields: []string{"title"},
		Rows: []sqlite.PullRow{{ID: "organisation_module/7", Version: "2020-01-01T00:00:00Z", Coarse: true, Fields: map[string]any{"title": "Acme 2"}}}})
	if rep.Updated != 1 {
		t.Errorf("report %+v", rep)
	}
}

// BenchmarkApplyPull applies 1,000-row pages of ten-field documents: new documents (an
// initial sync) and newer versions of stored ones (a refresh). Reports documents/s.
func BenchmarkApplyPull(b *testing.B) {
	fields := []string{"title", "first_name", "last_name", "reference", "default_email_text",
		"default_telephone_text", "function", "subordination", "validation_state", "start_date"}
	page := func(start, n int, version string) sqlite.PullPage {
		p := sqlite.PullPage{Scope: "Person", PortalType: "Person", Fields: fields}
		for i := start; i < start+n; i++ {
			p.Rows = append(p.Rows, sqlite.PullRow{ID: fmt.Sprintf("person_module/%d", i), Version: version, Fields: map[string]any{
				"title": fmt.Sprintf("Person %d", i), "first_name": "Jean", "last_name": fmt.Sprintf("Dupont%d", i%97),
				"reference": fmt.Sprintf("P%06d", i), "default_email_text": fmt.Sprintf("p%d@example.org", i),
				"default_telephone_text": "+33 1 23 45 67 89", "function": "engineer",
				"subordination": fmt.Sprintf("organisation_module/%d", i%300), "validation_state": "validated",
				"start_date": "Mon, 02 Jan 2023 00:00:00 +0000"}})
		}
		return p
	}
	for _, mode := range []string{"insert", "update"} {
		b.Run(mode, func(b *testing.B) {
			db := sqlite.NewDB(filepath.Join(b.TempDir(), "gateway.db"))
			if err := db.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			const n = 1000
			next := 0
			if mode == "update" {
				for i := 0; i < 20; i++ {
					mustPull(b, db, page(i*n, n, "2026-01-01T00:00:00Z"))
				}
			}
			docs := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				var p sqlite.PullPage
				if mode == "insert" {
					p = page(next, n, "2026-01-01T00:00:00Z")
					next += n
				} else {
					p = page((i%20)*n, n, fmt.Sprintf("2026-01-02T00:00:%02d.%06dZ", i/20%60, i))
					for j := range p.Rows {
						p.Rows[j].Fields["function"] = fmt.Sprintf("role %d", i)
					}
				}
				mustPull(b, db, p)
				docs += n
			}
			b.ReportMetric(float64(docs)/b.Elapsed().Seconds(), "docs/s")
		})
	}
}
