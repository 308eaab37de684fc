package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// crashWrite is one `gateway docs post|put --key K` invocation of the crash test.
type crashWrite struct {
	key  string
	op   string // post or put
	id   string // put target
	body string
}

func (w crashWrite) argv(dir string) []string {
	if w.op == "post" {
		return []string{"--data-dir", dir, "docs", "post", w.body, "--key", w.key}
	}
	return []string{"--data-dir", dir, "docs", "put", w.id, w.body, "--key", w.key}
}

// TestCrash builds the real gateway binary and, cycle after cycle, runs concurrent writes
// with write keys (`gateway docs post|put --key K`, each its own process, several at once on
// one database), kills them with SIGKILL at a random moment, then checks the database file
// as a restarted gateway finds it:
//   - every acknowledged write (the process printed {"id": …}, which it does only after the
//     commit) is in the replica and has its own outbox row, with a seq of its own;
//   - nothing is half-written: documents, outbox rows and write keys correspond one to one;
//   - a write key resent (in a later cycle) answers the first answer, and never writes twice.
func TestCrash(t *testing.T) {
	pkg, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "gateway")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = pkg
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(work, "data")
	run := func(ctx context.Context, argv ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, argv...)
		cmd.Dir = work // no gateway.yaml there: built-in defaults
		cmd.Env = append(os.Environ(), "GOTRACEBACK=none")
		return cmd
	}
	// Documents to edit, stored by operator posts (not killed).
	var targets []string
	for i := range 4 {
		out, err := run(context.Background(), "--data-dir", dir, "docs", "post", fmt.Sprintf(`{"portal_type":"Person","title":"seed %d"}`, i)).Output()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		var r struct{ ID string }
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("seed output %q", out)
		}
		targets = append(targets, r.ID)
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("random seed %d", seed)
	var (
		sent     []crashWrite          // every write tried, in order
		acked    = map[string]string{} // key → id printed
		cycles   = 24
		parallel = 6
		killed   int
	)
	for c := range cycles {
		var batch []crashWrite
		for i := range parallel {
			key := fmt.Sprintf("c%d-%d", c, i)
			switch {
			case len(sent) > 0 && rng.IntN(4) == 0:
				batch = append(batch, sent[rng.IntN(len(sent))]) // resend an earlier key as it was
			case rng.IntN(2) == 0:
				batch = append(batch, crashWrite{key: key, op: "post",
					body: fmt.Sprintf(`{"portal_type":"Person","title":"%s","marker":"%s","n":%d.50}`, key, key, i)})
			default:
				batch = append(batch, crashWrite{key: key, op: "put", id: targets[rng.IntN(len(targets))],
					body: fmt.Sprintf(`{"f_%s":"%s"}`, strings.ReplaceAll(key, "-", "_"), key)})
			}
		}
		type outcome struct {
			w   crashWrite
			out []byte
			err error
		}
		results := make([]outcome, len(batch))
		var wg sync.WaitGroup
		for i, w := range batch {
			// Each process is killed at its own random moment: before, during or after its
			// write commits (a write takes some tens of milliseconds, start-up included).
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(150))*time.Millisecond)
			defer cancel()
			cmd := run(ctx, w.argv(dir)...)
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
			var out strings.Builder
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				if ctx.Err() == nil {
					t.Fatal(err)
				}
				results[i] = outcome{w: w, err: err} // killed before it started
				continue
			}
			wg.Go(func() {
				err := cmd.Wait()
				results[i] = outcome{w, []byte(out.String()), err}
			})
		}
		wg.Wait()
		for _, r := range results {
			sent = append(sent, r.w)
			if r.err != nil {
				killed++
				continue
			}
			var res struct{ ID string }
			if err := json.Unmarshal(r.out, &res); err != nil || res.ID == "" {
				t.Fatalf("cycle %d: %s printed %q", c, r.w.key, r.out)
			}
			if first, ok := acked[r.w.key]; ok && first != res.ID {
				t.Fatalf("cycle %d: key %s answered %s, first answer %s", c, r.w.key, res.ID, first)
			}
			acked[r.w.key] = res.ID
		}
		checkCrashState(t, dir, sent, acked, c)
	}
	t.Logf("%d cycles, %d writes tried, %d acknowledged keys, %d processes killed", cycles, len(sent), len(acked), killed)
	if killed == 0 || len(acked) == 0 {
		t.Errorf("the test did not exercise both outcomes: %d killed, %d acknowledged", killed, len(acked))
	}
	// The database is intact and the gateway still works on it.
	out, err := run(context.Background(), "--data-dir", dir, "outbox", "ls", "-o", "json", "--state", "all").Output()
	if err != nil || !json.Valid(out) {
		t.Fatalf("outbox ls after the crashes: %v\n%s", err, out)
	}
}

