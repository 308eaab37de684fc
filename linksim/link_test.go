package linksim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"sitesync.example/gateway/linksim"
)

// dialPair dials across l and returns both ends.
func dialPair(tb testing.TB, l *linksim.Link) (client, server net.Conn) {
	tb.Helper()
	var serr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		server, serr = l.Accept()
	}()
	client, err := l.DialContext(context.Background(), "tcp", "erp5:80")
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	<-done
	if serr != nil {
		tb.Fatalf("accept: %v", serr)
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in   string
		want linksim.Config
		err  bool
	}{
		{"384kbit,700ms", linksim.Config{Up: 384_000, Down: 384_000, Delay: 350 * time.Millisecond}, false},
		{"384kbit/444kbit,1.1s", linksim.Config{Up: 384_000, Down: 444_000, Delay: 550 * time.Millisecond}, false},
		{"2mbit/unlimited,0s", linksim.Config{Up: 2_000_000}, false},
		{"1.5kbit,10ms", linksim.Config{Up: 1500, Down: 1500, Delay: 5 * time.Millisecond}, false},
		{"384kbit", linksim.Config{}, true},
		{"fast,1s", linksim.Config{}, true},
		{"1kbit,-1s", linksim.Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := linksim.ParseConfig(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if err == nil {
				again, err := linksim.ParseConfig(got.String())
				if err != nil || again != got {
					t.Fatalf("String() %q does not round-trip: %+v, %v", got.String(), again, err)
				}
			}
		})
	}
}

func TestLink_DialCostsOneRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: 350 * time.Millisecond})
		start := time.Now()
		var accepted time.Duration
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted = time.Since(start)
				c.Close()
			}
		}()
		c, err := l.DialContext(t.Context(), "tcp", "x")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := time.Since(start); got != 700*time.Millisecond {
			t.Errorf("dial took %v, want 700ms", got)
		}
		synctest.Wait()
		if accepted != 350*time.Millisecond {
			t.Errorf("accepted after %v, want 350ms", accepted)
		}
		l.Close()
		if _, err := l.DialContext(t.Context(), "tcp", "x"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial after Close: %v, want ECONNREFUSED", err)
		}
	})
}

func TestLink_ThroughputAndLatency(t *testing.T) {
	cases := []struct {
		name  string
		dir   linksim.Direction
		bytes int
		want  time.Duration // transmission time alone
	}{
		{"up 1s", linksim.Up, 48_000, time.Second},                       // 384 kbit/s
		{"down 1s", linksim.Down, 55_500, time.Second},                   // 444 kbit/s
		{"up odd size", linksim.Up, 1_001, 20_854_166 * time.Nanosecond}, // 8008 bits / 384000
		{"down 10 s", linksim.Down, 555_000, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := linksim.New(linksim.Thuraya)
				client, server := dialPair(t, l)
				w, r := client, server
				if tc.dir == linksim.Down {
					w, r = server, client
				}
				data := bytes.Repeat([]byte("x"), tc.bytes)
				start := time.Now()
				wroteC := make(chan time.Duration, 1)
				go func() {
					if _, err := w.Write(data); err != nil {
						t.Errorf("write: %v", err)
					}
					wroteC <- time.Since(start)
				}()
				got, err := io.ReadAll(io.LimitReader(r, int64(tc.bytes)))
				if err != nil || len(got) != tc.bytes {
					t.Fatalf("read %d bytes, %v", len(got), err)
				}
				elapsed := time.Since(start)
				if wrote := <-wroteC; wrote != tc.want {
					t.Errorf("write returned after %v, want %v (transmission time)", wrote, tc.want)
				}
				if want := tc.want + linksim.Thuraya.Delay; elapsed != want {
					t.Errorf("last byte read after %v, want %v", elapsed, want)
				}
				st := l.Stats()
				if st.Sent[tc.dir] != int64(tc.bytes) || st.Delivered[tc.dir] != int64(tc.bytes) {
					t.Errorf("stats %+v, want %d bytes sent and delivered %v", st, tc.bytes, tc.dir)
				}
				if st.Sent[1-tc.dir] != 0 {
					t.Errorf("stats %+v: bytes counted in the other direction", st)
				}
			})
		})
	}
}

func TestLink_BandwidthIsShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Up: 80_000}) // 10,000 bytes/s
		c1, s1 := dialPair(t, l)
		c2, s2 := dialPair(t, l)
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range []net.Conn{c1, c2} {
			wg.Go(func() { c.Write(make([]byte, 10_000)) })
		}
		for _, s := range []net.Conn{s1, s2} {
			wg.Go(func() { io.ReadFull(s, make([]byte, 10_000)) })
		}
		wg.Wait()
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("two 10 KB writes at 10 KB/s took %v, want 2s", got)
		}
	})
}

