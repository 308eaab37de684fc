package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
)

// newService opens a replica in a temporary directory (one query connection), seeds it with the JSON Lines records
// of seed ({"id","doc"} each) and returns the service over it with the policy text pol ("" is
// the example policy).
func newService(t testing.TB, pol string, seed ...string) *rpc.Service {
	t.Helper()
	ctx := context.Background()
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "gateway.db"))
	db.QueryConns = 1 // queries take turns: a query that did not stop would hold up the next
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if len(seed) > 0 {
		if _, err := db.Import(ctx, strings.NewReader(strings.Join(seed, "\n")), sqlite.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	text := []byte(pol)
	if pol == "" {
		text = gateway.ExamplePolicy
	}
	p, err := policy.Parse("policy.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	return rpc.NewService(db, p)
}

// call runs method as a peer of role with params (a JSON text) and returns the result as JSON.
func call(t testing.TB, s *rpc.Service, role, method, params string) (json.RawMessage, error) {
	t.Helper()
	res, err := s.Call(context.Background(), gateway.Actor{Peer: role + "-1", Role: role}, method, json.RawMessage(params))
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	return b, nil
}

// mustCall is call that fails the test on an error.
func mustCall(t testing.TB, s *rpc.Service, role, method, params string) json.RawMessage {
	t.Helper()
	b, err := call(t, s, role, method, params)
	if err != nil {
		t.Fatalf("%s %s %s: %v", role, method, params, err)
	}
	return b
}

// errOf returns the *gateway.Error of err, failing the test for a nil or another error.
func errOf(t testing.TB, err error) *gateway.Error {
	t.Helper()
	var e *gateway.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *gateway.Error", err, err)
	}
	return e
}
