package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// checkDelivery asserts what every receiver-mode fault test promises: every entry is done or
// merged, no seq was applied twice, each document's writes were applied in seq order, and
// each document ends with its last written value.
func checkDelivery(t *testing.T, e *env, last map[string]string) {
	t.Helper()
	if open := e.store.open(t); len(open) != 0 {
		t.Fatalf("outbox not empty: %v", open)
	}
	seen := map[int64]bool{}
	lastSeq := map[string]int64{}
	for _, a := range e.erp5.appliedLog() {
		if a.seq == 0 {
			continue
		}
		if seen[a.seq] {
			t.Errorf("seq %d applied twice", a.seq)
		}
		seen[a.seq] = true
		if a.seq < lastSeq[a.doc] {
			t.Errorf("%s: seq %d applied after %d", a.doc, a.seq, lastSeq[a.doc])
		}
		lastSeq[a.doc] = a.seq
	}
	for doc, want := range last {
		if got := e.erp5.doc(doc)["title"]; got != want {
			t.Errorf("%s: title = %v, want %s", doc, got, want)
		}
	}
	for _, en := range e.store.entries(t) {
		if en.State != outbox.StateDone && en.State != outbox.StateMerged {
			t.Errorf("entry %d is %s (%s)", en.Seq, en.State, en.LastError)
		}
	}
}

// seedDocs creates n Person documents with title "t0", at ERP5 and in the replica.
func (e *env) seedDocs(n int) []string {
	var ids []string
	docs := map[string]map[string]any{}
	e.erp5.mu.Lock()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("person_module/%d", i)
		e.erp5.docs[id] = map[string]any{"portal_type": "Person", "title": "t0"}
		docs[id] = map[string]any{"portal_type": "Person", "title": "t0"}
		ids = append(ids, id)
	}
	e.erp5.mu.Unlock()
	e.store.seed(e.t, docs)
	return ids
}

func TestUplink_ReceiverFaults(t *testing.T) {
	faults := []fault{faultNone, faultCutBefore, faultCutAfter, fault503, fault502After, fault429, faultTimeout,
		faultGarbage, faultGarbageAfter}
	for _, ft := range faults {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", ft, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(seed, 7))
					e := newEnv(t, linksim.Thuraya)
					e.up.MaxEntries = 3 + rng.IntN(3) // several batches
					docs := e.seedDocs(8 + rng.IntN(8))
					last := map[string]string{}
					n := 10 + rng.IntN(20)
					for i := 0; i < n; i++ {
						doc := docs[rng.IntN(len(docs))]
						v := fmt.Sprintf("v%d", i)
						e.put(doc, map[string]any{"title": v})
						last[doc] = v
					}
					// The fault hits one of the first batches.
					var pre []fault
					for k := rng.IntN(2); k > 0; k-- {
						pre = append(pre, faultNone)
					}
					e.erp5.addFault(BatchPath, append(pre, ft)...)
					e.open()
					waitFor(t, 2*time.Hour, "outbox to drain", func() bool { return len(e.store.open(t)) == 0 })
					checkDelivery(t, e, last)
					if n := e.erp5.pending(); n != 0 {
						t.Fatalf("%d faults were not used", n)
					}
					switch ft {
					case faultCutAfter, faultGarbageAfter, faultTimeout, faultGarbage:
						// The outcome was unknown: one results query, no blind re-upload.
						if got := e.erp5.count(ResultsPath); got != 1 {
							t.Errorf("results queries = %d, want 1", got)
						}
					}
					batches := e.erp5.count(BatchPath)
					minimum := (len(last) + e.up.MaxEntries - 1) / e.up.MaxEntries
					extra := 0
					switch ft {
					case faultCutBefore, fault503, fault429, faultGarbage, faultTimeout, fault502After:
						extra = 1 // the failed request; its entries are sent again
					}
					if batches > minimum+extra+1 {
						t.Errorf("%d batch requests for %d documents in batches of %d (fault %s)", batches, len(last), e.up.MaxEntries, ft)
					}
				})
			})
		}
	}
}

// drain opens the uplink and waits until the outbox has no open entry but those in states
// allowed.
func (e *env) drain(d time.Duration, allowed ...string) {
	e.t.Helper()
	ok := map[string]bool{}
	for _, s := range allowed {
		ok[s] = true
	}
	waitFor(e.t, d, "outbox to drain", func() bool {
		for st := range e.store.open(e.t) {
			if !ok[st] {
				return false
			}
		}
		return true
	})
}

