package linksim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Direction names one way across a Link.
type Direction int

const (
	// Up is client → server: from the dialer to the listener.
	Up Direction = iota
	// Down is server → client.
	Down
)

// String returns "up" or "down".
func (d Direction) String() string {
	if d == Down {
		return "down"
	}
	return "up"
}

// ErrLinkDown is returned by a dial while the link is down (SetDown). It is wrapped in a
// *net.OpError.
var ErrLinkDown = errors.New("link down")

// Stats are a Link's counters. Bytes are counted when transmitted (Sent) and when read by
// the far end (Delivered); the difference is data in flight or lost in a cut.
type Stats struct {
	Sent      [2]int64 // bytes transmitted, indexed by Direction
	Delivered [2]int64 // bytes read by the receiving end, indexed by Direction
	Dials     int      // successful dials
	Cuts      int      // connections reset by Cut, CutAfter or Conn.Cut
}

// Link is a simulated network link. It is a net.Listener (Accept, Close, Addr) for one
// server and a dialer (DialContext) for its clients. Create it with New; all methods are
// safe for concurrent use.
type Link struct {
	mu      sync.Mutex
	cfg     Config
	down    bool
	wake    chan struct{} // closed and replaced when down or cfg changes
	buckets [2]bucket
	cut     [2]cutRule
	pairs   map[*pair]struct{}
	stats   Stats
	nextID  int
	closed  bool

	accept chan *Conn
	done   chan struct{} // closed by Close
}

type bucket struct {
	tat time.Time // theoretical arrival time of the line (GCRA)
	rem int64     // remainder of the last division, in units of 1/rate ns, so sums are exact
}

type cutRule struct {
	armed     bool
	remaining int64
}

type pair struct{ client, server *Conn }

// New returns a link with the given shape.
func New(cfg Config) *Link {
	return &Link{
		cfg:    cfg,
		wake:   make(chan struct{}),
		pairs:  map[*pair]struct{}{},
		accept: make(chan *Conn, 128),
		done:   make(chan struct{}),
	}
}

// Config returns the link's current shape.
func (l *Link) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// SetConfig changes the link's shape; connections in use take it from their next write.
func (l *Link) SetConfig(cfg Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.signalLocked()
}

// SetDown takes the link down (true) or brings it back up (false). While down, dials fail
// with ErrLinkDown, writes block and nothing is delivered; data already in flight arrives
// once the link is back up. Connections survive an outage unless cut.
func (l *Link) SetDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down != down {
		l.down = down
		l.signalLocked()
	}
}

// IsDown reports whether the link is down.
func (l *Link) IsDown() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down
}

// Outage takes the link down now and brings it back up after d.
func (l *Link) Outage(d time.Duration) {
	l.SetDown(true)
	time.AfterFunc(d, func() { l.SetDown(false) })
}

// Cut resets every open connection now: pending data is lost and both ends' reads and
// writes fail with ECONNRESET. It returns the number of connections cut.
func (l *Link) Cut() int {
	l.mu.Lock()
	ps := make([]*pair, 0, len(l.pairs))
	for p := range l.pairs {
		ps = append(ps, p)
	}
	l.mu.Unlock()
	for _, p := range ps {
		p.client.Cut()
	}
	return len(ps)
}

// CutAfter arms a one-shot cut: once n more bytes have been transmitted in direction dir
// (counted over the whole link from now on), the connection carrying the next byte is
// reset. Its reader receives exactly those n bytes and then ECONNRESET; its writer gets
// ECONNRESET at once. CutAfter(Down, 0) cuts the next connection that sends anything
// server → client, so "the request arrived and was processed but the response is lost".
func (l *Link) CutAfter(dir Direction, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut[dir] = cutRule{armed: true, remaining: n}
}

// Stats returns a snapshot of the link's counters.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Conns returns the client ends of the open connections.
func (l *Link) Conns() []*Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := make([]*Conn, 0, len(l.pairs))
	for p := range l.pairs {
		cs = append(cs, p.client)
	}
	return cs
}

// Transport returns an HTTP transport that dials through the link, with the settings
// docs/DESIGN.md §7 asks of a client on a satellite link (no Expect: 100-continue delay).
func (l *Link) Transport() *http.Transport {
	return &http.Transport{
		DialContext:           l.DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
	}
}

// Pipe returns a connected pair of connections across the link without a dial or accept:
// client writes travel Up, server writes travel Down.
func (l *Link) Pipe() (client, server *Conn) {
	return l.newPair()
}

