package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// ImportOptions tunes Import.
type ImportOptions struct {
	// Chunk, when positive, commits every Chunk documents, so a failure keeps the chunks
	// before it. 0 imports everything in one transaction: all or nothing.
	Chunk int
	// Progress, when set, is called with the running totals every ProgressEvery documents
	// and after the last one.
	Progress func(ImportStats)
	// ProgressEvery is how often Progress is called; 0 means DefaultProgressEvery.
	ProgressEvery int
	// Enqueue, when set, is called for each document right after it is stored, inside the
	// same transaction; an error aborts the import like a bad line. It is the hook that
	// queues imported documents for ERP5 (`docs import --enqueue`); without it an import
	// only seeds the replica.
	Enqueue func(ctx context.Context, tx *sql.Tx, rec ImportRecord) error
}

// DefaultProgressEvery is how many documents pass between two Progress calls by default.
const DefaultProgressEvery = 10000

// ImportRecord is one document of an import, as read from its line.
type ImportRecord struct {
	// Line is the line the record starts on (1-based).
	Line int
	// ID is the document's relative URL.
	ID string
	// Doc is the body, JSON text as given.
	Doc json.RawMessage
	// PortalType is Doc's portal_type when it is a string.
	PortalType string
	// Version is ERP5's version of the document (upstream_version), when given.
	Version string
	// ModificationDate is the record's modification_date, when given.
	ModificationDate string
	// Replaced reports that a document with this id existed before (it was replaced).
	Replaced bool
}

// ImportStats counts what an import did.
type ImportStats struct {
	// Documents is how many records were stored, committed or not.
	Documents int
	// Created and Replaced split Documents into new ids and ids that existed.
	Created  int
	Replaced int
	// Committed is how many records are committed: all of Documents after a success; with a
	// Chunk, the chunks before a failure.
	Committed int
}

// Import reads documents and stores them in the replica. The input is JSON Lines or a JSON
// array of records {"id": RELATIVE_URL, "doc": {…}} which may also carry "version" (stored as
// ERP5's version of the document, with doc as its last known ERP5 state) and
// "modification_date" (accepted; the body carries its own). Any other key is an error. A record
// whose id exists replaces that document (which keeps its place in the unsorted order, and
// comes back to life if it was removed). Import writes no outbox rows unless opts.Enqueue does.
//
// Errors name the line: EINVALID for a record that is not valid, besides I/O and database
// errors. Without opts.Chunk nothing is stored on error; with it, the chunks committed before
// stay (ImportStats.Committed).
func (db *DB) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportStats, error) {
	imp := &importer{db: db, opts: opts}
	if imp.opts.ProgressEvery <= 0 {
		imp.opts.ProgressEvery = DefaultProgressEvery
	}
	err := imp.run(ctx, r)
	if imp.tx != nil {
		imp.tx.Rollback()
	}
	if err == nil && opts.Progress != nil {
		opts.Progress(imp.stats)
	}
	return imp.stats, err
}

// importer is one run of Import.
type importer struct {
	db    *DB
	opts  ImportOptions
	stats ImportStats

	tx       *sql.Tx
	put      *sql.Stmt // putDocumentSQL, prepared once per transaction (triggers make preparing it costly)
	now      string
	maxRowID int64 // the largest rowid before the transaction: rows above it are new
	top      int64 // the largest rowid stored so far: a new row's rowid is above it
	inChunk  int   // records stored in the open transaction
}

func (imp *importer) run(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	first, err := firstByte(br)
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if first == '[' {
		err = imp.readArray(ctx, br)
	} else {
		err = imp.readLines(ctx, br)
	}
	if err != nil {
		return err
	}
	return imp.commit(ctx)
}

// firstByte peeks at the first byte that is not white space.
func firstByte(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		switch c := b[n-1]; c {
		case ' ', '\t', '\r', '\n':
		default:
			return c, nil
		}
		if n == br.Size() {
			if _, err := br.Discard(n); err != nil {
				return 0, err
			}
			n = 0
		}
	}
}

// readLines imports JSON Lines: one record per line, blank lines skipped.
func (imp *importer) readLines(ctx context.Context, br *bufio.Reader) error {
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			if err := imp.record(ctx, line, b); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("import: line %d: %w", line, err)
		}
	}
}

// readArray imports a JSON array of records.
func (imp *importer) readArray(ctx context.Context, br *bufio.Reader) error {
	lr := &lineReader{r: br}
	dec := json.NewDecoder(lr)
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return gateway.Errorf(gateway.EINVALID, "line %d: %s", lr.lineAt(se.Offset), se.Error())
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return gateway.Errorf(gateway.EINVALID, "line %d: the JSON array is not closed", lr.lineAt(lr.n))
		}
		return fmt.Errorf("import: %w", err)
	}
	if _, err := dec.Token(); err != nil {
		return syntax(err)
	}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntax(err)
		}
		line := lr.lineAt(dec.InputOffset() - int64(len(raw)))
		if err := imp.record(ctx, line, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return gateway.Errorf(gateway.EINVALID, "line %d: data after the JSON array", lr.lineAt(dec.InputOffset()))
	}
	return nil
}

