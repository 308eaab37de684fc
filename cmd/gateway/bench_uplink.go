package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// BenchBacklog is a backlog drain on loopback with faults while peers keep working, with the
// same peers' figures on an idle uplink measured in the same run (docs/DESIGN.md §7).
type BenchBacklog struct {
	Entries int     `json:"entries"`
	Faults  float64 `json:"faults"` // share of the receiver's requests that fail
	Seconds float64 `json:"seconds"`
	// PerSecond is entries drained per second; Cores the process's CPU (gateway, ERP5
	// double and the peers' clients together) per second of drain.
	PerSecond float64 `json:"per_second"`
	Cores     float64 `json:"cores"`
	Batches   int     `json:"batches"`
	Results   int     `json:"results_queries"`
	// Idle and Draining are the peers' put and get figures, uplink idle and while it drains.
	Idle     []BenchRPC `json:"idle"`
	Draining []BenchRPC `json:"draining"`
}

// backlogPace is how often each peer makes one put and one get during the backlog
// measurement: a busy form user, not a closed loop that would take both cores from the drain.
const backlogPace = 50 * time.Millisecond

// benchBacklogFaults are the double's faults a backlog drain meets, one drawn per faulty
// request.
var benchBacklogFaults = []erp5sim.Fault{
	{Kind: erp5sim.FaultCutBeforeRead},
	{Kind: erp5sim.FaultCutAfterCommit},
	{Kind: erp5sim.FaultStatus, Status: 503},
	{Kind: erp5sim.FaultStatus, Status: 500},
	{Kind: erp5sim.FaultStatusAfterCommit, Status: 502},
	{Kind: erp5sim.FaultGarbage},
	{Kind: erp5sim.FaultTruncate},
}

// benchBacklog queues o.Backlog entries while the link is down, then brings it back on
// loopback with 10% of the receiver's requests failing, and times the drain while
// o.BacklogPeers peers each make a put and a get every backlogPace; the same load first runs
// for o.Duration with the uplink idle.
func (m *Main) benchBacklog(ctx context.Context, o BenchOptions, p *progress) (*BenchBacklog, error) {
	res := &BenchBacklog{Entries: o.Backlog, Faults: 0.10}
	p.say("backlog: starting a gateway with %d documents on loopback…", o.Docs)
	inner := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Config: DefaultConfig()}
	inner.Config.DataDir = ""
	d, err := inner.StartDemo(ctx, DemoOptions{Listen: "127.0.0.1:0", Docs: o.Docs, Seed: 1, Link: linksim.Config{},
		Role: "supervisor", LogLevel: slog.LevelError, Log: io.Discard})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		d.Close(cctx)
	}()
	clients, err := pairPeers(ctx, d, o.BacklogPeers)
	defer closeAll(clients)
	if err != nil {
		return nil, err
	}
	var ids, people []string
	for _, doc := range d.Sim.Documents() {
		ids = append(ids, doc.ID)
		if doc.PortalType == "Person" {
			people = append(people, doc.ID)
		}
	}
	p.say("backlog: %d peers, uplink idle, %s…", len(clients), o.Duration)
	deadline := time.Now().Add(o.Duration)
	if res.Idle, err = pacedLoad(ctx, clients, ids, people, func() bool { return time.Now().After(deadline) }); err != nil {
		return nil, err
	}
	p.say("backlog: queueing %d entries with the link down…", o.Backlog)
	d.Link.SetDown(true)
	if err := queueBacklog(ctx, d.Server.DB, people, o.Backlog); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 7))
	d.Sim.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
		if ep != erp5sim.EndpointBatch && ep != erp5sim.EndpointResults {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() >= res.Faults {
			return nil
		}
		f := benchBacklogFaults[rng.IntN(len(benchBacklogFaults))]
		return &f
	})
	defer d.Sim.SetFaultFunc(nil)
	d.Sim.ResetStats()
	cpu0 := processCPU()
	start := time.Now()
	d.Link.SetDown(false)
	d.Server.Uplink.Flush()
	var drainErr error
	drained := func() bool {
		if time.Since(start) > 30*time.Minute {
			drainErr = fmt.Errorf("bench: backlog not drained after 30 minutes")
			return true
		}
		c, err := d.Server.DB.OutboxCounts(ctx)
		if err != nil {
			drainErr = err
			return true
		}
		left := c[outbox.StatePending] + c[outbox.StateInflight] + c[outbox.StateDeferred] + c[outbox.StateUncertain]
		return left == 0
	}
	var last time.Time
	res.Draining, err = pacedLoad(ctx, clients, ids, people, func() bool {
		if time.Since(last) < 100*time.Millisecond {
			return false
		}
		last = time.Now()
		return drained()
	})
	if err != nil {
		return nil, err
	}
	if drainErr != nil {
		return nil, drainErr
	}
	res.Seconds = time.Since(start).Seconds()
	res.Cores = (processCPU() - cpu0).Seconds() / res.Seconds
	res.PerSecond = float64(o.Backlog) / res.Seconds
	st := d.Sim.Stats()
	res.Batches, res.Results = st.Requests[erp5sim.EndpointBatch], st.Requests[erp5sim.EndpointResults]
	return res, nil
}

