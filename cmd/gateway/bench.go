package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sitesync.example/gateway"
	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newBenchCommand) }

// BenchOptions configure a benchmark run.
type BenchOptions struct {
	// URL and Token, when URL is set, point at a running gateway: only reads are measured.
	URL, Token string
	// Peers is how many Go-client peers (data channels) run requests at once, each one
	// request at a time.
	Peers int
	// Duration is how long each RPC measurement runs; Count how many times (medians).
	Duration time.Duration
	Count    int
	// Docs is the size of the self-contained gateway's data set.
	Docs int
	// Link is the simulated link of the drains; Edits, StockEdits and JIOEdits how many
	// corpus edits each drain sends.
	Link                           linksim.Config
	Edits, StockEdits, JIOEdits    int
	SkipRPC, SkipWrites, SkipDrain bool
	// Everyday is how many one-field edits and six-field creates the everyday drains send
	// over Link; Backlog how many entries the loopback backlog drain queues, with
	// BacklogPeers peers working meanwhile.
	Everyday, Backlog, BacklogPeers int
	SkipEveryday, SkipBacklog       bool
	// Progress receives a line now and then on long runs (nil: none).
	Progress io.Writer
}

// Bench settings: --short is the test suite's, the default a figure worth quoting.
var (
	benchDefault = BenchOptions{Peers: 4, Duration: 5 * time.Second, Count: 3, Docs: 5000,
		Link: linksim.Thuraya, Edits: 1000, StockEdits: 100, JIOEdits: 50, Everyday: 1000, Backlog: 50_000, BacklogPeers: 8}
	benchShort = BenchOptions{Peers: 2, Duration: time.Second, Count: 1, Docs: 500,
		Link: linksim.Config{Up: 2_000_000, Down: 2_000_000, Delay: 50 * time.Millisecond}, Edits: 100, StockEdits: 10, JIOEdits: 10,
		Everyday: 100, Backlog: 1000, BacklogPeers: 2}
)

// BenchReport is what `gateway bench -o json` prints.
type BenchReport struct {
	Target  string       `json:"target"` // "self-contained" or the gateway's URL
	Machine BenchMachine `json:"machine"`
	Short   bool         `json:"short"`
	Peers   int          `json:"peers"`
	// Duration is each RPC measurement's length in seconds; Count how many ran (medians).
	Duration float64 `json:"duration_s"`
	Count    int     `json:"count"`
	Docs     int     `json:"docs"`
	Link     string  `json:"link,omitempty"`
	// RPC are the data channels' figures: reads, and durable writes when self-contained.
	RPC []BenchRPC `json:"rpc"`
	// Drains are the uplink's figures over the simulated link, self-contained only.
	Drains []BenchDrain `json:"drains,omitempty"`
	// Everyday are the receiver's drains of one-field edits and six-field creates over the
	// simulated link, against their floor.
	Everyday []BenchDrain `json:"everyday,omitempty"`
	// Backlog is the loopback backlog drain with peers working.
	Backlog *BenchBacklog `json:"backlog,omitempty"`
}

// BenchMachine says where the figures were measured.
type BenchMachine struct {
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	Version string `json:"version"`
}