// lineReader counts the lines of what it reads, so that a byte offset the JSON decoder gives
// can be turned into a line number. Offsets are asked in increasing order, so it keeps only
// the newlines read but not yet passed.
type lineReader struct {
	r        io.Reader
	n        int64   // bytes read
	pending  []int64 // offsets of newlines read, not yet counted
	newlines int     // newlines before the last offset asked
}

func (lr *lineReader) Read(p []byte) (int, error) {
	n, err := lr.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			lr.pending = append(lr.pending, lr.n+int64(i))
		}
	}
	lr.n += int64(n)
	return n, err
}

// lineAt returns the 1-based line of byte offset off.
func (lr *lineReader) lineAt(off int64) int {
	i := sort.Search(len(lr.pending), func(i int) bool { return lr.pending[i] >= off })
	lr.newlines += i
	lr.pending = lr.pending[i:]
	return lr.newlines + 1
}

// recordKeys are the keys a record may have.
var recordKeys = []string{"id", "doc", "version", "modification_date"}

// parseRecord checks one record.
func parseRecord(line int, b []byte) (ImportRecord, error) {
	rec := ImportRecord{Line: line}
	bad := func(format string, args ...any) error {
		return gateway.Errorf(gateway.EINVALID, "line %d: %s", line, fmt.Sprintf(format, args...))
	}
	if !json.Valid(b) {
		return rec, bad("not valid JSON")
	}
	m, ok := recordMembers(b)
	if !ok {
		return rec, bad("not a JSON object {\"id\": …, \"doc\": {…}}")
	}
	for k := range m {
		if !slices.Contains(recordKeys, k) {
			return rec, bad("unknown key %q (a record has %s)", k, strings.Join(recordKeys, ", "))
		}
	}
	str := func(key string, required bool) (string, error) {
		raw, ok := m[key]
		if !ok || string(raw) == "null" {
			if required {
				return "", bad("no %q", key)
			}
			return "", nil
		}
		if raw[0] != '"' {
			return "", bad("%q is not a string", key)
		}
		s, err := jsonStringValue(raw)
		if err != nil {
			return "", bad("%q is not a string", key)
		}
		return s, nil
	}
	var err error
	if rec.ID, err = str("id", true); err != nil {
		return rec, err
	}
	if err := gateway.ValidateID(rec.ID); err != nil {
		return rec, bad("%s", gateway.ErrorMessage(err))
	}
	if rec.Version, err = str("version", false); err != nil {
		return rec, err
	}
	if rec.ModificationDate, err = str("modification_date", false); err != nil {
		return rec, err
	}
	doc, ok := m["doc"]
	if !ok {
		return rec, bad("no \"doc\"")
	}
	if !utf8.Valid(doc) {
		return rec, bad("doc: the document is not valid UTF-8")
	}
	if rec.PortalType, err = scanBody(doc); err != nil {
		return rec, bad("doc: %s", gateway.ErrorMessage(err))
	}
	rec.Doc = doc
	return rec, nil
}

