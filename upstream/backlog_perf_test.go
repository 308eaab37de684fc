package upstream

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
)

// backlogFaults are the faults a backlog drain meets, one drawn for a faulty request.
var backlogFaults = []erp5sim.Fault{
	{Kind: erp5sim.FaultCutBeforeRead},
	{Kind: erp5sim.FaultCutAfterCommit},
	{Kind: erp5sim.FaultStatus, Status: 503},
	{Kind: erp5sim.FaultStatus, Status: 500},
	{Kind: erp5sim.FaultStatusAfterCommit, Status: 502},
	{Kind: erp5sim.FaultGarbage},
	{Kind: erp5sim.FaultTruncate},
}

// faultyRequests makes rate of the double's batch and results requests fail with one of
// backlogFaults (seeded).
func faultyRequests(sim *erp5sim.Server, seed uint64, rate float64) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 7))
	sim.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
		if ep != erp5sim.EndpointBatch && ep != erp5sim.EndpointResults {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() >= rate {
			return nil
		}
		f := backlogFaults[rng.IntN(len(backlogFaults))]
		return &f
	})
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDrainBacklog drains a backlog of puts (BACKLOG_ENTRIES, default 5,000, over
// BACKLOG_DOCS documents, default as many) on loopback with 10% of the double's requests
// failing (every kind of fault), with the uplink's default backoff, and reports entries per
// second and the process's CPU (gateway and double together) per second of drain.
// BACKLOG_PROFILE=FILE writes a CPU profile of the drain alone:
//
//	BACKLOG_ENTRIES=50000 BACKLOG_DOCS=20000 BACKLOG_PROFILE=/tmp/drain.prof \
//	  go test -run '^$' -bench DrainBacklog -benchtime 1x ./upstream/
func BenchmarkDrainBacklog(b *testing.B) {
	n := envInt("BACKLOG_ENTRIES", 5000)
	docs := envInt("BACKLOG_DOCS", n)
	for range b.N {
		e := newSimEnv(b, linksim.Config{}, erp5sim.Options{})
		ids := e.seed(docs)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range n {
			e.put(ids[rng.IntN(len(ids))], fmt.Sprintf("w%d", i))
		}
		faultyRequests(e.sim, 3, 0.10)
		if path := os.Getenv("BACKLOG_PROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			pprof.StartCPUProfile(f)
		}
		cpu0 := cpuTime()
		start := time.Now()
		e.open()
		for !e.drained() {
			if time.Since(start) > time.Hour {
				b.Fatalf("backlog not drained after an hour: %v", e.store.open(b))
			}
			time.Sleep(20 * time.Millisecond)
		}
		d := time.Since(start)
		cpu := cpuTime() - cpu0
		pprof.StopCPUProfile()
		b.ReportMetric(float64(n)/d.Seconds(), "entries/s")
		b.ReportMetric(cpu.Seconds()/d.Seconds(), "cores")
		b.ReportMetric(d.Seconds(), "s/drain")
		e.sim.SetFaultFunc(nil)
		e.check("site-a")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
