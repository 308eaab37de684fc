package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

func mustWrite(tb testing.TB, db *sqlite.DB, w sqlite.Write) sqlite.WriteResult {
	tb.Helper()
	r, err := db.Write(context.Background(), w)
	if err != nil {
		tb.Fatalf("write %+v: %v", w, err)
	}
	return r
}

func storedBody(tb testing.TB, db *sqlite.DB, id string) string {
	tb.Helper()
	var s string
	if err := db.Reader().QueryRow(`SELECT json(body) FROM documents WHERE id = ?`, id).Scan(&s); err != nil {
		tb.Fatalf("body of %s: %v", id, err)
	}
	return s
}

func entry(tb testing.TB, db *sqlite.DB, seq int64) *outbox.Entry {
	tb.Helper()
	e, err := db.OutboxEntry(context.Background(), seq)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func seedDoc(tb testing.TB, db *sqlite.DB, id, body string) {
	tb.Helper()
	if _, err := db.Writer().Exec(`INSERT INTO documents (id, portal_type, body, upstream_body, updated_at)
		VALUES (?, json_extract(?, '$.portal_type'), jsonb(?), jsonb(?), 'x')`, id, body, body, body); err != nil {
		tb.Fatal(err)
	}
}

func count(tb testing.TB, db *sqlite.DB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.Reader().QueryRow(query, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestWrite_Post(t *testing.T) {
	db := MustOpenDB(t)
	db.SiteID = "mine-1"
	r := mustWrite(t, db, sqlite.Write{Op: "post", Body: json.RawMessage(`{"title":"Ann","portal_type":"Person","weight":70.50,"big":12345678901234567890}`)})
	if !strings.HasPrefix(r.ID, "person_module/local-") || !gateway.IsLocalID(r.ID) || gateway.ValidateID(r.ID) != nil {
		t.Errorf("id %s", r.ID)
	}
	// Stored exactly as given: key order, number literals, nothing injected.
	if got, want := storedBody(t, db, r.ID), `{"title":"Ann","portal_type":"Person","weight":70.50,"big":12345678901234567890}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	e := entry(t, db, r.Seq)
	if e.Op != "post" || e.DocID != r.ID || e.PortalType != "Person" || e.ParentID != "person_module" || e.SiteID != "mine-1" {
		t.Errorf("entry %+v", e)
	}
	if !reflect.DeepEqual(e.Fields, map[string]any{"title": "Ann", "weight": json.Number("70.50"), "big": json.Number("12345678901234567890")}) || e.Base != nil {
		t.Errorf("fields %v base %v", e.Fields, e.Base)
	}
	// Modules from the configuration, else ERP5's convention; a parent wins.
	db.Modules = map[string]string{"Person": "people"}
	if r := mustWrite(t, db, sqlite.Write{Op: "post", PortalType: "Person", Doc: map[string]any{"title": "x"}}); !strings.HasPrefix(r.ID, "people/local-") {
		t.Errorf("configured module: %s", r.ID)
	}
	if r := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Stock Move"}}); !strings.HasPrefix(r.ID, "stock_move_module/local-") {
		t.Errorf("conventional module: %s", r.ID)
	}
	so := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Sale Order"}})
	line := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Sale Order Line", "parent_relative_url": so.ID}})
	if !strings.HasPrefix(line.ID, so.ID+"/local-") {
		t.Errorf("child id %s not under %s", line.ID, so.ID)
	}
	if e := entry(t, db, line.Seq); e.ParentID != so.ID || !reflect.DeepEqual(e.Refs, []string{so.ID}) {
		t.Errorf("child entry parent %s refs %v", e.ParentID, e.Refs)
	}
	for _, bad := range []sqlite.Write{
		{Op: "post", Doc: map[string]any{"title": "no type"}},
		{Op: "post", PortalType: "Person", Doc: map[string]any{"portal_type": "Organisation"}},
		{Op: "post", Doc: map[string]any{"portal_type": "Person", "parent_relative_url": "../x"}},
		{Op: "post", Body: json.RawMessage(`[1]`)},
		{Op: "post", Body: json.RawMessage(`{"a":1,"a":2,"portal_type":"Person"}`)},
		{Op: "frob", Doc: map[string]any{}},
	} {
		if _, err := db.Write(context.Background(), bad); gateway.ErrorCode(err) != gateway.EINVALID {
			t.Errorf("%+v: %v, want EINVALID", bad, err)
		}
	}
}

func TestWrite_Put(t *testing.T) {
	db := MustOpenDB(t)
	seedDoc(t, db, "person_module/1", `{"portal_type":"Person","title":"a","email":"e","n":1.0}`)
	r := mustWrite(t, db, sqlite.Write{Op: "put", ID: "person_module/1",
		Body: json.RawMessage(`{"email":null,"title":"b","city":"K","n":1.0,"portal_type":"Person"}`)})
	if got, want := storedBody(t, db, "person_module/1"), `{"portal_type":"Person","title":"b","n":1.0,"city":"K"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	e := entry(t, db, r.Seq)
	if !reflect.DeepEqual(e.Fields, map[string]any{"title": "b", "email": nil, "city": "K"}) ||
		!reflect.DeepEqual(e.Base, map[string]any{"title": "a", "email": "e", "city": nil}) {
		t.Errorf("fields %v base %v (the diff, never portal_type)", e.Fields, e.Base)
	}
	// A patch that changes nothing is recorded, and settled at once.
	r = mustWrite(t, db, sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"title": "b"}})
	if e := entry(t, db, r.Seq); e.State != outbox.StateDone || len(e.Fields) != 0 {
		t.Errorf("no-op put: %s %v", e.State, e.Fields)
	}
	for _, c := range []struct {
		w    sqlite.Write
		code string
	}{
		{sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"portal_type": "Organisation"}}, gateway.EINVALID},
		{sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"parent_relative_url": "other_module"}}, gateway.EINVALID},
		{sqlite.Write{Op: "put", ID: "person_module/2", Doc: map[string]any{"title": "x"}}, gateway.ENOTFOUND},
		{sqlite.Write{Op: "remove", ID: "person_module/2"}, gateway.ENOTFOUND},
		{sqlite.Write{Op: "action", ID: "person_module/2", Transition: "t"}, gateway.ENOTFOUND},
		{sqlite.Write{Op: "action", ID: "person_module/1"}, gateway.EINVALID},
		{sqlite.Write{Op: "put", ID: "bad//id", Doc: map[string]any{}}, gateway.EINVALID},
	} {
		if _, err := db.Write(context.Background(), c.w); gateway.ErrorCode(err) != c.code {
			t.Errorf("%+v: %v, want %s", c.w, err, c.code)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d outbox rows; failed writes must store nothing", n)
	}
}

