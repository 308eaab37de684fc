package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/sqlite"
)

// weekOffline sets the size of the week-offline scenario.
type weekOffline struct {
	writes, peers, docs int
	// offline is how long (virtual time) the link stays down while the writes are made.
	offline time.Duration
	crashes int
	seed    uint64
	// maxEntries is the double's max_entries: a smaller one makes more requests, so that the
	// faults, flaps and crashes meet a drain in progress.
	maxEntries int
}

// weekFigures are what one run of the scenario measured.
type weekFigures struct {
	writes, batches, results, faults int
	drain                            time.Duration // virtual time from the link's return to an empty outbox
	wall                             time.Duration // the machine's time for the whole scenario
}

func (f weekFigures) String() string {
	return fmt.Sprintf("%d writes drained in %v of link time (%.0f writes/s); %d batches, %d faults, %d results queries; the whole scenario took %v on this machine",
		f.writes, f.drain.Round(time.Second), float64(f.writes)/f.drain.Seconds(), f.batches, f.faults, f.results, f.wall.Round(time.Second))
}

// runWeekOffline is the week-offline scenario (docs/DESIGN.md §6, §7), in the link's virtual
// time: w.peers peers make w.writes edits of w.docs documents over w.offline with the link
// down; the link comes back with 10% of the receiver's requests failing (every kind of fault)
// and flapping; during the drain the gateway is killed w.crashes times (kill -9: a new
// process starts from what was committed, with a new epoch, and ERP5 keeps whatever the dead
// process's last requests did). At the end every acknowledged write was applied at ERP5
// exactly once, each document's writes in order, and the outbox is empty.
func runWeekOffline(t *testing.T, w weekOffline) weekFigures {
	var f weekFigures
	began := time.Now()
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(w.seed, 17))
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{MaxEntries: w.maxEntries})
		docs := e.seed(w.docs)
		e.link.SetDown(true)
		e.open()
		// A week's work with the satellite down: each write at its own (virtual) time.
		gap := w.offline / time.Duration(w.writes)
		for i := range w.writes {
			peer := fmt.Sprintf("tablet-%d", 1+rng.IntN(w.peers))
			doc := docs[rng.IntN(len(docs))]
			title := fmt.Sprintf("w%d", i)
			res := e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: doc, Doc: map[string]any{"title": title},
				Peer: peer, Key: fmt.Sprintf("k%d", i)})
			e.acked[res.Seq] = ackedWrite{doc, title}
			time.Sleep(gap)
		}
		// The link returns, unreliable: faults from the double, and it flaps.
		faultyRequests(e.sim, w.seed, 0.10)
		e.sim.ResetStats()
		stop := make(chan struct{})
		flapped := make(chan struct{})
		go func() {
			defer close(flapped)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(20+rng.IntN(40)) * time.Second):
				}
				e.link.Outage(time.Duration(1+rng.IntN(20)) * time.Second)
			}
		}()
		start := time.Now()
		e.link.SetDown(false)
		e.up.Flush()
		for c := 0; c < w.crashes; c++ {
			// Kill the gateway when part of the backlog has reached ERP5.
			mark := w.writes * (c + 1) / (w.crashes + 2)
			waitFor(t, 24*time.Hour, "part of the backlog to drain", func() bool {
				return appliedWrites(e) >= mark
			})
			e.crash(t)
		}
		waitFor(t, 24*time.Hour, "the backlog to drain", e.drained)
		f.drain = time.Since(start)
		close(stop)
		<-flapped
		e.sim.SetFaultFunc(nil)
		st := e.sim.Stats()
		f.writes, f.batches, f.results, f.faults = w.writes, st.Requests[erp5sim.EndpointBatch], st.Requests[erp5sim.EndpointResults], st.Faults
		if f.faults == 0 {
			t.Errorf("no fault met the drain (%d batches): the scenario tests nothing", f.batches)
		}
		time.Sleep(11 * time.Minute) // let a delayed handler finish before the bubble ends
		e.check("site-a")
	})
	f.wall = time.Since(began)
	return f
}

// appliedWrites counts the writes ERP5 applied (each entry with the writes folded into it).
func appliedWrites(e *simEnv) int {
	n := 0
	for _, c := range e.sim.Applied("site-a", "") {
		n += 1 + len(c.Covers)
	}
	return n
}

// crash kills the gateway as kill -9 would: what it committed stays (a consistent copy of
// the database taken between two transactions), what it did after is lost, and a new process
// starts on that copy with a new epoch; its uplink finds the entries left inflight
// uncertain. Requests the dead process had sent may still reach ERP5.
func (e *simEnv) crash(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gateway.db")
	if err := e.store.Backup(ctx, path); err != nil {
		t.Fatalf("crash snapshot: %v", err)
	}
	e.up.Close(ctx)
	old := e.store
	db := sqlite.NewDB(path)
	db.Synchronous = "off"
	db.SiteID = "site-a"
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.NewEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	old.Close()
	e.store = &testStore{DB: db, renamed: map[string]string{}}
	e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter, Logger: discardLogger()}
	e.open()
}

// TestWeekOffline_Short is the week-offline scenario at a size the normal suite runs: 1,500
// writes from 8 peers over 6 hours offline, two crashes during the drain.
func TestWeekOffline_Short(t *testing.T) {
	f := runWeekOffline(t, weekOffline{writes: 1500, peers: 8, docs: 700, offline: 6 * time.Hour, crashes: 2, seed: 1, maxEntries: 20})
	t.Log(f)
}