// BenchRPC is one RPC measurement: medians over the runs of each run's percentiles and rate.
type BenchRPC struct {
	Name      string  `json:"name"`
	Durable   bool    `json:"durable"`
	Peers     int     `json:"peers"`
	Requests  int     `json:"requests"` // over every run
	Errors    int     `json:"errors"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	PerSecond float64 `json:"per_second"`
	// VsGet is this measurement's p50 over get's.
	VsGet float64 `json:"p50_vs_get,omitempty"`
}

// BenchDrain is one uplink drain of corpus edits over the simulated link.
type BenchDrain struct {
	Mode string `json:"mode"` // receiver, stock, jio
	// Edits are the corpus edits made; Sent those that reached ERP5, alone or folded into a
	// later edit of the same document (stock ERP5 and jIO take no workflow actions).
	Edits        int     `json:"edits"`
	Sent         int     `json:"sent"`
	Seconds      float64 `json:"seconds"`
	MsPerEdit    float64 `json:"ms_per_edit"`
	BytesUp      int64   `json:"bytes_up"`
	BytesDown    int64   `json:"bytes_down"`
	BytesPerEdit float64 `json:"bytes_per_edit"`
	Requests     int     `json:"requests"`
	// TimeVsReceiver and BytesVsReceiver compare the per-edit figures with the receiver's.
	TimeVsReceiver  float64 `json:"time_per_edit_vs_receiver,omitempty"`
	BytesVsReceiver float64 `json:"bytes_per_edit_vs_receiver,omitempty"`
	// Floor is the link's floor for the drain (bytes up ÷ bandwidth + one round trip) and
	// VsFloor the drain's time over it (everyday drains).
	Floor   float64 `json:"floor_s,omitempty"`
	VsFloor float64 `json:"vs_floor,omitempty"`
}

func newBenchCommand(m *Main) *cobra.Command {
	var (
		o        BenchOptions
		short    bool
		output   string
		link     string
		only     []string
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "bench [--short] [-o table|json] [--url URL --token TOKEN]",
		Short: "Measure RPC latency and throughput, durable writes and uplink drains",
		Long: `Measure the gateway. Self-contained (the default), it starts its own gateway, ERP5
double and simulated satellite link in this process, on temporary files, and measures:

  rpc     get and allDocs latency (p50, p99) and throughput with --peers Go-client peers,
          each a real WebRTC data channel on loopback;
  writes  durable write throughput and latency (puts, each committed to disk and queued);
  drain   the uplink draining corpus edits over the simulated link in receiver mode (batch
          receiver), stock mode (stock HATEOAS) and jIO's pattern (a root fetch before every
          operation; 5 requests per create), with bytes per edit;
  everyday  the receiver draining --everyday one-field edits, then as many six-field
          creates, over the simulated link, against the link's floor (bytes up ÷ bandwidth
          + one round trip);
  backlog the uplink draining a --backlog of entries on loopback with 10% of the receiver's
          requests failing, while --backlog-peers peers each make a put and a get every 50 ms;
          their latencies with the uplink idle are measured first, in the same run.

With --url (and --token, a paired peer's token; a supervisor's, so that rate limits do not
apply) it measures the reads of a running gateway only: it never writes to a real site.

Each RPC figure is the median of --count runs of --duration. --short is the quick setting the
test suite runs (a faster link: its drain figures are not the satellite's). Progress goes to
stderr; -o json prints the report as JSON.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usagef("-o %q: want table or json", output)
			}
			base := benchDefault
			if short {
				base = benchShort
			}
			f := cmd.Flags()
			if !f.Changed("peers") {
				o.Peers = base.Peers
			}
			if !f.Changed("duration") {
				duration = base.Duration
			}
			if !f.Changed("count") {
				o.Count = base.Count
			}
			if !f.Changed("docs") {
				o.Docs = base.Docs
			}
			if !f.Changed("edits") {
				o.Edits = base.Edits
			}
			if !f.Changed("stock-edits") {
				o.StockEdits = base.StockEdits
			}
			if !f.Changed("jio-edits") {
				o.JIOEdits = base.JIOEdits
			}
			if !f.Changed("everyday") {
				o.Everyday = base.Everyday
			}
			if !f.Changed("backlog") {
				o.Backlog = base.Backlog
			}
			if !f.Changed("backlog-peers") {
				o.BacklogPeers = base.BacklogPeers
			}
			o.Duration = duration
			o.Link = base.Link
			if link != "" {
				cfg, err := linksim.ParseConfig(link)
				if err != nil {
					return usagef("--link: %v", err)
				}
				o.Link = cfg
			}
			if o.Peers < 1 || o.Count < 1 || o.Duration <= 0 || o.Docs < 10 || o.Edits < 1 || o.StockEdits < 1 || o.JIOEdits < 1 ||
				o.Everyday < 1 || o.Backlog < 1 || o.BacklogPeers < 1 {
				return usagef("--peers, --count, --duration and the edit counts must be positive, --docs at least 10")
			}
			if (o.URL == "") != (o.Token == "") {
				return usagef("--url and --token go together")
			}
			if len(only) > 0 {
				o.SkipRPC, o.SkipWrites, o.SkipDrain, o.SkipEveryday, o.SkipBacklog = true, true, true, true, true
				for _, p := range only {
					switch p {
					case "rpc":
						o.SkipRPC = false
					case "writes":
						o.SkipWrites = false
					case "drain":
						o.SkipDrain = false
					case "everyday":
						o.SkipEveryday = false
					case "backlog":
						o.SkipBacklog = false
					default:
						return usagef("--only %q: want rpc, writes, drain, everyday or backlog", p)
					}
				}
			}
			if o.URL != "" && len(only) > 0 && o.SkipRPC {
				return usagef("against a running gateway only the reads (rpc) are measured")
			}
			o.Progress = m.Stderr
			rep, err := m.RunBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			rep.Short = short
			if output == "json" {
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return writeBenchReport(m.Stdout, rep)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&short, "short", false, "the quick setting (the test suite's): fewer, shorter runs over a faster link")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&o.URL, "url", "", "measure the reads of the running gateway at this URL instead")
	f.StringVar(&o.Token, "token", "", "a paired peer's token for --url")
	f.IntVar(&o.Peers, "peers", benchDefault.Peers, "concurrent Go-client peers")
	f.DurationVar(&duration, "duration", benchDefault.Duration, "length of each RPC measurement")
	f.IntVar(&o.Count, "count", benchDefault.Count, "runs of each RPC measurement (the report gives medians)")
	f.IntVar(&o.Docs, "docs", benchDefault.Docs, "documents of the self-contained gateway")
	f.StringVar(&link, "link", "", `simulated link of the drains, "RATE[/RATE],RTT" (default 384kbit/444kbit,700ms; --short 2mbit,100ms)`)
	f.IntVar(&o.Edits, "edits", benchDefault.Edits, "corpus edits the receiver drain sends")
	f.IntVar(&o.StockEdits, "stock-edits", benchDefault.StockEdits, "corpus edits the stock drain sends")
	f.IntVar(&o.JIOEdits, "jio-edits", benchDefault.JIOEdits, "corpus edits jIO's pattern sends")
	f.IntVar(&o.Everyday, "everyday", benchDefault.Everyday, "one-field edits (and six-field creates) of the everyday drains")
	f.IntVar(&o.Backlog, "backlog", benchDefault.Backlog, "entries the loopback backlog drain queues")
	f.IntVar(&o.BacklogPeers, "backlog-peers", benchDefault.BacklogPeers, "peers working during the backlog drain")
	f.StringSliceVar(&only, "only", nil, "measure only these: rpc, writes, drain, everyday, backlog")
	return cmd
}