func TestWrite_RemoveAndAction(t *testing.T) {
	db := MustOpenDB(t)
	seedDoc(t, db, "person_module/1", `{"portal_type":"Person","title":"a"}`)
	a := mustWrite(t, db, sqlite.Write{Op: "action", ID: "person_module/1", Transition: "validate_action", Comment: "ok"})
	if e := entry(t, db, a.Seq); e.Op != "action" || e.Transition != "validate_action" || e.Comment != "ok" {
		t.Errorf("action entry %+v", e)
	}
	r := mustWrite(t, db, sqlite.Write{Op: "remove", ID: "person_module/1"})
	if n := count(t, db, `SELECT count(*) FROM documents WHERE id = 'person_module/1' AND deleted = 1`); n != 1 {
		t.Error("remove did not leave a tombstone")
	}
	if e := entry(t, db, r.Seq); e.Op != "remove" || e.DocID != "person_module/1" {
		t.Errorf("remove entry %+v", e)
	}
	if _, err := db.GetDocument(context.Background(), "person_module/1"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("get of a removed document: %v", err)
	}
	for _, w := range []sqlite.Write{{Op: "remove", ID: "person_module/1"}, {Op: "put", ID: "person_module/1", Doc: map[string]any{"a": 1}}} {
		if _, err := db.Write(context.Background(), w); gateway.ErrorCode(err) != gateway.ENOTFOUND {
			t.Errorf("%s of a removed document: %v", w.Op, err)
		}
	}
}

// Invariant 4: a write maps its target, parent and field values through id_map.
func TestWrite_MapsThroughIDMap(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	org := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Organisation"}})
	b, err := db.Claim(ctx, outbox.Budget{}, nil)
	if err != nil || len(b.Entries) != 1 {
		t.Fatal(err)
	}
	if _, err := db.Settle(ctx, []outbox.Result{{Seq: org.Seq, Status: "ok", ID: "organisation_module/3"}}); err != nil {
		t.Fatal(err)
	}
	p := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person",
		"subordination": org.ID, "list": []any{org.ID, "x"}}})
	e := entry(t, db, p.Seq)
	if e.Fields["subordination"] != "organisation_module/3" || !reflect.DeepEqual(e.Fields["list"], []any{"organisation_module/3", "x"}) || len(e.Refs) != 0 {
		t.Errorf("fields %v refs %v", e.Fields, e.Refs)
	}
	if !strings.Contains(storedBody(t, db, p.ID), `"subordination":"organisation_module/3"`) {
		t.Errorf("body %s", storedBody(t, db, p.ID))
	}
	child := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Address", "parent_relative_url": org.ID}})
	if !strings.HasPrefix(child.ID, "organisation_module/3/local-") {
		t.Errorf("child of a numbered local parent: %s", child.ID)
	}
	put := mustWrite(t, db, sqlite.Write{Op: "put", ID: org.ID, Doc: map[string]any{"title": "x"}})
	if put.ID != "organisation_module/3" || entry(t, db, put.Seq).DocID != "organisation_module/3" {
		t.Errorf("put by old local id went to %s", put.ID)
	}
}