func TestLink_Burst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Up: 80_000, Burst: 5_000})
		c, s := dialPair(t, l)
		start := time.Now()
		go c.Write(make([]byte, 15_000))
		io.ReadFull(s, make([]byte, 15_000))
		// The first 5,000 bytes leave at once, the other 10,000 at 10 KB/s.
		if got := time.Since(start); got != time.Second {
			t.Errorf("15 KB with a 5 KB burst at 10 KB/s took %v, want 1s", got)
		}
	})
}

func TestLink_EchoRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: 300 * time.Millisecond})
		c, s := dialPair(t, l)
		go io.Copy(s, s)
		start := time.Now()
		for range 3 {
			c.Write([]byte("ping"))
			io.ReadFull(c, make([]byte, 4))
		}
		if got := time.Since(start); got != 3*600*time.Millisecond {
			t.Errorf("3 round trips took %v, want 1.8s", got)
		}
	})
}

func TestLink_CloseDeliversEOFAfterData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: time.Second})
		c, s := dialPair(t, l)
		start := time.Now()
		c.Write([]byte("last words"))
		c.Close()
		got, err := io.ReadAll(s)
		if err != nil || string(got) != "last words" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("EOF after %v, want 1s", d)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("read on closed conn: %v, want net.ErrClosed", err)
		}
		// The far end's writes fail once the close has reached it and come back.
		time.Sleep(time.Second)
		if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("write to a closed peer: %v, want ECONNRESET", err)
		}
	})
}

func TestLink_ReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: time.Second})
		c, s := dialPair(t, l)
		start := time.Now()
		s.SetReadDeadline(start.Add(500 * time.Millisecond))
		c.Write([]byte("late"))
		_, err := s.Read(make([]byte, 4))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d != 500*time.Millisecond {
			t.Errorf("timed out after %v, want 500ms", d)
		}
		// A deadline moved into the past wakes a blocked reader at once (net/http relies on it).
		s.SetReadDeadline(time.Time{})
		done := make(chan error)
		go func() { _, err := s.Read(make([]byte, 100)); done <- err }()
		synctest.Wait()
		s.SetReadDeadline(time.Unix(1, 0))
		if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read after deadline moved: %v", err)
		}
		s.SetReadDeadline(time.Time{})
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "late" {
			t.Errorf("data after deadlines: %q, %v", buf, err)
		}
	})
}

func TestLink_Outage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Up: 80_000, Delay: 100 * time.Millisecond})
		c, s := dialPair(t, l)
		l.SetDown(true)
		if _, err := l.DialContext(t.Context(), "tcp", "x"); !errors.Is(err, linksim.ErrLinkDown) {
			t.Fatalf("dial while down: %v, want ErrLinkDown", err)
		}
		start := time.Now()
		wroteC := make(chan time.Duration, 1)
		go func() {
			c.Write(make([]byte, 1_000))
			wroteC <- time.Since(start)
		}()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if len(wroteC) != 0 {
			t.Fatalf("write returned while the link was down")
		}
		l.SetDown(false)
		io.ReadFull(s, make([]byte, 1_000))
		if d := time.Since(start); d != 5*time.Second+100*time.Millisecond+100*time.Millisecond {
			t.Errorf("data arrived after %v, want 5.2s (outage + 0.1s transmission + 0.1s delay)", d)
		}
		if wrote := <-wroteC; wrote != 5*time.Second+100*time.Millisecond {
			t.Errorf("write returned after %v, want 5.1s", wrote)
		}

		// Data in flight when the link goes down stalls until it is up again.
		c.Write([]byte("x"))
		l.Outage(2 * time.Second)
		start = time.Now()
		io.ReadFull(s, make([]byte, 1))
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("in-flight byte arrived after %v, want 2s (the outage)", d)
		}
		if l.IsDown() {
			t.Errorf("link still down after Outage")
		}
	})
}

