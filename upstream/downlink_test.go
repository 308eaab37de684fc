package upstream

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

var modes = []string{ModeBatch, ModeStock}

// optsFor is the double's options for a mode: stock turns the receiver off.
func optsFor(mode string, o erp5sim.Options) erp5sim.Options {
	o.Stock = mode == ModeStock
	return o
}

var personScope = Scope{Name: "people", PortalType: "Person", Fields: personFields}

// TestDownlink_InitialPullAcrossCuts pulls a scope of thousands of documents while the link
// is cut and goes down; the initial sync resumes from its cursor each time and ends with the
// replica identical to the double's data for the scope.
func TestDownlink_InitialPullAcrossCuts(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
				const n = 3000
				e.sim.Load(persons(n, time.Now()))
				e.dl.PageSize = 200
				e.open()
				// Cut the connection in the middle of pages, then a 3-minute outage.
				for _, at := range []time.Duration{4 * time.Second, 11 * time.Second} {
					time.Sleep(at)
					e.link.Cut()
				}
				time.Sleep(5 * time.Second)
				e.link.Outage(3 * time.Minute)
				mid := e.dl.Progress()[0]
				if mid.Complete || mid.Rows == 0 || mid.Rows >= n {
					t.Errorf("progress in the middle: %+v", mid)
				}
				waitFor(t, 2*time.Hour, "initial sync", e.complete)
				e.checkReplica("Person", personFields, all)
				rows, total := e.rec.received()
				if len(rows) != n {
					t.Errorf("%d distinct documents received, want %d", len(rows), n)
				}
				// Resuming re-reads at most the overlap of a stock page, never the scope again.
				if total > n+2*200 {
					t.Errorf("%d rows received for %d documents: the pull did not resume from its cursor", total, n)
				}
				if st := e.dl.Status(); st.Failures != 0 || st.Mode != mode {
					t.Errorf("status %+v", st)
				}
				logs := e.logs.String()
				for _, want := range []string{"initial sync starting", "initial sync complete", "downlink pull failed", "downlink recovered"} {
					if !strings.Contains(logs, want) {
						t.Errorf("no %q in the logs", want)
					}
				}
				if got := len(e.rec.changedIDs()); got != n {
					t.Errorf("changed notified for %d ids, want %d", got, n)
				}
				fresh, _ := e.store.FreshAt(context.Background())
				if fresh["people"].IsZero() {
					t.Error("fresh_at not set")
				}
			})
		})
	}
}

// TestDownlink_EditsDuringPull edits documents at the double while the replica is being
// pulled, with a stopped clock (identical modification seconds) and an indexing lag: every
// edit ends in the replica.
func TestDownlink_EditsDuringPull(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clock := erp5sim.NewClock(time.Now().Truncate(time.Second))
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{Now: clock.Now, IndexLag: 2 * time.Minute}), personScope)
				const n = 2000
				docs := persons(n, clock.Now().Add(-time.Hour))
				e.sim.Load(docs)
				e.dl.PageSize = 100
				e.dl.Interval = time.Hour
				e.open()
				rng := rand.New(rand.NewPCG(7, 7))
				edit := func(tag string, k int) {
					for range k {
						id := docs[rng.IntN(n)].ID
						if err := e.sim.Edit(id, map[string]any{"title": fmt.Sprintf("%s %d", tag, rng.IntN(1e6)), "function": tag}); err != nil {
							t.Fatal(err)
						}
					}
				}
				// Edits during the pull, all in the clock's one second, indexed two minutes later.
				for i := range 5 {
					time.Sleep(3 * time.Second)
					if e.complete() {
						t.Fatalf("the initial sync ended before edit round %d", i)
					}
					edit(fmt.Sprintf("during-%d", i), 20)
				}
				waitFor(t, time.Hour, "initial sync", e.complete)
				if len(e.replicaDiff("Person", personFields, all)) == 0 {
					t.Fatal("the replica has the edits before the catalog indexed them")
				}
				clock.Advance(3 * time.Minute) // the catalog catches up
				e.settle("a pull after the catalog caught up")
				e.checkReplica("Person", personFields, all)

				// More edits in one second, each pulled before the next: later edits in a
				// second already read, of ids before and after the last one read.
				clock.Advance(time.Minute)
				for i := range 4 {
					edit(fmt.Sprintf("same-second-%d", i), 3)
					clock.Advance(3 * time.Minute)
					e.settle("a pull")
					if d := e.replicaDiff("Person", personFields, all); len(d) > 0 {
						t.Errorf("round %d: %v", i, d)
					}
				}
				e.checkReplica("Person", personFields, all)
				clock.Advance(-9 * time.Minute) // the next edits share the second of those above
				edit("late", 5)
				clock.Advance(10 * time.Minute)
				e.settle("a pull")
				e.checkReplica("Person", personFields, all)
			})
		})
	}
}

