// Package sqlite owns the gateway's database file: opening it with the pragmas durability
// needs, the embedded migrations, the replica's documents, compiling jIO queries to
// parameterised SQL, and the transactions that span tables (a write; applying ERP5's answers).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"sitesync.example/gateway"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// TimeLayout is how times are stored: UTC, fixed width, so text order is time order.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// DefaultBusyTimeout is how long a connection waits for a lock before SQLITE_BUSY. Operator
// commands run beside `serve`; five seconds covers a long group commit.
const DefaultBusyTimeout = 5 * time.Second

// FileName is the database's name inside the data directory.
const FileName = "gateway.db"

// DB is the gateway's database: one writer connection (immediate transactions, so a read
// never has to upgrade to a write lock) and a pool of read-only connections on the same file.
type DB struct {
	// Path is the database file.
	Path string
	// Synchronous is the synchronous pragma of the writer: "full" (the default: an
	// acknowledged write survives power loss) or "off" (benchmarks only).
	Synchronous string
	// Now returns the current time; tests replace it.
	Now func() time.Time
	// SiteID is stored on each new outbox row (docs/DESIGN.md §6); changing it affects new rows only.
	SiteID string

	// foreground counts the LAN's writes waiting or being written: the uplink's claims and
	// settles let them pass first (yieldToWrites).
	foreground atomic.Int64
	// Modules maps a portal type to the ERP5 module that holds it, for the local id of a post
	// without parent_relative_url; nil means gateway.DefaultModules() (other types follow
	// ERP5's naming convention, gateway.ModuleOf).
	Modules map[string]string

	// QueryConns is how many connections allDocs queries (Query) may use at once, apart from
	// the read pool that gets and the rest use, so that costly queries never hold up a get
	// (docs/DESIGN.md §4). 0 means DefaultQueryConns.
	QueryConns int

	// writes is the group committer of Write (write.go).
	writes writeQueue
	// held, when set, is the error every Write answers (HoldWrites).
	held atomic.Pointer[error]

	writer  *sql.DB
	reader  *sql.DB
	queries *sql.DB // Query's pool: QueryConns read-only connections
}

// DefaultQueryConns is DB.QueryConns's default: half the processors (at least one), so that
// queries running flat out leave the other half to gets, writes and the LAN.
func DefaultQueryConns() int { return max(1, runtime.NumCPU()/2) }

// NewDB returns a DB for the file at path; call Open before use.
func NewDB(path string) *DB {
	return &DB{Path: path, Synchronous: "full", Now: time.Now}
}

// Open opens (creating if needed) the database file, checks its pragmas and applies the
// embedded migrations under an exclusive lock. Several processes may open one new file at
// once; each waits for the other's migrations. A file whose schema is newer than this binary
// knows is refused.
func Open(ctx context.Context, path string) (*DB, error) {
	db := NewDB(path)
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	return db, nil
}