// checkCrashState opens the database as a restarted gateway would and checks it.
func checkCrashState(t *testing.T, dir string, sent []crashWrite, acked map[string]string, cycle int) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatalf("cycle %d: reopen: %v", cycle, err)
	}
	defer db.Close()
	var ok string
	if err := db.Reader().QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("cycle %d: integrity_check: %s %v", cycle, ok, err)
	}
	// Write keys and their outbox rows correspond one to one.
	keys := map[string]string{} // key → id in the stored response
	rows, err := db.Reader().Query(`SELECT key, response FROM write_keys WHERE peer = ?`, sqlite.OperatorPeer)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, resp string
		rows.Scan(&k, &resp)
		var r struct{ ID string }
		json.Unmarshal([]byte(resp), &r)
		keys[k] = r.ID
	}
	rows.Close()
	entries, _, err := db.OutboxList(ctx, outbox.Filter{States: outbox.States})
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]*outbox.Entry{}
	seqs := map[int64]bool{}
	for _, e := range entries {
		if seqs[e.Seq] {
			t.Fatalf("cycle %d: seq %d twice", cycle, e.Seq)
		}
		seqs[e.Seq] = true
		if e.Key == "" {
			continue
		}
		if byKey[e.Key] != nil {
			t.Fatalf("cycle %d: key %s has two outbox rows (%d, %d): written twice", cycle, e.Key, byKey[e.Key].Seq, e.Seq)
		}
		byKey[e.Key] = e
		if _, ok := keys[e.Key]; !ok {
			t.Fatalf("cycle %d: outbox row %d has key %s but no write key row: half-written", cycle, e.Seq, e.Key)
		}
	}
	for k, id := range keys {
		e := byKey[k]
		if e == nil {
			t.Fatalf("cycle %d: write key %s stored without its outbox row: half-written", cycle, k)
		}
		if e.DocID != id {
			t.Fatalf("cycle %d: key %s answered %s but its row is for %s", cycle, k, id, e.DocID)
		}
	}
	// Every acknowledged write is stored, with its own row, and answered as first answered.
	for k, id := range acked {
		e := byKey[k]
		if e == nil {
			t.Fatalf("cycle %d: acknowledged write %s (%s) has no outbox row", cycle, k, id)
		}
		if keys[k] != id {
			t.Fatalf("cycle %d: key %s stored answer %s, printed %s", cycle, k, keys[k], id)
		}
	}
	seen := map[string]bool{}
	for _, w := range sent {
		if seen[w.key] {
			continue
		}
		seen[w.key] = true
		e := byKey[w.key]
		if e == nil {
			continue // never committed: no trace at all (checked above)
		}
		var body string
		err := db.Reader().QueryRow(`SELECT json(body) FROM documents WHERE id = ? AND deleted = 0`, e.DocID).Scan(&body)
		if err != nil {
			t.Fatalf("cycle %d: key %s: document %s: %v", cycle, w.key, e.DocID, err)
		}
		switch w.op {
		case "post":
			if e.Op != "post" || !strings.Contains(body, `"marker":"`+w.key+`"`) || !strings.Contains(body, `.50`) {
				t.Fatalf("cycle %d: post %s: row %s, body %s", cycle, w.key, e.Op, body)
			}
		case "put":
			field := "f_" + strings.ReplaceAll(w.key, "-", "_")
			if e.Op != "put" || e.Fields[field] != w.key || !strings.Contains(body, `"`+field+`":"`+w.key+`"`) {
				t.Fatalf("cycle %d: put %s: row fields %v, body %s", cycle, w.key, e.Fields, body)
			}
		}
	}
	// Every document a post created has exactly its post row; no row names a missing document.
	var orphans int
	db.Reader().QueryRow(`SELECT count(*) FROM documents d WHERE NOT EXISTS
		(SELECT 1 FROM outbox o WHERE o.doc_id = d.id AND o.op = 'post')`).Scan(&orphans)
	if orphans != 0 {
		t.Fatalf("cycle %d: %d documents without their post entry", cycle, orphans)
	}
	var missing int
	db.Reader().QueryRow(`SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = o.doc_id)`).Scan(&missing)
	if missing != 0 {
		t.Fatalf("cycle %d: %d outbox rows for missing documents", cycle, missing)
	}
}
