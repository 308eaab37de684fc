package lan

import (
	"errors"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway/lan/wire"
)

// Send-side flow control. pion's Send never blocks; without a bound, a peer that stops
// reading would make the gateway buffer without limit. Above highWater bytes in the SCTP
// buffer the sender waits for pion's buffered-amount-low event at lowWater.
const (
	highWater = 1 << 20
	lowWater  = 256 << 10
	// maxQueued bounds the bytes waiting in a channel's send queue (above pion's buffer).
	// Workers with a reply wait for room; notifications are dropped instead of waiting.
	maxQueued = 8 << 20
)

// onMessage handles one data-channel message on pion's read loop for the channel. It only
// reassembles and parses; every request runs on the channel's workers.
func (c *conn) onMessage(m webrtc.DataChannelMessage) {
	data := m.Data
	if !m.IsString {
		msg, err := c.reasm.Add(data)
		if err != nil {
			c.s.Logger.Debug("bad fragment", "peer", c.peer.Name, "err", err)
			// Answer the request by its id when its first fragment shows it, so that the
			// caller fails at once rather than at its timeout.
			var id []byte
			var fe *wire.FragmentError
			if errors.As(err, &fe) && fe.First != nil {
				id = wire.PeekID(fe.First)
			}
			if errors.Is(err, wire.ErrMessageTooLarge) {
				c.sendError(id, tooLargeError(c.s.MaxMessageSize))
			} else {
				c.sendError(id, &wire.Error{Code: wire.CodeParseError, Message: "parse error: " + err.Error()})
			}
			return
		}
		if msg == nil {
			return
		}
		data = msg
	}
	c.handleText(data)
}

// sendError queues an error response from the read loop, without waiting.
func (c *conn) sendError(id []byte, e *wire.Error) {
	_ = c.out.enqueue(errorResponse(id, e), false, false)
}

// dispatcher runs a channel's requests: reads on up to Workers goroutines at once, writes on
// one goroutine in arrival order. A read that arrives while writes of its channel are pending
// joins the writes' line, so a request always sees the writes sent before it. Goroutines start
// when work arrives and end when their queue is empty, so an idle channel costs none.
type dispatcher struct {
	mu       sync.Mutex
	inflight int
	reads    []func()
	readers  int
	line     []func() // writes, and reads behind writes
	writing  bool
	writes   int // writes queued or running
	stopped  bool
}

// submit queues a job; false when the channel has MaxInflight requests already or is closed.
func (c *conn) submit(write bool, job func()) bool {
	d := &c.dispatch
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || d.inflight >= c.s.MaxInflight {
		return false
	}
	d.inflight++
	if write || d.writes > 0 {
		if write {
			d.writes++
			inner := job
			job = func() {
				inner()
				d.mu.Lock()
				d.writes--
				d.mu.Unlock()
			}
		}
		d.line = append(d.line, job)
		if !d.writing {
			d.writing = true
			c.wg.Go(func() { c.work(&d.line, func() { d.writing = false }) })
		}
		return true
	}
	d.reads = append(d.reads, job)
	if d.readers < max(c.s.Workers, 1) {
		d.readers++
		c.wg.Go(func() { c.work(&d.reads, func() { d.readers-- }) })
	}
	return true
}

// work runs jobs from q until it is empty or the channel closes; exit runs under the lock as
// the goroutine leaves.
func (c *conn) work(q *[]func(), exit func()) {
	d := &c.dispatch
	for {
		d.mu.Lock()
		if len(*q) == 0 || d.stopped {
			exit()
			d.mu.Unlock()
			return
		}
		job := (*q)[0]
		(*q)[0] = nil
		*q = (*q)[1:]
		d.mu.Unlock()
		job()
	}
}

// done releases one request's place.
func (c *conn) done() {
	d := &c.dispatch
	d.mu.Lock()
	d.inflight--
	d.mu.Unlock()
}

func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	d.reads, d.line = nil, nil
	d.mu.Unlock()
}

