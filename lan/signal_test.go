package lan_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
)

func TestPair(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		code := g.Invite(t, "till-1", "clerk")
		creds, err := client.Pair(ctx, nil, g.URL(), code)
		if err != nil {
			t.Fatal(err)
		}
		if creds.Peer != "till-1" || creds.Role != "clerk" || len(creds.Token) < 43 {
			t.Fatalf("pair = %+v", creds)
		}
		c := g.Dial(t, creds.Token)
		if c.Peer != "till-1" || c.Role != "clerk" {
			t.Errorf("welcome: peer %q role %q", c.Peer, c.Role)
		}
		var st map[string]string
		if err := c.Call(ctx, "status", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st["peer"] != "till-1" || st["role"] != "clerk" {
			t.Errorf("the service saw %v", st)
		}
	})
	t.Run("OneTimeCode", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		code := g.Invite(t, "till-1", "clerk")
		if _, err := client.Pair(ctx, nil, g.URL(), code); err != nil {
			t.Fatal(err)
		}
		_, err := client.Pair(ctx, nil, g.URL(), code)
		var pe *client.PairError
		if !errors.As(err, &pe) || pe.Status != 401 || pe.Reason != "used" {
			t.Fatalf("second use: %v, want 401 used", err)
		}
	})
	t.Run("ExpiredCode", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		code, err := g.Peers.CreateInvite(ctx, "till-1", "clerk", time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		_, err = client.Pair(ctx, nil, g.URL(), code)
		var pe *client.PairError
		if !errors.As(err, &pe) || pe.Status != 401 || pe.Reason != "expired" {
			t.Fatalf("expired code: %v, want 401 expired", err)
		}
	})
	t.Run("UnknownCode", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		_, err := client.Pair(ctx, nil, g.URL(), "AAAAAAAAAAAAAAAAAAAAAA")
		var pe *client.PairError
		if !errors.As(err, &pe) || pe.Status != 401 || pe.Reason != "unauthorized" {
			t.Fatalf("unknown code: %v, want 401 unauthorized", err)
		}
	})
	t.Run("BadBody", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		resp, err := http.Post(g.URL()+"api/pair", "application/json", strings.NewReader(`{"code":`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("malformed body: HTTP %d, want 400", resp.StatusCode)
		}
		resp, err = http.Get(g.URL() + "api/pair")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Errorf("GET /api/pair: HTTP %d, want 405", resp.StatusCode)
		}
	})
	t.Run("RateLimited", func(t *testing.T) {
		g := MustOpenGateway(t, nil)
		limited := 0
		for i := 0; i < 20; i++ {
			_, err := client.Pair(ctx, nil, g.URL(), "guess-"+strings.Repeat("x", i))
			var pe *client.PairError
			if !errors.As(err, &pe) {
				t.Fatalf("attempt %d: %v", i, err)
			}
			if pe.Status == 429 {
				limited++
				if pe.Reason != "rate_limited" {
					t.Errorf("429 reason %q", pe.Reason)
				}
			}
		}
		// The burst is 10 per address; the rest of 20 quick guesses are refused.
		if limited < 9 {
			t.Errorf("%d of 20 quick guesses were rate limited, want ≥ 9", limited)
		}
		// A valid code is refused too while the address is limited: guessing cannot continue.
		code := g.Invite(t, "till-1", "clerk")
		_, err := client.Pair(ctx, nil, g.URL(), code)
		var pe *client.PairError
		if !errors.As(err, &pe) || pe.Status != 429 {
			t.Errorf("valid code while limited: %v, want 429", err)
		}
	})
}

