package outbox_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

func TestCanonical(t *testing.T) {
	e := &outbox.Entry{Seq: 7, Op: outbox.OpPut, DocID: "person_module/1", PortalType: "Person",
		Fields: obj(t, `{"z":1.50,"a":{"y":"<b>","x":null}}`), Base: obj(t, `{"z":2}`),
		Peer: "tab-3", Key: "k", Covers: []int64{3, 5}}
	got, err := outbox.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"base":{"a":null,"z":2},"covers":[3,5],"fields":{"a":{"x":null,"y":"<b>"},"z":1.50},"id":"person_module/1","key":"k","op":"put","peer":"tab-3","seq":7}`
	if string(got) != want {
		t.Errorf("canonical\n got %s\nwant %s", got, want)
	}
	sum := sha256.Sum256([]byte(want))
	if h := outbox.Hash(got); h != hex.EncodeToString(sum[:]) {
		t.Errorf("hash = %s", h)
	}
	mode, payload, err := outbox.BatchEncoder(e, outbox.Hash(got))
	if err != nil || mode != outbox.ModeBatch {
		t.Fatal(mode, err)
	}
	// The payload is the canonical JSON with "hash" in its sorted place; removing it gives the
	// canonical bytes back.
	wantPayload := bytes.Replace([]byte(want), []byte(`"id"`), []byte(`"hash":"`+outbox.Hash(got)+`","id"`), 1)
	if !bytes.Equal(payload, wantPayload) {
		t.Errorf("payload\n got %s\nwant %s", payload, wantPayload)
	}

	post := &outbox.Entry{Seq: 1, Op: outbox.OpPost, DocID: "m/local-1", PortalType: "Person", ParentID: "m",
		Fields: obj(t, `{"title":"x"}`)}
	got, _ = outbox.Canonical(post)
	if want := `{"fields":{"title":"x"},"id":"m/local-1","op":"post","parent_relative_url":"m","portal_type":"Person","seq":1}`; string(got) != want {
		t.Errorf("post canonical\n got %s\nwant %s", got, want)
	}
	act := &outbox.Entry{Seq: 2, Op: outbox.OpAction, DocID: "m/1", Transition: "confirm_action", Comment: "ok"}
	got, _ = outbox.Canonical(act)
	if want := `{"comment":"ok","id":"m/1","op":"action","seq":2,"transition":"confirm_action"}`; string(got) != want {
		t.Errorf("action canonical\n got %s\nwant %s", got, want)
	}
}

func TestClaim_OneCommittedTransaction(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/1", `{"portal_type":"Person","title":"a"}`)
	seq := e.put("person_module/1", `{"title":"b"}`)
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{seq}) {
		t.Fatalf("claimed %v, want [%d]", seqs(b), seq)
	}
	// Read back through the read pool: the claim is committed before anything is sent.
	got := e.entry(seq)
	if got.State != outbox.StateInflight || got.Attempts != 1 || got.Mode != outbox.ModeBatch {
		t.Fatalf("after claim: state %s attempts %d mode %q", got.State, got.Attempts, got.Mode)
	}
	if !bytes.Equal(got.Payload, b.Entries[0].Payload) || got.Hash == "" || got.Hash != b.Entries[0].Hash {
		t.Fatal("stored payload or hash differ from the claimed ones")
	}
	canon, _ := outbox.Canonical(got)
	if outbox.Hash(canon) != got.Hash {
		t.Error("stored hash is not the SHA-256 of the entry's canonical JSON")
	}
	var m map[string]any
	if err := json.Unmarshal(got.Payload, &m); err != nil || m["hash"] != got.Hash || m["seq"] != float64(seq) {
		t.Errorf("payload %s does not carry its seq and hash", got.Payload)
	}
	if b.Epoch != got.Epoch || b.SiteID != "site-a" || got.SiteID != "site-a" {
		t.Errorf("batch epoch %s site %s, entry %s %s", b.Epoch, b.SiteID, got.Epoch, got.SiteID)
	}
	// Nothing more to claim: an inflight entry is not claimed twice.
	if b2 := e.claim(outbox.Budget{}); len(b2.Entries) != 0 {
		t.Errorf("second claim took %v", seqs(b2))
	}
}

// Invariant 1: an entry ever sent is resent byte-identical and never merged or rewritten.
func TestClaim_FrozenEntryResentByteIdentical(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/1", `{"portal_type":"Person","title":"a"}`)
	s1 := e.put("person_module/1", `{"title":"b"}`)
	b1 := e.claim(outbox.Budget{})
	first := append([]byte(nil), b1.Entries[0].Payload...)
	e.settle(outbox.Result{Seq: s1, Status: outbox.ResultDeferred, Reason: "HTTP 503", NextAttemptAt: e.now.Add(time.Minute)})
	s2 := e.put("person_module/1", `{"title":"c","email":"x@y"}`)
	if got := e.entry(s1); got.State != outbox.StateDeferred || got.NextAttemptAt.IsZero() {
		t.Fatalf("deferred: %s %v", got.State, got.NextAttemptAt)
	}
	// Not due yet: nothing is claimed, and the later put of the document waits behind it.
	if b := e.claim(outbox.Budget{}); len(b.Entries) != 0 {
		t.Fatalf("claimed %v before the deferred entry was due", seqs(b))
	}
	// retry makes it pending again (due now); pending or not, a sent entry never merges.
	if _, err := e.db.Retry(e.ctx, s1, "test"); err != nil {
		t.Fatal(err)
	}
	if got := e.entry(s1); got.State != outbox.StatePending || got.Attempts != 1 {
		t.Fatalf("after retry: %s attempts %d", got.State, got.Attempts)
	}
	b2 := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b2), []int64{s1}) {
		t.Fatalf("claimed %v, want [%d] alone", seqs(b2), s1)
	}
	if !bytes.Equal(b2.Entries[0].Payload, first) {
		t.Errorf("resent payload differs:\n%s\n%s", b2.Entries[0].Payload, first)
	}
	if got := e.entry(s1); got.Attempts != 2 || !bytes.Equal(got.Payload, first) || len(got.Covers) != 0 {
		t.Errorf("frozen entry changed: attempts %d covers %v", got.Attempts, got.Covers)
	}
	if got := e.entry(s2); got.State != outbox.StatePending || got.MergedInto != 0 {
		t.Errorf("later put %s merged_into %d", got.State, got.MergedInto)
	}
	// A frozen entry whose document is renamed later keeps its bytes too (checked in the
	// rename test); here: settle ok, then the later put goes alone.
	e.settle(ok(s1))
	b3 := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b3), []int64{s2}) {
		t.Fatalf("claimed %v, want [%d]", seqs(b3), s2)
	}
	if got := decoded(t, b3.Entries[0]); !reflect.DeepEqual(got.Base, obj(t, `{"title":"b","email":null}`)) {
		t.Errorf("base %v", got.Base)
	}
}

// Invariant 2: a run of never-sent puts (a post may lead) folds into its last entry.
func TestClaim_MergeRun(t *testing.T) {
	e := newEnv(t)
	id := e.post(`{"portal_type":"Person","title":"a","n":1}`)
	p := e.lastSeq()
	s2 := e.put(id, `{"title":"b","email":"e1"}`)
	s3 := e.put(id, `{"email":null,"n":2}`)
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{s3}) {
		t.Fatalf("claimed %v, want the last entry %d", seqs(b), s3)
	}
	m := b.Entries[0]
	if m.Op != outbox.OpPost || m.PortalType != "Person" || m.ParentID != "person_module" {
		t.Errorf("merged entry op %s type %s parent %s", m.Op, m.PortalType, m.ParentID)
	}
	if !reflect.DeepEqual(m.Fields, obj(t, `{"title":"b","n":2}`)) {
		t.Errorf("merged fields %v", m.Fields)
	}
	if !slices.Equal(m.Covers, []int64{p, s2}) {
		t.Errorf("covers %v, want [%d %d]", m.Covers, p, s2)
	}
	for _, s := range []int64{p, s2} {
		if got := e.entry(s); got.State != outbox.StateMerged || got.MergedInto != s3 {
			t.Errorf("entry %d: %s merged_into %d", s, got.State, got.MergedInto)
		}
	}
	if b.Merged != 2 {
		t.Errorf("batch.Merged = %d", b.Merged)
	}
}

// Invariant 2: earliest base per field; a field back to its base is dropped; a run that
// changes nothing in the end sends nothing.
func TestClaim_MergeBasesAndNoop(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/1", `{"portal_type":"Person","title":"a","email":"e0","city":"x"}`)
	s1 := e.put("person_module/1", `{"title":"b","email":"e1"}`)
	s2 := e.put("person_module/1", `{"title":"c","email":"e0"}`)
	s3 := e.put("person_module/1", `{"city":"y"}`)
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{s3}) {
		t.Fatalf("claimed %v", seqs(b))
	}
	m := b.Entries[0]
	if !reflect.DeepEqual(m.Fields, obj(t, `{"title":"c","city":"y"}`)) || !reflect.DeepEqual(m.Base, obj(t, `{"title":"a","city":"x"}`)) {
		t.Errorf("fields %v base %v (email went back to its base and must be dropped)", m.Fields, m.Base)
	}
	if !slices.Equal(m.Covers, []int64{s1, s2}) {
		t.Errorf("covers %v", m.Covers)
	}
	e.settle(ok(s3))

	s4 := e.put("person_module/1", `{"title":"d"}`)
	s5 := e.put("person_module/1", `{"title":"c"}`)
	b = e.claim(outbox.Budget{})
	if len(b.Entries) != 0 || !slices.Equal(b.Noop, []int64{s5}) {
		t.Fatalf("claimed %v noop %v; a run back to its base sends nothing", seqs(b), b.Noop)
	}
	if got := e.entry(s5); got.State != outbox.StateDone || !slices.Equal(got.Covers, []int64{s4}) {
		t.Errorf("noop entry %s covers %v", got.State, got.Covers)
	}
	if got := e.entry(s4); got.State != outbox.StateMerged || got.MergedInto != s5 {
		t.Errorf("entry %d %s merged_into %d", s4, got.State, got.MergedInto)
	}
}

// Invariant 2: covers are transitive (a merged entry that was not sent folds again).
func TestClaim_TransitiveCovers(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"b"}`)
	sa := e.put("person_module/a", `{"title":"a1"}`)
	s1 := e.put("person_module/b", `{"title":"b1"}`)
	s2 := e.put("person_module/b", `{"title":"b2"}`)
	// A byte budget that fits the first document's entry only: b's run is folded, then left.
	b := e.claim(outbox.Budget{MaxBytes: 150})
	if !slices.Equal(seqs(b), []int64{sa}) {
		t.Fatalf("claimed %v, want [%d]", seqs(b), sa)
	}
	if got := e.entry(s2); got.State != outbox.StatePending || !slices.Equal(got.Covers, []int64{s1}) {
		t.Fatalf("entry %d: %s covers %v", s2, got.State, got.Covers)
	}
	s3 := e.put("person_module/b", `{"title":"b3"}`)
	b = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{s3}) {
		t.Fatalf("claimed %v", seqs(b))
	}
	if got := b.Entries[0]; !slices.Equal(got.Covers, []int64{s1, s2}) || !reflect.DeepEqual(got.Base, obj(t, `{"title":"b"}`)) {
		t.Errorf("covers %v base %v, want [%d %d] and the earliest base", got.Covers, got.Base, s1, s2)
	}
	if got := e.entry(s1); got.MergedInto != s2 {
		t.Errorf("entry %d merged_into %d (it stays pointing at what it was folded into)", s1, got.MergedInto)
	}
}

