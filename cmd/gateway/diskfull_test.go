package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/wire"
	"sitesync.example/gateway/sqlite"
)

// tableCounts returns the rows of the tables a write touches.
func tableCounts(tb testing.TB, db *sqlite.DB) [3]int {
	tb.Helper()
	var n [3]int
	for i, table := range []string{"documents", "outbox", "write_keys"} {
		if err := db.Reader().QueryRow(`SELECT count(*) FROM ` + table).Scan(&n[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// setMaxPages limits the database file to n pages on the writer connection (the only one
// that writes); 0 lifts the limit.
func setMaxPages(tb testing.TB, db *sqlite.DB, n int) {
	tb.Helper()
	if n == 0 {
		n = 1 << 30
	}
	var got int
	if err := db.Writer().QueryRow(fmt.Sprintf(`PRAGMA max_page_count = %d`, n)).Scan(&got); err != nil {
		tb.Fatal(err)
	}
}

// TestDiskFull fills the database (SQLite's max_page_count on the writer connection, which
// fails exactly as a full disk does: SQLITE_FULL) and writes over the wire: every write gets
// 507 disk_full, nothing of it is stored (document, outbox entry, write key), reads go on,
// and once space returns the same writes, resent with their keys, are stored once.
func TestDiskFull(t *testing.T) {
	s := relStart(t, t.TempDir(), relOptions{})
	c, _ := mustPairClient(t, s, "office-1", "supervisor")
	ctx := context.Background()
	existing := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Before"}})["id"].(string)

	var pages, free int
	s.DB.Writer().QueryRow(`PRAGMA page_count`).Scan(&pages)
	s.DB.Writer().QueryRow(`PRAGMA freelist_count`).Scan(&free)
	setMaxPages(t, s.DB, pages)
	before := tableCounts(t, s.DB)

	notes := strings.Repeat("n", 60<<10) // needs pages the file cannot grow
	params := func(i int) map[string]any {
		return map[string]any{"doc": map[string]any{"portal_type": "Person", "title": fmt.Sprintf("Full %d", i), "notes": notes},
			"key": fmt.Sprintf("full-%d", i)}
	}
	e := callErr(t, c, "post", params(0))
	if e.Status != 507 || e.Reason != gateway.ENOSPACE {
		t.Fatalf("post on a full disk: %+v, want 507 disk_full (%d pages, %d free)", e, pages, free)
	}
	// Writes arriving together share a commit: all fail, none half-stored.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			if i%2 == 0 {
				errs[i] = c.Call(ctx, "post", params(i+1), nil)
			} else {
				errs[i] = c.Call(ctx, "put", map[string]any{"id": existing, "doc": map[string]any{"notes": notes}, "key": fmt.Sprintf("full-put-%d", i)}, nil)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		var we *wire.Error
		if !errors.As(err, &we) || we.Data == nil || we.Data.Status != 507 {
			t.Errorf("concurrent write %d: %v, want 507", i, err)
		}
	}
	if got := tableCounts(t, s.DB); got != before {
		t.Fatalf("after failed writes: documents/outbox/write_keys %v, before %v", got, before)
	}
	// Reads are served meanwhile.
	if got := call(t, c, "get", map[string]any{"id": existing}); got["title"] != "Before" || got["notes"] != nil {
		t.Errorf("get on a full disk: %v", got)
	}
	call(t, c, "allDocs", map[string]any{"query": `title:"Before"`})
	call(t, c, "status", nil)

	// Space returns: the first write, resent with its key, is stored now (the refused
	// attempt left no key behind), and a second resend answers the same.
	setMaxPages(t, s.DB, 0)
	first := call(t, c, "post", params(0))
	again := call(t, c, "post", params(0))
	if first["id"] != again["id"] {
		t.Errorf("resend after recovery: %v then %v", first, again)
	}
	call(t, c, "put", map[string]any{"id": existing, "doc": map[string]any{"notes": "x"}, "key": "full-put-1"})
	after := tableCounts(t, s.DB)
	if after[0] != before[0]+1 || after[1] != before[1]+2 || after[2] != before[2]+2 {
		t.Errorf("after recovery: %v, before %v; want one document, two entries and two keys more", after, before)
	}
	var ok string
	if err := s.DB.Reader().QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity_check: %s %v", ok, err)
	}
}

// TestDatabaseTrouble starts the real binary on databases it cannot use: each start fails
// with exit status 1 and a message that names the problem, never a panic.
func TestDatabaseTrouble(t *testing.T) {
	bin := relBuild(t)
	ctx := context.Background()
	fresh := func(t *testing.T) string {
		dir := t.TempDir()
		db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "x"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	rawDB := func(t *testing.T, dir string) *sql.DB {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the data directory
		want  []string                  // in the error message, all of them
	}{
		{"Locked", func(t *testing.T) string {
			dir := fresh(t)
			db := rawDB(t, dir)
			if _, err := db.Exec(`BEGIN EXCLUSIVE`); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"locked", "is another gateway serve running"}},
		{"LockedExclusiveMode", func(t *testing.T) string {
			dir := fresh(t)
			db := rawDB(t, dir)
			if _, err := db.Exec(`PRAGMA locking_mode = EXCLUSIVE`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`UPDATE meta SET value = value WHERE key = 'schema_version'`); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"locked", "is another gateway serve running"}},
		{"NotADatabase", func(t *testing.T) string {
			dir := t.TempDir()
			relWriteFile(t, filepath.Join(dir, sqlite.FileName), strings.Repeat("this is not a database\n", 400))
			return dir
		}, []string{"not a database", "restore a backup"}},
		{"HeaderZeroed", func(t *testing.T) string {
			dir := fresh(t)
			corrupt(t, filepath.Join(dir, sqlite.FileName), 0, 100)
			return dir
		}, []string{"not a database", "restore a backup"}},
		{"PagesZeroed", func(t *testing.T) string {
			dir := fresh(t)
			corrupt(t, filepath.Join(dir, sqlite.FileName), 4096, 1<<20)
			return dir
		}, []string{"malformed", "restore a backup"}},
		{"Truncated", func(t *testing.T) string {
			dir := fresh(t)
			path := filepath.Join(dir, sqlite.FileName)
			if err := os.Truncate(path, 4096*3); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"malformed", "restore a backup"}},
		{"NewerSchema", func(t *testing.T) string {
			dir := fresh(t)
			if _, err := rawDB(t, dir).Exec(`INSERT INTO migrations (name) VALUES ('9999_from_the_future.sql')`); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"newer than this gateway", "upgrade"}},
		{"DataDirIsAFile", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "data")
			relWriteFile(t, path, "")
			return path
		}, []string{"not a directory"}},
		{"DatabaseIsADirectory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, sqlite.FileName), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"unable to open", "regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := tt.setup(t)
			work := t.TempDir()
			cfg := filepath.Join(work, "gateway.yaml")
			relWriteFile(t, cfg, "lan:\n  listen: 127.0.0.1:0\n  webrtc: {udp_port: 0}\n")
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(cctx, bin, "--config", cfg, "--data-dir", dir, "serve")
			cmd.Dir = work
			var stderr relBuffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("serve: %v, want exit status 1\n%s", err, stderr.String())
			}
			msg := stderr.String()
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
				t.Fatalf("serve panicked:\n%s", msg)
			}
			last := lastLine(msg)
			if !strings.HasPrefix(last, "gateway: ") {
				t.Errorf("last line %q is not the gateway's error", last)
			}
			if !strings.Contains(last, dir) {
				t.Errorf("message %q does not name %s", last, dir)
			}
			for _, w := range tt.want {
				if !strings.Contains(strings.ToLower(last), strings.ToLower(w)) {
					t.Errorf("message %q lacks %q", last, w)
				}
			}
			t.Logf("%s", last)
		})
	}
}

