package erp5sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"sitesync.example/gateway/erp5sim"
)

// postJSON sends v to a receiver script with the given Content-Encoding and decodes the
// answer by its own Content-Encoding.
func (c *client) postJSON(s *erp5sim.Server, script, enc string, v any) (response, map[string]any) {
	c.tb.Helper()
	body, _ := json.Marshal(v)
	switch enc {
	case "gzip":
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		body = b.Bytes()
	case "zstd":
		zw, _ := zstd.NewWriter(nil)
		body = zw.EncodeAll(body, nil)
		zw.Close()
	}
	req, _ := http.NewRequest("POST", c.siteURL(s)+script, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	req.Header.Set("Accept-Encoding", "identity")
	r := c.do(req)
	raw := r.body
	switch r.header.Get("Content-Encoding") {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			c.tb.Fatal(err)
		}
		raw, _ = io.ReadAll(zr)
	case "zstd":
		zr, _ := zstd.NewReader(nil)
		var err error
		if raw, err = zr.DecodeAll(raw, nil); err != nil {
			c.tb.Fatal(err)
		}
		zr.Close()
	}
	if r.status != 200 {
		return r, nil
	}
	return r, response{body: raw}.json(c.tb)
}

type entry = map[string]any

func batch(gateway, epoch string, entries ...entry) map[string]any {
	list := make([]any, len(entries))
	for i, e := range entries {
		list[i] = e
	}
	return map[string]any{"gateway": gateway, "epoch": epoch, "entries": list}
}

func put(seq int, id string, fields, base map[string]any, extra ...any) entry {
	e := entry{"seq": seq, "op": "put", "id": id, "fields": fields, "base": base, "hash": fmt.Sprintf("hash-%d", seq)}
	for i := 0; i+1 < len(extra); i += 2 {
		e[extra[i].(string)] = extra[i+1]
	}
	return e
}

func TestReceiver_Encodings(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	prev := "one"
	for i, enc := range []string{"zstd", "gzip", ""} {
		r, res := c.postJSON(s, erp5sim.BatchScript, enc, batch("g", "e", put(i+1, "person_module/1", map[string]any{"title": enc + "!"}, map[string]any{"title": prev})))
		prev = enc + "!"
		if r.status != 200 {
			t.Fatalf("%q: %d %s", enc, r.status, r.body)
		}
		if got := r.header.Get("Content-Encoding"); got != enc {
			t.Errorf("request in %q answered in %q", enc, got)
		}
		results := res["results"].([]any)
		if len(results) != 1 || results[0].(map[string]any)["status"] != "ok" {
			t.Errorf("%q: %v", enc, results)
		}
	}
	if got := s.Document("person_module/1").Properties["title"]; got != "!" {
		t.Errorf("title = %v", got)
	}
	// Stats count the compressed bytes on the wire.
	if st := s.Stats(); st.Requests[erp5sim.EndpointBatch] != 3 || st.BytesIn[erp5sim.EndpointBatch] == 0 {
		t.Errorf("stats %+v", st)
	}
	// A zstd-less receiver refuses zstd.
	s2, c2 := newDouble(t, erp5sim.Options{Encodings: []string{"gzip"}})
	cap := c2.get(c2.siteURL(s2) + erp5sim.CapabilityScript).json(t)
	if fmt.Sprint(cap["encodings"]) != "[gzip]" {
		t.Errorf("capability encodings = %v", cap["encodings"])
	}
	if r, _ := c2.postJSON(s2, erp5sim.BatchScript, "zstd", batch("g", "e")); r.status != 415 {
		t.Errorf("zstd to a gzip-only receiver: %d", r.status)
	}
}

func TestReceiver_DecompressionBomb(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(`{"gateway":"g","epoch":"e","entries":[],"pad":"`))
	zw.Write(bytes.Repeat([]byte("x"), erp5sim.MaxDecodedBytes))
	zw.Write([]byte(`"}`))
	zw.Close()
	req, _ := http.NewRequest("POST", c.siteURL(s)+erp5sim.BatchScript, &b)
	req.Header.Set("Content-Encoding", "gzip")
	if r := c.do(req); r.status != 413 {
		t.Errorf("bomb: %d", r.status)
	}
}

