package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"sitesync.example/gateway/erp5sim"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/sqlite"
)

// dialErr dials s with opts and returns the refusal, failing the test if the dial succeeds.
func dialErr(tb testing.TB, s *Server, opts client.Options) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.URL(), opts)
	if err == nil {
		c.Close()
		tb.Fatalf("dial with %+v succeeded", opts)
	}
	return err
}

// signalReason returns the reason of a signaling refusal, or "" for another error.
func signalReason(err error) string {
	var se *client.SignalError
	if errors.As(err, &se) {
		return se.Reason
	}
	return ""
}

// TestSecurity_Tokens: only paired, unrevoked tokens open a channel; revoking a peer closes
// its live channels at once and keeps it out; neither tokens nor invite codes are stored or
// logged in clear.
func TestSecurity_Tokens(t *testing.T) {
	dir := t.TempDir()
	var logs relBuffer
	s := relStart(t, dir, relOptions{Log: &logs})
	peers := sqlite.NewPeerService(s.DB)
	ctx := context.Background()
	c, creds := mustPairClient(t, s, "till-1", "clerk")
	tab2 := mustDial(t, s, creds.Token) // a second tab of the same peer
	secrets := []string{creds.Token}

	flip := []byte(creds.Token)
	flip[len(flip)/2] ^= 1
	forged := map[string]string{
		"Unenrolled":   "",
		"Random":       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"OneCharOff":   string(flip),
		"Truncated":    creds.Token[:len(creds.Token)-1],
		"Extended":     creds.Token + "x",
		"SQL":          `' OR 1=1 --`,
		"Wildcard":     "%",
		"HashOfToken":  sqlite.HashSecret(creds.Token),
		"NUL":          creds.Token + "\x00",
		"CaseFlipped":  strings.ToUpper(creds.Token),
		"LongGarbage":  strings.Repeat("z", 100<<10),
		"Unicode":      "тoken",
		"PeerNameOnly": "till-1",
	}
	for name, tok := range forged {
		if tok == creds.Token {
			continue // a case change of a token without letters
		}
		t.Run(name, func(t *testing.T) {
			err := dialErr(t, s, client.Options{Token: tok})
			if got := signalReason(err); got != wire.ReasonUnauthorized {
				t.Errorf("dial: %v, want an unauthorized refusal", err)
			}
		})
		if len(tok) > 8 && tok != creds.Token && name != "HashOfToken" {
			secrets = append(secrets, tok)
		}
	}

	t.Run("Revoked", func(t *testing.T) {
		call(t, c, "status", nil)
		_, errOut, code := runMain(t, "--data-dir", dir, "peers", "revoke", "till-1")
		if code != 0 {
			t.Fatalf("peers revoke: exit %d: %s", code, errOut)
		}
		for _, cl := range []*client.Client{c, tab2} {
			select {
			case <-cl.Done():
			case <-time.After(3 * time.Second):
				t.Fatal("a live channel of the revoked peer stayed open")
			}
		}
		if err := c.Call(ctx, "get", map[string]any{"id": "x"}, nil); err == nil {
			t.Error("a call on the revoked channel succeeded")
		}
		err := dialErr(t, s, client.Options{Token: creds.Token})
		if got := signalReason(err); got != wire.ReasonRevoked {
			t.Errorf("dial after revoke: %v, want a revoked refusal", err)
		}
		// The name can be paired again, with a new token; the old one stays out.
		c2, creds2 := mustPairClient(t, s, "till-1", "clerk")
		secrets = append(secrets, creds2.Token)
		if creds2.Token == creds.Token {
			t.Fatal("re-pairing gave the revoked token back")
		}
		call(t, c2, "describe", nil)
		if got := signalReason(dialErr(t, s, client.Options{Token: creds.Token})); got != wire.ReasonRevoked && got != wire.ReasonUnauthorized {
			t.Errorf("the revoked token after re-pairing: %q", got)
		}
	})

	t.Run("Invites", func(t *testing.T) {
		hc := &http.Client{Timeout: 5 * time.Second}
		code, err := peers.CreateInvite(ctx, "tablet-9", "clerk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, code)
		cr, err := client.Pair(ctx, hc, s.URL(), code)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, cr.Token)
		var pe *client.PairError
		if _, err := client.Pair(ctx, hc, s.URL(), code); !errors.As(err, &pe) || pe.Status != 401 || pe.Reason != "used" {
			t.Errorf("reused invite: %v, want 401 used", err)
		}
		short, err := peers.CreateInvite(ctx, "tablet-10", "clerk", time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, short)
		time.Sleep(20 * time.Millisecond)
		if _, err := client.Pair(ctx, hc, s.URL(), short); !errors.As(err, &pe) || pe.Status != 401 || pe.Reason != "expired" {
			t.Errorf("expired invite: %v, want 401 expired", err)
		}
		for _, bad := range []string{"nope", code + "x", `' OR ''='`, strings.Repeat("A", 5000)} {
			if _, err := client.Pair(ctx, hc, s.URL(), bad); !errors.As(err, &pe) || pe.Status/100 != 4 {
				t.Errorf("invite %.20q: %v, want a 4xx refusal", bad, err)
			}
		}
	})

	t.Run("NotInTheDatabaseOrLogs", func(t *testing.T) {
		var files bytes.Buffer
		for _, suffix := range []string{"", "-wal"} {
			b, _ := os.ReadFile(filepath.Join(dir, sqlite.FileName+suffix))
			files.Write(b)
		}
		logged := logs.String()
		if !strings.Contains(logged, "till-1") {
			t.Fatalf("the log capture is empty or missed the peer: %.500s", logged)
		}
		for _, sec := range secrets {
			if bytes.Contains(files.Bytes(), []byte(sec)) {
				t.Errorf("a secret is stored in clear in the database: %.12s…", sec)
			}
			if strings.Contains(logged, sec) {
				t.Errorf("a token or code was logged: %.12s…", sec)
			}
		}
	})
}

