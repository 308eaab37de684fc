package upstream

import (
	"context"
	"errors"
	"fmt"

	"sitesync.example/gateway/outbox"
)

// The receiver-mode drain (docs/DESIGN.md §7): claim → build → compress → send → settle, with
// several batches in flight on separate requests.
const (
	// DefaultBatchPipeline is how many receiver batches may be in flight at once when
	// Uplink.Pipeline is 0: enough that the satellite's 700 ms round trip never leaves the
	// link idle (three 16 KB batches cover its bandwidth-delay product of ~34 KB), and no
	// more than the transport's connections (DefaultMaxConnsPerHost).
	DefaultBatchPipeline = DefaultMaxConnsPerHost
	// firstBatchBytes is the compressed size the first batch of a drain aims at; each later
	// batch doubles it up to BatchBytes (when that is set higher). Measured on the simulated
	// Thuraya link, smaller first batches cost more than they save: every extra connection a
	// batch in flight opens costs a round trip, and an idle round trip costs more than the
	// claim of a bigger batch (TestPerformance_Everyday).
	firstBatchBytes = DefaultBatchBytes
	// stopAfter is how many failed exchanges in a row (no success between them) stop a drain:
	// the link or ERP5 is down, and the uplink backs off. A failure between successes only
	// defers its own entries; the other batches go on.
	stopAfter = 2
)

// drainBatches is the receiver-mode round: it claims and sends batches until nothing is due,
// keeping up to Pipeline batches in flight. Batches in flight hold different documents (a
// claimed entry blocks its document's later entries until it is done, merged or superseded:
// invariant 3), so per-document order holds across them.
//
// A failed exchange defers (or leaves uncertain) its own entries only; the drain goes on
// while other exchanges succeed, and settles uncertain entries through ERP5's results query
// before it ends. It stops claiming, and returns the error for the backoff, after stopAfter
// failures in a row, a Retry-After, an alarm, or when nothing succeeded at all.
func (u *Uplink) drainBatches(ctx context.Context) (bool, error) {
	depth := u.Pipeline
	if depth <= 0 {
		depth = DefaultBatchPipeline
	}
	type outcome struct {
		err     error
		entries int
	}
	results := make(chan outcome, depth)
	var (
		inflight, claimed, inRow, ok int
		sent, claimMore, verify      = false, true, false
		stop, last                   error
		target                       = min(firstBatchBytes, u.BatchBytes)
	)
	for {
		if claimMore && stop == nil && inflight < depth {
			u.mu.Lock()
			paused := u.paused
			u.mu.Unlock()
			switch {
			case ctx.Err() != nil:
				stop = ctx.Err()
			case paused || u.overBudget():
				claimMore = false
			default:
				b, err := u.claimBatch(ctx, target)
				switch {
				case err != nil:
					stop = fmt.Errorf("uplink claim: %w", err)
				case len(b.Entries) == 0:
					// Nothing due now; a batch in flight may free its documents' next entries.
					claimMore = false
				default:
					sent = true
					inflight++
					claimed++
					target = min(target*2, u.BatchBytes)
					go func() { results <- outcome{u.send(ctx, ModeBatch, b), len(b.Entries)} }()
					continue
				}
			}
		}
		if inflight == 0 {
			if stop == nil && claimMore {
				continue
			}
			if stop == nil && verify {
				// Entries left uncertain by a lost answer: ask ERP5 (a few hundred bytes) and
				// go on with what it says was never applied.
				verify = false
				if err := u.verify(ctx, ModeBatch); err != nil {
					stop = err
				} else {
					claimMore = true
					continue
				}
			}
			if stop == nil && last != nil && ok == 0 {
				stop = last // nothing got through: back off
			}
			return sent, linkErr(stop)
		}
		r := <-results
		inflight--
		claimMore = true
		if r.err == nil {
			ok++
			inRow = 0
			continue
		}
		last = r.err
		inRow++
		if Classify(r.err) == OutcomeUncertain {
			verify = true
		}
		var he *HTTPError
		switch {
		case stop != nil:
		case inRow >= stopAfter, errors.As(r.err, &he) && (he.RetryAfter > 0 || he.Status == 401 || he.Status == 403 || he.Status == 404),
			errors.Is(r.err, context.Canceled), ctx.Err() != nil:
			stop = r.err
		}
	}
}

// claimBatch claims the next receiver batch, aiming at target compressed bytes (lowered to
// the receiver's max_batch_bytes and to what a 413 taught) and at most MaxEntries (lowered
// likewise).
func (u *Uplink) claimBatch(ctx context.Context, target int) (*outbox.Batch, error) {
	budget := outbox.Budget{MaxEntries: u.MaxEntries}
	u.mu.Lock()
	capa, ratio := u.capa, u.ratio
	u.mu.Unlock()
	if capa != nil {
		if capa.MaxEntries > 0 {
			budget.MaxEntries = min(budget.MaxEntries, capa.MaxEntries)
		}
		if capa.MaxBatchBytes > 0 {
			target = min(target, int(capa.MaxBatchBytes))
		}
	}
	if ratio <= 0 {
		ratio = assumedRatio
	}
	// A 413 taught a smaller limit than the receiver advertises (learnTooLarge).
	budget.MaxEntries, target = u.learnedLimits(budget.MaxEntries, target)
	// The budget counts plain bytes; the target is compressed. Allow 20% for the ratio
	// varying from one batch to the next.
	budget.MaxBytes = max(int(float64(target)/(max(ratio, 0.05)*1.2)), 1)
	return u.Store.Claim(ctx, budget, nil)
}
