package sqlite

import (
	"context"
	"fmt"
)

// TypeCounts returns how many documents the replica holds of each portal type (tombstones
// included: a query scans them too), from the "=" index, without reading a body. The rpc
// layer bounds a query's cost with it before the query runs (docs/DESIGN.md §4).
func (db *DB) TypeCounts(ctx context.Context) (map[string]int, error) {
	rows, err := db.reader.QueryContext(ctx,
		`SELECT value, count(*) FROM doc_keys WHERE key = 'portal_type' GROUP BY value`)
	if err != nil {
		return nil, fmt.Errorf("count documents: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, fmt.Errorf("count documents: %w", err)
		}
		out[t] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count documents: %w", err)
	}
	return out, nil
}
