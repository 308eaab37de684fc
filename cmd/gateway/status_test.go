package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

func TestStripOf(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	events := []linkEvent{
		{At: now.Add(-30 * time.Hour), State: "up"},
		{At: now.Add(-2 * time.Hour), State: "down"},
		{At: now.Add(-90 * time.Minute), State: "up"},
		{At: now.Add(-40 * time.Minute), State: "off"},
		{At: now.Add(-35 * time.Minute), State: "unknown"},
		{At: now.Add(-34 * time.Minute), State: "degraded"},
		{At: now.Add(-33 * time.Minute), State: "up"},
	}
	slots := stripOf(events, now, 24*time.Hour, 96)
	if len(slots) != 96 || !slots[0].Start.Equal(now.Add(-24*time.Hour)) || !slots[95].Start.Equal(now.Add(-15*time.Minute)) {
		t.Fatalf("slots: %d, first %v, last %v", len(slots), slots[0].Start, slots[95].Start)
	}
	totals := map[string]float64{}
	for i, s := range slots {
		var sum float64
		for k, v := range s.Seconds {
			sum += v
			totals[k] += v
		}
		if math.Abs(sum-900) > 1e-6 {
			t.Errorf("slot %d covers %v s, want 900", i, sum)
		}
	}
	want := map[string]float64{"down": 1800, "off": 300, "unknown": 60, "degraded": 60}
	want["up"] = 86400 - 1800 - 300 - 60 - 60
	for k, v := range want {
		if math.Abs(totals[k]-v) > 1e-6 {
			t.Errorf("%s: %v s, want %v", k, totals[k], v)
		}
	}
	// The down half hour falls in slots 88 and 89 (22:00 to 22:30 of the window).
	if slots[88].Seconds["down"] != 900 || slots[89].Seconds["down"] != 900 || slots[90].Seconds["down"] != 0 {
		t.Errorf("down slots: %v %v %v", slots[88].Seconds, slots[89].Seconds, slots[90].Seconds)
	}
	// Before the first event nothing is known.
	late := stripOf(events[5:], now, 24*time.Hour, 96)
	if len(late[0].Seconds) != 0 || late[93].Seconds["degraded"] != 60 {
		t.Errorf("before the first event: %v; slot 93: %v", late[0].Seconds, late[93].Seconds)
	}
}

func TestLinkHistory_PersistAndPrune(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logger := slog.New(slog.DiscardHandler)
	h := newLinkHistory(ctx, db, logger)
	t0 := time.Now().Add(-30 * time.Hour)
	h.record("up", t0)
	h.record("up", t0.Add(time.Hour)) // same state: ignored
	h.record("down", t0.Add(2*time.Hour))
	h.record("up", t0.Add(3*time.Hour))
	h.record("down", t0.Add(10*time.Hour)) // 20 h ago: inside the window
	if len(h.events) != 2 || h.events[0].State != "up" || h.events[1].State != "down" {
		t.Fatalf("after pruning: %+v (want the state at the window's start, then the change inside)", h.events)
	}
	again := newLinkHistory(ctx, db, logger)
	if len(again.events) != 2 || !again.events[1].At.Equal(h.events[1].At) {
		t.Fatalf("reloaded: %+v, want %+v", again.events, h.events)
	}
	strip := again.strip(time.Now())
	var up, down float64
	for _, s := range strip {
		up += s.Seconds["up"]
		down += s.Seconds["down"]
	}
	if math.Abs(up-4*3600) > 60 || math.Abs(down-20*3600) > 60 {
		t.Errorf("strip: up %v s, down %v s; want 4 h and 20 h", up, down)
	}
}

