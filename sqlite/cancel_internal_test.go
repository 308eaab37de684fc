package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/query"
)

// costlyQuery is 200 OR'd key-less terms that match nothing, and one that matches the first
// document, so that the statement yields a first row at once and then scans the rest.
func costlyQuery() query.Query {
	c := &query.Complex{Operator: "OR", Queries: []query.Query{&query.Simple{Key: "title", Value: "needle"}}}
	for i := range 200 {
		c.Queries = append(c.Queries, &query.Simple{Value: fmt.Sprintf("%%zq%dq%%", i)})
	}
	return c
}

// seedCostly imports n documents of a few fields each, the first titled "needle".
func seedCostly(tb testing.TB, db *DB, n int) {
	tb.Helper()
	var b strings.Builder
	for i := range n {
		title := fmt.Sprintf("Person %d", i)
		if i == 0 {
			title = "needle"
		}
		fmt.Fprintf(&b, `{"id":"person_module/%d","doc":{"portal_type":"Person","title":%q,"first_name":"Ana %d","last_name":"Lima","email":"a%d@example.org","city":"Maputo","reference":"P-%06d"}}`+"\n", i, title, i, i, i)
	}
	if _, err := db.Import(context.Background(), strings.NewReader(b.String()), ImportOptions{Chunk: 10000}); err != nil {
		tb.Fatal(err)
	}
}

// TestQuery_CancelInterrupts: cancelling a running query's context stops the statement in
// SQLite — not only the caller's wait — whichever step it is in, and frees its connection.
func TestQuery_CancelInterrupts(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), FileName))
	db.QueryConns = 1
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seedCostly(t, db, 20000)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := db.Query(ctx, costlyQuery(), query.Options{})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query: %v after %v, want the deadline's error", err, took)
	}
	calls := fulltextCalls.Load()
	// The pool's only connection is free again: the statement no longer runs on it.
	if _, err := db.Query(context.Background(), &query.Simple{Key: "title", Value: "needle"}, query.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := fulltextCalls.Load() - calls; n != 0 {
		t.Errorf("the cancelled statement went on: %d more full-text calls", n)
	}
	t.Logf("cancelled after %v", took)
}