func (e *env) entry(seq int64) *outbox.Entry {
	e.t.Helper()
	en, err := e.store.OutboxEntry(context.Background(), seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return en
}

func TestUplink_RejectedGoesDeadOthersFlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(4)
		e.erp5.reject[docs[1]] = "validation failed: title too long"
		var seqs []int64
		for i, d := range docs {
			seqs = append(seqs, e.put(d, map[string]any{"title": fmt.Sprintf("new%d", i)}))
		}
		e.open()
		e.drain(time.Hour, outbox.StateDead)
		if got := e.entry(seqs[1]); got.State != outbox.StateDead || !strings.Contains(got.LastError, "title too long") {
			t.Errorf("rejected entry: %s (%q)", got.State, got.LastError)
		}
		for i, d := range docs {
			if i == 1 {
				if got := e.erp5.doc(d)["title"]; got != "t0" {
					t.Errorf("rejected %s changed: %v", d, got)
				}
				continue
			}
			if got := e.erp5.doc(d)["title"]; got != fmt.Sprintf("new%d", i) {
				t.Errorf("%s title = %v", d, got)
			}
		}
		// A later write of the dead entry's document waits; other documents still flow.
		blocked := e.put(docs[1], map[string]any{"title": "again"})
		other := e.put(docs[2], map[string]any{"title": "later"})
		e.up.Wake()
		waitFor(t, time.Hour, "later write of another document", func() bool { return e.entry(other).State == outbox.StateDone })
		if st := e.entry(blocked).State; st != outbox.StatePending {
			t.Errorf("write after a dead entry of its document is %s, want pending", st)
		}
	})
}

func TestUplink_ConflictAppliesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(2)
		// Head office changed the title of docs[0] and its reference (which the site does not
		// touch) since the replica saw it.
		e.erp5.mu.Lock()
		e.erp5.docs[docs[0]]["title"] = "theirs"
		e.erp5.mu.Unlock()
		s0 := e.put(docs[0], map[string]any{"title": "ours", "reference": "R1"})
		s1 := e.put(docs[1], map[string]any{"title": "fine"})
		e.open()
		e.drain(time.Hour, outbox.StateConflict)
		got := e.entry(s0)
		if got.State != outbox.StateConflict {
			t.Fatalf("entry is %s (%s), want conflict", got.State, got.LastError)
		}
		_, cur, local := outbox.ConflictValues(got)
		if cur["title"] != "theirs" || local["title"] != "ours" {
			t.Errorf("conflict values: current %v, local %v", cur, local)
		}
		if d := e.erp5.doc(docs[0]); d["title"] != "theirs" || d["reference"] != nil {
			t.Errorf("conflicting entry applied something: %v", d)
		}
		if e.entry(s1).State != outbox.StateDone || e.erp5.doc(docs[1])["title"] != "fine" {
			t.Errorf("other document did not flow")
		}
	})
}

func TestUplink_LocalIDsBecomeERP5IDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.seedDocs(1)
		org := e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Organisation", "title": "Acme"}})
		person := e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "Ann", "subordination": org.ID}})
		if !strings.Contains(org.ID, "/local-") || !strings.Contains(person.ID, "/local-") {
			t.Fatalf("local ids: %s %s", org.ID, person.ID)
		}
		// An edit made before ERP5 numbered the document, by its local id.
		e.put(person.ID, map[string]any{"title": "Ann B."})
		e.open()
		e.drain(time.Hour)
		checkDelivery(t, e, nil)
		orgID := e.store.renamed[org.ID]
		personID := e.store.renamed[person.ID]
		if orgID == "" || personID == "" || strings.Contains(orgID, "local-") {
			t.Fatalf("renamed: %v", e.store.renamed)
		}
		p := e.erp5.doc(personID)
		if p["subordination"] != orgID || p["title"] != "Ann B." {
			t.Errorf("ERP5's person = %v, want subordination %s and the edit", p, orgID)
		}
		if e.erp5.doc(orgID)["title"] != "Acme" {
			t.Errorf("ERP5's organisation = %v", e.erp5.doc(orgID))
		}
		doc, err := e.store.GetDocument(context.Background(), person.ID)
		if err != nil {
			t.Fatal(err)
		}
		if doc.ID != personID || !strings.Contains(string(doc.Body), orgID) {
			t.Errorf("replica: %s %s", doc.ID, doc.Body)
		}
	})
}