// TestDownlink_LeavesScope: a document that leaves the scope at ERP5 leaves the replica at the
// next reconciliation, unless it has pending local edits.
func TestDownlink_LeavesScope(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				scope := Scope{Name: "validated", PortalType: "Person", Query: `validation_state:"validated"`, Fields: personFields}
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), scope)
				docs := persons(60, time.Now().Add(-time.Hour))
				e.sim.Load(docs)
				e.dl.Interval = 10 * time.Minute
				e.dl.ReconcileInterval = time.Hour
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				inScope := func(d *erp5sim.Document) bool { return d.Properties["validation_state"] == "validated" }
				e.checkReplica("Person", personFields, inScope)
				leaving, kept := docs[1].ID, docs[2].ID
				e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: kept, Doc: map[string]any{"function": "site edit"}})
				for _, id := range []string{leaving, kept} {
					if err := e.sim.Transition(id, "invalidate_action"); err != nil {
						t.Fatal(err)
					}
				}
				e.rec.reset()
				time.Sleep(61 * time.Minute)
				e.settle("a pull with a reconciliation")
				ctx := context.Background()
				if _, err := e.store.GetDocument(ctx, leaving); gateway.ErrorCode(err) != gateway.ENOTFOUND {
					t.Errorf("%s left the scope but is still in the replica: %v", leaving, err)
				}
				if _, err := e.store.GetDocument(ctx, kept); err != nil {
					t.Errorf("%s has a pending edit and was removed: %v", kept, err)
				}
				if ids := e.rec.changedIDs(); !slices.Contains(ids, leaving) {
					t.Errorf("changed %v lacks %s", ids, leaving)
				}
				e.ignore = map[string]bool{kept: true}
				e.checkReplica("Person", personFields, inScope)
				if !strings.Contains(e.logs.String(), "left their scope") {
					t.Error("no reconciliation in the logs")
				}
			})
		})
	}
}

