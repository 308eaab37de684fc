package main

import (
	"bufio"
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
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v4"

	"sitesync.example/gateway"
	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newDemoCommand) }

// Demo defaults.
const (
	// DemoSiteID is the demo gateway's site_id.
	DemoSiteID = "demo-site"
	// DefaultDemoListen is loopback: the demo is for the machine it runs on unless asked.
	DefaultDemoListen = "127.0.0.1:8080"
	// DefaultDemoLink is a Thuraya IP terminal as measured (docs/DESIGN.md appendix C).
	DefaultDemoLink = "384kbit/444kbit,700ms"
	// DefaultDemoDocs is a small site's worth of documents.
	DefaultDemoDocs = 3000
	// demoUser and demoPassword are the double's credentials: the demo logs in like a site.
	demoUser     = "gateway"
	demoPassword = "demo"
	// demoHost is the ERP5 host name in the demo's upstream.url; nothing resolves it: the
	// connections are dialled across the simulated link.
	demoHost = "erp5.demo.invalid"
)

// DemoOptions configure StartDemo.
type DemoOptions struct {
	// Listen is the web app's address (DefaultDemoListen).
	Listen string
	// UDPPort is the data channels' UDP port; 0 takes a free one.
	UDPPort int
	// Link is the simulated satellite link.
	Link linksim.Config
	// Docs and Seed generate the double's data (erp5sim.Generate).
	Docs int
	Seed int64
	// Stock runs the double without the batch receiver (stock ERP5).
	Stock bool
	// Open enrolls any browser (lan.enrollment: open) with Role; else one invite of Role.
	Open bool
	Role string
	// OutageEvery, when positive, takes the link down for OutageFor that often.
	OutageEvery, OutageFor time.Duration
	// HeadOfficeEvery, when positive, has a head-office user edit a person at the double
	// that often, and the downlink pull it at once.
	HeadOfficeEvery time.Duration
	// Log receives the gateway's log (nil: discarded) at LogLevel.
	Log      io.Writer
	LogLevel slog.Level
}

// Demo is a gateway, the ERP5 double and the simulated link between them, in one process.
type Demo struct {
	Sim    *erp5sim.Server
	Link   *linksim.Link
	Server *Server
	// DataDir is the gateway's data directory; Temporary when StartDemo made it.
	DataDir   string
	Temporary bool
	// Invite is the one-time pairing link ("" with open enrollment).
	Invite string
	// Seeded is how many documents were imported into the replica at the start (0 when the
	// data directory already had them).
	Seeded int

	erp5   *simERP5
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// simERP5 is the ERP5 double served across a simulated link.
type simERP5 struct {
	Sim  *erp5sim.Server
	Link *linksim.Link
	URL  string
	http *http.Server
	done chan struct{}
}

// startSimERP5 serves sim on the far side of a new link of shape cfg. Its URL names a host
// nothing resolves: dial it with Link.DialContext (Main.UpstreamDial).
func startSimERP5(sim *erp5sim.Server, cfg linksim.Config) *simERP5 {
	e := &simERP5{Sim: sim, Link: linksim.New(cfg), done: make(chan struct{})}
	e.URL = "http://" + demoHost + sim.SitePath() + "/"
	e.http = &http.Server{Handler: sim, ReadHeaderTimeout: time.Minute, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)}
	go func() {
		defer close(e.done)
		e.http.Serve(e.Link)
	}()
	return e
}

// Close stops serving and drops the link's connections.
func (e *simERP5) Close() {
	e.http.Close()
	e.Link.Close()
	e.Link.Cut()
	<-e.done
}

// demoScopes are the demo's downlink scopes: every type the double generates, all fields.
var demoScopes = []ScopeConfig{
	{Name: "Person", PortalType: "Person"},
	{Name: "Organisation", PortalType: "Organisation"},
	{Name: "Product", PortalType: "Product"},
	{Name: "Sale Order", PortalType: "Sale Order"},
	{Name: "Sale Order Line", PortalType: "Sale Order Line"},
}

