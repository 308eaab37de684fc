package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// mustStartServer runs a gateway in this process on loopback with the embedded example
// policy and its data in dataDir, and stops it at the end of the test.
func mustStartServer(tb testing.TB, dataDir string) *Server {
	tb.Helper()
	m := NewMain()
	var out bytes.Buffer
	m.Stdout, m.Stderr = &out, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = dataDir
	m.Config.LAN.Listen = "127.0.0.1:0"
	m.Config.LAN.WebRTC.UDPPort = 0
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	s, err := m.StartServer(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// mustPairClient pairs a new peer of role with s and connects it over a data channel.
func mustPairClient(tb testing.TB, s *Server, name, role string) (*client.Client, client.Credentials) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := sqlite.NewPeerService(s.DB).CreateInvite(ctx, name, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := client.Pair(ctx, http.DefaultClient, s.URL(), code)
	if err != nil {
		tb.Fatal(err)
	}
	return mustDial(tb, s, creds.Token), creds
}

func mustDial(tb testing.TB, s *Server, token string) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.URL(), client.Options{Token: token})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	// The channel opens on the client's side a moment before the server registers it; what
	// the server sends to open channels (status, changed) depends on that.
	waitUntil(tb, 10*time.Second, "the server registers "+c.Peer, func() bool { return slices.Contains(s.LAN.OnlinePeers(), c.Peer) })
	return c
}

// rpcErr returns the application error data of err, failing the test for anything else.
func rpcErr(tb testing.TB, err error) *wire.ErrorData {
	tb.Helper()
	var we *wire.Error
	if !errors.As(err, &we) || we.Data == nil {
		tb.Fatalf("err = %v, want an application error", err)
	}
	return we.Data
}

func call(tb testing.TB, c *client.Client, method string, params any) map[string]any {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out map[string]any
	if err := c.Call(ctx, method, params, &out); err != nil {
		tb.Fatalf("%s %v: %v", method, params, err)
	}
	return out
}

func callErr(tb testing.TB, c *client.Client, method string, params any) *wire.ErrorData {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Call(ctx, method, params, nil)
	if err == nil {
		tb.Fatalf("%s %v succeeded, want an error", method, params)
	}
	return rpcErr(tb, err)
}

