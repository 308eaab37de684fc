package upstream

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// TestUplink_RestoreResendOfFoldedWriteKey: a post and two puts of one document, each with
// its write key, merge into one entry whose "keys" carries the folded writes' keys; ERP5
// applies it once. The database is then restored to a backup taken before those writes (a
// new epoch, the writes and their keys lost) and the browser resends the post with its
// key: ERP5 recognises the folded post's key and answers the first result, so it holds one
// document, not two, and the replica's copy takes ERP5's id.
func TestUplink_RestoreResendOfFoldedWriteKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{})
		backup := filepath.Join(t.TempDir(), "backup.db")
		if err := e.store.Backup(ctx, backup); err != nil {
			t.Fatal(err)
		}
		post := sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "Moussa"},
			Peer: "tablet-3", Key: "k-post"}
		created := e.store.write(t, post)
		e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: created.ID, Doc: map[string]any{"title": "Moussa K"},
			Peer: "tablet-3", Key: "k-put1"})
		e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: created.ID, Doc: map[string]any{"title": "Moussa Keita"},
			Peer: "tablet-4", Key: "k-put2"})
		e.open()
		waitFor(t, time.Hour, "the merged entry delivered", e.drained)

		var merged *outbox.Entry
		for _, en := range e.store.entries(t) {
			if en.State == outbox.StateDone && len(en.Covers) == 2 {
				merged = en
			}
		}
		if merged == nil {
			t.Fatalf("no done entry covering the post and the first put: %+v", e.store.entries(t))
		}
		want := `"keys":[{"key":"k-post","peer":"tablet-3"},{"key":"k-put1","peer":"tablet-3"}]`
		if !bytes.Contains(merged.Payload, []byte(want)) {
			t.Fatalf("merged entry's payload %s lacks %s", merged.Payload, want)
		}
		posts := func() []erp5sim.Change {
			var out []erp5sim.Change
			for _, c := range e.sim.Applied("site-a", "") {
				if c.Op == outbox.OpPost {
					out = append(out, c)
				}
			}
			return out
		}
		first := posts()
		if len(first) != 1 {
			t.Fatalf("ERP5 applied %d posts, want 1: %+v", len(first), first)
		}
		erp5ID := first[0].ID

		e.up.Close(ctx)
		path := e.store.Path
		e.store.Close()
		if _, err := sqlite.Restore(ctx, backup, path, sqlite.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		db := sqlite.NewDB(path)
		db.Synchronous = "off"
		db.SiteID = "site-a"
		if err := db.Open(ctx); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		e.store = &testStore{DB: db, renamed: map[string]string{}}
		// The restored database lost the write and its key: the browser's resend of the
		// post, with the same key, is queued as a new write.
		again := e.store.write(t, post)
		e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter, Logger: discardLogger()}
		e.open()
		waitFor(t, time.Hour, "the resend settled", e.drained)

		if got := posts(); len(got) != 1 {
			t.Errorf("ERP5 applied %d posts, want 1 (the resend recognised by its folded key): %+v", len(got), got)
		}
		var persons int
		for _, d := range e.sim.Documents() {
			if d.PortalType == "Person" {
				persons++
			}
		}
		if persons != 1 {
			t.Errorf("ERP5 holds %d Person documents, want 1", persons)
		}
		if got := e.sim.Document(erp5ID).Properties["title"]; got != "Moussa Keita" {
			t.Errorf("%s: title %v, want Moussa Keita", erp5ID, got)
		}
		if _, err := db.GetDocument(ctx, erp5ID); err != nil {
			t.Errorf("the replica has no %s after the resend of %s settled: %v", erp5ID, again.ID, err)
		}
		e.up.Close(ctx)
	})
}