// StartDemo starts the double, the link and a gateway on m's data directory (a new temporary
// one when m.Config.DataDir is empty), seeds the replica from the double's data when it is
// empty, and returns once the gateway serves.
func (m *Main) StartDemo(ctx context.Context, o DemoOptions) (d *Demo, err error) {
	if o.Listen == "" {
		o.Listen = DefaultDemoListen
	}
	if o.Role == "" {
		o.Role = "supervisor"
	}
	d = &Demo{DataDir: m.Config.DataDir}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			d.Close(cctx)
			d = nil
		}
	}()
	if d.DataDir == "" {
		if d.DataDir, err = os.MkdirTemp("", "gateway-demo-"); err != nil {
			return d, fmt.Errorf("demo: %w", err)
		}
		d.Temporary = true
	}

	d.Sim = erp5sim.New(erp5sim.Options{Seed: o.Seed, Docs: o.Docs, Stock: o.Stock,
		Users: map[string]string{demoUser: demoPassword}, Logger: slog.New(slog.DiscardHandler)})
	d.erp5 = startSimERP5(d.Sim, o.Link)
	d.Link = d.erp5.Link

	cfg := DefaultConfig()
	cfg.DataDir = d.DataDir
	cfg.SiteID = DemoSiteID
	cfg.Upstream.URL = d.erp5.URL
	cfg.Upstream.Auth = AuthConfig{User: demoUser, Password: demoPassword}
	cfg.Upstream.Scopes = append([]ScopeConfig(nil), demoScopes...)
	cfg.LAN.Listen = o.Listen
	cfg.LAN.WebRTC.UDPPort = o.UDPPort
	if o.Open {
		cfg.LAN.Enrollment = "open"
		cfg.LAN.DefaultRole = o.Role
	}
	switch {
	case o.LogLevel <= slog.LevelDebug:
		cfg.Log.Level = "debug"
	case o.LogLevel <= slog.LevelInfo:
		cfg.Log.Level = "info"
	case o.LogLevel <= slog.LevelWarn:
		cfg.Log.Level = "warn"
	default:
		cfg.Log.Level = "error"
	}
	if err := cfg.Validate(); err != nil {
		return d, err
	}
	m.Config = cfg
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	m.Logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: o.LogLevel}))
	m.UpstreamDial = d.Link.DialContext

	if d.Seeded, err = m.seedFromDouble(ctx, d.Sim); err != nil {
		return d, err
	}
	if err := writeDemoConfig(filepath.Join(d.DataDir, DefaultConfigPath), cfg); err != nil {
		return d, err
	}
	if d.Server, err = m.StartServer(ctx); err != nil {
		return d, err
	}
	if !o.Open {
		// Run again on a directory whose demo-browser paired, the invite is for demo-browser-2, …
		code, err := sqlite.NewPeerService(d.Server.DB).CreateInvite(ctx, "demo-browser", o.Role, 24*time.Hour)
		for i := 2; err != nil && gateway.ErrorReason(err) == "peer_exists" && i < 1000; i++ {
			code, err = sqlite.NewPeerService(d.Server.DB).CreateInvite(ctx, fmt.Sprintf("demo-browser-%d", i), o.Role, 24*time.Hour)
		}
		if err != nil {
			return d, fmt.Errorf("demo: invite: %w", err)
		}
		base, err := lan.BaseURL(lanServerConfig(cfg.LAN), d.Server.LAN.Addr().String())
		if err != nil {
			return d, fmt.Errorf("demo: %w", err)
		}
		d.Invite = lan.PairLink(base, code)
	}
	var lctx context.Context
	lctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if o.OutageEvery > 0 && o.OutageFor > 0 {
		d.wg.Go(func() { d.outages(lctx, o.OutageEvery, o.OutageFor, m.Stdout) })
	}
	if o.HeadOfficeEvery > 0 {
		d.wg.Go(func() { d.headOffice(lctx, o.HeadOfficeEvery, o.Seed, m.Stdout) })
	}
	return d, nil
}

// headOffice edits a random person's telephone at the double every interval, as a head-office
// user would, and asks the downlink to pull now rather than at its next interval.
func (d *Demo) headOffice(ctx context.Context, every time.Duration, seed int64, w io.Writer) {
	var people []string
	for _, doc := range d.Sim.Documents() {
		if doc.PortalType == "Person" {
			people = append(people, doc.ID)
		}
	}
	if len(people) == 0 {
		return
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x4ead))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id := people[r.IntN(len(people))]
		phone := fmt.Sprintf("+%d %d %03d %04d", 200+r.IntN(100), 10+r.IntN(90), r.IntN(1000), r.IntN(10000))
		if err := d.Sim.Edit(id, map[string]any{"default_telephone_text": phone}); err != nil {
			continue
		}
		fmt.Fprintf(w, "%s  head office edited %s (default_telephone_text); the downlink pulls it\n", clock(), id)
		if dl := d.Server.Downlink; dl != nil {
			dl.SyncNow()
		}
	}
}