func TestWrite_AuthorizeInsideTransaction(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	seedDoc(t, db, "person_module/1", `{"portal_type":"Person","title":"a","locked":false}`)
	deny := errors.New("denied")
	auth := func(old, doc, patch map[string]any) error {
		if old["locked"] == true {
			return gateway.Errorf(gateway.EFORBIDDEN, "locked")
		}
		if doc["title"] == "forbidden" {
			return deny
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	// Two concurrent writes: the first locks the document; the second's closure must see it.
	wg.Go(func() {
		_, errs[0] = db.Write(ctx, sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"locked": true}, Authorize: auth})
	})
	wg.Wait()
	wg.Go(func() {
		_, errs[1] = db.Write(ctx, sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"title": "b"}, Authorize: auth})
	})
	wg.Wait()
	if errs[0] != nil || gateway.ErrorCode(errs[1]) != gateway.EFORBIDDEN {
		t.Fatalf("errors %v", errs)
	}
	if _, err := db.Write(ctx, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "forbidden"}, Authorize: auth}); !errors.Is(err, deny) {
		t.Errorf("closure error %v not returned as is", err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d outbox rows; denied writes store nothing", n)
	}
}

func TestWrite_KeysReplayAndReuse(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	w := sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "a"}, Peer: "tab", Key: "k1"}
	first := mustWrite(t, db, w)
	again, err := db.Write(ctx, w)
	if err != nil || !again.Replayed || again.ID != first.ID || again.Seq != first.Seq || first.Replayed {
		t.Fatalf("replay %+v %v (first %+v)", again, err, first)
	}
	w2 := w
	w2.Doc = map[string]any{"portal_type": "Person", "title": "b"}
	_, err = db.Write(ctx, w2)
	if gateway.ErrorCode(err) != gateway.ECONFLICT || gateway.ErrorReason(err) != "key_reused" || gateway.Status(gateway.ErrorCode(err)) != 409 {
		t.Fatalf("reused key: %v", err)
	}
	w3 := w
	w3.Peer = "other"
	if r := mustWrite(t, db, w3); r.Replayed || r.ID == first.ID {
		t.Error("another peer's key collided")
	}
	if n := count(t, db, `SELECT count(*) FROM documents`); n != 2 {
		t.Errorf("%d documents", n)
	}
	// Concurrent duplicates: one write, every caller the same answer.
	var wg sync.WaitGroup
	results := make([]sqlite.WriteResult, 16)
	for i := range results {
		wg.Go(func() {
			r, err := db.Write(ctx, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "c"}, Peer: "tab", Key: "dup"})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	replayed := 0
	for _, r := range results {
		if r.ID != results[0].ID || r.Seq != results[0].Seq {
			t.Fatalf("different answers %+v %+v", r, results[0])
		}
		if r.Replayed {
			replayed++
		}
	}
	if replayed != 15 || count(t, db, `SELECT count(*) FROM outbox WHERE write_key = 'dup'`) != 1 {
		t.Errorf("replayed %d; outbox rows for the key %d", replayed, count(t, db, `SELECT count(*) FROM outbox WHERE write_key = 'dup'`))
	}
}

func TestWrite_KeysKeptSevenDays(t *testing.T) {
	db := MustOpenDB(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db.Now = func() time.Time { return now }
	w := sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}, Peer: "p", Key: "k"}
	first := mustWrite(t, db, w)
	now = now.Add(sqlite.WriteKeyLifetime - time.Minute)
	if _, err := db.Prune(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if r := mustWrite(t, db, w); !r.Replayed || r.ID != first.ID {
		t.Fatalf("key forgotten before 7 days: %+v", r)
	}
	now = now.Add(2 * time.Minute)
	if rep, err := db.Prune(context.Background(), 0); err != nil || rep.WriteKeys != 1 {
		t.Fatalf("prune %+v %v", rep, err)
	}
}