// RunBench runs the measurements o asks for.
func (m *Main) RunBench(ctx context.Context, o BenchOptions) (*BenchReport, error) {
	rep := &BenchReport{
		Target: "self-contained",
		Machine: BenchMachine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			Go: runtime.Version(), Version: Version},
		Peers: o.Peers, Duration: o.Duration.Seconds(), Count: o.Count, Docs: o.Docs,
	}
	p := &progress{w: o.Progress}
	if o.URL != "" {
		rep.Target, rep.Docs = o.URL, 0
		clients, err := dialPeers(ctx, o.URL, o.Token, o.Peers)
		if err != nil {
			return nil, err
		}
		defer closeAll(clients)
		ids, err := benchIDs(ctx, clients[0])
		if err != nil {
			return nil, err
		}
		rep.Docs = len(ids)
		rep.RPC, err = benchReads(ctx, clients, ids, o, p)
		return rep, err
	}
	if !o.SkipRPC || !o.SkipWrites {
		if err := m.benchGateway(ctx, o, p, rep); err != nil {
			return nil, err
		}
	}
	if !o.SkipDrain {
		rep.Link = o.Link.String()
		var err error
		if rep.Drains, err = benchDrains(ctx, o, p); err != nil {
			return nil, err
		}
	}
	if !o.SkipEveryday {
		rep.Link = o.Link.String()
		var err error
		if rep.Everyday, err = benchEveryday(ctx, o, p); err != nil {
			return nil, err
		}
	}
	if !o.SkipBacklog {
		var err error
		if rep.Backlog, err = m.benchBacklog(ctx, o, p); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// benchGateway starts a gateway with its double and link (the demo's set-up, on temporary
// files), pairs the peers and runs the RPC measurements.
func (m *Main) benchGateway(ctx context.Context, o BenchOptions, p *progress, rep *BenchReport) error {
	p.say("starting a gateway with %d documents…", o.Docs)
	inner := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Config: DefaultConfig()}
	inner.Config.DataDir = ""
	d, err := inner.StartDemo(ctx, DemoOptions{Listen: "127.0.0.1:0", Docs: o.Docs, Seed: 1, Link: o.Link, Role: "supervisor",
		LogLevel: slog.LevelError, Log: io.Discard})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		d.Close(cctx)
	}()
	var tokens []string
	for i := range o.Peers {
		code, err := sqlite.NewPeerService(d.Server.DB).CreateInvite(ctx, fmt.Sprintf("bench-%d", i+1), "supervisor", time.Hour)
		if err != nil {
			return err
		}
		creds, err := client.Pair(ctx, nil, d.Server.URL(), code)
		if err != nil {
			return err
		}
		tokens = append(tokens, creds.Token)
	}
	var clients []*client.Client
	defer func() { closeAll(clients) }()
	for _, tok := range tokens {
		c, err := client.Dial(ctx, d.Server.URL(), client.Options{Token: tok})
		if err != nil {
			return fmt.Errorf("bench: connect: %w", err)
		}
		clients = append(clients, c)
	}
	var ids, people []string
	for _, doc := range d.Sim.Documents() {
		ids = append(ids, doc.ID)
		if doc.PortalType == "Person" {
			people = append(people, doc.ID)
		}
	}
	if !o.SkipRPC {
		if rep.RPC, err = benchReads(ctx, clients, ids, o, p); err != nil {
			return err
		}
	}
	if !o.SkipWrites {
		// The link is down while writes are measured: the figure is the write path alone
		// (policy, replica, outbox, fsync), not the uplink's work on the same two cores.
		d.Link.SetDown(true)
		w, err := benchWrites(ctx, clients, people, o, p)
		d.Link.SetDown(false)
		if err != nil {
			return err
		}
		rep.RPC = append(rep.RPC, w)
	}
	var get float64
	for _, r := range rep.RPC {
		if r.Name == "get" {
			get = r.P50Ms
		}
	}
	for i := range rep.RPC {
		if get > 0 && rep.RPC[i].Name != "get" {
			rep.RPC[i].VsGet = rep.RPC[i].P50Ms / get
		}
	}
	return nil
}

