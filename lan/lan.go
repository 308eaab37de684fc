// Package lan is the gateway's side of the site LAN (docs/DESIGN.md §3): one HTTP listener serving the
// web app, pairing (/api/pair) and WebSocket signaling (/signal); WebRTC data channels through
// pion over one UDP port; JSON-RPC 2.0 on those channels, with binary fragments for large
// messages and notifications pushed to the peers.
//
// The RPC methods themselves live behind the Service interface, and peers are stored through
// PeerStore: the package knows the wire, not the replica.
package lan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway"
)

// Config is the `lan:` section of the configuration, as the server needs it.
type Config struct {
	// Listen is the HTTP listener's address, "host:port"; port 0 picks one (tests).
	Listen string
	// PublicURL is the base URL invite links carry; empty means one made from Listen.
	PublicURL string
	// Enrollment is "invite" (a token from pairing is required) or "open" (a hello without a
	// token enrolls a new peer of DefaultRole).
	Enrollment string
	// DefaultRole is the role of peers enrolled under open enrollment.
	DefaultRole string
	// TLSCert and TLSKey name PEM files; both set means HTTPS and WSS.
	TLSCert, TLSKey string
	// WebRTCListen is the host (an IP, a name, or empty for the host of Listen) whose
	// addresses the ICE UDP mux binds. An unspecified address (0.0.0.0, ::) means every
	// non-loopback interface address; a loopback address adds loopback candidates.
	WebRTCListen string
	// UDPPort is the one UDP port all data channels use; 0 picks one (tests).
	UDPPort int
	// TCPFallback adds passive ICE-TCP candidates on the same port number over TCP, for sites
	// whose firewalls drop UDP.
	TCPFallback bool
	// Interfaces, when not empty, limits ICE to the network interfaces named.
	Interfaces []string
}

// Enrollment modes.
const (
	EnrollmentInvite = "invite"
	EnrollmentOpen   = "open"
)

// Service runs the data-channel RPC methods (docs/DESIGN.md §3). The server has already checked the
// method name and the JSON shape of params (see ValidateParams) and put the actor into ctx
// (gateway.ActorFromContext).
type Service interface {
	// Call runs one method for a peer and returns its result, which is marshalled as JSON.
	// Errors are *gateway.Error (sent as application errors with their status and reason);
	// any other error is logged and sent as a 500 "internal".
	Call(ctx context.Context, peer gateway.Actor, method string, params json.RawMessage) (any, error)
}

// ServiceFunc adapts a function to Service.
type ServiceFunc func(ctx context.Context, peer gateway.Actor, method string, params json.RawMessage) (any, error)

// Call calls f.
func (f ServiceFunc) Call(ctx context.Context, peer gateway.Actor, method string, params json.RawMessage) (any, error) {
	return f(ctx, peer, method, params)
}

// PeerStore keeps paired peers; sqlite.PeerService implements it. Errors that concern the
// caller are *gateway.Error: EUNAUTHORIZED (reasons "unauthorized", "revoked", "used",
// "expired") and ECONFLICT.
type PeerStore interface {
	// RedeemInvite spends a one-time pairing code and returns the new peer and its token.
	RedeemInvite(ctx context.Context, code string) (gateway.Peer, string, error)
	// EnrollPeer creates a peer of role with a generated name (open enrollment).
	EnrollPeer(ctx context.Context, role string) (gateway.Peer, string, error)
	// FindPeerByToken returns the unrevoked peer holding token.
	FindPeerByToken(ctx context.Context, token string) (gateway.Peer, error)
	// TouchPeer records when and from where a peer was last seen.
	TouchPeer(ctx context.Context, name, address string, at time.Time) error
	// RevokedPeers returns those of names that are revoked or gone.
	RevokedPeers(ctx context.Context, names []string) ([]string, error)
}

// errClosed is returned by operations on a connection that has been closed.
var errClosed = errors.New("closed")