// pairPeers pairs n Go-client peers with the demo's gateway and connects them.
func pairPeers(ctx context.Context, d *Demo, n int) ([]*client.Client, error) {
	var clients []*client.Client
	for i := range n {
		code, err := sqlite.NewPeerService(d.Server.DB).CreateInvite(ctx, fmt.Sprintf("bench-%d", i+1), "supervisor", time.Hour)
		if err != nil {
			return clients, err
		}
		creds, err := client.Pair(ctx, nil, d.Server.URL(), code)
		if err != nil {
			return clients, err
		}
		c, err := client.Dial(ctx, d.Server.URL(), client.Options{Token: creds.Token})
		if err != nil {
			return clients, fmt.Errorf("bench: connect: %w", err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// queueBacklog writes n one-field edits of people through the write path, from several
// goroutines (group commit), as a week of work offline leaves them.
func queueBacklog(ctx context.Context, db *sqlite.DB, people []string, n int) error {
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				_, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPut, ID: people[(i*7919)%len(people)], Peer: fmt.Sprintf("offline-%d", w),
					Key: fmt.Sprintf("backlog-%d", i), Doc: map[string]any{"title": fmt.Sprintf("Offline %d", i)}})
				if err != nil {
					errs <- fmt.Errorf("bench: backlog write: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// pacedLoad has each client make one put and one get every backlogPace until done reports
// true, and returns the put and get figures.
func pacedLoad(ctx context.Context, clients []*client.Client, ids, people []string, done func() bool) ([]BenchRPC, error) {
	var mu sync.Mutex
	var puts, gets []time.Duration
	var errs int
	var fatal error
	var doneMu sync.Mutex
	finished := false
	isDone := func() bool {
		doneMu.Lock()
		defer doneMu.Unlock()
		if !finished {
			finished = done()
		}
		return finished
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 11))
			t := time.NewTicker(backlogPace)
			defer t.Stop()
			for k := 0; !isDone() && ctx.Err() == nil; k++ {
				t0 := time.Now()
				_, perr := c.CallRaw(ctx, gateway.MethodPut, map[string]any{"id": people[r.IntN(len(people))],
					"doc": map[string]any{"title": fmt.Sprintf("Busy %d-%d", i, k)}, "key": fmt.Sprintf("busy-%d-%d-%d", i, k, start.UnixNano())})
				t1 := time.Now()
				_, gerr := c.CallRaw(ctx, gateway.MethodGet, map[string]string{"id": ids[r.IntN(len(ids))]})
				t2 := time.Now()
				mu.Lock()
				for _, err := range []error{perr, gerr} {
					if err != nil && fatal == nil && ctx.Err() != nil {
						fatal = err
					} else if err != nil {
						errs++
					}
				}
				if perr == nil {
					puts = append(puts, t1.Sub(t0))
				}
				if gerr == nil {
					gets = append(gets, t2.Sub(t1))
				}
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	if fatal != nil {
		return nil, fatal
	}
	elapsed := time.Since(start).Seconds()
	fig := func(name string, lat []time.Duration, durable bool) BenchRPC {
		slices.Sort(lat)
		return BenchRPC{Name: name, Durable: durable, Peers: len(clients), Requests: len(lat), Errors: errs,
			P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)), PerSecond: float64(len(lat)) / elapsed}
	}
	if len(puts) == 0 || len(gets) == 0 {
		return nil, fmt.Errorf("bench: no request succeeded (%d errors)", errs)
	}
	return []BenchRPC{fig("put", puts, true), fig("get", gets, false)}, nil
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeBacklogReport prints the backlog figures.
func writeBacklogReport(w io.Writer, b *BenchBacklog) {
	fmt.Fprintf(w, "\nBacklog drain on loopback: %d entries, %.0f%% of the receiver's requests failing, peers making a put and a get every %s\n",
		b.Entries, b.Faults*100, backlogPace)
	fmt.Fprintf(w, "  drained in %.1f s: %.0f entries/s, %.2f cores (gateway, double and clients), %d batches, %d results queries\n",
		b.Seconds, b.PerSecond, b.Cores, b.Batches, b.Results)
	for i := range b.Idle {
		if i < len(b.Draining) {
			x, y := b.Idle[i], b.Draining[i]
			fmt.Fprintf(w, "  %-4s idle p50 %.2f ms p99 %.2f ms · draining p50 %.2f ms p99 %.2f ms (%d requests, %d errors)\n",
				x.Name, x.P50Ms, x.P99Ms, y.P50Ms, y.P99Ms, y.Requests, y.Errors)
		}
	}
}

// benchEveryday drains o.Everyday one-field edits of people, then o.Everyday six-field
// creates, through the receiver over o.Link, each against the link's floor: its bytes up ÷
// the up bandwidth + one round trip.
func benchEveryday(ctx context.Context, o BenchOptions, p *progress) ([]BenchDrain, error) {
	var people []string
	for _, d := range erp5sim.Generate(benchCorpusSeed, erp5sim.CorpusDocs, erp5sim.CorpusRef) {
		if d.PortalType == "Person" {
			people = append(people, d.ID)
		}
	}
	edits := func(ctx context.Context, db *sqlite.DB, n int) error {
		for i := range n {
			if _, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPut, ID: people[i%len(people)], Peer: "bench",
				Doc: map[string]any{"title": fmt.Sprintf("Edited title %d", i)}}); err != nil {
				return fmt.Errorf("bench: everyday edit: %w", err)
			}
		}
		return nil
	}
	creates := func(ctx context.Context, db *sqlite.DB, n int) error {
		for i := range n {
			if _, err := db.Write(ctx, sqlite.Write{Op: sqlite.OpPost, Peer: "bench", Doc: map[string]any{
				"portal_type": "Person", "parent_relative_url": "person_module",
				"title": fmt.Sprintf("New person %d", i), "first_name": fmt.Sprintf("First%d", i),
				"last_name": fmt.Sprintf("Last%d", i), "email_text": fmt.Sprintf("person%d@example.org", i),
				"telephone_text": fmt.Sprintf("+33 1 23 45 %02d %02d", i/100%100, i%100), "description": "created on site",
			}}); err != nil {
				return fmt.Errorf("bench: everyday create: %w", err)
			}
		}
		return nil
	}
	var out []BenchDrain
	for _, c := range []struct {
		name  string
		write func(context.Context, *sqlite.DB, int) error
	}{{"one-field edits", edits}, {"six-field creates", creates}} {
		d, err := benchUplinkWrites(ctx, upstream.ModeBatch, c.name, o.Everyday, o.Link, p, c.write)
		if err != nil {
			return nil, err
		}
		if o.Link.Up > 0 {
			d.Floor = float64(d.BytesUp)/(float64(o.Link.Up)/8) + o.Link.RTT().Seconds()
			d.VsFloor = d.Seconds / d.Floor
		}
		out = append(out, d)
	}
	return out, nil
}
