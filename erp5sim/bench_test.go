package erp5sim_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/klauspost/compress/zstd"

	"sitesync.example/gateway/erp5sim"
)

func TestCorpus_AppliesCleanly(t *testing.T) {
	edits := erp5sim.Corpus(3, 1000)
	if len(edits) != 1000 {
		t.Fatalf("%d edits", len(edits))
	}
	again := erp5sim.Corpus(3, 1000)
	ops := map[string]int{}
	s := erp5sim.New(erp5sim.Options{})
	s.Load(erp5sim.Generate(3, erp5sim.CorpusDocs, erp5sim.CorpusRef))
	var entries []erp5sim.Entry
	for i, e := range edits {
		a, _ := json.Marshal(e)
		b, _ := json.Marshal(again[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("edit %d differs between runs", i)
		}
		ops[e.Op]++
		entries = append(entries, erp5sim.ToEntry(e.Entry(int64(i+1))))
	}
	for _, op := range []string{"post", "put", "action"} {
		if ops[op] == 0 {
			t.Errorf("no %s in the corpus: %v", op, ops)
		}
	}
	for _, r := range s.ApplyBatch("g", "e", entries, "") {
		if r["status"] != "ok" {
			t.Fatalf("corpus entry refused: %v", r)
		}
	}
	if got := len(s.Applied("g", "e")); got != 1000 {
		t.Errorf("applied %d", got)
	}
}

// BenchmarkServer_Batch1000 measures the double applying a 1,000-entry zstd batch from the
// edit corpus through ServeHTTP, and reports the batch's sizes.
func BenchmarkServer_Batch1000(b *testing.B) {
	edits := erp5sim.Corpus(1, 1000)
	list := make([]any, len(edits))
	for i, e := range edits {
		list[i] = e.Entry(int64(i + 1))
	}
	raw, _ := json.Marshal(map[string]any{"gateway": "g", "epoch": "e", "entries": list})
	enc, _ := zstd.NewWriter(nil)
	body := enc.EncodeAll(raw, nil)
	docs := erp5sim.Generate(1, erp5sim.CorpusDocs, erp5sim.CorpusRef)
	for b.Loop() {
		b.StopTimer()
		s := erp5sim.New(erp5sim.Options{Logger: nil})
		s.Load(docs)
		req := httptest.NewRequest("POST", "http://x"+s.SitePath()+"/"+erp5sim.BatchScript, bytes.NewReader(body))
		req.Header.Set("Content-Encoding", "zstd")
		rec := httptest.NewRecorder()
		b.StartTimer()
		s.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(len(raw)), "json_bytes")
	b.ReportMetric(float64(len(body)), "zstd_bytes")
}

func BenchmarkGenerate3000(b *testing.B) {
	for b.Loop() {
		erp5sim.Generate(1, 3000, t0)
	}
}

// BenchmarkServer_Search measures a raw_search over 3,000 documents: a query, a date sort and
// a page of 100.
func BenchmarkServer_Search(b *testing.B) {
	s := erp5sim.New(erp5sim.Options{})
	s.Load(erp5sim.Generate(1, 3000, t0))
	u := "http://x" + s.SitePath() + "/ERP5Document_getHateoas?mode=search&query=portal_type%3A%22Person%22&select_list=title&limit=0&limit=100&sort_on=%5B%22modification_date%22%2C%22descending%22%5D"
	for b.Loop() {
		req := httptest.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "application/hal+json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
