package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// The link tests run the uplink as serve wires it (Main.NewUplink over sqlite.DB and
// UplinkStore, a new epoch per start) against the ERP5 double across a simulated satellite
// link, in virtual time. They extend upstream's own fault tests (which write puts only, to a
// bare store) with what a site does: creates with local ids, references to them, child
// documents, workflow actions, removes and runs of edits that merge.

var warmZstdOnce sync.Once

// warmZstd makes the shared zstd encoders and decoders of erp5sim and upstream start outside
// any synctest bubble: they make channels on first use, which another bubble cannot use.
func warmZstd(tb testing.TB) {
	warmZstdOnce.Do(func() {
		sim := erp5sim.New(erp5sim.Options{Logger: slog.New(slog.DiscardHandler)})
		body, err := upstream.Compress(upstream.EncodingZstd, []byte(`{"gateway":"warm","epoch":"e","entries":[]}`))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := upstream.Decompress(upstream.EncodingZstd, body); err != nil {
			tb.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, sim.SitePath()+"/"+upstream.BatchPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", upstream.EncodingZstd)
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			tb.Fatalf("warm erp5sim: HTTP %d: %s", rec.Code, rec.Body.String())
		}
	})
}

const linkSite = "mine-42"

// linkWrite is one acknowledged write.
type linkWrite struct {
	ack   int // order of acknowledgement, across databases
	epoch string
	seq   int64
	op    string
	doc   string // as written (a local id stays local)
	title string // the title it set, if any
	peer  string
	key   string
}

// linkEnv is a gateway database with its uplink, the ERP5 double and the link between them.
type linkEnv struct {
	t    *testing.T
	rng  *rand.Rand
	m    *Main
	dir  string
	path string
	db   *sqlite.DB
	up   *upstream.Uplink
	link *linksim.Link
	sim  *erp5sim.Server
	srv  *http.Server
	// dials counts dial attempts, whether or not the link is up.
	dials atomic.Int64

	writes  []linkWrite
	keyN    int
	persons []string // writable persons (seeded or posted, not removed)
	orgs    []string
	orders  []string        // sale orders not yet planned
	removed map[string]bool // documents removed
	seeded  map[string]int  // documents loaded at ERP5, by portal type
	// tainted are documents whose ERP5 values changed through writes a replaced database
	// lost: editing them from the stale replica is a conflict (docs/DESIGN.md §7), not this test's
	// subject.
	tainted map[string]bool
}

func newLinkEnv(t *testing.T, seed uint64, opts erp5sim.Options) *linkEnv {
	t.Helper()
	e := &linkEnv{t: t, rng: rand.New(rand.NewPCG(seed, 42)), dir: t.TempDir(), removed: map[string]bool{},
		seeded: map[string]int{}, tainted: map[string]bool{}}
	e.path = filepath.Join(e.dir, sqlite.FileName)
	opts.Tokens = []string{"erp5-token"}
	opts.Logger = slog.New(slog.DiscardHandler)
	e.sim = erp5sim.New(opts)
	e.link = linksim.New(linksim.Thuraya)
	e.srv = &http.Server{Handler: e.sim}
	go e.srv.Serve(e.link)
	e.m = NewMain()
	e.m.Config = DefaultConfig()
	e.m.Config.DataDir = e.dir
	e.m.Config.SiteID = linkSite
	e.m.Config.Upstream.URL = "http://erp5.test" + e.sim.SitePath() + "/"
	e.m.Config.Upstream.Auth = AuthConfig{Token: "erp5-token"}
	e.m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e.openDB(e.path)
	t.Cleanup(func() {
		ctx := context.Background()
		if e.up != nil {
			e.up.Close(ctx)
		}
		e.srv.Close()
		e.link.Close()
		for _, c := range e.link.Conns() {
			c.Close()
		}
		if e.db != nil {
			e.db.Close()
		}
	})
	return e
}

