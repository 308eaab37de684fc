package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The parsers of what ERP5 (or anything pretending to be it, a proxy's error page) sends back
// must never panic and must turn nonsense into an error, never into a result.

func FuzzParseDocument(f *testing.F) {
	f.Add("person_module/1", []byte(`{"_links":{"type":{"href":"urn:jio:get:portal_types/Person"},"parent":{"href":"urn:jio:get:person_module"}},`+
		`"_embedded":{"_view":{"form_id":{"default":"Person_view"},"my_title":{"key":"field_my_title","default":"Ana","type":"StringField"},`+
		`"_actions":{"put":{"href":"https://erp5.example/person_module/1/Base_edit"}}}}}`))
	f.Add("x", []byte(`{"_embedded":{"_view":{"my_a":{"default":1.50},"your_b":{"default":["x"]},"my_c":null}}}`))
	f.Add("", []byte(`{"_links":{"type":[{"href":"a"},{"href":"b"}]}}`))
	f.Add("x", []byte(`<html>Proxy Error</html>`))
	f.Add("x", []byte(`[]`))
	f.Add("x", []byte(`{"_embedded":{"_view":[]}}`))
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		doc, err := ParseDocument(id, body)
		if err != nil {
			if doc != nil {
				t.Fatalf("a document beside the error %v", err)
			}
			return
		}
		if doc.ID != id || doc.Fields == nil || doc.Keys == nil || doc.Types == nil {
			t.Fatalf("document %+v", doc)
		}
	})
}

func FuzzParseResults(f *testing.F) {
	f.Add([]byte(`{"results":[{"seq":1,"status":"ok","id":"person_module/7","version":"2026-01-01T00:00:00.123456Z","state":{"title":"x"}}]}`))
	f.Add([]byte(`{"results":[{"seq":2,"status":"conflict","current":{"title":"y"}},{"seq":3,"status":"rejected","reason":"invalid"}]}`))
	f.Add([]byte(`{"results":null}`))
	f.Add([]byte(`{"results":[{"seq":"1"}]}`))
	f.Add([]byte(`{"results":[{"seq":1e400}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`<html><body>502 Bad Gateway</body></html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parseResults(body)
		if err != nil {
			return
		}
		if res == nil {
			t.Fatal("nil results without an error")
		}
		for _, r := range res {
			if len(r.Raw) == 0 || !json.Valid(r.Raw) {
				t.Fatalf("result %+v keeps no valid raw object", r)
			}
		}
	})
}

func FuzzSeqs(f *testing.F) {
	for _, s := range []string{"", "1", "1,2", "10423,10424,10500-10650", "5-3", "-1", "1--2", "9223372036854775807", "1-1000001", " 1", "1,,2", "0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Count(s, "-") > 3 {
			return // a few ranges of a million each are enough to exercise them
		}
		seqs, err := ParseSeqs(s)
		if err != nil {
			return
		}
		want := slices.Clone(seqs)
		slices.Sort(want)
		want = slices.Compact(want)
		if len(want) > 0 && want[len(want)-1]-want[0] > 1_000_000 {
			// FormatSeqs may join these into one range longer than ParseSeqs reads; the
			// uplink asks about at most a few hundred seqs at once.
			return
		}
		back, err := ParseSeqs(FormatSeqs(seqs))
		if err != nil {
			t.Fatalf("FormatSeqs of %d seqs = %.200q does not parse: %v", len(seqs), FormatSeqs(seqs), err)
		}
		if !slices.Equal(back, want) {
			t.Fatalf("round trip of %q: %d seqs back, want %d", s, len(back), len(want))
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "7", "86400", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9", "99999999999999999999", " 3 "} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := clampRetryAfter(parseRetryAfter(v, now))
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("Retry-After %q gives %v", v, d)
		}
	})
}

// fuzzTransport answers every request with one canned response.
type fuzzTransport struct {
	status int
	header http.Header
	body   []byte
}