func TestUplink_PoisonEntryIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(8)
		e.erp5.fail500[docs[5]] = true
		for i, d := range docs {
			e.put(d, map[string]any{"title": fmt.Sprintf("n%d", i)})
		}
		e.open()
		waitFor(t, 6*time.Hour, "every other document to flow", func() bool {
			for i, d := range docs {
				if i != 5 && e.erp5.doc(d)["title"] != fmt.Sprintf("n%d", i) {
					return false
				}
			}
			open := e.store.open(t)
			return len(open) == 1 && open[outbox.StateDeferred]+open[outbox.StateInflight] == 1
		})
		// Halving 8 → 4 → 2 → 1 takes a handful of requests, not one per entry per round.
		if n := e.erp5.count(BatchPath); n > 12 {
			t.Errorf("%d batch requests to isolate one failing entry of 8", n)
		}
	})
}

func TestUplink_SeqReusedHoldsAndPauses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(2)
		s0 := e.put(docs[0], map[string]any{"title": "a"})
		epoch, _ := e.store.Epoch(context.Background())
		// ERP5 already holds another payload under this (epoch, seq).
		e.erp5.mu.Lock()
		k := epoch + "/" + strconv.FormatInt(s0, 10)
		e.erp5.results[k] = json.RawMessage(fmt.Sprintf(`{"seq":%d,"status":"ok","id":"x"}`, s0))
		e.erp5.hashes[k] = "somethingelse"
		e.erp5.mu.Unlock()
		var alarms []Alarm
		var amu sync.Mutex
		e.up.OnAlarm = func(a Alarm) { amu.Lock(); alarms = append(alarms, a); amu.Unlock() }
		e.open()
		waitFor(t, time.Hour, "entry held", func() bool { return e.entry(s0).State == outbox.StateHeld })
		st := e.up.Status()
		if !st.Paused || st.PauseCause != "seq_reused" {
			t.Errorf("status: paused %v %q", st.Paused, st.PauseCause)
		}
		amu.Lock()
		if len(alarms) != 1 || alarms[0].Kind != AlarmSeqReused || len(alarms[0].Seqs) != 1 || alarms[0].Seqs[0] != s0 {
			t.Errorf("alarms = %+v", alarms)
		}
		amu.Unlock()
		// Paused: a new write is not sent.
		s1 := e.put(docs[1], map[string]any{"title": "b"})
		e.up.Wake()
		time.Sleep(10 * time.Minute)
		if st := e.entry(s1).State; st != outbox.StatePending {
			t.Errorf("write during a pause is %s", st)
		}
		e.up.Resume()
		waitFor(t, time.Hour, "resumed", func() bool { return e.entry(s1).State == outbox.StateDone })
		held := e.entry(s0)
		if held.State != outbox.StateHeld {
			t.Errorf("held entry was touched by the resume")
		}
		// Its answer records what ERP5 holds under the key, from the results query.
		if !strings.Contains(string(held.Answer), `"erp5_holds":{"seq":`) || !strings.Contains(string(held.Answer), `"id":"x"`) {
			t.Errorf("held entry's answer = %s", held.Answer)
		}
	})
}

func TestUplink_RestoredBackupNeverLosesOrRepeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(6)
		for i, d := range docs[:4] {
			e.put(d, map[string]any{"title": fmt.Sprintf("b%d", i)})
		}
		ctx := context.Background()
		backup := filepath.Join(t.TempDir(), "backup.db")
		if err := e.store.Backup(ctx, backup); err != nil {
			t.Fatal(err)
		}
		// Two of the four reach ERP5 before the backup is restored: ERP5 knows their
		// (epoch, seq); the backup still has them pending.
		e.up.MaxEntries = 2
		e.erp5.addFault(BatchPath, faultNone, faultCutBefore)
		e.open()
		waitFor(t, time.Hour, "first batch", func() bool { return len(e.erp5.appliedLog()) == 2 })
		e.up.Close(ctx)
		path := e.store.Path
		e.store.Close()
		if _, err := sqlite.Restore(ctx, backup, path, sqlite.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		db := sqlite.NewDB(path)
		db.Synchronous = "off"
		db.SiteID = "site-a"
		if err := db.Open(ctx); err != nil {
			t.Fatal(err)
		}
		e.store = &testStore{DB: db, renamed: map[string]string{}}
		// A write after the restore, under the new epoch.
		e.put(docs[4], map[string]any{"title": "after"})
		e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter, Logger: discardLogger()}
		e.open()
		e.drain(time.Hour)
		last := map[string]string{docs[4]: "after"}
		for i, d := range docs[:4] {
			last[d] = fmt.Sprintf("b%d", i)
		}
		checkDelivery(t, e, last)
		if n := len(e.erp5.appliedLog()); n != 5 {
			t.Errorf("ERP5 applied %d entries, want 5 (each once)", n)
		}
		if e.erp5.count(ResultsPath) == 0 {
			t.Errorf("earlier-epoch entries were sent without asking ERP5's results")
		}
		e.up.Close(ctx)
		db.Close()
	})
}

