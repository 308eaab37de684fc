package lan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
)

// stray waits for the next response that answers no pending call.
func stray(tb testing.TB, c *client.Client) wire.Response {
	tb.Helper()
	select {
	case r := <-c.Strays():
		return r
	case <-time.After(5 * time.Second):
		tb.Fatal("no reply")
	}
	return wire.Response{}
}

func TestRPC_ErrorShapes(t *testing.T) {
	g := MustOpenGateway(t, nil)
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	tests := []struct {
		name   string
		msg    string
		id     string // the reply's id, as JSON
		code   int
		status int    // for application errors
		reason string // for application errors
	}{
		{"ParseError", `{"jsonrpc":"2.0","id":1,"method":`, "null", -32700, 0, ""},
		{"ParseErrorGarbage", `hello`, "null", -32700, 0, ""},
		{"NotAnObject", `42`, "null", -32600, 0, ""},
		{"EmptyBatch", `[]`, "null", -32600, 0, ""},
		{"BadVersion", `{"jsonrpc":"1.0","id":2,"method":"get","params":{"id":"a"}}`, "2", -32600, 0, ""},
		{"NoMethod", `{"jsonrpc":"2.0","id":3}`, "3", -32600, 0, ""},
		{"MethodNotString", `{"jsonrpc":"2.0","id":4,"method":5}`, "4", -32600, 0, ""},
		{"BadID", `{"jsonrpc":"2.0","id":{"x":1},"method":"get","params":{"id":"a"}}`, "null", -32600, 0, ""},
		{"ScalarParams", `{"jsonrpc":"2.0","id":"s","method":"get","params":"a"}`, `"s"`, -32600, 0, ""},
		{"UnknownMethod", `{"jsonrpc":"2.0","id":5,"method":"drop_tables","params":{}}`, "5", -32601, 0, ""},
		{"ArrayParams", `{"jsonrpc":"2.0","id":6,"method":"get","params":["a"]}`, "6", -32602, 0, ""},
		{"MissingID", `{"jsonrpc":"2.0","id":7,"method":"get","params":{}}`, "7", -32602, 0, ""},
		{"IDNotString", `{"jsonrpc":"2.0","id":8,"method":"get","params":{"id":12}}`, "8", -32602, 0, ""},
		{"DocNotObject", `{"jsonrpc":"2.0","id":9,"method":"put","params":{"id":"a","doc":[1]}}`, "9", -32602, 0, ""},
		{"BadLimit", `{"jsonrpc":"2.0","id":10,"method":"allDocs","params":{"limit":"10"}}`, "10", -32602, 0, ""},
		{"BadSortOn", `{"jsonrpc":"2.0","id":11,"method":"allDocs","params":{"sort_on":[["title"]]}}`, "11", -32602, 0, ""},
		{"IDsNotStrings", `{"jsonrpc":"2.0","id":12,"method":"sync","params":{"ids":[1,2]}}`, "12", -32602, 0, ""},
		{"NotFound", `{"jsonrpc":"2.0","id":13,"method":"get","params":{"id":"person_module/404"}}`, "13", -32000, 404, "not_found"},
		{"Offline", `{"jsonrpc":"2.0","id":14,"method":"allDocs","params":{"query":"x"}}`, "14", -32000, 503, "offline"},
		{"KeyReused", `{"jsonrpc":"2.0","id":15,"method":"remove","params":{"id":"a","key":"k"}}`, "15", -32000, 409, "key_reused"},
		{"Internal", `{"jsonrpc":"2.0","id":16,"method":"get","params":{"id":"internal"}}`, "16", -32000, 500, "internal"},
		{"Panic", `{"jsonrpc":"2.0","id":17,"method":"get","params":{"id":"panic"}}`, "17", -32000, 500, "internal"},
		{"NullID", `{"jsonrpc":"2.0","id":null,"method":"get","params":{"id":"person_module/404"}}`, "null", -32000, 404, "not_found"},
		{"StringID", `{"jsonrpc":"2.0","id":"a\"b","method":"get","params":{"id":"person_module/404"}}`, `"a\"b"`, -32000, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.SendText(ctx, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			r := stray(t, c)
			if string(r.ID) != tc.id {
				t.Errorf("id = %s, want %s", r.ID, tc.id)
			}
			if r.Error == nil || r.Result != nil {
				t.Fatalf("reply has no error: %+v", r)
			}
			if r.Error.Code != tc.code || r.Error.Message == "" {
				t.Errorf("error = %+v, want code %d with a message", r.Error, tc.code)
			}
			if tc.status != 0 {
				if r.Error.Data == nil || r.Error.Data.Status != tc.status || r.Error.Data.Reason != tc.reason {
					t.Errorf("data = %+v, want status %d reason %s", r.Error.Data, tc.status, tc.reason)
				}
			} else if r.Error.Data != nil {
				t.Errorf("protocol error carries data %+v", r.Error.Data)
			}
			if strings.Contains(r.Error.Message, "/secret/path") {
				t.Errorf("internal detail leaked: %q", r.Error.Message)
			}
		})
	}
	// An invalid document's reply names the fields, for a form.
	err := c.Call(ctx, "action", map[string]string{"id": "a", "transition": "confirm"}, nil)
	var we *wire.Error
	if !errors.As(err, &we) || we.Data == nil || we.Data.Status != 400 || we.Data.Reason != "invalid" || we.Data.Fields["title"] != "required" {
		t.Errorf("action: %v (%+v), want 400 invalid with fields", err, we)
	}
	// After all that, the channel is still open and serving.
	var st map[string]string
	if err := c.Call(ctx, "status", nil, &st); err != nil || st["peer"] != "till-1" {
		t.Fatalf("status after malformed input: %v %v", st, err)
	}
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

func TestRPC_Notifications(t *testing.T) {
	// A request without an id gets no reply, even when it fails; the next request proves
	// that nothing was sent in between.
	g := MustOpenGateway(t, nil)
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	for _, msg := range []string{
		`{"jsonrpc":"2.0","method":"put","params":{"id":"n","doc":{"a":1}}}`,
		`{"jsonrpc":"2.0","method":"no_such_method"}`,
		`{"jsonrpc":"2.0","method":"get","params":{"id":"person_module/404"}}`,
		`[{"jsonrpc":"2.0","method":"status"},{"jsonrpc":"2.0","method":"status"}]`,
	} {
		if err := c.SendText(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	var doc map[string]int
	if err := c.Call(ctx, "get", map[string]string{"id": "n"}, &doc); err != nil || doc["a"] != 1 {
		t.Fatalf("the notified put was not applied: %v %v", doc, err)
	}
	select {
	case r := <-c.Strays():
		t.Fatalf("a notification was answered: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestRPC_Batch(t *testing.T) {
	g := MustOpenGateway(t, nil)
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	res, err := c.Batch(ctx, []client.Call{
		{Method: "put", Params: map[string]any{"id": "a", "doc": map[string]int{"v": 1}}},
		{Method: "get", Params: map[string]any{"id": "missing"}},
		{Method: "status", Notify: true},
		{Method: "nope"},
		{Method: "sync", Params: map[string]any{"ids": []string{"a"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(res[0].Result) != `{"id":"a"}` {
		t.Errorf("put: %+v", res[0])
	}
	if res[1].Err == nil || res[1].Err.Data.Status != 404 {
		t.Errorf("get missing: %+v", res[1])
	}
	if res[2].Result != nil || res[2].Err != nil {
		t.Errorf("notification got %+v", res[2])
	}
	if res[3].Err == nil || res[3].Err.Code != -32601 {
		t.Errorf("unknown method: %+v", res[3])
	}
	if !bytes.Contains(res[4].Result, []byte(`"synced"`)) {
		t.Errorf("sync: %s", res[4].Result)
	}
	// A raw batch gets one array back, with the invalid member answered in place.
	c.SendText(ctx, []byte(`[{"jsonrpc":"2.0","id":"x","method":"get","params":{"id":"a"}}, 7]`))
	got := map[string]int{}
	for i := 0; i < 2; i++ {
		r := stray(t, c)
		if r.Error != nil {
			got["error"] = r.Error.Code
		} else {
			got["ok"]++
		}
	}
	if got["ok"] != 1 || got["error"] != -32600 {
		t.Errorf("mixed batch replies: %v", got)
	}
}

func TestRPC_WritesInOrder(t *testing.T) {
	// Writes sent without waiting apply in the order they were sent.
	g := MustOpenGateway(t, nil)
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	const n = 100
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf(`{"jsonrpc":"2.0","method":"put","params":{"id":"doc","doc":{"v":%d}}}`, i)
		if err := c.SendText(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	var doc map[string]int
	eventually(t, 5*time.Second, "the last write should win", func() bool {
		doc = nil
		c.Call(ctx, "get", map[string]string{"id": "doc"}, &doc)
		return doc["v"] == n
	})
}

func TestRPC_SlowRequestDoesNotBlockOthers(t *testing.T) {
	g := MustOpenGateway(t, nil)
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	blocked := make(chan error, 1)
	go func() { blocked <- c.Call(ctx, "get", map[string]string{"id": "block"}, nil) }()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 10; i++ {
		if err := c.Call(ctx, "status", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("blocked call returned early: %v", err)
	default:
	}
	close(g.Svc.block)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
}

func TestRPC_TooManyInFlight(t *testing.T) {
	g := MustOpenGateway(t, func(s *lan.Server) { s.MaxInflight = 2; s.Workers = 2 })
	c := g.Connect(t, "till-1", "clerk")
	ctx := context.Background()
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- c.Call(ctx, "get", map[string]string{"id": "block"}, nil) }()
	}
	var we *wire.Error
	select {
	case err := <-errs:
		if !errors.As(err, &we) || we.Data == nil || we.Data.Status != 429 {
			t.Fatalf("third request: %v, want 429", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no 429 for the third request")
	}
	close(g.Svc.block)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRPC_Fragments(t *testing.T) {
	ctx := context.Background()
	t.Run("OneMiBBothWays", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		c := g.Connect(t, "till-1", "clerk")
		// Client → gateway: a 1 MiB document, sent as 17 fragments.
		text := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
		doc := map[string]string{"title": "big", "text": text}
		if err := c.Call(ctx, "put", map[string]any{"id": "big-doc", "doc": doc}, nil); err != nil {
			t.Fatal(err)
		}
		// Gateway → client: the same document back, reassembled.
		var back map[string]string
		if err := c.Call(ctx, "get", map[string]string{"id": "big-doc"}, &back); err != nil {
			t.Fatal(err)
		}
		if back["text"] != text {
			t.Fatalf("round trip changed the document (%d bytes back)", len(back["text"]))
		}
		// A 1 MiB result made by the service, while small calls keep flowing beside it.
		done := make(chan error, 1)
		var big map[string]string
		go func() { done <- c.Call(ctx, "get", map[string]string{"id": "big"}, &big) }()
		for i := 0; i < 5; i++ {
			if err := c.Call(ctx, "status", nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-done; err != nil || len(big["text"]) != 1<<20 {
			t.Fatalf("big result: %d bytes, %v", len(big["text"]), err)
		}
	})
	t.Run("BadHeaders", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		c := g.Connect(t, "till-1", "clerk")
		for name, frame := range map[string][]byte{
			"Short":      {0, 0, 0, 1},
			"ZeroCount":  wire.AppendFragment(nil, wire.FragmentHeader{Message: 1, Index: 0, Count: 0}, []byte("x")),
			"IndexHigh":  wire.AppendFragment(nil, wire.FragmentHeader{Message: 1, Index: 2, Count: 2}, []byte("x")),
			"Empty":      wire.AppendFragment(nil, wire.FragmentHeader{Message: 1, Index: 0, Count: 2}, nil),
			"Oversize":   wire.AppendFragment(nil, wire.FragmentHeader{Message: 1, Index: 0, Count: 2}, make([]byte, wire.MaxFragmentPayload+1)),
			"NotJSON":    wire.AppendFragment(nil, wire.FragmentHeader{Message: 9, Index: 0, Count: 1}, []byte("{nope")),
			"HugeCount":  wire.AppendFragment(nil, wire.FragmentHeader{Message: 1, Index: 0, Count: 1 << 31}, []byte("x")),
			"Duplicate1": wire.AppendFragment(nil, wire.FragmentHeader{Message: 3, Index: 0, Count: 3}, []byte("[")),
		} {
			if err := c.SendBinary(ctx, frame); err != nil {
				t.Fatal(err)
			}
			if name == "Duplicate1" {
				c.SendBinary(ctx, frame) // the same fragment twice
			}
			r := stray(t, c)
			if r.Error == nil {
				t.Errorf("%s: no error reply", name)
				continue
			}
			want := -32700
			if name == "HugeCount" {
				want = -32000
			}
			if r.Error.Code != want {
				t.Errorf("%s: code %d (%s), want %d", name, r.Error.Code, r.Error.Message, want)
			}
		}
		if err := c.Call(ctx, "status", nil, nil); err != nil {
			t.Fatalf("channel after bad fragments: %v", err)
		}
	})
	t.Run("Limits", func(t *testing.T) {
		g := MustOpenGateway(t, func(s *lan.Server) { s.MaxMessageSize = 200 << 10; s.MaxPartial = 2 })
		c := g.Connect(t, "till-1", "clerk")
		// Over the message size: 413, and the channel carries on.
		// The gateway finds the request's id in its first fragment and answers it.
		doc := map[string]string{"text": strings.Repeat("x", 300<<10)}
		err := c.Call(ctx, "put", map[string]any{"id": "a", "doc": doc}, nil)
		var we *wire.Error
		if !errors.As(err, &we) || we.Data == nil || we.Data.Status != 413 {
			t.Fatalf("oversized message: %v", err)
		}
		// Without an id up front, the answer has a null id.
		c.SendText(ctx, []byte(`{"params":{"text":"`+strings.Repeat("x", 300<<10)+`"},"jsonrpc":"2.0","id":1,"method":"put"}`))
		if r := stray(t, c); r.Error == nil || r.Error.Data == nil || r.Error.Data.Status != 413 || string(r.ID) != "null" {
			t.Fatalf("oversized message without a leading id: %+v", r)
		}
		// A result over the size limit is refused with 413, not sent.
		err = c.Call(ctx, "get", map[string]string{"id": "big"}, nil)
		if !errors.As(err, &we) || we.Data.Status != 413 || we.Data.Reason != "too_large" {
			t.Fatalf("oversized result: %v", err)
		}
		// A third half-sent message at once is refused.
		for num := uint32(100); num < 103; num++ {
			c.SendBinary(ctx, wire.AppendFragment(nil, wire.FragmentHeader{Message: num, Index: 0, Count: 2}, []byte("[")))
		}
		if r := stray(t, c); r.Error == nil || r.Error.Code != -32700 {
			t.Fatalf("too many partial messages: %+v", r)
		}
		if err := c.Call(ctx, "status", nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNotify(t *testing.T) {
	g := MustOpenGateway(t, nil)
	clerk := g.Connect(t, "clerk-1", "clerk")
	clerkTab := g.Dial(t, clerk.Token)
	_ = clerkTab
	manager := g.Connect(t, "manager-1", "manager")
	visitor := g.Connect(t, "visitor-1", "visitor")
	mayRead := func(a gateway.Actor, id string) bool {
		switch a.Role {
		case "manager":
			return true
		case "clerk":
			return strings.HasPrefix(id, "person_module/")
		}
		return false
	}
	// A client's channel opens on its side a moment before the server's: notify open ones.
	eventually(t, 5*time.Second, "four open channels", func() bool { return g.Channels() == 4 })
	// An id named twice (two writes to one document in a batch) is sent once.
	g.NotifyChanged([]string{"person_module/1", "sale_order_module/7", "person_module/1"}, map[string]string{"person_module/local-1": "person_module/2"}, mayRead)
	next := func(c *client.Client) wire.Notification {
		t.Helper()
		select {
		case n := <-c.Notifications():
			return n
		case <-time.After(5 * time.Second):
			t.Fatal("no notification")
		}
		return wire.Notification{}
	}
	for _, c := range []*client.Client{clerk, clerkTab} {
		n := next(c)
		if n.Method != "changed" || string(n.Params) != `{"ids":["person_module/1"],"renamed":{"person_module/local-1":"person_module/2"}}` {
			t.Errorf("clerk got %s %s", n.Method, n.Params)
		}
	}
	n := next(manager)
	var ch wire.Changed
	json.Unmarshal(n.Params, &ch)
	if len(ch.IDs) != 2 || len(ch.Renamed) != 1 {
		t.Errorf("manager got %s", n.Params)
	}
	g.NotifyStatus(func(a gateway.Actor) (any, error) { return map[string]string{"peer": a.Peer}, nil })
	for _, c := range []*client.Client{manager, visitor} {
		n := next(c)
		if n.Method != "status" || !strings.Contains(string(n.Params), c.Peer) {
			t.Errorf("%s got %s %s", c.Peer, n.Method, n.Params)
		}
	}
	// The visitor may read none of the changed ids: its first notification was the status.
	select {
	case n := <-visitor.Notifications():
		t.Errorf("visitor got %s %s", n.Method, n.Params)
	default:
	}
}

func TestServer_CloseReleasesEverything(t *testing.T) {
	ctx := context.Background()
	runtime.GC()
	before := runtime.NumGoroutine()
	func() {
		g := MustOpenGatewayNoCleanup(t)
		var clients []*client.Client
		for i := 0; i < 5; i++ {
			token := g.Pair(t, fmt.Sprintf("till-%d", i), "clerk")
			c, err := client.Dial(ctx, g.URL(), client.Options{Token: token})
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			if err := c.Call(ctx, "get", map[string]string{"id": "big"}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// One client goes away by itself, the others are closed by the server.
		clients[0].Close()
		// And one connection is left half-way through signaling.
		ws := dialSignal(t, g.testGateway, "")
		ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: g.Pair(t, "half", "clerk")})
		wantSignal(t, ws, wire.TypeWelcome)
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := g.Close(closeCtx); err != nil {
			t.Fatal(err)
		}
		if err := g.Close(closeCtx); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		for _, c := range clients {
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("a client outlived the server")
			}
			c.Close()
		}
		ws.Close()
		g.DB.Close()
	}()
	var after int
	eventually(t, 5*time.Second, "goroutines should return to the baseline", func() bool {
		after = runtime.NumGoroutine()
		return after <= before
	})
	t.Logf("goroutines: %d before, %d after", before, after)
}

// gatewayNoCleanup is a testGateway the test closes itself.
type gatewayNoCleanup struct{ *testGateway }

// MustOpenGatewayNoCleanup opens a gateway whose Close the test calls.
func MustOpenGatewayNoCleanup(tb testing.TB) gatewayNoCleanup {
	tb.Helper()
	g := MustOpenGateway(tb, nil)
	return gatewayNoCleanup{g}
}
