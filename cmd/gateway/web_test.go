package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"sitesync.example/gateway"
	"sitesync.example/gateway/internal/browsertest"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
)

// The site web app's tests drive a real headless Chromium against a gateway started in this
// process: one browser and one story, from pairing by an invite link to revocation, as a site
// user lives it. Screenshots go to GATEWAY_SCREENSHOTS when set (`make screenshots` points it
// at docs/screenshots), else to a temporary folder.

// webStep bounds one browser action or wait.
const webStep = 15 * time.Second

// webWidth and webHeight are a desktop screen's viewport, in CSS pixels.
const webWidth, webHeight = 1280, 860

// startChromium starts a headless Chromium with a fresh profile, loopback ICE candidates
// allowed and host addresses not hidden behind mDNS, and returns its first tab's context.
func startChromium(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(browsertest.Options(tb), chromedp.Flag("hide-scrollbars", true), chromedp.Flag("force-device-scale-factor", "1"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// webPage is one browser tab. It records uncaught exceptions and console errors: the app
// shows expected states (offline, refused, invalid) on the page, never as errors.
type webPage struct {
	tb   testing.TB
	ctx  context.Context
	name string

	mu       sync.Mutex
	problems []string
	dialogs  []string // the types of the JavaScript dialogs the page opened (all accepted)
}

// openTab opens a tab: the browser's first tab when first is set, else a new one (with
// opts: chromedp.WithNewBrowserContext() gives it storage of its own, another browser).
func openTab(tb testing.TB, browser context.Context, name string, first bool, opts ...chromedp.ContextOption) *webPage {
	tb.Helper()
	ctx := browser
	if !first {
		var cancel context.CancelFunc
		ctx, cancel = chromedp.NewContext(browser, opts...)
		tb.Cleanup(cancel)
		if err := chromedp.Do(ctx); err != nil {
			tb.Fatalf("open tab %s: %v", name, err)
		}
	}
	p := &webPage{tb: tb, ctx: ctx, name: name}
	p.do(tb, "size the screen", chromedp.EmulateViewport(webWidth, webHeight))
	err := chromedp.Listen(ctx, func(ev any) {
		var problem string
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			p.mu.Lock()
			p.dialogs = append(p.dialogs, string(ev.Type))
			p.mu.Unlock()
			// Accept it (leave the page) from another goroutine: a listener may not call.
			go chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
				return err
			}))
			return
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			problem = "uncaught: " + d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				problem += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			problem = "console.error: " + strings.Join(args, " ")
		default:
			return
		}
		p.mu.Lock()
		p.problems = append(p.problems, problem)
		p.mu.Unlock()
	})
	if err != nil {
		tb.Fatalf("listen to tab %s: %v", name, err)
	}
	return p
}

// checkProblems fails the test for every exception or console error the tab saw.
func (p *webPage) checkProblems(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.problems {
		tb.Errorf("%s: %s", p.name, pr)
	}
	p.problems = nil
}

func (p *webPage) do(tb testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, webStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.Fatalf("%s: %s: %v\n%s", p.name, what, err, p.describe())
	}
}

// eval runs JavaScript (awaiting a promise) and decodes its value into v.
func (p *webPage) eval(tb testing.TB, expr string, v any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, webStep)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("%s: evaluate %s: %v\n%s", p.name, expr, err, p.describe())
	}
	if v != nil {
		if err := json.Unmarshal(res, v); err != nil {
			tb.Fatalf("%s: decode %s: %v", p.name, res, err)
		}
	}
}

// wait polls a JavaScript expression until it is truthy.
func (p *webPage) wait(tb testing.TB, what, expr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, webStep+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[json.RawMessage](expr, chromedp.WithPollingInterval(30*time.Millisecond), chromedp.WithPollingTimeout(webStep)))
	if err != nil {
		tb.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.describe())
	}
}

// text returns an element's visible text ("" when there is none).
func (p *webPage) text(tb testing.TB, sel string) string {
	tb.Helper()
	var s string
	p.eval(tb, fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ''`, sel), &s)
	return s
}

// waitText waits until sel's text contains want.
func (p *webPage) waitText(tb testing.TB, sel, want string) {
	tb.Helper()
	p.wait(tb, fmt.Sprintf("%s to say %q", sel, want), fmt.Sprintf(`((document.querySelector(%q) || {}).innerText || '').includes(%q)`, sel, want))
}

// fill sets a form control's value as typing would, with input and change events.
func (p *webPage) fill(tb testing.TB, sel, value string) {
	tb.Helper()
	p.eval(tb, fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el) return false;
		el.focus();
		el.value = %q;
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
		return true;
	})()`, sel, value), nil)
}

// contrastJS lists the visible texts whose colour contrast with their background is below
// WCAG AA: 4.5:1, or 3:1 for large text. Disabled controls are exempt.
const contrastJS = `(() => {
	const parse = (c) => {
		const m = /rgba?\(([^)]+)\)/.exec(c);
		if (!m) return null;
		const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
		return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
	};
	const lum = ({r, g, b}) => {
		const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
		return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
	};
	const background = (el) => {
		for (let e = el; e; e = e.parentElement) {
			const c = parse(getComputedStyle(e).backgroundColor);
			if (c && c.a > 0.5) return c;
		}
		return {r: 255, g: 255, b: 255, a: 1};
	};
	const bad = [];
	const seen = new Set();
	const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	while (walk.nextNode()) {
		const el = walk.currentNode.parentElement;
		if (!walk.currentNode.textContent.trim() || seen.has(el)) continue;
		seen.add(el);
		if (el.getClientRects().length === 0 || el.closest('[hidden], .visually-hidden, :disabled, option')) continue;
		const st = getComputedStyle(el);
		if (st.visibility === 'hidden') continue;
		const fg = lum(parse(st.color)), bg = lum(background(el));
		const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
		const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
		const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
		if (ratio < need) bad.push(el.tagName + '.' + el.className + ' "' + walk.currentNode.textContent.trim().slice(0, 40) + '": ' + ratio.toFixed(2));
	}
	return bad;
})()`

