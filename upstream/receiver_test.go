package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
)

func simClient(t *testing.T, opts erp5sim.Options) (*Client, *erp5sim.Server) {
	t.Helper()
	opts.Logger = discardLogger()
	sim := erp5sim.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c := &Client{URL: srv.URL + sim.SitePath(), HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: loopbackOnly})}}
	return c, sim
}

func TestClient_Changes(t *testing.T) {
	c, sim := simClient(t, erp5sim.Options{})
	sim.Load([]*erp5sim.Document{
		{ID: "person_module/1", PortalType: "Person", Properties: map[string]any{"title": "Ann", "reference": "A"}, ModificationDate: time.Now()},
		{ID: "person_module/2", PortalType: "Person", Properties: map[string]any{"title": "Bob", "reference": "B"}, ModificationDate: time.Now()},
		{ID: "organisation_module/1", PortalType: "Organisation", Properties: map[string]any{"title": "Acme"}, ModificationDate: time.Now()},
	})
	ctx := context.Background()
	req := ChangesRequest{Gateway: "site-a", Limit: 1, Scopes: []ChangesScope{
		{Name: "people", PortalType: "Person", Fields: []string{"title"}},
		{Name: "orgs", PortalType: "Organisation", Fields: []string{"title"}},
	}}
	var seen []string
	for round := 0; round < 5; round++ {
		resp, err := c.Changes(ctx, req, EncodingZstd)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Scopes) != 2 {
			t.Fatalf("scopes = %+v", resp.Scopes)
		}
		more := false
		for i, sc := range resp.Scopes {
			for _, r := range sc.Rows {
				var f map[string]any
				json.Unmarshal(r.Fields, &f)
				seen = append(seen, fmt.Sprintf("%s:%s=%v", sc.Name, r.ID, f["title"]))
				if r.Version == "" {
					t.Errorf("row %s without version", r.ID)
				}
			}
			// The cursor is opaque: echo exactly the last one received.
			req.Scopes[i].Cursor = sc.Cursor
			more = more || sc.More
		}
		if !more {
			break
		}
	}
	got := strings.Join(seen, " ")
	for _, want := range []string{"people:person_module/1=Ann", "people:person_module/2=Bob", "orgs:organisation_module/1=Acme"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes %q lack %q", got, want)
		}
	}
	// An idle refresh: nothing new.
	resp, err := c.Changes(ctx, req, EncodingGzip)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range resp.Scopes {
		if len(sc.Rows) != 0 || sc.More {
			t.Errorf("idle refresh of %s: %+v", sc.Name, sc)
		}
	}
}