func (f *fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: f.status, Header: f.header.Clone(), Body: io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)), Request: r}, nil
}

// FuzzClientResponses sends every ERP5 call of the client to a server answering the fuzzed
// status, encoding and body: each call returns a result or an error, never both, never a
// panic, and a successful call's result has the shape it promises.
func FuzzClientResponses(f *testing.F) {
	f.Add(200, uint8(0), "", []byte(`{"version":1,"encodings":["zstd","gzip"],"max_batch_bytes":1048576,"max_entries":1000,"retention_days":90}`))
	f.Add(200, uint8(1), "", []byte(`{"results":[{"seq":1,"status":"ok","id":"person_module/1"}]}`))
	f.Add(200, uint8(2), "", []byte(`{"scopes":[{"name":"Person","rows":[{"id":"person_module/1","version":"v","fields":{"title":"x"}}],"cursor":"c","more":false}]}`))
	f.Add(200, uint8(0), "", []byte(`{"_links":{"traverse":{"href":"https://e/t{?relative_url,view}"},"raw_search":{"href":"https://e/s{?query,select_list*,limit*,sort_on*}"}},"_actions":{"add":{"href":"https://e/add"}}}`))
	f.Add(503, uint8(0), "120", []byte(`<html>busy</html>`))
	f.Add(200, uint8(3), "", []byte(`not compressed at all`))
	f.Add(201, uint8(0), "", []byte(``))
	f.Add(429, uint8(0), "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`{"error":"rate_limited"}`))
	f.Fuzz(func(t *testing.T, status int, encoding uint8, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			status = 200 + status%400
			if status < 100 {
				status = -status
			}
		}
		h := http.Header{"Content-Type": {"application/json"}}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		wireBody := body
		switch encoding % 4 {
		case 1:
			h.Set("Content-Encoding", EncodingGzip)
			wireBody, _ = Compress(EncodingGzip, body)
		case 2:
			h.Set("Content-Encoding", EncodingZstd)
			wireBody, _ = Compress(EncodingZstd, body)
		case 3:
			h.Set("Content-Encoding", EncodingGzip) // claims gzip, is not
		}
		c := &Client{URL: "https://erp5.test/erp5/web_site_module/hateoas/",
			HTTPClient: &http.Client{Transport: &fuzzTransport{status: status, header: h, body: wireBody}},
			Logger:     discardLogger()}
		ctx := context.Background()
		check := func(what string, ok bool, err error) {
			if err != nil {
				Classify(err)
				var he *HTTPError
				if errors.As(err, &he) && he.RetryAfter > MaxRetryAfter {
					t.Fatalf("%s: Retry-After %v over the cap", what, he.RetryAfter)
				}
				return
			}
			if !ok {
				t.Fatalf("%s succeeded with a malformed result", what)
			}
		}
		capa, err := c.Capability(ctx)
		check("capability", err != nil || capa != nil && capa.Version >= 1, err)
		res, err := c.Results(ctx, "site", "epoch", []int64{1, 2, 3})
		check("results", res != nil, err)
		res, _, err = c.SendBatch(ctx, "site", "epoch", []json.RawMessage{json.RawMessage(`{"seq":1}`)}, EncodingGzip)
		check("batch", res != nil, err)
		ch, err := c.Changes(ctx, ChangesRequest{Gateway: "site", Scopes: []ChangesScope{{Name: "Person", PortalType: "Person"}}}, "")
		check("changes", ch != nil, err)
		root, err := c.Root(ctx)
		check("root", root != nil && root.Traverse != "" && root.RawSearch != "" && root.Add != "", err)
		doc, err := c.Get(ctx, "person_module/1")
		check("get", doc != nil && doc.ID == "person_module/1", err)
		rows, err := c.Search(ctx, SearchOptions{Query: `portal_type:"Person"`})
		check("search", rows != nil, err)
	})
}
