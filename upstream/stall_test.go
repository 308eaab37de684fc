package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/linksim"
)

// stallEnv is a client over a simulated link to a handler that reads the whole request and
// answers with answer bytes.
type stallEnv struct {
	link   *linksim.Link
	client *Client
	mu     sync.Mutex
	states []LinkState
	l      link
}

func newStallEnv(t *testing.T, cfg linksim.Config, answer int) *stallEnv {
	e := &stallEnv{link: linksim.New(cfg)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"x":"` + strings.Repeat("a", answer) + `"}`))
	})}
	go srv.Serve(e.link)
	e.l = link{logger: discardLogger(), now: time.Now}
	e.client = &Client{
		URL:        "http://erp5.test/site/",
		HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: e.link.DialContext, Meter: &Meter{}})},
		Auth:       Auth{Token: "t"},
		Logger:     discardLogger(),
		OnExchange: func(method, path string, status int, err error) {
			e.l.observe(method, path, status, err)
			e.mu.Lock()
			e.states = append(e.states, e.l.status().State)
			e.mu.Unlock()
		},
	}
	t.Cleanup(func() {
		srv.Close()
		e.link.Close()
		for _, c := range e.link.Conns() {
			c.Close()
		}
		e.client.HTTPClient.Transport.(*http.Transport).CloseIdleConnections()
	})
	return e
}

func (e *stallEnv) post(ctx context.Context, n, expect int) error {
	_, err := e.client.do(ctx, request{method: http.MethodPost, url: e.client.SiteURL() + "x",
		contentType: "application/octet-stream", body: []byte(strings.Repeat("z", n)), accept: "application/json", expect: expect})
	return err
}

// The link goes silent on a kept-alive connection: the request is abandoned as stalled
// after the stall window (15 s), far before its 90 s deadline, and the link is down then.
func TestStall_SilentLinkIsDownInSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newStallEnv(t, linksim.Thuraya, 100)
		ctx := context.Background()
		if err := e.post(ctx, 100, 0); err != nil {
			t.Fatal(err)
		}
		if st := e.l.status().State; st != LinkUp {
			t.Fatalf("link %s after an answer", st)
		}
		e.link.SetDown(true) // silent: nothing delivered, writes block, no reset
		start := time.Now()
		err := e.post(ctx, 2000, 0)
		took := time.Since(start)
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("err = %v, want ErrStalled", err)
		}
		if took > MinStallWindow+5*time.Second {
			t.Errorf("stall noticed after %v (window %v, request deadline %v)", took, MinStallWindow, requestTimeout(2000))
		}
		if st := e.l.status().State; st != LinkDown {
			t.Errorf("link %s after the stall, want down", st)
		}
		if o := Classify(err); o != OutcomeDeferred && o != OutcomeUncertain {
			t.Errorf("a stalled request is %s", o)
		}
	})
}

// A slow but moving transfer is no stall: 30 KB up and 30 KB down at 8 kbit/s take about
// half a minute each way, beyond the window, and succeed.
func TestStall_SlowMovingTransferIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newStallEnv(t, linksim.Config{Up: 8_000, Down: 8_000, Delay: 350 * time.Millisecond}, 30_000)
		start := time.Now()
		if err := e.post(context.Background(), 30_000, 30_000); err != nil {
			t.Fatalf("slow transfer failed after %v: %v", time.Since(start), err)
		}
		if took := time.Since(start); took < 3*MinStallWindow {
			t.Fatalf("transfer took %v: not slow enough to test the window", took)
		}
		if st := e.l.status().State; st != LinkUp {
			t.Errorf("link %s after a slow transfer", st)
		}
	})
}