// TestDownlink_ConflictAndPendingEdits: a field edited on both sides becomes a conflict entry
// with both values; a pending local edit is never overwritten, while head office's other
// fields come in.
func TestDownlink_ConflictAndPendingEdits(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
				docs := persons(20, time.Now().Add(-time.Hour))
				e.sim.Load(docs)
				e.dl.Interval = time.Hour
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				a, b := docs[3], docs[4]
				// No uplink runs: the local edits stay pending.
				wa := e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: a.ID, Doc: map[string]any{"title": "site title"}})
				wb := e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: b.ID, Doc: map[string]any{"title": "site title B"}})
				time.Sleep(2 * time.Second)
				must(t, e.sim.Edit(a.ID, map[string]any{"title": "office title", "function": "office function"}))
				must(t, e.sim.Edit(b.ID, map[string]any{"last_name": "Office"}))
				e.rec.reset()
				e.settle("a pull")
				ctx := context.Background()
				ea, _ := e.store.OutboxEntry(ctx, wa.Seq)
				if ea.State != outbox.StateConflict {
					t.Fatalf("entry of %s is %s, want conflict", a.ID, ea.State)
				}
				base, current, local := outbox.ConflictValues(ea)
				if base["title"] != a.Properties["title"] || current["title"] != "office title" || local["title"] != "site title" {
					t.Errorf("conflict: base %v, current %v, local %v", base, current, local)
				}
				if eb, _ := e.store.OutboxEntry(ctx, wb.Seq); eb.State != outbox.StatePending {
					t.Errorf("entry of %s is %s, want pending", b.ID, eb.State)
				}
				body := func(id string) map[string]any {
					d, err := e.store.GetDocument(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					m, _ := sqlite.DecodeObject(d.Body)
					return m
				}
				if got := body(a.ID); got["title"] != "site title" || got["function"] != "office function" {
					t.Errorf("%s: %v", a.ID, got)
				}
				if got := body(b.ID); got["title"] != "site title B" || got["last_name"] != "Office" {
					t.Errorf("%s: %v", b.ID, got)
				}
				if ids := e.rec.changedIDs(); !slices.Equal(ids, []string{a.ID, b.ID}) {
					t.Errorf("changed %v", ids)
				}
				// Resolving with the remote value takes head office's title.
				if _, err := e.store.Resolve(ctx, wa.Seq, sqlite.KeepRemote, "op"); err != nil {
					t.Fatal(err)
				}
				if got := body(a.ID); got["title"] != "office title" {
					t.Errorf("after resolve: %v", got)
				}
			})
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDownlink_OwnEditsNotPulledBack: with the receiver, the site's own edits, applied by the
// uplink, are not pulled back; head office's later edit of the same document is.
func TestDownlink_OwnEditsNotPulledBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		docs := persons(30, time.Now().Add(-time.Hour))
		e.sim.Load(docs)
		e.dl.Interval = time.Hour
		e.withUplink()
		e.open()
		waitFor(t, time.Hour, "initial sync", e.complete)
		id := docs[5].ID
		e.rec.reset()
		w := e.store.write(t, sqlite.Write{Op: sqlite.OpPut, ID: id, Doc: map[string]any{"title": "from the site"}})
		e.up.Wake()
		waitFor(t, time.Hour, "the edit to reach ERP5", func() bool {
			en, _ := e.store.OutboxEntry(context.Background(), w.Seq)
			return en.State == outbox.StateDone
		})
		e.settle("a pull")
		if rows, _ := e.rec.received(); rows[id] != 0 {
			t.Errorf("the site's own edit of %s was pulled back", id)
		}
		if ids := e.rec.changedIDs(); slices.Contains(ids, id) {
			t.Errorf("changed notified for the site's own edit: %v", ids)
		}
		e.checkReplica("Person", personFields, all)
		must(t, e.sim.Edit(id, map[string]any{"title": "head office after"}))
		e.settle("a pull")
		if rows, _ := e.rec.received(); rows[id] != 1 {
			t.Errorf("head office's edit received %d times", rows[id])
		}
		e.checkReplica("Person", personFields, all)
	})
}

// TestDownlink_Changed: the changed callback carries exactly the ids head office changed.
func TestDownlink_Changed(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
				docs := persons(50, time.Now().Add(-time.Hour))
				e.sim.Load(docs)
				e.dl.Interval = time.Hour
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				e.rec.reset()
				time.Sleep(time.Minute)
				var want []string
				for _, i := range []int{2, 17, 33} {
					must(t, e.sim.Edit(docs[i].ID, map[string]any{"reference": fmt.Sprintf("NEW-%d", i)}))
					want = append(want, docs[i].ID)
				}
				// An edit of a field outside the scope changes nothing the replica holds.
				must(t, e.sim.Edit(docs[40].ID, map[string]any{"description": "not replicated"}))
				e.settle("a pull")
				slices.Sort(want)
				if got := e.rec.changedIDs(); !slices.Equal(got, want) {
					t.Errorf("changed %v, want %v", got, want)
				}
			})
		})
	}
}