// TestSecurity_ForeignOrigin: a page from another origin cannot open /signal.
func TestSecurity_ForeignOrigin(t *testing.T) {
	s := relStart(t, t.TempDir(), relOptions{})
	_, creds := mustPairClient(t, s, "till-1", "clerk")
	u, _ := url.Parse(s.URL())
	for _, origin := range []string{"http://evil.example", "null", "http://" + u.Hostname() + ":1", "https://" + u.Host + ".evil.example", "file://"} {
		err := dialErr(t, s, client.Options{Token: creds.Token, Origin: origin})
		if !strings.Contains(err.Error(), "403") {
			t.Errorf("origin %s: %v, want HTTP 403", origin, err)
		}
	}
	// The gateway's own origin works.
	c := mustDial(t, s, creds.Token)
	call(t, c, "describe", nil)
}

// TestSecurity_Floods: pairing attempts are rate-limited per address; a flood of hellos with
// forged tokens and of idle signaling sockets neither lets anyone in nor keeps a paired peer
// out, and leaves no goroutines behind.
func TestSecurity_Floods(t *testing.T) {
	s := relStart(t, t.TempDir(), relOptions{})
	ctx := context.Background()
	hc := &http.Client{Timeout: 5 * time.Second}

	t.Run("Pairing", func(t *testing.T) {
		limited := 0
		for i := 0; i < 40; i++ {
			_, err := client.Pair(ctx, hc, s.URL(), "guess-"+strings.Repeat("x", i))
			var pe *client.PairError
			if !errors.As(err, &pe) {
				t.Fatalf("attempt %d: %v", i, err)
			}
			switch pe.Status {
			case 429:
				limited++
			case 401:
			default:
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		if limited < 20 {
			t.Errorf("%d of 40 guesses were rate-limited", limited)
		}
		// While limited, even a good code waits: guessing cannot be sped up by mixing.
		code, err := sqlite.NewPeerService(s.DB).CreateInvite(ctx, "late-1", "clerk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var pe *client.PairError
		if _, err := client.Pair(ctx, hc, s.URL(), code); !errors.As(err, &pe) || pe.Status != 429 {
			t.Errorf("a good code during the flood: %v, want 429", err)
		}
	})

	// Peers for the signaling part are paired outside the HTTP rate limit.
	peers := sqlite.NewPeerService(s.DB)
	code, err := peers.CreateInvite(ctx, "office-1", "supervisor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := peers.RedeemInvite(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	g0 := runtime.NumGoroutine()

	t.Run("Signaling", func(t *testing.T) {
		wsURL := strings.Replace(s.URL(), "http://", "ws://", 1) + "signal"
		origin := strings.TrimSuffix(s.URL(), "/")
		dial := func() *websocket.Conn {
			ws, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {origin}})
			if err != nil {
				t.Fatal(err)
			}
			return ws
		}
		// Idle sockets that never say hello.
		var idle []*websocket.Conn
		for range 50 {
			idle = append(idle, dial())
		}
		// Hellos with forged tokens, 200 at once.
		var wg sync.WaitGroup
		var mu sync.Mutex
		reasons := map[string]int{}
		for i := range 200 {
			wg.Go(func() {
				ws, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {origin}})
				if err != nil {
					mu.Lock()
					reasons["dial: "+err.Error()]++
					mu.Unlock()
					return
				}
				defer ws.Close()
				ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				msg := wire.Signal{Type: wire.TypeHello, Token: "forged-" + strings.Repeat("q", i)}
				if i%4 == 0 {
					msg = wire.Signal{Type: wire.TypeOffer, SDP: "v=0"} // no hello first
				}
				ws.WriteJSON(msg)
				var reply wire.Signal
				err = ws.ReadJSON(&reply)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					reasons["read: "+err.Error()]++
					return
				}
				reasons[reply.Type+"/"+reply.Reason]++
			})
		}
		wg.Wait()
		if reasons["error/unauthorized"] != 150 || reasons["error/bad_request"] != 50 {
			t.Errorf("replies to the flood: %v", reasons)
		}
		// Meanwhile a paired peer gets in and is served.
		c := mustDial(t, s, token)
		call(t, c, "status", nil)
		for _, ws := range idle {
			ws.Close()
		}
		c.Close()
	})

	// Everything the flood started ends.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > g0+10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > g0+10 {
		t.Errorf("goroutines: %d before the flood, %d after", g0, n)
	}
}

