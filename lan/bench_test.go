package lan_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/sqlite"
)

// sampleDoc is a typical replica document (≈ 200 bytes).
const sampleDoc = `{"portal_type":"Person","title":"Éric Dupont","first_name":"Éric","last_name":"Dupont","email":"eric.dupont@example.org","reference":"P-000123","birthday":"1980-05-02","modification_date":"2026-03-01T12:00:00Z"}`

// reportLatencies reports the p50 and p99 of durations, in microseconds.
func reportLatencies(b *testing.B, d []time.Duration, prefix string) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), prefix+"p99-µs")
}

// BenchmarkGet measures a `get` round trip over the data channel, one peer on loopback.
func BenchmarkGet(b *testing.B) {
	g := MustOpenGateway(b, nil)
	c := g.Connect(b, "bench", "clerk")
	ctx := context.Background()
	params := map[string]string{"id": "person_module/1"}
	if err := c.Call(ctx, "put", map[string]any{"id": "person_module/1", "doc": json.RawMessage(sampleDoc)}, nil); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.CallRaw(ctx, "get", params); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatencies(b, lat, "")
}

// BenchmarkReaders16 runs 16 peers reading as fast as they can, first against the gateway,
// then against a bare pion echo server (same machine, same run), and reports both rates.
func BenchmarkReaders16(b *testing.B) {
	const peers = 16
	ctx := context.Background()
	g := MustOpenGateway(b, func(s *lan.Server) { s.PairLimit = lan.Rate{} })
	clients := make([]*client.Client, peers)
	for i := range clients {
		clients[i] = g.Connect(b, fmt.Sprintf("reader-%d", i), "clerk")
	}
	if err := clients[0].Call(ctx, "put", map[string]any{"id": "person_module/1", "doc": json.RawMessage(sampleDoc)}, nil); err != nil {
		b.Fatal(err)
	}
	echo := newEchoServer(b)
	echoClients := make([]*echoClient, peers)
	for i := range echoClients {
		echoClients[i] = echo.dial(b)
	}
	request := []byte(`{"jsonrpc":"2.0","id":1,"method":"get","params":{"id":"person_module/1"}}`)
	params := map[string]string{"id": "person_module/1"}

	run := func(n int, call func(i int) error) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < peers; i++ {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := call(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	n := max(b.N, 2000)
	b.ResetTimer()
	gw := run(n, func(i int) error {
		_, err := clients[i].CallRaw(ctx, "get", params)
		return err
	})
	bare := run(n, func(i int) error { return echoClients[i].roundTrip(request) })
	b.StopTimer()
	b.ReportMetric(gw, "gateway-req/s")
	b.ReportMetric(bare, "echo-req/s")
	b.ReportMetric(gw/bare, "ratio")
}

// BenchmarkChannelReady measures signaling: hello sent → data channel open.
func BenchmarkChannelReady(b *testing.B) {
	g := MustOpenGateway(b, func(s *lan.Server) { s.MaxChannels = 1 << 20 })
	token := g.Pair(b, "bench", "clerk")
	ctx := context.Background()
	ready := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		c, err := client.Dial(ctx, g.URL(), client.Options{Token: token})
		if err != nil {
			b.Fatal(err)
		}
		ready = append(ready, c.ReadyTime)
		c.Close()
	}
	b.StopTimer()
	reportLatencies(b, ready, "ready-")
}

// BenchmarkIdlePeers200 connects 200 peers to a gateway running in another process and
// reports what each idle peer costs it: resident memory, Go heap and goroutines. Run it once:
// -benchtime=1x.
func BenchmarkIdlePeers200(b *testing.B) {
	const peers = 200
	ctx := context.Background()
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperGatewayEnv+"="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("helper gateway: %v", err)
	}
	base := strings.TrimSpace(line)

	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store := sqlite.NewPeerService(db)
	tokens := make([]string, peers)
	for i := range tokens {
		code, err := store.CreateInvite(ctx, fmt.Sprintf("idle-%d", i), "clerk", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if _, tokens[i], err = store.RedeemInvite(ctx, code); err != nil {
			b.Fatal(err)
		}
	}
	before := helperStats(b, base)
	for b.Loop() {
		clients := make([]*client.Client, 0, peers)
		for _, tok := range tokens {
			c, err := client.Dial(ctx, base, client.Options{Token: tok, Timeout: 30 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		for _, c := range clients {
			if err := c.Call(ctx, "status", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(2 * time.Second) // idle
		after := helperStats(b, base)
		b.ReportMetric(float64(after.RSS-before.RSS)/peers/1024, "rss-KiB/peer")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/peers/1024, "heap-KiB/peer")
		b.ReportMetric(float64(after.Goroutines-before.Goroutines)/peers, "goroutines/peer")
		b.ReportMetric(float64(after.RSS)/(1<<20), "rss-MiB-total")
		if after.Channels != peers {
			b.Fatalf("gateway has %d channels, want %d", after.Channels, peers)
		}
		for _, c := range clients {
			c.Close()
		}
	}
}

// helperGatewayEnv names the data directory of a helper gateway process.
const helperGatewayEnv = "LAN_HELPER_GATEWAY_DIR"

// helperStatsBody is what the helper gateway reports about itself.
type helperStatsBody struct {
	RSS        int64  `json:"rss"`
	HeapInuse  uint64 `json:"heap_inuse"`
	Goroutines int    `json:"goroutines"`
	Channels   int    `json:"channels"`
}

// runHelperGateway serves a gateway on loopback until stdin closes; it prints its URL, and
// GET /debug/stats answers helperStatsBody (after a GC).
func runHelperGateway(dir string) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := lan.NewServer(lan.Config{Listen: "127.0.0.1:0"}, sqlite.NewPeerService(db), newMemService())
	s.Logger = testLogger()
	s.Handle("GET /debug/stats", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(w).Encode(helperStatsBody{RSS: selfRSS(), HeapInuse: ms.HeapInuse, Goroutines: runtime.NumGoroutine(), Channels: s.Channels()})
	}))
	if err := s.Open(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(s.URL())
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	s.Close(ctx)
	db.Close()
}

// selfRSS returns this process's resident set size in bytes, from /proc.
func selfRSS() int64 {
	buf, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(buf), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func helperStats(tb testing.TB, base string) helperStatsBody {
	tb.Helper()
	resp, err := http.Get(base + "debug/stats")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var st helperStatsBody
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		tb.Fatal(err)
	}
	return st
}

// echoServer is a bare pion answerer whose data channels echo every message: the baseline
// the gateway's request rate is compared with.
type echoServer struct {
	api *webrtc.API
	tb  testing.TB
}

func loopbackAPI() *webrtc.API {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func newEchoServer(tb testing.TB) *echoServer { return &echoServer{api: loopbackAPI(), tb: tb} }

type echoClient struct {
	dc      *webrtc.DataChannel
	replies chan []byte
}

func (e *echoServer) dial(tb testing.TB) *echoClient {
	tb.Helper()
	offerer, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	answerer, err := e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { offerer.Close(); answerer.Close() })
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { dc.SendText(string(m.Data)) })
	})
	dc, err := offerer.CreateDataChannel("jio", nil)
	if err != nil {
		tb.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	c := &echoClient{dc: dc, replies: make(chan []byte, 1)}
	dc.OnMessage(func(m webrtc.DataChannelMessage) { c.replies <- m.Data })
	offer, _ := offerer.CreateOffer(nil)
	g1 := webrtc.GatheringCompletePromise(offerer)
	offerer.SetLocalDescription(offer)
	<-g1
	answerer.SetRemoteDescription(*offerer.LocalDescription())
	answer, _ := answerer.CreateAnswer(nil)
	g2 := webrtc.GatheringCompletePromise(answerer)
	answerer.SetLocalDescription(answer)
	<-g2
	offerer.SetRemoteDescription(*answerer.LocalDescription())
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		tb.Fatal("echo channel did not open")
	}
	return c
}

func (c *echoClient) roundTrip(msg []byte) error {
	if err := c.dc.SendText(string(msg)); err != nil {
		return err
	}
	select {
	case <-c.replies:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("echo timed out")
	}
}
