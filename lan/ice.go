package lan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// iceTransport is the one UDP port (and optionally the one TCP port of the same number) that
// every PeerConnection's ICE goes through, so that a site firewall needs one rule.
type iceTransport struct {
	udp      ice.UDPMux
	udpConns []*net.UDPConn
	tcpLn    *net.TCPListener
	tcp      ice.TCPMux
	loopback bool // loopback candidates are offered
	ifaces   []string
	logger   *slog.Logger
	v6       bool
}

// listenICE binds the UDP mux on host's addresses at port (0: one ephemeral port shared by
// every address) and, with tcp, an ICE-TCP listener on the same port number.
func listenICE(host string, port int, tcp bool, ifaces []string, logger *slog.Logger) (*iceTransport, error) {
	// An ephemeral UDP port may be taken over TCP; try a few.
	for attempt := 0; ; attempt++ {
		t, err := listenICEOnce(host, port, tcp, ifaces, logger)
		if err == nil || port != 0 || attempt == 4 || !errors.Is(err, errTCPPortTaken) {
			return t, err
		}
	}
}

var errTCPPortTaken = errors.New("tcp port taken")

func listenICEOnce(host string, port int, tcp bool, ifaces []string, logger *slog.Logger) (_ *iceTransport, err error) {
	ips, unspecified, err := iceAddresses(host, ifaces)
	if err != nil {
		return nil, err
	}
	t := &iceTransport{ifaces: ifaces, logger: logger}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	for _, ip := range ips {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			return nil, fmt.Errorf("ice udp listen %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)
		}
		t.udpConns = append(t.udpConns, conn)
		port = conn.LocalAddr().(*net.UDPAddr).Port // an ephemeral port is shared by every address
		if ip.IsLoopback() {
			t.loopback = true
		}
		if ip.To4() == nil {
			t.v6 = true
		}
	}
	plog := pionLogger{logger}.NewLogger("ice")
	muxes := make([]ice.UDPMux, len(t.udpConns))
	for i, c := range t.udpConns {
		muxes[i] = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c, Logger: plog})
	}
	t.udp = ice.NewMultiUDPMuxDefault(muxes...)
	if tcp {
		addr := &net.TCPAddr{Port: port}
		if !unspecified && len(ips) == 1 {
			addr.IP = ips[0]
		}
		if t.tcpLn, err = net.ListenTCP("tcp", addr); err != nil {
			return nil, fmt.Errorf("ice tcp listen %s: %w (%w)", addr, err, errTCPPortTaken)
		}
		t.tcp = webrtc.NewICETCPMux(plog, t.tcpLn, 8)
	}
	return t, nil
}

// iceAddresses resolves the host the UDP mux binds: a literal IP, a name, or (unspecified)
// every address of the interfaces that are up, loopback excepted — unless there is none, when
// loopback is used so that a gateway without a LAN still serves its own machine.
func iceAddresses(host string, ifaces []string) (ips []net.IP, unspecified bool, err error) {
	if host != "" {
		if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil && !ip.IsUnspecified() {
			return []net.IP{ip}, false, nil
		} else if ip == nil {
			addrs, err := net.DefaultResolver.LookupIP(context.Background(), "ip", host)
			if err != nil {
				return nil, false, fmt.Errorf("ice: resolve %q: %w", host, err)
			}
			return addrs, false, nil
		}
	}
	list, err := net.Interfaces()
	if err != nil {
		return nil, true, fmt.Errorf("ice: list interfaces: %w", err)
	}
	var loop []net.IP
	for _, ifc := range list {
		if ifc.Flags&net.FlagUp == 0 || (len(ifaces) > 0 && !slices.Contains(ifaces, ifc.Name)) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.IsLinkLocalUnicast() || n.IP.IsMulticast() {
				// Link-local addresses need a zone and browsers do not pair with them.
				continue
			}
			if ifc.Flags&net.FlagLoopback != 0 || n.IP.IsLoopback() {
				loop = append(loop, n.IP)
				continue
			}
			ips = append(ips, n.IP)
		}
	}
	if len(ips) == 0 {
		ips = loop
	}
	if len(ips) == 0 {
		return nil, true, fmt.Errorf("ice: no usable interface address (interfaces %v)", ifaces)
	}
	return ips, true, nil
}