func (e *linkEnv) openDB(path string) {
	e.t.Helper()
	db := sqlite.NewDB(path)
	db.Synchronous = "off" // durability is the crash tests' subject; these are about the link
	if err := db.Open(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	db.SiteID = e.m.Config.SiteID
	db.Modules = e.m.Config.Upstream.Modules
	e.db = db
}

// seed creates persons, organisations and a product at ERP5 and in the replica.
func (e *linkEnv) seed(persons int) {
	t := e.t
	var docs []*erp5sim.Document
	var lines []string
	add := func(id, pt, title string, props map[string]any) {
		p := map[string]any{"title": title}
		for k, v := range props {
			p[k] = v
		}
		docs = append(docs, &erp5sim.Document{ID: id, PortalType: pt, ModificationDate: time.Now(), Properties: p})
		e.seeded[pt]++
		lines = append(lines, fmt.Sprintf(`{"id":%q,"doc":{"portal_type":%q,"title":%q}}`, id, pt, title))
	}
	for i := 1; i <= persons; i++ {
		id := fmt.Sprintf("person_module/%d", i)
		add(id, "Person", "t0", map[string]any{"validation_state": "validated"})
		e.persons = append(e.persons, id)
	}
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("organisation_module/%d", i)
		add(id, "Organisation", "o0", map[string]any{"validation_state": "validated"})
		e.orgs = append(e.orgs, id)
	}
	add("product_module/1", "Product", "p0", map[string]any{"validation_state": "validated"})
	e.sim.Load(docs)
	if _, err := e.db.Import(context.Background(), strings.NewReader(strings.Join(lines, "\n")), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

// dial counts attempts and dials across the link.
func (e *linkEnv) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	e.dials.Add(1)
	return e.link.DialContext(ctx, network, addr)
}

// start does what serve does before its uplink runs (a new epoch, inflight entries made
// uncertain) and opens an uplink built from the configuration, over the link.
func (e *linkEnv) start() {
	t := e.t
	ctx := context.Background()
	if _, err := e.db.NewEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.RecoverInflight(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := e.m.NewUplink(ctx, e.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	u.Client.HTTPClient = &http.Client{Transport: upstream.NewTransport(upstream.TransportConfig{DialContext: e.dial, Meter: u.Meter})}
	if err := u.Open(ctx); err != nil {
		t.Fatal(err)
	}
	e.up = u
}

// stop closes the uplink as a crash would leave it: whatever was inflight stays inflight.
func (e *linkEnv) stop() {
	if e.up != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.up.Close(ctx)
		e.up.Client.HTTPClient.Transport.(*http.Transport).CloseIdleConnections()
		e.up = nil
	}
}

func (e *linkEnv) pick(list []string) string { return list[e.rng.IntN(len(list))] }

// write stores one write as a peer makes it, with a write key, and records it.
func (e *linkEnv) write(w sqlite.Write, title string) sqlite.WriteResult {
	e.t.Helper()
	e.keyN++
	w.Peer = fmt.Sprintf("tablet-%d", e.keyN%3)
	w.Key = fmt.Sprintf("k-%d", e.keyN)
	return e.record(w, title)
}

// record stores w (with its key as given) and records it as acknowledged.
func (e *linkEnv) record(w sqlite.Write, title string) sqlite.WriteResult {
	e.t.Helper()
	ctx := context.Background()
	res, err := e.db.Write(ctx, w)
	if err != nil {
		e.t.Fatalf("write %s %s: %v", w.Op, w.ID, err)
	}
	en, err := e.db.OutboxEntry(ctx, res.Seq)
	if err != nil {
		e.t.Fatal(err)
	}
	doc := res.ID
	e.writes = append(e.writes, linkWrite{ack: len(e.writes), epoch: en.Epoch, seq: res.Seq, op: w.Op, doc: doc, title: title, peer: w.Peer, key: w.Key})
	if e.up != nil {
		e.up.Wake()
	}
	return res
}

// wave makes n writes of a site's usual kinds.
func (e *linkEnv) wave(tag string, n int) {
	for i := 0; i < n; i++ {
		title := fmt.Sprintf("%s-%d", tag, i)
		switch k := e.rng.IntN(100); {
		case k < 40 && len(e.persons) > 0:
			e.write(sqlite.Write{Op: sqlite.OpPut, ID: e.pick(e.persons), Doc: map[string]any{"title": title}}, title)
		case k < 55 && len(e.persons) > 0:
			// A run of edits of one document: they merge when not yet sent.
			id := e.pick(e.persons)
			for j := range 3 {
				t := fmt.Sprintf("%s.%d", title, j)
				e.write(sqlite.Write{Op: sqlite.OpPut, ID: id, Doc: map[string]any{"title": t, "first_name": t}}, t)
			}
		case k < 65:
			res := e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": title}}, title)
			e.persons = append(e.persons, res.ID)
		case k < 72:
			res := e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Organisation", "title": title}}, title)
			e.orgs = append(e.orgs, res.ID)
		case k < 82:
			// An order for an organisation (perhaps one created moments ago), with lines.
			if len(e.orgs) == 0 {
				res := e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Organisation", "title": title}}, title)
				e.orgs = append(e.orgs, res.ID)
			}
			so := e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Sale Order", "title": title,
				"destination": e.pick(e.orgs)}}, title)
			e.orders = append(e.orders, so.ID)
			for j := range 1 + e.rng.IntN(2) {
				t := fmt.Sprintf("%s/line%d", title, j)
				e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Sale Order Line", "title": t,
					"parent_relative_url": so.ID, "resource": "product_module/1", "quantity": j + 1}}, t)
			}
		case k < 90 && len(e.orders) > 0:
			i := e.rng.IntN(len(e.orders))
			e.write(sqlite.Write{Op: sqlite.OpAction, ID: e.orders[i], Transition: "plan_action"}, "")
			e.orders = slices.Delete(e.orders, i, i+1)
		case k < 95 && len(e.persons) > 3:
			i := e.rng.IntN(len(e.persons))
			e.write(sqlite.Write{Op: sqlite.OpRemove, ID: e.persons[i]}, "")
			e.removed[e.persons[i]] = true
			e.persons = slices.Delete(e.persons, i, i+1)
		case len(e.orgs) > 0:
			e.write(sqlite.Write{Op: sqlite.OpPut, ID: e.pick(e.orgs), Doc: map[string]any{"corporate_name": title}}, "")
		default:
			res := e.write(sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": title}}, title)
			e.persons = append(e.persons, res.ID)
		}
	}
}