func TestRPC_Methods(t *testing.T) {
	s := mustStartServer(t, t.TempDir())
	sup, _ := mustPairClient(t, s, "office-1", "supervisor")

	// post gives a local id under the type's module; get returns the document as stored.
	posted := call(t, sup, "post", map[string]any{"doc": json.RawMessage(`{"portal_type":"Person","title":"Ana Lima","first_name":"Ana","weight":70.50}`), "key": "k-post-1"})
	id, _ := posted["id"].(string)
	if !strings.HasPrefix(id, "person_module/local-") {
		t.Fatalf("post id = %q", id)
	}
	ctx := context.Background()
	raw, err := sup.CallRaw(ctx, "get", map[string]any{"id": id})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"weight":70.50`)) || !bytes.HasPrefix(raw, []byte(`{"portal_type":"Person","title":"Ana Lima"`)) {
		t.Errorf("get = %s, want the document exactly as stored", raw)
	}

	// put is a merge patch: null clears, absent keeps.
	call(t, sup, "put", map[string]any{"id": id, "doc": map[string]any{"first_name": nil, "default_email_text": "ana@example.org"}, "key": "k-put-1"})
	got := call(t, sup, "get", map[string]any{"id": id})
	if _, ok := got["first_name"]; ok || got["default_email_text"] != "ana@example.org" || got["title"] != "Ana Lima" {
		t.Errorf("after put: %v", got)
	}

	// allDocs: total_rows before limit, sync state per row, select_list.
	call(t, sup, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Bruno Costa"}})
	call(t, sup, "post", map[string]any{"doc": map[string]any{"portal_type": "Organisation", "title": "Lima Transportes"}})
	res := call(t, sup, "allDocs", map[string]any{"query": `portal_type:"Person"`, "sort_on": [][]string{{"title", "descending"}}, "limit": []int{0, 1}, "select_list": []string{"title"}})
	rows, _ := res["rows"].([]any)
	if res["total_rows"] != float64(2) || len(rows) != 1 {
		t.Fatalf("allDocs = %v", res)
	}
	row := rows[0].(map[string]any)
	if row["value"].(map[string]any)["title"] != "Bruno Costa" || row["sync"] != "pending" {
		t.Errorf("row = %v", row)
	}

	// sync, describe, status.
	st := call(t, sup, "sync", map[string]any{"ids": []string{id, "person_module/999"}})
	states := st["states"].(map[string]any)
	if states[id].(map[string]any)["state"] != "pending" || states["person_module/999"].(map[string]any)["state"] != "synced" {
		t.Errorf("sync = %v", st)
	}
	d := call(t, sup, "describe", nil)
	if d["role"] != "supervisor" || len(d["types"].([]any)) < 5 {
		t.Errorf("describe = %v", d)
	}
	status := call(t, sup, "status", nil)
	if status["outbox"].(map[string]any)["pending"] == nil || status["link"].(map[string]any)["state"] == nil {
		t.Errorf("status = %v", status)
	}

	// action and remove.
	org := call(t, sup, "post", map[string]any{"doc": map[string]any{"portal_type": "Sale Order", "title": "SO-1", "destination": "organisation_module/1"}})["id"].(string)
	call(t, sup, "action", map[string]any{"id": org, "transition": "plan_action"})
	call(t, sup, "remove", map[string]any{"id": id})
	if e := callErr(t, sup, "get", map[string]any{"id": id}); e.Status != 404 || e.Reason != "not_found" {
		t.Errorf("get after remove: %+v", e)
	}

	// Every write reached the outbox.
	list, total, err := s.DB.OutboxList(ctx, outboxFilterAll())
	if err != nil {
		t.Fatal(err)
	}
	if total < 6 || len(list) == 0 {
		t.Errorf("outbox has %d entries, want ≥ 6", total)
	}
}

func TestRPC_Errors(t *testing.T) {
	s := mustStartServer(t, t.TempDir())
	clerk, _ := mustPairClient(t, s, "till-1", "clerk")
	tests := []struct {
		name   string
		method string
		params any
		status int
		reason string
	}{
		{"GetUnknown", "get", map[string]any{"id": "person_module/404"}, 404, "not_found"},
		{"GetBadID", "get", map[string]any{"id": "../etc/passwd"}, 400, "invalid"},
		{"PutUnknown", "put", map[string]any{"id": "person_module/404", "doc": map[string]any{"title": "x"}}, 404, "not_found"},
		{"PostTypeDenied", "post", map[string]any{"doc": map[string]any{"portal_type": "Sale Order", "title": "x"}}, 403, ""},
		{"PostInvalid", "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "x", "default_email_text": "not-an-email"}}, 400, "invalid"},
		{"PostFieldNotWritable", "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "x", "reference": "R1"}}, 403, "field_not_writable"},
		{"BadQuery", "allDocs", map[string]any{"query": `title:(`}, 400, "invalid"},
		{"SortUnreadable", "allDocs", map[string]any{"sort_on": [][]string{{"secret", "ascending"}}}, 403, ""},
		{"BadSortWord", "allDocs", map[string]any{"sort_on": [][]string{{"title", "upwards"}}}, 400, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := callErr(t, clerk, tt.method, tt.params)
			if e.Status != tt.status || (tt.reason != "" && e.Reason != tt.reason) {
				t.Errorf("got %d %s, want %d %s", e.Status, e.Reason, tt.status, tt.reason)
			}
		})
	}
	t.Run("RemoveDenied", func(t *testing.T) {
		id := call(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Kept"}})["id"].(string)
		if e := callErr(t, clerk, "remove", map[string]any{"id": id}); e.Status != 403 {
			t.Errorf("got %+v, want 403", e)
		}
		if got := call(t, clerk, "get", map[string]any{"id": id}); got["title"] != "Kept" {
			t.Errorf("document after a denied remove: %v", got)
		}
	})
	t.Run("FieldsOnInvalid", func(t *testing.T) {
		e := callErr(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "default_email_text": "x"}})
		if e.Fields["default_email_text"] == "" || e.Fields["title"] == "" {
			t.Errorf("fields = %v, want messages for email and title", e.Fields)
		}
	})
	t.Run("KeyReused", func(t *testing.T) {
		call(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "A"}, "key": "same"})
		e := callErr(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "B"}, "key": "same"})
		if e.Status != 409 || e.Reason != "key_reused" {
			t.Errorf("got %+v, want 409 key_reused", e)
		}
	})
	t.Run("UnreadableFieldsRemoved", func(t *testing.T) {
		id := call(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "C"}})["id"].(string)
		// An operator write adds a field the clerk may not read.
		if _, err := s.DB.Write(context.Background(), sqlite.Write{Op: "put", ID: id, Doc: map[string]any{"salary": json.Number("1000")}}); err != nil {
			t.Fatal(err)
		}
		got := call(t, clerk, "get", map[string]any{"id": id})
		if _, ok := got["salary"]; ok || got["title"] != "C" {
			t.Errorf("clerk reads %v", got)
		}
		res := call(t, clerk, "allDocs", map[string]any{"query": `"1000"`, "include_docs": true})
		if res["total_rows"] != float64(0) {
			t.Errorf("full-text search matched an unreadable field: %v", res)
		}
	})
}

// TestRPC_WriteKeyReplayAcrossRestart resends a write with its key to a restarted gateway
// and gets the first answer, with one document and one outbox entry.
func TestRPC_WriteKeyReplayAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := mustStartServer(t, dir)
	c, creds := mustPairClient(t, s, "tablet-3", "clerk")
	params := map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Once Only"}, "key": "tablet-3-0001"}
	first := call(t, c, "post", params)
	c.Close()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s2 := mustStartServer(t, dir)
	c2 := mustDial(t, s2, creds.Token)
	again := call(t, c2, "post", params)
	if again["id"] != first["id"] {
		t.Errorf("replayed id = %v, want %v", again["id"], first["id"])
	}
	res := call(t, c2, "allDocs", map[string]any{"query": `title:"Once Only"`})
	if res["total_rows"] != float64(1) {
		t.Errorf("documents titled Once Only: %v, want 1", res["total_rows"])
	}
	_, total, err := s2.DB.OutboxList(context.Background(), outboxFilterAll())
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 {
		t.Errorf("outbox entries = %d, want 1", total)
	}
}

// TestRPC_ChangedNotification checks that a write notifies the other peers that may read it,
// and only them.
func TestRPC_ChangedNotification(t *testing.T) {
	s := mustStartServer(t, t.TempDir())
	sup, _ := mustPairClient(t, s, "office-1", "supervisor")
	clerk, _ := mustPairClient(t, s, "till-1", "clerk")
	store, _ := mustPairClient(t, s, "store-1", "storekeeper")
	// A client's channel opens on its side a moment before the server's.
	for deadline := time.Now().Add(5 * time.Second); s.LAN.Channels() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	id := call(t, sup, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Seen By Clerk"}})["id"].(string)
	waitChanged := func(c *client.Client, want string) bool {
		timeout := time.After(3 * time.Second)
		for {
			select {
			case n := <-c.Notifications():
				if n.Method == "changed" && strings.Contains(string(n.Params), want) {
					return true
				}
			case <-timeout:
				return false
			}
		}
	}
	if !waitChanged(clerk, id) {
		t.Error("clerk got no changed notification for a Person")
	}
	if waitChanged(store, id) {
		t.Error("storekeeper was told of a Person it may not read")
	}
}

// outboxFilterAll lists entries in every state.
func outboxFilterAll() outbox.Filter {
	return outbox.Filter{States: []string{"pending", "inflight", "done", "deferred", "uncertain", "held", "dead", "conflict", "merged", "superseded"}}
}

// TestRPC_StatusNotification checks that a write makes the gateway send its status to open
// channels, with the outbox's new counts.
func TestRPC_StatusNotification(t *testing.T) {
	s := mustStartServer(t, t.TempDir())
	c, creds := mustPairClient(t, s, "till-1", "clerk")
	call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Counted"}})
	timeout := time.After(5 * time.Second)
	for {
		select {
		case n := <-c.Notifications():
			if n.Method != "status" {
				continue
			}
			var st struct {
				Peer   string         `json:"peer"`
				Outbox map[string]int `json:"outbox"`
			}
			if err := json.Unmarshal(n.Params, &st); err != nil {
				t.Fatal(err)
			}
			if st.Peer != creds.Peer || st.Outbox["pending"] < 1 {
				t.Errorf("status notification = %s", n.Params)
			}
			return
		case <-timeout:
			t.Fatal("no status notification within 5 s of a write")
		}
	}
}