// recordMembers splits the top-level object of a valid JSON text into its members' raw
// values (the last of duplicate names wins); ok is false when the text is not an object.
func recordMembers(b []byte) (map[string][]byte, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	m := make(map[string][]byte, 4)
	for i++; ; {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return m, true
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		end := skipString(b, i)
		key, err := jsonStringValue(b[i:end])
		if err != nil {
			return nil, false
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past ':'
		vend := skipValue(b, i)
		m[key] = b[i:vend]
		i = vend
	}
}

// record stores one record, opening a transaction (and committing the previous chunk) as
// needed.
func (imp *importer) record(ctx context.Context, line int, b []byte) error {
	rec, err := parseRecord(line, b)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if imp.tx == nil {
		if err := imp.begin(ctx); err != nil {
			return err
		}
	}
	d := storedDocument{ID: rec.ID, PortalType: rec.PortalType, Body: rec.Doc, UpstreamVersion: rec.Version}
	if rec.Version != "" {
		d.UpstreamBody = rec.Doc
	}
	res, err := imp.put.ExecContext(ctx, putDocumentArgs(d, imp.now)...)
	if err != nil {
		return fmt.Errorf("import: line %d: store document %s: %w", line, d.ID, FormatError(err))
	}
	// The last inserted rowid moves past top only when this record inserted a row; but a hook
	// may insert rows of its own, so with one, the row is looked up.
	rowid, err := res.LastInsertId()
	if err == nil && imp.opts.Enqueue != nil {
		err = imp.tx.QueryRowContext(ctx, `SELECT rowid FROM documents WHERE id = ?`, d.ID).Scan(&rowid)
	}
	if err != nil {
		return fmt.Errorf("import: line %d: store document %s: %w", line, d.ID, err)
	}
	rec.Replaced = rowid <= imp.top
	if rec.Replaced {
		imp.stats.Replaced++
	} else {
		imp.top = rowid
		imp.stats.Created++
	}
	if imp.opts.Enqueue != nil {
		if err := imp.opts.Enqueue(ctx, imp.tx, rec); err != nil {
			return fmt.Errorf("import: line %d: %w", line, err)
		}
	}
	imp.stats.Documents++
	imp.inChunk++
	if imp.opts.Progress != nil && imp.stats.Documents%imp.opts.ProgressEvery == 0 {
		imp.opts.Progress(imp.stats)
	}
	if imp.opts.Chunk > 0 && imp.inChunk >= imp.opts.Chunk {
		return imp.commit(ctx)
	}
	return nil
}

// begin opens the transaction of a chunk and suspends row-by-row indexing in it.
func (imp *importer) begin(ctx context.Context) error {
	tx, err := imp.db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("import: %w", FormatError(err))
	}
	imp.tx, imp.inChunk = tx, 0
	imp.now = imp.db.NowText()
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM documents`).Scan(&imp.maxRowID); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	imp.top = imp.maxRowID
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO doc_keys_deferred (x) VALUES (1)`); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if imp.put, err = tx.PrepareContext(ctx, putDocumentSQL); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// commit adds the doc_keys rows of the documents the transaction inserted (the rows it
// replaced were indexed by the update trigger), resumes row-by-row indexing and commits. The
// rows go in sorted, in one statement: then the index's pages are visited in order, once,
// instead of at random once per row, which makes an import about twice as fast (and sorting
// them all at once beats sorting batches of 5000).
func (imp *importer) commit(ctx context.Context) error {
	if imp.tx == nil {
		return nil
	}
	tx := imp.tx
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO doc_keys (key, value, doc)
		SELECT key, value, doc FROM doc_entries WHERE doc > ? ORDER BY key, value, doc`, imp.maxRowID); err != nil {
		return fmt.Errorf("import: index: %w", FormatError(err))
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM doc_keys_deferred`); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import: commit: %w", FormatError(err))
	}
	imp.tx = nil
	imp.stats.Committed = imp.stats.Documents
	return nil
}

// ExportRecord is one line of Export: the import format.
type ExportRecord struct {
	ID      string          `json:"id"`
	Doc     json.RawMessage `json:"doc"`
	Version string          `json:"version,omitempty"`
}

// exportBatch is how many documents Export reads per statement.
const exportBatch = 500

// Export writes the live documents matching q (nil: all), in the order they were first
// stored, as JSON Lines records Import reads back: {"id", "doc"}, plus "version" when the
// document is as ERP5 last sent it (its body is its last known ERP5 state). dateKeys types the
// query's date keys. It returns how many documents it wrote.
func (db *DB) Export(ctx context.Context, w io.Writer, q query.Query, dateKeys []string) (int, error) {
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	defer tx.Rollback()
	refs, err := queryRowIDs(ctx, tx, q, query.Options{DateKeys: dateKeys})
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	for len(refs) > 0 {
		batch := refs[:min(exportBatch, len(refs))]
		refs = refs[len(batch):]
		recs, err := exportRecords(ctx, tx, batch)
		if err != nil {
			return n, err
		}
		for _, rec := range recs {
			if err := enc.Encode(rec); err != nil {
				return n, fmt.Errorf("export: %w", err)
			}
			n++
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}

// exportRecords reads the records of a batch of documents, in the batch's order.
func exportRecords(ctx context.Context, tx *sql.Tx, refs []docRef) ([]ExportRecord, error) {
	var ids bytes.Buffer
	ids.WriteByte('[')
	for i, r := range refs {
		if i > 0 {
			ids.WriteByte(',')
		}
		fmt.Fprint(&ids, r.rowid)
	}
	ids.WriteByte(']')
	rows, err := tx.QueryContext(ctx, `SELECT d.rowid, json(d.body),
		CASE WHEN d.upstream_body = d.body THEN d.upstream_version END
		FROM documents d WHERE d.rowid IN (SELECT value FROM json_each(?))`, ids.String())
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	byRow := make(map[int64]ExportRecord, len(refs))
	for rows.Next() {
		var rowid int64
		var body string
		var version sql.NullString
		if err := rows.Scan(&rowid, &body, &version); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		byRow[rowid] = ExportRecord{Doc: json.RawMessage(body), Version: version.String}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	out := make([]ExportRecord, 0, len(refs))
	for _, r := range refs {
		rec := byRow[r.rowid]
		rec.ID = r.id
		out = append(out, rec)
	}
	return out, nil
}
