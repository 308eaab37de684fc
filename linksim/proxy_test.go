package linksim_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"sitesync.example/gateway/linksim"
)

// These tests use real sockets on 127.0.0.1 and real time, so they only check lower bounds
// (shaping can make a transfer slower, never faster) and integrity.

func TestProxy_ShapesRealSockets(t *testing.T) {
	body := bytes.Repeat([]byte("abcdefghij"), 5_000) // 50 KB
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(body)
	}))
	defer ts.Close()
	l := linksim.New(linksim.Config{Up: 1_000_000, Down: 2_000_000, Delay: 10 * time.Millisecond})
	p, err := linksim.NewProxy(l, ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	start := time.Now()
	resp, err := client.Post("http://"+p.Addr()+"/", "text/plain", bytes.NewReader(make([]byte, 25_000)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body %d bytes, %v", len(got), err)
	}
	// 20 ms handshake + 25 KB up at 1 Mbit/s (200 ms) + 10 ms + 50 KB down at 2 Mbit/s (200 ms) + 10 ms.
	if min := 440 * time.Millisecond; elapsed < min {
		t.Errorf("exchange took %v, faster than the link allows (%v)", elapsed, min)
	}
	st := l.Stats()
	if st.Sent[linksim.Up] < 25_000 || st.Sent[linksim.Down] < 50_000 {
		t.Errorf("stats %+v: bytes not counted", st)
	}
}

func TestProxy_CutResetsClient(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("too late"))
	}))
	defer ts.Close()
	defer close(release)
	l := linksim.New(linksim.Config{Delay: 5 * time.Millisecond})
	p, err := linksim.NewProxy(l, ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.Addr() + "/")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	if n := l.Cut(); n != 1 {
		t.Fatalf("Cut() = %d, want 1", n)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("request succeeded across a cut link")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client not told of the cut")
	}
}

func TestWrapListener_ServesHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := linksim.New(linksim.Config{Down: 800_000, Delay: 5 * time.Millisecond})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 10_000))
	})}
	go srv.Serve(linksim.WrapListener(ln, l))
	defer srv.Close()
	l.SetDown(true)
	time.AfterFunc(100*time.Millisecond, func() { l.SetDown(false) })
	start := time.Now()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 10_000 {
		t.Fatalf("got %d bytes", n)
	}
	// The outage (100 ms) and 10 KB at 100 KB/s (100 ms) both delay the answer.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("answer after %v, before the outage and shaping allow", d)
	}
}