func TestSignal_Refusals(t *testing.T) {
	ctx := context.Background()
	g := MustOpenGateway(t, nil)
	wantRefusal := func(t *testing.T, err error, reason string) {
		t.Helper()
		var se *client.SignalError
		if !errors.As(err, &se) || se.Reason != reason || se.Message == "" {
			t.Fatalf("got %v, want a %s refusal with a message", err, reason)
		}
	}
	t.Run("NoToken", func(t *testing.T) {
		_, err := client.Dial(ctx, g.URL(), client.Options{})
		wantRefusal(t, err, "unauthorized")
	})
	t.Run("BadToken", func(t *testing.T) {
		_, err := client.Dial(ctx, g.URL(), client.Options{Token: "not-a-token"})
		wantRefusal(t, err, "unauthorized")
	})
	t.Run("Revoked", func(t *testing.T) {
		token := g.Pair(t, "till-revoked", "clerk")
		if err := g.Peers.RevokePeer(ctx, "till-revoked"); err != nil {
			t.Fatal(err)
		}
		_, err := client.Dial(ctx, g.URL(), client.Options{Token: token})
		wantRefusal(t, err, "revoked")
	})
	t.Run("NotHello", func(t *testing.T) {
		ws := dialSignal(t, g, "")
		ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: "v=0"})
		wantSignalError(t, ws, "bad_request")
	})
	t.Run("NotJSON", func(t *testing.T) {
		ws := dialSignal(t, g, "")
		ws.WriteMessage(websocket.TextMessage, []byte("hello?"))
		wantSignalError(t, ws, "bad_request")
	})
	t.Run("BadOffer", func(t *testing.T) {
		token := g.Pair(t, "till-badoffer", "clerk")
		ws := dialSignal(t, g, "")
		ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: token})
		wantSignal(t, ws, wire.TypeWelcome)
		ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: "v=0\r\nm=application garbage\r\n"})
		wantSignalError(t, ws, "bad_request")
	})
	t.Run("OfferWithoutDataChannel", func(t *testing.T) {
		token := g.Pair(t, "till-nodc", "clerk")
		ws := dialSignal(t, g, "")
		ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: token})
		wantSignal(t, ws, wire.TypeWelcome)
		ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"})
		wantSignalError(t, ws, "bad_request")
	})
}

func TestSignal_Busy(t *testing.T) {
	g := MustOpenGateway(t, func(s *lan.Server) { s.MaxChannels = 1 })
	token := g.Pair(t, "till-1", "clerk")
	g.Dial(t, token)
	_, err := client.Dial(context.Background(), g.URL(), client.Options{Token: token})
	var se *client.SignalError
	if !errors.As(err, &se) || se.Reason != "busy" {
		t.Fatalf("second channel over MaxChannels: %v, want busy", err)
	}
}

func TestSignal_ForeignOrigin(t *testing.T) {
	g := MustOpenGateway(t, nil)
	token := g.Pair(t, "till-1", "clerk")
	_, err := client.Dial(context.Background(), g.URL(), client.Options{Token: token, Origin: "http://evil.example"})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("foreign origin: %v, want HTTP 403", err)
	}
	// The same origin, as the gateway's own page sends it, is accepted.
	if _, err := client.Dial(context.Background(), g.URL(), client.Options{Token: token}); err != nil {
		t.Fatalf("same origin: %v", err)
	}
}

func TestSignal_SocketClosesWhenChannelOpens(t *testing.T) {
	g := MustOpenGateway(t, nil)
	token := g.Pair(t, "till-1", "clerk")
	ws := dialSignal(t, g, "")
	pc, dc, opened := offerer(t)
	ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: token})
	ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: pc.LocalDescription().SDP})
	w := wantSignal(t, ws, wire.TypeWelcome)
	if w.Peer != "till-1" || w.Role != "clerk" || w.Token != "" {
		t.Errorf("welcome = %+v", w)
	}
	a := wantSignal(t, ws, wire.TypeAnswer)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(5 * time.Second):
		t.Fatal("channel did not open")
	}
	// We keep our socket open: the gateway closes it.
	ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after open: %v, want a normal close from the gateway", err)
	}
	// The channel itself carries RPC.
	msgs := make(chan webrtc.DataChannelMessage, 1)
	dc.OnMessage(func(m webrtc.DataChannelMessage) { msgs <- m })
	dc.SendText(`{"jsonrpc":"2.0","id":"s","method":"status"}`)
	select {
	case m := <-msgs:
		if !bytes.Contains(m.Data, []byte(`"id":"s","result":{"peer":"till-1"`)) {
			t.Errorf("reply %s", m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
	if got := g.OnlinePeers(); len(got) != 1 || got[0] != "till-1" {
		t.Errorf("OnlinePeers = %v", got)
	}
}

func TestSignal_NoChannelInTime(t *testing.T) {
	g := MustOpenGateway(t, func(s *lan.Server) { s.OpenTimeout = 500 * time.Millisecond })
	token := g.Pair(t, "till-1", "clerk")
	ws := dialSignal(t, g, "")
	pc, _, _ := offerer(t)
	ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: token})
	ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: pc.LocalDescription().SDP})
	wantSignal(t, ws, wire.TypeWelcome)
	wantSignal(t, ws, wire.TypeAnswer)
	// We never apply the answer, so ICE never connects: the gateway drops us.
	start := time.Now()
	ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("got %v, want a policy-violation close", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dropped after %s, want about 500ms", d)
	}
	eventually(t, 2*time.Second, "the dropped peer still holds a connection", func() bool { return g.Channels() == 0 })
}

