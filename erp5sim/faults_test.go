package erp5sim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
)

// linkEnv serves a double across a simulated link inside a synctest bubble.
type linkEnv struct {
	t      *testing.T
	s      *erp5sim.Server
	link   *linksim.Link
	client *http.Client
	base   string
}

func overLink(t *testing.T, cfg linksim.Config, opts erp5sim.Options, fn func(e *linkEnv)) {
	synctest.Test(t, func(t *testing.T) {
		s := erp5sim.New(opts)
		s.Load(people())
		l := linksim.New(cfg)
		srv := &http.Server{Handler: s}
		go srv.Serve(l)
		tr := l.Transport()
		defer func() {
			tr.CloseIdleConnections()
			srv.Close()
		}()
		fn(&linkEnv{t: t, s: s, link: l, client: &http.Client{Transport: tr}, base: "http://erp5.test" + s.SitePath() + "/"})
	})
}

// batch posts one put of person_module/1 (title "fault", based on "one") and returns the
// response or the error.
func (e *linkEnv) batch(seq int) (*http.Response, []byte, error) {
	body, _ := json.Marshal(batch("g", "e", put(seq, "person_module/1", map[string]any{"title": "fault"}, map[string]any{"title": "one"})))
	resp, err := e.client.Post(e.base+erp5sim.BatchScript, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (e *linkEnv) applied() int { return len(e.s.Applied("g", "e")) }

func TestFault_CutBeforeRead(t *testing.T) {
	overLink(t, linksim.Config{Delay: 100 * time.Millisecond}, erp5sim.Options{}, func(e *linkEnv) {
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutBeforeRead})
		if _, _, err := e.batch(1); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("err = %v, want a reset", err)
		}
		if n := e.applied(); n != 0 {
			t.Errorf("applied %d entries, want 0", n)
		}
		// The next attempt goes through.
		if resp, _, err := e.batch(1); err != nil || resp.StatusCode != 200 || e.applied() != 1 {
			t.Errorf("retry: %v %v, applied %d", resp, err, e.applied())
		}
		if st := e.s.Stats(); st.Faults != 1 || st.Requests[erp5sim.EndpointBatch] != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestFault_CutAfterCommit(t *testing.T) {
	overLink(t, linksim.Config{Delay: 100 * time.Millisecond}, erp5sim.Options{}, func(e *linkEnv) {
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutAfterCommit})
		if _, _, err := e.batch(1); err == nil {
			t.Fatal("no error")
		}
		if n := e.applied(); n != 1 {
			t.Fatalf("applied %d entries, want 1 (committed before the cut)", n)
		}
		// The resend is answered from the dedupe record, not applied again.
		resp, body, err := e.batch(1)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
			t.Fatalf("resend: %v %s", err, body)
		}
		if n := e.applied(); n != 1 {
			t.Errorf("applied %d entries after the resend, want 1", n)
		}
	})
}

func TestFault_CutAfterResponse(t *testing.T) {
	overLink(t, linksim.Config{Down: 100_000, Delay: 300 * time.Millisecond}, erp5sim.Options{}, func(e *linkEnv) {
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultCutAfterResponse})
		if _, _, err := e.batch(1); err == nil {
			t.Fatal("no error")
		}
		if n := e.applied(); n != 1 {
			t.Errorf("applied %d, want 1", n)
		}
		st := e.link.Stats()
		if st.Sent[linksim.Down] < 100 || st.Delivered[linksim.Down] != 0 {
			t.Errorf("link stats %+v: the response must be sent and lost", st)
		}
		if got := e.s.Stats().BytesOut[erp5sim.EndpointBatch]; got == 0 {
			t.Errorf("response bytes not counted")
		}
	})
}

func TestFault_Status(t *testing.T) {
	overLink(t, linksim.Config{}, erp5sim.Options{}, func(e *linkEnv) {
		for _, tc := range []struct {
			f      erp5sim.Fault
			status int
			header string
			value  string
			apply  int
		}{
			{erp5sim.Fault{Kind: erp5sim.FaultStatus}, 503, "", "", 0},
			{erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: 429, RetryAfter: "120"}, 429, "Retry-After", "120", 0},
			{erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: 401}, 401, "WWW-Authenticate", `Basic realm="Zope"`, 0},
			{erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: 500}, 500, "", "", 0}, // a ConflictError Zope gave up on
			{erp5sim.Fault{Kind: erp5sim.FaultStatusAfterCommit, Status: 504}, 504, "", "", 1},
			{erp5sim.Fault{Kind: erp5sim.FaultStatusAfterCommit}, 502, "", "", 1},
		} {
			before := e.applied()
			e.s.InjectFault(tc.f)
			resp, _, err := e.batch(len(e.s.Changes()) + 10)
			if err != nil {
				t.Fatalf("%v: %v", tc.f, err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("%+v: status %d, want %d", tc.f, resp.StatusCode, tc.status)
			}
			if tc.header != "" && resp.Header.Get(tc.header) != tc.value {
				t.Errorf("%+v: %s = %q", tc.f, tc.header, resp.Header.Get(tc.header))
			}
			if got := e.applied() - before; got != tc.apply {
				t.Errorf("%+v: applied %d, want %d", tc.f, got, tc.apply)
			}
			// Reset the document so the next put's base holds.
			e.s.Edit("person_module/1", map[string]any{"title": "one"})
		}
	})
}

