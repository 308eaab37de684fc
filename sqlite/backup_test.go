package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", sqlite.FileName)
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	sent := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Organisation"}})
	before := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "kept"}})
	if _, err := db.Claim(ctx, outbox.Budget{MaxEntries: 1}, nil); err != nil {
		t.Fatal(err)
	}
	epoch, _ := db.Epoch(ctx)

	// Backup while writers run: the copy is one consistent snapshot.
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := db.Write(ctx, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "during"}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	backup := filepath.Join(dir, "backup.db")
	if err := db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	if err := db.Backup(ctx, backup); gateway.ErrorCode(err) != gateway.EINVALID {
		t.Errorf("backup over an existing file: %v", err)
	}
	after := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "lost"}})
	db.Close()

	res, err := sqlite.Restore(ctx, backup, path, sqlite.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Epoch == epoch || len(res.Epoch) != 32 || res.Uncertain != 1 || res.BackupAt.IsZero() {
		t.Errorf("restore result %+v", res)
	}
	if _, err := os.Stat(res.Previous); err != nil {
		t.Errorf("replaced database not kept: %v", err)
	}
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, _ := db.Epoch(ctx); got != res.Epoch {
		t.Errorf("running epoch %s, want %s", got, res.Epoch)
	}
	// The backup's rows keep their epoch; the inflight one is uncertain; a write acknowledged
	// after the backup is lost.
	if e := entry(t, db, before.Seq); e.Epoch != epoch || e.State != outbox.StatePending {
		t.Errorf("restored row %s %s", e.Epoch, e.State)
	}
	if e := entry(t, db, sent.Seq); e.State != outbox.StateUncertain {
		t.Errorf("inflight row restored as %s", e.State)
	}
	if _, err := db.OutboxEntry(ctx, after.Seq); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("a write made after the backup survived the restore: %v", err)
	}
	// New rows take the new epoch and a seq never used by the backup's rows.
	r := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	if e := entry(t, db, r.Seq); e.Epoch != res.Epoch {
		t.Errorf("new row epoch %s", e.Epoch)
	}
	if n := count(t, db, `SELECT count(*) FROM documents d JOIN outbox o ON o.doc_id = d.id AND o.op = 'post'`); n != count(t, db, `SELECT count(*) FROM documents`) {
		t.Error("the backup is not consistent: documents without their post")
	}
	// Earlier-epoch rows wait for the results query.
	need, _ := db.NeedResults(ctx, 0)
	if len(need[epoch]) == 0 {
		t.Errorf("need results %v", need)
	}
	var audit string
	db.Reader().QueryRow(`SELECT detail FROM audit WHERE action = 'epoch' ORDER BY id DESC LIMIT 1`).Scan(&audit)
	if !strings.Contains(audit, "restore") {
		t.Errorf("audit %q", audit)
	}
}

func TestRestore_RefusesOldBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	db.Now = func() time.Time { return old }
	if err := db.SetMeta(ctx, sqlite.MetaRetentionDays, "30"); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "b.db")
	if err := db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	db.Close()
	target := filepath.Join(dir, "c.db")
	if _, err := sqlite.Restore(ctx, backup, target, sqlite.RestoreOptions{}); gateway.ErrorCode(err) != gateway.EINVALID {
		t.Fatalf("restore of a 40-day-old backup with 30-day retention: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Error("a refused restore wrote the database")
	}
	if _, err := sqlite.Restore(ctx, backup, target, sqlite.RestoreOptions{Retention: 60 * 24 * time.Hour}); err != nil {
		t.Errorf("restore within retention: %v", err)
	}
	if _, err := sqlite.Restore(ctx, filepath.Join(dir, "missing.db"), target, sqlite.RestoreOptions{}); gateway.ErrorCode(err) != gateway.EINVALID {
		t.Errorf("restore of a missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("not a database"), 0o600)
	if _, err := sqlite.Restore(ctx, junk, target, sqlite.RestoreOptions{}); err == nil {
		t.Error("restore of a junk file succeeded")
	}
}

func TestPromote(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	r := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	db.Claim(ctx, outbox.Budget{}, nil)
	old, _ := db.Epoch(ctx)
	epoch, uncertain, err := db.Promote(ctx)
	if err != nil || epoch == old || uncertain != 1 {
		t.Fatalf("promote %s %d %v", epoch, uncertain, err)
	}
	if e := entry(t, db, r.Seq); e.State != outbox.StateUncertain || e.Epoch != old {
		t.Errorf("row after promote %s %s", e.State, e.Epoch)
	}
	if got, _ := db.Epoch(ctx); got != epoch {
		t.Errorf("running epoch %s", got)
	}
}

func TestCheckpoint(t *testing.T) {
	db := MustOpenDB(t)
	for range 20 {
		mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	}
	if err := db.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(db.Path + "-wal")
	if err != nil || fi.Size() != 0 {
		t.Errorf("WAL after checkpoint: %v %v", fi, err)
	}
}

// The outbox migration rebuilds the table of 0001: rows keep their values, the open flag
// follows their state, and seq keeps its high-water mark (a deleted last seq is not reused).
func TestMigration_OutboxRebuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), sqlite.FileName)
	init, err := os.ReadFile(filepath.Join("migration", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{string(init),
		`CREATE TABLE migrations (name TEXT PRIMARY KEY) STRICT`,
		`INSERT INTO migrations (name) VALUES ('0001_init.sql')`,
		`INSERT INTO outbox (epoch, order_key, op, doc_id, fields, state, created_at, updated_at) VALUES
			('e', 1, 'put', 'm/1', '{"a":1}', 'done', 't', 't'),
			('e', 2, 'put', 'm/1', '{"a":2}', 'pending', 't', 't'),
			('e', 3, 'put', 'm/2', '{"a":3}', 'pending', 't', 't')`,
		`DELETE FROM outbox WHERE seq = 3`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Reader().Query(`SELECT seq, state, open, fields FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var seq, open int
		var state, fields string
		rows.Scan(&seq, &state, &open, &fields)
		got = append(got, fmt.Sprintf("%d %s %d %s", seq, state, open, fields))
	}
	rows.Close()
	if want := []string{`1 done 0 {"a":1}`, `2 pending 1 {"a":2}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	r := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	if r.Seq != 4 {
		t.Errorf("new seq %d, want 4 (3 was used before the migration)", r.Seq)
	}
}