func closeAll(cs []*client.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// dialPeers opens n data channels to the gateway at url with one token.
func dialPeers(ctx context.Context, url, token string, n int) ([]*client.Client, error) {
	if !strings.HasSuffix(url, "/") {
		url += "/"
	}
	var out []*client.Client
	for range n {
		c, err := client.Dial(ctx, url, client.Options{Token: token})
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("bench: connect to %s: %w", url, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// benchIDs lists up to 1,000 ids the peer may read, for the gets.
func benchIDs(ctx context.Context, c *client.Client) ([]string, error) {
	var res struct {
		Rows []struct {
			ID string `json:"id"`
		} `json:"rows"`
	}
	if err := c.Call(ctx, gateway.MethodAllDocs, map[string]any{"limit": []int{0, 1000}}, &res); err != nil {
		return nil, fmt.Errorf("bench: list documents: %w", err)
	}
	if len(res.Rows) == 0 {
		return nil, errors.New("bench: the peer reads no document")
	}
	ids := make([]string, len(res.Rows))
	for i, r := range res.Rows {
		ids[i] = r.ID
	}
	return ids, nil
}

// benchReads measures gets of random ids and allDocs pages (20 people by title).
func benchReads(ctx context.Context, clients []*client.Client, ids []string, o BenchOptions, p *progress) ([]BenchRPC, error) {
	get, err := measure(ctx, "get", false, clients, o, p, func(c *client.Client, r *rand.Rand, _ int) error {
		_, err := c.CallRaw(ctx, gateway.MethodGet, map[string]string{"id": ids[r.IntN(len(ids))]})
		return err
	})
	if err != nil {
		return nil, err
	}
	letters := "abcdefghijlmnoprstv"
	all, err := measure(ctx, "allDocs", false, clients, o, p, func(c *client.Client, r *rand.Rand, _ int) error {
		q := fmt.Sprintf(`portal_type:"Person" AND title:"%%%c%%"`, letters[r.IntN(len(letters))])
		_, err := c.CallRaw(ctx, gateway.MethodAllDocs, map[string]any{"query": q, "sort_on": [][]string{{"title", "ascending"}},
			"limit": []int{0, 20}, "select_list": []string{"title"}})
		return err
	})
	if err != nil {
		return nil, err
	}
	all.Name = "allDocs (20 rows)"
	return []BenchRPC{get, all}, nil
}

// benchWrites measures durable puts: each peer edits its own share of the people.
func benchWrites(ctx context.Context, clients []*client.Client, people []string, o BenchOptions, p *progress) (BenchRPC, error) {
	var n atomic.Int64
	w, err := measure(ctx, "put", true, clients, o, p, func(c *client.Client, r *rand.Rand, peer int) error {
		k := n.Add(1)
		id := people[(int(k)*len(clients)+peer)%len(people)]
		_, err := c.CallRaw(ctx, gateway.MethodPut, map[string]any{"id": id,
			"doc": map[string]any{"title": fmt.Sprintf("Bench %d", k)}, "key": fmt.Sprintf("bench-%d-%d", peer, k)})
		return err
	})
	w.Name = "put (durable)"
	return w, err
}

// measure runs op in a closed loop on every client for o.Duration, o.Count times, and
// returns the medians of the runs' p50, p99 and rate. An error of op counts as an error
// (a refusal by the policy, a rate limit); a closed channel ends the measurement.
func measure(ctx context.Context, name string, durable bool, clients []*client.Client, o BenchOptions, p *progress,
	op func(c *client.Client, r *rand.Rand, peer int) error) (BenchRPC, error) {
	res := BenchRPC{Name: name, Durable: durable, Peers: len(clients)}
	var p50s, p99s, rates []float64
	for run := range o.Count {
		p.say("%s: run %d of %d, %d peers, %s", name, run+1, o.Count, len(clients), o.Duration)
		var mu sync.Mutex
		var lat []time.Duration
		var errs int
		var fatal error
		start := time.Now()
		deadline := start.Add(o.Duration)
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(run), uint64(i)))
				var mine []time.Duration
				bad := 0
				for time.Now().Before(deadline) && ctx.Err() == nil {
					t0 := time.Now()
					err := op(c, r, i)
					if err != nil {
						if errors.Is(err, client.ErrClosed) || ctx.Err() != nil {
							mu.Lock()
							fatal = err
							mu.Unlock()
							return
						}
						bad++
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				errs += bad
				mu.Unlock()
			})
		}
		wg.Wait()
		if fatal != nil {
			return res, fmt.Errorf("bench %s: %w", name, fatal)
		}
		elapsed := time.Since(start)
		if len(lat) == 0 {
			return res, fmt.Errorf("bench %s: every request failed (%d errors)", name, errs)
		}
		slices.Sort(lat)
		p50s = append(p50s, ms(percentile(lat, 0.50)))
		p99s = append(p99s, ms(percentile(lat, 0.99)))
		rates = append(rates, float64(len(lat))/elapsed.Seconds())
		res.Requests += len(lat)
		res.Errors += errs
	}
	res.P50Ms, res.P99Ms, res.PerSecond = median(p50s), median(p99s), median(rates)
	return res, nil
}

// percentile returns the q-quantile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchCorpusSeed seeds the drains' data set and edits (erp5sim.Corpus).
const benchCorpusSeed = 42

// benchDrains drains corpus edits through the receiver, stock ERP5 and jIO's pattern.
func benchDrains(ctx context.Context, o BenchOptions, p *progress) ([]BenchDrain, error) {
	recv, err := benchUplinkDrain(ctx, upstream.ModeBatch, o.Edits, o.Link, p)
	if err != nil {
		return nil, err
	}
	stock, err := benchUplinkDrain(ctx, upstream.ModeStock, o.StockEdits, o.Link, p)
	if err != nil {
		return nil, err
	}
	jio, err := benchJIODrain(ctx, o.JIOEdits, o.Link, p)
	if err != nil {
		return nil, err
	}
	out := []BenchDrain{recv, stock, jio}
	for i := range out {
		d := &out[i]
		if d.Sent > 0 {
			d.MsPerEdit = d.Seconds * 1000 / float64(d.Sent)
			d.BytesPerEdit = float64(d.BytesUp+d.BytesDown) / float64(d.Sent)
		}
	}
	for i := 1; i < len(out); i++ {
		if out[0].MsPerEdit > 0 {
			out[i].TimeVsReceiver = out[i].MsPerEdit / out[0].MsPerEdit
		}
		if out[0].BytesPerEdit > 0 {
			out[i].BytesVsReceiver = out[i].BytesPerEdit / out[0].BytesPerEdit
		}
	}
	return out, nil
}

// drainEnv is a double loaded with the corpus's data set behind a simulated link, and a
// database seeded with the same documents.
type drainEnv struct {
	erp5 *simERP5
	db   *sqlite.DB
	dir  string
}

func newDrainEnv(ctx context.Context, stock bool, link linksim.Config) (*drainEnv, error) {
	docs := erp5sim.Generate(benchCorpusSeed, erp5sim.CorpusDocs, erp5sim.CorpusRef)
	sim := erp5sim.New(erp5sim.Options{Stock: stock, Users: map[string]string{demoUser: demoPassword}, Logger: slog.New(slog.DiscardHandler)})
	sim.Load(docs)
	e := &drainEnv{erp5: startSimERP5(sim, link)}
	var err error
	if e.dir, err = os.MkdirTemp("", "gateway-bench-"); err != nil {
		e.close()
		return nil, err
	}
	if e.db, err = sqlite.Open(ctx, filepath.Join(e.dir, sqlite.FileName)); err != nil {
		e.close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeExport(pw, nil, docs)) }()
	_, err = e.db.Import(ctx, pr, sqlite.ImportOptions{})
	pr.Close()
	if err != nil {
		e.close()
		return nil, fmt.Errorf("bench: seed: %w", err)
	}
	return e, nil
}

