package sqlite

import (
	"context"
	"time"
)

// FreshAt returns, per downlink scope, when the replica last heard from ERP5 for it. Scopes
// never synced are absent.
func (db *DB) FreshAt(ctx context.Context) (map[string]time.Time, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT scope, fresh_at FROM sync_cursors WHERE fresh_at IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var scope, at string
		if err := rows.Scan(&scope, &at); err != nil {
			return nil, err
		}
		if t, err := ParseTime(at); err == nil {
			out[scope] = t
		}
	}
	return out, rows.Err()
}
