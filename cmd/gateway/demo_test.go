package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/internal/browsertest"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// demoBrowser starts a headless Chromium with a fresh profile that allows loopback ICE
// candidates.
func demoBrowser(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(browsertest.Options(tb), chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	tb.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// demoEval runs an async expression in the page and decodes its JSON result into v.
func demoEval(tb testing.TB, ctx context.Context, expr string, v any) {
	tb.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("evaluate: %v", err)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			tb.Fatalf("decode %s: %v", raw, err)
		}
	}
}

// demoScreenshot saves the page as GATEWAY_SCREENSHOTS/NAME.png when that variable is set.
func demoScreenshot(tb testing.TB, ctx context.Context, name string) {
	tb.Helper()
	dir := os.Getenv("GATEWAY_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// waitUntil polls cond every 100 ms until it holds or within passes.
func waitUntil(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startTestDemo runs a demo on loopback with a small data set over a Thuraya link.
func startTestDemo(tb testing.TB, o DemoOptions) (*Demo, *syncBuffer) {
	tb.Helper()
	m := NewMain()
	out := &syncBuffer{}
	m.Stdout, m.Stderr = out, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = tb.TempDir()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Docs == 0 {
		o.Docs = 300
	}
	if o.Link == (linksim.Config{}) {
		o.Link = linksim.Thuraya
	}
	if o.LogLevel == 0 {
		o.LogLevel = slog.LevelWarn
	}
	d, err := m.StartDemo(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			tb.Errorf("demo close: %v", err)
		}
	})
	return d, out
}

// TestDemo_BrowserEndToEnd is the demo as the README tells a site admin to try it: a browser
// opens the pairing link, edits a person in the web app's form and creates one through
// gateway.js, and both writes cross the simulated satellite link to the ERP5 double; the
// status page then shows the link up and the outbox drained.
func TestDemo_BrowserEndToEnd(t *testing.T) {
	d, _ := startTestDemo(t, DemoOptions{Seed: 7})
	if d.Seeded != len(d.Sim.Documents()) || d.Seeded < 250 {
		t.Fatalf("replica seeded with %d documents; the double has %d", d.Seeded, len(d.Sim.Documents()))
	}
	var person *erp5sim.Document
	for _, doc := range d.Sim.Documents() {
		if doc.PortalType == "Person" {
			person = doc
			break
		}
	}
	if person == nil {
		t.Fatal("the double has no Person")
	}
	ctx := demoBrowser(t)

	// Pairing: the invite link's page redeems the code and keeps the token.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.Invite)); err != nil {
		t.Fatal(err)
	}
	var paired bool
	demoEval(t, ctx, `new Promise((resolve) => {
		const t0 = Date.now();
		const check = async () => {
			const m = await import('/gateway.js');
			if (m.storedCredentials()) resolve(true);
			else if (Date.now() - t0 > 15000) resolve(false);
			else setTimeout(check, 50);
		};
		check();
	})`, &paired)
	if !paired {
		t.Fatal("the pairing page did not store credentials")
	}

	// An edit in the web app's form, as a site user makes it: the answer comes once the
	// write is committed on the site.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.Server.URL()+"#/doc/"+person.ID)); err != nil {
		t.Fatal(err)
	}
	var filled bool
	demoEval(t, ctx, `new Promise((resolve) => {
		const t0 = Date.now();
		const check = () => {
			const el = document.querySelector('.doc-form [data-field=title] input');
			if (el && el.value) {
				el.focus();
				el.value = 'Edited in the demo';
				el.dispatchEvent(new Event('input', {bubbles: true}));
				el.dispatchEvent(new Event('change', {bubbles: true}));
				resolve(true);
			} else if (Date.now() - t0 > 15000) resolve(false);
			else setTimeout(check, 50);
		};
		check();
	})`, &filled)
	if !filled {
		t.Fatal("the person's form did not show its title")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`))); err != nil {
		t.Fatal(err)
	}
	var saved string
	demoEval(t, ctx, `new Promise((resolve) => {
		const t0 = Date.now();
		const check = () => {
			const el = document.querySelector('.save-state');
			if (el && /Saved/.test(el.textContent)) resolve(el.textContent);
			else if (Date.now() - t0 > 15000) resolve(el ? el.textContent : '');
			else setTimeout(check, 50);
		};
		check();
	})`, &saved)
	if !strings.Contains(saved, "Saved") {
		t.Fatalf("after saving the form says %q", saved)
	}

	// A creation from page JavaScript, over the data channel (gateway.js, as the app uses it).
	var res struct {
		Post map[string]string `json:"post"`
		Err  string            `json:"err"`
	}
	demoEval(t, ctx, `(async () => {
		try {
			const m = await import('/gateway.js');
			const gw = await m.connect();
			const post = await gw.post({portal_type: 'Person', title: 'Nova Pessoa', first_name: 'Nova', last_name: 'Pessoa'}, m.Gateway.newKey());
			return {post};
		} catch (e) { return {err: String(e && (e.message || e))}; }
	})()`, &res)
	if res.Err != "" || !strings.Contains(res.Post["id"], "person_module/") {
		t.Fatalf("browser post: %v %s", res.Post, res.Err)
	}

	// Both cross the link and reach the double.
	waitUntil(t, 60*time.Second, "the edit to reach ERP5", func() bool {
		doc := d.Sim.Document(person.ID)
		return doc != nil && doc.Properties["title"] == "Edited in the demo"
	})
	waitUntil(t, 60*time.Second, "the new person to reach ERP5", func() bool {
		for _, c := range d.Sim.Applied(DemoSiteID, "") {
			if c.Op == "post" && c.Fields["title"] == "Nova Pessoa" {
				return true
			}
		}
		return false
	})
	if st := d.Link.Stats(); st.Sent[linksim.Up] == 0 || st.Sent[linksim.Down] == 0 {
		t.Errorf("nothing crossed the simulated link: %+v", st)
	}

	// The status page, from this machine, shows it.
	waitUntil(t, 20*time.Second, "the outbox to drain", func() bool {
		rep := fetchStatus(t, d.Server.URL(), "")
		return rep.Outbox.Waiting == 0
	})
	rep := fetchStatus(t, d.Server.URL(), "")
	if rep.Peers.Online != 1 || rep.Peers.Paired != 1 || rep.Link == nil || rep.Link.Settled < 2 || rep.Traffic.BytesToday == 0 {
		t.Errorf("status: peers %+v, link %+v, traffic %+v", rep.Peers, rep.Link, rep.Traffic)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(d.Server.URL()+"status")); err != nil {
		t.Fatal(err)
	}
	var tiles map[string]string
	demoEval(t, ctx, `new Promise((resolve) => {
		const t0 = Date.now();
		const check = () => {
			if (!document.getElementById('report').hidden || Date.now() - t0 > 15000) {
				const out = {};
				for (const t of document.querySelectorAll('.tile')) out[t.id] = t.querySelector('.big').textContent;
				out.live = document.getElementById('live').className;
				resolve(out);
			} else setTimeout(check, 50);
		};
		check();
	})`, &tiles)
	if tiles["t-link"] != "Up" || tiles["t-queue"] != "0" || tiles["t-problems"] != "0" || !strings.HasSuffix(tiles["t-peers"], "/ 1") {
		t.Errorf("status tiles = %v", tiles)
	}
	if tiles["live"] != "live ok" {
		t.Errorf("status live indicator = %q", tiles["live"])
	}
	demoScreenshot(t, ctx, "demo-status")
}

// demoJS quotes s as a JavaScript string literal.
func demoJS(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// fetchStatus GETs /status.json with token ("" for none) and decodes it.
func fetchStatus(tb testing.TB, base, token string) *StatusReport {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"status.json", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("status.json: %s", resp.Status)
	}
	var rep StatusReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		tb.Fatal(err)
	}
	return &rep
}

// TestDemo_Command runs `gateway demo` as the README's first command does (on a free port):
// it prints the addresses, a pairing link, what to try, and stops cleanly on the signal.
func TestDemo_Command(t *testing.T) {
	m := NewMain()
	var out syncBuffer
	m.Stdout, m.Stderr, m.Stdin = &out, io.Discard, strings.NewReader("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	data := t.TempDir()
	go func() {
		done <- m.Run(ctx, []string{"--data-dir", data, "demo", "--listen", "127.0.0.1:0", "--docs", "60", "--no-qr", "--link", "2mbit,100ms"})
	}()
	waitUntil(t, 30*time.Second, "the welcome", func() bool { return strings.Contains(out.String(), "Ctrl-C stops the demo.") })
	text := out.String()
	for _, want := range []string{"Web app:      http://127.0.0.1:", "Status page:", "/pair#code=", "What to try:", "2mbit,100ms",
		"replica seeded with 60 documents", filepath.Join(data, "gateway.yaml") + " outbox ls"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's welcome lacks %q:\n%s", want, text)
		}
	}
	// The written configuration lets operator commands reach the demo's data.
	cfg, err := ReadConfigFile(filepath.Join(data, "gateway.yaml"))
	if err != nil || cfg.SiteID != DemoSiteID || cfg.DataDir != data {
		t.Errorf("demo config: %+v, %v", cfg, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop")
	}
	if !strings.Contains(out.String(), "stopping the demo") {
		t.Errorf("no stop message:\n%s", out.String())
	}
}

func TestDemo_UsageErrors(t *testing.T) {
	for _, argv := range [][]string{
		{"demo", "--link", "fast"},
		{"demo", "--outage-every", "30s", "--outage-for", "1m"},
		{"demo", "--docs", "-1"},
		{"demo", "extra"},
	} {
		_, errOut, code := runMain(t, argv...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", argv, code, errOut)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader on different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// TestServerClose_FinalFlush stops the gateway while a write is on its way to ERP5 over the
// satellite link: Close lets the exchange finish (the bounded final flush) rather than cut it
// and leave the entry uncertain.
func TestServerClose_FinalFlush(t *testing.T) {
	d, _ := startTestDemo(t, DemoOptions{Seed: 3, Docs: 100})
	ctx := context.Background()
	var person string
	for _, doc := range d.Sim.Documents() {
		if doc.PortalType == "Person" {
			person = doc.ID
			break
		}
	}
	waitUntil(t, 30*time.Second, "the uplink to find the receiver", func() bool { return d.Server.Uplink.Status().Mode == "batch" })
	res, err := d.Server.DB.Write(ctx, sqlite.Write{Op: "put", ID: person, Doc: map[string]any{"title": "Sent at shutdown"}, Peer: "p"})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the entry to be inflight", func() bool {
		e, err := d.Server.DB.OutboxEntry(ctx, res.Seq)
		return err == nil && e.State == outbox.StateInflight
	})
	cctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	if err := d.Server.Close(cctx); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(d.DataDir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := db.OutboxEntry(ctx, res.Seq)
	if err != nil || e.State != outbox.StateDone {
		t.Fatalf("after Close the entry is %v (%v), want done", e.State, err)
	}
	if got := d.Sim.Document(person).Properties["title"]; got != "Sent at shutdown" {
		t.Errorf("ERP5 has title %v", got)
	}
	// The link's history ends with the gateway stopped.
	raw, _ := db.Meta(ctx, MetaLinkHistory)
	if !strings.HasSuffix(raw, `"state":"off"}]`) {
		t.Errorf("link history: %s", raw)
	}
}

// TestDemo_HeadOffice has head office edit people at the double: the downlink brings the
// edits into the replica across the link.
func TestDemo_HeadOffice(t *testing.T) {
	d, out := startTestDemo(t, DemoOptions{Seed: 5, Docs: 200, HeadOfficeEvery: 300 * time.Millisecond})
	waitUntil(t, 10*time.Second, "the demo to say so", func() bool { return strings.Contains(out.String(), "head office edited") })
	ctx := context.Background()
	var change erp5sim.Change
	waitUntil(t, 20*time.Second, "a head-office edit", func() bool {
		for _, c := range d.Sim.Changes() {
			if c.Via == erp5sim.ViaHeadOffice {
				change = c
				return true
			}
		}
		return false
	})
	phone, _ := change.Fields["default_telephone_text"].(string)
	if phone == "" {
		t.Fatalf("head-office change: %+v", change)
	}
	waitUntil(t, 60*time.Second, "the edit in the replica", func() bool {
		doc, err := d.Server.DB.GetDocument(ctx, change.ID)
		return err == nil && strings.Contains(string(doc.Body), phone)
	})
}

// TestDemo_Open lets any browser in: a peer without a token is enrolled with the demo's role.
func TestDemo_Open(t *testing.T) {
	d, _ := startTestDemo(t, DemoOptions{Seed: 2, Docs: 50, Open: true, Role: "clerk"})
	if d.Invite != "" {
		t.Errorf("open enrollment printed an invite: %s", d.Invite)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d.Server.URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Role != "clerk" || c.Token == "" {
		t.Errorf("enrolled as %q with token %q", c.Role, c.Token)
	}
}
