package lan_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/sqlite"
)

var _ lan.PeerStore = (*sqlite.PeerService)(nil)

// TestMain lets the test binary double as a stand-alone gateway process (see
// runHelperGateway), so that a benchmark can measure a gateway's memory apart from its
// clients'.
func TestMain(m *testing.M) {
	if dir := os.Getenv(helperGatewayEnv); dir != "" {
		runHelperGateway(dir)
		return
	}
	os.Exit(m.Run())
}

// testLogger discards the server's log unless LAN_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("LAN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testGateway is a lan.Server on loopback with a real SQLite peer store.
type testGateway struct {
	*lan.Server
	DB    *sqlite.DB
	Peers *sqlite.PeerService
	Svc   *memService
}

// MustOpenGateway opens a server on 127.0.0.1 with ephemeral ports; configure adjusts it
// before Open. It is closed at the end of the test.
func MustOpenGateway(tb testing.TB, configure func(*lan.Server)) *testGateway {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), sqlite.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	db.Synchronous = "full"
	tb.Cleanup(func() { db.Close() })
	g := &testGateway{DB: db, Peers: sqlite.NewPeerService(db), Svc: newMemService()}
	g.Server = lan.NewServer(lan.Config{Listen: "127.0.0.1:0", Enrollment: lan.EnrollmentInvite, DefaultRole: "clerk"}, g.Peers, g.Svc)
	g.Logger = testLogger()
	if configure != nil {
		configure(g.Server)
	}
	if err := g.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			tb.Errorf("close server: %v", err)
		}
	})
	return g
}

// Invite creates a pairing code.
func (g *testGateway) Invite(tb testing.TB, name, role string) string {
	tb.Helper()
	code, err := g.Peers.CreateInvite(context.Background(), name, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return code
}

// Pair invites and pairs a peer over HTTP and returns its token.
func (g *testGateway) Pair(tb testing.TB, name, role string) string {
	tb.Helper()
	creds, err := client.Pair(context.Background(), nil, g.URL(), g.Invite(tb, name, role))
	if err != nil {
		tb.Fatal(err)
	}
	return creds.Token
}

// Dial connects a client with token, closed at the end of the test.
func (g *testGateway) Dial(tb testing.TB, token string) *client.Client {
	tb.Helper()
	c, err := client.Dial(context.Background(), g.URL(), client.Options{Token: token})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Connect pairs a new peer and connects it.
func (g *testGateway) Connect(tb testing.TB, name, role string) *client.Client {
	tb.Helper()
	return g.Dial(tb, g.Pair(tb, name, role))
}

// eventually retries cond until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memService is a map-backed stand-in for the gateway's RPC methods, for testing the
// transport only: the real methods run against the replica, the policy and the outbox.
type memService struct {
	mu      sync.Mutex
	docs    map[string]json.RawMessage
	nextID  int
	block   chan struct{} // "get" of id "block" waits for it to close
	started chan string   // method names, as calls start (when not nil)
}

func newMemService() *memService {
	return &memService{docs: map[string]json.RawMessage{}, block: make(chan struct{})}
}

func (m *memService) Call(ctx context.Context, peer gateway.Actor, method string, params json.RawMessage) (any, error) {
	if a, ok := gateway.ActorFromContext(ctx); !ok || a != peer {
		return nil, fmt.Errorf("actor missing from context")
	}
	if m.started != nil {
		m.started <- method
	}
	var p struct {
		ID   string          `json:"id"`
		Doc  json.RawMessage `json:"doc"`
		IDs  []string        `json:"ids"`
		Size int             `json:"size"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, fmt.Errorf("params reached the service unchecked: %w", err)
	}
	switch method {
	case gateway.MethodGet:
		switch p.ID {
		case "block":
			select {
			case <-m.block:
				return map[string]string{"id": "block"}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case "panic":
			panic("test panic")
		case "internal":
			return nil, errors.New("disk on fire at /secret/path")
		case "big":
			return map[string]string{"id": "big", "text": strings.Repeat("x", 1<<20)}, nil
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		doc, ok := m.docs[p.ID]
		if !ok {
			return nil, gateway.Errorf(gateway.ENOTFOUND, "no document %q", p.ID)
		}
		return doc, nil
	case gateway.MethodPut:
		m.mu.Lock()
		defer m.mu.Unlock()
		m.docs[p.ID] = p.Doc
		return map[string]string{"id": p.ID}, nil
	case gateway.MethodPost:
		m.mu.Lock()
		defer m.mu.Unlock()
		m.nextID++
		id := fmt.Sprintf("person_module/local-%d", m.nextID)
		m.docs[id] = p.Doc
		return map[string]string{"id": id}, nil
	case gateway.MethodAction:
		return nil, &gateway.Error{Code: gateway.EINVALID, Reason: "invalid", Message: "the document is not valid",
			Fields: map[string]string{"title": "required"}}
	case gateway.MethodRemove:
		return nil, gateway.ReasonErrorf(gateway.ECONFLICT, "key_reused", "this write key was used for another request")
	case gateway.MethodSync:
		states := map[string]any{}
		for _, id := range p.IDs {
			states[id] = map[string]string{"state": "synced"}
		}
		return map[string]any{"states": states}, nil
	case gateway.MethodStatus, gateway.MethodDescribe:
		return map[string]string{"peer": peer.Peer, "role": peer.Role}, nil
	case gateway.MethodAllDocs:
		return nil, gateway.ReasonErrorf(gateway.EUNAVAILABLE, "offline", "the link to head office is down")
	}
	return nil, fmt.Errorf("unexpected method %q", method)
}