// open returns the number of open outbox entries.
func (e *linkEnv) open() int {
	c, err := e.db.OutboxCounts(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, s := range outbox.OpenStates {
		n += c[s]
	}
	return n
}

// waitDrained waits, in virtual time, until the outbox has nothing open.
func (e *linkEnv) waitDrained(within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for e.open() > 0 {
		if time.Now().After(deadline) {
			entries, _, _ := e.db.OutboxList(context.Background(), outbox.Filter{States: outbox.OpenStates})
			for i, en := range entries {
				if i < 10 {
					e.t.Logf("open: %d %.8s %s %s %s attempts %d: %s; key %s/%s fields %v base %v answer %s", en.Seq, en.Epoch, en.Op, en.DocID, en.State, en.Attempts, en.LastError, en.Peer, en.Key, en.Fields, en.Base, en.Answer)
				}
			}
			e.t.Fatalf("%d entries still open after %v", e.open(), within)
		}
		time.Sleep(time.Second)
	}
}

// appliedCount counts ERP5's applications per epoch/seq (an entry itself or covered by it)
// and per peer/key.
func (e *linkEnv) appliedCount() (bySeq, byKey map[string]int) {
	bySeq, byKey = map[string]int{}, map[string]int{}
	for _, c := range e.sim.Applied(linkSite, "") {
		bySeq[fmt.Sprintf("%s/%d", c.Epoch, c.Seq)]++
		for _, s := range c.Covers {
			if s != c.Seq {
				bySeq[fmt.Sprintf("%s/%d", c.Epoch, s)]++
			}
		}
		if c.Key != "" {
			byKey[c.Peer+"/"+c.Key]++
		}
	}
	return bySeq, byKey
}

// checkExactlyOnce checks the database's entries against ERP5: every entry is settled, ERP5
// applied each exactly once (a merged entry through the one it was folded into; a post
// cancelled by a remove, or edits that cancelled out, never), nothing twice anywhere, and each
// document's entries in the order they were acknowledged.
func (e *linkEnv) checkExactlyOnce() {
	t := e.t
	t.Helper()
	entries, _, err := e.db.OutboxList(context.Background(), outbox.Filter{States: outbox.States})
	if err != nil {
		t.Fatal(err)
	}
	bySeq, byKey := e.appliedCount()
	for _, en := range entries {
		want := 1
		switch {
		case en.State == outbox.StateMerged && en.MergedInto == 0:
			want = 0 // a post cancelled by a remove
		case en.State == outbox.StateDone && strings.Contains(string(en.Answer), `"status":"noop"`):
			want = 0 // merged edits back to their base: nothing to send
		case en.State != outbox.StateDone && en.State != outbox.StateMerged:
			t.Errorf("entry %d (%s %s) is %s: %s", en.Seq, en.Op, en.DocID, en.State, en.LastError)
			continue
		}
		got := bySeq[fmt.Sprintf("%s/%d", en.Epoch, en.Seq)]
		if got == 0 && want == 1 && en.Key != "" && byKey[en.Peer+"/"+en.Key] == 1 {
			got = 1 // answered by ERP5's record of its write key, applied under another entry
		}
		if got != want {
			t.Errorf("entry %d (%s %s, %s) applied %d times, want %d", en.Seq, en.Op, en.DocID, en.State, got, want)
		}
	}
	for k, n := range bySeq {
		if n > 1 {
			t.Errorf("ERP5 applied %s %d times", k, n)
		}
	}
	for k, n := range byKey {
		if n > 1 {
			t.Errorf("ERP5 applied the write key %s %d times", k, n)
		}
	}
	// Per-document order: ERP5 applied each document's writes in acknowledgement order.
	ack := map[string]int{}
	for _, w := range e.writes {
		ack[fmt.Sprintf("%s/%d", w.epoch, w.seq)] = w.ack
	}
	last := map[string]int{}
	for _, c := range e.sim.Applied(linkSite, "") {
		a, ok := ack[fmt.Sprintf("%s/%d", c.Epoch, c.Seq)]
		if !ok {
			continue
		}
		if prev, seen := last[c.ID]; seen && a < prev {
			t.Errorf("%s: the write acknowledged %d-th was applied after the %d-th", c.ID, a, prev)
		}
		last[c.ID] = a
	}
}

// checkDocuments checks ERP5's documents against the writes: each ends with its last title,
// created documents exist once (children under their parent, references to ERP5 ids),
// actions and removes took effect.
func (e *linkEnv) checkDocuments() {
	t := e.t
	t.Helper()
	ctx := context.Background()
	resolve := func(id string) string {
		r, err := e.db.ResolveID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	removed := map[string]bool{}
	for id := range e.removed {
		removed[resolve(id)] = true
	}
	lastTitle := map[string]string{}
	planned := map[string]bool{}
	created := map[string]bool{}
	for _, w := range e.writes {
		id := resolve(w.doc)
		switch {
		case w.op == sqlite.OpAction:
			planned[id] = true
		case w.title != "":
			lastTitle[id] = w.title
		}
		if w.op == sqlite.OpPost && !strings.Contains(id, "local-") {
			created[id] = true
		}
	}
	for id, title := range lastTitle {
		if removed[id] {
			continue
		}
		d := e.sim.Document(id)
		if d == nil {
			t.Errorf("%s is not at ERP5", id)
			continue
		}
		if got, _ := d.Properties["title"].(string); got != title {
			t.Errorf("%s: title %q at ERP5, last written %q", id, got, title)
		}
		switch d.PortalType {
		case "Sale Order":
			dest, _ := d.Properties["destination"].(string)
			if strings.Contains(dest, "local-") || e.sim.Document(dest) == nil {
				t.Errorf("%s: destination %q is not an ERP5 document", id, dest)
			}
			state, _ := d.Properties["simulation_state"].(string)
			if planned[id] != (state == "planned") {
				t.Errorf("%s: state %q, planned %v", id, state, planned[id])
			}
		case "Sale Order Line":
			parent := e.sim.Document(id[:strings.LastIndexByte(id, '/')])
			if parent == nil || parent.PortalType != "Sale Order" {
				t.Errorf("%s: not inside a sale order at ERP5", id)
			}
		}
	}
	for id := range removed {
		if strings.Contains(id, "local-") {
			continue // created and removed before it was sent: it never reached ERP5
		}
		if d := e.sim.Document(id); d == nil || d.Properties["validation_state"] != "deleted" {
			t.Errorf("%s was removed; at ERP5: %+v", id, d)
		}
	}
	// Each post made one document: ERP5 holds the seeded ones and those.
	want := maps.Clone(e.seeded)
	for id := range created {
		if d := e.sim.Document(id); d != nil {
			want[d.PortalType]++
		} else {
			t.Errorf("created %s is not at ERP5", id)
		}
	}
	have := map[string]int{}
	for _, d := range e.sim.Documents() {
		have[d.PortalType]++
	}
	if !maps.Equal(have, want) {
		t.Errorf("ERP5 holds %v documents by type, want %v (seeded %v)", have, want, e.seeded)
	}
}

// linkFaults are ERP5's and the front end's failures, each injected into a wave of writes.
var linkFaults = []struct {
	name   string
	faults []erp5sim.Fault
}{
	{"cut-before-send", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutBeforeRead}}},
	{"cut-after-commit", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutAfterCommit}}},
	{"cut-after-response", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutAfterResponse}}},
	{"500", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatus, Status: 500, Times: 3}}},
	{"503", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatus, Status: 503}}},
	{"502-after-commit", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatusAfterCommit, Status: 502}}},
	{"504-after-commit", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatusAfterCommit, Status: 504, Times: 2}}},
	{"429-retry-after", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatus, Status: 429, RetryAfter: "120"}}},
	{"timeout", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultNone, Delay: 10 * time.Minute}}},
	{"garbage", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultGarbage}}},
	{"truncated", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultTruncate}}},
	{"slow", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultSlow, Rate: 300}}},
	// The results query that settles an unknown outcome fails too.
	{"cut-after-commit+results-503", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutAfterCommit},
		{Endpoint: erp5sim.EndpointResults, Kind: erp5sim.FaultStatus, Status: 503}}},
	{"truncated+results-garbage", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultTruncate},
		{Endpoint: erp5sim.EndpointResults, Kind: erp5sim.FaultGarbage}}},
	{"timeout+results-cut", []erp5sim.Fault{{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultNone, Delay: 10 * time.Minute},
		{Endpoint: erp5sim.EndpointResults, Kind: erp5sim.FaultCutAfterCommit}}},
	// One 404 from the capability is not "no receiver": the uplink stays in batch mode.
	{"capability-404-once", []erp5sim.Fault{{Endpoint: erp5sim.EndpointCapability, Kind: erp5sim.FaultStatus, Status: 404}}},
	{"capability-503", []erp5sim.Fault{{Endpoint: erp5sim.EndpointCapability, Kind: erp5sim.FaultStatus, Status: 503, Times: 2}}},
}

