package policy

import (
	"fmt"
	"math"
	"sync"
	"time"

	"sitesync.example/gateway"
)

// maxIdleBuckets is how many per-peer buckets a RateLimiter keeps before it drops the full
// ones: a full bucket is the same as no bucket, so dropping it loses nothing, and the map
// cannot grow with every peer ever seen.
const maxIdleBuckets = 1024

// RateLimiter is a token bucket per peer, sized by the peer's role: `rate` tokens a second up
// to `burst`; a request takes one. A role with rate 0 is not limited. The LAN layer calls
// Allow for every request of a peer. Safe for concurrent use.
type RateLimiter struct {
	// Now is the clock; time.Now by default. Tests inject their own.
	Now func() time.Time

	limits  func(role string) Limits
	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket is one peer's tokens as of last.
type bucket struct {
	tokens      float64
	last        time.Time
	rate, burst float64 // the role's, at the last request
}

// NewRateLimiter returns a limiter that sizes each peer's bucket from the engine's limits
// for the peer's role.
func (e *Engine) NewRateLimiter() *RateLimiter {
	return &RateLimiter{limits: e.Limits, buckets: map[string]*bucket{}}
}

// Allow takes a token from peer's bucket. With none left it returns gateway.ERATELIMITED
// (reason rate_limited) saying when the next token comes.
func (l *RateLimiter) Allow(peer, role string) error {
	lim := l.limits(role)
	if lim.Rate <= 0 {
		return nil
	}
	burst := float64(max(lim.Burst, 1))
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[peer]
	if b == nil {
		if len(l.buckets) >= maxIdleBuckets {
			l.pruneLocked(t)
		}
		b = &bucket{tokens: burst, last: t}
		l.buckets[peer] = b
	} else if dt := t.Sub(b.last).Seconds(); dt > 0 { // a clock that steps back adds nothing
		b.tokens = math.Min(burst, b.tokens+dt*lim.Rate)
		b.last = t
	}
	if b.tokens > burst { // the role's burst shrank
		b.tokens = burst
	}
	b.rate, b.burst = lim.Rate, burst
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration((1 - b.tokens) / lim.Rate * float64(time.Second))
	return &gateway.Error{Code: gateway.ERATELIMITED, Reason: ReasonRateLimited,
		Message: fmt.Sprintf("too many requests: role %s may make %g a second; try again in %s", role, lim.Rate, wait.Round(time.Millisecond))}
}

// Forget drops peer's bucket (a revoked peer).
func (l *RateLimiter) Forget(peer string) {
	l.mu.Lock()
	delete(l.buckets, peer)
	l.mu.Unlock()
}

// pruneLocked drops the buckets that have refilled by now.
func (l *RateLimiter) pruneLocked(t time.Time) {
	for p, b := range l.buckets {
		if b.tokens+t.Sub(b.last).Seconds()*b.rate >= b.burst {
			delete(l.buckets, p)
		}
	}
}
