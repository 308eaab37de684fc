package sqlite_test

import (
	"bufio"
	"context"
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

	"sitesync.example/gateway/sqlite"
)

// crashChildEnv names the database a re-executed test binary writes to until it is killed.
const crashChildEnv = "GATEWAY_GROUP_COMMIT_CRASH_DB"

// TestGroupCommitCrash kills a process in the middle of group commits: the test binary runs
// itself as a child that writes from 16 goroutines (posts with write keys, sharing commits)
// and prints "ACK key id seq" after each write returns; the parent kills it with SIGKILL at a
// random moment, then checks the file: every acknowledged write is there with its outbox row
// and write key, and no write is half-stored. Ten cycles on one database.
func TestGroupCommitCrash(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), sqlite.FileName)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 11))
	t.Logf("random seed %d", seed)
	acked := map[string]string{}
	for cycle := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGroupCommitCrash$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("GATEWAY_CRASH_CYCLE=%d", cycle))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		var wg sync.WaitGroup
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
		})
		time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		wg.Wait()
		cmd.Wait()
		n := 0
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 4 || f[0] != "ACK" {
				continue // a line cut by the kill was never complete: not acknowledged
			}
			acked[f[1]] = f[2]
			n++
		}
		if n == 0 {
			t.Fatalf("cycle %d: the child acknowledged nothing", cycle)
		}
		ctx := context.Background()
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("cycle %d: reopen: %v", cycle, err)
		}
		for key, id := range acked {
			var rowKey string
			var docs int
			err := db.Reader().QueryRow(`SELECT o.write_key, (SELECT count(*) FROM documents d WHERE d.id = o.doc_id)
				FROM outbox o WHERE o.doc_id = ? AND o.op = 'post'`, id).Scan(&rowKey, &docs)
			if err != nil || rowKey != key || docs != 1 {
				t.Fatalf("cycle %d: acknowledged %s (%s): key %q docs %d: %v", cycle, key, id, rowKey, docs, err)
			}
		}
		var nDocs, nRows, nKeys int
		db.Reader().QueryRow(`SELECT count(*) FROM documents`).Scan(&nDocs)
		db.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&nRows)
		db.Reader().QueryRow(`SELECT count(*) FROM write_keys`).Scan(&nKeys)
		if nDocs != nRows || nRows != nKeys || nRows < len(acked) {
			t.Fatalf("cycle %d: %d documents, %d outbox rows, %d write keys, %d acknowledged: half-written", cycle, nDocs, nRows, nKeys, len(acked))
		}
		db.Close()
		t.Logf("cycle %d: %d acknowledged, %d stored in all", cycle, n, nRows)
	}
}

// crashChild writes until killed.
func crashChild(path string) {
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cycle := os.Getenv("GATEWAY_CRASH_CYCLE")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("c%s-g%d-%d", cycle, g, i)
				r, err := db.Write(context.Background(), sqlite.Write{Op: "post", Peer: "crash", Key: key,
					Doc: map[string]any{"portal_type": "Person", "title": key}})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ACK %s %s %d\n", key, r.ID, r.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
