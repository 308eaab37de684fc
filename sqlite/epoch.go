package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"sitesync.example/gateway/outbox"
)

// Meta keys of the outbox's identity.
const (
	// MetaEpoch is the running epoch: 128 random bits in hex, made anew at every start of
	// serve, by restore and by promote (docs/DESIGN.md §6, Identity).
	MetaEpoch = "epoch"
	// MetaEpochAt is when MetaEpoch was made.
	MetaEpochAt = "epoch_at"
	// MetaBackupAt is set in a backup file: when it was taken.
	MetaBackupAt = "backup_at"
	// MetaRetentionDays is how long ERP5 keeps its dedupe records, as its receiver last
	// advertised (the uplink records it); restore refuses a backup older than that.
	MetaRetentionDays = "erp5_retention_days"
)

// NewEpochID returns a fresh epoch: 128 random bits in hex.
func NewEpochID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// NewEpoch makes a new epoch and stores it as the running one: rows queued from now on carry
// it. serve calls it at every start, before anything is claimed; restore and promote too.
func (db *DB) NewEpoch(ctx context.Context) (string, error) {
	return db.newEpoch(ctx, "serve start")
}

// NewProcessEpoch gives a process that writes (an operator command queueing entries) its own
// epoch when serve is down (docs/DESIGN.md §6: every process that writes makes a new epoch,
// so a database copied back and written to again never reuses a key another copy sent).
// While serve runs (it holds the data directory's lock) the command's rows take serve's
// running epoch, and serving is true. why goes into the audit line.
func (db *DB) NewProcessEpoch(ctx context.Context, why string) (epoch string, serving bool, err error) {
	lock, err := lockDirShared(filepath.Dir(db.Path))
	var held *HeldError
	if errors.As(err, &held) {
		epoch, err = db.Epoch(ctx)
		return epoch, true, err
	}
	if err != nil {
		return "", false, err
	}
	// Held while the epoch is made: serve does not start in between (it would make its own,
	// which the rows would then carry; either way a new one).
	defer lock.Release()
	epoch, err = db.newEpoch(ctx, why)
	return epoch, false, err
}

// newEpoch makes a new epoch, recording why in the audit table.
func (db *DB) newEpoch(ctx context.Context, why string) (string, error) {
	epoch := NewEpochID()
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		return setEpochTx(ctx, tx, epoch, db.Now(), why)
	})
	if err != nil {
		return "", fmt.Errorf("new epoch: %w", FormatError(err))
	}
	return epoch, nil
}

func setEpochTx(ctx context.Context, tx *sql.Tx, epoch string, now time.Time, why string) error {
	for k, v := range map[string]string{MetaEpoch: epoch, MetaEpochAt: FormatTime(now)} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
			return err
		}
	}
	return auditTx(ctx, tx, now, "gateway", "epoch", fmt.Sprintf("new epoch %s (%s)", epoch, why))
}

// Epoch returns the running epoch (the latest made), making one when the database has none.
func (db *DB) Epoch(ctx context.Context) (string, error) {
	var epoch string
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaEpoch).Scan(&epoch)
	if err == nil && epoch != "" {
		return epoch, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("epoch: %w", err)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		epoch, err = epochTx(ctx, tx, db.Now())
		return err
	})
	return epoch, err
}

// epochTx reads the running epoch inside tx, making one when there is none (writes made
// while serve is down take the latest epoch).
func epochTx(ctx context.Context, tx *sql.Tx, now time.Time) (string, error) {
	var epoch string
	err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaEpoch).Scan(&epoch)
	if err == nil && epoch != "" {
		return epoch, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	epoch = NewEpochID()
	if err := setEpochTx(ctx, tx, epoch, now, "first write"); err != nil {
		return "", err
	}
	return epoch, nil
}

// RecoverInflight turns entries left inflight by a process that stopped into uncertain (they
// may have been applied; ERP5's results query settles them). serve calls it at start, after
// NewEpoch and before its uplink claims; never while another process may be sending.
func (db *DB) RecoverInflight(ctx context.Context) (int, error) {
	var n int
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = outbox.RecoverInflight(ctx, tx, db.Now())
		return err
	})
	return n, err
}

// auditTx appends an audit line inside tx.
func auditTx(ctx context.Context, tx *sql.Tx, now time.Time, actor, action, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)`,
		FormatTime(now), actor, action, detail)
	return err
}

// HoldWrites makes Write refuse every write with err until ReleaseWrites: serve started on a
// full disk answers reads but takes no write before its new epoch is made (docs/DESIGN.md §6).
func (db *DB) HoldWrites(err error) { db.held.Store(&err) }

// ReleaseWrites lets writes through again after HoldWrites.
func (db *DB) ReleaseWrites() { db.held.Store(nil) }

// heldErr returns the error writes are held with, nil when they are not.
func (db *DB) heldErr() error {
	if p := db.held.Load(); p != nil {
		return *p
	}
	return nil
}