func TestClient_ResultsAndCapability(t *testing.T) {
	c, sim := simClient(t, erp5sim.Options{Encodings: []string{"gzip"}, RetentionDays: 45})
	ctx := context.Background()
	capa, err := c.Capability(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if capa.Version != 1 || capa.Encoding() != EncodingGzip || capa.RetentionDays != 45 || capa.MaxEntries <= 0 {
		t.Errorf("capability = %+v", capa)
	}
	sim.Load([]*erp5sim.Document{{ID: "person_module/1", PortalType: "Person", Properties: map[string]any{"title": "a"}, ModificationDate: time.Now()}})
	entry := json.RawMessage(`{"base":{"title":"a"},"fields":{"title":"b"},"hash":"h1","id":"person_module/1","op":"put","seq":7}`)
	res, _, err := c.SendBatch(ctx, "site-a", "e1", []json.RawMessage{entry}, capa.Encoding())
	if err != nil || len(res) != 1 || res[0].Status != StatusOK || len(res[0].Raw) == 0 {
		t.Fatalf("batch: %+v %v", res, err)
	}
	got, err := c.Results(ctx, "site-a", "e1", []int64{7, 8, 9, 10})
	if err != nil {
		t.Fatal(err)
	}
	status := map[int64]string{}
	for _, r := range got {
		status[r.Seq] = r.Status
	}
	if status[7] != StatusOK || status[8] != StatusUnknown || status[10] != StatusUnknown {
		t.Errorf("results = %v", status)
	}
	// The same seq with another hash: seq_reused, nothing applied.
	other := json.RawMessage(`{"base":{"title":"b"},"fields":{"title":"c"},"hash":"h2","id":"person_module/1","op":"put","seq":7}`)
	res, _, err = c.SendBatch(ctx, "site-a", "e1", []json.RawMessage{other}, "")
	if err != nil || res[0].Status != StatusSeqReused {
		t.Errorf("reused seq: %+v %v", res, err)
	}
	if sim.Document("person_module/1").Properties["title"] != "b" {
		t.Errorf("seq_reused applied something")
	}
}

func TestClient_NoLocation(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"_links":{"traverse":{"href":"t{&relative_url,view}"},"raw_search":{"href":"s{&query}"},
				"view":[{"href":"a"},{"href":"b"}]},"_actions":{"add":[{"href":"add"}]}}`)
			return
		}
		w.WriteHeader(http.StatusCreated) // and no X-Location
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: loopbackOnly})}}
	_, err := c.Post(context.Background(), "Person", "person_module")
	if !errors.Is(err, ErrNoLocation) || Classify(err) != OutcomeUncertain {
		t.Errorf("201 without X-Location: %v (%v)", err, Classify(err))
	}
}

func TestParseDocument_LinkArrays(t *testing.T) {
	body := `{"_links":{"type":{"href":"urn:jio:get:portal_types/Person"},"parent":{"href":"urn:jio:get:person_module"},
		"view":[{"href":"x","name":"view"},{"href":"y","name":"history"}],"action_workflow":[]},
		"_embedded":{"_view":{"form_id":{"key":"form_id","default":"Person_view"},
		"my_title":{"key":"field_my_title","default":"","editable":true,"type":"StringField"},
		"my_count":{"key":"field_my_count","default":0,"editable":true,"type":"IntegerField"},
		"your_flag":{"key":"field_your_flag","default":false,"type":"CheckBoxField"},
		"_links":{"form_definition":[{"href":"f"}]},
		"_actions":{"put":{"href":"https://h/s/person_module/1/Base_edit"}}}}}`
	doc, err := ParseDocument("person_module/1", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if doc.PortalType != "Person" || doc.PutURL != "https://h/s/person_module/1/Base_edit" {
		t.Errorf("doc = %+v", doc)
	}
	if v, ok := doc.Fields["title"]; !ok || v != "" {
		t.Errorf("empty title dropped: %v %v", v, ok)
	}
	if v := fmt.Sprint(doc.Fields["count"]); v != "0" {
		t.Errorf("zero count = %s", v)
	}
	if v, ok := doc.Fields["flag"]; !ok || v != false {
		t.Errorf("false flag = %v %v", v, ok)
	}
}

// TestTransport_HTTP2AndResumption checks the transport speaks HTTP/2 when the server offers
// it, and resumes the TLS session on a new connection (a few hundred bytes instead of a
// full handshake).
func TestTransport_HTTP2AndResumption(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			t.Errorf("Expect header sent")
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "{}")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	meter := &Meter{}
	tr := NewTransport(TransportConfig{DialContext: loopbackOnly, TLSConfig: &tls.Config{RootCAs: pool}, Meter: meter})
	get := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(strings.Repeat("x", 5000)))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	first := get()
	if first.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", first.Proto)
	}
	full := meter.Reading()
	tr.CloseIdleConnections()
	second := get()
	if !second.TLS.DidResume {
		t.Errorf("second connection did not resume the TLS session")
	}
	r := meter.Reading()
	if r.Connections != 2 {
		t.Errorf("%d connections", r.Connections)
	}
	// The resumed connection costs less than the first (no certificate).
	if resumed := (r.UpTotal + r.DownTotal) - (full.UpTotal + full.DownTotal); resumed >= full.UpTotal+full.DownTotal {
		t.Errorf("resumed exchange %d bytes, first %d", resumed, full.UpTotal+full.DownTotal)
	}
	if tr.TLSHandshakeTimeout < 30*time.Second || tr.ExpectContinueTimeout != 0 || !tr.DisableCompression {
		t.Errorf("transport settings: %+v", tr)
	}
}

func TestClient_ClockSkew(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ERP5's clock runs 90 minutes ahead.
		w.Header().Set("Date", time.Now().Add(90*time.Minute).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: loopbackOnly})}}
	if _, known := c.ClockSkew(); known {
		t.Fatal("skew known before any response")
	}
	c.Capability(context.Background())
	skew, known := c.ClockSkew()
	if !known || (skew-90*time.Minute).Abs() > 2*time.Second {
		t.Errorf("skew = %v (%v), want about 90m", skew, known)
	}
}
