package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// crashShortCycles is how many kill -9 cycles the normal suite runs; the long variant
// (-tags long) runs crashLongCycles.
const (
	crashShortCycles = 20
	crashLongCycles  = 200
)

// TestCrashRestart_WithUplink runs crashShortCycles kill -9 cycles of the real binary.
func TestCrashRestart_WithUplink(t *testing.T) {
	runCrashCycles(t, crashShortCycles, uint64(time.Now().UnixNano()))
}

// crashAttempt is one write a peer sent, with what it got back.
type crashAttempt struct {
	peer   string
	key    string
	method string
	params map[string]any
	id     string // the answer's id; "" when no answer came (the gateway was killed)
}

// crashRun is the state of a crash test: the double, the data directory and what the peers
// sent and were told.
type crashRun struct {
	t      *testing.T
	bin    string
	work   string
	cfg    string
	env    []string
	dbPath string
	sim    *erp5sim.Server
	logs   relBuffer
	rng    *rand.Rand
	rngMu  sync.Mutex

	tokens  map[string]string // peer → token
	docs    []string          // seeded documents
	mu      sync.Mutex
	history map[string][]*crashAttempt // per peer, in order
	acked   map[string]string          // peer\x00key → first answer's id
	secrets []string                   // tokens, codes and credentials that must never be logged
	kills   int
	// inflightAtKill counts entries a kill left inflight: sent, outcome unknown.
	inflightAtKill int
	resends        int
}

const (
	crashSite     = "crash-site"
	crashERP5User = "gateway"
	crashPeers    = 3
)

// runCrashCycles kills `gateway serve` with SIGKILL at random moments, cycle after cycle, while
// Go-client peers write with write keys and the uplink delivers to the ERP5 double (receiver
// mode) through its own random latency and failures. After each kill, the database as the
// next start finds it holds every acknowledged write — in the replica and as its own outbox
// entry under its key — and ERP5 holds no entry twice; resent keys answer their first
// answers. A last start drains the outbox: every entry was applied exactly once, each
// document's entries in order, every created document once, and entries left uncertain by
// the kills were settled. No token, invite code or ERP5 credential appears in the logs.
func runCrashCycles(t *testing.T, cycles int, seed uint64) {
	t.Logf("seed %d, %d cycles", seed, cycles)
	r := &crashRun{t: t, rng: rand.New(rand.NewPCG(seed, 11)), tokens: map[string]string{},
		history: map[string][]*crashAttempt{}, acked: map[string]string{}}
	r.setup()
	for c := range cycles {
		r.cycle(c)
		r.checkAfterKill(c)
		if t.Failed() {
			t.Logf("logs:\n%s", tail(r.logs.String(), 4000))
			return
		}
	}
	r.drainAndCheck()
	r.checkLogs()
	t.Logf("%d kills; %d writes sent, %d acknowledged, %d resent keys; %d entries left inflight by kills",
		r.kills, r.sent(), len(r.acked), r.resends, r.inflightAtKill)
}