// stockPersons returns ERP5's Person documents created through newContent (ids ≥ 1000).
func (e *env) stockPersons() map[string]map[string]any {
	e.erp5.mu.Lock()
	defer e.erp5.mu.Unlock()
	out := map[string]map[string]any{}
	for id, d := range e.erp5.docs {
		if n, err := strconv.Atoi(id[strings.LastIndexByte(id, '/')+1:]); err == nil && n > 1000 {
			out[id] = d
		}
	}
	return out
}

func TestUplink_StockFaults(t *testing.T) {
	type tc struct {
		path  string
		fault fault
	}
	var cases []tc
	for _, f := range []fault{faultNone, faultCutBefore, fault503, fault429, faultTimeout, faultGarbage, faultCutAfter, fault502After} {
		cases = append(cases, tc{"Base_edit", f})
	}
	// A create survives faults in which ERP5 created nothing.
	for _, f := range []fault{faultCutBefore, fault503, fault429, faultTimeout, faultGarbage} {
		cases = append(cases, tc{"hateoas:newContent", f})
	}
	for _, c := range cases {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/%s/seed%d", c.path, c.fault, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(seed, 11))
					e := newEnv(t, linksim.Thuraya)
					e.erp5.receiver = false
					docs := e.seedDocs(3 + rng.IntN(3))
					last := map[string]string{}
					var posts []string
					for i := 0; i < 6+rng.IntN(6); i++ {
						if rng.IntN(3) == 0 {
							res := e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": fmt.Sprintf("new%d", i)}})
							posts = append(posts, fmt.Sprintf("new%d", i))
							_ = res
							continue
						}
						d := docs[rng.IntN(len(docs))]
						v := fmt.Sprintf("v%d", i)
						e.put(d, map[string]any{"title": v})
						last[d] = v
					}
					if len(posts) == 0 {
						e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "newx"}})
						posts = append(posts, "newx")
					}
					e.erp5.addFault(c.path, c.fault)
					e.open()
					e.drain(3 * time.Hour)
					if st := e.up.Status(); st.Mode != ModeStock {
						t.Fatalf("mode = %q, want stock", st.Mode)
					}
					for d, want := range last {
						if got := e.erp5.doc(d)["title"]; got != want {
							t.Errorf("%s: title = %v, want %s", d, got, want)
						}
					}
					created := e.stockPersons()
					if len(created) != len(posts) {
						t.Errorf("ERP5 holds %d created documents for %d posts: %v", len(created), len(posts), created)
					}
					titles := map[string]bool{}
					for _, d := range created {
						titles[fmt.Sprint(d["title"])] = true
					}
					for _, p := range posts {
						if !titles[p] {
							t.Errorf("post %q missing at ERP5", p)
						}
					}
					if e.erp5.pending() != 0 {
						t.Errorf("fault not used")
					}
					for _, en := range e.store.entries(t) {
						if en.State != outbox.StateDone && en.State != outbox.StateMerged {
							t.Errorf("entry %d is %s (%s)", en.Seq, en.State, en.LastError)
						}
						if en.State == outbox.StateDone && en.Mode != outbox.ModeStock {
							t.Errorf("entry %d sent in mode %q", en.Seq, en.Mode)
						}
					}
				})
			})
		}
	}
}

// TestUplink_StockCreateWeakness demonstrates stock mode's documented weakness (docs/DESIGN.md §7):
// when the answer to newContent is lost after ERP5 created the document, the gateway cannot
// tell, creates again, and ERP5 keeps an empty orphan. The edit itself is not repeated on
// the orphan, and the receiver does not have the weakness (TestUplink_ReceiverFaults).
func TestUplink_StockCreateWeakness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.erp5.receiver = false
		e.seedDocs(1)
		e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "Zoe"}})
		e.erp5.addFault("hateoas:newContent", faultCutAfter)
		e.open()
		e.drain(time.Hour)
		created := e.stockPersons()
		if len(created) != 2 {
			t.Fatalf("ERP5 holds %d created documents, want 2 (the orphan and the real one): %v", len(created), created)
		}
		var empty, full int
		for _, d := range created {
			if d["title"] == "Zoe" {
				full++
			} else if d["title"] == nil {
				empty++
			}
		}
		if full != 1 || empty != 1 {
			t.Errorf("created = %v, want one Zoe and one empty orphan", created)
		}
	})
}