// Defaults for the Server's tunables.
const (
	// DefaultOpenTimeout is how long a peer has from its WebSocket upgrade to an open data
	// channel before it is dropped (docs/DESIGN.md §3).
	DefaultOpenTimeout = 10 * time.Second
	// DefaultMaxMessageSize bounds one RPC message, reassembled, in either direction. A big
	// allDocs page with include_docs fits; a runaway one is refused rather than buffered.
	DefaultMaxMessageSize = 16 << 20
	// DefaultMaxPartial bounds the fragmented messages a peer may have half-sent at once.
	DefaultMaxPartial = 4
	// DefaultWorkers is how many read requests of one channel run at once. Writes run one at
	// a time per channel, in arrival order, so a page's successive edits apply in order.
	DefaultWorkers = 4
	// DefaultMaxInflight bounds a channel's requests queued, running or waiting to be sent;
	// beyond it a request is answered 429 at once.
	DefaultMaxInflight = 256
	// DefaultMaxChannels bounds signaling sessions and open channels together; beyond it a
	// hello is answered "busy".
	DefaultMaxChannels = 2000
	// DefaultRequestTimeout bounds one RPC method call.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultRevocationPoll is how often the server asks the store whether a connected peer
	// was revoked by another process (an operator command without the control socket).
	DefaultRevocationPoll = time.Second
	// sctpMaxMessageSize is what pion advertises and accepts in one SCTP message: Chrome's own
	// limit. pion's default, 1 GiB, would let a peer make it buffer that much.
	sctpMaxMessageSize = 256 << 10
)

// Server is the LAN side of the gateway. Set the exported fields before Open.
type Server struct {
	Config Config
	Logger *slog.Logger
	// Now returns the current time; tests replace it.
	Now func() time.Time

	OpenTimeout    time.Duration
	MaxMessageSize int
	MaxPartial     int
	Workers        int
	MaxInflight    int
	MaxChannels    int
	RequestTimeout time.Duration
	RevocationPoll time.Duration
	// PairLimit is the /api/pair rate limit per client address.
	PairLimit Rate
	// OnPeerOffline, when set, is called (on its own goroutine) with a peer's name when its
	// last connection closes, e.g. to drop per-peer state such as rate limiters.
	OnPeerOffline func(name string)
	// PairGlobalLimit is the /api/pair rate limit over all clients, against a distributed
	// guess; it also limits enrollments under open enrollment.
	PairGlobalLimit Rate

	peers   PeerStore
	service Service
	mux     *http.ServeMux

	ln      net.Listener
	http    *http.Server
	ice     *iceTransport
	api     *webrtc.API
	cert    webrtc.Certificate
	url     *url.URL
	pairLim *limiter
	globLim *limiter
	cancel  context.CancelFunc // ends the server's own loops

	mu       sync.Mutex
	closed   bool
	conns    map[string]map[*conn]struct{} // by peer name
	nconns   int
	wg       sync.WaitGroup
	closeErr error
	closing  sync.Once
}

// NewServer returns a Server for cfg that stores peers in peers and answers RPCs with
// service. Call Handle to add routes, then Open.
func NewServer(cfg Config, peers PeerStore, service Service) *Server {
	if peers == nil || service == nil {
		panic("lan: NewServer needs a PeerStore and a Service")
	}
	s := &Server{
		Config:          cfg,
		Logger:          slog.Default().With("subsystem", "lan"),
		Now:             time.Now,
		OpenTimeout:     DefaultOpenTimeout,
		MaxMessageSize:  DefaultMaxMessageSize,
		MaxPartial:      DefaultMaxPartial,
		Workers:         DefaultWorkers,
		MaxInflight:     DefaultMaxInflight,
		MaxChannels:     DefaultMaxChannels,
		RequestTimeout:  DefaultRequestTimeout,
		RevocationPoll:  DefaultRevocationPoll,
		PairLimit:       Rate{Every: 6 * time.Second, Burst: 10},
		PairGlobalLimit: Rate{Every: 100 * time.Millisecond, Burst: 60},
		peers:           peers,
		service:         service,
		mux:             http.NewServeMux(),
		conns:           make(map[string]map[*conn]struct{}),
	}
	return s
}