// Invariant 2: remove and action are barriers; nothing folds into a remove.
func TestClaim_Barriers(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/1", `{"portal_type":"Person","title":"a"}`)
	s1 := e.put("person_module/1", `{"title":"b"}`)
	s2 := e.action("person_module/1", "validate_action")
	s3 := e.put("person_module/1", `{"title":"c"}`)
	s4 := e.put("person_module/1", `{"title":"d"}`)
	s5 := e.remove("person_module/1")
	var order [][]int64
	for range 5 {
		b := e.claim(outbox.Budget{})
		if len(b.Entries) == 0 {
			break
		}
		order = append(order, seqs(b))
		for _, en := range b.Entries {
			e.settle(ok(en.Seq))
		}
	}
	want := [][]int64{{s1}, {s2}, {s4}, {s5}}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("batches %v, want %v", order, want)
	}
	if got := e.entry(s3); got.MergedInto != s4 {
		t.Errorf("entry %d merged_into %d", s3, got.MergedInto)
	}
	if got := e.entry(s5); got.Op != outbox.OpRemove || len(got.Covers) != 0 || len(got.Fields) != 0 {
		t.Errorf("remove entry changed: %+v", got)
	}
	if exists, _ := e.docExists("person_module/1"); exists {
		t.Error("an ok remove leaves its tombstone")
	}
}

