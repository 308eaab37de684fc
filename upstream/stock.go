package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"sitesync.example/gateway/outbox"
)

// Stock rounds (docs/DESIGN.md §7, Stock mode). Each stock write costs one or more round
// trips, so a round sends its claimed entries one by one; under intermittent faults a
// failure is the entry's own: it waits its own backoff (doubling with each failed try of
// that entry) while the round goes on with the others. Only a failure that says the link
// or ERP5 as a whole is unavailable stops the round: the entries it never tried are given
// back unchanged (pending, their claim undone). Any success resets the round's backoff.

// sendStockEntries sends claimed stock entries in order and settles each. It returns an
// error when the round must stop (the link is gone, ERP5 asks to wait, credentials) or
// when an entry's outcome is uncertain (the next round resends it after a short wait);
// nil when every failure was an entry's own deferral.
func (u *Uplink) sendStockEntries(ctx context.Context, stock []*outbox.Entry) error {
	var uncertain error
	for i, e := range stock {
		err := u.sendStock(ctx, e)
		if err == nil {
			u.stockSucceeded(e.Seq)
			continue
		}
		if ctx.Err() != nil || stopsStockRound(err) {
			if rest := stock[i+1:]; len(rest) > 0 {
				if serr := u.settle(ctx, u.deferAll(rest, err)); serr != nil {
					return errors.Join(err, serr)
				}
			}
			return err
		}
		if Classify(err) == OutcomeUncertain {
			uncertain = err
		}
	}
	return uncertain
}

// stopsStockRound reports whether err says the link or ERP5 as a whole cannot take requests
// now: nothing left the machine, a request timed out or stalled, ERP5 asked to wait
// (Retry-After), or refused the credentials. Any other failure is the entry's own.
func stopsStockRound(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.RetryAfter > 0 || he.Status == 401
	}
	return errors.Is(err, ErrNotSent) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStalled)
}

// stockSucceeded resets the backoffs after a success: the round's, and every entry's count
// of failures (the link and ERP5 work: an entry's failure was intermittent). An entry that
// keeps failing while nothing else succeeds waits longer and longer.
func (u *Uplink) stockSucceeded(int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	clear(u.stockFails)
	if u.bo != nil {
		u.bo.Reset()
	}
}

// entryDelay counts a failed try of seq and returns how long the entry waits: its own
// exponential backoff with jitter (InitialBackoff doubled per consecutive failure, at most
// MaxBackoff), or ERP5's Retry-After when that is longer.
func (u *Uplink) entryDelay(seq int64, err error) time.Duration {
	u.mu.Lock()
	u.stockFails[seq]++
	n := u.stockFails[seq]
	u.mu.Unlock()
	d := u.InitialBackoff
	for i := 1; i < n && d < u.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, u.MaxBackoff)
	d = time.Duration(float64(d) * (0.5 + rand.Float64())) // ±50%, as the round's backoff
	var he *HTTPError
	if errors.As(err, &he) && he.RetryAfter > d {
		d = he.RetryAfter
	}
	return d
}

// stockFailed settles a stock entry after a failed request and returns the error (nil when
// the failure was the entry's own and final: rejected). sent tells whether a request of this
// try left the machine before the failure; when none did, the claim is undone (attempts
// count only requests that left the machine).
func (u *Uplink) stockFailed(ctx context.Context, e *outbox.Entry, err error, sent bool) error {
	seqs := []int64{e.Seq}
	switch Classify(err) {
	case OutcomeDead, OutcomeTooLarge:
		u.forgetStock(e.Seq)
		return u.settle(ctx, verdicts(seqs, outbox.ResultRejected, shortErr(err), time.Time{}))
	case OutcomeUnauthorized:
		u.alarm(Alarm{Kind: AlarmUnauthorized, Message: "ERP5 refused the gateway's credentials (401): check upstream.auth"})
	}
	if Classify(err) == OutcomeUncertain && !errors.Is(err, ErrNotSent) {
		if serr := u.settle(ctx, verdicts(seqs, outbox.ResultUncertain, shortErr(err), time.Time{})); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	next := u.now().Add(u.entryDelay(e.Seq, err))
	r := outbox.Result{Seq: e.Seq, Status: outbox.ResultDeferred, Reason: shortErr(err), NextAttemptAt: next}
	if !sent && errors.Is(err, ErrNotSent) {
		r.Status, r.Reason = outbox.ResultNotSent, "not sent: "+shortErr(err)
	}
	if serr := u.settle(ctx, []outbox.Result{r}); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

func (u *Uplink) forgetStock(seq int64) {
	u.mu.Lock()
	delete(u.stockFails, seq)
	u.mu.Unlock()
}
