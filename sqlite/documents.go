package sqlite

// The replica's documents: one row of the documents table each, the body stored as JSONB
// exactly as given (json(body) gives back its key order and number literals) and its id a
// relative URL (gateway.ValidateID). A removed document stays as a tombstone (deleted = 1),
// which reads and queries never return.
//
// Helpers for code of this package that works inside its own write transaction (the write
// path, the import):
//
//	getDocumentTx(ctx, tx, id) (body json.RawMessage, portalType string, found bool, err error)
//	    the live document id (tombstones are not found; no id_map resolution); body is the
//	    stored JSON text.
//	readDocument(ctx, q, id) (storedDocument, bool, error)
//	    every column of the row id, tombstone or not; q is a *sql.Tx, *sql.DB or *sql.Conn.
//	resolveID(ctx, q, id) (string, error)
//	    the id a local id became, following id_map (id itself when it maps to nothing).
//	putDocumentTx(ctx, tx, d storedDocument, now string) (rowid int64, err error)
//	    stores d (live), replacing the row of the same id in place so it keeps its rowid,
//	    which is its place in the unsorted order.
//	ParseBody(body) (portalType string, err error)
//	    checks a body before it is stored (EINVALID).
//
// Writing the documents table with plain SQL is fine as well (store body with jsonb(?)):
// triggers keep the query index doc_keys up to date (migration/0002_documents.sql).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"sitesync.example/gateway"
)

// maxIDMapHops bounds how many id_map links GetDocument follows (a local parent renamed by
// ERP5 can chain one local id to another); it also stops a cycle.
const maxIDMapHops = 8

// queryer is what the read helpers need: *sql.DB, *sql.Tx and *sql.Conn have it.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// storedDocument is one row of the documents table. Body and UpstreamBody are JSON text;
// a nil UpstreamBody and an empty UpstreamVersion stand for NULL.
type storedDocument struct {
	RowID           int64
	ID              string
	PortalType      string
	Body            json.RawMessage
	UpstreamBody    json.RawMessage
	UpstreamVersion string
	Deleted         bool
	UpdatedAt       string
}

// GetDocument returns the live document id. An id the replica lacks is looked up in id_map,
// which maps the local ids the gateway handed out to the ERP5 ids they became; the document
// returned then carries its current id. Errors: EINVALID for an id that is not a relative
// URL, ENOTFOUND when there is no such live document.
func (db *DB) GetDocument(ctx context.Context, id string) (*gateway.Document, error) {
	if err := gateway.ValidateID(id); err != nil {
		return nil, err
	}
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("get document: %w", err)
	}
	defer tx.Rollback()
	cur := id
	for range maxIDMapHops + 1 {
		d, found, err := readDocument(ctx, tx, cur)
		if err != nil {
			return nil, err
		}
		if found && !d.Deleted {
			return &gateway.Document{ID: d.ID, PortalType: d.PortalType, Body: d.Body}, nil
		}
		next, err := mappedID(ctx, tx, cur)
		if err != nil {
			return nil, err
		}
		if next == "" || next == cur {
			break
		}
		cur = next
	}
	return nil, gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
}

// getDocumentTx returns the live document id as stored: its body (JSON text) and portal_type
// column; found is false for a missing id or a tombstone. It does not follow id_map.
func getDocumentTx(ctx context.Context, tx *sql.Tx, id string) (body json.RawMessage, portalType string, found bool, err error) {
	d, found, err := readDocument(ctx, tx, id)
	if err != nil || !found || d.Deleted {
		return nil, "", false, err
	}
	return d.Body, d.PortalType, true, nil
}

// readDocument returns the row of id, tombstone or not.
func readDocument(ctx context.Context, q queryer, id string) (storedDocument, bool, error) {
	var d storedDocument
	var pt, upBody, upVersion sql.NullString
	var body string
	err := q.QueryRowContext(ctx, `SELECT rowid, id, portal_type, json(body), json(upstream_body),
		upstream_version, deleted, updated_at FROM documents WHERE id = ?`, id).
		Scan(&d.RowID, &d.ID, &pt, &body, &upBody, &upVersion, &d.Deleted, &d.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("read document %s: %w", id, err)
	}
	d.PortalType, d.Body, d.UpstreamVersion = pt.String, json.RawMessage(body), upVersion.String
	if upBody.Valid {
		d.UpstreamBody = json.RawMessage(upBody.String)
	}
	return d, true, nil
}

// mappedID returns what id_map maps id to, or "".
func mappedID(ctx context.Context, q queryer, id string) (string, error) {
	var to string
	err := q.QueryRowContext(ctx, `SELECT erp5_id FROM id_map WHERE local_id = ?`, id).Scan(&to)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read id map: %w", err)
	}
	return to, nil
}

