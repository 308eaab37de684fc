package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SyncCursor is one downlink scope's row of sync_cursors: where its pulls stand.
type SyncCursor struct {
	// Scope names the scope (upstream.scopes[].name).
	Scope string
	// Cursor is the downlink's position in the scope, JSON text the downlink alone reads
	// (ERP5's opaque cursor, a modification date and id); "" is none (NULL): start over.
	Cursor string
	// Complete is set once the scope's initial sync finished: a document of the scope that
	// the replica lacks is then not at ERP5 either (docs/DESIGN.md §4).
	Complete bool
	// FreshAt is when the replica last heard from ERP5 for the scope; the zero time leaves the
	// stored value as it is.
	FreshAt time.Time
	// UpdatedAt is when the row last changed (read only).
	UpdatedAt time.Time
}

// SyncCursors returns every scope's cursor, by scope name.
func (db *DB) SyncCursors(ctx context.Context) (map[string]SyncCursor, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT scope, coalesce(cursor, ''), complete,
		coalesce(fresh_at, ''), updated_at FROM sync_cursors`)
	if err != nil {
		return nil, fmt.Errorf("sync cursors: %w", err)
	}
	defer rows.Close()
	out := map[string]SyncCursor{}
	for rows.Next() {
		var c SyncCursor
		var fresh, upd string
		if err := rows.Scan(&c.Scope, &c.Cursor, &c.Complete, &fresh, &upd); err != nil {
			return nil, fmt.Errorf("sync cursors: %w", err)
		}
		c.FreshAt, _ = ParseTime(fresh)
		c.UpdatedAt, _ = ParseTime(upd)
		out[c.Scope] = c
	}
	return out, rows.Err()
}

// SetSyncCursors stores cursors in one transaction (offline seeding, a scope reset).
func (db *DB) SetSyncCursors(ctx context.Context, cursors []SyncCursor) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		now := FormatTime(db.Now())
		for _, c := range cursors {
			if err := setCursorTx(ctx, tx, c, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSyncCursors forgets the cursors of scopes that are no longer configured.
func (db *DB) DeleteSyncCursors(ctx context.Context, scopes []string) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		for _, s := range scopes {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sync_cursors WHERE scope = ?`, s); err != nil {
				return fmt.Errorf("delete sync cursor %s: %w", s, err)
			}
		}
		return nil
	})
}

// setCursorTx stores c inside tx; a zero FreshAt keeps the stored one.
func setCursorTx(ctx context.Context, tx *sql.Tx, c SyncCursor, now string) error {
	if c.Scope == "" {
		return fmt.Errorf("set sync cursor: no scope name")
	}
	var fresh any
	if !c.FreshAt.IsZero() {
		fresh = FormatTime(c.FreshAt)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO sync_cursors (scope, cursor, complete, fresh_at, updated_at)
		VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (scope) DO UPDATE SET cursor = excluded.cursor, complete = excluded.complete,
			fresh_at = coalesce(excluded.fresh_at, sync_cursors.fresh_at), updated_at = excluded.updated_at`,
		c.Scope, nullString(c.Cursor), c.Complete, fresh, now)
	if err != nil {
		return fmt.Errorf("set sync cursor %s: %w", c.Scope, FormatError(err))
	}
	return nil
}