func TestSignal_SeveralChannelsPerToken(t *testing.T) {
	offline := make(chan string, 1)
	g := MustOpenGateway(t, func(s *lan.Server) { s.OnPeerOffline = func(name string) { offline <- name } })
	token := g.Pair(t, "till-1", "clerk")
	a := g.Dial(t, token)
	b := g.Dial(t, token)
	for _, c := range []*client.Client{a, b} {
		if err := c.Call(context.Background(), "status", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.Channels(); n != 2 {
		t.Errorf("Channels = %d, want 2", n)
	}
	a.Close()
	eventually(t, 2*time.Second, "closing one tab should leave the other", func() bool { return g.Channels() == 1 })
	if err := b.Call(context.Background(), "status", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := g.OnlinePeers(); len(got) != 1 {
		t.Errorf("OnlinePeers = %v", got)
	}
	select {
	case name := <-offline:
		t.Fatalf("%s reported offline with a tab still open", name)
	default:
	}
	b.Close()
	select {
	case name := <-offline:
		if name != "till-1" {
			t.Errorf("offline %q", name)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the peer was not reported offline after its last tab closed")
	}
}

func TestOpenEnrollment(t *testing.T) {
	ctx := context.Background()
	g := MustOpenGateway(t, func(s *lan.Server) {
		s.Config.Enrollment = lan.EnrollmentOpen
		s.Config.DefaultRole = "visitor"
	})
	c, err := client.Dial(ctx, g.URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Role != "visitor" || !strings.HasPrefix(c.Peer, "guest-") || len(c.Token) < 43 {
		t.Fatalf("enrolled peer %q role %q token %q", c.Peer, c.Role, c.Token)
	}
	// The token brings the same peer back, with no new token.
	again, err := client.Dial(ctx, g.URL(), client.Options{Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Peer != c.Peer || again.Token != c.Token {
		t.Errorf("second hello: peer %q token %q", again.Peer, again.Token)
	}
	// Tokens stay checked: a wrong one is refused rather than enrolled anew.
	_, err = client.Dial(ctx, g.URL(), client.Options{Token: "wrong"})
	var se *client.SignalError
	if !errors.As(err, &se) || se.Reason != "unauthorized" {
		t.Errorf("wrong token under open enrollment: %v", err)
	}
	peers, _ := g.Peers.FindPeers(ctx)
	if len(peers) != 1 {
		t.Errorf("%d peers stored, want 1", len(peers))
	}
}

func TestRevoke_LiveChannels(t *testing.T) {
	ctx := context.Background()
	t.Run("Direct", func(t *testing.T) {
		g := MustOpenGateway(t, func(s *lan.Server) { s.RevocationPoll = time.Hour })
		token := g.Pair(t, "till-1", "clerk")
		tabs := []*client.Client{g.Dial(t, token), g.Dial(t, token)}
		other := g.Connect(t, "till-2", "clerk")
		// RevokePeer counts the channels the server has registered: wait for all three.
		eventually(t, 5*time.Second, "three open channels", func() bool { return g.Channels() == 3 })
		if err := g.Peers.RevokePeer(ctx, "till-1"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if n := g.RevokePeer("till-1"); n != 2 {
			t.Errorf("RevokePeer closed %d channels, want 2", n)
		}
		for i, c := range tabs {
			select {
			case <-c.Done():
			case <-time.After(time.Second):
				t.Fatalf("tab %d still open a second after revocation", i)
			}
		}
		t.Logf("revoked channels closed in %s", time.Since(start))
		if err := other.Call(ctx, "status", nil, nil); err != nil {
			t.Errorf("another peer's channel: %v", err)
		}
		if got := g.OnlinePeers(); len(got) != 1 || got[0] != "till-2" {
			t.Errorf("OnlinePeers = %v, want [till-2]", got)
		}
		_, err := client.Dial(ctx, g.URL(), client.Options{Token: token})
		var se *client.SignalError
		if !errors.As(err, &se) || se.Reason != "revoked" {
			t.Errorf("hello after revocation: %v, want revoked", err)
		}
	})
	t.Run("ByAnotherProcess", func(t *testing.T) {
		// Only the database changes (an operator command without the control socket): the
		// server notices within its poll interval.
		g := MustOpenGateway(t, func(s *lan.Server) { s.RevocationPoll = 200 * time.Millisecond })
		c := g.Connect(t, "till-1", "clerk")
		if err := g.Peers.RevokePeer(ctx, "till-1"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-time.After(time.Second):
			t.Fatal("channel still open a second after the database revocation")
		}
	})
}

func TestControlHandler(t *testing.T) {
	g := MustOpenGateway(t, func(s *lan.Server) { s.RevocationPoll = time.Hour })
	c := g.Connect(t, "till-1", "clerk")
	g.Connect(t, "till-2", "clerk")
	// A client's channel opens on its side a moment before the server registers it: the
	// online list and the revocation count depend on both being registered.
	eventually(t, 5*time.Second, "two open channels", func() bool { return g.Channels() == 2 })
	h := g.ControlHandler()

	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, mustRequest(t, "GET", lan.ControlOnlinePath, ""))
	var online lan.ControlOnline
	if err := json.Unmarshal(rec.body.Bytes(), &online); err != nil || len(online.Online) != 2 || online.Online[0] != "till-1" {
		t.Fatalf("online: %s (%v)", rec.body.String(), err)
	}
	rec = &recorder{header: http.Header{}}
	h.ServeHTTP(rec, mustRequest(t, "POST", lan.ControlRevokePath, `{"name":"till-1"}`))
	var rv lan.ControlRevoke
	if err := json.Unmarshal(rec.body.Bytes(), &rv); err != nil || rv.Closed != 1 {
		t.Fatalf("revoke: %s (%v)", rec.body.String(), err)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("channel still open after the control revocation")
	}
	rec = &recorder{header: http.Header{}}
	h.ServeHTTP(rec, mustRequest(t, "POST", lan.ControlRevokePath, `{}`))
	if rec.status != 400 {
		t.Errorf("revoke without a name: %d, want 400", rec.status)
	}
}

func TestServer_ICEOnOnePort(t *testing.T) {
	g := MustOpenGateway(t, func(s *lan.Server) { s.Config.TCPFallback = true })
	addrs := g.ICEAddrs()
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0].String(), "127.0.0.1:") {
		t.Fatalf("ICE addresses %v, want one on 127.0.0.1", addrs)
	}
	_, port, _ := net.SplitHostPort(addrs[0].String())
	// The ICE-TCP listener has the same port number.
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("ICE-TCP on the UDP port number: %v", err)
	}
	conn.Close()
	// Every answer names that port and no other.
	ws := dialSignal(t, g, "")
	pc, _, _ := offerer(t)
	ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: g.Pair(t, "till-1", "clerk")})
	ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: pc.LocalDescription().SDP})
	wantSignal(t, ws, wire.TypeWelcome)
	a := wantSignal(t, ws, wire.TypeAnswer)
	var udp, tcp int
	for _, line := range strings.Split(a.SDP, "\r\n") {
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		f := strings.Fields(line)
		if f[5] != port {
			t.Errorf("candidate on another port: %s", line)
		}
		switch strings.ToLower(f[2]) {
		case "udp":
			udp++
		case "tcp":
			tcp++
		}
	}
	if udp == 0 || tcp == 0 {
		t.Errorf("answer has %d UDP and %d TCP candidates, want both:\n%s", udp, tcp, a.SDP)
	}
	if !strings.Contains(a.SDP, "a=max-message-size:262144") {
		t.Errorf("answer does not advertise a 256 KiB max message size")
	}
}