// resolveID follows id_map from id (at most maxIDMapHops links) and returns the id it ends
// at: id itself when it maps to nothing.
func resolveID(ctx context.Context, q queryer, id string) (string, error) {
	cur := id
	for range maxIDMapHops {
		next, err := mappedID(ctx, q, cur)
		if err != nil {
			return "", err
		}
		if next == "" || next == cur {
			break
		}
		cur = next
	}
	return cur, nil
}

// putDocumentSQL stores a live document, replacing the row of the same id in place; its
// parameters are putDocumentArgs. It has no RETURNING clause: that costs an import about a
// quarter of its time; the import tells a new row from a replaced one by the last inserted
// rowid instead.
const putDocumentSQL = `INSERT INTO documents
	(id, portal_type, body, upstream_body, upstream_version, deleted, updated_at)
	VALUES (?, ?, jsonb(?), jsonb(?), ?, 0, ?)
	ON CONFLICT (id) DO UPDATE SET portal_type = excluded.portal_type, body = excluded.body,
		upstream_body = excluded.upstream_body, upstream_version = excluded.upstream_version,
		deleted = 0, updated_at = excluded.updated_at`

// putDocumentArgs returns the parameters of putDocumentSQL.
func putDocumentArgs(d storedDocument, now string) []any {
	var upBody any
	if d.UpstreamBody != nil {
		upBody = string(d.UpstreamBody)
	}
	return []any{d.ID, nullString(d.PortalType), string(d.Body), upBody, nullString(d.UpstreamVersion), now}
}

// putDocumentTx stores d as a live document: a new row, or the row of the same id replaced
// in place (keeping its rowid). d.Body and d.UpstreamBody are JSON text, checked by the
// caller (ParseBody); an empty PortalType or UpstreamVersion is stored as NULL. It returns
// the row's rowid.
func putDocumentTx(ctx context.Context, tx *sql.Tx, d storedDocument, now string) (int64, error) {
	if _, err := tx.ExecContext(ctx, putDocumentSQL, putDocumentArgs(d, now)...); err != nil {
		return 0, fmt.Errorf("store document %s: %w", d.ID, FormatError(err))
	}
	var rowid int64
	if err := tx.QueryRowContext(ctx, `SELECT rowid FROM documents WHERE id = ?`, d.ID).Scan(&rowid); err != nil {
		return 0, fmt.Errorf("store document %s: %w", d.ID, err)
	}
	return rowid, nil
}

// nullString is s, or NULL when s is empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ParseBody checks a document body before it is stored and returns its portal_type (the
// top-level "portal_type" when it is a string, else ""). A body must be a JSON object in
// valid UTF-8 without two top-level members of the same name (JavaScript would keep only the
// last; the replica could not answer queries on the first). Errors: EINVALID.
func ParseBody(body []byte) (portalType string, err error) {
	if !utf8.Valid(body) {
		return "", gateway.Errorf(gateway.EINVALID, "the document is not valid UTF-8")
	}
	if !json.Valid(body) {
		return "", gateway.Errorf(gateway.EINVALID, "the document is not valid JSON")
	}
	return scanBody(body)
}

// scanBody checks the top level of a valid JSON text: an object with unique member names.
// It returns the portal_type member when it is a string.
func scanBody(b []byte) (portalType string, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", gateway.Errorf(gateway.EINVALID, "the document is not a JSON object")
	}
	i++
	seen := map[string]bool{}
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' {
			return portalType, nil
		}
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		end := skipString(b, i)
		key, err := jsonStringValue(b[i:end])
		if err != nil {
			return "", gateway.Errorf(gateway.EINVALID, "the document is not valid JSON")
		}
		if seen[key] {
			return "", gateway.Errorf(gateway.EINVALID, "the document has the member %q twice", key)
		}
		seen[key] = true
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // ':'
		vend := skipValue(b, i)
		if key == "portal_type" && i < len(b) && b[i] == '"' {
			if pt, err := jsonStringValue(b[i:vend]); err == nil {
				portalType = pt
			}
		}
		i = vend
	}
}

// jsonStringValue decodes a JSON string literal, quickly when it has no escapes.
func jsonStringValue(lit []byte) (string, error) {
	if len(lit) >= 2 && lit[0] == '"' && lit[len(lit)-1] == '"' {
		inner := lit[1 : len(lit)-1]
		plain := true
		for _, c := range inner {
			if c == '\\' || c == '"' {
				plain = false
				break
			}
		}
		if plain {
			return string(inner), nil
		}
	}
	var s string
	err := json.Unmarshal(lit, &s)
	return s, err
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value starting at b[i] (valid JSON).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}