func TestReceiver_StockMode(t *testing.T) {
	for name, s := range map[string]*erp5sim.Server{
		"option":      erp5sim.New(erp5sim.Options{Stock: true}),
		"SetReceiver": func() *erp5sim.Server { s := erp5sim.New(erp5sim.Options{}); s.SetReceiver(false); return s }(),
	} {
		ts := httptest.NewServer(s)
		defer ts.Close()
		c := &client{tb: t, srv: ts, http: ts.Client()}
		for _, script := range []string{erp5sim.CapabilityScript, erp5sim.ResultsScript + "?gateway=g&epoch=e&seqs=1"} {
			if r := c.get(ts.URL + s.SitePath() + "/" + script); r.status != 404 {
				t.Errorf("%s: %s answered %d, want 404", name, script, r.status)
			}
		}
		if r, _ := c.postJSON(s, erp5sim.BatchScript, "", batch("g", "e")); r.status != 404 {
			t.Errorf("%s: batch answered %d, want 404", name, r.status)
		}
		// The stock interface still works.
		if r := c.get(ts.URL + s.SitePath() + "/"); r.status != 200 {
			t.Errorf("%s: root %d", name, r.status)
		}
		s.SetReceiver(true)
		if r := c.get(ts.URL + s.SitePath() + "/" + erp5sim.CapabilityScript); r.status != 200 {
			t.Errorf("%s: receiver back on: %d", name, r.status)
		}
	}
}

// TestReceiver_AppliedLog checks the log tests use for exactly-once assertions: every
// applied entry with its (epoch, seq) and covers, in order, and nothing for repeats.
func TestReceiver_AppliedLog(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	b1 := batch("site", "e1",
		put(3, "person_module/1", map[string]any{"title": "a"}, map[string]any{"title": "one"}, "covers", []int{1, 2}),
		put(4, "person_module/2", map[string]any{"title": "b"}, map[string]any{"title": "two"}))
	c.postJSON(s, erp5sim.BatchScript, "gzip", b1)
	c.postJSON(s, erp5sim.BatchScript, "gzip", b1) // a resend: applies nothing
	c.postJSON(s, erp5sim.BatchScript, "", batch("site", "e2", put(1, "person_module/1", map[string]any{"title": "c"}, map[string]any{"title": "a"})))
	c.postJSON(s, erp5sim.BatchScript, "", batch("other", "x", put(1, "person_module/2", map[string]any{"title": "d"}, map[string]any{"title": "b"})))

	all := s.Applied("site", "")
	if len(all) != 3 {
		t.Fatalf("applied %d entries, want 3: %+v", len(all), all)
	}
	if all[0].Epoch != "e1" || all[0].Seq != 3 || fmt.Sprint(all[0].Covers) != "[1 2]" || all[0].ID != "person_module/1" {
		t.Errorf("first applied = %+v", all[0])
	}
	if all[2].Epoch != "e2" || all[2].Seq != 1 || all[2].Version == "" {
		t.Errorf("third applied = %+v", all[2])
	}
	if got := s.Applied("site", "e1"); len(got) != 2 {
		t.Errorf("epoch e1: %d entries", len(got))
	}
	if got := s.Applied("other", ""); len(got) != 1 || got[0].Fields["title"] != "d" {
		t.Errorf("other gateway: %+v", got)
	}
	var vias []erp5sim.Via
	for _, ch := range s.Changes() {
		vias = append(vias, ch.Via)
	}
	if len(vias) != 4 {
		t.Errorf("change log has %d entries: %v", len(vias), vias)
	}
}

