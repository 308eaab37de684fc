package upstream

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
)

// A front end refuses bodies over 3,000 bytes with 413 though the receiver advertises more:
// the first drain learns the limit (splitting the refused batch), and the next drain sends no
// oversized batch again.
func TestUplink_TooLargeIsRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newSimEnv(t, linksim.Thuraya, erp5sim.Options{})
		docs := e.seed(400)
		var refused atomic.Int64
		e.sim.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
			if ep == erp5sim.EndpointBatch && r.ContentLength > 3000 {
				refused.Add(1)
				return &erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: http.StatusRequestEntityTooLarge}
			}
			return nil
		})
		for i, d := range docs[:200] {
			e.put(d, fmt.Sprintf("first %d with some words to weigh", i))
		}
		e.open()
		waitFor(t, time.Hour, "first drain", e.drained)
		first := refused.Load()
		if first == 0 {
			t.Fatal("the front end refused nothing: the test does not test")
		}
		for i, d := range docs[200:] {
			e.put(d, fmt.Sprintf("second %d with some words to weigh", i))
		}
		e.up.Wake()
		waitFor(t, time.Hour, "second drain", e.drained)
		if again := refused.Load() - first; again != 0 {
			t.Errorf("the second drain sent %d oversized batches again (the first drain: %d)", again, first)
		}
		e.check("site-a")
	})
}

// ERP5 answers a version that is not a string (a number): the writes were applied, so the
// entries are done with ERP5's state stored, and an alarm says the versions were not
// recorded — never uncertain forever.
func TestUplink_UnparseableVersionSettlesWithAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(3)
		e.erp5.mu.Lock()
		e.erp5.version = 1733650000.123456
		e.erp5.mu.Unlock()
		var seqs []int64
		for i, d := range docs {
			seqs = append(seqs, e.put(d, map[string]any{"title": fmt.Sprintf("v%d", i)}))
		}
		var mu sync.Mutex
		var alarms []Alarm
		e.up.OnAlarm = func(a Alarm) { mu.Lock(); alarms = append(alarms, a); mu.Unlock() }
		e.open()
		waitFor(t, time.Hour, "entries settled", func() bool { return len(e.store.open(t)) == 0 })
		for i, s := range seqs {
			en := e.entry(s)
			if en.State != outbox.StateDone {
				t.Errorf("entry %d: %s %q", s, en.State, en.LastError)
			}
			var up string
			if err := e.store.Reader().QueryRowContext(context.Background(),
				`SELECT coalesce(json(upstream_body), '') FROM documents WHERE id = ?`, docs[i]).Scan(&up); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(up, fmt.Sprintf(`"v%d"`, i)) {
				t.Errorf("%s: ERP5's state not stored: %s", docs[i], up)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(alarms) == 0 || alarms[0].Kind != AlarmBadVersion || len(alarms[0].Seqs) == 0 {
			t.Errorf("alarms = %+v", alarms)
		}
	})
}

// The status never shows a next try in the past: once a wait is over (a round is running, the
// link working), there is no next try to show.
func TestUplink_StatusNextTryNeverPast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.open()
		synctest.Wait() // the loop is idle
		e.up.link.setNextTry(time.Now().Add(-3 * time.Second))
		if nt := e.up.Status().Link.NextTryAt; !nt.IsZero() && !nt.After(time.Now()) {
			t.Errorf("next try %v is in the past (now %v)", nt, time.Now())
		}
		future := time.Now().Add(time.Minute)
		e.up.link.setNextTry(future)
		if nt := e.up.Status().Link.NextTryAt; !nt.Equal(future) {
			t.Errorf("next try %v, want %v", nt, future)
		}
	})
}