// linkSeeds is how many seeds each fault runs with in the normal suite.
var linkSeeds = 2

// TestLinkFaults_Matrix runs each fault over several seeds: waves of writes of every kind,
// the fault injected into one wave, on some seeds a short outage too; once the link heals
// the outbox is empty and ERP5 holds every write exactly once, in per-document order.
func TestLinkFaults_Matrix(t *testing.T) {
	warmZstd(t)
	for _, f := range linkFaults {
		for seed := uint64(1); seed <= uint64(linkSeeds); seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", f.name, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					runLinkFault(t, seed, f.faults)
				})
			})
		}
	}
}

func runLinkFault(t *testing.T, seed uint64, faults []erp5sim.Fault) {
	rng := rand.New(rand.NewPCG(seed, 7))
	e := newLinkEnv(t, seed, erp5sim.Options{MaxEntries: 4 + rng.IntN(6)})
	e.seed(8)
	faultWave := int(seed % 3)
	if faults[0].Endpoint == erp5sim.EndpointCapability {
		e.sim.InjectFault(faults...) // the capability is asked at start
		faultWave = -1
	}
	e.start()
	for w := 0; w < 3; w++ {
		e.wave(fmt.Sprintf("w%d", w), 6+rng.IntN(10))
		if w == faultWave {
			e.sim.InjectFault(faults...)
		}
		if seed%2 == 0 && w == 1 {
			e.link.Outage(time.Duration(1+rng.IntN(4)) * time.Minute)
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Second)
	}
	e.waitDrained(3 * time.Hour)
	time.Sleep(11 * time.Minute) // a delayed handler finishes before the bubble ends
	if e.open() != 0 {
		t.Fatal("entries reopened")
	}
	if n := e.sim.PendingFaults(); n != 0 {
		t.Errorf("%d faults never applied", n)
	}
	if st := e.up.Status(); st.Mode != upstream.ModeBatch {
		t.Errorf("uplink mode %q, want batch", st.Mode)
	}
	e.checkExactlyOnce()
	e.checkDocuments()
}

