package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Transport defaults, sized for a GEO satellite link: 600–1100 ms round trips, ~400 kbit/s,
// drop-outs (docs/DESIGN.md appendix C).
const (
	// DefaultTLSHandshakeTimeout is well above Go's 10 s: a full handshake takes several round
	// trips, each over a second when packets are retransmitted.
	DefaultTLSHandshakeTimeout = 60 * time.Second
	// DefaultDialTimeout covers a TCP handshake with a retransmitted SYN.
	DefaultDialTimeout = 30 * time.Second
	// DefaultIdleConnTimeout keeps the connection (and its TCP window and TLS session) warm
	// between the uplink's rounds; a new handshake costs kilobytes.
	DefaultIdleConnTimeout = 10 * time.Minute
	// DefaultMaxConnsPerHost is "a few" HTTP/1.1 keep-alive connections (the uplink uses one;
	// the downlink and a get-on-miss may use others).
	DefaultMaxConnsPerHost = 3
	// DefaultRequestTimeout is the fixed part of a request's deadline: connect, TLS, a few
	// round trips, and ERP5's own work (applying a batch of hundreds of entries).
	DefaultRequestTimeout = 90 * time.Second
	// DefaultLinkRate is the byte rate the per-request deadline assumes: a quarter of the
	// link's ~48 KB/s, leaving room for a link shared with the downlink and retransmissions.
	DefaultLinkRate = 12 * 1024
)

// TransportConfig configures NewTransport. The zero value is usable.
type TransportConfig struct {
	// DialContext dials the TCP connection; nil uses a net.Dialer. Tests plug a simulated
	// link in here.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is cloned; a ClientSessionCache is added when it has none, so that a
	// reconnection resumes the TLS session (~1–3 KB instead of ~5 KB and two round trips).
	TLSConfig *tls.Config
	// Meter counts the bytes that cross the link (TLS and HTTP framing included); nil
	// counts nothing.
	Meter *Meter
}

// NewTransport returns an http.Transport for the satellite link: HTTP/2 when the server
// offers it through ALPN, else up to DefaultMaxConnsPerHost keep-alive HTTP/1.1 connections;
// TLS session resumption; a long TLS handshake timeout; no Expect: 100-continue (its 1 s wait
// is shorter than one round trip); no transparent decompression (the client asks for and
// decodes gzip and zstd itself) and no HTTP/2 health pings (they cost bytes and wake the
// terminal).
func NewTransport(c TransportConfig) *http.Transport {
	dial := c.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 2 * time.Minute}
		dial = d.DialContext
	}
	{
		// Every connection is metered (when there is a meter) and reports its progress to
		// the request using it (stall detection).
		inner := dial
		m := c.Meter
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := inner(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if m != nil {
				m.conns.Add(1)
			}
			return &meteredConn{Conn: conn, m: m}, nil
		}
	}
	tlsConf := &tls.Config{}
	if c.TLSConfig != nil {
		tlsConf = c.TLSConfig.Clone()
	}
	if tlsConf.ClientSessionCache == nil {
		tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(16)
	}
	if tlsConf.MinVersion == 0 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	t := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dial,
		TLSClientConfig:        tlsConf,
		ForceAttemptHTTP2:      true, // a custom DialContext and TLS config otherwise disable it
		TLSHandshakeTimeout:    DefaultTLSHandshakeTimeout,
		IdleConnTimeout:        DefaultIdleConnTimeout,
		MaxIdleConns:           DefaultMaxConnsPerHost,
		MaxIdleConnsPerHost:    DefaultMaxConnsPerHost,
		MaxConnsPerHost:        DefaultMaxConnsPerHost,
		ExpectContinueTimeout:  0,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	return t
}

// requestTimeout is the deadline of one request that moves about n bytes in total: a fixed
// part plus the time n bytes take at DefaultLinkRate.
func requestTimeout(n int) time.Duration {
	return DefaultRequestTimeout + time.Duration(n)*time.Second/DefaultLinkRate
}

// Meter counts bytes on the link, in total and for the current UTC day. It is safe for
// concurrent use.
type Meter struct {
	// Now returns the current time (for the day boundary); nil is time.Now.
	Now func() time.Time
	// OnAdd, if set, is called with every count (metrics).
	OnAdd func(up, down int64)

	up, down, conns atomic.Int64

	mu             sync.Mutex
	day            string
	dayUp, dayDown int64
}

// MeterReading is a snapshot of a Meter.
type MeterReading struct {
	Day         string `json:"day"` // UTC date, 2006-01-02
	UpToday     int64  `json:"up_today"`
	DownToday   int64  `json:"down_today"`
	UpTotal     int64  `json:"up_total"`
	DownTotal   int64  `json:"down_total"`
	Connections int64  `json:"connections"`
}

// Add counts up bytes sent and down bytes received.
func (m *Meter) Add(up, down int64) {
	if m == nil || up == 0 && down == 0 {
		return
	}
	m.up.Add(up)
	m.down.Add(down)
	day := m.today()
	m.mu.Lock()
	if day != m.day {
		m.day, m.dayUp, m.dayDown = day, 0, 0
	}
	m.dayUp += up
	m.dayDown += down
	onAdd := m.OnAdd
	m.mu.Unlock()
	if onAdd != nil {
		onAdd(up, down)
	}
}

// Restore carries today's counts over a restart: when r is of the current UTC day, its
// counts are added to today's, so the daily budget and `sync status` see the whole day.
func (m *Meter) Restore(r MeterReading) {
	if m == nil || r.Day != m.today() {
		return
	}
	m.mu.Lock()
	if m.day != r.Day {
		m.day, m.dayUp, m.dayDown = r.Day, 0, 0
	}
	m.dayUp += r.UpToday
	m.dayDown += r.DownToday
	m.mu.Unlock()
}

// Reading returns the current counts.
func (m *Meter) Reading() MeterReading {
	if m == nil {
		return MeterReading{}
	}
	day := m.today()
	m.mu.Lock()
	r := MeterReading{Day: day}
	if m.day == day {
		r.UpToday, r.DownToday = m.dayUp, m.dayDown
	}
	m.mu.Unlock()
	r.UpTotal, r.DownTotal, r.Connections = m.up.Load(), m.down.Load(), m.conns.Load()
	return r
}

func (m *Meter) today() string {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	return now().UTC().Format(time.DateOnly)
}

// meteredConn counts the bytes read and written on a connection, and reports each chunk
// that moves to the watchdog of the request using the connection.
type meteredConn struct {
	net.Conn
	m     *Meter
	watch atomic.Pointer[watchdog]
}

// progressChunk is the most bytes one Write hands to the connection at once, so that a slow
// but moving upload reports progress every few seconds even at a few kbit/s.
const progressChunk = 4 << 10

// Read reads from the connection and counts the bytes received.
func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.Add(0, int64(n))
	if n > 0 {
		if w := c.watch.Load(); w != nil {
			w.progress()
		}
	}
	return n, err
}

// Write writes to the connection in chunks and counts the bytes sent.
func (c *meteredConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), progressChunk)]
		n, err := c.Conn.Write(chunk)
		written += n
		c.m.Add(int64(n), 0)
		if n > 0 {
			if w := c.watch.Load(); w != nil {
				w.progress()
			}
		}
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// progressConn returns the meteredConn under conn (a TLS connection's too), or nil.
func progressConn(conn net.Conn) *meteredConn {
	for conn != nil {
		switch c := conn.(type) {
		case *meteredConn:
			return c
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}