// Invariant 2: a never-sent post followed by a remove cancels; nothing is sent.
func TestClaim_PostThenRemoveCancels(t *testing.T) {
	e := newEnv(t)
	id := e.post(`{"portal_type":"Person","title":"a"}`)
	p := e.lastSeq()
	s2 := e.put(id, `{"title":"b"}`)
	s3 := e.remove(id)
	if exists, deleted := e.docExists(id); !exists || !deleted {
		t.Fatalf("before claim: exists %v deleted %v (a remove leaves a tombstone)", exists, deleted)
	}
	b := e.claim(outbox.Budget{})
	if len(b.Entries) != 0 || !slices.Equal(b.Cancelled, []string{id}) {
		t.Fatalf("claimed %v cancelled %v", seqs(b), b.Cancelled)
	}
	for _, s := range []int64{p, s2, s3} {
		if got := e.entry(s); got.State != outbox.StateMerged || got.MergedInto != 0 || got.Attempts != 0 {
			t.Errorf("entry %d: %s merged_into %d attempts %d", s, got.State, got.MergedInto, got.Attempts)
		}
	}
	if exists, _ := e.docExists(id); exists {
		t.Error("the cancelled local document is still stored")
	}
}

// Invariant 3: one entry per document per batch, in order; blocked documents block only
// themselves.
func TestClaim_PerDocumentOrderAndBlocking(t *testing.T) {
	for _, block := range []string{"dead", "conflict", "held", "deferred", "uncertain", "inflight"} {
		t.Run(block, func(t *testing.T) {
			e := newEnv(t)
			e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
			e.seed("person_module/b", `{"portal_type":"Person","title":"b"}`)
			a1 := e.put("person_module/a", `{"title":"a1"}`)
			b1 := e.action("person_module/b", "validate_action")
			switch block {
			case "held":
				if _, err := e.db.Hold(e.ctx, a1, "test"); err != nil {
					t.Fatal(err)
				}
			default:
				got := e.claim(outbox.Budget{MaxEntries: 1})
				if !slices.Equal(seqs(got), []int64{a1}) {
					t.Fatalf("claimed %v", seqs(got))
				}
				r := outbox.Result{Seq: a1, Status: map[string]string{"dead": "rejected", "conflict": "conflict",
					"deferred": "deferred", "uncertain": "uncertain", "inflight": ""}[block],
					NextAttemptAt: e.now.Add(time.Hour), Current: json.RawMessage(`{"title":"x"}`)}
				if r.Status != "" {
					e.settle(r)
				}
			}
			if got := e.entry(a1); got.State != block {
				t.Fatalf("entry %d is %s, want %s", a1, got.State, block)
			}
			a2 := e.put("person_module/a", `{"title":"a2"}`)
			got := e.claim(outbox.Budget{})
			if !slices.Equal(seqs(got), []int64{b1}) {
				t.Fatalf("claimed %v, want only the other document's %d", seqs(got), b1)
			}
			if en := e.entry(a2); en.State != outbox.StatePending {
				t.Errorf("later entry of the blocked document: %s", en.State)
			}
		})
	}
}

