package upstream

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// testStore is the uplink's Store over a real database file: *sqlite.DB, with Settle's
// report reduced to what the uplink reads and the two functions sqlite does not provide.
type testStore struct {
	*sqlite.DB
	mu      sync.Mutex
	renamed map[string]string
}

func openTestStore(tb testing.TB) *testStore {
	tb.Helper()
	db := sqlite.NewDB(filepath.Join(tb.TempDir(), "gateway.db"))
	db.Synchronous = "off"
	db.SiteID = "site-a"
	if err := db.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := db.NewEpoch(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &testStore{DB: db, renamed: map[string]string{}}
}

func (s *testStore) Settle(ctx context.Context, results []outbox.Result) ([]outbox.Settled, error) {
	rep, err := s.DB.Settle(ctx, results)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for k, v := range rep.Renamed {
		s.renamed[k] = v
	}
	s.mu.Unlock()
	return rep.Settled, nil
}

func (s *testStore) RecordCreated(ctx context.Context, seq int64, id string) error {
	b, _ := json.Marshal(map[string]string{"status": "created", "id": id})
	_, err := s.Writer().ExecContext(ctx, `UPDATE outbox SET answer = ? WHERE seq = ? AND state = 'inflight'`, string(b), seq)
	return err
}

func (s *testStore) NextDue(ctx context.Context) (time.Time, error) {
	var v sql.NullString
	err := s.Reader().QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM outbox WHERE state = 'deferred'
		AND (epoch = (SELECT value FROM meta WHERE key = 'epoch') OR checked_epoch = (SELECT value FROM meta WHERE key = 'epoch'))`).Scan(&v)
	if err != nil || !v.Valid {
		return time.Time{}, err
	}
	return sqlite.ParseTime(v.String)
}

// seed stores documents in the replica as an import from ERP5 would (no outbox rows).
func (s *testStore) seed(tb testing.TB, docs map[string]map[string]any) {
	tb.Helper()
	var b strings.Builder
	ids := make([]string, 0, len(docs))
	for id := range docs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		line, _ := json.Marshal(map[string]any{"id": id, "doc": docs[id]})
		b.Write(line)
		b.WriteByte('\n')
	}
	if _, err := s.Import(context.Background(), strings.NewReader(b.String()), sqlite.ImportOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// write makes a write through the write path and returns its result.
func (s *testStore) write(tb testing.TB, w sqlite.Write) sqlite.WriteResult {
	tb.Helper()
	if w.Peer == "" {
		w.Peer = "p1"
	}
	res, err := s.Write(context.Background(), w)
	if err != nil {
		tb.Fatalf("write %+v: %v", w, err)
	}
	return res
}

func (s *testStore) entries(tb testing.TB) []*outbox.Entry {
	tb.Helper()
	list, _, err := s.OutboxList(context.Background(), outbox.Filter{States: outbox.States})
	if err != nil {
		tb.Fatal(err)
	}
	return list
}

// open counts the entries that are not final.
func (s *testStore) open(tb testing.TB) map[string]int {
	tb.Helper()
	c, err := s.OutboxCounts(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{outbox.StateDone, outbox.StateMerged, outbox.StateSuperseded} {
		delete(c, f)
	}
	for k, v := range c {
		if v == 0 {
			delete(c, k)
		}
	}
	return c
}

// fault is what the fake ERP5 does to one request instead of (or around) answering it.
type fault int

const (
	faultNone         fault = iota
	faultCutBefore          // the connection is cut before the request is read
	faultCutAfter           // the request is applied, then the connection cut before the answer
	fault503                // 503, nothing applied
	fault502After           // applied, then a 502 (a front end timing out after the commit)
	fault429                // 429 with Retry-After
	faultTimeout            // no answer for longer than the client waits
	faultGarbage            // a 200 whose body is not JSON, nothing applied
	faultGarbageAfter       // applied, then a 200 whose body is not JSON
	fault404                // 404, nothing applied
	fault401                // 401, nothing applied
)

var faultNames = map[fault]string{faultNone: "none", faultCutBefore: "cut-before-send", faultCutAfter: "cut-after-commit",
	fault503: "503", fault502After: "502-after-commit", fault429: "429", faultTimeout: "timeout", faultGarbage: "garbage",
	faultGarbageAfter: "garbage-after-commit", fault404: "404", fault401: "401"}

func (f fault) String() string { return faultNames[f] }

// fakeERP5 is a small ERP5 double for the uplink's tests: the batch receiver (dedupe by exact
// (epoch, seq) with stored hashes, covers, write keys, field conflicts) and the stock
// interface, with faults on demand. It records every applied write.
type fakeERP5 struct {
	link *linksim.Link
	done chan struct{} // closed when the test ends

	mu         sync.Mutex
	receiver   bool
	encodings  []string
	maxEntries int
	docs       map[string]map[string]any
	nextID     int
	results    map[string]json.RawMessage // "epoch/seq" → result
	hashes     map[string]string
	keys       map[string]json.RawMessage // "site/peer/key" → result
	applied    []applied
	faults     map[string][]fault // path suffix → faults to use, in order
	hits       map[string]int     // path suffix → requests
	times      map[string][]time.Time
	reject     map[string]string // doc id → rejection reason
	fail500    map[string]bool   // doc id → a batch carrying it answers 500
	retryAfter string
	// version, when set, is the "version" of every put's result (any JSON value).
	version any
}

type applied struct {
	seq   int64
	op    string
	doc   string
	field map[string]any
}

func newFakeERP5(link *linksim.Link) *fakeERP5 {
	return &fakeERP5{
		link: link, done: make(chan struct{}), receiver: true, encodings: []string{"zstd", "gzip"}, maxEntries: 1000,
		docs: map[string]map[string]any{}, nextID: 1000, results: map[string]json.RawMessage{},
		hashes: map[string]string{}, keys: map[string]json.RawMessage{}, faults: map[string][]fault{},
		hits: map[string]int{}, times: map[string][]time.Time{}, reject: map[string]string{}, fail500: map[string]bool{}, retryAfter: "7",
	}
}

func (f *fakeERP5) addFault(path string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[path] = append(f.faults[path], fs...)
}

// when returns the arrival times of the requests to path.
func (f *fakeERP5) when(path string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times[path]...)
}

// pending returns the faults not yet used.
func (f *fakeERP5) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, q := range f.faults {
		n += len(q)
	}
	return n
}

func (f *fakeERP5) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fakeERP5) doc(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.docs[id]
	if d == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range d {
		out[k] = v
	}
	return out
}

func (f *fakeERP5) appliedLog() []applied {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]applied(nil), f.applied...)
}

func (f *fakeERP5) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if strings.HasPrefix(r.URL.Path, "/site/docs/") {
		path = "Base_edit"
	}
	if path == "hateoas" {
		path = "hateoas:" + r.URL.Query().Get("mode")
	}
	f.mu.Lock()
	f.hits[path]++
	f.times[path] = append(f.times[path], time.Now())
	var ft fault
	if q := f.faults[path]; len(q) > 0 {
		ft, f.faults[path] = q[0], q[1:]
	}
	receiver := f.receiver
	f.mu.Unlock()
	cut := func() {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				if lc, ok := c.(*linksim.Conn); ok {
					lc.Cut()
				} else {
					c.Close()
				}
			}
		}
	}
	switch ft {
	case faultCutBefore:
		cut()
		return
	case fault503:
		w.Header().Set("Retry-After", "")
		w.WriteHeader(503)
		return
	case fault404, fault401:
		w.WriteHeader(map[fault]int{fault404: 404, fault401: 401}[ft])
		return
	case fault429:
		w.Header().Set("Retry-After", f.retryAfter)
		w.WriteHeader(429)
		return
	case faultTimeout:
		select {
		case <-time.After(10 * time.Minute):
		case <-f.done:
		}
		cut()
		return
	case faultGarbage:
		w.WriteHeader(200)
		io.WriteString(w, "<html>proxy error</html>")
		return
	}
	status, hdr, body := f.handle(r, path, receiver)
	switch ft {
	case faultCutAfter:
		cut()
		return
	case fault502After:
		w.WriteHeader(502)
		return
	case faultGarbageAfter:
		w.WriteHeader(200)
		io.WriteString(w, `{"results": [`)
		return
	}
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if ce := r.Header.Get("Content-Encoding"); ce != "" && len(body) > 0 && status < 300 {
		c, err := Compress(ce, body)
		if err == nil {
			body = c
			w.Header().Set("Content-Encoding", ce)
		}
	}
	w.WriteHeader(status)
	w.Write(body)
}

func (f *fakeERP5) handle(r *http.Request, path string, receiver bool) (int, map[string]string, []byte) {
	site := "http://erp5.test/site/"
	switch {
	case r.URL.Path == "/site/":
		return 200, nil, []byte(`{"_links":{"traverse":{"href":"` + site + `hateoas?mode=traverse{&relative_url,view}","templated":true},
			"raw_search":{"href":"` + site + `hateoas?mode=search{&query,select_list*,limit*,sort_on*}","templated":true}},
			"_actions":{"add":{"href":"` + site + `hateoas?mode=newContent","method":"POST"}}}`)
	case path == CapabilityPath:
		if !receiver {
			return 404, nil, nil
		}
		f.mu.Lock()
		b, _ := json.Marshal(Capability{Version: 1, Encodings: f.encodings, MaxBatchBytes: 1 << 20, MaxEntries: f.maxEntries, RetentionDays: 90})
		f.mu.Unlock()
		return 200, nil, b
	case path == BatchPath && receiver:
		return f.batch(r)
	case path == ResultsPath && receiver:
		q := r.URL.Query()
		seqs, err := ParseSeqs(q.Get("seqs"))
		if err != nil {
			return 400, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []json.RawMessage
		for _, s := range seqs {
			k := q.Get("epoch") + "/" + strconv.FormatInt(s, 10)
			if res, ok := f.results[k]; ok {
				if h := f.hashes[k]; h != "" {
					// The stored result carries its entry's hash (docs/DESIGN.md appendix B).
					hb, _ := json.Marshal(h)
					res = append(append(append(json.RawMessage{}, res[:len(res)-1]...), `,"hash":`...), append(hb, '}')...)
				}
				out = append(out, res)
			} else {
				out = append(out, json.RawMessage(fmt.Sprintf(`{"seq":%d,"status":"unknown"}`, s)))
			}
		}
		b, _ := json.Marshal(map[string]any{"results": out})
		return 200, nil, b
	case path == "hateoas:traverse":
		id := r.URL.Query().Get("relative_url")
		f.mu.Lock()
		d, ok := f.docs[id]
		f.mu.Unlock()
		if !ok {
			return 404, nil, nil
		}
		view := map[string]any{"form_id": map[string]any{"key": "form_id", "default": "Base_view"},
			"_actions": map[string]any{"put": map[string]any{"href": site + "docs/" + id + "/Base_edit"}}}
		for _, k := range []string{"title", "reference", "age"} {
			view["my_"+k] = map[string]any{"key": "field_my_" + k, "default": d[k], "editable": true, "type": "StringField"}
		}
		b, _ := json.Marshal(map[string]any{"_links": map[string]any{"type": map[string]any{"href": "urn:jio:get:portal_types/Person"}},
			"_embedded": map[string]any{"_view": view}})
		return 200, nil, b
	case path == "hateoas:newContent" && r.Method == "POST":
		r.ParseForm()
		f.mu.Lock()
		f.nextID++
		id := fmt.Sprintf("%s/%d", r.PostForm.Get("parent_relative_url"), f.nextID)
		f.docs[id] = map[string]any{"portal_type": r.PostForm.Get("portal_type")}
		f.applied = append(f.applied, applied{op: "post", doc: id})
		f.mu.Unlock()
		return 201, map[string]string{"X-Location": "urn:jio:get:" + id}, nil
	case path == "Base_edit" && r.Method == "POST":
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/site/docs/"), "/Base_edit")
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		d, ok := f.docs[id]
		if !ok {
			return 404, nil, nil
		}
		if reason, bad := f.reject[id]; bad {
			return 400, nil, []byte(`{"my_title":{"error_text":"` + reason + `"}}`)
		}
		ch := map[string]any{}
		for k, v := range r.PostForm {
			if k == "form_id" {
				continue
			}
			ch[strings.TrimPrefix(k, "field_my_")] = v[0]
			d[strings.TrimPrefix(k, "field_my_")] = v[0]
		}
		f.applied = append(f.applied, applied{op: "put", doc: id, field: ch})
		return 200, nil, []byte(`{}`)
	}
	return 404, nil, nil
}

// batch applies a receiver batch as docs/DESIGN.md appendix B says.
func (f *fakeERP5) batch(r *http.Request) (int, map[string]string, []byte) {
	raw, _ := io.ReadAll(r.Body)
	body, err := Decompress(r.Header.Get("Content-Encoding"), raw)
	if err != nil {
		return 400, nil, []byte(`{"reason":"bad encoding"}`)
	}
	var req struct {
		Gateway string            `json:"gateway"`
		Epoch   string            `json:"epoch"`
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 400, nil, []byte(`{"reason":"bad json"}`)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(req.Entries) > f.maxEntries {
		return 413, nil, nil
	}
	type entry struct {
		Seq        int64          `json:"seq"`
		Op         string         `json:"op"`
		ID         string         `json:"id"`
		PortalType string         `json:"portal_type"`
		Parent     string         `json:"parent_relative_url"`
		Fields     map[string]any `json:"fields"`
		Base       map[string]any `json:"base"`
		Transition string         `json:"transition"`
		Peer       string         `json:"peer"`
		Key        string         `json:"key"`
		Covers     []int64        `json:"covers"`
		Hash       string         `json:"hash"`
	}
	var entries []entry
	docsSeen := map[string]bool{}
	for _, raw := range req.Entries {
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 400, nil, []byte(`{"reason":"bad entry"}`)
		}
		if docsSeen[e.ID] {
			return 400, nil, []byte(`{"reason":"two entries of one document"}`)
		}
		docsSeen[e.ID] = true
		if f.fail500[e.ID] {
			return 500, nil, nil
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Seq < entries[j].Seq })
	var out []json.RawMessage
	for _, e := range entries {
		k := req.Epoch + "/" + strconv.FormatInt(e.Seq, 10)
		if res, ok := f.results[k]; ok {
			if f.hashes[k] == e.Hash {
				out = append(out, res)
			} else {
				out = append(out, json.RawMessage(fmt.Sprintf(`{"seq":%d,"status":"seq_reused"}`, e.Seq)))
			}
			continue
		}
		reused := false
		for _, c := range e.Covers {
			if _, ok := f.results[req.Epoch+"/"+strconv.FormatInt(c, 10)]; ok {
				reused = true
			}
		}
		if reused {
			out = append(out, json.RawMessage(fmt.Sprintf(`{"seq":%d,"status":"seq_reused"}`, e.Seq)))
			continue
		}
		wk := req.Gateway + "/" + e.Peer + "/" + e.Key
		if e.Key != "" {
			if res, ok := f.keys[wk]; ok {
				out = append(out, res)
				continue
			}
		}
		res := f.apply(e.Seq, e.Op, e.ID, e.PortalType, e.Parent, e.Fields, e.Base)
		b, _ := json.Marshal(res)
		f.results[k], f.hashes[k] = b, e.Hash
		for _, c := range e.Covers {
			f.results[req.Epoch+"/"+strconv.FormatInt(c, 10)] = b
			f.hashes[req.Epoch+"/"+strconv.FormatInt(c, 10)] = e.Hash
		}
		if e.Key != "" {
			f.keys[wk] = b
		}
		out = append(out, b)
	}
	b, _ := json.Marshal(map[string]any{"results": out})
	return 200, map[string]string{"Content-Type": "application/json"}, b
}

func blank(v any) bool { return v == nil || v == "" }

func same(a, b any) bool {
	if blank(a) && blank(b) {
		return true
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// apply applies one entry (f.mu held) and returns its result.
func (f *fakeERP5) apply(seq int64, op, id, pt, parent string, fields, base map[string]any) map[string]any {
	if reason, bad := f.reject[id]; bad {
		return map[string]any{"seq": seq, "status": "rejected", "reason": reason}
	}
	switch op {
	case "post":
		f.nextID++
		nid := fmt.Sprintf("%s/%d", parent, f.nextID)
		d := map[string]any{"portal_type": pt}
		for k, v := range fields {
			d[k] = v
		}
		f.docs[nid] = d
		f.applied = append(f.applied, applied{seq: seq, op: op, doc: nid, field: fields})
		return map[string]any{"seq": seq, "status": "ok", "id": nid, "version": strconv.Itoa(f.nextID), "state": d}
	case "put":
		d, ok := f.docs[id]
		if !ok {
			return map[string]any{"seq": seq, "status": "rejected", "reason": "no document " + id}
		}
		cur := map[string]any{}
		for k, v := range fields {
			if !same(d[k], base[k]) && !same(d[k], v) {
				cur[k] = d[k]
			}
		}
		if len(cur) > 0 {
			return map[string]any{"seq": seq, "status": "conflict", "current": cur}
		}
		for k, v := range fields {
			d[k] = v
		}
		f.applied = append(f.applied, applied{seq: seq, op: op, doc: id, field: fields})
		if f.version != nil {
			return map[string]any{"seq": seq, "status": "ok", "id": id, "state": d, "version": f.version}
		}
		return map[string]any{"seq": seq, "status": "ok", "id": id, "state": d}
	case "remove", "action":
		d, ok := f.docs[id]
		if !ok {
			return map[string]any{"seq": seq, "status": "rejected", "reason": "no document " + id}
		}
		d["validation_state"] = "deleted"
		if op == "action" {
			d["validation_state"] = "validated"
		}
		f.applied = append(f.applied, applied{seq: seq, op: op, doc: id})
		return map[string]any{"seq": seq, "status": "ok", "id": id}
	}
	return map[string]any{"seq": seq, "status": "rejected", "reason": "bad op"}
}

// env is one uplink test: a store, the fake ERP5 behind a simulated link, and an uplink.
type env struct {
	t      testing.TB
	store  *testStore
	link   *linksim.Link
	erp5   *fakeERP5
	srv    *http.Server
	client *Client
	meter  *Meter
	up     *Uplink
}

// newEnv builds an env (call inside synctest.Test for virtual time). The uplink is not
// opened.
func newEnv(t testing.TB, cfg linksim.Config) *env {
	t.Helper()
	e := &env{t: t}
	e.store = openTestStore(t)
	e.link = linksim.New(cfg)
	e.erp5 = newFakeERP5(e.link)
	e.srv = &http.Server{Handler: e.erp5}
	go e.srv.Serve(e.link)
	e.meter = &Meter{}
	e.client = &Client{
		URL:        "http://erp5.test/site/",
		HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: e.link.DialContext, Meter: e.meter})},
		Auth:       Auth{Token: "t"},
	}
	e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter,
		Logger: discardLogger()}
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	if err := e.up.Open(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	e.up.Close(context.Background())
	close(e.erp5.done)
	e.srv.Close()
	e.link.Close()
	for _, c := range e.link.Conns() {
		c.Close()
	}
	if t, ok := e.client.HTTPClient.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// put writes a merge patch of doc through the write path.
func (e *env) put(doc string, patch map[string]any) int64 {
	return e.store.write(e.t, sqlite.Write{Op: sqlite.OpPut, ID: doc, Doc: patch}).Seq
}

// waitFor polls cond in virtual time until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	step := max(100*time.Millisecond, d/2000)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(step)
	}
}

var errStop = errors.New("stop")