// TestUplink_StockRecordsCreatedID checks that a create whose edit failed repeats only the
// edit: the id newContent gave is recorded before the edit is sent.
func TestUplink_StockRecordsCreatedID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.erp5.receiver = false
		e.seedDocs(1)
		res := e.store.write(t, sqlite.Write{Op: sqlite.OpPost, Doc: map[string]any{"portal_type": "Person", "title": "Yan"}})
		e.erp5.addFault("Base_edit", faultCutAfter, faultTimeout)
		e.open()
		e.drain(3 * time.Hour)
		if n := len(e.stockPersons()); n != 1 {
			t.Errorf("%d documents created, want 1", n)
		}
		if got := e.erp5.count("hateoas:newContent"); got != 1 {
			t.Errorf("newContent called %d times, want 1", got)
		}
		if id := e.store.renamed[res.ID]; e.erp5.doc(id)["title"] != "Yan" {
			t.Errorf("created document %q = %v", id, e.erp5.doc(id))
		}
	})
}

// TestUplink_StockRemoveWaitsForReceiver: stock ERP5 cannot remove or run a transition; the
// entry waits (deferred, needs_receiver) and is sent once a receiver appears.
func TestUplink_StockRemoveWaitsForReceiver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.erp5.receiver = false
		docs := e.seedDocs(2)
		rm := e.store.write(t, sqlite.Write{Op: sqlite.OpRemove, ID: docs[0]})
		other := e.put(docs[1], map[string]any{"title": "flows"})
		e.open()
		waitFor(t, time.Hour, "other document", func() bool { return e.entry(other).State == outbox.StateDone })
		got := e.entry(rm.Seq)
		if got.State != outbox.StateDeferred || got.LastError != "needs_receiver" {
			t.Errorf("remove in stock mode: %s %q", got.State, got.LastError)
		}
		// The receiver is installed; the hourly probe finds it.
		e.erp5.mu.Lock()
		e.erp5.receiver = true
		e.erp5.mu.Unlock()
		waitFor(t, 3*time.Hour, "remove sent through the receiver", func() bool { return e.entry(rm.Seq).State == outbox.StateDone })
		if e.erp5.doc(docs[0])["validation_state"] != "deleted" {
			t.Errorf("ERP5's document = %v", e.erp5.doc(docs[0]))
		}
	})
}

func TestUplink_BackoffTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Config{}) // no delay: request times are the waits exactly
		docs := e.seedDocs(1)
		e.put(docs[0], map[string]any{"title": "x"})
		const fails = 9
		for i := 0; i < fails; i++ {
			e.erp5.addFault(BatchPath, fault503)
		}
		e.open()
		e.drain(2 * time.Hour)
		times := e.erp5.when(BatchPath)
		if len(times) != fails+1 {
			t.Fatalf("%d batch requests, want %d", len(times), fails+1)
		}
		interval := DefaultInitialBackoff
		for i := 1; i < len(times); i++ {
			got := times[i].Sub(times[i-1])
			lo, hi := time.Duration(float64(interval)*0.5), time.Duration(float64(interval)*1.5)+time.Second
			if got < lo || got > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i, got, lo, hi)
			}
			interval = min(interval*2, DefaultMaxBackoff)
		}
		if d := e.up.Status().Link; d.State != LinkUp || d.Failures != 0 {
			t.Errorf("link after recovery: %+v", d)
		}
	})
}

func TestUplink_RetryAfter(t *testing.T) {
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{"86400", MaxRetryAfter}, // clamped
	} {
		t.Run(tt.header, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, linksim.Config{})
				e.erp5.retryAfter = tt.header
				docs := e.seedDocs(1)
				seq := e.put(docs[0], map[string]any{"title": "x"})
				e.erp5.addFault(BatchPath, fault429, fault429)
				e.open()
				waitFor(t, 3*time.Hour, "first 429", func() bool { return e.erp5.count(BatchPath) >= 1 })
				synctest.Wait()
				en := e.entry(seq)
				if en.State != outbox.StateDeferred || en.NextAttemptAt.Sub(e.erp5.when(BatchPath)[0]) != tt.want {
					t.Errorf("after 429: %s, next attempt in %v, want %v", en.State, en.NextAttemptAt.Sub(e.erp5.when(BatchPath)[0]), tt.want)
				}
				if nt := e.up.Status().Link.NextTryAt; !nt.Equal(en.NextAttemptAt) {
					t.Errorf("status next try %v, entry's next attempt %v", nt, en.NextAttemptAt)
				}
				e.drain(5 * time.Hour)
				times := e.erp5.when(BatchPath)
				if len(times) != 3 {
					t.Fatalf("%d requests", len(times))
				}
				for i := 1; i < 3; i++ {
					if got := times[i].Sub(times[i-1]); got != tt.want {
						t.Errorf("wait %d = %v, want exactly %v", i, got, tt.want)
					}
				}
			})
		})
	}
}

