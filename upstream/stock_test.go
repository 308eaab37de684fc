package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
)

// The link is down (nothing can leave the machine): rounds come and go, and no entry counts
// an attempt; none is "sent".
func TestStock_AttemptsCountOnlyRequestsThatLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{Stock: true})
		docs := e.seed(3)
		e.up.Protocol = ProtocolStock
		var seqs []int64
		for i, d := range docs {
			seqs = append(seqs, e.put(d, fmt.Sprintf("v%d", i)))
		}
		e.link.SetDown(true)
		e.open()
		time.Sleep(10 * time.Minute)
		for _, s := range seqs {
			en, err := e.store.OutboxEntry(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if en.Attempts != 0 {
				t.Errorf("entry %d: %s, %d attempts, %q: nothing ever left the machine", s, en.State, en.Attempts, en.LastError)
			}
		}
		e.link.SetDown(false)
		e.up.Flush()
		waitFor(t, time.Hour, "drained", e.drained)
		for _, s := range seqs {
			if en, _ := e.store.OutboxEntry(context.Background(), s); en.Attempts != 1 {
				t.Errorf("entry %d: %d attempts once delivered, want 1", s, en.Attempts)
			}
		}
	})
}

// ERP5 asks every request to wait (429, Retry-After): the round stops at the first entry,
// and the entries it never tried are given back as they were — pending, no attempt, not
// deferred behind the first one's wait.
func TestStock_RoundNeverDefersUntriedEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{Stock: true})
		docs := e.seed(3)
		e.up.Protocol = ProtocolStock
		var seqs []int64
		for i, d := range docs {
			seqs = append(seqs, e.put(d, fmt.Sprintf("v%d", i)))
		}
		e.sim.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
			if ep == erp5sim.EndpointEdit || ep == erp5sim.EndpointTraverse {
				return &erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: 429, RetryAfter: "600"}
			}
			return nil
		})
		e.open()
		waitFor(t, time.Hour, "first entry deferred", func() bool { return e.entryState(seqs[0]) == outbox.StateDeferred })
		for _, s := range seqs[1:] {
			en, _ := e.store.OutboxEntry(context.Background(), s)
			if en.State != outbox.StatePending || en.Attempts != 0 || !en.NextAttemptAt.IsZero() {
				t.Errorf("untried entry %d: %s, %d attempts, next %v, %q", s, en.State, en.Attempts, en.NextAttemptAt, en.LastError)
			}
		}
	})
}

// stockFaults are the double's faults of every kind, for the stock interface.
var stockFaults = []erp5sim.Fault{
	{Kind: erp5sim.FaultCutBeforeRead},
	{Kind: erp5sim.FaultCutAfterCommit},
	{Kind: erp5sim.FaultCutAfterResponse},
	{Kind: erp5sim.FaultStatus, Status: 503},
	{Kind: erp5sim.FaultStatus, Status: 500},
	{Kind: erp5sim.FaultStatus, Status: 429, RetryAfter: "2"},
	{Kind: erp5sim.FaultStatusAfterCommit, Status: 502},
	{Kind: erp5sim.FaultGarbage},
	{Kind: erp5sim.FaultTruncate},
	{Kind: erp5sim.FaultSlow, Rate: 2000},
}

// TestStock_IntermittentFaultsDrain reports how long 40 edits take to drain through the
// stock interface on the simulated Thuraya link while a quarter of the requests fail with a
// fault of every kind (virtual time; a figure, not an assertion: the target is 60 s). Every
// edit arrives; each document ends with its last value.
func TestStock_IntermittentFaultsDrain(t *testing.T) {
	var took []time.Duration
	var baseline time.Duration
	for seed := uint64(0); seed <= 5; seed++ { // seed 0: no faults, the baseline
		synctest.Test(t, func(t *testing.T) {
			e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{Stock: true})
			docs := e.seed(40)
			e.up.Protocol = ProtocolStock
			rng := rand.New(rand.NewPCG(seed, 15))
			var mu sync.Mutex
			faults := 0
			e.sim.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
				mu.Lock()
				defer mu.Unlock()
				if seed == 0 || rng.Float64() >= 0.25 {
					return nil
				}
				faults++
				f := stockFaults[rng.IntN(len(stockFaults))]
				return &f
			})
			for i, d := range docs {
				e.put(d, fmt.Sprintf("e%d", i))
			}
			start := time.Now()
			e.open()
			waitFor(t, time.Hour, "drained", e.drained)
			d := time.Since(start)
			if seed == 0 {
				baseline = d
			} else {
				took = append(took, d)
			}
			for i, d := range docs {
				if got := e.sim.Document(d).Properties["title"]; got != fmt.Sprintf("e%d", i) {
					t.Errorf("%s: %v", d, got)
				}
			}
			mu.Lock()
			t.Logf("seed %d: 40 stock edits, %d faults injected, drained in %v (virtual)", seed, faults, d.Round(100*time.Millisecond))
			mu.Unlock()
		})
	}
	slices.Sort(took)
	med := took[len(took)/2]
	t.Logf("40 stock edits at 25%% faults on Thuraya: median %v (%.2f× the %v without faults), max %v (target ≤ 60s)",
		med.Round(100*time.Millisecond), float64(med)/float64(baseline), baseline.Round(100*time.Millisecond), took[len(took)-1].Round(100*time.Millisecond))
}