// seedFromDouble imports the double's documents into an empty replica, as a site is seeded
// offline from an ERP5 export (`gateway docs import`): nothing is queued for ERP5. It returns
// how many were imported (0 when the replica already had documents).
func (m *Main) seedFromDouble(ctx context.Context, sim *erp5sim.Server) (int, error) {
	if err := os.MkdirAll(m.Config.DataDir, 0o750); err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	db, err := m.CreateDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	if err := db.Reader().QueryRowContext(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	if n > 0 {
		return 0, nil
	}
	docs := sim.Documents()
	var types []string
	for _, sc := range m.Config.Upstream.Scopes {
		types = append(types, sc.PortalType)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeExport(pw, sim.FormsAnswer(types), docs)) }()
	// The export carries the forms, as `docs import --set-cursors` reads them: the web app
	// renders ERP5's forms from the start.
	forms := &formsImporter{now: time.Now()}
	st, err := db.Import(ctx, newFormsLines(pr, forms.take), sqlite.ImportOptions{})
	pr.Close()
	if err == nil {
		err = forms.store(ctx, db)
	}
	if err != nil {
		return 0, fmt.Errorf("demo: seed the replica: %w", err)
	}
	// The scopes' cursors start where the export ends, as `docs import --set-cursors` sets
	// them: the downlink then fetches only what changed since.
	scopes := make([]upstream.Scope, 0, len(m.Config.Upstream.Scopes))
	for _, sc := range m.Config.Upstream.Scopes {
		scopes = append(scopes, upstream.Scope{Name: sc.Name, PortalType: sc.PortalType, Query: sc.Query, Fields: sc.Fields})
	}
	seeder, err := upstream.NewCursorSeeder(scopes, m.Config.Query.DateKeys)
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	for _, d := range docs {
		if err := seeder.Observe(d.ID, d.PortalType, nil, d.Version(), ""); err != nil {
			return 0, fmt.Errorf("demo: %w", err)
		}
	}
	var cursors []sqlite.SyncCursor
	for _, c := range seeder.Cursors() {
		cursors = append(cursors, sqlite.SyncCursor{Scope: c.Scope, Cursor: c.Cursor, Complete: c.Complete, FreshAt: c.FreshAt})
	}
	if err := db.SetSyncCursors(ctx, cursors); err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	return st.Documents, nil
}

// writeDemoConfig writes the demo's configuration where operator commands can read it
// (`gateway --config DATA_DIR/gateway.yaml outbox ls`), so that they find its data and its
// listen address.
func writeDemoConfig(path string, cfg Config) error {
	b, err := yaml.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("demo: config: %w", err)
	}
	head := "# Written by `gateway demo` for operator commands against the running demo; the ERP5\n" +
		"# host below exists only inside the demo process.\n"
	if err := os.WriteFile(path, append([]byte(head), b...), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// writeExport writes documents in the import format (JSON Lines of {"id", "doc", "version"}),
// as an ERP5 export for offline seeding is written, after a {"forms": …} line when forms is
// not nil. Every document carries its parent_relative_url (an order's lines: the order).
func writeExport(w io.Writer, forms map[string]any, docs []*erp5sim.Document) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if forms != nil {
		if err := enc.Encode(map[string]any{"forms": forms}); err != nil {
			return err
		}
	}
	for _, d := range docs {
		body := make(map[string]any, len(d.Properties)+2)
		for k, v := range d.Properties {
			body[k] = v
		}
		body["portal_type"] = d.PortalType
		body["parent_relative_url"] = d.Parent()
		if err := enc.Encode(map[string]any{"id": d.ID, "doc": body, "version": d.Version()}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// outages takes the link down for length every interval and says so on w.
func (d *Demo) outages(ctx context.Context, every, length time.Duration, w io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fmt.Fprintf(w, "%s  link: DOWN for %s (simulated outage)\n", clock(), length)
		d.Link.SetDown(true)
		select {
		case <-ctx.Done():
			d.Link.SetDown(false)
			return
		case <-time.After(length):
		}
		d.Link.SetDown(false)
		fmt.Fprintf(w, "%s  link: up again\n", clock())
	}
}

// watchERP5 prints every change the double receives from the gateway until ctx ends.
func (d *Demo) watchERP5(ctx context.Context, w io.Writer) {
	seen := len(d.Sim.Changes())
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changes := d.Sim.Changes()
		for _, c := range changes[min(seen, len(changes)):] {
			if c.Via == erp5sim.ViaHeadOffice {
				continue
			}
			what := c.Op
			if c.Transition != "" {
				what += " " + c.Transition
			}
			var fields []string
			for k := range c.Fields {
				fields = append(fields, k)
			}
			detail := ""
			if len(fields) > 0 {
				sort.Strings(fields)
				detail = " (" + strings.Join(fields, ", ") + ")"
			}
			via := "batch receiver"
			if c.Via == erp5sim.ViaStock {
				via = "stock interface"
			}
			seq := ""
			if c.Seq > 0 {
				seq = fmt.Sprintf(", seq %d", c.Seq)
			}
			fmt.Fprintf(w, "%s  ERP5 applied %s %s%s via the %s%s\n", clock(), what, c.ID, detail, via, seq)
		}
		seen = len(changes)
	}
}

// watchStdin reads operator commands for the link: "down", "up", "outage DURATION".
func (d *Demo) watchStdin(ctx context.Context, r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() && ctx.Err() == nil {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "down":
			d.Link.SetDown(true)
			fmt.Fprintf(w, "%s  link: DOWN (type \"up\" to bring it back)\n", clock())
		case "up":
			d.Link.SetDown(false)
			fmt.Fprintf(w, "%s  link: up\n", clock())
		case "outage":
			length := 30 * time.Second
			if len(f) > 1 {
				v, err := time.ParseDuration(f[1])
				if err != nil || v <= 0 {
					fmt.Fprintf(w, "outage %q: want a duration such as 30s\n", f[1])
					continue
				}
				length = v
			}
			d.Link.Outage(length)
			fmt.Fprintf(w, "%s  link: DOWN for %s\n", clock(), length)
		default:
			fmt.Fprintln(w, `commands: "down", "up", "outage 30s"`)
		}
	}
}