// TestLinkFaults_LongOutage takes the link down for longer than the backoff cap while writes
// queue: the uplink keeps trying at most about once per capped interval (it never spins and
// never gives up), and delivers everything once the link is back.
func TestLinkFaults_LongOutage(t *testing.T) {
	warmZstd(t)
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				runLongOutage(t, seed)
			})
		})
	}
}

func runLongOutage(t *testing.T, seed uint64) {
	e := newLinkEnv(t, seed, erp5sim.Options{})
	e.seed(6)
	e.start()
	e.wave("before", 5)
	e.waitDrained(time.Hour)
	outage := time.Duration(40+e.rng.IntN(40)) * time.Minute
	dials, reqs := e.dials.Load(), e.sim.Stats().Requests
	e.link.SetDown(true)
	for i := range 10 {
		e.wave(fmt.Sprintf("during%d", i), 3)
		time.Sleep(outage / 10)
	}
	attempts := e.dials.Load() - dials
	// Backoff doubles from 2s to the 5-minute cap, with jitter of ±50%.
	most := int64(outage/(upstream.DefaultMaxBackoff/2)) + 12
	if attempts > most || attempts < 4 {
		t.Errorf("%d connection attempts during a %v outage, want 4..%d", attempts, outage, most)
	}
	if got := e.sim.Stats().Requests; fmt.Sprint(got) != fmt.Sprint(reqs) {
		t.Errorf("requests reached ERP5 through a down link: %v → %v", reqs, got)
	}
	if st := e.up.Status().Link; st.State == upstream.LinkUp {
		t.Errorf("link state during the outage: %+v", st)
	}
	e.link.SetDown(false)
	e.waitDrained(upstream.DefaultMaxBackoff*2 + 10*time.Minute)
	e.checkExactlyOnce()
	e.checkDocuments()
	t.Logf("%d attempts in a %v outage", attempts, outage)
}

