package outbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// Invariant 4: ERP5's id for a post is recorded in id_map, and one transaction rewrites the
// replica (the document, its children, references) and later never-sent entries; frozen
// entries keep their bytes; old local ids keep working.
func TestSettle_PostRenamesEverything(t *testing.T) {
	e := newEnv(t)
	org := e.post(`{"portal_type":"Organisation","title":"Acme","n":1.50}`)
	orgPost := e.lastSeq()
	e.seed("person_module/1", `{"portal_type":"Person","title":"p","tags":["x"]}`)
	e.seed("person_module/2", `{"portal_type":"Person","title":"q"}`)
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{orgPost}) {
		t.Fatalf("claimed %v", seqs(b))
	}
	// Written while the post is inflight: references to the local id, an edit of the
	// document by its local id, and a frozen entry naming it (sent, deferred).
	ref := e.put("person_module/1", `{"subordination":"`+org+`","tags":["x","`+org+`"]}`)
	edit := e.put(org, `{"title":"Acme Ltd"}`)
	frozen := e.put("person_module/2", `{"note":"see `+org+`","career_subordination":"`+org+`"}`)
	// (frozen names the local id; claim order puts it after the post, so make it frozen by
	// hand as an earlier-epoch leftover would be.)
	if _, err := e.db.Writer().Exec(`UPDATE outbox SET attempts = 1, state = 'deferred', payload = CAST('x' AS BLOB),
		next_attempt_at = '2999-01-01T00:00:00.000000000Z' WHERE seq = ?`, frozen); err != nil {
		t.Fatal(err)
	}
	child := e.post(`{"portal_type":"Address","parent_relative_url":"` + org + `","city":"Kolwezi"}`)
	childPost := e.lastSeq()

	rep := e.settle(outbox.Result{Seq: orgPost, Status: "ok", ID: "organisation_module/9",
		Version: "2026-03-01T09:00:00.123456Z", State: json.RawMessage(`{"title":"Acme","n":1.50,"reference":"R9"}`)})
	newChild := "organisation_module/9/" + child[len(org)+1:]
	if want := map[string]string{org: "organisation_module/9", child: newChild}; !reflect.DeepEqual(rep.Renamed, want) {
		t.Fatalf("renamed %v, want %v", rep.Renamed, want)
	}
	// id_map and old ids.
	for local, to := range rep.Renamed {
		got, err := e.db.ResolveID(e.ctx, local)
		if err != nil || got != to {
			t.Errorf("ResolveID(%s) = %s, %v; want %s", local, got, err, to)
		}
	}
	// The replica: the document under its new id (ERP5's new field merged in, the pending
	// local edit of title kept), references rewritten, the child and its parent reference.
	d, err := e.db.GetDocument(e.ctx, org)
	if err != nil || d.ID != "organisation_module/9" {
		t.Fatalf("get by old id: %v %v", d, err)
	}
	if got := obj(t, string(d.Body)); got["title"] != "Acme Ltd" || got["reference"] != "R9" {
		t.Errorf("renamed body %v", got)
	}
	if exists, _ := e.docExists(org); exists {
		t.Error("the local row is still there")
	}
	p1 := e.body("person_module/1")
	if p1["subordination"] != "organisation_module/9" || !reflect.DeepEqual(p1["tags"], []any{"x", "organisation_module/9"}) {
		t.Errorf("references not rewritten: %v", p1)
	}
	if p2 := e.body("person_module/2"); p2["note"] != "see "+org {
		t.Errorf("a string that merely contains the id changed: %v", p2["note"])
	}
	c := e.body(newChild)
	if c["parent_relative_url"] != "organisation_module/9" {
		t.Errorf("child's parent %v", c["parent_relative_url"])
	}
	// Later never-sent entries rewritten; the frozen one untouched.
	if got := e.entry(ref); got.Fields["subordination"] != "organisation_module/9" || len(got.Refs) != 0 {
		t.Errorf("ref entry fields %v refs %v", got.Fields, got.Refs)
	}
	if got := e.entry(edit); got.DocID != "organisation_module/9" {
		t.Errorf("edit entry doc %s", got.DocID)
	}
	if got := e.entry(childPost); got.DocID != newChild || got.ParentID != "organisation_module/9" {
		t.Errorf("child post %s under %s", got.DocID, got.ParentID)
	}
	if got := e.entry(frozen); got.Fields["career_subordination"] != org || !bytes.Equal(got.Payload, []byte("x")) {
		t.Errorf("frozen entry rewritten: %v", got.Fields)
	}
	// put, remove by the old local id keep working.
	if _, err := e.db.Write(e.ctx, sqlite.Write{Op: "put", ID: org, Body: json.RawMessage(`{"title":"Acme SA"}`)}); err != nil {
		t.Errorf("put by old id: %v", err)
	}
	if r, err := e.db.Write(e.ctx, sqlite.Write{Op: "remove", ID: child}); err != nil || r.ID != newChild {
		t.Errorf("remove by old child id: %v %v", r, err)
	}
	// upstream body and version.
	var up, ver string
	if err := e.db.Reader().QueryRow(`SELECT json(upstream_body), upstream_version FROM documents WHERE id = ?`,
		"organisation_module/9").Scan(&up, &ver); err != nil {
		t.Fatal(err)
	}
	if up != `{"title":"Acme","n":1.50,"reference":"R9"}` || ver != "2026-03-01T09:00:00.123456Z" {
		t.Errorf("upstream %s %s", up, ver)
	}
}