func TestUplink_NeverSpins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(3)
		for _, d := range docs {
			e.put(d, map[string]any{"title": "x"})
		}
		e.erp5.mu.Lock()
		for _, d := range docs {
			e.erp5.fail500[d] = true
		}
		e.erp5.mu.Unlock()
		e.open()
		// A day of a failing ERP5, with writes arriving all along.
		for h := 0; h < 24; h++ {
			time.Sleep(time.Hour)
			e.up.Wake()
		}
		n := e.erp5.count(BatchPath) + e.erp5.count(CapabilityPath) + e.erp5.count(ResultsPath)
		max := int(24*time.Hour/(DefaultMaxBackoff/2)) + 30
		if n > max {
			t.Errorf("%d requests in a day of failures, want at most %d", n, max)
		}
		if n < 24*60/5 {
			t.Errorf("%d requests in a day: the uplink gave up retrying", n)
		}
	})
}

func TestUplink_FlushCutsBackoffWakeDoesNot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Config{})
		docs := e.seedDocs(1)
		e.put(docs[0], map[string]any{"title": "x"})
		e.erp5.retryAfter = "600"
		e.erp5.addFault(BatchPath, fault429)
		e.open()
		waitFor(t, time.Minute, "429", func() bool { return e.erp5.count(BatchPath) == 1 })
		synctest.Wait()
		e.up.Wake()
		time.Sleep(time.Minute)
		if n := e.erp5.count(BatchPath); n != 1 {
			t.Errorf("Wake retried during the backoff: %d requests", n)
		}
		// An operator's flush (after `outbox flush` made the entries due) tries at once.
		if _, err := e.store.Flush(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		e.up.Flush()
		e.drain(time.Minute)
		if got := e.erp5.when(BatchPath)[1].Sub(start); got > time.Second {
			t.Errorf("flush retried after %v", got)
		}
	})
}

func TestUplink_Probe(t *testing.T) {
	t.Run("one 404 is not stock", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, linksim.Thuraya)
			docs := e.seedDocs(1)
			e.put(docs[0], map[string]any{"title": "x"})
			e.erp5.addFault(CapabilityPath, fault404)
			e.open()
			e.drain(time.Hour)
			if st := e.up.Status(); st.Mode != ModeBatch || st.Capability == nil || st.Capability.Version != 1 {
				t.Errorf("status = %+v", st)
			}
			if n := e.erp5.count(BatchPath); n != 1 {
				t.Errorf("%d batches", n)
			}
			if v, _ := e.store.Meta(context.Background(), MetaRetentionDays); v != "90" {
				t.Errorf("retention recorded = %q", v)
			}
		})
	})
	t.Run("5xx and cuts retry the probe", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, linksim.Thuraya)
			docs := e.seedDocs(1)
			e.put(docs[0], map[string]any{"title": "x"})
			e.erp5.addFault(CapabilityPath, fault404, fault503, fault404, faultCutBefore, faultGarbage, fault404)
			e.open()
			e.drain(time.Hour)
			if st := e.up.Status(); st.Mode != ModeBatch {
				t.Errorf("mode = %q, want batch: 404s were never two in a row", st.Mode)
			}
		})
	})
	t.Run("two 404s mean stock, re-probed hourly", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, linksim.Thuraya)
			e.erp5.receiver = false
			docs := e.seedDocs(1)
			e.put(docs[0], map[string]any{"title": "x"})
			e.open()
			e.drain(time.Hour)
			if st := e.up.Status(); st.Mode != ModeStock {
				t.Fatalf("mode = %q", st.Mode)
			}
			if n := e.erp5.count(CapabilityPath); n != 2 {
				t.Errorf("%d probes, want 2", n)
			}
			time.Sleep(3*time.Hour + time.Minute)
			if n := e.erp5.count(CapabilityPath); n < 8 || n > 10 {
				t.Errorf("%d probes after 3 hours, want 2 per hour", n)
			}
		})
	})
	t.Run("protocol batch waits for the receiver", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, linksim.Thuraya)
			e.erp5.receiver = false
			e.up.Protocol = ProtocolBatch
			docs := e.seedDocs(1)
			seq := e.put(docs[0], map[string]any{"title": "x"})
			e.open()
			time.Sleep(time.Hour)
			if st := e.entry(seq).State; st != outbox.StatePending {
				t.Errorf("entry %s without a receiver", st)
			}
			if n := e.erp5.count("Base_edit"); n != 0 {
				t.Errorf("stock edits with protocol batch: %d", n)
			}
		})
	})
}