// TestSecurity_RateLimitPerPeer: a peer over its role's rate gets 429 rate_limited, another
// peer of the same role is served meanwhile, and the first is served again once its bucket
// refills.
func TestSecurity_RateLimitPerPeer(t *testing.T) {
	s := relStart(t, t.TempDir(), relOptions{})
	greedy, _ := mustPairClient(t, s, "till-1", "clerk") // rate 20/s, burst 50
	polite, _ := mustPairClient(t, s, "till-2", "clerk")
	ctx := context.Background()
	calls := make([]client.Call, 150)
	for i := range calls {
		calls[i] = client.Call{Method: "describe"}
	}
	res, err := greedy.Batch(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	served, limited := 0, 0
	for _, r := range res {
		switch {
		case r.Err == nil:
			served++
		case r.Err.Data != nil && r.Err.Data.Status == 429 && r.Err.Data.Reason == policy.ReasonRateLimited:
			limited++
		default:
			t.Errorf("reply: %+v", r.Err)
		}
	}
	// The burst is served; beyond it, what the rate refills while the batch runs.
	if served < 50 || limited < 10 {
		t.Errorf("%d served, %d refused of 150 at rate 20/s burst 50", served, limited)
	}
	for i := 0; i < 10; i++ {
		call(t, polite, "describe", nil)
	}
	time.Sleep(time.Second) // 20 tokens back
	for i := 0; i < 10; i++ {
		call(t, greedy, "describe", nil)
	}
}

// denyPolicy has a role without any rule and one that may only get Person documents.
const denyPolicy = `roles:
  nobody:
    read: {scope: 'portal_type:"Person"', fields: "*"}
  reader:
    read: {scope: 'portal_type:"Person"', fields: [title]}
    rules:
      - {name: read_people, effect: allow, methods: [get], portal_types: [Person]}
`

// TestSecurity_DenyByDefault calls every method over the wire as peers whose roles grant
// nothing, almost nothing, or are not in the policy at all: each is refused with 403 unless
// the policy says otherwise (describe, sync and status are every enrolled peer's), or with
// 404 where it names a document the role may not read, and nothing is written.
func TestSecurity_DenyByDefault(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	relWriteFile(t, pol, denyPolicy)
	s := relStart(t, t.TempDir(), relOptions{Policy: pol})
	ctx := context.Background()
	person, err := s.DB.Write(ctx, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "P", "salary": 1}})
	if err != nil {
		t.Fatal(err)
	}
	order, err := s.DB.Write(ctx, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Sale Order", "title": "O"}})
	if err != nil {
		t.Fatal(err)
	}
	valid := func(method, id string) map[string]any {
		switch method {
		case gateway.MethodGet:
			return map[string]any{"id": id}
		case gateway.MethodPost:
			return map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "new"}}
		case gateway.MethodPut:
			return map[string]any{"id": id, "doc": map[string]any{"title": "changed"}}
		case gateway.MethodRemove:
			return map[string]any{"id": id}
		case gateway.MethodAction:
			return map[string]any{"id": id, "transition": "validate_action"}
		case gateway.MethodAllDocs:
			return map[string]any{"query": `title:"P"`}
		case gateway.MethodSync:
			return map[string]any{"ids": []string{id}}
		}
		return map[string]any{}
	}
	always := map[string]bool{gateway.MethodDescribe: true, gateway.MethodSync: true, gateway.MethodStatus: true}
	type want struct {
		ok     bool
		status int
		reason string
	}
	// A document the role may not read is answered as one that does not exist (docs/DESIGN.md
	// §3, Errors): 404 where a method names it.
	names := map[string]bool{gateway.MethodGet: true, gateway.MethodPut: true, gateway.MethodRemove: true, gateway.MethodAction: true}
	for _, role := range []string{"nobody", "reader", "ghost"} {
		t.Run(role, func(t *testing.T) {
			c, _ := mustPairClient(t, s, role+"-1", role)
			for _, m := range lan.Methods() {
				for _, id := range []string{person.ID, order.ID} {
					w := want{ok: always[m], status: 403}
					switch {
					case role == "ghost":
						w = want{status: 403, reason: policy.ReasonUnknownRole}
					case role == "reader" && m == gateway.MethodGet && id == person.ID:
						w = want{ok: true}
					case names[m] && !(role == "reader" && id == person.ID):
						w = want{status: 404, reason: gateway.ENOTFOUND}
					}
					var got map[string]any
					err := c.Call(ctx, m, valid(m, id), &got)
					if w.ok {
						if err != nil {
							t.Errorf("%s %s: %v, want it served", m, id, err)
						}
						if m == gateway.MethodGet && got["salary"] != nil {
							t.Errorf("get returned a field the role may not read: %v", got)
						}
						continue
					}
					var we *wire.Error
					if !errors.As(err, &we) || we.Data == nil || we.Data.Status != w.status || (w.reason != "" && we.Data.Reason != w.reason) {
						t.Errorf("%s %s: %v (%+v), want %d %s", m, id, err, we, w.status, w.reason)
					}
				}
			}
		})
	}
	var docs, entries int
	s.DB.Reader().QueryRow(`SELECT count(*) FROM documents`).Scan(&docs)
	s.DB.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&entries)
	if docs != 2 || entries != 2 {
		t.Errorf("after the refusals: %d documents, %d outbox entries; want 2 and 2", docs, entries)
	}
}