func TestSettle_Outcomes(t *testing.T) {
	e := newEnv(t)
	ids := []string{"a", "b", "c", "d", "e", "f"}
	var s []int64
	for _, id := range ids {
		e.seed("person_module/"+id, `{"portal_type":"Person","title":"t"}`)
		s = append(s, e.put("person_module/"+id, `{"title":"local"}`))
	}
	b := e.claim(outbox.Budget{})
	if len(b.Entries) != len(ids) {
		t.Fatalf("claimed %v", seqs(b))
	}
	next := e.now.Add(5 * time.Minute)
	rep := e.settle(
		outbox.Result{Seq: s[0], Status: "ok", Version: "v2", State: json.RawMessage(`{"title":"local","email":"z"}`)},
		outbox.Result{Seq: s[1], Status: "conflict", Current: json.RawMessage(`{"title":"theirs"}`), Version: "v9"},
		outbox.Result{Seq: s[2], Status: "rejected", Reason: "title too long"},
		outbox.Result{Seq: s[3], Status: "seq_reused"},
		outbox.Result{Seq: s[4], Status: "deferred", Reason: "HTTP 503", NextAttemptAt: next},
		outbox.Result{Seq: s[5], Status: "uncertain", Reason: "timeout"},
		outbox.Result{Seq: 999999, Status: "ok"},
	)
	if !errors.Is(rep.Alarm, outbox.ErrSeqReused) {
		t.Errorf("alarm = %v", rep.Alarm)
	}
	want := []string{"done", "conflict", "dead", "held", "deferred", "uncertain"}
	for i, st := range want {
		if got := e.entry(s[i]); got.State != st {
			t.Errorf("entry %d: %s, want %s", s[i], got.State, st)
		}
	}
	if got := e.body("person_module/a"); got["email"] != "z" {
		t.Errorf("ok state not applied to the body: %v", got)
	}
	c := e.entry(s[1])
	base, cur, local := outbox.ConflictValues(c)
	if base["title"] != "t" || cur["title"] != "theirs" || local["title"] != "local" {
		t.Errorf("conflict values base %v current %v local %v", base, cur, local)
	}
	if d := e.entry(s[2]); d.LastError != "title too long" {
		t.Errorf("dead reason %q", d.LastError)
	}
	if h := e.entry(s[3]); !strings.Contains(h.LastError, "seq_reused") {
		t.Errorf("held reason %q", h.LastError)
	}
	if d := e.entry(s[4]); !d.NextAttemptAt.Equal(next) || d.LastError != "HTTP 503" {
		t.Errorf("deferred %v %q", d.NextAttemptAt, d.LastError)
	}
	// unknown for an uncertain entry: resend byte-identical.
	u := e.entry(s[5])
	e.settle(outbox.Result{Seq: s[5], Status: "unknown"})
	if got := e.entry(s[5]); got.State != outbox.StatePending || !bytes.Equal(got.Payload, u.Payload) {
		t.Errorf("after unknown: %s", got.State)
	}
	b = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{s[5]}) || !bytes.Equal(b.Entries[0].Payload, u.Payload) || b.Entries[0].Attempts != 2 {
		t.Errorf("resend %v", seqs(b))
	}
	// An ok for an entry already final is ignored.
	rep = e.settle(ok(s[0]))
	if rep.Settled[0].State != "" {
		t.Errorf("final entry settled again: %s", rep.Settled[0].State)
	}
}