func TestUplink_Unauthorized(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(1)
		seq := e.put(docs[0], map[string]any{"title": "x"})
		e.erp5.addFault(BatchPath, fault401, fault401)
		var alarms []Alarm
		var mu sync.Mutex
		e.up.OnAlarm = func(a Alarm) { mu.Lock(); alarms = append(alarms, a); mu.Unlock() }
		e.open()
		waitFor(t, time.Hour, "401", func() bool { return e.entry(seq).State == outbox.StateDeferred })
		if en := e.entry(seq); !strings.Contains(en.LastError, "401") {
			t.Errorf("entry after 401: %s %q", en.State, en.LastError)
		}
		mu.Lock()
		if len(alarms) == 0 || alarms[0].Kind != AlarmUnauthorized {
			t.Errorf("alarms = %+v", alarms)
		}
		mu.Unlock()
		e.drain(time.Hour)
		if e.erp5.doc(docs[0])["title"] != "x" {
			t.Errorf("not delivered once the credentials work")
		}
	})
}

func TestUplink_TooLargeSplits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		docs := e.seedDocs(10)
		for i, d := range docs {
			e.put(d, map[string]any{"title": fmt.Sprintf("n%d", i)})
		}
		e.open()
		e.drain(time.Hour)
		// The receiver lowered its limit after the capability was read: 413 splits.
		for i, d := range docs {
			e.put(d, map[string]any{"title": fmt.Sprintf("m%d", i)})
		}
		e.erp5.mu.Lock()
		e.erp5.maxEntries = 3
		e.erp5.mu.Unlock()
		before := e.erp5.count(BatchPath)
		e.up.Wake()
		e.drain(time.Hour)
		last := map[string]string{}
		for i, d := range docs {
			last[d] = fmt.Sprintf("m%d", i)
		}
		checkDelivery(t, e, last)
		if n := e.erp5.count(BatchPath) - before; n > 10 {
			t.Errorf("%d requests after the 413", n)
		}
	})
}

func TestUplink_LogsEachErrorOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		var logs logBuffer
		e.up.Logger = logs.logger()
		docs := e.seedDocs(1)
		e.put(docs[0], map[string]any{"title": "x"})
		for i := 0; i < 6; i++ {
			e.erp5.addFault(BatchPath, fault503)
		}
		e.open()
		e.drain(2 * time.Hour)
		out := logs.String()
		warns := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "HTTP 503") && !strings.Contains(l, "level=DEBUG") {
				warns++
			}
		}
		if n := warns; n != 1 {
			t.Errorf("HTTP 503 logged %d times, want once:\n%s", n, out)
		}
		if !strings.Contains(out, "recovered after 6 failures") {
			t.Errorf("no recovery line:\n%s", out)
		}
	})
}

func TestUplink_StatusAndLinkState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.up.DailyBudget = 1 << 30
		docs := e.seedDocs(2)
		e.put(docs[0], map[string]any{"title": "x"})
		e.open()
		e.drain(time.Hour)
		st := e.up.Status()
		if st.Link.State != LinkUp || st.Link.LastUp.IsZero() || st.Mode != ModeBatch {
			t.Errorf("status = %+v", st.Link)
		}
		if st.Bytes.UpToday == 0 || st.Bytes.DownToday == 0 || st.Bytes.UpTotal != st.Bytes.UpToday {
			t.Errorf("bytes = %+v", st.Bytes)
		}
		ls := e.link.Stats()
		if st.Bytes.UpTotal != ls.Sent[linksim.Up] || st.Bytes.DownTotal != ls.Delivered[linksim.Down] {
			t.Errorf("meter %+v, link sent %v delivered %v", st.Bytes, ls.Sent, ls.Delivered)
		}
		if !st.SkewKnown || st.ClockSkew.Abs() > time.Second {
			t.Errorf("skew = %v (%v)", st.ClockSkew, st.SkewKnown)
		}
		// The link goes down: the next try fails and the state says so.
		e.link.SetDown(true)
		e.link.Cut()
		seq := e.put(docs[1], map[string]any{"title": "y"})
		e.up.Wake()
		time.Sleep(time.Minute)
		st = e.up.Status()
		if st.Link.State != LinkDown || st.Link.NextTryAt.IsZero() || st.Link.LastError == "" {
			t.Errorf("link while down = %+v", st.Link)
		}
		if en := e.entry(seq); en.State != outbox.StateDeferred {
			t.Errorf("entry while down: %s %q", en.State, en.LastError)
		}
		e.link.SetDown(false)
		e.drain(time.Hour)
		if st := e.up.Status(); st.Link.State != LinkUp {
			t.Errorf("link after = %+v", st.Link)
		}
	})
}

