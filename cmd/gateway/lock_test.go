package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/sqlite"
)

// TestSecondServeRefused runs `gateway serve` as a process, then a second `serve`, `restore`
// and `promote` on the same data directory, each its own process: each exits 1 naming the
// holder's pid and changes nothing (the live server's epoch, the audit trail and its
// database file stay as they were), also with the control socket removed.
func TestSecondServeRefused(t *testing.T) {
	bin := relBuild(t)
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := filepath.Join(work, "gateway.yaml")
	relWriteFile(t, cfg, fmt.Sprintf("data_dir: %s\nlan:\n  listen: 127.0.0.1:0\n  webrtc: {udp_port: 0}\n", dir))
	var logs relBuffer
	first := relStartServe(t, bin, work, cfg, nil, &logs)
	defer first.stop(t)

	state := func() string {
		db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		epoch, err := db.Meta(context.Background(), sqlite.MetaEpoch)
		if err != nil {
			t.Fatal(err)
		}
		var audits int
		if err := db.Reader().QueryRow(`SELECT count(*) FROM audit`).Scan(&audits); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("epoch %s, %d audit lines", epoch, audits)
	}
	before := state()
	backup := filepath.Join(work, "backup.db")
	if out, err := exec.Command(bin, "--config", cfg, "backup", backup).CombinedOutput(); err != nil {
		t.Fatalf("backup beside serve: %v\n%s", err, out)
	}
	want := fmt.Sprintf("another gateway serve (pid %d) holds %s", first.cmd.Process.Pid, dir)
	refused := func(argv ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--config", cfg}, argv...)...)
		cmd.Dir = work
		var stderr relBuffer
		cmd.Stderr, cmd.Stdout = &stderr, io.Discard
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%s: %v, want exit status 1\n%s", argv[0], err, stderr.String())
		}
		if msg := stderr.String(); !strings.Contains(msg, want) || strings.Contains(msg, "panic") {
			t.Errorf("%s said %q, want %q", argv[0], msg, want)
		}
		if after := state(); after != before {
			t.Errorf("after a refused %s: %s, want %s", argv[0], after, before)
		}
	}
	refused("serve")
	refused("restore", backup)
	refused("promote")
	if err := os.Remove(filepath.Join(dir, "gateway.sock")); err != nil {
		t.Fatal(err)
	}
	refused("serve")
	refused("restore", backup)
	refused("promote")
	select {
	case <-first.done:
		t.Fatalf("the first serve ended: %v\n%s", first.err, logs.String())
	default:
	}
}

// TestStartCleansInterruptedRestore: what a killed restore left (gateway.db.restoring and
// its WAL) is removed at the next start; the live database is untouched.
func TestStartCleansInterruptedRestore(t *testing.T) {
	dir := t.TempDir()
	s := relStart(t, dir, relOptions{})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, sqlite.FileName+".restoring")
	relWriteFile(t, tmp, "half a copy")
	relWriteFile(t, tmp+"-wal", "")
	relStart(t, dir, relOptions{})
	for _, p := range []string{tmp, tmp + "-wal"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a start: %v, want it removed", p, err)
		}
	}
}

// TestWritingProcessEpoch: each operator command that queues a write while serve is down
// makes a new epoch and its row carries it; while serve runs, the row carries serve's.
func TestWritingProcessEpoch(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	post := func(title string) string {
		t.Helper()
		out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "post", `{"portal_type":"Person","title":"`+title+`"}`)
		if code != 0 {
			t.Fatalf("docs post: %d %s", code, errOut)
		}
		return out
	}
	epochs := func() (rows []string, running string) {
		t.Helper()
		db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		r, err := db.Reader().Query(`SELECT epoch FROM outbox ORDER BY rowid`)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var e string
			r.Scan(&e)
			rows = append(rows, e)
		}
		running, _ = db.Meta(context.Background(), sqlite.MetaEpoch)
		return rows, running
	}
	post("A")
	post("B")
	rows, _ := epochs()
	if len(rows) != 2 || rows[0] == rows[1] {
		t.Fatalf("two posts while serve is down: epochs %v, want two different ones", rows)
	}
	s := relStart(t, dir, relOptions{})
	post("C")
	rows, running := epochs()
	if len(rows) != 3 || rows[2] != running || rows[2] == rows[1] {
		t.Errorf("a post while serve runs: epochs %v, running %s: want serve's", rows, running)
	}
	_ = s
}