func TestRecoverInflight(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	s := e.put("person_module/a", `{"title":"x"}`)
	e.claim(outbox.Budget{})
	n, err := e.db.RecoverInflight(e.ctx)
	if err != nil || n != 1 {
		t.Fatalf("recovered %d: %v", n, err)
	}
	got := e.entry(s)
	if got.State != outbox.StateUncertain || got.Attempts != 1 {
		t.Errorf("after recovery: %s attempts %d", got.State, got.Attempts)
	}
	need, _ := e.db.NeedResults(e.ctx, 0)
	if !slices.Equal(need[got.Epoch], []int64{s}) {
		t.Errorf("need results %v", need)
	}
	if b := e.claim(outbox.Budget{}); len(b.Entries) != 0 {
		t.Error("an uncertain entry was claimed without the results query")
	}
}

// Invariant 6: retry of dead/conflict and resolve --keep local queue a new entry.
func TestRetryAndResolve(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t","city":"c0"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"t"}`)
	e.seed("person_module/c", `{"portal_type":"Person","title":"t"}`)
	dead := e.put("person_module/a", `{"title":"mine","city":"c1"}`)
	conf := e.put("person_module/b", `{"title":"mine"}`)
	def := e.put("person_module/c", `{"title":"mine"}`)
	e.claim(outbox.Budget{})
	later := e.put("person_module/a", `{"city":"c2"}`)
	// Head office changed person_module/a's city meanwhile (the downlink recorded it).
	if _, err := e.db.Writer().Exec(`UPDATE documents SET upstream_body = jsonb('{"portal_type":"Person","title":"t","city":"HQ"}') WHERE id = 'person_module/a'`); err != nil {
		t.Fatal(err)
	}
	e.settle(outbox.Result{Seq: dead, Status: "rejected", Reason: "bad"},
		outbox.Result{Seq: conf, Status: "conflict", Current: json.RawMessage(`{"title":"theirs"}`)},
		outbox.Result{Seq: def, Status: "deferred", NextAttemptAt: e.now.Add(time.Hour)})
	deadBefore, defBefore := e.entry(dead), e.entry(def)
	running, _ := e.db.NewEpoch(e.ctx)

	changes, err := e.db.HeadOffice(e.ctx, deadBefore)
	if err != nil {
		t.Fatal(err)
	}
	if want := []sqlite.FieldChange{{Field: "city", Base: "c0", HeadOffice: "HQ", Local: "c1"}, {Field: "title", Base: "t", HeadOffice: "t", Local: "mine"}}; !reflect.DeepEqual(changes, want) {
		t.Errorf("head office changes %v, want %v", changes, want)
	}

	rs, err := e.db.Retry(e.ctx, sqlite.All, "op")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("retried %d", len(rs))
	}
	byOld := map[int64]int64{}
	for _, r := range rs {
		byOld[r.Entry.Seq] = r.NewSeq
	}
	if byOld[def] != 0 {
		t.Error("a deferred entry was replaced instead of resent")
	}
	if d := e.entry(def); d.State != outbox.StatePending || !bytes.Equal(d.Payload, defBefore.Payload) || d.Attempts != 1 {
		t.Errorf("deferred retry: %s attempts %d", d.State, d.Attempts)
	}
	n := e.entry(byOld[dead])
	if n.Seq <= later || n.Epoch != running || n.OrderKey != deadBefore.OrderKey || n.Attempts != 0 || n.Key != "" {
		t.Errorf("new entry seq %d epoch %s order %d (want %d) attempts %d", n.Seq, n.Epoch, n.OrderKey, deadBefore.OrderKey, n.Attempts)
	}
	if !reflect.DeepEqual(n.Base, obj(t, `{"title":"t","city":"HQ"}`)) || !reflect.DeepEqual(n.Fields, deadBefore.Fields) {
		t.Errorf("new entry fields %v base %v", n.Fields, n.Base)
	}
	if old := e.entry(dead); old.State != outbox.StateSuperseded || old.SupersededBy != n.Seq {
		t.Errorf("old entry %s superseded_by %d", old.State, old.SupersededBy)
	}
	if c := e.entry(byOld[conf]); c.Base["title"] != "theirs" {
		t.Errorf("conflict retry base %v, want head office's current value", c.Base)
	}
	// The replacement keeps its place: claimed before the later entry of its document.
	b := e.claim(outbox.Budget{})
	if !slices.Contains(seqs(b), n.Seq) || slices.Contains(seqs(b), later) {
		t.Errorf("claimed %v", seqs(b))
	}
}

