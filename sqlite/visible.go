package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// DocumentBodies returns the stored body of each of ids that the replica holds, a removed
// document's (its tombstone) included, following id_map from an id the gateway handed out to
// the id it became. An id the replica has never held is absent from the result. The rpc
// layer uses it to answer `sync` for readable documents only (docs/DESIGN.md §3, Errors).
func (db *DB) DocumentBodies(ctx context.Context, ids []string) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		to, err := resolveID(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		d, found, err := readDocument(ctx, tx, to)
		if err != nil {
			return nil, err
		}
		if found {
			out[id] = d.Body
		}
	}
	return out, nil
}