// Close stops the gateway, the double and the link, and removes a temporary data directory.
func (d *Demo) Close(ctx context.Context) error {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	var errs []error
	if d.Link != nil {
		d.Link.SetDown(false) // a final flush must not wait on a simulated outage
	}
	if d.Server != nil {
		errs = append(errs, d.Server.Close(ctx))
	}
	if d.erp5 != nil {
		d.erp5.Close()
	}
	if d.Temporary && d.DataDir != "" {
		errs = append(errs, os.RemoveAll(d.DataDir))
	}
	return errors.Join(errs...)
}

func clock() string { return time.Now().Format("15:04:05") }

func newDemoCommand(m *Main) *cobra.Command {
	var (
		o                      DemoOptions
		link                   string
		noQR, verbose          bool
		outageEvery, outageFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "demo [--link 384kbit/444kbit,700ms] [--outage-every 2m] [--open]",
		Short: "Run a gateway, an ERP5 double and a simulated satellite link in one process",
		Long: `Run, in this one process, the whole loop a site lives: a gateway on the built-in
defaults (site_id demo-site, its data in a temporary directory unless --data-dir), the ERP5
test double seeded with a few thousand realistic documents (people, organisations, products,
sale orders), and a simulated satellite link between them with the bandwidth, round trip and
outages you choose. The replica is seeded from the double's data as a real site is seeded
offline from an ERP5 export. It prints the web app's address, a one-time pairing link and its
QR code (or, with --open, lets any browser in), and what to try.

A write made in the browser is committed to the replica and the outbox, crosses the simulated
link and is applied by the double: this terminal prints each change the double receives.
Type "down", "up" or "outage 30s" (then Enter) to cut the link by hand.

It listens on 127.0.0.1 unless --listen says otherwise; --listen 0.0.0.0:8080 lets tablets
on the LAN in.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := linksim.ParseConfig(link)
			if err != nil {
				return usagef("--link: %v", err)
			}
			o.Link = cfg
			if outageEvery < 0 || outageFor <= 0 {
				return usagef("--outage-every must not be negative and --outage-for must be positive")
			}
			if outageEvery > 0 && outageFor >= outageEvery {
				return usagef("--outage-for (%s) must be shorter than --outage-every (%s)", outageFor, outageEvery)
			}
			if o.Docs < 0 || o.HeadOfficeEvery < 0 {
				return usagef("--docs and --head-office-every must not be negative")
			}
			o.OutageEvery, o.OutageFor = outageEvery, outageFor
			o.Log, o.LogLevel = m.Stderr, slog.LevelWarn
			if verbose {
				o.LogLevel = slog.LevelInfo
			}
			// The demo runs on the built-in defaults; only --data-dir is taken from the
			// command line.
			m.Config = DefaultConfig()
			m.Config.DataDir = m.DataDir
			ctx := cmd.Context()
			fmt.Fprintf(m.Stdout, "Starting the demo: ERP5 double with %d documents, link %s…\n", o.Docs, cfg)
			d, err := m.StartDemo(ctx, o)
			if err != nil {
				return err
			}
			d.printWelcome(m.Stdout, o, !noQR)
			wctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { d.watchERP5(wctx, m.Stdout) })
			go d.watchStdin(wctx, m.Stdin, m.Stdout)
			<-ctx.Done()
			stop()
			wg.Wait()
			fmt.Fprintln(m.Stdout, "stopping the demo…")
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			return d.Close(cctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", DefaultDemoListen, "web app address (0.0.0.0:8080 for the LAN)")
	f.IntVar(&o.UDPPort, "udp-port", 0, "data channels' UDP port (0: any free port)")
	f.StringVar(&link, "link", DefaultDemoLink, `simulated satellite link, "RATE[/RATE],RTT"`)
	f.DurationVar(&outageEvery, "outage-every", 0, "take the link down this often (0: never)")
	f.DurationVar(&outageFor, "outage-for", 30*time.Second, "how long each outage lasts")
	f.DurationVar(&o.HeadOfficeEvery, "head-office-every", 0, "have head office edit a person at ERP5 this often (0: never)")
	f.IntVar(&o.Docs, "docs", DefaultDemoDocs, "documents the ERP5 double generates")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the generated documents")
	f.BoolVar(&o.Stock, "stock", false, "ERP5 without the batch receiver (stock HATEOAS only)")
	f.BoolVar(&o.Open, "open", false, "let any browser in (lan.enrollment: open) instead of printing an invite")
	f.StringVar(&o.Role, "role", "supervisor", "role of the invited (or, with --open, every) browser")
	f.BoolVar(&noQR, "no-qr", false, "print the pairing link without its QR code")
	f.BoolVar(&verbose, "verbose", false, "log the gateway's info lines too (default: warnings only)")
	return cmd
}

// printWelcome prints the addresses, the pairing link and what to try.
func (d *Demo) printWelcome(w io.Writer, o DemoOptions, qr bool) {
	url := d.Server.URL()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  Web app:      %s\n", url)
	fmt.Fprintf(w, "  Status page:  %sstatus\n", url)
	fmt.Fprintf(w, "  Metrics:      %smetrics\n", url)
	mode := "batch receiver"
	if o.Stock {
		mode = "stock ERP5, no receiver"
	}
	fmt.Fprintf(w, "  ERP5 double:  %d documents (%s), across a simulated %s link\n", len(d.Sim.Documents()), mode, o.Link)
	where := d.DataDir
	if d.Temporary {
		where += " (temporary: removed when the demo stops)"
	}
	fmt.Fprintf(w, "  Data:         %s\n", where)
	if d.Seeded > 0 {
		fmt.Fprintf(w, "                replica seeded with %d documents from the double\n", d.Seeded)
	}
	fmt.Fprintln(w)
	if d.Invite != "" {
		fmt.Fprintf(w, "Pair a browser (one-time link, role %s):\n\n  %s\n\n", o.Role, d.Invite)
		if qr {
			qrterminal.GenerateWithConfig(d.Invite, qrterminal.Config{Level: qrterminal.M, Writer: w, HalfBlocks: true, QuietZone: 2})
			fmt.Fprintln(w)
		}
	} else {
		fmt.Fprintf(w, "Open enrollment: any browser that opens %s is let in as %s.\n\n", url, o.Role)
	}
	self, _ := os.Executable()
	gw := "gateway"
	if self != "" && !strings.Contains(self, string(filepath.Separator)+"go-build") {
		gw = self
	}
	fmt.Fprintln(w, "What to try:")
	fmt.Fprintln(w, "  1. Open the link above: the browser pairs, then shows the documents of the replica.")
	fmt.Fprintln(w, "  2. Edit a person and save. The answer comes once the write is on disk; the write")
	fmt.Fprintf(w, "     waits in the outbox, crosses the %s link and this terminal prints\n", o.Link)
	fmt.Fprintln(w, "     \"ERP5 applied put …\" when the double has it.")
	fmt.Fprintf(w, "  3. Open %sstatus: link state, outbox, bytes and cost today, peers, freshness.\n", url)
	fmt.Fprintln(w, "  4. Type \"down\" here (then Enter) and keep editing: the app keeps working, writes")
	fmt.Fprintln(w, "     queue up; type \"up\" and watch them drain. Or run with --outage-every 2m.")
	conf := filepath.Join(d.DataDir, DefaultConfigPath)
	fmt.Fprintln(w, "  5. Run with --head-office-every 1m: head office edits a person at ERP5, the downlink")
	fmt.Fprintln(w, "     brings it into the replica and an open list or form in the browser updates itself.")
	fmt.Fprintf(w, "  6. Look at the queue as an operator: %s --config %s outbox ls\n", gw, conf)
	fmt.Fprintf(w, "     More browsers: %s --config %s peers invite tablet-2 --role clerk\n", gw, conf)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ctrl-C stops the demo.")
	fmt.Fprintln(w)
}