func TestResolveKeepRemote(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t","city":"c0"}`)
	s := e.put("person_module/a", `{"title":"mine","city":"c1"}`)
	e.claim(outbox.Budget{})
	later := e.put("person_module/a", `{"title":"mine2"}`)
	e.settle(outbox.Result{Seq: s, Status: "conflict", Current: json.RawMessage(`{"title":"theirs"}`)})
	if _, err := e.db.Resolve(e.ctx, s, "remote", "op"); err != nil {
		t.Fatal(err)
	}
	got := e.entry(s)
	if got.State != outbox.StateSuperseded || got.SupersededBy != 0 {
		t.Errorf("resolved entry %s by %d", got.State, got.SupersededBy)
	}
	body := e.body("person_module/a")
	if body["city"] != "c0" {
		t.Errorf("city %v: a field head office did not change reverts to its value", body["city"])
	}
	if l := e.entry(later); l.Base["title"] != "theirs" {
		t.Errorf("later edit based on %v, want head office's value", l.Base["title"])
	}
	if _, err := e.db.Resolve(e.ctx, later, "local", "op"); gateway.ErrorCode(err) != gateway.ECONFLICT {
		t.Errorf("resolve of a pending entry: %v", err)
	}
	if _, err := e.db.Resolve(e.ctx, 424242, "local", "op"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("resolve of a missing entry: %v", err)
	}
}

func TestResolveKeepLocal(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	s := e.put("person_module/a", `{"title":"mine"}`)
	e.claim(outbox.Budget{})
	e.settle(outbox.Result{Seq: s, Status: "conflict", Current: json.RawMessage(`{"title":"theirs"}`)})
	n, err := e.db.Resolve(e.ctx, s, "local", "op")
	if err != nil {
		t.Fatal(err)
	}
	got := e.entry(n)
	if got.Fields["title"] != "mine" || got.Base["title"] != "theirs" || got.OrderKey != e.entry(s).OrderKey {
		t.Errorf("new entry %v base %v", got.Fields, got.Base)
	}
	if old := e.entry(s); old.SupersededBy != n {
		t.Errorf("superseded_by %d", old.SupersededBy)
	}
}