func TestClaim_AtMostOneEntryPerDocument(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
	var want []int64
	for i := range 3 {
		want = append(want, e.action("person_module/a", "t"+string(rune('0'+i))))
	}
	for i := range 3 {
		b := e.claim(outbox.Budget{})
		if !slices.Equal(seqs(b), want[i:i+1]) {
			t.Fatalf("batch %d: %v, want %v", i, seqs(b), want[i:i+1])
		}
		e.settle(ok(want[i]))
	}
}

// Invariant 3: a superseding entry keeps the replaced entry's place.
func TestClaim_OrderKeyOrder(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
	a1 := e.action("person_module/a", "submit")
	a2 := e.action("person_module/a", "confirm")
	e.claim(outbox.Budget{})
	e.settle(outbox.Result{Seq: a1, Status: outbox.ResultRejected, Reason: "no"})
	rs, err := e.db.Retry(e.ctx, a1, "test")
	if err != nil {
		t.Fatal(err)
	}
	n := rs[0].NewSeq
	if n <= a2 {
		t.Fatalf("new seq %d not after %d", n, a2)
	}
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{n}) {
		t.Fatalf("claimed %v, want the superseding entry %d before %d", seqs(b), n, a2)
	}
}

// docs/DESIGN.md §6: a batch holds one epoch; rows of an earlier epoch are checked against ERP5's
// results under the running epoch before they are sent, and never merged.
func TestClaim_Epochs(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"b"}`)
	old, err := e.db.Epoch(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	a1 := e.put("person_module/a", `{"title":"a1"}`)
	a2 := e.put("person_module/a", `{"title":"a2"}`)
	running, err := e.db.NewEpoch(e.ctx)
	if err != nil || running == old || len(running) != 32 {
		t.Fatalf("new epoch %q (old %q): %v", running, old, err)
	}
	b1 := e.put("person_module/b", `{"title":"b1"}`)
	if en := e.entry(b1); en.Epoch != running {
		t.Fatalf("new row epoch %s, want %s", en.Epoch, running)
	}
	if en := e.entry(a1); en.Epoch != old {
		t.Fatalf("old row epoch changed to %s", en.Epoch)
	}
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{b1}) || b.Epoch != running {
		t.Fatalf("claimed %v epoch %s; earlier-epoch rows need the results query first", seqs(b), b.Epoch)
	}
	need, err := e.db.NeedResults(e.ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(need, map[string][]int64{old: {a1, a2}}) {
		t.Fatalf("need results %v", need)
	}
	e.settle(outbox.Result{Seq: a1, Status: outbox.ResultUnknown}, outbox.Result{Seq: a2, Status: outbox.ResultUnknown})
	if need, _ := e.db.NeedResults(e.ctx, 0); len(need) != 0 {
		t.Fatalf("still need results %v", need)
	}
	b = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{a1}) || b.Epoch != old {
		t.Fatalf("claimed %v epoch %s, want [%d] alone under %s (never merged)", seqs(b), b.Epoch, a1, old)
	}
	if len(b.Entries[0].Covers) != 0 {
		t.Error("an earlier-epoch entry was merged")
	}
	e.settle(ok(a1))
	b = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{a2}) || b.Epoch != old {
		t.Fatalf("claimed %v epoch %s", seqs(b), b.Epoch)
	}
}

func TestClaim_OneEpochPerBatch(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"a", "b", "c"} {
		e.seed("person_module/"+id, `{"portal_type":"Person","title":"x"}`)
	}
	old, _ := e.db.Epoch(e.ctx)
	a := e.put("person_module/a", `{"title":"1"}`)
	if _, err := e.db.NewEpoch(e.ctx); err != nil {
		t.Fatal(err)
	}
	b := e.put("person_module/b", `{"title":"1"}`)
	e.settle(outbox.Result{Seq: a, Status: outbox.ResultUnknown})
	c := e.put("person_module/c", `{"title":"1"}`)
	got := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(got), []int64{a}) || got.Epoch != old {
		t.Fatalf("first batch %v (%s)", seqs(got), got.Epoch)
	}
	got = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(got), []int64{b, c}) {
		t.Fatalf("second batch %v", seqs(got))
	}
}

// Invariant 4: an entry naming a local id waits until that id's post is done.
func TestClaim_LocalReferencesWait(t *testing.T) {
	e := newEnv(t)
	org := e.post(`{"portal_type":"Organisation","title":"Acme"}`)
	orgPost := e.lastSeq()
	e.seed("person_module/1", `{"portal_type":"Person","title":"a"}`)
	ref := e.put("person_module/1", `{"subordination":"`+org+`"}`)
	order := e.post(`{"portal_type":"Sale Order","title":"SO"}`)
	orderPost := e.lastSeq()
	line := e.post(`{"portal_type":"Sale Order Line","parent_relative_url":"` + order + `","quantity":2}`)
	linePost := e.lastSeq()
	if parentOf(line) != order {
		t.Fatalf("line id %s not under %s", line, order)
	}
	b := e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{orgPost, orderPost}) {
		t.Fatalf("claimed %v, want the posts %d %d only", seqs(b), orgPost, orderPost)
	}
	rep := e.settle(outbox.Result{Seq: orgPost, Status: "ok", ID: "organisation_module/77"},
		outbox.Result{Seq: orderPost, Status: "ok", ID: "sale_order_module/5"})
	if rep.Renamed[org] != "organisation_module/77" || rep.Renamed[order] != "sale_order_module/5" {
		t.Fatalf("renamed %v", rep.Renamed)
	}
	newLine := "sale_order_module/5/" + line[len(order)+1:]
	if rep.Renamed[line] != newLine {
		t.Errorf("child renamed to %q, want %q", rep.Renamed[line], newLine)
	}
	b = e.claim(outbox.Budget{})
	if !slices.Equal(seqs(b), []int64{ref, linePost}) {
		t.Fatalf("claimed %v after the posts were done", seqs(b))
	}
	if got := decoded(t, b.Entries[0]).Fields["subordination"]; got != "organisation_module/77" {
		t.Errorf("reference sent as %v", got)
	}
	if got := b.Entries[1]; got.DocID != newLine || got.ParentID != "sale_order_module/5" {
		t.Errorf("child post sent as %s under %s", got.DocID, got.ParentID)
	}
}

func parentOf(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[:i]
		}
	}
	return ""
}

// decoded returns a claimed entry with its Fields and Base decoded, checking that its
// payload carries the same values.
func decoded(tb testing.TB, e *outbox.Entry) *outbox.Entry {
	tb.Helper()
	if e.Fields != nil && e.Op == outbox.OpPut && len(e.Covers) == 0 {
		tb.Fatalf("entry %d: a claimed entry came with decoded fields", e.Seq)
	}
	if err := e.Decode(); err != nil {
		tb.Fatal(err)
	}
	var p struct {
		Fields map[string]any `json:"fields"`
		Base   map[string]any `json:"base"`
	}
	dec := json.NewDecoder(bytes.NewReader(e.Payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		tb.Fatal(err)
	}
	if !reflect.DeepEqual(p.Fields, nonNilMap(e.Fields)) || (e.Op == outbox.OpPut && !reflect.DeepEqual(p.Base, nonNilMap(e.Base))) {
		tb.Fatalf("entry %d: payload %s disagrees with fields %v base %v", e.Seq, e.Payload, e.Fields, e.Base)
	}
	return e
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Free text travels intact: a write key, a comment and field values with quotes, control
// characters, HTML and non-ASCII.
func TestClaim_OddText(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"t"}`)
	odd := "é \"q\" \\ <b>&\x1f\x01\u2028"
	r, err := e.db.Write(e.ctx, sqlite.Write{Op: "action", ID: "person_module/a", Transition: "t\x1f", Comment: odd, Peer: "p", Key: odd})
	if err != nil {
		t.Fatal(err)
	}
	b := e.claim(outbox.Budget{})
	if len(b.Entries) != 1 || b.Entries[0].Seq != r.Seq {
		t.Fatalf("claimed %v", seqs(b))
	}
	var m map[string]any
	if err := json.Unmarshal(b.Entries[0].Payload, &m); err != nil {
		t.Fatalf("payload %q: %v", b.Entries[0].Payload, err)
	}
	if m["comment"] != odd || m["key"] != odd || m["transition"] != "t\x1f" {
		t.Errorf("payload %q", b.Entries[0].Payload)
	}
	canon, _ := outbox.Canonical(e.entry(r.Seq))
	if outbox.Hash(canon) != b.Entries[0].Hash {
		t.Error("hash of the stored entry's canonical JSON differs from the claimed hash")
	}
}