// TestDownlink_Fetch covers reads outside the replica (docs/DESIGN.md §4).
func TestDownlink_Fetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, Scope{PortalType: "Person", Fields: personFields})
		e.sim.Load(persons(10, time.Now().Add(-time.Hour)))
		org := &erp5sim.Document{ID: "organisation_module/7", PortalType: "Organisation",
			Properties: map[string]any{"title": "Acme", "role": "client"}, ModificationDate: time.Now()}
		e.sim.Load([]*erp5sim.Document{org})
		e.dl.Interval = time.Hour
		ctx := context.Background()
		e.open()
		waitFor(t, time.Hour, "initial sync", e.complete)
		code := func(id string) string {
			_, err := e.dl.Fetch(ctx, id)
			return gateway.ErrorCode(err)
		}
		before := e.client.Requests()
		if c := code("person_module/local-01JABC"); c != gateway.ENOTFOUND {
			t.Errorf("local id: %q", c)
		}
		if c := code("person_module/999"); c != gateway.ENOTFOUND {
			t.Errorf("id in a complete scope: %q", c)
		}
		if n := e.client.Requests(); n != before {
			t.Errorf("%d requests for ids known absent", n-before)
		}
		doc, err := e.dl.Fetch(ctx, org.ID)
		if err != nil || doc.PortalType != "Organisation" || !strings.Contains(string(doc.Body), `"title":"Acme"`) {
			t.Fatalf("fetch: %v %+v", err, doc)
		}
		// Cached: the next get is answered by the replica.
		if _, err := e.store.GetDocument(ctx, org.ID); err != nil {
			t.Errorf("not cached: %v", err)
		}
		if c := code("organisation_module/404"); c != gateway.ENOTFOUND {
			t.Errorf("missing at ERP5: %q", c)
		}
		// Link down: 503 offline, at once once a request has failed.
		e.link.SetDown(true)
		if c := code("organisation_module/8"); c != gateway.EUNAVAILABLE {
			t.Errorf("link down: %q", c)
		}
		start := time.Now()
		_, err = e.dl.Fetch(ctx, "organisation_module/9")
		if gateway.ErrorCode(err) != gateway.EUNAVAILABLE || gateway.ErrorReason(err) != "offline" || time.Since(start) > 0 {
			t.Errorf("known down: %v after %v", err, time.Since(start))
		}
		e.link.SetDown(false)
	})
}

// TestDownlink_UplinkFirst: a pull waits while the uplink is sending, at most MaxUplinkWait.
func TestDownlink_UplinkFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		e.sim.Load(persons(10, time.Now().Add(-time.Hour)))
		var busy atomic.Bool
		busy.Store(true)
		e.dl.UplinkBusy = busy.Load
		e.dl.MaxUplinkWait = 10 * time.Minute
		e.open()
		time.Sleep(time.Minute)
		if n := e.sim.Stats().Requests[erp5sim.EndpointChanges]; n != 0 {
			t.Fatalf("%d changes queries while the uplink was busy", n)
		}
		if st := e.dl.Status(); st.State != "waiting_uplink" {
			t.Errorf("state %q", st.State)
		}
		busy.Store(false)
		waitFor(t, time.Minute, "initial sync", e.complete)
		// A busy uplink that never ends delays a pull by MaxUplinkWait only.
		busy.Store(true)
		before := e.sim.Stats().Requests[erp5sim.EndpointChanges]
		start := time.Now()
		e.dl.SyncNow()
		waitFor(t, time.Hour, "a pull", func() bool { return e.sim.Stats().Requests[erp5sim.EndpointChanges] > before })
		if el := time.Since(start); el < 10*time.Minute || el > 11*time.Minute {
			t.Errorf("pulled after %v with a busy uplink, want MaxUplinkWait (10m)", el)
		}
	})
}

// TestDownlink_LinkReturnAndSyncNow: a pull follows the link's return at once, and SyncNow;
// otherwise the interval.
func TestDownlink_LinkReturnAndSyncNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		docs := persons(10, time.Now().Add(-time.Hour))
		e.sim.Load(docs)
		e.dl.Interval = time.Hour
		e.open()
		waitFor(t, time.Minute, "initial sync", e.complete)
		changes := func() int { return e.sim.Stats().Requests[erp5sim.EndpointChanges] }
		n := changes()
		time.Sleep(30 * time.Minute)
		if changes() != n {
			t.Fatalf("pulled before the interval")
		}
		e.dl.SyncNow()
		waitFor(t, time.Minute, "SyncNow's pull", func() bool { return changes() > n })
		// The link goes down; the downlink's tries fail and back off.
		e.link.SetDown(true)
		e.dl.SyncNow()
		time.Sleep(20 * time.Minute)
		if st := e.dl.Status(); st.Failures < 3 || st.State != "backoff" {
			t.Fatalf("status while down: %+v", st)
		}
		must(t, e.sim.Edit(docs[0].ID, map[string]any{"title": "while down"}))
		e.link.SetDown(false)
		// Another exchange (the uplink's) finds the link back: the pull follows at once, not
		// at the end of the downlink's own backoff.
		next := e.dl.Status().NextPull
		if _, err := e.client.Capability(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the pull after the link's return", func() bool {
			st := e.dl.Status()
			return st.Failures == 0 && st.State == "idle"
		})
		if time.Now().After(next) {
			t.Errorf("pulled at %v, the backoff's own try was %v", time.Now(), next)
		}
		e.checkReplica("Person", personFields, all)
	})
}