// TestLinkFaults_Flapping runs an hour of a link that drops every minute or two, with writes
// trickling in and connections cut mid-request; everything arrives once and in order, and
// the uplink's request rate stays bounded.
func TestLinkFaults_Flapping(t *testing.T) {
	warmZstd(t)
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				runFlapping(t, seed)
			})
		})
	}
}

func runFlapping(t *testing.T, seed uint64) {
	e := newLinkEnv(t, seed, erp5sim.Options{MaxEntries: 5})
	e.seed(8)
	e.start()
	end := time.Now().Add(time.Hour)
	for i := 0; time.Now().Before(end); i++ {
		e.wave(fmt.Sprintf("f%d", i), 1+e.rng.IntN(4))
		up := time.Duration(5+e.rng.IntN(90)) * time.Second
		time.Sleep(up)
		if e.rng.IntN(3) == 0 {
			e.link.Cut() // a drop that resets connections in flight
		}
		e.link.Outage(time.Duration(10+e.rng.IntN(100)) * time.Second)
		time.Sleep(time.Duration(5+e.rng.IntN(60)) * time.Second)
	}
	e.waitDrained(time.Hour)
	st := e.sim.Stats()
	total := 0
	for _, n := range st.Requests {
		total += n
	}
	if total > 300 || e.dials.Load() > 300 {
		t.Errorf("%d requests, %d dials in an hour of flapping", total, e.dials.Load())
	}
	t.Logf("%d writes, %d requests (%v), %d dials, %d cuts", len(e.writes), total, st.Requests, e.dials.Load(), e.link.Stats().Cuts)
	e.checkExactlyOnce()
	e.checkDocuments()
}

// TestLinkFaults_RestoreAndPromote restores an older backup and later promotes a lagging
// standby copy while the uplink delivers, each time after ERP5 had applied entries the
// replaced database held or had lost: ERP5 applies nothing twice (not even a browser's resend
// of a lost write), and every entry of the database that lives on is applied exactly once.
func TestLinkFaults_RestoreAndPromote(t *testing.T) {
	warmZstd(t)
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				runRestoreAndPromote(t, seed)
			})
		})
	}
}

