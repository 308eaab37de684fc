package upstream

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/gzip"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
)

// gzipFrontEnd compresses the double's answers as a front end (Apache, haproxy) does for a
// client that accepts gzip, unless they are encoded already (the receiver's).
type gzipFrontEnd struct{ h http.Handler }

type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

func (g gzipFrontEnd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		g.h.ServeHTTP(w, r)
		return
	}
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	g.h.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	body := rec.body.Bytes()
	if rec.header.Get("Content-Encoding") == "" && len(body) > 256 {
		var zb bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&zb, gzip.DefaultCompression)
		zw.Write(body)
		zw.Close()
		body = zb.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.status)
	w.Write(body)
}

// pullFigures are what one initial pull measured, in the link's virtual time.
type pullFigures struct {
	what     string
	docs     int
	pages    int
	up, down int64
	elapsed  time.Duration
}

// bound is the performance goal: 1.3 × (bytes down ÷ bandwidth + one round trip per page).
func (f pullFigures) bound() time.Duration {
	rate := float64(linksim.Thuraya.Down) / 8
	ideal := time.Duration(float64(f.down)/rate*float64(time.Second)) + time.Duration(f.pages)*linksim.Thuraya.RTT()
	return time.Duration(1.3 * float64(ideal))
}

func (f pullFigures) String() string {
	ideal := time.Duration(float64(f.bound()) / 1.3)
	return fmt.Sprintf("%-22s %6d docs %4d pages  down %9d B (%.0f B/doc)  up %7d B  %9v  ideal %9v  ratio %.3f",
		f.what, f.docs, f.pages, f.down, float64(f.down)/float64(f.docs), f.up, f.elapsed.Round(time.Millisecond),
		ideal.Round(time.Millisecond), float64(f.elapsed)/float64(ideal))
}

// initialPull pulls n ten-field Person documents over a Thuraya link from an empty replica.
func initialPull(t *testing.T, mode string, frontGzip bool, n int) pullFigures {
	var f pullFigures
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), personScope)
		if frontGzip {
			e.srv.Handler = gzipFrontEnd{e.sim}
		}
		e.sim.Load(persons(n, time.Now().Add(-time.Hour)))
		if mode == ModeBatch {
			// The capability is known (the uplink probed it): the pull is what is measured.
			e.dl.Mode = func() (string, *Capability) {
				return ModeBatch, &Capability{Version: 1, Encodings: []string{"zstd", "gzip"}}
			}
		}
		start := time.Now()
		e.open()
		for !e.complete() {
			if time.Since(start) > 48*time.Hour {
				t.Fatal("initial sync did not finish")
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.elapsed = time.Since(start)
		ls := e.link.Stats()
		f.up, f.down = ls.Sent[linksim.Up], ls.Sent[linksim.Down]
		st := e.sim.Stats()
		f.pages = st.Requests[erp5sim.EndpointChanges] + st.Requests[erp5sim.EndpointSearch]
		f.docs = n
		f.what = mode
		if frontGzip {
			f.what += " (gzip front end)"
		}
		if n <= 20000 {
			e.checkReplica("Person", personFields, all)
		}
	})
	return f
}

// idleRefresh measures the bytes of a refresh that finds nothing new, over four scopes.
func idleRefresh(t *testing.T, mode string, frontGzip bool) (up, down int64, requests int) {
	synctest.Test(t, func(t *testing.T) {
		scopes := []Scope{
			{PortalType: "Person", Fields: []string{"title", "first_name", "last_name", "default_email_text", "reference"}},
			{PortalType: "Organisation", Fields: []string{"title", "reference", "corporate_name", "default_telephone_text", "default_address_city"}},
			{PortalType: "Product", Fields: []string{"title", "reference", "ean13_code", "base_price", "quantity_unit"}},
			{PortalType: "Sale Order", Query: `simulation_state:("ordered" OR "confirmed")`,
				Fields: []string{"title", "reference", "destination", "start_date", "simulation_state"}},
		}
		e := newDLEnv(t, linksim.Thuraya, optsFor(mode, erp5sim.Options{}), scopes...)
		if frontGzip {
			e.srv.Handler = gzipFrontEnd{e.sim}
		}
		e.sim.Load(erp5sim.Generate(1, 2000, time.Now().Add(-time.Hour)))
		e.dl.Interval = time.Hour
		e.dl.Mode = func() (string, *Capability) {
			if mode == ModeStock {
				return ModeStock, nil
			}
			return ModeBatch, &Capability{Version: 1, Encodings: []string{"zstd", "gzip"}}
		}
		e.open()
		waitFor(t, 24*time.Hour, "initial sync", e.complete)
		time.Sleep(30 * time.Minute)
		e.settle("a pull")
		before, reqs := e.link.Stats(), e.client.Requests()
		e.settle("an idle pull")
		after := e.link.Stats()
		up = after.Sent[linksim.Up] - before.Sent[linksim.Up]
		down = after.Sent[linksim.Down] - before.Sent[linksim.Down]
		requests = int(e.client.Requests() - reqs)
	})
	return up, down, requests
}

