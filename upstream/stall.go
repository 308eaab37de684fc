package upstream

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Stall detection (link loss noticed in seconds): a request whose transfer makes no progress
// — no byte of its body taken by the connection, no byte of the answer read — for the stall
// window is abandoned as stalled, and the link is down. The window is derived from the
// link's round-trip time; the wait between the last byte sent and the first byte of the
// answer gets the request's allowance for ERP5's own work on top. A slow transfer that
// keeps moving is never a stall: only its overall deadline (requestTimeout) bounds it.
const (
	// MinStallWindow is the least stall window: several round trips of a GEO satellite link
	// with retransmissions.
	MinStallWindow = 15 * time.Second
	// MaxStallWindow bounds the window derived from a slow link's round trips.
	MaxStallWindow = 60 * time.Second
	// stallRTTs is the window in round trips, when that is more than MinStallWindow.
	stallRTTs = 12
)

// stallWindow is how long a request may go without progress: StallWindow when set, else
// stallRTTs round trips as measured, within [MinStallWindow, MaxStallWindow].
func (c *Client) stallWindow() time.Duration {
	if c.StallWindow > 0 {
		return c.StallWindow
	}
	rtt := time.Duration(c.rttNanos.Load())
	return min(max(stallRTTs*rtt, MinStallWindow), MaxStallWindow)
}

// noteRTT folds one measured wait between the end of a small request and the first byte of
// its answer into the round-trip estimate (an average weighing the latest by 1/4).
func (c *Client) noteRTT(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		old := c.rttNanos.Load()
		n := int64(d)
		if old > 0 {
			n = old + (int64(d)-old)/4
		}
		if c.rttNanos.CompareAndSwap(old, n) {
			return
		}
	}
}

// RTT returns the measured round-trip time (0 before any measure).
func (c *Client) RTT() time.Duration { return time.Duration(c.rttNanos.Load()) }

// watchdog cancels a request's context with ErrStalled when no progress is reported within
// the window (plus the allowance of the current phase).
type watchdog struct {
	window time.Duration
	cancel context.CancelCauseFunc
	fired  atomic.Bool

	mu    sync.Mutex
	timer *time.Timer
	extra time.Duration
	done  bool
}

// newWatchdog returns ctx with the watchdog's cancellation, armed for the first window.
func newWatchdog(ctx context.Context, window time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{window: window, cancel: cancel}
	w.timer = time.AfterFunc(window, w.fire)
	return ctx, w
}

func (w *watchdog) fire() {
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if !done {
		w.fired.Store(true)
		w.cancel(ErrStalled)
	}
}

// progress re-arms the watchdog for the window plus the current phase's allowance.
func (w *watchdog) progress() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.timer.Reset(w.window + w.extra)
	}
}

// phase sets the allowance added to the window from now on (ERP5's work and the bytes still
// queued once the request is written; 0 once the answer has begun) and re-arms.
func (w *watchdog) phase(extra time.Duration) {
	w.mu.Lock()
	w.extra = extra
	w.mu.Unlock()
	w.progress()
}

// stop disarms the watchdog and releases its context.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// stalled reports whether the watchdog gave up on the request.
func (w *watchdog) stalled() bool { return w.fired.Load() }

// progressReader reports every byte read through it to a watchdog.
type progressReader struct {
	r io.Reader
	w *watchdog
}

// Read reads from the underlying reader and reports progress.
func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.progress()
	}
	return n, err
}