// getStatus GETs path from the server with optional headers and returns the status code and
// body.
func getStatus(tb testing.TB, base, path string, headers map[string]string) (int, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+strings.TrimPrefix(path, "/"), nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStatus_Auth(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	s := mustStartServer(t, dir)
	base := s.URL()
	proxied := map[string]string{"X-Forwarded-For": "10.1.2.3"}

	if code, body := getStatus(t, base, "/status.json", nil); code != 200 || !strings.Contains(body, `"outbox"`) {
		t.Fatalf("loopback: %d %s", code, body)
	}
	// /metrics follows the same rule (docs/DESIGN.md §9).
	if code, body := getStatus(t, base, "/metrics", nil); code != 200 || !strings.Contains(body, "gateway_") {
		t.Fatalf("metrics from loopback: %d %.200s", code, body)
	}
	if code, body := getStatus(t, base, "/metrics", proxied); code != 401 || strings.Contains(body, "gateway_") {
		t.Fatalf("metrics through a proxy, no token: %d %.200s", code, body)
	}
	code, body := getStatus(t, base, "/status.json", proxied)
	if code != 401 || !strings.Contains(body, `"reason":"unauthorized"`) || !strings.Contains(body, "gateway operator-token") {
		t.Fatalf("through a proxy, no token: %d %s", code, body)
	}
	// The page itself is static (no data) and served to anyone; its data is not.
	if code, body := getStatus(t, base, "/status", proxied); code != 200 || !strings.Contains(body, `src="/status.js"`) {
		t.Fatalf("page: %d %.200s", code, body)
	}

	out, errOut, code := runOutbox(t, dir, "", "operator-token")
	if code != 0 {
		t.Fatalf("operator-token: %d %s", code, errOut)
	}
	token := strings.SplitN(out, "\n", 2)[0]
	if len(token) < 40 || !strings.Contains(out, "/status#token="+token) {
		t.Fatalf("operator-token printed %q", out)
	}
	if raw, _ := sqliteMeta(t, s, MetaOperatorToken); raw == token || raw != sqlite.HashSecret(token) {
		t.Errorf("stored %q: want the token's hash, never the token", raw)
	}
	withToken := map[string]string{"X-Forwarded-For": "10.1.2.3", "Authorization": "Bearer " + token}
	if code, _ := getStatus(t, base, "/status.json", withToken); code != 200 {
		t.Errorf("with the token: %d", code)
	}
	wrong := map[string]string{"X-Forwarded-For": "10.1.2.3", "Authorization": "Bearer " + token[:len(token)-1] + "x"}
	if code, _ := getStatus(t, base, "/status.json", wrong); code != 401 {
		t.Errorf("with a wrong token: %d", code)
	}
	if code, body := getStatus(t, base, "/metrics", withToken); code != 200 || !strings.Contains(body, "gateway_") {
		t.Errorf("metrics with the token: %d %.200s", code, body)
	}
	if code, _ := getStatus(t, base, "/metrics", wrong); code != 401 {
		t.Errorf("metrics with a wrong token: %d", code)
	}
	// A new token replaces the old one; --revoke removes it.
	if out2, _, _ := runOutbox(t, dir, "", "operator-token"); strings.SplitN(out2, "\n", 2)[0] == token {
		t.Fatal("the same token twice")
	}
	if code, _ := getStatus(t, base, "/status.json", withToken); code != 401 {
		t.Errorf("a replaced token: %d", code)
	}
	if _, errOut, code := runOutbox(t, dir, "", "operator-token", "--revoke"); code != 0 {
		t.Fatalf("--revoke: %s", errOut)
	}
	if raw, _ := sqliteMeta(t, s, MetaOperatorToken); raw != "" {
		t.Errorf("after --revoke: %q", raw)
	}
}

func sqliteMeta(tb testing.TB, s *Server, key string) (string, error) {
	tb.Helper()
	return s.DB.Meta(context.Background(), key)
}

// startStatusScene runs a gateway whose data has entries in every state, whose uplink is
// configured but whose link is down, with a day of link history behind it; one of two paired
// peers is online.
func startStatusScene(tb testing.TB) (*Server, map[string]int64) {
	tb.Helper()
	dir, seqs := queueEveryState(tb)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	var events []linkEvent
	at := now.Add(-25 * time.Hour)
	for i := 0; at.Before(now.Add(-10 * time.Minute)); i++ {
		events = append(events, linkEvent{At: at, State: "up"})
		switch {
		case i%7 == 3:
			events = append(events, linkEvent{At: at.Add(50 * time.Minute), State: "down"})
			at = at.Add(95 * time.Minute)
		case i%5 == 1:
			events = append(events, linkEvent{At: at.Add(70 * time.Minute), State: "degraded"})
			at = at.Add(80 * time.Minute)
		case i == 17:
			events = append(events, linkEvent{At: at.Add(30 * time.Minute), State: "off"})
			at = at.Add(60 * time.Minute)
		default:
			at = at.Add(2 * time.Hour)
		}
	}
	b, _ := json.Marshal(events)
	if err := db.SetMeta(ctx, MetaLinkHistory, string(b)); err != nil {
		tb.Fatal(err)
	}
	db.Close()

	sim := erp5sim.New(erp5sim.Options{Logger: slog.New(slog.DiscardHandler)})
	erp5 := startSimERP5(sim, linksim.Thuraya)
	tb.Cleanup(erp5.Close)
	erp5.Link.SetDown(true)

	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = dir
	m.Config.SiteID = "mine-north"
	m.Config.Upstream.URL = erp5.URL
	m.Config.LAN.Listen = "127.0.0.1:0"
	m.Config.LAN.WebRTC.UDPPort = 0
	m.Logger = slog.New(slog.DiscardHandler)
	m.UpstreamDial = erp5.Link.DialContext
	s, err := m.StartServer(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.Close(cctx)
	})
	mustPairClient(tb, s, "store-tablet", "storekeeper")
	if _, err := sqlite.NewPeerService(s.DB).CreateInvite(ctx, "spare", "clerk", time.Hour); err != nil {
		tb.Fatal(err)
	}
	code, _ := sqlite.NewPeerService(s.DB).CreateInvite(ctx, "front-desk", "clerk", time.Hour)
	if _, err := pairOnly(s, code); err != nil {
		tb.Fatal(err)
	}
	waitUntil(tb, 20*time.Second, "the uplink to find the link down", func() bool {
		return s.Uplink.Status().Link.State.String() == "down"
	})
	return s, seqs
}

