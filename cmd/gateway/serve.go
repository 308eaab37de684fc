package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"sitesync.example/gateway"
	"sitesync.example/gateway/control"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newServeCommand) }

// lockWait is how long serve, restore and promote wait for the data directory's lock: an
// operator command that writes holds it shared for the moment it takes to make its epoch.
const lockWait = 2 * time.Second

// shutdownTimeout bounds a graceful stop: closing channels, finishing in-flight writes and a
// last uplink round.
const shutdownTimeout = 15 * time.Second

func newServeCommand(m *Main) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway: web app, data channels, uplink and downlink",
		Long: `Run the gateway until SIGINT or SIGTERM: the web app and /signal on lan.listen, the
data channels on one UDP port, the uplink that drains the outbox to ERP5 (when site_id and
upstream.url are set), the control socket for operator commands, /healthz, /readyz,
/metrics and the operator status page /status. Each start begins a new outbox epoch (docs/DESIGN.md §6).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen != "" {
				m.Config.LAN.Listen = listen
			}
			s, err := m.StartServer(cmd.Context())
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			m.Logger.Info("stopping")
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), shutdownTimeout)
			defer cancel()
			return s.Close(ctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "HTTP listen address (overrides lan.listen)")
	return cmd
}

// Server is a running gateway: everything `serve` starts, for `serve`, `demo` and tests.
type Server struct {
	DB       *sqlite.DB
	LAN      *lan.Server
	Service  *rpc.Service
	Uplink   *upstream.Uplink   // nil when the uplink is not configured
	Downlink *upstream.Downlink // nil when the uplink is not configured
	Control  *control.Server
	Registry *prometheus.Registry
	// Status serves /status and /status.json.
	Status *statusPage

	lock      *sqlite.DirLock
	notifier  *statusNotifier
	outbox    *outboxRuntime
	history   *linkHistory
	closeOnce sync.Once
	closeErr  error
}

// URL returns the web app's address.
func (s *Server) URL() string { return s.LAN.URL() }

// StartServer opens the database, loads the policy, starts the outbox's background work, the
// uplink (when configured), the LAN server and the control socket, and returns once all
// listen. The data directory's lock comes first: while another process holds it nothing is
// touched. On error everything started is closed again.
func (m *Main) StartServer(ctx context.Context) (s *Server, err error) {
	s = &Server{Registry: prometheus.NewRegistry()}
	if err := m.Config.ValidateStart(); err != nil {
		return nil, err
	}
	if s.lock, err = sqlite.LockDirWithin(m.Config.DataDir, lockWait); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			s.Close(cctx)
			s = nil
		}
	}()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if cleaned, err := sqlite.CleanRestoring(m.DBPath()); err != nil {
		return s, err
	} else if cleaned {
		m.Logger.Warn("removed what an interrupted restore left", "file", m.DBPath()+".restoring")
	}
	if s.DB, err = m.CreateDB(ctx); err != nil {
		return s, err
	}
	pol, err := m.loadPolicy(m.Config.Policy)
	if err != nil {
		return s, err
	}
	s.Service = rpc.NewService(s.DB, pol)
	s.Service.DateKeys = m.Config.Query.DateKeys
	s.Service.Logger = m.Logger.With("subsystem", "rpc")
	rpcMetrics := newRPCMetrics(s.Registry)
	s.Status = &statusPage{m: m, s: s, auth: operatorAuth{db: s.DB}, started: time.Now()}

	s.LAN = lan.NewServer(lanServerConfig(m.Config.LAN), sqlite.NewPeerService(s.DB), rpcMetrics.instrument(s.Service))
	s.LAN.Logger = m.Logger.With("subsystem", "lan")
	s.LAN.OnPeerOffline = s.Service.Forget
	s.Service.OnChanged = func(ids []string, renamed map[string]string) {
		s.LAN.NotifyChanged(ids, renamed, func(a gateway.Actor, id string) bool {
			return s.Service.Readable(context.Background(), a.Role, id)
		})
	}

	if err := m.Config.ValidateUplink(); err != nil {
		m.Logger.Warn("uplink disabled: writes are kept in the outbox until it is configured", "reason", err)
	} else if s.Uplink, err = m.NewUplink(ctx, s.DB, s.Registry); err != nil {
		return s, err
	}
	notifier := &statusNotifier{lan: s.LAN, svc: s.Service}
	s.notifier = notifier
	wake := func() {
		if s.Uplink != nil {
			s.Uplink.Wake()
		}
		notifier.poke(ctx)
	}
	if s.outbox, err = m.startOutbox(ctx, s.DB, wake); err != nil {
		return s, err
	}
	if s.Uplink != nil {
		u := s.Uplink
		// ERP5's answers rename local ids and change documents: tell the browsers.
		u.Store.(*UplinkStore).OnSettle = func(rep *sqlite.SettleReport) {
			if len(rep.Changed) > 0 || len(rep.Renamed) > 0 {
				s.Service.OnChanged(rep.Changed, rep.Renamed)
			}
		}
		s.Service.Link = func() rpc.LinkStatus {
			st := u.Status().Link
			ls := rpc.LinkStatus{State: st.State.String(), LastError: st.LastError}
			if !st.Since.IsZero() {
				ls.Since = &st.Since
			}
			if !st.NextTryAt.IsZero() {
				ls.NextTryAt = &st.NextTryAt
			}
			return ls
		}
		s.observeUplink(ctx, m)
		onStatus := u.OnStatus
		u.OnStatus = func(st upstream.Status) {
			if onStatus != nil {
				onStatus(st)
			}
			notifier.poke(ctx)
		}
		s.Downlink = m.NewDownlink(s.DB, u)
		s.Downlink.OnChanged = func(ids []string) { s.Service.OnChanged(ids, nil) }
		// A learned form changed: the status notification carries the new forms_hash.
		s.Downlink.OnFormsChanged = func() { notifier.poke(ctx) }
		s.Service.UpstreamMode = func() string { return upstreamMode(u.Status().Mode) }
		s.Service.Fetch = s.Downlink.Fetch
		// The uplink claims under the start's epoch: on a full disk it opens once that is made.
		err := s.outbox.whenReady(func() error {
			if err := u.Open(ctx); err != nil {
				return err
			}
			return s.Downlink.Open(ctx)
		})
		if err != nil {
			return s, err
		}
	}

	s.LAN.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.DB.Reader().PingContext(r.Context()); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}))
	s.Registry.MustRegister(newStateCollector(s, m.DBPath(), m.Config.DataDir))
	s.LAN.Handle("GET /metrics", s.Status.auth.require(promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry})))
	s.Status.register(s.LAN)
	if err := s.LAN.Open(ctx); err != nil {
		return s, err
	}

	s.Control = control.NewServer(m.SocketPath())
	s.Control.HandleWake(control.WakeUplink, func() {
		if s.Uplink != nil {
			s.Uplink.Flush()
		}
	})
	s.Control.Handle("/peers/", s.LAN.ControlHandler())
	if s.Uplink != nil {
		s.Control.Handle("GET "+ControlUplinkStatusPath, UplinkStatusHandler(s.Uplink))
		s.Control.HandleWake(control.WakeResume, s.Uplink.Resume)
		// `gateway sync now` pulls at once and asks ERP5 for its forms again.
		s.Control.HandleWake(control.WakeDownlink, s.Downlink.RefreshForms)
	}
	if err := s.Control.Open(); err != nil {
		return s, err
	}
	m.Logger.Info("gateway serving", "url", s.LAN.URL(), "data_dir", m.Config.DataDir, "uplink", s.Uplink != nil)
	fmt.Fprintf(m.Stdout, "gateway serving at %s\n", s.LAN.URL())
	return s, nil
}

// Close stops everything in reverse order: no new requests (the control socket, then the
// LAN: its in-flight writes finish and commit), a last uplink round bounded by
// finalFlushTimeout while the link is up (before the downlink stops: a pull cut short would
// make the shared link look down), the downlink, the uplink, the outbox's loops, then the
// database.
// It is safe to call more than once: later calls return the first one's error.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Server) close(ctx context.Context) error {
	var errs []error
	if s.Control != nil {
		errs = append(errs, s.Control.Close())
	}
	if s.LAN != nil {
		errs = append(errs, s.LAN.Close(ctx))
	}
	if s.Uplink != nil {
		s.finalFlush(ctx)
	}
	if s.Downlink != nil {
		errs = append(errs, s.Downlink.Close(ctx))
	}
	if s.Uplink != nil {
		errs = append(errs, s.Uplink.Close(ctx))
		if s.history != nil {
			s.history.record(stateOff, time.Now())
		}
	}
	if s.outbox != nil {
		s.outbox.Close()
	}
	if s.notifier != nil {
		s.notifier.stop()
	}
	if s.DB != nil {
		errs = append(errs, s.DB.Close())
	}
	errs = append(errs, s.lock.Release())
	return errors.Join(errs...)
}

// finalFlushTimeout bounds the last uplink round at shutdown: long enough for a batch or two
// on the satellite, short enough that a stop (systemd's TimeoutStopSec) never waits on a slow
// link. What is left waits in the outbox for the next start.
const finalFlushTimeout = 5 * time.Second

// finalFlush gives the uplink one last chance, while the link is up, to send what is pending
// and to finish what is inflight (so that no batch is cut off mid-way and left uncertain),
// bounded by finalFlushTimeout and ctx. With the link down it returns at once.
func (s *Server) finalFlush(ctx context.Context) {
	u := s.Uplink
	if u.Status().Link.State != upstream.LinkUp {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, finalFlushTimeout)
	defer cancel()
	waiting := func() bool {
		c, err := s.DB.OutboxCounts(ctx)
		return err == nil && c[outbox.StatePending]+c[outbox.StateInflight] > 0
	}
	if !waiting() {
		return
	}
	u.Flush()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !waiting() && !u.Busy() {
			return
		}
		if u.Status().Link.State == upstream.LinkDown {
			return
		}
	}
}
