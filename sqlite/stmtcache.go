package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
)

// driverName is the database/sql driver the gateway's own connections use: modernc's SQLite
// driver, with a cache of prepared statements per connection.
//
// database/sql prepares a statement anew for every Exec or Query with arguments, and SQLite's
// parser and code generator then cost more than running the statement: a profile of the
// uplink draining a backlog spent over a third of its CPU in sqlite3Prepare. Each connection
// therefore keeps the statements its Exec and Query calls prepared, keyed by their text, and
// runs them again with new arguments. A statement is used by one call at a time (a second
// Query of the same text while the first's rows are open prepares its own); scripts (text
// holding several statements) are never cached; a statement that failed is dropped.
const driverName = "sqlite-gateway"

// stmtCacheSize bounds the statements one connection keeps; past it the cache starts over.
const stmtCacheSize = 256

func init() {
	db, err := sql.Open("sqlite", "")
	if err != nil {
		panic(err)
	}
	sql.Register(driverName, &cachingDriver{inner: db.Driver()})
	db.Close()
}

type cachingDriver struct{ inner driver.Driver }

// innerConn is what modernc's connection provides.
type innerConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// Open opens a connection of the inner driver and wraps it.
func (d *cachingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.inner.Open(name)
	if err != nil {
		return nil, err
	}
	ic, ok := c.(innerConn)
	if !ok {
		c.Close()
		return nil, errors.New("sqlite: the driver's connection lacks a context method")
	}
	return &cachingConn{innerConn: ic, stmts: map[string]*cachedStmt{}}, nil
}

type cachedStmt struct {
	st   driver.Stmt
	busy bool // its rows are open
}

// cachingConn is a connection that keeps its prepared statements. database/sql uses a
// connection from one goroutine at a time, so it needs no lock.
type cachingConn struct {
	innerConn
	stmts map[string]*cachedStmt
}

// cacheable reports whether query is one statement (a script is run by the inner driver).
func cacheable(query string) bool {
	q := strings.TrimRight(strings.TrimSpace(query), ";")
	return q != "" && !strings.Contains(q, ";")
}

// stmt returns the cached statement for query, preparing it first; nil when it is busy or
// query is not cacheable.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if !cacheable(query) {
		return nil, nil
	}
	if s, ok := c.stmts[query]; ok {
		if s.busy {
			return nil, nil
		}
		return s, nil
	}
	st, err := c.innerConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if _, ok := st.(driver.StmtExecContext); !ok {
		st.Close()
		return nil, nil
	}
	if _, ok := st.(driver.StmtQueryContext); !ok {
		st.Close()
		return nil, nil
	}
	if len(c.stmts) >= stmtCacheSize {
		c.evictIdle()
	}
	s := &cachedStmt{st: st}
	c.stmts[query] = s
	return s, nil
}

// evictIdle closes every cached statement not in use.
func (c *cachingConn) evictIdle() {
	for q, s := range c.stmts {
		if !s.busy {
			s.st.Close()
			delete(c.stmts, q)
		}
	}
}

func (c *cachingConn) drop(query string, s *cachedStmt) {
	if c.stmts[query] == s {
		delete(c.stmts, query)
	}
	s.st.Close()
}

// ExecContext runs query through its cached statement.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.innerConn.ExecContext(ctx, query, args)
	}
	res, err := s.st.(driver.StmtExecContext).ExecContext(ctx, args)
	if err != nil {
		c.drop(query, s)
	}
	return res, err
}

// QueryContext runs query through its cached statement; the statement is busy until the
// rows are closed.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.innerConn.QueryContext(ctx, query, args)
	}
	rows, err := s.st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		c.drop(query, s)
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, s: s}, nil
}

// Close closes the cached statements, then the connection.
func (c *cachingConn) Close() error {
	for q, s := range c.stmts {
		s.st.Close()
		delete(c.stmts, q)
	}
	return c.innerConn.Close()
}

type cachedRows struct {
	driver.Rows
	s *cachedStmt
}

// Close closes the rows and frees their statement for the next call.
func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.s.busy = false
	return err
}