// TestDownlink_DailyBudget: an initial sync stops when today's budget is spent and resumes
// the next UTC day from its cursor.
func TestDownlink_DailyBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		e.sim.Load(persons(2000, time.Now().Add(-time.Hour)))
		e.dl.PageSize = 200
		e.dl.DailyBudget = 60_000
		e.open()
		waitFor(t, time.Hour, "the budget to be spent", func() bool { return e.dl.Status().State == "budget_spent" })
		p := e.dl.Progress()[0]
		if p.Complete || p.Rows == 0 {
			t.Fatalf("progress %+v", p)
		}
		used := e.meter.Reading()
		if over := used.UpToday + used.DownToday - e.dl.DailyBudget; over > 40_000 {
			t.Errorf("%d bytes over the budget (one page at most)", over)
		}
		time.Sleep(time.Hour)
		if q := e.dl.Progress()[0]; q.Rows != p.Rows {
			t.Errorf("pulled with the budget spent: %d → %d rows", p.Rows, q.Rows)
		}
		e.dl.DailyBudget = 0 // a new day would do the same; the budget is read before each request
		e.dl.SyncNow()
		waitFor(t, time.Hour, "initial sync", e.complete)
		if _, total := e.rec.received(); total > 2000+200 {
			t.Errorf("%d rows for 2000 documents: not resumed from the cursor", total)
		}
		e.checkReplica("Person", personFields, all)
	})
}

// TestDownlink_NextDayAfterBudget: with the budget spent the next pull waits for the next UTC
// day.
func TestDownlink_NextDayAfterBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		e.sim.Load(persons(10, time.Now().Add(-time.Hour)))
		e.meter.Add(0, 1_000_000)
		e.dl.DailyBudget = 100_000
		e.open()
		time.Sleep(time.Minute)
		if st := e.dl.Status(); st.State != "budget_spent" || e.complete() {
			t.Fatalf("status %+v", st)
		}
		y, m, d := time.Now().UTC().Date()
		tomorrow := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
		if next := e.dl.Status().NextPull; next.Before(tomorrow) || next.After(tomorrow.Add(time.Minute)) {
			t.Errorf("next pull %v, want the next UTC day %v", next, tomorrow)
		}
		time.Sleep(time.Until(tomorrow) + time.Minute)
		waitFor(t, time.Hour, "initial sync", e.complete)
	})
}

// TestDownlink_DefinitionChange: a scope whose fields change is pulled again from the start.
func TestDownlink_DefinitionChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, Scope{Name: "people", PortalType: "Person", Fields: []string{"title"}})
		e.sim.Load(persons(30, time.Now().Add(-time.Hour)))
		e.dl.Interval = time.Hour
		e.open()
		waitFor(t, time.Hour, "initial sync", e.complete)
		e.checkReplica("Person", []string{"title"}, all)
		must(t, e.dl.Close(context.Background()))
		dl := &Downlink{Client: e.client, Replica: e.rec, Scopes: []Scope{personScope}, Gateway: "site-a",
			Logger: e.logs.logger(), Interval: time.Hour}
		e.dl = dl
		e.client.OnExchange = nil // no request runs: the new downlink takes the link's news
		e.open()
		waitFor(t, time.Hour, "initial sync", e.complete)
		e.checkReplica("Person", personFields, all)
		if !strings.Contains(e.logs.String(), "scope definition changed") {
			t.Error("no log of the definition change")
		}
	})
}