// Handle adds a route to the LAN listener's mux (/metrics, /readyz, /status…). Call it
// before Open. The server's own routes are /, /pair, /api/pair, /signal and /healthz.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Open validates the configuration, binds the HTTP listener, the ICE UDP mux (and the ICE-TCP
// listener) synchronously and starts serving.
func (s *Server) Open(ctx context.Context) (err error) {
	switch s.Config.Enrollment {
	case "", EnrollmentInvite:
		s.Config.Enrollment = EnrollmentInvite
	case EnrollmentOpen:
		if s.Config.DefaultRole == "" {
			return fmt.Errorf("open lan: enrollment open needs a default role")
		}
	default:
		return fmt.Errorf("open lan: enrollment %q is not invite or open", s.Config.Enrollment)
	}
	if s.Logger == nil {
		s.Logger = slog.Default().With("subsystem", "lan")
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.pairLim = newLimiter(s.PairLimit)
	s.globLim = newLimiter(s.PairGlobalLimit)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	defer func() {
		if err != nil {
			s.cancel()
			if s.ln != nil {
				s.ln.Close()
			}
			if s.ice != nil {
				s.ice.Close()
			}
			// Close after a failed Open has nothing left to stop.
			s.cancel, s.http, s.ice = nil, nil, nil
		}
	}()

	var tlsConfig *tls.Config
	if s.Config.TLSCert != "" || s.Config.TLSKey != "" {
		pair, err := tls.LoadX509KeyPair(s.Config.TLSCert, s.Config.TLSKey)
		if err != nil {
			return fmt.Errorf("open lan: load tls certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if s.ln, err = net.Listen("tcp", s.Config.Listen); err != nil {
		return fmt.Errorf("open lan: listen: %w", err)
	}
	if s.url, err = BaseURL(s.Config, s.ln.Addr().String()); err != nil {
		return fmt.Errorf("open lan: %w", err)
	}

	host := s.Config.WebRTCListen
	if host == "" {
		host, _, _ = net.SplitHostPort(s.Config.Listen)
	}
	if s.ice, err = listenICE(host, s.Config.UDPPort, s.Config.TCPFallback, s.Config.Interfaces, s.Logger); err != nil {
		return fmt.Errorf("open lan: %w", err)
	}
	if s.cert, err = newCertificate(s.Now()); err != nil {
		return fmt.Errorf("open lan: %w", err)
	}
	s.api = s.ice.api(sctpMaxMessageSize)

	s.routes()
	s.http = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         tlsConfig,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	ln := s.ln
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	s.wg.Go(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("lan listener stopped", "err", err)
		}
	})
	s.wg.Go(func() { s.watchRevocations(ctx) })
	s.Logger.Info("lan listening", "url", s.url.String(), "webrtc", s.ice.String(), "enrollment", s.Config.Enrollment)
	return nil
}

// newCertificate makes the one DTLS certificate every PeerConnection presents. pion would make
// one per connection (an ECDSA key generation each); a shared one is as good, since browsers
// check the fingerprint in the answer, not a CA chain. It outlives any plausible uptime.
func newCertificate(now time.Time) (webrtc.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("dtls certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("dtls certificate: %w", err)
	}
	c, err := webrtc.NewCertificate(key, x509.Certificate{
		Subject:      pkix.Name{CommonName: "gateway"},
		SerialNumber: serial,
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
	})
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("dtls certificate: %w", err)
	}
	return *c, nil
}

// BaseURL returns the web app's base URL for cfg: PublicURL when set, else
// http(s)://HOST:PORT/ with the port of listen (the bound address, or cfg.Listen before
// binding) and HOST the configured host name, or the listen IP — an unspecified one replaced
// by LANAddress. Invite links and QR codes carry it.
func BaseURL(cfg Config, listen string) (*url.URL, error) {
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("public_url %q is not an http(s) URL", cfg.PublicURL)
		}
		return u, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q is not host:port", listen)
	}
	if cfgHost, _, err := net.SplitHostPort(cfg.Listen); err == nil && cfgHost != "" && net.ParseIP(cfgHost) == nil {
		host = cfgHost // a name, as configured
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = LANAddress()
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: "/"}, nil
}

// PairLink returns the one-time pairing link for code: base's /pair page with the code in
// the fragment, which browsers never send to a server (nor to a proxy's log).
func PairLink(base *url.URL, code string) string {
	u := *base
	u.Path = path.Join("/", u.Path, "pair")
	u.RawQuery, u.Fragment = "", ""
	return u.String() + "#code=" + code
}