// Open opens the file named by db.Path; see the package-level Open.
func (db *DB) Open(ctx context.Context) (err error) {
	if db.Path == "" {
		return fmt.Errorf("open database: no path")
	}
	defer func() {
		if err != nil {
			err = openError(db.Path, err)
		}
	}()
	if dir := filepath.Dir(db.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	if db.Now == nil {
		db.Now = time.Now
	}
	if db.Synchronous == "" {
		db.Synchronous = "full"
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", DefaultBusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+db.Synchronous+")")
	q.Add("_time_format", "sqlite")
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Add("_txlock", "immediate")
	// The path goes into a file: URI, where "?", "#" and "%" would be read as URI syntax.
	uriPath := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(db.Path)
	if db.writer, err = sql.Open(driverName, "file:"+uriPath+"?"+wq.Encode()); err != nil {
		return err
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)

	if err := db.setWAL(ctx); err != nil {
		return err
	}
	if err := db.migrate(ctx); err != nil {
		return err
	}
	if err := db.verify(ctx); err != nil {
		return err
	}

	rq := url.Values{}
	for k, v := range q {
		rq[k] = v
	}
	rq.Add("_pragma", "query_only(1)")
	if db.reader, err = sql.Open(driverName, "file:"+uriPath+"?"+rq.Encode()); err != nil {
		return err
	}
	db.reader.SetMaxOpenConns(8)
	db.reader.SetMaxIdleConns(8)
	if db.queries, err = sql.Open("sqlite", "file:"+uriPath+"?"+rq.Encode()); err != nil {
		return err
	}
	n := db.QueryConns
	if n <= 0 {
		n = DefaultQueryConns()
	}
	db.queries.SetMaxOpenConns(n)
	db.queries.SetMaxIdleConns(n)
	return nil
}

// setWAL switches the file to WAL mode. A fresh file being opened by several processes at
// once may answer SQLITE_BUSY here without calling the busy handler, so it retries.
func (db *DB) setWAL(ctx context.Context) error {
	deadline := time.Now().Add(DefaultBusyTimeout)
	for {
		var mode string
		err := db.writer.QueryRowContext(ctx, `PRAGMA journal_mode=wal`).Scan(&mode)
		if err == nil && mode == "wal" {
			return nil
		}
		if err == nil {
			return fmt.Errorf("journal_mode is %q, want wal", mode)
		}
		if !IsBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("set WAL: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// verify checks that the writer runs with the pragmas durability depends on.
func (db *DB) verify(ctx context.Context) error {
	checks := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"synchronous", map[string]string{"full": "2", "off": "0", "normal": "1", "extra": "3"}[db.Synchronous]},
	}
	for _, c := range checks {
		var got string
		if err := db.writer.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			return fmt.Errorf("read %s: %w", c.pragma, err)
		}
		if got != c.want {
			return fmt.Errorf("%s is %s, want %s", c.pragma, got, c.want)
		}
	}
	return nil
}

// migrations returns the embedded migration names in order.
func migrations() ([]string, error) {
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// SchemaVersion is the number of migrations this binary knows.
func SchemaVersion() int {
	names, _ := migrations()
	return len(names)
}

// ErrSchemaTooNew is returned by Open for a database written by a newer gateway.
var ErrSchemaTooNew = errors.New("database schema is newer than this gateway; upgrade the gateway")

// migrate applies the migrations the file lacks, each in the one exclusive transaction that
// also records it, so concurrent starters serialise and none applies a migration twice.
func (db *DB) migrate(ctx context.Context) error {
	names, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN EXCLUSIVE`); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	done := false
	defer func() {
		if !done {
			conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[string]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT name FROM migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[n] = true
	}
	rows.Close()
	known := map[string]bool{}
	for _, n := range names {
		known[strings.TrimPrefix(n, "migration/")] = true
	}
	for n := range applied {
		if !known[n] {
			return fmt.Errorf("%w (it has migration %s)", ErrSchemaTooNew, n)
		}
	}
	for _, name := range names {
		short := strings.TrimPrefix(name, "migration/")
		if applied[short] {
			continue
		}
		buf, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", short, err)
		}
		if _, err := conn.ExecContext(ctx, string(buf)); err != nil {
			return fmt.Errorf("migrate %s: %w", short, err)
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO migrations (name) VALUES (?)`, short); err != nil {
			return fmt.Errorf("migrate %s: %w", short, err)
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, fmt.Sprint(len(names))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	done = true
	return nil
}

// openError names the database file in a failure to open it and, for the failures with a
// usual cause, says what to do: an operator reads it on a console, often in a hurry.
func openError(path string, err error) error {
	var hint string
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			hint = "another process holds the database locked; is another gateway serve running on this data directory?"
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			hint = "the file is damaged or not a gateway database; restore a backup with gateway restore"
		case sqlite3.SQLITE_CANTOPEN:
			hint = "the file cannot be opened; check that it is a regular file the gateway may read and write"
		case sqlite3.SQLITE_FULL:
			hint = "the disk is full"
		}
	}
	if hint != "" {
		return fmt.Errorf("open database %s: %w (%s)", path, err, hint)
	}
	return fmt.Errorf("open database %s: %w", path, err)
}

// Close closes the pools. It is safe to call more than once.
func (db *DB) Close() error {
	var errs []error
	if db.queries != nil {
		errs = append(errs, db.queries.Close())
		db.queries = nil
	}
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
		db.reader = nil
	}
	if db.writer != nil {
		errs = append(errs, db.writer.Close())
		db.writer = nil
	}
	return errors.Join(errs...)
}

// Writer returns the single writer connection pool. Transactions begun on it are IMMEDIATE.
func (db *DB) Writer() *sql.DB { return db.writer }

// Reader returns the read-only pool.
func (db *DB) Reader() *sql.DB { return db.reader }

// NowText returns db.Now() in TimeLayout.
func (db *DB) NowText() string { return FormatTime(db.Now()) }

// FormatTime returns t in TimeLayout (UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime parses a time stored in TimeLayout; "" gives the zero time.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(TimeLayout, s)
}

// Meta returns the value of a meta key, and "" if it is not set.
func (db *DB) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetMeta sets a meta key.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	_, err := db.writer.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return FormatError(err)
}

// InTx runs fn in one writer transaction (BEGIN IMMEDIATE) and commits it; an error from fn
// rolls it back, and so does a failed commit (a full disk), so the connection never stays
// inside a transaction.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.writeTx(ctx, fn)
}

// IsBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func IsBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	var ge *gateway.Error
	return errors.As(err, &ge) && ge.Code == gateway.EUNAVAILABLE && ge.Reason == ReasonBusy
}

// ReasonBusy refines gateway.EUNAVAILABLE: another connection (a `docs import` without
// --chunk, a restore) held the database's write lock for longer than the busy timeout. The
// request changed nothing and may be sent again (docs/DESIGN.md §3, Errors).
const ReasonBusy = "busy"

// FormatError maps driver errors to gateway errors where a caller can act on them: a full
// disk becomes ENOSPACE, a constraint ECONFLICT, a lock held past the busy timeout
// EUNAVAILABLE with ReasonBusy (retryable). Others pass through unchanged.
func FormatError(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return &gateway.Error{Code: gateway.ENOSPACE, Message: "the gateway's disk is full; the write was not stored"}
		case sqlite3.SQLITE_CONSTRAINT:
			return &gateway.Error{Code: gateway.ECONFLICT, Message: "the write conflicts with stored data"}
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return &gateway.Error{Code: gateway.EUNAVAILABLE, Reason: ReasonBusy,
				Message: "the gateway's database is busy (an import or a restore holds it); nothing was stored, try again"}
		}
	}
	return err
}