// corrupt overwrites bytes [from, to) of the file with zeros (up to its end).
func corrupt(tb testing.TB, path string, from, to int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	to = min(to, st.Size())
	if to <= from {
		tb.Fatalf("%s has %d bytes, nothing to corrupt from %d", path, st.Size(), from)
	}
	if _, err := f.WriteAt(make([]byte, to-from), from); err != nil {
		tb.Fatal(err)
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// fillDisk limits the database to the pages it has and fills them (the audit table's pages
// included), so that any write that inserts a row fails with SQLITE_FULL, as on a full disk.
func fillDisk(tb testing.TB, db *sqlite.DB) {
	tb.Helper()
	var pages int
	db.Writer().QueryRow(`PRAGMA page_count`).Scan(&pages)
	setMaxPages(tb, db, pages)
	for _, n := range []int{3000, 300, 30, 1} {
		for i := 0; ; i++ {
			_, err := db.Writer().Exec(`INSERT INTO audit (at, actor, action, detail) VALUES ('0', 'filler', 'filler', printf('%.*c', ?, 'x'))`, n)
			if err != nil {
				break
			}
			if i > 100000 {
				tb.Fatal("the database does not fill")
			}
		}
	}
}

// TestDiskFullAtStart restarts the gateway on a full disk: it starts, answers reads, refuses
// writes with 507 disk_full, and takes its new epoch as soon as space returns; the writes
// then accepted carry it.
func TestDiskFullAtStart(t *testing.T) {
	dir := t.TempDir()
	s := relStart(t, dir, relOptions{})
	c, creds := mustPairClient(t, s, "office-1", "supervisor")
	id := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Before"}})["id"].(string)
	oldEpoch, _ := s.DB.Meta(context.Background(), sqlite.MetaEpoch)
	c.Close()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s = relStart(t, dir, relOptions{AfterOpenDB: func(db *sqlite.DB) { fillDisk(t, db) }})
	c = mustDial(t, s, creds.Token)
	if got := call(t, c, "get", map[string]any{"id": id}); got["title"] != "Before" {
		t.Errorf("get on a full disk: %v", got)
	}
	call(t, c, "allDocs", map[string]any{"query": `title:"Before"`})
	post := map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "After"}, "key": "after-1"}
	if e := callErr(t, c, "post", post); e.Status != 507 || e.Reason != gateway.ENOSPACE {
		t.Fatalf("post on a full disk: %+v, want 507 disk_full", e)
	}
	if epoch, _ := s.DB.Meta(context.Background(), sqlite.MetaEpoch); epoch != oldEpoch {
		t.Fatalf("epoch %s on a full disk, want still %s", epoch, oldEpoch)
	}

	setMaxPages(t, s.DB, 0)
	waitUntil(t, 10*time.Second, "the new epoch", func() bool {
		epoch, _ := s.DB.Meta(context.Background(), sqlite.MetaEpoch)
		return epoch != oldEpoch
	})
	got := call(t, c, "post", post)
	var epoch string
	if err := s.DB.Reader().QueryRow(`SELECT epoch FROM outbox WHERE doc_id = ?`, got["id"]).Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	if running, _ := s.DB.Meta(context.Background(), sqlite.MetaEpoch); epoch != running || epoch == oldEpoch {
		t.Errorf("the write after space returned carries epoch %s; running %s, old %s", epoch, running, oldEpoch)
	}
}