func TestServer_StaticAndHealth(t *testing.T) {
	g := MustOpenGateway(t, nil)
	for path, want := range map[string]string{"healthz": "ok", "": "<html", "pair": "Pair this browser", "gateway.js": "export async function connect"} {
		resp, err := http.Get(g.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(b.String(), want) {
			t.Errorf("GET /%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// dialSignal opens a raw signaling WebSocket with a same-origin Origin.
func dialSignal(tb testing.TB, g *testGateway, origin string) *websocket.Conn {
	tb.Helper()
	u := strings.Replace(g.URL(), "http://", "ws://", 1) + "signal"
	if origin == "" {
		origin = strings.TrimSuffix(g.URL(), "/")
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {origin}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	return ws
}

func wantSignal(tb testing.TB, ws *websocket.Conn, typ string) wire.Signal {
	tb.Helper()
	var m wire.Signal
	if err := ws.ReadJSON(&m); err != nil {
		tb.Fatalf("reading %s: %v", typ, err)
	}
	if m.Type != typ {
		tb.Fatalf("got %+v, want %s", m, typ)
	}
	return m
}

func wantSignalError(tb testing.TB, ws *websocket.Conn, reason string) {
	tb.Helper()
	m := wantSignal(tb, ws, wire.TypeError)
	if m.Reason != reason || m.Message == "" {
		tb.Fatalf("error %+v, want reason %s with a message", m, reason)
	}
	// Then the gateway closes the socket.
	if _, _, err := ws.ReadMessage(); err == nil {
		tb.Fatal("socket still open after an error")
	}
}

// offerer makes a pion PeerConnection with a "jio" channel and a gathered offer, as a
// browser would; opened is closed when the channel opens.
func offerer(tb testing.TB) (*webrtc.PeerConnection, *webrtc.DataChannel, chan struct{}) {
	tb.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	dc, err := pc.CreateDataChannel(wire.ChannelLabel, nil)
	if err != nil {
		tb.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		tb.Fatal(err)
	}
	<-gathered
	return pc, dc, opened
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(s int) { r.status = s }

func mustRequest(tb testing.TB, method, path, body string) *http.Request {
	tb.Helper()
	r, err := http.NewRequest(method, "http://gateway"+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestServer_ICETCPFallback(t *testing.T) {
	// A client that cannot use UDP (a firewall drops it) connects over ICE-TCP to the same
	// port number.
	g := MustOpenGateway(t, func(s *lan.Server) { s.Config.TCPFallback = true })
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	c, err := client.Dial(context.Background(), g.URL(), client.Options{Token: g.Pair(t, "till-1", "clerk"), API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st map[string]string
	if err := c.Call(context.Background(), "status", nil, &st); err != nil || st["peer"] != "till-1" {
		t.Fatalf("status over ICE-TCP: %v %v", st, err)
	}
}

func TestServer_TLS(t *testing.T) {
	// With lan.tls, the page, pairing and signaling go over HTTPS and WSS.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeTestCert(t, certFile, keyFile)
	g := MustOpenGateway(t, func(s *lan.Server) { s.Config.TLSCert, s.Config.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(g.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", g.URL())
	}
	tlsConfig := &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	creds, err := client.Pair(context.Background(), hc, g.URL(), g.Invite(t, "till-1", "clerk"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), g.URL(), client.Options{Token: creds.Token, TLSConfig: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(context.Background(), "status", nil, nil); err != nil {
		t.Fatal(err)
	}
	// Plain HTTP is not served on the TLS port.
	if _, err := client.Pair(context.Background(), nil, strings.Replace(g.URL(), "https:", "http:", 1), "x"); err == nil {
		t.Error("plain HTTP answered on the TLS listener")
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and returns a pool trusting it.
func writeTestCert(tb testing.TB, certFile, keyFile string) *x509.CertPool {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gateway test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func TestBaseURLAndPairLink(t *testing.T) {
	for _, tc := range []struct {
		cfg    lan.Config
		listen string
		want   string
	}{
		{lan.Config{Listen: "127.0.0.1:0"}, "127.0.0.1:43210", "http://127.0.0.1:43210/pair#code=C0de_-x"},
		{lan.Config{Listen: "gateway.site:8080"}, "10.0.0.5:8080", "http://gateway.site:8080/pair#code=C0de_-x"},
		{lan.Config{Listen: "10.0.0.5:8443", TLSCert: "c.pem"}, "10.0.0.5:8443", "https://10.0.0.5:8443/pair#code=C0de_-x"},
		{lan.Config{Listen: ":8080", PublicURL: "https://gw.example/site/?x=1"}, ":8080", "https://gw.example/site/pair#code=C0de_-x"},
		{lan.Config{Listen: "0.0.0.0:8080"}, "0.0.0.0:8080", "http://" + net.JoinHostPort(lan.LANAddress(), "8080") + "/pair#code=C0de_-x"},
	} {
		base, err := lan.BaseURL(tc.cfg, tc.listen)
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		if got := lan.PairLink(base, "C0de_-x"); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.cfg, got, tc.want)
		}
	}
	if _, err := lan.BaseURL(lan.Config{PublicURL: "gw.example"}, ":80"); err == nil {
		t.Error("a relative public_url was accepted")
	}
}