// TestDownlink_Figures measures the downlink over a simulated Thuraya link (444 kbit/s down,
// 700 ms round trip) in virtual time (testing/synctest: linksim's token bucket and delays
// are the only clock): the initial pull of ten-field documents against the goal of 1.3 ×
// (bytes down ÷ bandwidth + one round trip per page), where the bytes are everything the
// link carried down (compressed bodies, HTTP headers); and the bytes of an idle refresh of
// four scopes (goal with the receiver: 2 KB). DOWNLINK_DOCS sets the document count
// (default 10,000; the figure in the report uses 100,000).
func TestDownlink_Figures(t *testing.T) {
	if testing.Short() {
		t.Skip("figures: skipped with -short")
	}
	n := 10_000
	if s := os.Getenv("DOWNLINK_DOCS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("DOWNLINK_DOCS=%q", s)
		}
		n = v
	}
	f := initialPull(t, ModeBatch, false, n)
	t.Log(f)
	if f.elapsed > f.bound() {
		t.Errorf("initial pull %v exceeds the goal %v", f.elapsed, f.bound())
	}
	if os.Getenv("DOWNLINK_STOCK") != "" {
		t.Log(initialPull(t, ModeStock, false, n))
		t.Log(initialPull(t, ModeStock, true, n))
	}
	up, down, reqs := idleRefresh(t, ModeBatch, false)
	t.Logf("idle refresh, 4 scopes, receiver: %d requests, %d B up + %d B down = %d B", reqs, up, down, up+down)
	if up+down > 2048 {
		t.Errorf("idle refresh with the receiver: %d B, goal 2 KB", up+down)
	}
	up, down, reqs = idleRefresh(t, ModeStock, false)
	t.Logf("idle refresh, 4 scopes, stock: %d requests, %d B up + %d B down = %d B", reqs, up, down, up+down)
	up, down, reqs = idleRefresh(t, ModeStock, true)
	t.Logf("idle refresh, 4 scopes, stock behind a gzip front end: %d requests, %d B up + %d B down = %d B", reqs, up, down, up+down)
}

// reconcileBytes measures the bytes of one reconciliation of a scope of n documents.
func reconcileBytes(t *testing.T, frontGzip bool, n int) (down int64, requests int) {
	synctest.Test(t, func(t *testing.T) {
		e := newDLEnv(t, linksim.Thuraya, erp5sim.Options{}, personScope)
		if frontGzip {
			e.srv.Handler = gzipFrontEnd{e.sim}
		}
		e.sim.Load(persons(n, time.Now().Add(-time.Hour)))
		e.dl.Interval = time.Hour
		e.open()
		waitFor(t, 24*time.Hour, "initial sync", e.complete)
		must(t, e.dl.Close(t.Context()))
		before, reqs := e.link.Stats(), e.client.Requests()
		e.dl.mu.Lock()
		states := e.dl.states
		e.dl.mu.Unlock()
		must(t, e.dl.reconcile(t.Context(), "Person", states))
		down = e.link.Stats().Sent[linksim.Down] - before.Sent[linksim.Down]
		requests = int(e.client.Requests() - reqs)
	})
	return down, requests
}

// TestDownlink_ReconcileFigures reports what a reconciliation costs on the link.
func TestDownlink_ReconcileFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("figures: skipped with -short")
	}
	const n = 10_000
	down, reqs := reconcileBytes(t, false, n)
	t.Logf("reconciliation of %d documents: %d requests, %d B down (%.1f B/doc)", n, reqs, down, float64(down)/n)
	down, reqs = reconcileBytes(t, true, n)
	t.Logf("reconciliation of %d documents behind a gzip front end: %d requests, %d B down (%.1f B/doc)", n, reqs, down, float64(down)/n)
	if down > 20*n {
		t.Errorf("a reconciliation costs %d B for %d documents", down, n)
	}
}