func runRestoreAndPromote(t *testing.T, seed uint64) {
	ctx := context.Background()
	e := newLinkEnv(t, seed, erp5sim.Options{MaxEntries: 4})
	e.seed(8)
	e.start()
	e.wave("w1", 8)
	e.waitDrained(time.Hour)

	// The backup holds w2a, not yet sent. ERP5 then applies w2a and w2b.
	e.wave("w2a", 8)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := e.db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	mark := len(e.writes)
	e.wave("w2b", 8)
	lost := slices.Clone(e.writes[mark:])
	e.waitDrained(time.Hour)
	e.taint(lost)
	// A browser will resend one of the lost writes with its key. ERP5 remembers the key of
	// each entry it applied; a write folded into another entry travels under that entry's
	// key only, so the resend is one that was sent as itself.
	var resends []linkWrite
	for _, w := range lost {
		en, err := e.db.OutboxEntry(ctx, w.seq)
		if err != nil {
			t.Fatal(err)
		}
		if w.op == sqlite.OpPut && w.title != "" && en.State == outbox.StateDone {
			resends = append(resends, w)
		}
	}

	// Restore: w2b is gone from the database (ERP5 has it); w2a is back, unsettled, under its
	// old epoch.
	e.stop()
	e.db.Close()
	res, err := sqlite.Restore(ctx, backup, e.path, sqlite.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.openDB(e.path)
	e.resetLists()
	resultsBefore := e.sim.Stats().Requests[erp5sim.EndpointResults]
	// A browser resends, with its key, a write the restored database lost: ERP5 answers it
	// from its record of the key, without applying it again.
	for _, w := range resends {
		if _, err := e.db.GetDocument(ctx, w.doc); err != nil {
			continue // created by a lost write: the restored replica never had it (404)
		}
		e.record(sqlite.Write{Op: sqlite.OpPut, ID: w.doc, Doc: map[string]any{"title": w.title}, Peer: w.peer, Key: w.key}, w.title)
		break
	}
	e.start()
	e.wave("w3", 10)
	// The standby copy lags: taken while the uplink works on w3.
	time.Sleep(time.Duration(1+e.rng.IntN(3)) * time.Second)
	standby := filepath.Join(t.TempDir(), "standby.db")
	if err := e.db.Backup(ctx, standby); err != nil {
		t.Fatal(err)
	}
	mark = len(e.writes)
	e.wave("w4", 8)
	time.Sleep(time.Duration(e.rng.IntN(40)) * time.Second)
	e.taint(e.writes[mark:])
	e.writes = e.writes[:mark] // w4 dies with the primary, delivered or not

	// The primary dies; the standby is promoted.
	e.stop()
	e.db.Close()
	e.openDB(standby)
	e.path = standby
	epoch, uncertain, err := e.db.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if epoch == res.Epoch {
		t.Fatal("promote kept the restored epoch")
	}
	e.resetLists()
	e.start()
	e.wave("w5", 8)
	e.waitDrained(2 * time.Hour)
	if e.sim.Stats().Requests[erp5sim.EndpointResults] == resultsBefore {
		t.Error("entries of earlier epochs were settled without asking ERP5's results")
	}
	e.checkExactlyOnce()
	t.Logf("restore epoch %.8s, promote epoch %.8s (%d uncertain)", res.Epoch, epoch, uncertain)
}

// taint marks the documents of writes that are about to be lost.
func (e *linkEnv) taint(ws []linkWrite) {
	for _, w := range ws {
		e.tainted[w.doc] = true
		if r, err := e.db.ResolveID(context.Background(), w.doc); err == nil {
			e.tainted[r] = true
		}
	}
}

// resetLists rebuilds the lists of writable documents from the replica after it was
// replaced, leaving out tainted documents and orders (whose workflow state the replica does
// not follow).
func (e *linkEnv) resetLists() {
	ctx := context.Background()
	rows, err := e.db.Reader().QueryContext(ctx, `SELECT id, portal_type FROM documents WHERE deleted = 0`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	e.persons, e.orgs, e.orders = nil, nil, nil
	for rows.Next() {
		var id, pt string
		rows.Scan(&id, &pt)
		if e.tainted[id] {
			continue
		}
		switch pt {
		case "Person":
			e.persons = append(e.persons, id)
		case "Organisation":
			e.orgs = append(e.orgs, id)
		}
	}
	sort.Strings(e.persons)
	sort.Strings(e.orgs)
	e.removed = map[string]bool{}
}