// TestDownlink_SeededOffline seeds the replica from an export with versions and modification
// dates (`docs import --set-cursors`): the first sync fetches only what changed since.
func TestDownlink_SeededOffline(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
				const n = 1000
				docs := persons(n, time.Now().Add(-time.Hour))
				e.sim.Load(docs)
				var export strings.Builder
				for _, d := range e.sim.Documents() {
					fmt.Fprintf(&export, `{"id":%q,"doc":%s,"version":%q,"modification_date":%q}`+"\n",
						d.ID, mustJSON(expected(d, personFields)), d.Version(), d.ModificationDate.UTC().Format(time.RFC1123Z))
				}
				seeder, err := NewCursorSeeder([]Scope{personScope}, nil)
				must(t, err)
				ctx := context.Background()
				_, err = e.store.Import(ctx, strings.NewReader(export.String()), sqlite.ImportOptions{
					Enqueue: func(_ context.Context, _ *sql.Tx, rec sqlite.ImportRecord) error {
						return seeder.Observe(rec.ID, rec.PortalType, rec.Doc, rec.Version, rec.ModificationDate)
					},
				})
				must(t, err)
				if st := seeder.Stats(); st[0].Records != n || st[0].Position == "" {
					t.Fatalf("seed stats %+v", st)
				}
				must(t, e.rec.SetSyncCursors(ctx, seeder.Cursors()))
				time.Sleep(5 * time.Minute)
				var edited []string
				for _, i := range []int{10, 500, 999} {
					must(t, e.sim.Edit(docs[i].ID, map[string]any{"title": "after the export"}))
					edited = append(edited, docs[i].ID)
				}
				e.open()
				if !e.complete() {
					t.Error("a seeded scope is not complete")
				}
				e.settle("the first pull")
				e.checkReplica("Person", personFields, all)
				rows, total := e.rec.received()
				for _, id := range edited {
					if rows[id] == 0 {
						t.Errorf("%s edited after the export was not pulled", id)
					}
				}
				if total > 20 {
					t.Errorf("%d rows pulled after seeding %d documents", total, n)
				}
				if down := e.link.Stats().Sent[linksim.Down]; down > 20_000 {
					t.Errorf("%d bytes down for the first sync after seeding", down)
				}
			})
		})
	}
}

// TestDownlink_ApplyFailure: a page that cannot be stored is retried, its cursor unchanged.
func TestDownlink_ApplyFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		e.sim.Load(persons(500, time.Now().Add(-time.Hour)))
		e.dl.PageSize = 100
		fails := 2
		e.rec.fail = func([]ScopePage) error {
			if fails > 0 {
				fails--
				return errors.New("disk trouble")
			}
			return nil
		}
		e.open()
		waitFor(t, time.Hour, "initial sync", e.complete)
		e.checkReplica("Person", personFields, all)
		if _, total := e.rec.received(); total != 500 {
			t.Errorf("%d rows applied for 500 documents", total)
		}
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestDownlink_SameSecondAsCursor: documents modified in the very second of the last position
// read, after it was read (before and after its id), and a second edit of that document in
// the same second, are all pulled.
func TestDownlink_SameSecondAsCursor(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clock := erp5sim.NewClock(time.Now().Truncate(time.Second))
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{Now: clock.Now}), personScope)
				docs := persons(100, clock.Now().Add(-48*time.Hour))
				e.sim.Load(docs)
				e.dl.Interval = 24 * time.Hour
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				T := clock.Now().Add(time.Hour)
				at := func(t time.Time, id, title string) {
					clock.Set(t)
					must(e.t, e.sim.Edit(id, map[string]any{"title": title}))
				}
				at(T.Add(100*time.Millisecond), docs[50].ID, "first")
				clock.Set(T.Add(30 * time.Minute))
				e.settle("a pull")
				at(T.Add(200*time.Millisecond), docs[10].ID, "same second, id before")
				at(T.Add(300*time.Millisecond), docs[90].ID, "same second, id after")
				at(T.Add(400*time.Millisecond), docs[50].ID, "same second, again")
				clock.Set(T.Add(31 * time.Minute))
				e.rec.reset()
				e.settle("a pull")
				e.checkReplica("Person", personFields, all)
				if _, total := e.rec.received(); total > 5 {
					t.Errorf("%d rows re-read for 3 edits", total)
				}
			})
		})
	}
}

