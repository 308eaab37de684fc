package lan_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sitesync.example/gateway/internal/browsertest"
)

// newBrowser starts a headless Chromium with a fresh profile, on a loopback-only network
// setup: loopback ICE candidates allowed and host addresses not hidden behind mDNS.
func newBrowser(tb testing.TB) context.Context {
	tb.Helper()
	opts := browsertest.Options(tb)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	tb.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// evalJSON runs an async JavaScript expression in the page and decodes its result.
func evalJSON(tb testing.TB, ctx context.Context, expr string, v any) {
	tb.Helper()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("evaluate: %v", err)
	}
	if err := json.Unmarshal(res, v); err != nil {
		tb.Fatalf("decode %s: %v", res, err)
	}
}

// screenshot saves the page as GATEWAY_SCREENSHOTS/lan-NAME.png when that variable is set
// (make screenshots).
func screenshot(tb testing.TB, ctx context.Context, name string) {
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
	if err := os.WriteFile(filepath.Join(dir, "lan-"+name+".png"), buf, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// browserScript runs every RPC method from page JavaScript through gateway.js.
const browserScript = `(async () => {
  const m = await import('/gateway.js');
  const out = {};
  const t0 = performance.now();
  const gw = await m.connect();
  out.readyMs = performance.now() - t0;
  out.peer = gw.peer;
  out.role = gw.role;
  const err = async (p) => {
    try { await p; return null; } catch (e) { return {name: e.name, code: e.code, status: e.status, reason: e.reason, fields: e.fields}; }
  };
  const big = '0123456789abcdef'.repeat(1 << 16);
  out.put = await gw.put('big-doc', {title: 'big', text: big}, m.Gateway.newKey());
  out.roundTrip = (await gw.get('big-doc')).text === big;
  out.bigLen = (await gw.get('big')).text.length;
  out.post = await gw.post({portal_type: 'Person', title: 'Ada'});
  out.notFound = await err(gw.get('person_module/404'));
  out.removeErr = await err(gw.remove('a', 'k1'));
  out.actionErr = await err(gw.action('a', 'confirm', {comment: 'ok'}));
  out.allDocsErr = await err(gw.allDocs({query: 'portal_type:"Person"', sort_on: [['title', 'ascending']], limit: [0, 10]}));
  out.sync = await gw.sync(['a']);
  out.describe = await gw.describe();
  out.status = await gw.status();
  out.unknown = await err(gw.call('drop_tables', {}));
  out.badParams = await err(gw.call('get', {id: 5}));
  out.batch = (await gw.batch([{method: 'status'}, {method: 'get', params: {id: 'person_module/404'}}]))
    .map((r) => r.error ? r.error.status : 'ok');
  window.gw = gw;
  window.changed = new Promise((r) => gw.addEventListener('changed', (e) => r(e.detail), {once: true}));
  window.gwClosed = new Promise((r) => gw.addEventListener('close', (e) => r(e.detail.reason), {once: true}));
  return out;
})()`

func TestBrowser(t *testing.T) {
	ctx := newBrowser(t)
	g := MustOpenGateway(t, nil)
	code := g.Invite(t, "tablet-1", "clerk")

	// Pairing: the invite link's page redeems the code and keeps the token.
	if err := chromedp.Do(ctx, chromedp.Navigate(g.URL()+"pair#code="+code)); err != nil {
		t.Fatal(err)
	}
	var paired string
	evalJSON(t, ctx, `new Promise((resolve) => {
		const check = () => {
			const el = document.getElementById('msg');
			if (el && el.className) resolve(el.textContent); else setTimeout(check, 20);
		};
		check();
	})`, &paired)
	if !strings.Contains(paired, "paired as “tablet-1”") {
		t.Fatalf("pairing page says %q", paired)
	}
	screenshot(t, ctx, "paired")
	var hash string
	evalJSON(t, ctx, `location.hash`, &hash)
	if hash != "" {
		t.Errorf("the code stays in the address bar: %q", hash)
	}

	// The web app's page connects with the stored token.
	if err := chromedp.Do(ctx, chromedp.Navigate(g.URL())); err != nil {
		t.Fatal(err)
	}
	var state string
	evalJSON(t, ctx, `new Promise((resolve) => {
		const check = () => {
			const el = document.getElementById('state');
			if (el && el.className) resolve(el.textContent); else setTimeout(check, 20);
		};
		check();
	})`, &state)
	if state != "Connected as tablet-1 (clerk)." {
		t.Fatalf("index page says %q", state)
	}
	screenshot(t, ctx, "connected")

	// Every method from page JavaScript, over a second channel of the same peer.
	type rpcErr struct {
		Name   string            `json:"name"`
		Code   int               `json:"code"`
		Status int               `json:"status"`
		Reason string            `json:"reason"`
		Fields map[string]string `json:"fields"`
	}
	var out struct {
		ReadyMs    float64           `json:"readyMs"`
		Peer       string            `json:"peer"`
		Role       string            `json:"role"`
		Put        map[string]string `json:"put"`
		RoundTrip  bool              `json:"roundTrip"`
		BigLen     int               `json:"bigLen"`
		Post       map[string]string `json:"post"`
		NotFound   *rpcErr           `json:"notFound"`
		RemoveErr  *rpcErr           `json:"removeErr"`
		ActionErr  *rpcErr           `json:"actionErr"`
		AllDocsErr *rpcErr           `json:"allDocsErr"`
		Sync       json.RawMessage   `json:"sync"`
		Describe   map[string]string `json:"describe"`
		Status     map[string]string `json:"status"`
		Unknown    *rpcErr           `json:"unknown"`
		BadParams  *rpcErr           `json:"badParams"`
		Batch      []any             `json:"batch"`
	}
	evalJSON(t, ctx, browserScript, &out)
	t.Logf("browser channel ready in %.1f ms", out.ReadyMs)
	if out.Peer != "tablet-1" || out.Role != "clerk" {
		t.Errorf("peer %q role %q", out.Peer, out.Role)
	}
	if out.Put["id"] != "big-doc" || !out.RoundTrip || out.BigLen != 1<<20 {
		t.Errorf("1 MiB both ways: put %v, round trip %v, generated %d bytes", out.Put, out.RoundTrip, out.BigLen)
	}
	if !strings.HasPrefix(out.Post["id"], "person_module/local-") {
		t.Errorf("post: %v", out.Post)
	}
	for name, tc := range map[string]struct {
		got    *rpcErr
		code   int
		status int
		reason string
	}{
		"get missing":    {out.NotFound, -32000, 404, "not_found"},
		"remove":         {out.RemoveErr, -32000, 409, "key_reused"},
		"action":         {out.ActionErr, -32000, 400, "invalid"},
		"allDocs":        {out.AllDocsErr, -32000, 503, "offline"},
		"unknown method": {out.Unknown, -32601, 400, "method_not_found"},
		"bad params":     {out.BadParams, -32602, 400, "invalid_params"},
	} {
		if tc.got == nil || tc.got.Name != "GatewayError" || tc.got.Code != tc.code || tc.got.Status != tc.status || tc.got.Reason != tc.reason {
			t.Errorf("%s: %+v, want code %d status %d reason %s", name, tc.got, tc.code, tc.status, tc.reason)
		}
	}
	if out.ActionErr != nil && out.ActionErr.Fields["title"] != "required" {
		t.Errorf("action error fields: %v", out.ActionErr.Fields)
	}
	if !strings.Contains(string(out.Sync), `"synced"`) || out.Describe["role"] != "clerk" || out.Status["peer"] != "tablet-1" {
		t.Errorf("sync %s, describe %v, status %v", out.Sync, out.Describe, out.Status)
	}
	if len(out.Batch) != 2 || out.Batch[0] != "ok" || out.Batch[1] != float64(404) {
		t.Errorf("batch: %v", out.Batch)
	}

	// Notifications reach the page.
	g.NotifyChanged([]string{"person_module/1"}, nil, nil)
	var changed struct {
		IDs []string `json:"ids"`
	}
	evalJSON(t, ctx, `window.changed`, &changed)
	if len(changed.IDs) != 1 || changed.IDs[0] != "person_module/1" {
		t.Errorf("changed: %+v", changed)
	}

	// Revocation closes the page's channels at once, and the token is refused from then on.
	if err := g.Peers.RevokePeer(context.Background(), "tablet-1"); err != nil {
		t.Fatal(err)
	}
	if n := g.RevokePeer("tablet-1"); n != 2 {
		t.Errorf("revocation closed %d channels, want the page's 2", n)
	}
	var reason string
	evalJSON(t, ctx, `window.gwClosed`, &reason)
	if reason == "" {
		t.Error("close event without a reason")
	}
	evalJSON(t, ctx, `Promise.race([import('/gateway.js').then((m) => m.connect().then(() => 'connected', (e) => e.reason)), new Promise((r) => setTimeout(() => r('timeout'), 15000))])`, &reason)
	if reason != "revoked" {
		t.Errorf("connect after revocation: %q, want revoked", reason)
	}
}