// TestReceiver_ChangesSeeIndexedStateOnly checks the changes query against the delayed
// catalog: an edit appears only after the index lag.
func TestReceiver_ChangesSeeIndexedStateOnly(t *testing.T) {
	clock := erp5sim.NewClock(t0)
	s, c := newDouble(t, erp5sim.Options{Now: clock.Now, IndexLag: 3 * time.Second})
	s.Load(people())
	pull := func(cursor any) (rows []any, next any) {
		_, res := c.postJSON(s, erp5sim.ChangesScript, "", map[string]any{"gateway": "g", "scopes": []any{
			map[string]any{"name": "p", "portal_type": "Person", "fields": []string{"title"}, "cursor": cursor}}})
		sc := res["scopes"].([]any)[0].(map[string]any)
		return sc["rows"].([]any), sc["cursor"]
	}
	rows, cur := pull(nil)
	if len(rows) != 2 {
		t.Fatalf("first pull: %v", rows)
	}
	s.Edit("person_module/1", map[string]any{"title": "late"})
	clock.Advance(2 * time.Second)
	if rows, cur2 := pull(cur); len(rows) != 0 || cur2 != cur {
		t.Errorf("changes saw an unindexed edit: %v (cursor %v → %v)", rows, cur, cur2)
	}
	clock.Advance(time.Second)
	rows, _ = pull(cur)
	if len(rows) != 1 || dig(t, rows[0], "fields", "title") != "late" {
		t.Errorf("after the lag: %v", rows)
	}
}

func TestReceiver_Results(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	entries := []entry{}
	for i := 1; i <= 5; i++ {
		entries = append(entries, put(100+i, fmt.Sprintf("person_module/%d", 1+i%2), map[string]any{fmt.Sprintf("note_%d", i): "x"}, nil))
	}
	// One document per batch entry is the gateway's rule; here each batch holds one entry.
	for _, e := range entries {
		c.postJSON(s, erp5sim.BatchScript, "", batch("g", "e", e))
	}
	r := c.get(c.siteURL(s) + erp5sim.ResultsScript + "?gateway=g&epoch=e&seqs=100-103,105,105")
	res := r.json(t)["results"].([]any)
	var got []string
	for _, x := range res {
		m := x.(map[string]any)
		got = append(got, fmt.Sprintf("%v:%v", m["seq"], m["status"]))
	}
	if strings.Join(got, " ") != "100:unknown 101:ok 102:ok 103:ok 105:ok" {
		t.Errorf("results = %v", got)
	}
}

// The results query returns, with each stored result, the hash stored with its entry (and a
// folded seq the covering entry's hash), so that a gateway can tell its own payload from
// another one under the same key.
func TestResults_CarryStoredHash(t *testing.T) {
	s := erp5sim.New(erp5sim.Options{})
	s.Load([]*erp5sim.Document{{ID: "person_module/1", PortalType: "Person", Properties: map[string]any{"title": "a"}}})
	res := s.ApplyBatch("g", "e", []erp5sim.Entry{{Seq: 7, Op: "put", ID: "person_module/1", Fields: map[string]any{"title": "b"},
		Base: map[string]any{"title": "a"}, Covers: []int64{5}, Hash: "h7"}}, "")
	if res[0]["status"] != "ok" {
		t.Fatalf("apply: %v", res)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "http://x"+s.SitePath()+"/ERP5Site_getSyncGatewayResults?gateway=g&epoch=e&seqs=5-8", nil))
	var got struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	want := map[float64][2]any{5: {"ok", "h7"}, 6: {"unknown", nil}, 7: {"ok", "h7"}, 8: {"unknown", nil}}
	if len(got.Results) != 4 {
		t.Fatalf("results = %v", got.Results)
	}
	for _, r := range got.Results {
		w := want[r["seq"].(float64)]
		if r["status"] != w[0] || r["hash"] != w[1] {
			t.Errorf("seq %v: status %v hash %v, want %v %v", r["seq"], r["status"], r["hash"], w[0], w[1])
		}
	}
}
