package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"sitesync.example/gateway/outbox"
)

// PruneReport is what Prune deleted.
type PruneReport struct {
	Entries   int // done, merged and superseded outbox rows
	WriteKeys int // write keys past their lifetime
}

// Prune deletes outbox entries that ended (done, merged, superseded) more than keepDone ago
// (outbox.keep_done) and write keys older than WriteKeyLifetime. keepDone ≤ 0 keeps every
// ended entry.
func (db *DB) Prune(ctx context.Context, keepDone time.Duration) (PruneReport, error) {
	var rep PruneReport
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		if keepDone > 0 {
			n, err := outbox.Prune(ctx, tx, now.Add(-keepDone))
			if err != nil {
				return err
			}
			rep.Entries = n
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM write_keys WHERE created_at < ?`, FormatTime(now.Add(-WriteKeyLifetime)))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		rep.WriteKeys = int(n)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	return rep, nil
}

// Checkpoint copies the WAL back into the database file and truncates it. serve calls it when
// idle: SQLite's automatic checkpoints run inside a writer's commit, and a truncated WAL keeps
// the file small. A busy database (a reader holding an old snapshot) leaves the WAL as it is;
// that is not an error.
func (db *DB) Checkpoint(ctx context.Context) error {
	var busy, logFrames, done int
	if err := db.writer.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// DefaultWatchInterval is how often WatchChanges polls: changes made by another process (an
// operator command acting on the database directly) are noticed within a second.
const DefaultWatchInterval = 250 * time.Millisecond

// WatchChanges calls fn each time another connection — another process, or this process's
// other pools — commits to the database, until ctx ends. It polls PRAGMA data_version on a
// connection of its own every interval (DefaultWatchInterval when 0). fn runs on the
// watching goroutine; it should not block for long.
func (db *DB) WatchChanges(ctx context.Context, interval time.Duration, fn func()) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	conn, err := db.reader.Conn(ctx)
	if err != nil {
		return fmt.Errorf("watch changes: %w", err)
	}
	defer conn.Close()
	var last int64
	if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&last); err != nil {
		return fmt.Errorf("watch changes: %w", err)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var v int64
		if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch changes: %w", err)
		}
		if v != last {
			last = v
			fn()
		}
	}
}