func (r *crashRun) intn(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

// setup builds the binary, starts the ERP5 double, seeds the replica and writes the
// configuration.
func (r *crashRun) setup() {
	t := r.t
	r.bin = relBuild(t)
	r.work = t.TempDir()
	dataDir := filepath.Join(r.work, "data")
	r.dbPath = filepath.Join(dataDir, sqlite.FileName)
	password := "pw-" + base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(time.Now().UnixNano())))
	r.secrets = append(r.secrets, password, base64.StdEncoding.EncodeToString([]byte(crashERP5User+":"+password)))
	r.env = []string{"ERP5_PASSWORD=" + password}

	r.sim = erp5sim.New(erp5sim.Options{Users: map[string]string{crashERP5User: password}, MaxEntries: 32})
	var seed []*erp5sim.Document
	var lines []string
	for i := 1; i <= 12; i++ {
		id := fmt.Sprintf("person_module/%d", i)
		seed = append(seed, &erp5sim.Document{ID: id, PortalType: "Person", ModificationDate: time.Now(),
			Properties: map[string]any{"title": "t0", "validation_state": "draft"}})
		b, _ := json.Marshal(map[string]any{"id": id, "doc": map[string]any{"portal_type": "Person", "title": "t0"}})
		lines = append(lines, string(b))
		r.docs = append(r.docs, id)
	}
	r.sim.Load(seed)
	// Every batch takes a little while at ERP5, so kills land while batches are in flight;
	// a few fail, before or after ERP5 committed them.
	r.sim.SetFaultFunc(func(_ *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
		if ep != erp5sim.EndpointBatch && ep != erp5sim.EndpointResults {
			return nil
		}
		f := &erp5sim.Fault{Kind: erp5sim.FaultNone, Delay: time.Duration(5+r.intn(60)) * time.Millisecond}
		switch n := r.intn(100); {
		case n < 4:
			f.Kind = erp5sim.FaultCutAfterCommit
		case n < 8:
			f.Kind, f.Status, f.RetryAfter = erp5sim.FaultStatus, 503, "1"
		case n < 10:
			f.Kind = erp5sim.FaultCutBeforeRead
		}
		return f
	})
	srv := httptest.NewServer(r.sim)
	t.Cleanup(srv.Close)

	ctx := context.Background()
	db, err := sqlite.Open(ctx, r.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(ctx, strings.NewReader(strings.Join(lines, "\n")), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for i := range crashPeers {
		name := fmt.Sprintf("tablet-%d", i)
		code, err := sqlite.NewPeerService(db).CreateInvite(ctx, name, "supervisor", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		codes[name] = code
		r.secrets = append(r.secrets, code)
	}
	db.Close()

	r.cfg = filepath.Join(r.work, "gateway.yaml")
	relWriteFile(t, r.cfg, fmt.Sprintf(`data_dir: %s
site_id: %s
lan:
  listen: 127.0.0.1:0
  webrtc: {udp_port: 0, tcp_fallback: false}
upstream:
  url: %s%s/
  auth: {user: %s, password: "${ERP5_PASSWORD}"}
log: {level: debug, format: json}
`, dataDir, crashSite, srv.URL, r.sim.SitePath(), crashERP5User))

	// Pair the peers with the first serve; their tokens work across restarts.
	p := relStartServe(t, r.bin, r.work, r.cfg, r.env, &r.logs)
	for name, code := range codes {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		creds, err := client.Pair(ctx, nil, p.URL, code)
		cancel()
		if err != nil {
			p.kill()
			t.Fatalf("pair %s: %v", name, err)
		}
		r.tokens[name] = creds.Token
		r.secrets = append(r.secrets, creds.Token)
	}
	p.stop(t)
}

// cycle starts serve, lets the peers write, and kills serve at a random moment.
func (r *crashRun) cycle(c int) {
	t := r.t
	p := relStartServe(t, r.bin, r.work, r.cfg, r.env, &r.logs)
	r.kills++
	if r.intn(10) == 0 {
		// Killed while starting its work: the uplink's first round, recovery of the last
		// kill's uncertain entries.
		time.Sleep(time.Duration(r.intn(100)) * time.Millisecond)
		p.kill()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := map[string]*client.Client{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, tok := range r.tokens {
		wg.Go(func() {
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			defer dcancel()
			cl, err := client.Dial(dctx, p.URL, client.Options{Token: tok})
			if err != nil {
				t.Errorf("cycle %d: dial %s: %v", c, name, err)
				return
			}
			mu.Lock()
			clients[name] = cl
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		p.kill()
		return
	}
	for name, cl := range clients {
		for w := range 2 {
			wg.Go(func() { r.write(ctx, c, name, w, cl) })
		}
	}
	time.Sleep(time.Duration(100+r.intn(600)) * time.Millisecond)
	p.kill()
	cancel()
	wg.Wait()
	for _, cl := range clients {
		cl.Close()
	}
}

// write sends writes on cl until ctx ends: edits of the seeded documents and of those this
// peer created, new documents, and resends of earlier writes with their keys.
func (r *crashRun) write(ctx context.Context, c int, peer string, worker int, cl *client.Client) {
	for n := 0; ctx.Err() == nil; n++ {
		a := &crashAttempt{peer: peer, key: fmt.Sprintf("c%d-w%d-%d", c, worker, n)}
		title := fmt.Sprintf("%s %s", peer, a.key)
		r.mu.Lock()
		hist := r.history[peer]
		var prev *crashAttempt
		switch k := r.intn(100); {
		case k < 15 && len(hist) > 0:
			prev = hist[r.intn(len(hist))]
			a.key, a.method, a.params = prev.key, prev.method, prev.params
			r.resends++
		case k < 40:
			a.method = "post"
			a.params = map[string]any{"doc": map[string]any{"portal_type": "Person", "title": title}, "key": a.key}
		default:
			targets := r.docs
			for _, h := range hist {
				if h.method == "post" && h.id != "" {
					targets = append(targets[:len(targets):len(targets)], h.id)
				}
			}
			a.method = "put"
			a.params = map[string]any{"id": targets[r.intn(len(targets))], "doc": map[string]any{"title": title}, "key": a.key}
		}
		r.history[peer] = append(hist, a)
		r.mu.Unlock()

		var res struct{ ID string }
		err := cl.Call(ctx, a.method, a.params, &res)
		if err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				r.t.Errorf("cycle %d: %s %s %v: %v", c, peer, a.method, a.params, err)
			}
			return // killed
		}
		r.mu.Lock()
		a.id = res.ID
		k := peer + "\x00" + a.key
		if first, ok := r.acked[k]; ok && first != res.ID {
			r.t.Errorf("cycle %d: %s resent key %s: answer %s, first answer %s", c, peer, a.key, res.ID, first)
		}
		if _, ok := r.acked[k]; !ok {
			r.acked[k] = res.ID
		}
		if prev != nil && prev.id == "" {
			prev.id = res.ID
		}
		r.mu.Unlock()
	}
}

func (r *crashRun) sent() int {
	n := 0
	for _, h := range r.history {
		n += len(h)
	}
	return n
}

// crashState is what the database holds, read as the next start finds it.
type crashState struct {
	entries []*outbox.Entry
	byKey   map[string]*outbox.Entry // peer\x00key
	keys    map[string]string        // peer\x00key → stored answer's id
	titles  map[string]string        // document → title in the replica
}

func (r *crashRun) readState(db *sqlite.DB) *crashState {
	t := r.t
	ctx := context.Background()
	st := &crashState{byKey: map[string]*outbox.Entry{}, keys: map[string]string{}, titles: map[string]string{}}
	var err error
	if st.entries, _, err = db.OutboxList(ctx, outbox.Filter{States: outbox.States}); err != nil {
		t.Fatal(err)
	}
	for _, e := range st.entries {
		if e.Key == "" {
			t.Errorf("entry %d has no write key", e.Seq)
			continue
		}
		k := e.Peer + "\x00" + e.Key
		if st.byKey[k] != nil {
			t.Errorf("key %s of %s has entries %d and %d: written twice", e.Key, e.Peer, st.byKey[k].Seq, e.Seq)
		}
		st.byKey[k] = e
	}
	rows, err := db.Reader().Query(`SELECT peer, key, response FROM write_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var peer, key, resp string
		rows.Scan(&peer, &key, &resp)
		var res struct{ ID string }
		json.Unmarshal([]byte(resp), &res)
		st.keys[peer+"\x00"+key] = res.ID
	}
	rows.Close()
	rows, err = db.Reader().Query(`SELECT id, coalesce(body->>'title', '') FROM documents WHERE deleted = 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, title string
		rows.Scan(&id, &title)
		st.titles[id] = title
	}
	rows.Close()
	return st
}

// applied counts, per epoch and seq, how many times ERP5 applied each entry (itself or as
// one an applied entry covers).
func (r *crashRun) applied() map[string]int {
	n := map[string]int{}
	for _, c := range r.sim.Applied(crashSite, "") {
		n[fmt.Sprintf("%s/%d", c.Epoch, c.Seq)]++
		for _, s := range c.Covers {
			if s != c.Seq {
				n[fmt.Sprintf("%s/%d", c.Epoch, s)]++
			}
		}
	}
	return n
}

// checkAfterKill opens the database as the next start will, and checks what it holds.
func (r *crashRun) checkAfterKill(c int) {
	t := r.t
	ctx := context.Background()
	db, err := sqlite.Open(ctx, r.dbPath)
	if err != nil {
		t.Fatalf("cycle %d: reopen after kill: %v", c, err)
	}
	defer db.Close()
	var ok string
	if err := db.Reader().QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("cycle %d: integrity_check %s %v", c, ok, err)
	}
	st := r.readState(db)
	applied := r.applied()
	// Keys and entries correspond one to one: nothing half-written.
	for k, id := range st.keys {
		e := st.byKey[k]
		if e == nil {
			t.Errorf("cycle %d: key %q stored without its outbox entry", c, k)
			continue
		}
		got, err1 := db.ResolveID(ctx, e.DocID)
		want, err2 := db.ResolveID(ctx, id)
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("cycle %d: key %q answered %s, its entry %d is for %s", c, k, id, e.Seq, e.DocID)
		}
	}
	for k := range st.byKey {
		if _, ok := st.keys[k]; !ok {
			t.Errorf("cycle %d: entry for key %q without its write key", c, k)
		}
	}
	// Every acknowledged write is stored with the answer the peer got.
	r.mu.Lock()
	for k, id := range r.acked {
		if got, ok := st.keys[k]; !ok || got != id {
			t.Errorf("cycle %d: acknowledged write %q (answer %s): stored answer %q, present %v", c, k, id, got, ok)
		}
	}
	r.mu.Unlock()
	// The replica holds, for each document, the title of its latest entry.
	latest := map[string]*outbox.Entry{}
	for _, e := range st.entries {
		if e.State == outbox.StateInflight {
			r.inflightAtKill++
		}
		id, err := db.ResolveID(ctx, e.DocID)
		if err != nil {
			t.Fatal(err)
		}
		if l := latest[id]; l == nil || e.Seq > l.Seq {
			latest[id] = e
		}
		// ERP5 holds no entry twice.
		if n := applied[fmt.Sprintf("%s/%d", e.Epoch, e.Seq)]; n > 1 {
			t.Errorf("cycle %d: entry %d (%s %s) applied %d times", c, e.Seq, e.Op, e.DocID, n)
		}
	}
	for id, e := range latest {
		title, ok := st.titles[id]
		if want, _ := e.Fields["title"].(string); !ok || title != want {
			t.Errorf("cycle %d: %s in the replica: title %q (present %v), latest entry %d says %q", c, id, title, ok, e.Seq, want)
		}
	}
}

// drainAndCheck starts serve once more without writers, waits until the outbox has nothing
// open, stops it gracefully and checks ERP5 against the outbox.
func (r *crashRun) drainAndCheck() {
	t := r.t
	// ERP5 behaves from now on, so that the drain's time is the uplink's, not backoff's.
	r.sim.SetFaultFunc(nil)
	start := time.Now()
	p := relStartServe(t, r.bin, r.work, r.cfg, r.env, &r.logs)
	ro, err := sql.Open("sqlite", "file:"+r.dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var open int
		if err := ro.QueryRow(`SELECT count(*) FROM outbox WHERE state IN ('pending','inflight','deferred','uncertain','held','dead','conflict')`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			p.kill()
			var states []string
			rows, _ := ro.Query(`SELECT state, count(*), max(last_error), max(attempts) FROM outbox GROUP BY state`)
			for rows != nil && rows.Next() {
				var st, lastErr string
				var n, attempts int
				rows.Scan(&st, &n, &lastErr, &attempts)
				states = append(states, fmt.Sprintf("%s %d (attempts %d, %q)", st, n, attempts, lastErr))
			}
			t.Logf("logs:\n%s", tail(r.logs.String(), 6000))
			t.Fatalf("%d entries still open after 90s: %s", open, strings.Join(states, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	ro.Close()
	p.stop(t)
	t.Logf("drained in %v", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	db, err := sqlite.Open(ctx, r.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := r.readState(db)
	applied := r.applied()
	posts := map[string]bool{} // a merged run led by a post is sent as a post: count documents
	for _, e := range st.entries {
		if e.State != outbox.StateDone && e.State != outbox.StateMerged {
			t.Errorf("entry %d is %s (%s)", e.Seq, e.State, e.LastError)
		}
		if n := applied[fmt.Sprintf("%s/%d", e.Epoch, e.Seq)]; n != 1 {
			t.Errorf("entry %d (%s %s, %s) applied %d times, want once", e.Seq, e.Op, e.DocID, e.State, n)
		}
		if e.Op == "post" {
			id, err := db.ResolveID(ctx, e.DocID)
			if err != nil {
				t.Fatal(err)
			}
			posts[id] = true
		}
	}
	// Per-document order at ERP5, and one document per post.
	last := map[string]int64{}
	for _, c := range r.sim.Applied(crashSite, "") {
		if c.Seq < last[c.ID] && last[c.ID] != 0 {
			t.Errorf("%s: entry %d applied after %d", c.ID, c.Seq, last[c.ID])
		}
		last[c.ID] = c.Seq
	}
	persons := 0
	for _, d := range r.sim.Documents() {
		if d.PortalType == "Person" {
			persons++
		}
	}
	if persons != len(r.docs)+len(posts) {
		t.Errorf("ERP5 holds %d persons: %d seeded and %d posted", persons, len(r.docs), len(posts))
	}
	// ERP5 ends with the replica's titles.
	for id, title := range st.titles {
		d := r.sim.Document(id)
		if d == nil {
			t.Errorf("%s is in the replica, not at ERP5", id)
			continue
		}
		if got, _ := d.Properties["title"].(string); got != title {
			t.Errorf("%s: title %q at ERP5, %q in the replica", id, got, title)
		}
	}
	if len(r.acked) == 0 || r.kills == 0 || r.resends == 0 || r.inflightAtKill == 0 {
		t.Errorf("the run did not exercise everything: %d acknowledged writes, %d kills, %d resent keys, %d entries left inflight",
			len(r.acked), r.kills, r.resends, r.inflightAtKill)
	}
}

// checkLogs greps the captured logs of every run for secrets.
func (r *crashRun) checkLogs() {
	logged := r.logs.String()
	if !strings.Contains(logged, "gateway serving") || !strings.Contains(logged, "uplink") {
		r.t.Fatalf("the logs were not captured: %.300s", logged)
	}
	for _, s := range r.secrets {
		if strings.Contains(logged, s) {
			r.t.Errorf("a secret appears in the logs: %.6s…", s)
		}
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