// DialContext opens a connection across the link, as a TCP connect would: it costs one
// round trip, and the server end is handed to Accept after one delay. It fails with
// ErrLinkDown while the link is down and with ECONNREFUSED after Close. network and addr
// are ignored.
func (l *Link) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "linksim", Addr: linkAddr("server"), Err: err}
	}
	check := func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case l.closed:
			return opErr(syscall.ECONNREFUSED)
		case l.down:
			return opErr(ErrLinkDown)
		}
		return nil
	}
	if err := check(); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, l.Config().Delay); err != nil { // SYN
		return nil, opErr(err)
	}
	if err := check(); err != nil {
		return nil, err
	}
	client, server := l.newPair()
	select {
	case l.accept <- server:
	case <-l.done:
		client.Cut()
		return nil, opErr(syscall.ECONNREFUSED)
	case <-ctx.Done():
		client.Cut()
		return nil, opErr(ctx.Err())
	}
	if err := sleepCtx(ctx, l.Config().Delay); err != nil { // SYN-ACK
		client.Cut()
		return nil, opErr(err)
	}
	l.mu.Lock()
	l.stats.Dials++
	l.mu.Unlock()
	return client, nil
}

// Dial is DialContext with a background context.
func (l *Link) Dial(network, addr string) (net.Conn, error) {
	return l.DialContext(context.Background(), network, addr)
}

// Accept waits for and returns the server end of the next dialled connection.
func (l *Link) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "linksim", Addr: linkAddr("server"), Err: net.ErrClosed}
	}
}

// Close stops accepting: Accept returns net.ErrClosed and new dials are refused. Open
// connections are left alone (close or cut them).
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	// Connections dialled but never accepted are refused.
	for {
		select {
		case c := <-l.accept:
			c.Cut()
		default:
			return nil
		}
	}
}

// Addr returns the listener's address.
func (l *Link) Addr() net.Addr { return linkAddr("server") }

func (l *Link) newPair() (client, server *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextID++
	up := newPipe(l, Up)
	down := newPipe(l, Down)
	p := &pair{}
	client = &Conn{link: l, pair: p, in: down, out: up, local: linkAddr(fmt.Sprintf("client-%d", l.nextID)), remote: linkAddr("server")}
	server = &Conn{link: l, pair: p, in: up, out: down, local: linkAddr("server"), remote: client.local}
	p.client, p.server = client, server
	l.pairs[p] = struct{}{}
	return client, server
}

// state returns whether the link is down and the channel closed at its next change.
func (l *Link) state() (bool, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down, l.wake
}

func (l *Link) signalLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// reserve books n bytes of the line in direction dir and returns when their transmission
// completes and the current one-way delay.
func (l *Link) reserve(dir Direction, n int, now time.Time) (finish time.Time, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := l.cfg.Up
	if dir == Down {
		rate = l.cfg.Down
	}
	delay = l.cfg.Delay
	if rate <= 0 {
		return now, delay
	}
	b := &l.buckets[dir]
	if b.tat.Before(now) {
		b.tat, b.rem = now, 0
	}
	num := int64(n)*8*int64(time.Second) + b.rem
	b.tat = b.tat.Add(time.Duration(num / rate))
	b.rem = num % rate
	finish = b.tat
	if l.cfg.Burst > 0 {
		finish = finish.Add(-time.Duration(int64(l.cfg.Burst) * 8 * int64(time.Second) / rate))
		if finish.Before(now) {
			finish = now
		}
	}
	return finish, delay
}

// take applies an armed CutAfter rule to n bytes about to be sent in dir: it returns how many
// of them may go and whether the connection is to be cut after them.
func (l *Link) take(dir Direction, n int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &l.cut[dir]
	if !r.armed {
		return n, false
	}
	if int64(n) <= r.remaining {
		r.remaining -= int64(n)
		return n, false
	}
	m := int(r.remaining)
	r.armed = false
	return m, true
}

func (l *Link) segment() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Segment > 0 {
		return l.cfg.Segment
	}
	return DefaultSegment
}

func (l *Link) count(dir Direction, sent, delivered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Sent[dir] += int64(sent)
	l.stats.Delivered[dir] += int64(delivered)
}

func (l *Link) forget(p *pair, cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pairs[p]; ok && cut {
		l.stats.Cuts++
	}
	delete(l.pairs, p)
}

type linkAddr string

func (a linkAddr) Network() string { return "linksim" }
func (a linkAddr) String() string  { return string(a) }

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