// TestDownlink_ResumeAfterRestart: a gateway stopped during an initial sync resumes it from
// the stored cursor.
func TestDownlink_ResumeAfterRestart(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
				const n = 1500
				e.sim.Load(persons(n, time.Now().Add(-time.Hour)))
				e.dl.PageSize = 100
				e.open()
				waitFor(t, time.Hour, "some pages", func() bool { _, total := e.rec.received(); return total >= 500 })
				must(t, e.dl.Close(context.Background()))
				if e.complete() {
					t.Fatal("complete before the restart")
				}
				e.dl = &Downlink{Client: e.client, Replica: e.rec, Scopes: []Scope{personScope}, Gateway: "site-a",
					Logger: e.logs.logger(), PageSize: 100}
				e.client.OnExchange = nil // no request runs: the new downlink takes the link's news
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				e.checkReplica("Person", personFields, all)
				if _, total := e.rec.received(); total > n+100 {
					t.Errorf("%d rows for %d documents: not resumed from the cursor", total, n)
				}
				if !strings.Contains(e.logs.String(), "initial sync resuming") {
					t.Error("no resume in the logs")
				}
			})
		})
	}
}

// TestDownlink_FourScopes replicates the example configuration's four scopes, one with a
// query, in one changes query per refresh (receiver) or one search per scope (stock).
func TestDownlink_FourScopes(t *testing.T) {
	scopes := []Scope{
		{PortalType: "Person", Fields: []string{"title", "first_name", "last_name", "default_email_text", "reference"}},
		{PortalType: "Organisation", Fields: []string{"title", "reference", "corporate_name", "default_address_city"}},
		{PortalType: "Product", Fields: []string{"title", "reference", "base_price", "weight"}},
		{Name: "open orders", PortalType: "Sale Order", Query: `simulation_state:("ordered" OR "confirmed")`,
			Fields: []string{"title", "reference", "destination", "start_date", "simulation_state"}},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), scopes...)
				docs := erp5sim.Generate(3, 1500, time.Now().Add(-time.Hour))
				e.sim.Load(docs)
				e.dl.Interval = time.Hour
				e.dl.PageSize = 150
				e.open()
				waitFor(t, time.Hour, "initial sync", e.complete)
				time.Sleep(time.Minute)
				// Head office: a new product, an order confirmed (stays in the scope), another
				// cancelled (leaves it), an edit.
				_, err := e.sim.Create("Product", "product_module", map[string]any{"title": "New drill", "reference": "PRD-NEW"})
				must(t, err)
				// order_workflow: nothing leaves confirmed; an ordered order may be cancelled.
				var ordered, cancelled string
				for _, d := range docs {
					switch {
					case d.PortalType == "Sale Order" && d.Properties["simulation_state"] == "ordered" && ordered == "":
						ordered = d.ID
					case d.PortalType == "Sale Order" && d.Properties["simulation_state"] == "ordered" && cancelled == "":
						cancelled = d.ID
					}
				}
				must(t, e.sim.Transition(ordered, "confirm_action"))
				must(t, e.sim.Transition(cancelled, "cancel_action"))
				must(t, e.sim.Edit("organisation_module/1", map[string]any{"title": "Renamed SA"}))
				changes, searches := e.sim.Stats().Requests[erp5sim.EndpointChanges], e.sim.Stats().Requests[erp5sim.EndpointSearch]
				e.settle("a pull")
				st := e.sim.Stats()
				if mode == ModeBatch && (st.Requests[erp5sim.EndpointChanges]-changes != 1 || st.Requests[erp5sim.EndpointSearch] != searches) {
					t.Errorf("a refresh made %d changes queries and %d searches", st.Requests[erp5sim.EndpointChanges]-changes, st.Requests[erp5sim.EndpointSearch]-searches)
				}
				if mode == ModeStock && st.Requests[erp5sim.EndpointSearch]-searches != 4 {
					t.Errorf("a refresh made %d searches", st.Requests[erp5sim.EndpointSearch]-searches)
				}
				for _, s := range scopes {
					in := all
					if s.Query != "" {
						in = func(d *erp5sim.Document) bool {
							v := d.Properties["simulation_state"]
							return v == "ordered" || v == "confirmed"
						}
					}
					if s.PortalType == "Sale Order" {
						// The cancelled order left the scope: it stays until a reconciliation.
						e.ignore = map[string]bool{cancelled: true}
					}
					e.checkReplica(s.PortalType, s.Fields, in)
				}
			})
		})
	}
}

