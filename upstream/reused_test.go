package upstream

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// copyFile copies src to dst.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// reopen closes the env's database, runs between (the database file is closed), opens it
// again, with a new epoch when serve says so (a start of serve), and gives the env a new
// uplink over it.
func (e *simEnv) reopen(serve bool, between func(path string)) {
	e.t.Helper()
	ctx := context.Background()
	e.up.Close(ctx)
	path := e.store.Path
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	if between != nil {
		between(path)
	}
	db := sqlite.NewDB(path)
	db.Synchronous = "off"
	db.SiteID = "site-a"
	if err := db.Open(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	if serve {
		if _, err := db.NewEpoch(ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	e.store = &testStore{DB: db, renamed: map[string]string{}}
	e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter, Logger: discardLogger()}
}

// A database file copied back from before a drain: its next write takes a seq that ERP5
// already holds, under the same epoch, for another write. The results query answers with
// the other write's result and hash; the entry must not become done (the write would be
// lost): it is held as seq_reused, the uplink pauses and the alarm is raised. The write that
// was in the copy and did reach ERP5 is recognised by its hash and settles done.
// (Once every writing process makes its own epoch, the new write does not share a key at
// all and is delivered; the first assertion then still holds.)
func TestSim_CopiedBackDatabaseNeverDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{})
		docs := e.seed(3)
		ctx := context.Background()
		a := e.put(docs[0], "A")
		aside := e.store.Path + ".aside"
		e.reopen(false, func(path string) { copyFile(t, path, aside) })
		c := e.put(docs[1], "C")
		e.reopen(true, nil) // serve starts: a new epoch
		e.open()
		waitFor(t, time.Hour, "A and C delivered", e.drained)
		if got := e.sim.Document(docs[1]).Properties["title"]; got != "C" {
			t.Fatalf("C not delivered: %v", got)
		}
		// The old directory is copied back; a CLI write follows, then serve starts.
		e.reopen(false, func(path string) {
			os.Remove(path + "-wal")
			os.Remove(path + "-shm")
			copyFile(t, aside, path)
		})
		b := e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: docs[2], Doc: map[string]any{"title": "B"}}).Seq
		e.reopen(true, nil)
		var alarms []Alarm
		e.up.OnAlarm = func(al Alarm) { alarms = append(alarms, al) }
		e.up.Metrics = NewMetrics(nil)
		e.open()
		waitFor(t, time.Hour, "B settled", func() bool {
			st := e.entryState(b)
			return st != outbox.StatePending && st != outbox.StateInflight && st != outbox.StateDeferred
		})
		time.Sleep(time.Minute)
		got, err := e.store.OutboxEntry(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if b == c {
			// The copy reused C's key: never done without reaching ERP5.
			if got.State == outbox.StateDone {
				t.Fatalf("B (seq %d, the key C holds at ERP5) is done; ERP5 has title %v", b, e.sim.Document(docs[2]).Properties["title"])
			}
			if got.State != outbox.StateHeld || !strings.Contains(got.LastError, "seq_reused") {
				t.Errorf("B: %s %q, want held seq_reused", got.State, got.LastError)
			}
			if !strings.Contains(string(got.Answer), `"erp5_holds"`) {
				t.Errorf("B's answer does not keep what ERP5 holds: %s", got.Answer)
			}
			st := e.up.Status()
			if !st.Paused || st.PauseCause != "seq_reused" {
				t.Errorf("uplink paused %v %q", st.Paused, st.PauseCause)
			}
			if len(alarms) == 0 || alarms[0].Kind != AlarmSeqReused || alarms[0].Seqs[0] != b {
				t.Errorf("alarms %+v", alarms)
			}
			if v := metricValue(e.up.Metrics.Alarms.WithLabelValues(AlarmSeqReused)); v != 1 {
				t.Errorf("gateway_upstream_alarm{kind=seq_reused} = %v", v)
			}
			if v := metricValue(e.up.Metrics.Paused); v != 1 {
				t.Errorf("gateway_upstream_paused = %v", v)
			}
			// The operator ends it: B's write is lost at ERP5, so it is queued again as a new
			// entry (a new key), and delivered once the uplink resumes.
			res, err := e.store.ResolveAssumed(ctx, b, sqlite.AssumeLost, "", "test")
			if err != nil {
				t.Fatal(err)
			}
			e.up.Resume()
			waitFor(t, time.Hour, "B delivered", func() bool { return e.entryState(res.NewSeq) == outbox.StateDone })
			if got := e.sim.Document(docs[2]).Properties["title"]; got != "B" {
				t.Errorf("B at ERP5: %v", got)
			}
		} else if got.State != outbox.StateDone || e.sim.Document(docs[2]).Properties["title"] != "B" {
			t.Errorf("B under its own key: %s, ERP5 %v", got.State, e.sim.Document(docs[2]).Properties["title"])
		}
		if st := e.entryState(a); st != outbox.StateDone {
			t.Errorf("A (delivered from the copy's twin) is %s", st)
		}
		if n := len(e.sim.Applied("site-a", "")); n != 3 {
			t.Errorf("ERP5 applied %d entries, want 3 (A, C and B, once each)", n)
		}
	})
}

func (e *simEnv) entryState(seq int64) string {
	en, err := e.store.OutboxEntry(context.Background(), seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return en.State
}

// The hash rule on a sent entry: it went out, its answer was lost (uncertain), and the results
// query finds ERP5 holding another payload under its key — of the same document even. The
// entry is held as seq_reused with the alarm, never done; ERP5 applied nothing of it.
func TestSim_ResultsHashMismatchOfSentEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{})
		docs := e.seed(1)
		ctx := context.Background()
		s := e.put(docs[0], "mine")
		b, err := e.store.Claim(ctx, outbox.Budget{}, nil)
		if err != nil || len(b.Entries) != 1 {
			t.Fatalf("claim: %v %v", b, err)
		}
		if _, err := e.store.Settle(ctx, []outbox.Result{{Seq: s, Status: outbox.ResultUncertain, Reason: "no complete response"}}); err != nil {
			t.Fatal(err)
		}
		// ERP5 holds another write of the same document under (epoch, seq).
		res := e.sim.ApplyBatch("site-a", b.Epoch, []erp5sim.Entry{{Seq: s, Op: "put", ID: docs[0],
			Fields: map[string]any{"title": "theirs"}, Base: map[string]any{"title": "t0"}, Hash: "0123456789abcdef"}}, "")
		if res[0]["status"] != "ok" {
			t.Fatalf("ERP5 side: %v", res)
		}
		var alarms []Alarm
		e.up.OnAlarm = func(a Alarm) { alarms = append(alarms, a) }
		e.open()
		waitFor(t, time.Hour, "settled", func() bool { return e.entryState(s) != outbox.StateUncertain })
		if st := e.entryState(s); st != outbox.StateHeld {
			t.Errorf("entry %d is %s, want held (seq_reused)", s, st)
		}
		if len(alarms) == 0 || alarms[0].Kind != AlarmSeqReused {
			t.Errorf("alarms %+v", alarms)
		}
		if got := e.sim.Document(docs[0]).Properties["title"]; got != "theirs" {
			t.Errorf("ERP5 title %v", got)
		}
	})
}