// TestSecurity_ChangedNeverLeaks writes documents of every type as a supervisor while the
// uplink delivers them to the ERP5 double, and checks every `changed` notification the
// other roles receive — the writes' and the renames ERP5's answers bring: each id in it (and
// each renamed id) is one the receiving peer can get, and each peer hears of what it may
// read.
func TestSecurity_ChangedNeverLeaks(t *testing.T) {
	sim := erp5sim.New(erp5sim.Options{Tokens: []string{"erp5-token"}, Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	s := relStart(t, t.TempDir(), relOptions{Configure: func(c *Config) {
		c.SiteID = "sec-site"
		c.Upstream.URL = srv.URL + sim.SitePath() + "/"
		c.Upstream.Auth = AuthConfig{Token: "erp5-token"}
	}})
	if s.Uplink == nil {
		t.Fatal("the uplink is not running")
	}
	sup, _ := mustPairClient(t, s, "office-1", "supervisor")
	readers := map[string]*client.Client{}
	for _, role := range []string{"clerk", "storekeeper"} {
		readers[role], _ = mustPairClient(t, s, role+"-1", role)
	}
	post := func(doc map[string]any) string {
		return call(t, sup, "post", map[string]any{"doc": doc})["id"].(string)
	}
	byType := map[string][]string{}
	for i := range 3 {
		byType["Person"] = append(byType["Person"], post(map[string]any{"portal_type": "Person", "title": "P"}))
		byType["Organisation"] = append(byType["Organisation"], post(map[string]any{"portal_type": "Organisation", "title": "O"}))
		byType["Product"] = append(byType["Product"], post(map[string]any{"portal_type": "Product", "title": "Pr"}))
		so := post(map[string]any{"portal_type": "Sale Order", "title": "SO", "destination": byType["Organisation"][i]})
		byType["Sale Order"] = append(byType["Sale Order"], so)
		byType["Sale Order Line"] = append(byType["Sale Order Line"], post(map[string]any{"portal_type": "Sale Order Line",
			"parent_relative_url": so, "resource": "product_module/1", "quantity": i + 1}))
		call(t, sup, "action", map[string]any{"id": so, "transition": "plan_action"})
		call(t, sup, "put", map[string]any{"id": byType["Person"][i], "doc": map[string]any{"title": "P2"}})
	}
	// ERP5 numbers every document; the renames go out as ERP5's answers are settled.
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := s.DB.OutboxCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, st := range outbox.OpenStates {
			open += c[st]
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outbox did not drain: %v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An organisation last: both roles read it, and a channel's notifications arrive in
	// order, so hearing of it means having heard of everything before.
	last := post(map[string]any{"portal_type": "Organisation", "title": "last"})
	readable := map[string][]string{
		"clerk":       {"Person", "Organisation", "Product"},
		"storekeeper": {"Organisation", "Product", "Sale Order", "Sale Order Line"},
	}
	for role, c := range readers {
		heard := map[string]bool{}
		renamed := map[string]string{}
		timeout := time.After(10 * time.Second)
	collect:
		for !heard[last] {
			select {
			case n := <-c.Notifications():
				if n.Method != wire.NotifyChanged {
					continue
				}
				var ch wire.Changed
				if err := json.Unmarshal(n.Params, &ch); err != nil {
					t.Fatal(err)
				}
				for _, id := range ch.IDs {
					heard[id] = true
				}
				for old, id := range ch.Renamed {
					heard[id] = true
					renamed[old] = id
				}
			case <-timeout:
				t.Errorf("%s: no notification of the last write", role)
				break collect
			}
		}
		for id := range heard {
			if err := c.Call(ctx, "get", map[string]any{"id": id}, nil); err != nil {
				t.Errorf("%s was told of %s but may not get it: %v", role, id, err)
			}
		}
		for _, pt := range readable[role] {
			for _, id := range byType[pt] {
				if !heard[id] {
					t.Errorf("%s was not told of %s (%s)", role, id, pt)
				}
				// A child is renamed with its parent, then on its own.
				final := id
				for hops := 0; renamed[final] != "" && hops < 5; hops++ {
					final = renamed[final]
				}
				if final == id || strings.Contains(final, "local-") {
					t.Errorf("%s was not told %s (%s) was renamed: %q", role, id, pt, final)
				}
			}
		}
	}
}
