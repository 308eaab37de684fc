package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"sitesync.example/gateway/sqlite"
)

// TestStmtCache_ReuseNestingAndErrors exercises the connections' prepared statements: a
// statement runs again with new arguments; the same text queried while its first rows are
// still open gets its own statement; a failed statement is dropped and the next call works;
// a script of several statements runs whole.
func TestStmtCache_ReuseNestingAndErrors(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := db.Writer()
	if _, err := w.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT UNIQUE); CREATE TABLE u (k INTEGER)`); err != nil {
		t.Fatalf("script: %v", err)
	}
	for i := range 5 {
		if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, i, strings.Repeat("x", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, 9, "x"); err == nil {
		t.Fatal("a duplicate value was inserted")
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, 9, "nine"); err != nil {
		t.Fatalf("after a failed insert: %v", err)
	}
	const q = `SELECT k FROM t WHERE k >= ? ORDER BY k`
	conn, err := w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	outer, err := conn.QueryContext(ctx, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []int
	for outer.Next() {
		var a int
		if err := outer.Scan(&a); err != nil {
			t.Fatal(err)
		}
		inner, err := conn.QueryContext(ctx, q, a)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for inner.Next() {
			n++
		}
		inner.Close()
		pairs = append(pairs, n)
		if len(pairs) > 6 {
			t.Fatalf("the outer rows start over: %v (the inner query reused their statement)", pairs)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if want := []int{6, 5, 4, 3, 2, 1}; !equalInts(pairs, want) {
		t.Errorf("nested queries of one text: %v, want %v", pairs, want)
	}
	var n int
	if err := conn.QueryRowContext(ctx, q, 3).Scan(&n); err != nil || n != 3 {
		t.Errorf("the statement after its rows closed: %d, %v", n, err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