// sender is a channel's outgoing queue. One goroutine at a time sends from it — the worker
// whose reply found it idle, or one started for a notification — fragmenting messages over
// 64 KiB and sending one fragment per turn, so a small reply overtakes a large one.
type sender struct {
	c       *conn
	mu      sync.Mutex
	room    *sync.Cond // signalled when queued drops
	q       []*outMsg
	queued  int
	running bool
	stopped bool
	dc      *webrtc.DataChannel
	low     chan struct{}
	num     uint32 // next fragmented message's number
}

type outMsg struct {
	data  []byte
	num   uint32
	next  uint32 // next fragment to send
	count uint32 // 0: sent whole as text
}

func (s *sender) init(c *conn) {
	s.c = c
	s.room = sync.NewCond(&s.mu)
	s.low = make(chan struct{}, 1)
}

// attach binds the sender to its data channel and its buffered-amount-low event.
func (s *sender) attach(dc *webrtc.DataChannel) {
	s.mu.Lock()
	s.dc = dc
	s.mu.Unlock()
	dc.SetBufferedAmountLowThreshold(lowWater)
	dc.OnBufferedAmountLow(func() {
		select {
		case s.low <- struct{}{}:
		default:
		}
	})
}

// enqueue queues one message. With wait, it first waits for room in the queue; without, a
// full queue drops the message. It returns drain true when the caller must
// run the queue itself (drain was asked and no one else is sending); otherwise a goroutine
// is started if none is sending.
func (s *sender) enqueue(data []byte, drain, wait bool) (mustDrain bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wait {
		for !s.stopped && s.queued > 0 && s.queued+len(data) > maxQueued {
			s.room.Wait()
		}
	} else if s.queued > 0 && s.queued+len(data) > maxQueued {
		return false
	}
	if s.stopped {
		return false
	}
	m := &outMsg{data: data}
	if len(data) > wire.MaxFragmentPayload {
		m.num = s.num
		s.num++
		m.count = wire.FragmentCount(len(data))
	}
	s.q = append(s.q, m)
	s.queued += len(data)
	if s.running {
		return false
	}
	s.running = true
	if drain {
		return true
	}
	s.c.wg.Go(s.run)
	return false
}

// run sends until the queue is empty.
func (s *sender) run() {
	for {
		s.mu.Lock()
		if s.stopped || len(s.q) == 0 || s.dc == nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		m := s.q[0]
		var frame []byte
		text := m.count == 0
		if text {
			frame = m.data
		} else {
			frame = wire.Fragment(m.num, m.data, m.next)
			m.next++
		}
		s.q[0] = nil
		s.q = s.q[1:]
		if !text && m.next < m.count {
			s.q = append(s.q, m) // its next fragment waits its turn
		} else {
			s.queued -= len(m.data)
			s.room.Broadcast()
		}
		dc := s.dc
		s.mu.Unlock()

		if err := s.waitLow(dc); err != nil {
			return
		}
		var err error
		if text {
			err = dc.SendText(string(frame))
		} else {
			err = dc.Send(frame)
		}
		if err != nil {
			s.c.s.Logger.Debug("data channel send", "peer", s.c.peer.Name, "err", err)
			s.c.close("send failed")
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			return
		}
	}
}

// waitLow waits while pion holds more than highWater bytes unacknowledged.
func (s *sender) waitLow(dc *webrtc.DataChannel) error {
	if dc.BufferedAmount() <= highWater {
		return nil
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	for dc.BufferedAmount() > highWater {
		select {
		case <-s.low:
		case <-t.C:
			// The event is the fast path; the timer covers a threshold crossed before
			// the wait began.
			t.Reset(100 * time.Millisecond)
		case <-s.c.ctx.Done():
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			return errClosed
		}
	}
	return nil
}

// stop drops the queue and wakes waiting workers; nothing is sent afterwards.
func (s *sender) stop() {
	s.mu.Lock()
	s.stopped = true
	s.q = nil
	s.queued = 0
	s.room.Broadcast()
	s.mu.Unlock()
}
