package linksim

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

type segKind int

const (
	segData  segKind = iota
	segEOF           // the writer closed: the reader gets io.EOF
	segReset         // a CutAfter cut: the reader resets the connection here
)

type segment struct {
	kind segKind
	data []byte
	at   time.Time // when it reaches the reader
}

// pipe is one direction of a connection: written by one Conn, read by the other.
type pipe struct {
	link *Link
	dir  Direction

	wmu sync.Mutex // serialises writers so segments stay in write order

	mu        sync.Mutex
	wake      chan struct{} // closed and replaced on every change
	queue     []segment
	last      time.Time // arrival time of the last queued segment (FIFO)
	rclosed   bool      // the reading Conn was closed
	rclosedAt time.Time
	wclosed   bool  // the writing Conn closed or shut down its write side
	err       error // set by a cut: both ends fail with it
	werr      error // set by a CutAfter cut: the writer fails while the reader drains
	silent    bool  // black-holed: writes vanish, nothing is ever delivered
	rdeadline time.Time
	wdeadline time.Time
	sent      int64
	delivered int64
}

func newPipe(l *Link, dir Direction) *pipe {
	return &pipe{link: l, dir: dir, wake: make(chan struct{})}
}

func (p *pipe) signalLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// Conn is one end of a simulated connection. It implements net.Conn; Cut, CutSilently,
// CloseWrite and Stats add the simulation's controls.
type Conn struct {
	link          *Link
	pair          *pair
	in, out       *pipe
	local, remote net.Addr
	closeOnce     sync.Once
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "linksim", Source: c.local, Addr: c.remote, Err: err}
}

// Read reads data that has arrived. It blocks until data or EOF arrives, the read deadline
// passes, or the connection is closed or cut.
func (c *Conn) Read(b []byte) (int, error) {
	p := c.in
	for {
		down, lwake := c.link.state()
		p.mu.Lock()
		now := time.Now()
		switch {
		case p.rclosed:
			p.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		case p.err != nil:
			err := p.err
			p.mu.Unlock()
			return 0, c.opError("read", err)
		case !p.rdeadline.IsZero() && !now.Before(p.rdeadline):
			p.mu.Unlock()
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		var next time.Time
		if !down && !p.silent && len(p.queue) > 0 {
			h := p.queue[0]
			if !h.at.After(now) {
				switch h.kind {
				case segEOF:
					p.mu.Unlock()
					if len(b) == 0 {
						return 0, nil
					}
					return 0, io.EOF
				case segReset:
					p.mu.Unlock()
					c.reset(syscall.ECONNRESET)
					continue
				}
				n := 0
				for n < len(b) && len(p.queue) > 0 && p.queue[0].kind == segData && !p.queue[0].at.After(now) {
					s := &p.queue[0]
					m := copy(b[n:], s.data)
					n += m
					s.data = s.data[m:]
					if len(s.data) == 0 {
						p.queue = p.queue[1:]
					}
				}
				p.delivered += int64(n)
				p.mu.Unlock()
				c.link.count(p.dir, 0, n)
				return n, nil
			}
			next = h.at
		}
		if dl := p.rdeadline; !dl.IsZero() && (next.IsZero() || dl.Before(next)) {
			next = dl
		}
		wake := p.wake
		p.mu.Unlock()
		wait(next, wake, lwake)
	}
}

// Write transmits b: it blocks while the link is down and until every byte has left at the
// link's bandwidth, so it returns when the data is on its way (it arrives one delay later).
func (c *Conn) Write(b []byte) (int, error) {
	p := c.out
	p.wmu.Lock()
	defer p.wmu.Unlock()
	n := 0
	for len(b) > 0 {
		seg := min(len(b), c.link.segment())
		finish, delay, err := c.reserve(seg)
		if err != nil {
			return n, err
		}
		if err := c.sleepUntil(finish); err != nil {
			return n, err
		}
		m, err := c.push(b[:seg], finish.Add(delay))
		n += m
		if err != nil {
			return n, err
		}
		b = b[seg:]
	}
	return n, nil
}

// writeErrLocked is the error a write on p fails with now, if any.
func (c *Conn) writeErrLocked(p *pipe, now time.Time) error {
	switch {
	case p.wclosed:
		return c.opError("write", net.ErrClosed)
	case p.err != nil:
		return c.opError("write", p.err)
	case p.werr != nil:
		return c.opError("write", p.werr)
	case !p.wdeadline.IsZero() && !now.Before(p.wdeadline):
		return c.opError("write", os.ErrDeadlineExceeded)
	case p.rclosed && !now.Before(p.rclosedAt.Add(c.link.Config().Delay)):
		// The far end closed and its reset has had time to come back: a broken pipe.
		return c.opError("write", syscall.ECONNRESET)
	}
	return nil
}

// reserve waits until the link is up, then books seg bytes of its bandwidth.
func (c *Conn) reserve(seg int) (time.Time, time.Duration, error) {
	p := c.out
	for {
		down, lwake := c.link.state()
		p.mu.Lock()
		now := time.Now()
		if err := c.writeErrLocked(p, now); err != nil {
			p.mu.Unlock()
			return time.Time{}, 0, err
		}
		dl, wake := p.wdeadline, p.wake
		p.mu.Unlock()
		if !down {
			finish, delay := c.link.reserve(p.dir, seg, now)
			return finish, delay, nil
		}
		wait(dl, wake, lwake)
	}
}

// sleepUntil waits for the transmission to finish, failing early on close, cut or deadline.
func (c *Conn) sleepUntil(t time.Time) error {
	p := c.out
	for {
		p.mu.Lock()
		now := time.Now()
		if err := c.writeErrLocked(p, now); err != nil {
			p.mu.Unlock()
			return err
		}
		if !now.Before(t) {
			p.mu.Unlock()
			return nil
		}
		next := t
		if dl := p.wdeadline; !dl.IsZero() && dl.Before(next) {
			next = dl
		}
		wake := p.wake
		p.mu.Unlock()
		wait(next, wake, nil)
	}
}

// push queues transmitted bytes for the reader, applying an armed CutAfter rule.
func (c *Conn) push(data []byte, at time.Time) (int, error) {
	p := c.out
	n, cut := c.link.take(p.dir, len(data))
	p.mu.Lock()
	if err := c.writeErrLocked(p, time.Now()); err != nil {
		p.mu.Unlock()
		return 0, err
	}
	if at.Before(p.last) {
		at = p.last
	}
	p.last = at
	if !p.silent && !p.rclosed && n > 0 {
		p.queue = append(p.queue, segment{kind: segData, data: append([]byte(nil), data[:n]...), at: at})
	}
	if cut {
		// The reader gets its n bytes, then the reset; the writer learns at once.
		p.queue = append(p.queue, segment{kind: segReset, at: at})
		p.werr = syscall.ECONNRESET
	}
	p.sent += int64(n)
	p.signalLocked()
	p.mu.Unlock()
	c.link.count(p.dir, n, 0)
	if !cut {
		return n, nil
	}
	c.in.mu.Lock()
	if c.in.err == nil {
		c.in.err = syscall.ECONNRESET
	}
	c.in.queue = nil
	c.in.signalLocked()
	c.in.mu.Unlock()
	c.link.forget(c.pair, true)
	return n, c.opError("write", syscall.ECONNRESET)
}

// Close closes this end: its pending reads and writes fail with net.ErrClosed, and the far
// end reads EOF one delay after the data already sent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		now := time.Now()
		in := c.in
		in.mu.Lock()
		in.rclosed = true
		in.rclosedAt = now
		in.queue = nil
		in.signalLocked()
		in.mu.Unlock()
		c.closeWrite()
		c.forgetIfDone()
	})
	return nil
}

