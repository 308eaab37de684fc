package rpc_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
)

var benchDocs = flag.Int("rpc.docs", 100000, "documents in the replica of BenchmarkGet_UnderCostlyQueries")

// benchPolicy: readers get documents; "costly" runs unbounded queries (no budget) that the
// default deadline stops; "budget" runs the same queries under the default budget.
const benchPolicy = `
roles:
  reader:
    read: {fields: "*"}
    rules:
      - {name: r, effect: allow, methods: [get], portal_types: [Person]}
  costly:
    read: {fields: "*"}
    rules:
      - {name: r, effect: allow, methods: [allDocs], portal_types: [Person]}
    limits: {max_query_cost: 0}
  budget:
    read: {fields: "*"}
    rules:
      - {name: r, effect: allow, methods: [allDocs], portal_types: [Person]}
`

// benchReplica returns the path of a replica of n Persons, built once per n and copied for
// each benchmark.
func benchReplica(b *testing.B, n int) string {
	b.Helper()
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("rpc-bench-%d.db", n))
	if _, err := os.Stat(cache); err != nil {
		tmp := cache + ".tmp"
		os.Remove(tmp)
		db := sqlite.NewDB(tmp)
		db.Synchronous = "off"
		if err := db.Open(context.Background()); err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		go func() {
			for _, l := range people(n) {
				io.WriteString(pw, l+"\n")
			}
			pw.Close()
		}()
		if _, err := db.Import(context.Background(), pr, sqlite.ImportOptions{Chunk: 20000}); err != nil {
			b.Fatal(err)
		}
		db.Writer().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
		db.Close()
		os.Remove(tmp + "-wal")
		os.Remove(tmp + "-shm")
		if err := os.Rename(tmp, cache); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), sqlite.FileName)
	data, err := os.ReadFile(cache)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkGet_UnderCostlyQueries measures a reader's `get` latency (p50, p99) over a replica
// of -rpc.docs Persons while four other peers each run, one after the other, allDocs of 200
// OR'd key-less LIKE terms, asking again 50 ms after each answer (docs/DESIGN.md §4):
//
//   - Idle: no query runs (the baseline);
//   - Deadline: the queries have no cost budget; each runs until the default deadline
//     interrupts it (503 timeout), on the query pool (DB.QueryConns connections);
//   - Budget: the default budget refuses them before they run (400 query_too_costly);
//   - SharedPool: as Deadline, but with the query pool as large as the read pool (8), so
//     that the four run at once on both processors: what the separate budget avoids.
func BenchmarkGet_UnderCostlyQueries(b *testing.B) {
	for _, sc := range []struct {
		name  string
		role  string
		conns int
	}{
		{"Idle", "", 0},
		{"Deadline", "costly", 0},
		{"Budget", "budget", 0},
		{"SharedPool", "costly", 8},
	} {
		b.Run(sc.name, func(b *testing.B) {
			path := benchReplica(b, *benchDocs)
			db := sqlite.NewDB(path)
			db.QueryConns = sc.conns
			if err := db.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			p, err := policy.Parse("bench.yaml", []byte(benchPolicy))
			if err != nil {
				b.Fatal(err)
			}
			s := rpc.NewService(db, p)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex
			answers := map[string]int{}
			if sc.role != "" {
				params := json.RawMessage(fmt.Sprintf(`{"query":%q,"limit":[0,20]}`, orTerms(`title:needle`, 200)))
				for i := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						a := gateway.Actor{Peer: fmt.Sprintf("q-%d", i), Role: sc.role}
						for ctx.Err() == nil {
							_, err := s.Call(ctx, a, gateway.MethodAllDocs, params)
							if ctx.Err() != nil {
								return // stopped at the end of the run
							}
							mu.Lock()
							answers[gateway.ErrorReason(err)]++
							mu.Unlock()
							// A page asks again at most 20 times a second (the example
							// policy's rate), not in a busy loop.
							select {
							case <-ctx.Done():
							case <-time.After(50 * time.Millisecond):
							}
						}
					}()
				}
				time.Sleep(200 * time.Millisecond) // let the queries start
			}
			reader := gateway.Actor{Peer: "reader-1", Role: "reader"}
			r := rand.New(rand.NewPCG(1, 2))
			var lat []time.Duration
			for b.Loop() {
				params := json.RawMessage(fmt.Sprintf(`{"id":"person_module/%d"}`, r.IntN(*benchDocs)))
				t0 := time.Now()
				if _, err := s.Call(context.Background(), reader, gateway.MethodGet, params); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			cancel()
			wg.Wait()
			slices.Sort(lat)
			pct := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
			var parts []string
			for k, v := range answers {
				if k == "" {
					k = "ok"
				}
				parts = append(parts, fmt.Sprintf("%s=%d", k, v))
			}
			slices.Sort(parts)
			b.Logf("%d gets; queries answered: %s", len(lat), strings.Join(parts, " "))
		})
	}
}