func TestHoldRelease(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"t"}`)
	a := e.put("person_module/a", `{"title":"1"}`)
	b := e.put("person_module/b", `{"title":"1"}`)
	e.claim(outbox.Budget{MaxEntries: 1})
	e.settle(outbox.Result{Seq: a, Status: "deferred", NextAttemptAt: e.now})
	held, err := e.db.Hold(e.ctx, sqlite.All, "op")
	if err != nil || len(held) != 2 {
		t.Fatalf("held %d: %v", len(held), err)
	}
	if got := e.claim(outbox.Budget{}); len(got.Entries) != 0 {
		t.Fatalf("claimed held entries %v", seqs(got))
	}
	if _, err := e.db.Drop(e.ctx, a, "op"); gateway.ErrorCode(err) != gateway.ECONFLICT {
		t.Errorf("drop of a held entry that was sent: %v", err)
	}
	if _, err := e.db.Release(e.ctx, sqlite.All, "op"); err != nil {
		t.Fatal(err)
	}
	if got := e.entry(a); got.State != outbox.StateUncertain {
		t.Errorf("released sent entry: %s, want uncertain", got.State)
	}
	if got := e.entry(b); got.State != outbox.StatePending {
		t.Errorf("released never-sent entry: %s", got.State)
	}
	if _, err := e.db.Release(e.ctx, b, "op"); gateway.ErrorCode(err) != gateway.ECONFLICT {
		t.Errorf("release of a pending entry: %v", err)
	}
	if _, err := e.db.Hold(e.ctx, 777, "op"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("hold of a missing entry: %v", err)
	}
}

// Invariant 5: drop reverts the replica; a dropped post takes its document's later entries
// and the local document; audit lines.
func TestDrop(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t","city":"c0","n":1}`)
	put := e.put("person_module/a", `{"title":"mine","city":"c1"}`)
	e.claim(outbox.Budget{})
	laterCity := e.put("person_module/a", `{"city":"c2"}`)
	e.settle(outbox.Result{Seq: put, Status: "rejected", Reason: "no"})
	if _, err := e.db.Drop(e.ctx, laterCity, "op"); gateway.ErrorCode(err) != gateway.ECONFLICT {
		t.Errorf("drop of a pending entry: %v", err)
	}
	dropped, err := e.db.Drop(e.ctx, put, "op")
	if err != nil || len(dropped) != 1 {
		t.Fatalf("dropped %d: %v", len(dropped), err)
	}
	body := e.body("person_module/a")
	if body["title"] != "t" || body["city"] != "c2" {
		t.Errorf("after drop: %v (title reverts; city keeps the later pending edit)", body)
	}
	if got := e.entry(put); got.State != outbox.StateSuperseded || !strings.Contains(got.LastError, "dropped") {
		t.Errorf("dropped entry %s %q", got.State, got.LastError)
	}

	id := e.post(`{"portal_type":"Person","title":"new"}`)
	post := e.lastSeq()
	p2 := e.put(id, `{"title":"newer"}`)
	if _, err := e.db.Hold(e.ctx, post, "op"); err != nil {
		t.Fatal(err)
	}
	dropped, err = e.db.Drop(e.ctx, post, "op")
	if err != nil || len(dropped) != 2 {
		t.Fatalf("drop post: %d %v", len(dropped), err)
	}
	if exists, _ := e.docExists(id); exists {
		t.Error("dropped post left its local document")
	}
	if got := e.entry(p2); got.State != outbox.StateSuperseded {
		t.Errorf("later entry of the dropped post: %s", got.State)
	}

	e.seed("person_module/r", `{"portal_type":"Person","title":"t"}`)
	rm := e.remove("person_module/r")
	e.db.Hold(e.ctx, rm, "op")
	if _, err := e.db.Drop(e.ctx, rm, "op"); err != nil {
		t.Fatal(err)
	}
	if exists, deleted := e.docExists("person_module/r"); !exists || deleted {
		t.Error("a dropped remove did not restore the document")
	}
	var n int
	e.db.Reader().QueryRow(`SELECT count(*) FROM audit WHERE action = 'drop'`).Scan(&n)
	if n != 4 {
		t.Errorf("%d drop audit lines, want 4", n)
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	s1 := e.put("person_module/a", `{"title":"1"}`)
	s2 := e.put("person_module/a", `{"title":"2"}`)
	e.claim(outbox.Budget{})
	e.settle(ok(s2))
	keep := e.put("person_module/a", `{"title":"3"}`)
	if _, err := e.db.Write(e.ctx, sqlite.Write{Op: "put", ID: "person_module/a", Body: json.RawMessage(`{"x":1}`), Peer: "p", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	e.advance(8 * 24 * time.Hour)
	e.seed("person_module/b", `{"portal_type":"Person","title":"t"}`)
	fresh := e.put("person_module/b", `{"title":"1"}`)
	e.claim(outbox.Budget{MaxEntries: 1})
	rep, err := e.db.Prune(e.ctx, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 2 || rep.WriteKeys != 1 {
		t.Errorf("pruned %+v", rep)
	}
	for _, s := range []int64{s1, s2} {
		if _, err := outbox.Get(e.ctx, e.db.Reader(), s); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("entry %d not pruned: %v", s, err)
		}
	}
	for _, s := range []int64{keep, fresh} {
		e.entry(s)
	}
}

func TestSyncStates(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.seed("person_module/"+id, `{"portal_type":"Person","title":"t"}`)
	}
	a := e.put("person_module/a", `{"title":"1"}`)
	b := e.put("person_module/b", `{"title":"1"}`)
	c := e.put("person_module/c", `{"title":"1"}`)
	e.claim(outbox.Budget{})
	e.settle(ok(a), outbox.Result{Seq: b, Status: "rejected", Reason: "bad"}, outbox.Result{Seq: c, Status: "conflict"})
	d := e.put("person_module/d", `{"title":"1"}`)
	st, err := e.db.SyncStates(e.ctx, []string{"person_module/a", "person_module/b", "person_module/c", "person_module/d"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]outbox.DocState{
		"person_module/a": {State: "synced"},
		"person_module/b": {State: "dead", Reason: "bad", Seq: b},
		"person_module/c": {State: "conflict", Reason: "conflict: changed at head office too", Seq: c},
		"person_module/d": {State: "pending", Seq: d},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("sync states %v, want %v", st, want)
	}
}

// An entry of an earlier epoch that was held while the others were checked, then released,
// still goes through the results query (it is never claimed unchecked, nor forgotten).
func TestNeedResults_ReleasedAfterCheck(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"t"}`)
	old, _ := e.db.Epoch(e.ctx)
	a := e.put("person_module/a", `{"title":"1"}`)
	b := e.put("person_module/b", `{"title":"1"}`)
	if _, err := e.db.Hold(e.ctx, b, "op"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewEpoch(e.ctx); err != nil {
		t.Fatal(err)
	}
	need, _ := e.db.NeedResults(e.ctx, 0)
	if !reflect.DeepEqual(need, map[string][]int64{old: {a}}) {
		t.Fatalf("need %v", need)
	}
	e.settle(outbox.Result{Seq: a, Status: outbox.ResultUnknown})
	if need, _ := e.db.NeedResults(e.ctx, 0); len(need) != 0 {
		t.Fatalf("need %v after the check", need)
	}
	if _, err := e.db.Release(e.ctx, b, "op"); err != nil {
		t.Fatal(err)
	}
	need, _ = e.db.NeedResults(e.ctx, 0)
	if !reflect.DeepEqual(need, map[string][]int64{old: {b}}) {
		t.Fatalf("need %v after the release, want [%d]", need, b)
	}
	if got := e.claim(outbox.Budget{}); !slices.Equal(seqs(got), []int64{a}) {
		t.Errorf("claimed %v: the released entry must wait for its check", seqs(got))
	}
}

func TestNextDue(t *testing.T) {
	e := newEnv(t)
	if due, err := e.db.NextDue(e.ctx); err != nil || !due.IsZero() {
		t.Fatalf("empty outbox: %v %v", due, err)
	}
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"t"}`)
	a := e.put("person_module/a", `{"title":"1"}`)
	b := e.put("person_module/b", `{"title":"1"}`)
	e.claim(outbox.Budget{})
	soon, later := e.now.Add(time.Minute), e.now.Add(time.Hour)
	e.settle(outbox.Result{Seq: a, Status: "deferred", NextAttemptAt: later}, outbox.Result{Seq: b, Status: "deferred", NextAttemptAt: soon})
	if due, err := e.db.NextDue(e.ctx); err != nil || !due.Equal(soon) {
		t.Errorf("next due %v, want %v (%v)", due, soon, err)
	}
}

// TestPrune_KeepsFoldedRowsOfOpenEntry keeps merged rows while the entry they were folded
// into is still open: a later claim reads their write keys (the entry's keys).
func TestPrune_KeepsFoldedRowsOfOpenEntry(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/c", `{"portal_type":"Person","title":"t"}`)
	s1 := e.put("person_module/c", `{"title":"1"}`)
	s2 := e.put("person_module/c", `{"title":"2"}`)
	s3 := e.put("person_module/c", `{"title":"3"}`)
	e.claim(outbox.Budget{})
	e.settle(outbox.Result{Seq: s3, Status: "deferred"})
	e.advance(8 * 24 * time.Hour)
	if _, err := e.db.Prune(e.ctx, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, s := range []int64{s1, s2, s3} {
		e.entry(s)
	}
}
