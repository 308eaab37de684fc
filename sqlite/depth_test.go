package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/sqlite"
)

// TestWrite_NestedTooDeep: a document nested deeper than MaxDocDepth is an invalid document
// (400), for a post and for a put's patch, and nothing is stored; MaxDocDepth levels are fine.
func TestWrite_NestedTooDeep(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	nest := func(n int) string { return strings.Repeat(`[`, n) + strings.Repeat(`]`, n) }
	ok, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPost,
		Body: []byte(`{"portal_type":"Person","title":"x","n":` + nest(sqlite.MaxDocDepth-1) + `}`)})
	if err != nil {
		t.Fatalf("%d levels: %v", sqlite.MaxDocDepth, err)
	}
	for _, w := range []sqlite.Write{
		{Op: sqlite.OpPost, Body: []byte(`{"portal_type":"Person","title":"x","n":` + nest(sqlite.MaxDocDepth) + `}`)},
		{Op: sqlite.OpPost, Body: []byte(`{"portal_type":"Person","title":"x","n":` + nest(1200) + `}`)},
		{Op: sqlite.OpPut, ID: ok.ID, Doc: map[string]any{"n": deep(1200)}},
	} {
		if _, err := db.Write(ctx, w); gateway.ErrorCode(err) != gateway.EINVALID {
			t.Errorf("%s nested too deep: %v, want invalid", w.Op, err)
		}
	}
	var n int
	db.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
	if n != 1 {
		t.Errorf("%d outbox entries, want the one valid post", n)
	}
}

func deep(n int) any {
	var v any = "leaf"
	for range n {
		v = map[string]any{"a": v}
	}
	return v
}