func TestStatus_Report(t *testing.T) {
	s, seqs := startStatusScene(t)
	rep := fetchStatus(t, s.URL(), "")
	if rep.SiteID != "mine-north" || rep.Epoch == "" || rep.Link == nil || rep.Link.Link.State.String() != "down" {
		t.Fatalf("report head: site %q epoch %q link %+v", rep.SiteID, rep.Epoch, rep.Link)
	}
	// Every open state is counted; inflight entries of the stopped process became uncertain,
	// and the retry of the superseded entry is pending.
	want := map[string]int{"pending": 2, "inflight": 0, "deferred": 1, "uncertain": 2, "held": 1, "dead": 1, "conflict": 1}
	for st, n := range want {
		if rep.Outbox.Counts[st] != n {
			t.Errorf("outbox %s = %d, want %d (%v)", st, rep.Outbox.Counts[st], n, rep.Outbox.Counts)
		}
	}
	if rep.Outbox.Waiting != 5 || rep.Outbox.OldestPending == nil || rep.Outbox.OldestProblem == nil {
		t.Errorf("waiting %d oldest pending %v oldest problem %v", rep.Outbox.Waiting, rep.Outbox.OldestPending, rep.Outbox.OldestProblem)
	}
	if len(rep.Problems) != 2 {
		t.Fatalf("problems: %+v", rep.Problems)
	}
	for _, p := range rep.Problems {
		switch p.Seq {
		case seqs["dead"]:
			if p.State != outbox.StateDead || p.Reason != "title: too long" || p.DocID != "person_module/dead" || len(p.Fields) != 1 {
				t.Errorf("dead entry: %+v", p)
			}
		case seqs["conflict"]:
			if p.State != outbox.StateConflict || p.Reason == "" {
				t.Errorf("conflict entry: %+v", p)
			}
		default:
			t.Errorf("unexpected problem %+v", p)
		}
	}
	if rep.Peers.Paired != 2 || rep.Peers.Online != 1 || !rep.Peers.List[0].Online || rep.Peers.List[0].Name != "store-tablet" {
		t.Errorf("peers: %+v", rep.Peers)
	}
	var down, up float64
	for _, h := range rep.History {
		down += h.Seconds["down"]
		up += h.Seconds["up"]
	}
	if len(rep.History) != historySlots || down < 3600 || up < 12*3600 {
		t.Errorf("history: %d slots, up %v s, down %v s", len(rep.History), up, down)
	}
	if rep.Replica.Documents["Person"] != 10 || rep.Storage.DatabaseBytes == 0 || rep.Storage.DiskFreeBytes == 0 {
		t.Errorf("replica %+v storage %+v", rep.Replica, rep.Storage)
	}
	if rep.Traffic.CostPerMB != 5 {
		t.Errorf("traffic: %+v", rep.Traffic)
	}
}

// TestStatus_Page renders the page in Chromium from the same scene and checks what an
// operator sees first.
func TestStatus_Page(t *testing.T) {
	s, _ := startStatusScene(t)
	ctx := demoBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL()+"status")); err != nil {
		t.Fatal(err)
	}
	var seen struct {
		Tiles    map[string]string `json:"tiles"`
		Slots    int               `json:"slots"`
		Down     int               `json:"down"`
		Problems int               `json:"problems"`
		Reason   string            `json:"reason"`
		Peers    int               `json:"peers"`
		Strip    string            `json:"strip"`
	}
	demoEval(t, ctx, `new Promise((resolve) => {
		const t0 = Date.now();
		const check = () => {
			if (document.getElementById('report').hidden && Date.now() - t0 < 15000) { setTimeout(check, 50); return; }
			const tiles = {};
			for (const t of document.querySelectorAll('.tile')) tiles[t.id] = t.className + ': ' + t.querySelector('.big').textContent;
			resolve({
				tiles,
				slots: document.querySelectorAll('#strip .slot').length,
				down: document.querySelectorAll('#strip .seg.down').length,
				problems: document.querySelectorAll('#problems tbody tr').length,
				reason: (document.querySelector('#problems .reason') || {}).textContent || '',
				peers: document.querySelectorAll('#peers tbody tr').length,
				strip: document.getElementById('strip').getAttribute('aria-label'),
			});
		};
		check();
	})`, &seen)
	if seen.Tiles["t-link"] != "tile err: Down" || seen.Tiles["t-queue"] != "tile: 5" || seen.Tiles["t-problems"] != "tile err: 2" {
		t.Errorf("tiles: %v", seen.Tiles)
	}
	if seen.Slots != historySlots || seen.Down == 0 || !strings.Contains(seen.Strip, "down") {
		t.Errorf("strip: %d slots, %d with down time, label %q", seen.Slots, seen.Down, seen.Strip)
	}
	if seen.Problems != 2 || seen.Reason == "" || seen.Peers != 2 {
		t.Errorf("problems %d (first reason %q), peers %d", seen.Problems, seen.Reason, seen.Peers)
	}
	demoScreenshot(t, ctx, "status")
}

// pairOnly redeems an invite code without connecting.
func pairOnly(s *Server, code string) (client.Credentials, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Pair(ctx, nil, s.URL(), code)
}
