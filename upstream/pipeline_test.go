package upstream

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// TestPipeline_IsolatedFailureDoesNotStopTheDrain: one batch among many fails (503); only its
// entries wait for the backoff, the other batches go on (docs/DESIGN.md §7). The backoff is
// a minute, so a drain that stopped at the failure would still hold most of its entries
// after 20 seconds.
func TestPipeline_IsolatedFailureDoesNotStopTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{MaxEntries: 5})
		e.up.InitialBackoff = time.Minute
		docs := e.seed(60)
		e.open()
		waitFor(t, time.Hour, "probe", func() bool { return e.up.Status().Mode == ModeBatch })
		for i, d := range docs {
			e.put(d, fmt.Sprintf("n%d", i))
		}
		e.sim.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatus, Status: 503})
		e.up.Wake()
		time.Sleep(20 * time.Second)
		left := 0
		for _, n := range e.store.open(t) {
			left += n
		}
		if left > 5 {
			t.Errorf("%d entries open 20 s after one failed batch of at most 5: the drain stopped for the backoff", left)
		}
		waitFor(t, time.Hour, "the outbox to drain", e.drained)
		e.check("site-a")
	})
}

// TestPipeline_FailuresInARowBackOff: when every request fails, the drain stops after
// stopAfter failures instead of trying every batch.
func TestPipeline_FailuresInARowBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{MaxEntries: 5})
		e.up.InitialBackoff = time.Minute
		docs := e.seed(60)
		e.open()
		waitFor(t, time.Hour, "probe", func() bool { return e.up.Status().Mode == ModeBatch })
		for i, d := range docs {
			e.put(d, fmt.Sprintf("n%d", i))
		}
		e.sim.ResetStats()
		e.sim.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultStatus, Status: 503, Times: 1000})
		e.up.Wake()
		time.Sleep(20 * time.Second)
		if n := e.sim.Stats().Requests[erp5sim.EndpointBatch]; n > stopAfter+DefaultBatchPipeline {
			t.Errorf("%d batch requests while every one failed; want at most %d before backing off", n, stopAfter+DefaultBatchPipeline)
		}
		e.sim.ClearFaults()
		e.up.Flush()
		waitFor(t, 2*time.Hour, "the outbox to drain", e.drained)
		e.check("site-a")
	})
}

// TestPipeline_ChunkedClaimIsOneBatch: a batch claimed in several short transactions
// (sqlite.ClaimChunk entries each) is still one batch: every entry inflight, one per
// document, within the byte budget, and nothing claimed twice.
func TestPipeline_ChunkedClaimIsOneBatch(t *testing.T) {
	defer func(n int) { sqlite.ClaimChunk = n }(sqlite.ClaimChunk)
	sqlite.ClaimChunk = 3
	e := newSimEnv(t, linksim.Config{}, erp5sim.Options{})
	docs := e.seed(20)
	for round := range 2 {
		for i, d := range docs {
			e.put(d, fmt.Sprintf("r%d-%d", round, i))
		}
	}
	ctx := context.Background()
	b, err := e.store.Claim(ctx, outbox.Budget{MaxEntries: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Entries) != 10 || b.Epoch == "" {
		t.Fatalf("claimed %d entries (epoch %q), want 10", len(b.Entries), b.Epoch)
	}
	seen := map[string]bool{}
	size := 0
	for _, en := range b.Entries {
		if seen[en.DocID] {
			t.Errorf("two entries of %s in one batch", en.DocID)
		}
		seen[en.DocID] = true
		size += len(en.Payload)
		if en.Epoch != b.Epoch || en.State != outbox.StateInflight {
			t.Errorf("entry %d: %s, epoch %s, in a batch of %s", en.Seq, en.State, en.Epoch, b.Epoch)
		}
	}
	// The byte budget holds across chunks, down to chunks of one entry: half of this batch's
	// bytes take about half as many entries.
	sqlite.ClaimChunk = 1
	half, err := e.store.Claim(ctx, outbox.Budget{MaxEntries: 100, MaxBytes: size / 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := half.Bytes(); got > size/2 || len(half.Entries) < 3 || len(half.Entries) > 6 {
		t.Errorf("claimed %d entries, %d bytes, within a budget of %d bytes", len(half.Entries), got, size/2)
	}
	for _, en := range half.Entries {
		if seen[en.DocID] {
			t.Errorf("%s claimed again while its entry is inflight", en.DocID)
		}
	}
}