// api returns the pion API every PeerConnection is made with: data channels only (no codecs,
// no RTP interceptors: fewer goroutines and a faster close), host candidates on the mux only,
// no mDNS.
func (t *iceTransport) api(maxMessage uint32) *webrtc.API {
	se := webrtc.SettingEngine{LoggerFactory: pionLogger{t.logger}}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if t.v6 {
		networks = append(networks, webrtc.NetworkTypeUDP6)
	}
	se.SetICEUDPMux(t.udp)
	if t.tcp != nil {
		networks = append(networks, webrtc.NetworkTypeTCP4)
		if t.v6 {
			networks = append(networks, webrtc.NetworkTypeTCP6)
		}
		se.SetICETCPMux(t.tcp)
		// Browsers connect to our passive candidates; we never dial out.
		se.DisableActiveTCP(true)
	}
	se.SetNetworkTypes(networks)
	// The UDP mux ignores these filters (its addresses are already chosen), but ICE-TCP
	// gathers from the interfaces and needs them.
	if len(t.ifaces) > 0 {
		se.SetInterfaceFilter(func(name string) bool { return slices.Contains(t.ifaces, name) })
	}
	se.SetIncludeLoopbackCandidate(t.loopback)
	// Browsers hide their addresses behind mDNS names; the gateway does not resolve them.
	// The browser is the controlling agent and sends checks to our host candidate, from which
	// ICE learns its address as peer-reflexive. No multicast socket per connection.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A peer that vanishes (a closed laptop) goes offline within ~15 s.
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	se.SetSCTPMaxMessageSize(maxMessage)
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
}

// Close closes the mux and listeners.
func (t *iceTransport) Close() error {
	var errs []error
	if t.tcp != nil {
		errs = append(errs, t.tcp.Close())
	} else if t.tcpLn != nil {
		errs = append(errs, t.tcpLn.Close())
	}
	if t.udp != nil {
		errs = append(errs, t.udp.Close())
	} else {
		for _, c := range t.udpConns {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// String describes the listeners for the log.
func (t *iceTransport) String() string {
	var parts []string
	for _, c := range t.udpConns {
		parts = append(parts, "udp/"+c.LocalAddr().String())
	}
	if t.tcpLn != nil {
		parts = append(parts, "tcp/"+t.tcpLn.Addr().String())
	}
	return strings.Join(parts, " ")
}

// pionLogger routes pion's logs to slog. pion reports routine events (a peer going away, a
// late packet) at error level, so errors become warnings and the rest debug.
type pionLogger struct{ l *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	l := p.l
	if l == nil {
		l = slog.Default()
	}
	return pionScoped{l.With("pion", scope)}
}

// pionScoped is one pion scope's logging.LeveledLogger on slog.
type pionScoped struct{ l *slog.Logger }

func (p pionScoped) Trace(msg string)                  {}
func (p pionScoped) Tracef(format string, args ...any) {}
func (p pionScoped) Debug(msg string)                  { p.l.Debug(msg) }
func (p pionScoped) Debugf(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (p pionScoped) Info(msg string)                  { p.l.Debug(msg) }
func (p pionScoped) Infof(format string, args ...any) { p.Debugf(format, args...) }
func (p pionScoped) Warn(msg string)                  { p.l.Debug(msg) }
func (p pionScoped) Warnf(format string, args ...any) { p.Debugf(format, args...) }
func (p pionScoped) Error(msg string)                 { p.l.Warn(msg) }
func (p pionScoped) Errorf(format string, args ...any) {
	p.l.Warn(fmt.Sprintf(format, args...))
}
