package rpc_test

import (
	"context"
	"database/sql"
	"testing"

	_ "modernc.org/sqlite"

	"sitesync.example/gateway"
	"sitesync.example/gateway/sqlite"
)

// TestBusy_Retryable: while another connection holds the database's write lock past the
// busy timeout (a `docs import` without --chunk does), a write is answered 503 busy, never
// 500, stores nothing, and the same request (same write key) succeeds once the lock is gone.
func TestBusy_Retryable(t *testing.T) {
	s := newService(t, "", scopeSeed...)
	other, err := sql.Open("sqlite", "file:"+s.DB.Path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	const post = `{"doc":{"portal_type":"Person","title":"Ann"},"key":"k1"}`
	_, err = call(t, s, "clerk", "post", post)
	e := errOf(t, err)
	if e.Code != gateway.EUNAVAILABLE || e.Reason != sqlite.ReasonBusy || gateway.Status(e.Code) != 503 {
		t.Fatalf("post while the writer is held: %+v, want 503 busy", e)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	var n int
	s.DB.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
	if n != 0 {
		t.Errorf("the refused post queued %d entries", n)
	}
	mustCall(t, s, "clerk", "post", post)
	s.DB.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
	if n != 1 {
		t.Errorf("after the retry: %d entries, want 1", n)
	}
}