func TestUplink_DailyBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		e.up.DailyBudget = 1 // the first exchange (the probe) spends it
		e.up.ProbeInterval = 48 * time.Hour
		docs := e.seedDocs(2)
		e.put(docs[0], map[string]any{"title": "x"})
		e.open()
		waitFor(t, time.Hour, "probe", func() bool { return e.erp5.count(CapabilityPath) == 1 })
		e.put(docs[1], map[string]any{"title": "y"})
		e.up.Wake()
		time.Sleep(time.Hour)
		if n := e.erp5.count(BatchPath); n != 0 {
			t.Errorf("%d batches with the budget spent", n)
		}
		if st := e.up.Status(); !st.BudgetSpent || len(st.Alarms) == 0 || st.Alarms[0].Kind != AlarmBudget {
			t.Errorf("status = %+v", st)
		}
		// The next UTC day the uplink goes on by itself.
		time.Sleep(24 * time.Hour)
		if n := e.erp5.count(BatchPath); n != 1 {
			t.Errorf("%d batches the next day, want 1", n)
		}
		if e.erp5.doc(docs[0])["title"] != "x" || e.erp5.doc(docs[1])["title"] != "y" {
			t.Errorf("not delivered the next day")
		}
	})
}

func TestUplink_Metrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		reg := prometheus.NewRegistry()
		e.up.Metrics = NewMetrics(reg)
		docs := e.seedDocs(3)
		for _, d := range docs {
			e.put(d, map[string]any{"title": "m"})
		}
		e.erp5.addFault(BatchPath, fault503)
		e.open()
		e.drain(time.Hour)
		m := e.up.Metrics
		if got := metricValue(m.Entries.WithLabelValues(outbox.StateDone)); got != 3 {
			t.Errorf("done entries = %v", got)
		}
		if got := metricValue(m.Entries.WithLabelValues(outbox.StateDeferred)); got != 3 {
			t.Errorf("deferred entries = %v", got)
		}
		if got := metricValue(m.Requests.WithLabelValues("POST", "503")); got != 1 {
			t.Errorf("503 requests = %v", got)
		}
		st := e.up.Status()
		if got := metricValue(m.Bytes.WithLabelValues("up")); got != float64(st.Bytes.UpTotal) || got == 0 {
			t.Errorf("bytes up metric %v, meter %d", got, st.Bytes.UpTotal)
		}
		if got := metricValue(m.LinkState); got != float64(LinkUp) {
			t.Errorf("link state metric = %v", got)
		}
		if mf, err := reg.Gather(); err != nil || len(mf) == 0 {
			t.Errorf("gather: %d families, %v", len(mf), err)
		}
	})
}

// metricValue reads a counter's or gauge's value.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	return -1
}

// TestUplink_LinkReturnCutsBackoff: while the uplink waits out a long backoff after the link
// went down, any exchange that gets through (the downlink's) proves the link is back, and
// the uplink tries at once.
func TestUplink_LinkReturnCutsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, linksim.Thuraya)
		// Every wait is 30–90 minutes (an hour with jitter).
		e.up.InitialBackoff, e.up.MaxBackoff = time.Hour, time.Hour
		docs := e.seedDocs(1)
		e.open()
		e.drain(time.Hour)
		e.link.SetDown(true)
		e.link.Cut()
		seq := e.put(docs[0], map[string]any{"title": "after the outage"})
		e.up.Wake()
		time.Sleep(time.Minute)
		e.link.SetDown(false)
		st := e.up.Status()
		if st.Link.State != LinkDown || st.Link.NextTryAt.Sub(time.Now()) < 25*time.Minute {
			t.Fatalf("before the return: %+v", st.Link)
		}
		// The downlink's request gets through.
		if _, err := e.client.Capability(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "entry sent after the link returned", func() bool { return e.entry(seq).State == outbox.StateDone })
	})
}