// checkContrast fails the test for text below WCAG AA contrast on the page as it is.
func (p *webPage) checkContrast(tb testing.TB, where string) {
	tb.Helper()
	var bad []string
	p.eval(tb, contrastJS, &bad)
	for _, b := range bad {
		tb.Errorf("%s: low contrast: %s", where, b)
	}
}

// describe returns what the page shows, for failure messages.
func (p *webPage) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + '\n[state] ' + document.getElementById('state')?.innerText + '\n[banner] ' + document.getElementById('banner')?.innerText + '\n[main] ' + document.querySelector('main')?.innerText.slice(0, 1500)`))
	if err != nil {
		return "(page not readable: " + err.Error() + ")"
	}
	return res
}

// screenshot saves the screen (or one element when sel is set) as NAME.png in the screenshot
// folder: GATEWAY_SCREENSHOTS, else a temporary folder.
func (p *webPage) screenshot(tb testing.TB, dir, name, sel string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, webStep)
	defer cancel()
	var buf []byte
	var err error
	if sel != "" {
		buf, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	} else {
		// The screen as the user sees it, status bar at the bottom.
		buf, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		tb.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// pressKey presses one key as a keyboard does: the key-down event carries the character, so
// that a page that handles the key (preventDefault) keeps it out of the field that has focus.
// chromedp.KeyEvent sends the character as an event of its own, which nothing can prevent.
func pressKey(r rune, modifiers ...chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var down, up *input.DispatchKeyEventParams
		text := ""
		for _, e := range kb.Encode(r) {
			switch e.Type {
			case kb.KeyDown:
				down = e
			case kb.KeyChar:
				text = e.Text
			case kb.KeyUp:
				up = e
			}
		}
		for _, m := range modifiers {
			down.Modifiers |= int64(m)
			up.Modifiers |= int64(m)
		}
		if len(modifiers) == 0 {
			down.Text, down.UnmodifiedText = text, text
		}
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *down); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *up)
		return err
	})
}

// webGateway is the gateway under the page: started, stopped and started again on the same
// address and data directory.
type webGateway struct {
	dir  string
	addr string
	s    *Server
	log  *webLog
	// hook, when set, runs after a write commits and before its reply is sent.
	hook atomic.Pointer[func()]
}

// webLog keeps the gateway's log for failure messages.
type webLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *webLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *webLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

func startWebGateway(tb testing.TB, dir string) *webGateway {
	tb.Helper()
	g := &webGateway{dir: dir, addr: "127.0.0.1:0", log: &webLog{}}
	g.start(tb)
	g.addr = g.s.LAN.Addr().String()
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("gateway log:\n%s", g.log)
		}
		g.stop(tb)
	})
	return g
}

func (g *webGateway) start(tb testing.TB) {
	tb.Helper()
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = g.dir
	m.Config.LAN.Listen = g.addr
	m.Config.LAN.WebRTC.UDPPort = 0
	m.Logger = slog.New(slog.NewTextHandler(g.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := m.StartServer(context.Background())
	if err != nil {
		tb.Fatalf("start gateway on %s: %v", g.addr, err)
	}
	notify := s.Service.OnChanged
	s.Service.OnChanged = func(ids []string, renamed map[string]string) {
		if h := g.hook.Load(); h != nil {
			(*h)()
		}
		notify(ids, renamed)
	}
	s.LAN.Channels() // the LAN's goroutines take this lock too: they see the wrapper
	g.s = s
}

func (g *webGateway) stop(tb testing.TB) {
	tb.Helper()
	if g.s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.s.Close(ctx); err != nil {
		tb.Errorf("close gateway: %v", err)
	}
	g.s = nil
}

// runWebCLI runs the command line in-process against the data directory.
func runWebCLI(tb testing.TB, dir string, argv ...string) string {
	tb.Helper()
	var out, errb bytes.Buffer
	m := NewMain()
	m.Stdin, m.Stdout, m.Stderr = strings.NewReader(""), &out, &errb
	if err := m.Run(context.Background(), append([]string{"--data-dir", dir}, argv...)); err != nil {
		tb.Fatalf("gateway %s: %v\n%s", strings.Join(argv, " "), err, errb.String())
	}
	return out.String()
}

// webPeople are the seeded contacts: enough for two pages of twenty.
var webPeople = []string{
	"Ana Lima", "Bruno Costa", "Carla Mendes", "Daniel Sousa", "Eva Rocha", "Fábio Nunes",
	"Gabriela Pinto", "Hugo Alves", "Inês Carvalho", "João Ferreira", "Karina Teixeira",
	"Luís Moreira", "Marta Ribeiro", "Nuno Gomes", "Olga Martins", "Paulo Lopes",
	"Quitéria Santos", "Rui Barbosa", "Sofia Cardoso", "Tiago Correia", "Úrsula Dias",
	"Vasco Fonseca", "Wanda Pires", "Xavier Reis", "Yara Machado", "Zacarias Vieira",
	"Amélia Faria", "Bernardo Cunha", "Clara Monteiro", "Duarte Araújo", "Elisa Freitas",
	"Filipe Batista",
}

// plainLetters writes the seeded names' accented letters without accents, for email addresses.
var plainLetters = strings.NewReplacer("á", "a", "ã", "a", "é", "e", "ê", "e", "í", "i", "ó", "o", "ú", "u", "Ú", "U", "ç", "c")

// seedWebData fills the replica as an ERP5 export would (no outbox), marks the Person scope
// as heard from ERP5 a while ago, and gives three people each an upstream state that is not
// "at head office": rejected, in conflict, waiting.
func seedWebData(tb testing.TB, db *sqlite.DB) (dead, conflict, pending string) {
	tb.Helper()
	ctx := context.Background()
	var lines []string
	add := func(id string, doc map[string]any) {
		b, err := json.Marshal(map[string]any{"id": id, "doc": doc})
		if err != nil {
			tb.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	for i, name := range webPeople {
		first, last, _ := strings.Cut(name, " ")
		email := strings.ToLower(plainLetters.Replace(first+"."+last)) + "@example.org"
		add(fmt.Sprintf("person_module/%d", 101+i), map[string]any{
			"portal_type": "Person", "title": name, "first_name": first, "last_name": last,
			"default_email_text": email, "reference": fmt.Sprintf("P-%04d", 101+i),
		})
	}
	for i, name := range []string{"Mina do Norte Lda", "Transportes Sul", "Oficina Central"} {
		add(fmt.Sprintf("organisation_module/%d", 11+i), map[string]any{"portal_type": "Organisation", "title": name, "default_address_city": "Tete"})
	}
	add("sale_order_module/31", map[string]any{"portal_type": "Sale Order", "title": "Helmets for Mina do Norte", "reference": "SO-31",
		"destination": "organisation_module/11", "start_date": "2026-11-20", "simulation_state": "draft"})
	for i, name := range []string{"Safety helmet", "Diesel", "Steel cable", "Work gloves"} {
		add(fmt.Sprintf("product_module/%d", 21+i), map[string]any{"portal_type": "Product", "title": name, "reference": fmt.Sprintf("PRD-%d", 21+i), "quantity_unit": "unit/piece"})
	}
	if _, err := db.Import(ctx, strings.NewReader(strings.Join(lines, "\n")+"\n"), sqlite.ImportOptions{}); err != nil {
		tb.Fatalf("seed: %v", err)
	}
	if err := db.SetSyncCursors(ctx, []sqlite.SyncCursor{
		{Scope: "Person", Complete: true, FreshAt: time.Now().Add(-12 * time.Minute)},
		{Scope: "Organisation", Complete: true, FreshAt: time.Now().Add(-9 * time.Minute)},
	}); err != nil {
		tb.Fatal(err)
	}
	put := func(id string, doc map[string]any) int64 {
		r, err := db.Write(ctx, sqlite.Write{Op: "put", ID: id, Doc: doc, Peer: "office-1"})
		if err != nil {
			tb.Fatalf("put %s: %v", id, err)
		}
		return r.Seq
	}
	dead, conflict, pending = "person_module/102", "person_module/103", "person_module/104"
	seqDead := put(dead, map[string]any{"reference": "P-0101"})
	seqConflict := put(conflict, map[string]any{"default_email_text": "carla@example.org"})
	b, err := db.Claim(ctx, outbox.Budget{}, nil)
	if err != nil || len(b.Entries) != 2 {
		tb.Fatalf("claim: %v, %v", b, err)
	}
	if _, err := db.Settle(ctx, []outbox.Result{
		{Seq: seqDead, Status: "rejected", Reason: "reference P-0101 is already used by Ana Lima"},
		{Seq: seqConflict, Status: "conflict", Current: json.RawMessage(`{"default_email_text":"carla.mendes@mina.example"}`)},
	}); err != nil {
		tb.Fatal(err)
	}
	put(pending, map[string]any{"default_email_text": "daniel@example.org"})
	return dead, conflict, pending
}

// TestWebApp is the site web app's story in a real browser: pairing from an invite link, the
// home page, a list with search, sort and paging, a create form with a validation error, an
// edit, the write in `gateway outbox ls` and on the page, two tabs side by side, a narrow
// tablet screen, a reload, a gateway restart under a write in flight, and revocation. Its
// steps run in order and build on each other.
func TestWebApp(t *testing.T) {
	start := time.Now()
	browser := startChromium(t)
	shots := os.Getenv("GATEWAY_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := startWebGateway(t, dir)
	deadID, conflictID, pendingID := seedWebData(t, g.s.DB)
	since := time.Now().Add(-47 * time.Minute)
	next := time.Now().Add(3 * time.Minute)
	g.s.Service.Link = func() rpc.LinkStatus {
		return rpc.LinkStatus{State: "down", Since: &since, NextTryAt: &next, LastError: "dial tcp: i/o timeout"}
	}
	ctx := context.Background()
	code, err := sqlite.NewPeerService(g.s.DB).CreateInvite(ctx, "tablet-1", "clerk", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tab := openTab(t, browser, "tab 1", true)
	var createdID string

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PairFromInviteLink", func(t *testing.T) {
			// Opening the link pairs and connects with no click, then shows the home page.
			tab.do(t, "open the invite link", chromedp.Navigate(g.s.URL()+"pair#code="+code))
			tab.waitText(t, "#msg", "paired as “tablet-1”")
			tab.wait(t, "the home page", `document.querySelector('a.card-link[href="#/list/Person"]') !== null`)
			tab.waitText(t, "#state", "Connected as tablet-1 (clerk).")
			var where struct {
				Path, Hash, Token string
				Types             []string
			}
			tab.eval(t, `({Path: location.pathname, Hash: location.hash,
				Token: (JSON.parse(localStorage.getItem('gateway.credentials')) || {}).token || '',
				Types: [...document.querySelectorAll('.card-title')].map((e) => e.innerText)})`, &where)
			if where.Path != "/" || where.Hash != "" {
				t.Errorf("after pairing the address is %s%s, want / without the code", where.Path, where.Hash)
			}
			if where.Token == "" {
				t.Error("no token stored after pairing")
			}
			// The clerk's types from describe: people, organisations, products; no orders.
			if got := strings.Join(where.Types, ","); got != "Organisations,People,Products" {
				t.Errorf("home page types = %s", got)
			}
			tab.waitText(t, ".card:has(a[href=\"#/list/Person\"]) .count", "32 documents")
			tab.screenshot(t, shots, "home", "")
		}},
		{"ListSortPage", func(t *testing.T) {
			tab.do(t, "open People", chromedp.Click(chromedp.CSS(`a.card-link[href="#/list/Person"]`)))
			tab.waitText(t, ".summary", "1–20 of 32")
			var rows []string
			tab.eval(t, `[...document.querySelectorAll('table.rows tbody tr')].map((r) => r.innerText.replace(/\s+/g, ' ').trim())`, &rows)
			if len(rows) != 20 || !strings.HasPrefix(rows[0], "Amélia Faria") {
				t.Fatalf("first page: %d rows, first %q", len(rows), rows)
			}
			// Each document's upstream state, with ERP5's reason for a rejection.
			tab.waitText(t, `tr[data-id="`+deadID+`"] .sync-cell`, "Rejected")
			tab.waitText(t, `tr[data-id="`+deadID+`"] .sync-cell`, "already used by Ana Lima")
			tab.waitText(t, `tr[data-id="`+conflictID+`"] .sync-cell`, "In conflict")
			tab.waitText(t, `tr[data-id="`+pendingID+`"] .sync-cell`, "Waiting to upload")
			tab.waitText(t, `tr[data-id="person_module/101"] .sync-cell`, "At head office")
			// The status bar: channel, link, uplink, freshness.
			tab.waitText(t, "#st-link", "down since")
			tab.waitText(t, "#st-uplink", "1 change · 1 rejected · 1 conflict")
			tab.waitText(t, "#st-fresh", "12 minutes ago")
			tab.waitText(t, "#st-channel", "open")
			tab.screenshot(t, shots, "list", "")
			tab.checkContrast(t, "list")
			tab.screenshot(t, shots, "status-bar", "#statusbar")

			// Sorting by a column header (text in natural, locale order: Ú with U), then paging.
			tab.do(t, "sort by title", chromedp.Click(chromedp.CSS(`th button.sort`)))
			tab.wait(t, "descending order", `document.querySelector('th[aria-sort]')?.getAttribute('aria-sort') === 'descending' && document.querySelector('table.rows tbody tr')?.innerText.startsWith('Zacarias Vieira')`)
			tab.do(t, "next page", chromedp.Click(chromedp.CSS(`.pager button:last-child`)))
			tab.waitText(t, ".summary", "21–32 of 32")
			tab.waitText(t, ".page-info", "Page 2 of 2")
			if h := tab.text(t, "table.rows tbody tr:last-child"); !strings.HasPrefix(h, "Amélia Faria") {
				t.Errorf("last row of page 2 in descending order: %q", h)
			}
		}},
		{"Search", func(t *testing.T) {
			// "/" focuses the search box; words are a full-text search.
			tab.do(t, "press /", pressKey('/'))
			var focused string
			tab.eval(t, `document.activeElement.type`, &focused)
			if focused != "search" {
				t.Fatalf("/ focused a %q, want the search box", focused)
			}
			tab.do(t, "type a search", chromedp.KeyEvent("mendes\r"))
			tab.waitText(t, ".summary", "1–1 of 1")
			tab.waitText(t, "table.rows tbody", "Carla Mendes")
			// A jIO query, kept in the address for a reload.
			tab.fill(t, "input[type=search]", `default_email_text:"%.m%" OR title:"Ana Lima"`)
			tab.do(t, "search", chromedp.Click(chromedp.CSS(`form.search button[type=submit]`)))
			tab.waitText(t, ".summary", "of 5")
			var hash string
			tab.eval(t, `location.hash`, &hash)
			if !strings.Contains(hash, "q=default_email_text") {
				t.Errorf("search not kept in the address: %s", hash)
			}
			// A query that does not parse is explained under the box, not thrown.
			tab.fill(t, "input[type=search]", `title:(`)
			tab.do(t, "search", chromedp.Click(chromedp.CSS(`form.search button[type=submit]`)))
			tab.waitText(t, "form.search .field-error", "This search cannot be understood")
			tab.eval(t, `document.querySelector('input[type=search]').getAttribute('aria-invalid')`, &focused)
			if focused != "true" {
				t.Error("the search box is not marked invalid")
			}
			// Searching in one field.
			tab.fill(t, "input[type=search]", "lima")
			tab.fill(t, "select[name=in]", "default_email_text")
			tab.waitText(t, ".summary", "1–1 of 1")
			tab.waitText(t, "table.rows tbody", "Ana Lima")
			// A filter on a field with a fixed set of values (the schema's enum).
			tab.do(t, "open Products", chromedp.Navigate(g.s.URL()+"#/list/Product"))
			tab.waitText(t, ".summary", "1–4 of 4")
			tab.fill(t, "select[name=f-quantity_unit]", "mass/kilogram")
			tab.waitText(t, ".summary", "No matches")
			tab.waitText(t, ".empty", "Nothing matches this search.")
			tab.fill(t, "select[name=f-quantity_unit]", "unit/piece")
			tab.waitText(t, ".summary", "1–4 of 4")
		}},
		{"KeyboardFocusOrder", func(t *testing.T) {
			// From the top of a fresh page, Tab walks the page in reading order, and every stop
			// shows a focus ring.
			tab.do(t, "open Organisations", chromedp.Navigate(g.s.URL()+"#/list/Organisation"), chromedp.Reload())
			tab.waitText(t, ".summary", "1–3 of 3")
			type stop struct {
				Name    string
				Outline string
			}
			var stops []stop
			for range 11 {
				tab.do(t, "press Tab", pressKey('\t'))
				var s stop
				tab.eval(t, `(() => {
					const el = document.activeElement;
					const st = getComputedStyle(el);
					const label = el.labels && el.labels[0] ? el.labels[0].innerText.split('\n')[0] : (el.innerText || el.getAttribute('aria-label') || '').trim();
					return {Name: el.tagName.toLowerCase() + ':' + label.replace(/\s+/g, ' '), Outline: st.outlineStyle + ' ' + st.outlineWidth};
				})()`, &s)
				stops = append(stops, s)
			}
			want := []string{"a:Skip to main content", "a:Site gateway", "a:Home", "a:New organisation", "input:Search", "button:Search",
				"select:Search in", "select:Sort by", "select:Per page", "button:Title ▲", "button:Corporate Name"}
			for i, s := range stops {
				if i < len(want) && s.Name != want[i] {
					t.Errorf("tab stop %d = %s, want %s", i+1, s.Name, want[i])
				}
				if !strings.HasPrefix(s.Outline, "solid 3px") {
					t.Errorf("tab stop %d (%s) has no visible focus ring: %s", i+1, s.Name, s.Outline)
				}
			}
			// The skip link moves focus to the content.
			tab.do(t, "back to the top", chromedp.Reload())
			tab.waitText(t, ".summary", "1–3 of 3")
			tab.do(t, "Tab, Enter", pressKey('\t'), pressKey('\r'))
			var focus string
			tab.eval(t, `document.activeElement.id`, &focus)
			if focus != "main" {
				t.Errorf("the skip link moved focus to %q", focus)
			}
		}},
		{"CreateWithValidationError", func(t *testing.T) {
			tab.do(t, "back to People", chromedp.Navigate(g.s.URL()+"#/list/Person"))
			tab.waitText(t, ".summary", "of 32")
			tab.eval(t, `document.activeElement.blur()`, nil) // keys in a field are text, not shortcuts
			tab.do(t, "press n for a new person", pressKey('n'))
			tab.wait(t, "the create form", `location.hash === '#/new/Person' && document.querySelector('[data-field=title] input') !== null`)
			// Labels on every control; the required mark on the title; only writable fields.
			var form struct {
				Fields    []string
				Unlabeled int
				Required  []string
			}
			tab.eval(t, `({
				Fields: [...document.querySelectorAll('.doc-form .field')].map((f) => f.dataset.field),
				Unlabeled: [...document.querySelectorAll('main input, main select, main textarea')].filter((el) => !el.labels || el.labels.length === 0).length,
				Required: [...document.querySelectorAll('.doc-form [required]')].map((el) => el.closest('.field').dataset.field),
			})`, &form)
			// The create form shows the same fields as the edit form (reference read-only for a clerk).
			if got := strings.Join(form.Fields, ","); got != "title,first_name,last_name,reference,default_email_text" {
				t.Errorf("create form fields = %s", got)
			}
			if form.Unlabeled != 0 {
				t.Errorf("%d controls without a label", form.Unlabeled)
			}
			if strings.Join(form.Required, ",") != "title" {
				t.Errorf("required fields = %v", form.Required)
			}
			// No title and a bad email: the gateway's messages show on their fields.
			tab.do(t, "type a first name", chromedp.SendKeys(chromedp.CSS(`[data-field=first_name] input`), "Zoé"))
			tab.fill(t, "[data-field=last_name] input", "Martins")
			tab.fill(t, "[data-field=default_email_text] input", "zoe at example")
			tab.do(t, "create", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			tab.waitText(t, "[data-field=default_email_text] .field-error", "Email is not in the expected form.")
			tab.waitText(t, "[data-field=title] .field-error", "Title is required.")
			tab.waitText(t, ".form-alert", "Please correct 2 fields")
			var state struct {
				Invalid []string
				Focus   string
				Typed   string
			}
			tab.eval(t, `({
				Invalid: [...document.querySelectorAll('[aria-invalid=true]')].map((el) => el.closest('.field').dataset.field),
				Focus: document.activeElement.className,
				Typed: document.querySelector('[data-field=first_name] input').value,
			})`, &state)
			if strings.Join(state.Invalid, ",") != "title,default_email_text" || state.Focus != "form-alert" || state.Typed != "Zoé" {
				t.Errorf("after the refusal: %+v", state)
			}
			tab.screenshot(t, shots, "form-validation", "")
			tab.checkContrast(t, "form with errors")
			// Corrected, it is created and shown as waiting to upload.
			tab.fill(t, "[data-field=title] input", "Zoé Martins")
			tab.fill(t, "[data-field=default_email_text] input", "zoe.martins@example.org")
			tab.do(t, "save with Ctrl+S", pressKey('s', chromedp.ModifierCtrl))
			tab.wait(t, "the new document's form", `location.hash.startsWith('#/doc/person_module/local-')`)
			tab.waitText(t, ".doc .alert.ok", "Created on the site gateway.")
			tab.waitText(t, ".head-badge", "Waiting to upload")
			tab.waitText(t, ".sync-panel", "when the link to head office is back")
			tab.eval(t, `decodeURIComponent(location.hash.slice('#/doc/'.length))`, &createdID)
		}},
		{"Edit", func(t *testing.T) {
			var ro struct{ ReadOnly, Value string }
			tab.eval(t, `(() => { const el = document.querySelector('[data-field=reference] input'); return {ReadOnly: String(el && el.readOnly), Value: el ? el.value : ''}; })()`, &ro)
			if ro.ReadOnly != "true" {
				t.Errorf("reference (readable, not writable by a clerk) read-only = %s", ro.ReadOnly)
			}
			tab.fill(t, "[data-field=default_email_text] input", "zoe@mina.example")
			tab.do(t, "save", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			tab.waitText(t, ".save-state", "Saved on the site gateway.")
			var email string
			tab.eval(t, `app.session.get(`+jsString(createdID)+`).then((d) => d.default_email_text)`, &email)
			if email != "zoe@mina.example" {
				t.Errorf("stored email = %q", email)
			}
			// A document ERP5 rejected says so, with ERP5's reason.
			tab.do(t, "open the rejected person", chromedp.Navigate(g.s.URL()+"#/doc/"+deadID))
			tab.waitText(t, ".sync-panel", "Head office rejected the last change: reference P-0101 is already used by Ana Lima")
			tab.do(t, "open the conflicting person", chromedp.Navigate(g.s.URL()+"#/doc/"+conflictID))
			tab.waitText(t, ".sync-panel", "In conflict")
			tab.wait(t, "the site's email", `document.querySelector('[data-field=default_email_text] input')?.value === 'carla@example.org'`)
			// The operator keeps head office's value: the open form shows it by itself.
			var conflicts []struct {
				Seq   int64  `json:"seq"`
				State string `json:"state"`
			}
			if err := json.Unmarshal([]byte(runWebCLI(t, dir, "outbox", "ls", "-o", "json", "--doc", conflictID)), &conflicts); err != nil || len(conflicts) != 1 {
				t.Fatalf("outbox ls for %s: %v %v", conflictID, conflicts, err)
			}
			runWebCLI(t, dir, "outbox", "resolve", fmt.Sprint(conflicts[0].Seq), "--keep", "remote", "--yes")
			// The gateway learns of it from the database at its next status (every few seconds).
			func() {
				ctx, cancel := context.WithTimeout(tab.ctx, 45*time.Second)
				defer cancel()
				if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-field=default_email_text] input')?.value === 'carla.mendes@mina.example'`,
					chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))); err != nil {
					t.Fatalf("head office's email in the open form: %v\n%s", err, tab.describe())
				}
			}()
			tab.waitText(t, ".sync-panel", "At head office")
			tab.do(t, "open a person the replica lacks", chromedp.Navigate(g.s.URL()+"#/doc/person_module/999"))
			tab.waitText(t, "main .alert", "This document does not exist on the site gateway.")
		}},
		{"OutboxAndPageAgree", func(t *testing.T) {
			var entries []struct {
				Seq   int64  `json:"seq"`
				State string `json:"state"`
				Op    string `json:"op"`
				DocID string `json:"doc_id"`
			}
			if err := json.Unmarshal([]byte(runWebCLI(t, dir, "outbox", "ls", "-o", "json", "--doc", createdID)), &entries); err != nil {
				t.Fatal(err)
			}
			var ops []string
			for _, e := range entries {
				ops = append(ops, e.Op+":"+e.State)
			}
			if strings.Join(ops, ",") != "post:pending,put:pending" {
				t.Errorf("outbox for %s: %v", createdID, ops)
			}
			// The list shows the same: the new person waits to upload.
			tab.do(t, "open the list", chromedp.Navigate(g.s.URL()+"#/list/Person?q=Zo%C3%A9"))
			tab.waitText(t, `tr[data-id="`+createdID+`"] .sync-cell`, "Waiting to upload")
			tab.waitText(t, "#st-uplink", "3 changes")
		}},
		{"TwoTabs", func(t *testing.T) {
			tab2 := openTab(t, browser, "tab 2", false)
			defer tab2.checkProblems(t)
			tab2.do(t, "open the list in a second tab", chromedp.Navigate(g.s.URL()+"#/list/Person?q=Tab"))
			tab2.waitText(t, ".summary", "No matches")
			tab2.waitText(t, "#state", "Connected as tablet-1 (clerk).")
			if n := g.s.LAN.Channels(); n != 2 {
				t.Errorf("open channels = %d, want one per tab", n)
			}
			// A person created in the first tab appears in the second one's list by itself.
			tab.do(t, "new person", chromedp.Navigate(g.s.URL()+"#/new/Person"))
			tab.wait(t, "the create form", `document.querySelector('[data-field=title] input') !== null`)
			tab.fill(t, "[data-field=title] input", "Tab Two Visitor")
			tab.do(t, "create", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			tab.wait(t, "the new document", `location.hash.startsWith('#/doc/')`)
			tab2.waitText(t, "table.rows tbody", "Tab Two Visitor")
			tab2.waitText(t, ".summary", "1–1 of 1")
			// An edit in the second tab reaches the first tab's open form.
			tab2.do(t, "open it", chromedp.Click(chromedp.CSS(`table.rows tbody tr a`)))
			tab2.wait(t, "its form", `document.querySelector('[data-field=last_name] input') !== null`)
			tab2.fill(t, "[data-field=last_name] input", "Visitor")
			tab2.do(t, "save", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			tab2.waitText(t, ".save-state", "Saved")
			tab.wait(t, "the other tab's edit", `document.querySelector('[data-field=last_name] input')?.value === 'Visitor'`)
		}},
		{"TabletViewport", func(t *testing.T) {
			tab.do(t, "a small tablet, upright", chromedp.EmulateViewport(600, 960, chromedp.EmulateTouch))
			defer tab.do(t, "back to the desktop", chromedp.EmulateViewport(webWidth, webHeight))
			tab.do(t, "open the list", chromedp.Navigate(g.s.URL()+"#/list/Person"))
			tab.waitText(t, ".summary", "1–20 of 34")
			var layout struct {
				Overflow  bool
				RowShown  string
				Bar       bool
				MinTarget float64
			}
			tab.eval(t, `({
				Overflow: document.documentElement.scrollWidth > window.innerWidth,
				RowShown: getComputedStyle(document.querySelector('table.rows tbody tr')).display,
				Bar: document.getElementById('statusbar').getBoundingClientRect().bottom <= window.innerHeight + 1,
				MinTarget: Math.min(...[...document.querySelectorAll('main button:not(.sort), main input, main select, main a.button')]
					.filter((el) => el.offsetParent !== null).map((el) => el.getBoundingClientRect().height)),
			})`, &layout)
			if layout.Overflow {
				t.Error("the list scrolls sideways on a 600 px screen")
			}
			if layout.RowShown != "block" {
				t.Errorf("rows are shown as %q, want cards (block)", layout.RowShown)
			}
			if !layout.Bar {
				t.Error("the status bar is not on screen")
			}
			if layout.MinTarget < 36 {
				t.Errorf("smallest touch target is %.0f px high", layout.MinTarget)
			}
			tab.screenshot(t, shots, "tablet-list", "")
			tab.checkContrast(t, "tablet list")
			tab.do(t, "open a form", chromedp.Navigate(g.s.URL()+"#/doc/person_module/101"))
			tab.wait(t, "the form", `document.querySelector('[data-field=title] input') !== null`)
			var formOverflow bool
			tab.eval(t, `document.documentElement.scrollWidth > window.innerWidth`, &formOverflow)
			if formOverflow {
				t.Error("the form scrolls sideways on a 600 px screen")
			}
		}},
		{"ReloadKeepsTokenAndTyping", func(t *testing.T) {
			tab.do(t, "edit form", chromedp.Navigate(g.s.URL()+"#/doc/person_module/105"))
			tab.wait(t, "the form", `document.querySelector('[data-field=first_name] input') !== null`)
			tab.fill(t, "[data-field=first_name] input", "Evangelina")
			tab.wait(t, "the draft kept", `Object.keys(sessionStorage).some((k) => k.startsWith('gateway.draft:'))`)
			tab.do(t, "reload", chromedp.Reload())
			tab.waitText(t, "#state", "Connected as tablet-1 (clerk).")
			tab.wait(t, "the typing restored", `document.querySelector('[data-field=first_name] input')?.value === 'Evangelina'`)
			tab.waitText(t, ".doc-form .note", "What you typed earlier was restored.")
			tab.do(t, "discard it", chromedp.Click(chromedp.CSS(`.doc-form .note button`)))
			tab.wait(t, "the stored value back", `document.querySelector('[data-field=first_name] input')?.value === 'Eva'`)
		}},
		{"RestartWithWriteInFlight", func(t *testing.T) {
			tab.do(t, "new person", chromedp.Navigate(g.s.URL()+"#/new/Person"))
			tab.wait(t, "the create form", `document.querySelector('[data-field=title] input') !== null`)
			tab.fill(t, "[data-field=title] input", "Only Once")
			tab.fill(t, "[data-field=default_email_text] input", "once@example.org")
			// The write commits, then the gateway goes away before its reply leaves.
			s := g.s
			cut := make(chan struct{})
			var once sync.Once
			hook := func() {
				once.Do(func() {
					s.LAN.RevokePeer("tablet-1") // closes the channels now: the reply is lost
					close(cut)
				})
			}
			g.hook.Store(&hook)
			defer g.hook.Store(nil)
			tab.do(t, "create", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			select {
			case <-cut:
			case <-time.After(webStep):
				t.Fatal("the write never reached the gateway")
			}
			g.stop(t)
			// The page says so, keeps the form, and tries again with backoff.
			tab.waitText(t, "#banner", "Not connected to the gateway")
			tab.waitText(t, "#banner", "1 change from this page is waiting")
			tab.waitText(t, ".save-state", "Will be saved as soon as the connection returns")
			tab.wait(t, "a failed attempt", `app.session.stats.failures >= 1 && app.session.state === 'waiting'`)
			tab.screenshot(t, shots, "offline", "")
			tab.checkContrast(t, "offline")
			var typed string
			tab.eval(t, `document.querySelector('[data-field=title] input').value`, &typed)
			if typed != "Only Once" {
				t.Errorf("the form lost what was typed: %q", typed)
			}
			g.start(t)
			tab.wait(t, "the created document after reconnecting", `location.hash.startsWith('#/doc/person_module/local-')`)
			tab.waitText(t, ".doc .alert.ok", "Created on the site gateway.")
			tab.waitText(t, "#state", "Connected as tablet-1 (clerk).")
			var stats struct{ Resent, Drops, Opened int }
			tab.eval(t, `({Resent: app.session.stats.resent, Drops: app.session.stats.drops, Opened: app.session.stats.opened})`, &stats)
			if stats.Resent < 1 || stats.Drops < 1 {
				t.Errorf("session stats %+v: the write was not resent after the drop", stats)
			}
			var id string
			tab.eval(t, `decodeURIComponent(location.hash.slice('#/doc/'.length))`, &id)
			// Exactly one document and one outbox entry: the resend got the first answer.
			res, err := g.s.Service.Call(ctx, gateway.Actor{Peer: "check", Role: "supervisor"}, "allDocs", json.RawMessage(`{"query":"title:\"Only Once\"","limit":[0,10]}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.(rpc.AllDocsResult); got.TotalRows != 1 || got.Rows[0].ID != id {
				t.Errorf("documents titled Only Once: %+v, want one, %s", got, id)
			}
			entries, _, err := g.s.DB.OutboxList(ctx, outbox.Filter{DocID: id, States: []string{"pending", "inflight", "done", "deferred", "uncertain", "held", "dead", "conflict", "merged", "superseded"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Op != "post" {
				t.Errorf("outbox entries for %s: %d, want one post", id, len(entries))
			}
		}},
		{"ReloadWithWriteInFlight", func(t *testing.T) {
			tab.do(t, "new person", chromedp.Navigate(g.s.URL()+"#/new/Person"))
			tab.wait(t, "the create form", `document.querySelector('[data-field=title] input') !== null`)
			tab.fill(t, "[data-field=title] input", "Reload Once")
			// The write commits; its reply waits until the page has been reloaded, and is lost.
			cut, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			hook := func() {
				once.Do(func() {
					close(cut)
					<-release
				})
			}
			g.hook.Store(&hook)
			defer g.hook.Store(nil)
			var releaseOnce sync.Once
			defer releaseOnce.Do(func() { close(release) })
			tab.do(t, "create", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			select {
			case <-cut:
			case <-time.After(webStep):
				t.Fatal("the write never reached the gateway")
			}
			tab.do(t, "reload", chromedp.Reload())
			tab.mu.Lock()
			dialogs := slices.Clone(tab.dialogs)
			tab.mu.Unlock()
			if !slices.Contains(dialogs, "beforeunload") {
				t.Errorf("leaving with a write unanswered did not ask first (dialogs %v)", dialogs)
			}
			// The reloaded page resends the write with its key, gets the first answer, and
			// moves on to the document.
			tab.wait(t, "the created document", `location.hash.startsWith('#/doc/person_module/local-')`)
			tab.waitText(t, ".doc .alert.ok", "Created on the site gateway.")
			releaseOnce.Do(func() { close(release) })
			var restored int
			tab.eval(t, `app.session.stats.restored`, &restored)
			if restored != 1 {
				t.Errorf("writes restored after the reload = %d, want 1", restored)
			}
			var id string
			tab.eval(t, `decodeURIComponent(location.hash.slice('#/doc/'.length))`, &id)
			res, err := g.s.Service.Call(ctx, gateway.Actor{Peer: "check", Role: "supervisor"}, "allDocs", json.RawMessage(`{"query":"title:\"Reload Once\"","limit":[0,10]}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.(rpc.AllDocsResult); got.TotalRows != 1 || got.Rows[0].ID != id {
				t.Errorf("documents titled Reload Once: %+v, want one, %s", got, id)
			}
			var left int
			tab.eval(t, `Object.keys(sessionStorage).filter((k) => k === 'gateway.writes' || k.startsWith('gateway.draft:new:')).length`, &left)
			if left != 0 {
				t.Errorf("%d writes or drafts left in the tab's storage", left)
			}
		}},
		{"WorkflowAction", func(t *testing.T) {
			// Another browser (storage of its own), paired as a storekeeper: sale orders, whose
			// form has dates, a customer reference and the transitions the role may run.
			code, err := sqlite.NewPeerService(g.s.DB).CreateInvite(ctx, "store-1", "storekeeper", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			store := openTab(t, browser, "storekeeper", false, chromedp.WithNewBrowserContext())
			defer store.checkProblems(t)
			// Before pairing, the page says what to do instead of failing.
			store.do(t, "open the gateway unpaired", chromedp.Navigate(g.s.URL()))
			store.waitText(t, "main", "This browser is not paired. Open the pairing link the gateway operator gave you.")
			store.do(t, "pair", chromedp.Navigate(g.s.URL()+"pair#code="+code))
			store.waitText(t, "#state", "Connected as store-1 (storekeeper).")
			// No order line in the replica, and ERP5 never reached for them: the list says so.
			store.do(t, "open the order lines", chromedp.Navigate(g.s.URL()+"#/list/Sale%20Order%20Line"))
			store.waitText(t, ".empty", "Head office (ERP5) has not been reached yet")
			store.do(t, "open the order", chromedp.Navigate(g.s.URL()+"#/doc/sale_order_module/31"))
			store.wait(t, "the order form", `document.querySelector('[data-field=destination] input') !== null`)
			var form struct {
				StartType, Buttons, ReadOnlyState string
			}
			store.eval(t, `({
				StartType: document.querySelector('[data-field=start_date] input').type,
				Buttons: [...document.querySelectorAll('.actions .buttons button')].map((b) => b.innerText).join(','),
				ReadOnlyState: String(document.querySelector('[data-field=simulation_state] input')?.readOnly),
			})`, &form)
			if form.StartType != "date" || form.Buttons != "Order,Plan" || form.ReadOnlyState != "true" {
				t.Errorf("order form: %+v", form)
			}
			store.fill(t, ".actions input", "customer called")
			store.do(t, "plan", chromedp.Click(chromedp.CSS(`.actions .buttons button:last-child`)))
			store.waitText(t, ".action-result", "“Plan” recorded on the site gateway.")
			entries, _, err := g.s.DB.OutboxList(ctx, outbox.Filter{DocID: "sale_order_module/31"})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Op != "action" {
				t.Errorf("outbox for the order: %d entries, want one action", len(entries))
			}
			store.waitText(t, ".head-badge", "Waiting to upload")
			// The customer is chosen by name: the picker searches the replica as one types, and
			// the order stores the chosen organisation's relative URL.
			store.wait(t, "the customer's title", `document.querySelector('[data-field=destination] input').value === 'Mina do Norte Lda'`)
			store.fill(t, "[data-field=destination] input", "sul")
			store.waitText(t, "[data-field=destination] .suggestions", "Transportes Sul")
			store.do(t, "choose it", chromedp.Click(chromedp.CSS(`[data-field=destination] .suggestion[data-id="organisation_module/12"]`)))
			store.do(t, "save", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			store.waitText(t, ".save-state", "Saved on the site gateway.")
			var dest string
			store.eval(t, `app.session.get('sale_order_module/31').then((d) => d.destination)`, &dest)
			if dest != "organisation_module/12" {
				t.Errorf("stored customer = %q, want organisation_module/12", dest)
			}
			// Emptying the picker clears the relation: the order needs a customer, and says so.
			store.fill(t, "[data-field=destination] input", "")
			store.do(t, "save", chromedp.Click(chromedp.CSS(`.doc-form button[type=submit]`)))
			store.waitText(t, "[data-field=destination] .field-error", "is required")
		}},
		{"RevokedPeerIsCutOff", func(t *testing.T) {
			tab.do(t, "open the list", chromedp.Navigate(g.s.URL()+"#/list/Person"))
			tab.waitText(t, ".summary", "of 36")
			out := runWebCLI(t, dir, "peers", "revoke", "tablet-1")
			if !strings.Contains(out, "closed 1 open channel") {
				t.Errorf("peers revoke: %s", out)
			}
			tab.waitText(t, "#state", "access has been revoked")
			tab.waitText(t, "main", "Ask the gateway operator for a new invite link.")
			if rows := tab.text(t, "table.rows"); rows != "" {
				t.Errorf("the revoked page still shows documents: %q", rows)
			}
			tab.do(t, "reload", chromedp.Reload())
			tab.waitText(t, "#state", "access has been revoked")
			if online := g.s.LAN.OnlinePeers(); slices.Contains(online, "tablet-1") {
				t.Errorf("online after revocation: %v", online)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			break
		}
	}
	tab.checkProblems(t)
	t.Logf("browser story: %v", time.Since(start).Round(time.Millisecond))
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