func TestLink_Cut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: time.Second})
		c, s := dialPair(t, l)
		c.Write([]byte("lost in flight"))
		readErr := make(chan error)
		go func() { _, err := s.Read(make([]byte, 100)); readErr <- err }()
		synctest.Wait()
		if n := l.Cut(); n != 1 {
			t.Fatalf("Cut() = %d, want 1", n)
		}
		if err := <-readErr; !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("server read: %v, want ECONNRESET", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client write: %v, want ECONNRESET", err)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read: %v, want ECONNRESET", err)
		}
		st := l.Stats()
		if st.Cuts != 1 || st.Delivered[linksim.Up] != 0 || st.Sent[linksim.Up] != 14 {
			t.Errorf("stats %+v, want 1 cut, 14 bytes sent and none delivered", st)
		}
		if len(l.Conns()) != 0 {
			t.Errorf("cut connection still listed")
		}
	})
}

func TestLink_CutAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Up: 80_000, Delay: 100 * time.Millisecond})
		c, s := dialPair(t, l)
		l.CutAfter(linksim.Up, 2_500)
		n, err := c.Write(make([]byte, 4_000))
		if n != 2_500 || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Write = %d, %v; want 2500, ECONNRESET", n, err)
		}
		got, err := io.ReadAll(s)
		if len(got) != 2_500 || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server read %d bytes, %v; want 2500 then ECONNRESET", len(got), err)
		}
		// The rule is one-shot: a new connection is not cut.
		c2, s2 := dialPair(t, l)
		go c2.Write(make([]byte, 4_000))
		if _, err := io.ReadFull(s2, make([]byte, 4_000)); err != nil {
			t.Fatalf("second connection: %v", err)
		}
		if st := l.Stats(); st.Cuts != 1 {
			t.Errorf("cuts = %d, want 1", st.Cuts)
		}
	})
}

func TestLink_CutSilently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: 100 * time.Millisecond})
		c, s := dialPair(t, l)
		c.(*linksim.Conn).CutSilently()
		if _, err := c.Write([]byte("into the void")); err != nil {
			t.Fatalf("write after a silent cut: %v, want success", err)
		}
		s.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after a silent cut: %v, want a timeout", err)
		}
	})
}

// TestLink_HTTP runs an HTTP exchange over the link in virtual time and checks its duration
// against the link's arithmetic: one RTT to connect, the request's bytes up, one delay, the
// response's bytes down, one delay.
func TestLink_HTTP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := linksim.Config{Up: 384_000, Down: 444_000, Delay: 350 * time.Millisecond}
		l := linksim.New(cfg)
		body := bytes.Repeat([]byte("0123456789"), 4_440)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		})}
		go srv.Serve(l)
		tr := l.Transport()
		client := &http.Client{Transport: tr}
		defer func() {
			tr.CloseIdleConnections()
			srv.Close()
		}()

		start := time.Now()
		resp, err := client.Post("http://erp5.example/x", "text/plain", bytes.NewReader(make([]byte, 4_800)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body: %d bytes, %v", len(got), err)
		}
		elapsed := time.Since(start)
		st := l.Stats()
		tx := func(n int64, rate int64) time.Duration { return time.Duration(n * 8 * int64(time.Second) / rate) }
		want := cfg.RTT() + tx(st.Sent[linksim.Up], cfg.Up) + cfg.Delay + tx(st.Sent[linksim.Down], cfg.Down) + cfg.Delay
		if d := elapsed - want; d < 0 || d > time.Millisecond {
			t.Errorf("exchange took %v, want %v (up %d B, down %d B)", elapsed, want, st.Sent[0], st.Sent[1])
		}
		if st.Sent[linksim.Down] < int64(len(body)) || st.Sent[linksim.Up] < 4_800 {
			t.Errorf("byte counts %+v too small", st)
		}

		// A second request reuses the connection: no new dial.
		resp, err = client.Get("http://erp5.example/y")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if st := l.Stats(); st.Dials != 1 {
			t.Errorf("dials = %d, want 1 (keep-alive)", st.Dials)
		}
	})
}

// TestLink_HTTPResponseLost cuts the connection as the server starts its answer: the
// handler ran, the client gets an error.
func TestLink_HTTPResponseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := linksim.New(linksim.Config{Delay: 100 * time.Millisecond})
		var handled int
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handled++
			w.Write([]byte("committed"))
		})}
		go srv.Serve(l)
		tr := l.Transport()
		defer func() { tr.CloseIdleConnections(); srv.Close() }()
		l.CutAfter(linksim.Down, 0)
		req, _ := http.NewRequest("POST", "http://erp5.example/batch", bytes.NewReader([]byte("{}")))
		_, err := tr.RoundTrip(req)
		if err == nil {
			t.Fatal("round trip succeeded, want an error")
		}
		if handled != 1 {
			t.Errorf("handler ran %d times, want 1", handled)
		}
	})
}