func (e *drainEnv) close() {
	if e.db != nil {
		e.db.Close()
	}
	e.erp5.Close()
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// benchUplinkDrain writes n corpus edits through the write path while the uplink idles with
// a warm connection, then wakes it and times the drain: the steady state of a site whose
// writes queued during an outage.
func benchUplinkDrain(ctx context.Context, mode string, n int, link linksim.Config, p *progress) (BenchDrain, error) {
	name := "receiver"
	if mode == upstream.ModeStock {
		name = "stock"
	}
	return benchUplinkWrites(ctx, mode, name, n, link, p, writeCorpus)
}

// benchUplinkWrites is benchUplinkDrain with the writes made by write.
func benchUplinkWrites(ctx context.Context, mode, name string, n int, link linksim.Config, p *progress,
	write func(ctx context.Context, db *sqlite.DB, n int) error) (BenchDrain, error) {
	res := BenchDrain{Mode: name, Edits: n}
	e, err := newDrainEnv(ctx, mode == upstream.ModeStock, link)
	if err != nil {
		return res, err
	}
	defer e.close()
	m := &Main{Config: DefaultConfig(), Logger: slog.New(slog.DiscardHandler), UpstreamDial: e.erp5.Link.DialContext}
	m.Config.SiteID = "bench-site"
	m.Config.Upstream.URL = e.erp5.URL
	m.Config.Upstream.Auth = AuthConfig{User: demoUser, Password: demoPassword}
	m.Config.Upstream.Protocol = mode
	m.Config.DataDir = e.dir
	e.db.SiteID = m.Config.SiteID
	if _, err := e.db.NewEpoch(ctx); err != nil {
		return res, err
	}
	u, err := m.NewUplink(ctx, e.db, nil)
	if err != nil {
		return res, err
	}
	if err := u.Open(ctx); err != nil {
		return res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		u.Close(cctx)
	}()
	p.say("drain %s: probing ERP5 across %s…", name, link)
	if mode == upstream.ModeBatch {
		// The probe opens the connection and learns the receiver: the steady state.
		if err := waitFor(ctx, 2*time.Minute, func() bool { return u.Status().Mode == mode }); err != nil {
			return res, fmt.Errorf("bench: the receiver was not found: %w", err)
		}
	} else if _, err := u.Client.Root(ctx); err != nil {
		return res, fmt.Errorf("bench: stock root: %w", err)
	}
	p.say("drain %s: writing %d edits…", name, n)
	if err := write(ctx, e.db, n); err != nil {
		return res, err
	}
	e.erp5.Sim.ResetStats()
	before := e.erp5.Link.Stats()
	start := time.Now()
	u.Wake()
	total := 0
	last := time.Now()
	for {
		left, sent, err := drainLeft(ctx, e.db, mode)
		if err != nil {
			return res, err
		}
		if total == 0 {
			total = left
		}
		if left == 0 {
			res.Sent = sent
			break
		}
		if time.Since(start) > 30*time.Minute {
			return res, fmt.Errorf("bench: drain %s: %d entries left after 30 minutes", name, left)
		}
		if time.Since(last) > 3*time.Second {
			p.say("drain %s: %d of %d entries left, %s", name, left, total, time.Since(start).Round(time.Second))
			last = time.Now()
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	after := e.erp5.Link.Stats()
	res.BytesUp = after.Sent[linksim.Up] - before.Sent[linksim.Up]
	res.BytesDown = after.Sent[linksim.Down] - before.Sent[linksim.Down]
	for _, c := range e.erp5.Sim.Stats().Requests {
		res.Requests += c
	}
	return res, nil
}

// writeCorpus makes n corpus edits through the write path.
func writeCorpus(ctx context.Context, db *sqlite.DB, n int) error {
	edits := erp5sim.Corpus(benchCorpusSeed, n)
	for _, ed := range edits {
		w := sqlite.Write{Op: ed.Op, ID: ed.ID, Peer: "bench", Transition: ed.Transition}
		switch ed.Op {
		case "post":
			doc := map[string]any{"portal_type": ed.PortalType, "parent_relative_url": ed.ParentRelativeURL}
			for k, v := range ed.Fields {
				doc[k] = v
			}
			w.ID, w.Doc = "", doc
		case "put":
			w.Doc = ed.Fields
		}
		if _, err := db.Write(ctx, w); err != nil {
			return fmt.Errorf("bench: write %s %s: %w", ed.Op, ed.ID, err)
		}
	}
	return nil
}

// drainLeft returns how many entries still wait to be sent and how many edits reached ERP5
// (an entry done, or merged into one: each write has its own entry). In stock
// mode workflow actions wait for a receiver (deferred, needs_receiver), and so do the later
// entries of their documents: those are not waited for.
func drainLeft(ctx context.Context, db *sqlite.DB, mode string) (left, sent int, err error) {
	entries, _, err := db.OutboxList(ctx, outbox.Filter{States: outbox.States})
	if err != nil {
		return 0, 0, err
	}
	blocked := map[string]bool{}
	for _, e := range entries {
		switch {
		case e.State == outbox.StateDone || e.State == outbox.StateMerged:
			sent++
		case mode == upstream.ModeStock && e.State == outbox.StateDeferred && e.LastError == "needs_receiver":
			blocked[e.DocID] = true
		case mode == upstream.ModeStock && e.State == outbox.StatePending && blocked[e.DocID]:
		case e.State == outbox.StateDead || e.State == outbox.StateConflict:
			return 0, 0, fmt.Errorf("bench: entry %d %s %s: %s (%s)", e.Seq, e.Op, e.DocID, e.State, e.LastError)
		default:
			left++
		}
	}
	return left, sent, nil
}

// benchJIODrain sends n corpus edits the way jIO's ERP5 storage does (erp5storage.js), with
// the stock client: every operation refetches the site root; a put is root, traverse,
// Base_edit (3 requests); a post is root, newContent, then a put (5). Workflow actions have
// no jIO equivalent and are skipped.
func benchJIODrain(ctx context.Context, n int, link linksim.Config, p *progress) (BenchDrain, error) {
	res := BenchDrain{Mode: "jio", Edits: n}
	e, err := newDrainEnv(ctx, true, link)
	if err != nil {
		return res, err
	}
	defer e.close()
	c := &upstream.Client{
		URL:        e.erp5.URL,
		HTTPClient: &http.Client{Transport: upstream.NewTransport(upstream.TransportConfig{DialContext: e.erp5.Link.DialContext})},
		Auth:       upstream.Auth{User: demoUser, Password: demoPassword},
		Logger:     slog.New(slog.DiscardHandler),
	}
	if _, err := c.Root(ctx); err != nil { // a warm connection, as the others have
		return res, fmt.Errorf("bench: jio root: %w", err)
	}
	e.erp5.Sim.ResetStats()
	before := e.erp5.Link.Stats()
	start := time.Now()
	last := start
	ids := map[string]string{} // the corpus's local ids → ERP5's
	for i, ed := range erp5sim.Corpus(benchCorpusSeed, n) {
		if time.Since(last) > 3*time.Second {
			p.say("drain jio: %d of %d edits, %s", i, n, time.Since(start).Round(time.Second))
			last = time.Now()
		}
		switch ed.Op {
		case "put":
			id := ed.ID
			if real, ok := ids[id]; ok {
				id = real
			}
			c.ResetRoot()
			if _, err := c.Put(ctx, id, ed.PortalType, ed.Fields); err != nil {
				return res, fmt.Errorf("bench: jio put %s: %w", id, err)
			}
		case "post":
			parent := ed.ParentRelativeURL
			if real, ok := ids[parent]; ok {
				parent = real
			}
			c.ResetRoot()
			id, err := c.Post(ctx, ed.PortalType, parent)
			if err != nil {
				return res, fmt.Errorf("bench: jio post: %w", err)
			}
			ids[ed.ID] = id
			c.ResetRoot()
			if _, err := c.Put(ctx, id, ed.PortalType, ed.Fields); err != nil {
				return res, fmt.Errorf("bench: jio post %s: %w", id, err)
			}
		default:
			continue
		}
		res.Sent++
	}
	res.Seconds = time.Since(start).Seconds()
	after := e.erp5.Link.Stats()
	res.BytesUp = after.Sent[linksim.Up] - before.Sent[linksim.Up]
	res.BytesDown = after.Sent[linksim.Down] - before.Sent[linksim.Down]
	for _, n := range e.erp5.Sim.Stats().Requests {
		res.Requests += n
	}
	return res, nil
}

// waitFor polls cond until it holds, ctx ends or within passes.
func waitFor(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", within)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// progress writes progress lines ("bench: …") to w; the long loops call it every few
// seconds.
type progress struct {
	w  io.Writer
	mu sync.Mutex
}

func (p *progress) say(format string, a ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "bench: "+format+"\n", a...)
}

// writeBenchReport prints the report as tables.
func writeBenchReport(w io.Writer, r *BenchReport) error {
	fmt.Fprintf(w, "gateway bench: %s on %s/%s, %d CPUs, %s (gateway %s)\n", r.Target, r.Machine.OS, r.Machine.Arch,
		r.Machine.CPUs, r.Machine.Go, r.Machine.Version)
	if len(r.RPC) > 0 {
		fmt.Fprintf(w, "\nData-channel RPC: %d peers (Go client, loopback WebRTC), %d documents; medians of %d run(s) of %gs\n",
			r.Peers, r.Docs, r.Count, r.Duration)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "method\tp50 ms\tp99 ms\tper second\tp50 × get\terrors\t")
		for _, x := range r.RPC {
			vs := "-"
			if x.VsGet > 0 {
				vs = fmt.Sprintf("%.1f", x.VsGet)
			}
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.0f\t%s\t%d\t\n", x.Name, x.P50Ms, x.P99Ms, x.PerSecond, vs, x.Errors)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Everyday) > 0 {
		fmt.Fprintf(w, "\nEveryday drains through the receiver over a simulated %s link, against the floor (bytes up ÷ bandwidth + one round trip)\n", r.Link)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "writes\tdelivered\tseconds\tfloor s\t× floor\tbytes up\tbytes down\trequests\t")
		for _, d := range r.Everyday {
			fmt.Fprintf(tw, "%s\t%d/%d\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n", d.Mode, d.Sent, d.Edits, d.Seconds, d.Floor, d.VsFloor,
				d.BytesUp, d.BytesDown, d.Requests)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.Backlog != nil {
		writeBacklogReport(w, r.Backlog)
	}
	if len(r.Drains) > 0 {
		fmt.Fprintf(w, "\nUplink drain over a simulated %s link (corpus edits, warm connection)\n", r.Link)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tedits delivered\tseconds\tms/edit\tbytes up\tbytes down\tbytes/edit\trequests\ttime × receiver\tbytes × receiver\t")
		for _, d := range r.Drains {
			tv, bv := "-", "-"
			if d.TimeVsReceiver > 0 {
				tv = fmt.Sprintf("%.1f", d.TimeVsReceiver)
			}
			if d.BytesVsReceiver > 0 {
				bv = fmt.Sprintf("%.1f", d.BytesVsReceiver)
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%.0f\t%d\t%d\t%.0f\t%d\t%s\t%s\t\n", d.Mode, d.Sent, d.Edits, d.Seconds, d.MsPerEdit,
				d.BytesUp, d.BytesDown, d.BytesPerEdit, d.Requests, tv, bv)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