func TestWrite_GroupCommitIsolation(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	seedDoc(t, db, "person_module/1", `{"portal_type":"Person","title":"a"}`)
	var wg sync.WaitGroup
	const n = 64
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			w := sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{fmt.Sprintf("f%d", i): i}}
			if i%4 == 3 {
				w.ID = "person_module/missing"
			}
			_, errs[i] = db.Write(ctx, w)
		})
	}
	wg.Wait()
	for i, err := range errs {
		want := ""
		if i%4 == 3 {
			want = gateway.ENOTFOUND
		}
		if gateway.ErrorCode(err) != want {
			t.Errorf("write %d: %v", i, err)
		}
	}
	body, _ := outbox.DecodeObject([]byte(storedBody(t, db, "person_module/1")))
	if len(body) != 2+n-n/4 {
		t.Errorf("body has %d fields", len(body))
	}
	commits, writes := db.GroupStats()
	if writes != n || commits >= writes {
		t.Errorf("%d commits for %d writes: no group commit", commits, writes)
	}
	t.Logf("%d writes in %d commits", writes, commits)
}

func TestWrite_DiskFull(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	seedDoc(t, db, "person_module/1", `{"portal_type":"Person","title":"a"}`)
	var pages int
	db.Writer().QueryRow(`PRAGMA page_count`).Scan(&pages)
	if _, err := db.Writer().Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+2)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 64<<10)
	docsBefore, rowsBefore := count(t, db, `SELECT count(*) FROM documents`), count(t, db, `SELECT count(*) FROM outbox`)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = db.Write(ctx, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": big}, Peer: "p", Key: fmt.Sprint(i)})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if gateway.ErrorCode(err) != gateway.ENOSPACE || gateway.Status(gateway.ErrorCode(err)) != 507 || gateway.ErrorReason(err) != "disk_full" {
			t.Fatalf("disk full: %v", err)
		}
	}
	if count(t, db, `SELECT count(*) FROM documents`) != docsBefore || count(t, db, `SELECT count(*) FROM outbox`) != rowsBefore ||
		count(t, db, `SELECT count(*) FROM write_keys`) != 0 {
		t.Fatal("a write was half stored")
	}
	if _, err := db.Writer().Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": big}})
}

func TestWrite_EpochAndSiteID(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	db.SiteID = "s1"
	r1 := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	e1 := entry(t, db, r1.Seq)
	if len(e1.Epoch) != 32 {
		t.Fatalf("epoch %q: a first write while serve never ran makes one", e1.Epoch)
	}
	if got, _ := db.Epoch(ctx); got != e1.Epoch {
		t.Errorf("Epoch() = %s, row has %s", got, e1.Epoch)
	}
	epoch2, err := db.NewEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db.SiteID = "s2"
	r2 := mustWrite(t, db, sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person"}})
	if e := entry(t, db, r2.Seq); e.Epoch != epoch2 || e.SiteID != "s2" {
		t.Errorf("new row %s %s", e.Epoch, e.SiteID)
	}
	if e := entry(t, db, r1.Seq); e.Epoch != e1.Epoch || e.SiteID != "s1" {
		t.Errorf("old row changed: %s %s", e.Epoch, e.SiteID)
	}
	if r2.Seq <= r1.Seq {
		t.Error("seq not increasing")
	}
}

func TestWatchChanges(t *testing.T) {
	db := MustOpenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 10)
	go db.WatchChanges(ctx, 10*time.Millisecond, func() { changed <- struct{}{} })
	time.Sleep(50 * time.Millisecond)
	other, err := sqlite.Open(ctx, db.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.SetMeta(ctx, "x", "y"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("a commit by another process was not noticed")
	}
}

func TestEnqueueImported(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	in := `{"id":"person_module/7","doc":{"portal_type":"Person","title":"Seven"}}
{"id":"person_module/local-01ABC","doc":{"portal_type":"Person","title":"New"}}
`
	if _, err := db.Import(ctx, strings.NewReader(in), sqlite.ImportOptions{Enqueue: db.EnqueueImported}); err != nil {
		t.Fatal(err)
	}
	list, _, err := db.OutboxList(ctx, outbox.Filter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("%d entries: %v", len(list), err)
	}
	if e := list[0]; e.Op != "put" || e.DocID != "person_module/7" || !reflect.DeepEqual(e.Fields, map[string]any{"title": "Seven"}) ||
		!reflect.DeepEqual(e.Base, map[string]any{"title": nil}) {
		t.Errorf("put entry %+v", e)
	}
	if e := list[1]; e.Op != "post" || e.ParentID != "person_module" || e.PortalType != "Person" || e.Fields["title"] != "New" {
		t.Errorf("post entry %+v", e)
	}
	if _, err := db.Import(ctx, strings.NewReader(`{"id":"person_module/8","doc":{"title":"x"}}`+"\n"), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("an import without Enqueue queued %d entries", n-2)
	}
}
