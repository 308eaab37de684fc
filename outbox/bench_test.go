package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// fixtures caches the big benchmark databases per process (building one takes seconds).
var fixtures sync.Map

// bigOutbox returns a database whose outbox holds rows rows: the first done (spread over
// documents, as keep_done leaves them), the last pending, one per document.
func bigOutbox(b *testing.B, rows, pending int) string {
	b.Helper()
	key := fmt.Sprint(rows, pending)
	if p, ok := fixtures.Load(key); ok {
		return p.(string)
	}
	// Kept across runs (building one takes seconds); a file without the "fixture" meta key
	// is incomplete and rebuilt.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("gateway-outbox-bench-6-v%d-%d-%d", sqlite.SchemaVersion(), rows, pending))
	path := filepath.Join(dir, sqlite.FileName)
	ctx := context.Background()
	if db, err := sqlite.Open(ctx, path); err == nil {
		v, _ := db.Meta(ctx, "fixture")
		db.Close()
		if v == "complete" {
			fixtures.Store(key, path)
			return path
		}
	}
	os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	epoch, err := db.Epoch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	_, err = db.Writer().Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO outbox (epoch, checked_epoch, site_id, order_key, op, doc_id, fields, base, peer, write_key, state, open, attempts,
			payload, hash, created_at, updated_at)
		SELECT ?3, ?3, 'site', i, 'put',
			CASE WHEN i > ?1 - ?2 THEN 'person_module/p' || i ELSE 'person_module/' || (i % 100000) END,
			'{"email":"x' || i || '@example.org","title":"t' || i || '"}', '{"email":null,"title":"t"}',
			'tablet-3', 'k' || i,
			CASE WHEN i > ?1 - ?2 THEN 'pending' ELSE 'done' END,
			CASE WHEN i > ?1 - ?2 THEN 1 ELSE 0 END,
			CASE WHEN i > ?1 - ?2 THEN 0 ELSE 1 END,
			CASE WHEN i > ?1 - ?2 THEN NULL ELSE CAST('{}' AS BLOB) END,
			'', '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z'
		FROM n`, rows, pending, epoch)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Writer().Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	if err := db.SetMeta(ctx, "fixture", "complete"); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d rows (%d pending) in %s", rows, pending, time.Since(start))
	fixtures.Store(key, path)
	return path
}

// BenchmarkClaim measures one claim of a 500-entry batch from a 1M-row outbox with the
// prepared statements sqlite.DB.Claim uses: the claim transaction (candidate walk, encoding,
// hashing, the inflight updates) without its commit, rolled back so that every iteration
// claims the same entries. cpu-ms/op is the process's CPU time per claim: on a shared
// machine the wall time also measures the neighbours.
func BenchmarkClaim(b *testing.B) {
	for _, c := range []struct {
		name          string
		rows, pending int
	}{
		{"1M_rows_10k_pending", 1_000_000, 10_000},
		{"1M_rows_all_pending", 1_000_000, 1_000_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := bigOutbox(b, c.rows, c.pending)
			ctx := context.Background()
			db, err := sqlite.Open(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			epoch, _ := db.Epoch(ctx)
			q, err := outbox.Prepare(ctx, db.Writer())
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			now := time.Now()
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				tx, err := db.Writer().BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				batch, err := q.Claim(ctx, tx, epoch, now, outbox.Budget{MaxEntries: 500}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(batch.Entries) != 500 {
					b.Fatalf("claimed %d", len(batch.Entries))
				}
				tx.Rollback()
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkClaimCommitted is the same claim through sqlite.DB.Claim, committed with
// synchronous=FULL: each iteration takes the next 500 entries.
func BenchmarkClaimCommitted(b *testing.B) {
	path := bigOutbox(b, 1_000_000, 1_000_000)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		batch, err := db.Claim(ctx, outbox.Budget{MaxEntries: 500}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(batch.Entries) != 500 {
			b.Fatalf("claimed %d", len(batch.Entries))
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	b.StopTimer()
	db.Writer().Exec(`UPDATE outbox SET state = 'pending', attempts = 0, payload = NULL WHERE state = 'inflight'`)
}

// cpuTime is the process's user + system CPU time: on a shared machine, wall time measures
// the neighbours too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
