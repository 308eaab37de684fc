package linksim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// WrapListener returns a listener whose accepted connections pass through link: bytes from
// the real client reach the server Up and the server's replies travel Down, shaped,
// delayed and subject to the link's outages and cuts. The client's first bytes are held one
// round trip, the cost of the TCP handshake a loopback connect skipped. Use it to serve a
// real socket as if across a satellite (cmd/erp5sim --link).
func WrapListener(ln net.Listener, link *Link) net.Listener {
	return &shapedListener{Listener: ln, link: link}
}

type shapedListener struct {
	net.Listener
	link *Link
}

// Accept accepts a real connection and returns the server end of its simulated twin.
func (s *shapedListener) Accept() (net.Conn, error) {
	rc, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	client, server := s.link.newPair()
	go relay(rc, client, s.link.Config().RTT())
	return server, nil
}

// relay joins a real connection to the client end of a simulated one until both directions
// have ended. A cut on the link resets the real connection (RST); a reset from the real
// peer cuts the link connection.
func relay(rc net.Conn, c *Conn, hold time.Duration) {
	var wg sync.WaitGroup
	var once sync.Once
	abort := func() {
		once.Do(func() {
			if tc, ok := rc.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			rc.Close()
			c.Cut()
		})
	}
	wg.Go(func() { // real client → link (Up)
		time.Sleep(hold)
		rerr, werr := pump(c, rc)
		switch {
		case rerr != nil:
			abort()
		case werr == nil:
			c.CloseWrite()
		}
	})
	wg.Go(func() { // link (Down) → real client
		rerr, werr := pump(rc, c)
		switch {
		case rerr != nil || werr != nil:
			abort()
		default:
			if tc, ok := rc.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
	})
	wg.Wait()
	rc.Close()
	c.Close()
}

// pump copies src to dst until src ends, returning the read error (nil at EOF) and the write
// error that stopped it, if any.
func pump(dst io.Writer, src io.Reader) (rerr, werr error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr = dst.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// Proxy is a real TCP proxy on 127.0.0.1 that carries each connection across a Link to a
// target address: point a client at Addr and it talks to the target as if over the link.
type Proxy struct {
	link   *Link
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewProxy listens on a free port of 127.0.0.1 and relays to target through link.
func NewProxy(link *Link, target string) (*Proxy, error) {
	return ListenProxy(link, "127.0.0.1:0", target)
}

// ListenProxy listens on addr and relays to target through link.
func ListenProxy(link *Link, addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &Proxy{link: link, target: target, ln: WrapListener(ln, link), conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

// Addr returns the proxy's listening address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Link returns the link the proxy carries connections across.
func (p *Proxy) Link() *Link { return p.link }

// Close stops listening, closes every relayed connection and waits for the relays to end.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	for {
		sc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(sc) })
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// handle relays one link connection (its server end sc) to a fresh connection to the
// target.
func (p *Proxy) handle(sc net.Conn) {
	tc, err := net.Dial("tcp", p.target)
	if err != nil {
		sc.(*Conn).Cut()
		return
	}
	p.track(sc, tc)
	defer p.untrack(sc, tc)
	var wg sync.WaitGroup
	wg.Go(func() {
		if rerr, werr := pump(tc, sc); rerr != nil || werr != nil {
			sc.(*Conn).Cut()
			tc.Close()
			return
		}
		tc.(*net.TCPConn).CloseWrite()
	})
	wg.Go(func() {
		if rerr, werr := pump(sc, tc); rerr != nil || werr != nil {
			sc.(*Conn).Cut()
			tc.Close()
			return
		}
		sc.(*Conn).CloseWrite()
	})
	wg.Wait()
	sc.Close()
	tc.Close()
}
