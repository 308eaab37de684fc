package erp5sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// FuzzReceiver sends fuzzed requests to the receiver's batch, results and changes scripts:
// whatever the body, encoding or query, the answer is 200 with the script's JSON shape or a
// 4xx with {"error","message"} — never a panic, never a 5xx.
func FuzzReceiver(f *testing.F) {
	batch := `{"gateway":"site-a","epoch":"e1","entries":[{"seq":1,"op":"put","id":"person_module/1","fields":{"title":"x"},"base":{"title":"t0"},"hash":"h1","peer":"p","key":"k"},` +
		`{"seq":2,"op":"post","portal_type":"Person","parent_relative_url":"person_module","fields":{"title":"new"},"hash":"h2"},` +
		`{"seq":3,"op":"action","id":"person_module/1","transition":"validate_action","hash":"h3","covers":[3]}]}`
	f.Add(uint8(0), uint8(0), []byte(batch), "")
	f.Add(uint8(0), uint8(1), []byte(batch), "")
	f.Add(uint8(0), uint8(2), []byte(batch), "")
	f.Add(uint8(0), uint8(3), []byte(batch), "")
	f.Add(uint8(0), uint8(0), []byte(`{"gateway":"g","epoch":"e","entries":[{"seq":-1,"op":"remove"}]}`), "")
	f.Add(uint8(0), uint8(0), []byte(`{"gateway":"g","epoch":"e","entries":[{"seq":1,"op":"put","id":"person_module/1","fields":{"portal_type":"Organisation"}}]}`), "")
	f.Add(uint8(0), uint8(0), []byte(`[]`), "")
	f.Add(uint8(1), uint8(0), []byte{}, "gateway=site-a&epoch=e1&seqs=1-3,7")
	f.Add(uint8(1), uint8(0), []byte{}, "gateway=site-a&epoch=e1&seqs=0-99999999999")
	f.Add(uint8(1), uint8(0), []byte{}, "seqs=,")
	f.Add(uint8(2), uint8(0), []byte(`{"gateway":"site-a","limit":5,"scopes":[{"name":"P","portal_type":"Person","query":"title:\"x\"","fields":["title"],"cursor":null}]}`), "")
	f.Add(uint8(2), uint8(1), []byte(`{"gateway":"site-a","scopes":[{"name":"P","portal_type":"Person","cursor":"ZXJwNXNpbTo5OTk"}]}`), "")
	f.Add(uint8(2), uint8(0), []byte(`{"gateway":"site-a","scopes":[{"name":"P","portal_type":"Person","query":"((("}]}`), "")
	f.Fuzz(func(t *testing.T, script, encoding uint8, body []byte, query string) {
		s := New(Options{Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }, MaxBatchBytes: 64 << 10})
		s.Load([]*Document{{ID: "person_module/1", PortalType: "Person", Properties: map[string]any{"title": "t0"},
			ModificationDate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}})
		var req *http.Request
		wire := body
		enc := ""
		switch encoding % 4 {
		case 1:
			enc, wire = "gzip", encode("gzip", body)
		case 2:
			enc, wire = "zstd", encode("zstd", body)
		case 3:
			enc = "gzip" // says gzip, is not
		}
		switch script % 3 {
		case 0:
			req = httptest.NewRequest(http.MethodPost, s.SitePath()+"/"+BatchScript, bytes.NewReader(wire))
		case 1:
			req = httptest.NewRequest(http.MethodGet, s.SitePath()+"/"+ResultsScript, nil)
			req.URL.RawQuery = query
		case 2:
			req = httptest.NewRequest(http.MethodPost, s.SitePath()+"/"+ChangesScript, bytes.NewReader(wire))
		}
		req.Header.Set("Content-Type", "application/json")
		if enc != "" && req.Method == http.MethodPost {
			req.Header.Set("Content-Encoding", enc)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		out, err := decode(rec.Header().Get("Content-Encoding"), rec.Body.Bytes())
		if err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("HTTP %d answer is not a JSON object: %q", rec.Code, out)
		}
		switch {
		case rec.Code == http.StatusOK:
			want := map[uint8]string{0: "results", 1: "results", 2: "scopes"}[script%3]
			var list []json.RawMessage
			if err := json.Unmarshal(m[want], &list); err != nil {
				t.Fatalf("200 without a %q list: %s", want, out)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if len(m["error"]) == 0 || len(m["message"]) == 0 {
				t.Fatalf("HTTP %d without error and message: %s", rec.Code, out)
			}
		default:
			t.Fatalf("HTTP %d: %s", rec.Code, out)
		}
	})
}

// FuzzParseSeqs checks the results query's seq list parser: sorted, without repeats, every
// number in the ranges given, and bounded.
func FuzzParseSeqs(f *testing.F) {
	for _, s := range []string{"1", "1,2,3", "10423,10424,10500-10650", " 5 - 7 ", "3-1", "", "1,,2", "999999999999999999", "0-99999", "1-100001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seqs, err := ParseSeqs(s)
		if err != nil {
			return
		}
		if len(seqs) == 0 || len(seqs) > MaxResultSeqs {
			t.Fatalf("%q: %d seqs", s, len(seqs))
		}
		if !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != len(seqs) {
			t.Fatalf("%q: not sorted and unique: %v", s, seqs)
		}
		if seqs[0] < 0 {
			t.Fatalf("%q: negative seq %d", s, seqs[0])
		}
	})
}