// CloseWrite shuts down the writing side: the far end reads EOF after the data already
// sent, and this end may keep reading.
func (c *Conn) CloseWrite() error {
	c.closeWrite()
	return nil
}

func (c *Conn) closeWrite() {
	p := c.out
	delay := c.link.Config().Delay
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wclosed {
		return
	}
	p.wclosed = true
	if p.err == nil && !p.silent {
		at := time.Now().Add(delay)
		if at.Before(p.last) {
			at = p.last
		}
		p.last = at
		p.queue = append(p.queue, segment{kind: segEOF, at: at})
	}
	p.signalLocked()
}

func (c *Conn) forgetIfDone() {
	c.in.mu.Lock()
	a := c.in.rclosed
	c.in.mu.Unlock()
	c.out.mu.Lock()
	b := c.out.rclosed
	c.out.mu.Unlock()
	if a && b {
		c.link.forget(c.pair, false)
	}
}

// Cut resets the connection now: data in flight is lost and both ends' reads and writes fail
// with ECONNRESET, as after a TCP RST.
func (c *Conn) Cut() { c.reset(syscall.ECONNRESET) }

// CutSilently black-holes the connection, as when a satellite fade outlasts TCP: nothing in
// flight or written later is ever delivered, writes still succeed, and neither end is told;
// only deadlines, timeouts or Close end it.
func (c *Conn) CutSilently() {
	for _, p := range []*pipe{c.in, c.out} {
		p.mu.Lock()
		p.silent = true
		p.queue = nil
		p.signalLocked()
		p.mu.Unlock()
	}
}

func (c *Conn) reset(err error) {
	for _, p := range []*pipe{c.in, c.out} {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.queue = nil
		p.signalLocked()
		p.mu.Unlock()
	}
	c.link.forget(c.pair, true)
}

// ConnStats are one connection's byte counts, by direction.
type ConnStats struct {
	Sent      [2]int64
	Delivered [2]int64
}

// Stats returns the connection's byte counts.
func (c *Conn) Stats() ConnStats {
	var s ConnStats
	for _, p := range []*pipe{c.in, c.out} {
		p.mu.Lock()
		s.Sent[p.dir] = p.sent
		s.Delivered[p.dir] = p.delivered
		p.mu.Unlock()
	}
	return s
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the far end's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a blocked Read wakes up to honour it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.in.mu.Lock()
	c.in.rdeadline = t
	c.in.signalLocked()
	c.in.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the write deadline; a blocked Write wakes up to honour it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.out.mu.Lock()
	c.out.wdeadline = t
	c.out.signalLocked()
	c.out.mu.Unlock()
	return nil
}

// wait blocks until a or b is closed or, when next is set, until next.
func wait(next time.Time, a, b chan struct{}) {
	if next.IsZero() {
		select {
		case <-a:
		case <-b:
		}
		return
	}
	d := time.Until(next)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a:
	case <-b:
	case <-t.C:
	}
}