// LANAddress returns an address of this machine a LAN browser can reach: the first private
// IPv4 address of an interface that is up, else any global unicast one, else 127.0.0.1.
func LANAddress() string {
	ifaces, _ := net.Interfaces()
	var fallback string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.To4() == nil || !n.IP.IsGlobalUnicast() {
				continue
			}
			if n.IP.IsPrivate() {
				return n.IP.String()
			}
			if fallback == "" {
				fallback = n.IP.String()
			}
		}
	}
	if fallback != "" {
		return fallback
	}
	return "127.0.0.1"
}

// URL returns the base URL of the web app (with a trailing slash). Valid after Open.
func (s *Server) URL() string { return s.url.String() }

// Addr returns the HTTP listener's address. Valid after Open.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// ICEAddrs returns the addresses the ICE UDP mux listens on. Valid after Open.
func (s *Server) ICEAddrs() []net.Addr { return s.ice.udp.GetListenAddresses() }

// Close stops the listeners, closes every signaling socket and PeerConnection, and waits for
// every goroutine the server started, bounded by ctx. It is safe to call more than once.
func (s *Server) Close(ctx context.Context) error {
	s.closing.Do(func() {
		s.mu.Lock()
		s.closed = true
		var all []*conn
		for _, set := range s.conns {
			for c := range set {
				all = append(all, c)
			}
		}
		s.mu.Unlock()
		if s.cancel == nil { // never opened
			return
		}
		s.cancel()
		var errs []error
		if s.http != nil {
			if err := s.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close lan: http: %w", err))
			}
		}
		for _, c := range all {
			c.close("server shutting down")
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("close lan: %w", ctx.Err()))
		}
		// The muxes go last: a PeerConnection being closed still writes through them.
		if s.ice != nil {
			if err := s.ice.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close lan: ice: %w", err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// enter registers a goroutine that the server does not start itself (an HTTP handler that
// hijacks its connection), so that Close waits for it. False once the server is closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// register adds c under its peer's name; false when the server is closing or full.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.nconns >= s.MaxChannels {
		return false
	}
	set := s.conns[c.peer.Name]
	if set == nil {
		set = make(map[*conn]struct{})
		s.conns[c.peer.Name] = set
	}
	set[c] = struct{}{}
	s.nconns++
	return true
}

// unregister removes c, and reports the peer offline when it was its last connection.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.conns[c.peer.Name]
	if _, ok := set[c]; !ok {
		return
	}
	delete(set, c)
	s.nconns--
	if len(set) == 0 {
		delete(s.conns, c.peer.Name)
		if f := s.OnPeerOffline; f != nil {
			name := c.peer.Name
			s.wg.Go(func() { f(name) })
		}
	}
}

// openConns returns the connections whose data channel is open.
func (s *Server) openConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for _, set := range s.conns {
		for c := range set {
			if c.isOpen() {
				out = append(out, c)
			}
		}
	}
	return out
}

// OnlinePeers returns, sorted, the names of the peers with at least one open data channel.
func (s *Server) OnlinePeers() []string {
	seen := map[string]bool{}
	for _, c := range s.openConns() {
		seen[c.peer.Name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Channels returns the number of open data channels.
func (s *Server) Channels() int { return len(s.openConns()) }

// RevokePeer closes every channel and signaling session of the peer named name at once and
// returns how many it closed. The caller revokes the token in the store first, so that the
// peer cannot come straight back.
func (s *Server) RevokePeer(name string) int {
	s.mu.Lock()
	var cs []*conn
	for c := range s.conns[name] {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.revoke()
	}
	return len(cs)
}

// watchRevocations closes the channels of peers that another process revoked in the
// database, within about RevocationPoll.
func (s *Server) watchRevocations(ctx context.Context) {
	t := time.NewTicker(s.RevocationPoll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		names := make([]string, 0, len(s.conns))
		for n := range s.conns {
			names = append(names, n)
		}
		s.mu.Unlock()
		if len(names) == 0 {
			continue
		}
		gone, err := s.peers.RevokedPeers(ctx, names)
		if err != nil {
			if !failing && ctx.Err() == nil {
				s.Logger.Warn("check revoked peers", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			s.Logger.Info("check revoked peers: recovered")
			failing = false
		}
		for _, n := range gone {
			if k := s.RevokePeer(n); k > 0 {
				s.Logger.Info("peer revoked; channels closed", "peer", n, "channels", k)
			}
		}
	}
}

// remoteHost returns the client's address without its port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
