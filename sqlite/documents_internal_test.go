package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestDocumentHelpers covers the helpers the write path uses inside its transactions.
func TestDocumentHelpers(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var first, again int64
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if first, err = putDocumentTx(ctx, tx, storedDocument{ID: "a/1", PortalType: "P", Body: []byte(`{"k":1.50}`)}, "t1"); err != nil {
			return err
		}
		if _, err := putDocumentTx(ctx, tx, storedDocument{ID: "a/2", Body: []byte(`{}`)}, "t1"); err != nil {
			return err
		}
		again, err = putDocumentTx(ctx, tx, storedDocument{ID: "a/1", PortalType: "Q", Body: []byte(`{"k":2}`),
			UpstreamBody: []byte(`{"k":2}`), UpstreamVersion: "v"}, "t2")
		if err != nil {
			return err
		}
		body, pt, found, err := getDocumentTx(ctx, tx, "a/1")
		if err != nil || !found || pt != "Q" || string(body) != `{"k":2}` {
			t.Errorf("getDocumentTx = %s, %q, %v, %v", body, pt, found, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET deleted = 1 WHERE id = 'a/2'`); err != nil {
			return err
		}
		if _, _, found, err := getDocumentTx(ctx, tx, "a/2"); found || err != nil {
			t.Errorf("getDocumentTx of a tombstone: found %v, %v", found, err)
		}
		if _, _, found, err := getDocumentTx(ctx, tx, "a/3"); found || err != nil {
			t.Errorf("getDocumentTx of a missing id: found %v, %v", found, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Errorf("replacing a/1 moved it from rowid %d to %d", first, again)
	}
	d, found, err := readDocument(ctx, db.Reader(), "a/1")
	if err != nil || !found {
		t.Fatalf("readDocument: %v, %v", found, err)
	}
	if d.RowID != first || d.PortalType != "Q" || string(d.UpstreamBody) != `{"k":2}` || d.UpstreamVersion != "v" || d.Deleted || d.UpdatedAt != "t2" {
		t.Errorf("readDocument = %+v", d)
	}
	if d, _, _ := readDocument(ctx, db.Reader(), "a/2"); !d.Deleted || d.UpstreamBody != nil {
		t.Errorf("readDocument of a tombstone = %+v", d)
	}
}
