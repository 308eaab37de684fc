package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway/control"
	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// syncMain returns a Main whose configuration points at dataDir and ERP5 at url.
func syncMain(tb testing.TB, dataDir, url string) *Main {
	tb.Helper()
	m := NewMain()
	m.Config = DefaultConfig()
	m.Config.DataDir = dataDir
	m.Config.SiteID = "mine-7"
	m.Config.Upstream.URL = url
	m.Config.Upstream.Auth = AuthConfig{Token: "s3cret-token"}
	m.Logger = newLogger(&strings.Builder{}, LogConfig{Level: "error"})
	return m
}

func TestSyncStatus_NoUplinkYet(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	out, errOut, code := runMain(t, "--data-dir", dir, "sync", "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"link:", "unknown", "outbox:", "pending 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runMain(t, "--data-dir", dir, "sync", "status", "-o", "json")
	var rep SyncReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Live || rep.Link != nil {
		t.Errorf("json: exit %d, %s", code, out)
	}
	if _, _, code := runMain(t, "--data-dir", dir, "sync", "status", "-o", "yaml"); code != 2 {
		t.Errorf("bad -o: exit %d, want 2", code)
	}
	if _, _, code := runMain(t, "--data-dir", dir, "sync", "status", "extra"); code != 2 {
		t.Errorf("extra argument: exit %d, want 2", code)
	}
}

func TestSyncNow_WithoutServe(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(ctx, strings.NewReader(`{"id":"person_module/1","doc":{"portal_type":"Person","title":"a"}}`+"\n"), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPut, ID: "person_module/1", Doc: map[string]any{"title": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	// The entry was sent and deferred for an hour.
	store := &UplinkStore{DB: db}
	b, err := store.Claim(ctx, outbox.Budget{}, nil)
	if err != nil || len(b.Entries) != 1 {
		t.Fatalf("claim: %v %v", b, err)
	}
	later := time.Now().Add(time.Hour)
	if _, err := store.Settle(ctx, []outbox.Result{{Seq: res.Seq, Status: outbox.ResultDeferred, Reason: "HTTP 503", NextAttemptAt: later}}); err != nil {
		t.Fatal(err)
	}
	due, err := store.NextDue(ctx)
	if err != nil || !due.Equal(later.UTC().Truncate(time.Nanosecond)) && due.Sub(later).Abs() > time.Millisecond {
		t.Errorf("NextDue = %v, %v; want %v", due, err, later)
	}
	db.Close()

	out, errOut, code := runMain(t, "--data-dir", dir, "sync", "now")
	if code != 0 || !strings.Contains(out, "1 deferred entries are due now") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	db, err = sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := db.OutboxEntry(ctx, res.Seq)
	if err != nil || e.NextAttemptAt.After(time.Now()) {
		t.Errorf("entry after sync now: next attempt %v (%v)", e.NextAttemptAt, err)
	}
}

func TestSyncNow_ThroughControl(t *testing.T) {
	t.Chdir(t.TempDir())
	var asked string
	saved := syncControl.Now
	syncControl.Now = func(_ context.Context, socket string) (bool, error) { asked = socket; return true, nil }
	defer func() { syncControl.Now = saved }()
	dir := t.TempDir()
	out, _, code := runMain(t, "--data-dir", dir, "sync", "now")
	if code != 0 || asked != filepath.Join(dir, "gateway.sock") || !strings.Contains(out, "trying the link now") {
		t.Errorf("exit %d, socket %q, output %q", code, asked, out)
	}
	syncControl.Now = func(context.Context, string) (bool, error) { return false, errors.New("permission denied") }
	if _, errOut, code := runMain(t, "--data-dir", dir, "sync", "now"); code != 1 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("control failure: exit %d, %s", code, errOut)
	}
}

func TestNewUplink_Config(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct {
		site, url, field string
	}{
		{"", "https://erp5.example.org/", "site_id"},
		{ExampleSiteID, "https://erp5.example.org/", "site_id"},
		{"mine", "", "upstream.url"},
	} {
		m := syncMain(t, t.TempDir(), tt.url)
		m.Config.SiteID = tt.site
		_, err := m.NewUplink(ctx, db, nil)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("site %q url %q: err = %v, want a %s error", tt.site, tt.url, err, tt.field)
		}
	}
}

// TestNewUplink_EndToEnd runs the configured uplink against the ERP5 double over loopback:
// writes reach ERP5 through the real database adapter, the status is recorded for `sync
// status`, and the token never appears in the logs.
func TestNewUplink_EndToEnd(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx := context.Background()
	sim := erp5sim.New(erp5sim.Options{Tokens: []string{"s3cret-token"}, Routes: erp5sim.OddRoutes, Seed: 3, Docs: 5})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dir := t.TempDir()
	m := syncMain(t, dir, srv.URL+sim.SitePath()+"/")
	var logs strings.Builder
	w := &syncWriter{b: &logs}
	m.Logger = newLogger(w, LogConfig{Level: "debug"})
	db, err := m.OpenDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db.SiteID = m.Config.SiteID
	if _, err := db.NewEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	var docs []string
	var lines []string
	for _, d := range sim.Documents() {
		if d.PortalType != "Person" {
			continue
		}
		docs = append(docs, d.ID)
		b, _ := json.Marshal(map[string]any{"id": d.ID, "doc": map[string]any{"portal_type": "Person", "title": d.Properties["title"]}})
		lines = append(lines, string(b))
	}
	if len(docs) == 0 {
		t.Fatal("the double generated no Person")
	}
	if _, err := db.Import(ctx, strings.NewReader(strings.Join(lines, "\n")), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range docs {
		if _, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPut, ID: id, Doc: map[string]any{"title": "edited " + id}, Peer: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	post, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "New One"}, Peer: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.NewUplink(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Open(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := db.OutboxCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, s := range outbox.OpenStates {
			open += c[s]
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox did not drain: %v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The receiver's retention is recorded where `gateway restore` reads it.
	if v, err := db.Meta(ctx, sqlite.MetaRetentionDays); err != nil || v == "" {
		t.Errorf("retention days recorded: %q (%v)", v, err)
	}
	for _, id := range docs {
		if got := sim.Document(id).Properties["title"]; got != "edited "+id {
			t.Errorf("%s at ERP5: title %v", id, got)
		}
	}
	newID, err := db.ResolveID(ctx, post.ID)
	if err != nil || newID == post.ID || sim.Document(newID) == nil || sim.Document(newID).Properties["title"] != "New One" {
		t.Errorf("post %s → %s (%v)", post.ID, newID, err)
	}
	if applied := sim.Applied("mine-7", ""); len(applied) != len(docs)+1 {
		t.Errorf("ERP5 applied %d entries, want %d", len(applied), len(docs)+1)
	}
	logged := func() string { w.mu.Lock(); defer w.mu.Unlock(); return logs.String() }()
	if strings.Contains(logged, "s3cret-token") || !strings.Contains(logged, "token(redacted)") {
		t.Errorf("the token was logged, or the auth method was not:\n%s", logged)
	}
	db.Close()

	out, errOut, code := runMain(t, "--data-dir", dir, "sync", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("sync status: exit %d %s", code, errOut)
	}
	var rep SyncReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Live || rep.Link == nil || rep.Link.Link.State != upstream.LinkUp || rep.Link.Mode != upstream.ModeBatch {
		t.Errorf("recorded status = %+v", rep.Link)
	}
	if rep.BytesToday <= 0 || rep.CostToday != float64(rep.BytesToday)/1e6*5.0 {
		t.Errorf("bytes %d cost %v", rep.BytesToday, rep.CostToday)
	}
	out, _, _ = runMain(t, "--data-dir", dir, "sync", "status")
	for _, want := range []string{"up since", "batch (receiver v1", "today:", "outbox:", "pending 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// syncWriter makes a strings.Builder safe for the logger's concurrent writes.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestSync_LiveThroughControlSocket runs the sync commands against a control socket that
// serves the uplink's status and waker, as serve registers them.
func TestSync_LiveThroughControlSocket(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	u := &upstream.Uplink{Client: &upstream.Client{URL: "https://erp5.example.org/"}, Protocol: upstream.ProtocolAuto}
	flushed := make(chan struct{}, 1)
	srv := control.NewServer(filepath.Join(dir, "gateway.sock"))
	srv.Handle("GET "+ControlUplinkStatusPath, UplinkStatusHandler(u))
	srv.HandleWake(control.WakeUplink, func() { flushed <- struct{}{} })
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out, errOut, code := runMain(t, "--data-dir", dir, "sync", "status", "-o", "json")
	var rep SyncReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if !rep.Live || rep.Link == nil || rep.Link.Protocol != upstream.ProtocolAuto {
		t.Errorf("report = %+v", rep)
	}
	out, _, code = runMain(t, "--data-dir", dir, "sync", "now")
	if code != 0 || !strings.Contains(out, "trying the link now") {
		t.Errorf("sync now: exit %d %s", code, out)
	}
	select {
	case <-flushed:
	default:
		t.Error("the uplink waker was not called")
	}
}
