package upstream

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
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