func TestScope_Validate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope Scope
		err   string
	}{
		{"OK", Scope{PortalType: "Person", Fields: []string{"title"}}, ""},
		{"NoPortalType", Scope{Name: "x"}, "no portal_type"},
		{"BadQuery", Scope{PortalType: "Person", Query: `title:(`}, "query"},
		{"RepeatedField", Scope{PortalType: "Person", Fields: []string{"title", "title"}}, "repeated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.scope
			err := s.Validate()
			if tc.err == "" {
				if err != nil || s.Name != s.PortalType {
					t.Errorf("%v, name %q", err, s.Name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	d := &Downlink{Client: &Client{URL: "http://x/"}, Replica: replicaAdapter{}, Scopes: []Scope{{PortalType: "Person"}, {PortalType: "Person"}}}
	d.Replica = emptyReplica{}
	if err := d.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "two scopes") {
		t.Errorf("two scopes of one name: %v", err)
	}
}

// emptyReplica has no cursors.
type emptyReplica struct{ Replica }

func (emptyReplica) SyncCursors(context.Context) (map[string]ScopeCursor, error) { return nil, nil }

func TestCursorSeeder(t *testing.T) {
	scopes := []Scope{
		{Name: "validated", PortalType: "Person", Query: `validation_state:"validated"`},
		{Name: "orgs", PortalType: "Organisation"},
		{Name: "products", PortalType: "Product"},
	}
	s, err := NewCursorSeeder(scopes, nil)
	must(t, err)
	obs := func(id, pt, doc, version, md string) error { return s.Observe(id, pt, []byte(doc), version, md) }
	must(t, obs("person_module/1", "Person", `{"validation_state":"validated"}`, "", "Mon, 02 Mar 2026 10:00:00 +0000"))
	must(t, obs("person_module/2", "Person", `{"validation_state":"validated"}`, "", "Mon, 02 Mar 2026 10:00:00 +0000"))
	must(t, obs("person_module/3", "Person", `{"validation_state":"draft"}`, "", "Tue, 03 Mar 2026 10:00:00 +0000"))
	must(t, obs("organisation_module/9", "Organisation", `{}`, "2026-03-01T08:00:00.123456Z", ""))
	must(t, obs("product_module/1", "Product", `{}`, "", ""))
	if err := obs("person_module/4", "Person", `{"validation_state":"validated"}`, "", "yesterday"); gateway.ErrorCode(err) != gateway.EINVALID {
		t.Errorf("bad date: %v", err)
	}
	stats := s.Stats()
	if stats[0].Records != 2 || stats[0].Position != "Mon, 02 Mar 2026 10:00:00 +0000 person_module/2" {
		t.Errorf("validated: %+v", stats[0])
	}
	if stats[1].Position != "Sun, 01 Mar 2026 08:00:00 +0000 organisation_module/9" || stats[2].Records != 1 || stats[2].Position != "" {
		t.Errorf("stats %+v", stats)
	}
	cs := s.Cursors()
	if len(cs) != 2 || cs[0].Scope != "validated" || !cs[0].Complete || cs[1].Scope != "orgs" {
		t.Fatalf("cursors %+v", cs)
	}
	var p position
	must(t, json.Unmarshal([]byte(cs[0].Cursor), &p))
	if p.Date != "Mon, 02 Mar 2026 10:00:00 +0000" || p.ID != "person_module/2" || p.Def != scopes[0].definition() || len(p.Receiver) != 0 {
		t.Errorf("position %+v", p)
	}
	if !cs[0].FreshAt.Equal(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("fresh_at %v", cs[0].FreshAt)
	}
}