func TestFault_SlowAndDelay(t *testing.T) {
	overLink(t, linksim.Config{}, erp5sim.Options{}, func(e *linkEnv) {
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointCapability, Kind: erp5sim.FaultNone, Delay: 2 * time.Second})
		start := time.Now()
		resp, err := e.client.Get(e.base + erp5sim.CapabilityScript)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("delayed answer after %v, want 2s", d)
		}

		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointCapability, Kind: erp5sim.FaultSlow, Rate: 50})
		start = time.Now()
		resp, err = e.client.Get(e.base + erp5sim.CapabilityScript)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !json.Valid(body) {
			t.Fatalf("slow body: %v %q", err, body)
		}
		if d, min := time.Since(start), time.Duration(len(body)-5)*time.Second/50; d < min {
			t.Errorf("%d bytes at 50 B/s took %v, want at least %v", len(body), d, min)
		}
	})
}

func TestFault_GarbageAndTruncate(t *testing.T) {
	overLink(t, linksim.Config{Delay: 50 * time.Millisecond}, erp5sim.Options{}, func(e *linkEnv) {
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultGarbage})
		resp, body, err := e.batch(1)
		if err != nil || resp.StatusCode != 200 || json.Valid(body) {
			t.Errorf("garbage: %v %v %q", resp, err, body)
		}
		if e.applied() != 1 {
			t.Errorf("garbage: not applied")
		}
		e.s.Edit("person_module/1", map[string]any{"title": "one"})
		e.s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointBatch, Kind: erp5sim.FaultTruncate})
		_, _, err = e.batch(2)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated: %v, want unexpected EOF", err)
		}
		if e.applied() != 2 {
			t.Errorf("truncate: not applied")
		}
	})
}

func TestFault_QueueAndHook(t *testing.T) {
	s, c := newDouble(t, erp5sim.Options{})
	s.Load(people())
	root := c.root(s)
	tmpl := str(t, root, "_links", "raw_search", "href")
	s.InjectFault(erp5sim.Fault{Endpoint: erp5sim.EndpointSearch, Kind: erp5sim.FaultStatus, Status: 500, Times: 2})
	if r := c.traverse(s, root, "person_module/1"); r.status != 200 {
		t.Errorf("traverse hit a search fault: %d", r.status)
	}
	var got []int
	for range 3 {
		got = append(got, c.get(expand(tmpl, map[string]any{"query": ""})).status)
	}
	if got[0] != 500 || got[1] != 500 || got[2] != 200 {
		t.Errorf("statuses %v, want [500 500 200]", got)
	}
	if s.PendingFaults() != 0 {
		t.Errorf("fault not used up")
	}
	n := 0
	s.SetFaultFunc(func(r *http.Request, ep erp5sim.Endpoint) *erp5sim.Fault {
		if ep != erp5sim.EndpointTraverse {
			return nil
		}
		n++
		if n%2 == 1 {
			return &erp5sim.Fault{Kind: erp5sim.FaultStatus, Status: 503, RetryAfter: "1"}
		}
		return nil
	})
	a, b := c.traverse(s, root, "person_module/1"), c.traverse(s, root, "person_module/1")
	if a.status != 503 || a.header.Get("Retry-After") != "1" || b.status != 200 {
		t.Errorf("hook: %d %d", a.status, b.status)
	}
	s.ClearFaults()
	if r := c.traverse(s, root, "person_module/1"); r.status != 200 {
		t.Errorf("after ClearFaults: %d", r.status)
	}
	st := s.Stats()
	if st.Status[erp5sim.EndpointSearch][500] != 0 || st.Requests[erp5sim.EndpointSearch] != 3 {
		// Faulted requests are counted as requests, not as handled statuses.
		t.Errorf("stats %+v", st)
	}
}
