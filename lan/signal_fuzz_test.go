package lan_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/wire"
)

// realOffer returns an SDP offer with one data channel, as a browser sends it.
func realOffer(tb testing.TB) string {
	tb.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel(wire.ChannelLabel, nil); err != nil {
		tb.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return offer.SDP
}

// FuzzSignal sends fuzzed signaling messages to a real /signal endpoint, as the first
// message or after a hello with a valid token: every message the gateway sends back is a
// welcome, an answer or an error with one of the four reasons, the socket ends within the
// open timeout, and the gateway goes on serving.
func FuzzSignal(f *testing.F) {
	g := MustOpenGateway(f, func(s *lan.Server) { s.OpenTimeout = 300 * time.Millisecond })
	token := g.Pair(f, "fuzz-1", "clerk")
	offer, _ := json.Marshal(wire.Signal{Type: wire.TypeOffer, SDP: realOffer(f)})
	for _, s := range [][2]string{
		{`{"type":"hello"}`, ``},
		{`{"type":"hello","token":"forged"}`, ``},
		{`{"type":"offer","sdp":"v=0"}`, ``},
		{`{"type":"hello","token":12}`, ``},
		{`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`, ``},
		{`not json`, ``},
		{`{"type":"` + strings.Repeat("h", 1000) + `"}`, ``},
		{`[{"type":"hello"}]`, ``},
	} {
		f.Add(false, []byte(s[0]), []byte(s[1]))
	}
	for _, second := range []string{
		string(offer),
		`{"type":"offer","sdp":"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"}`,
		`{"type":"offer","sdp":""}`,
		`{"type":"hello","token":"again"}`,
		`{"type":"candidate","candidate":null}`,
		`{"type":"offer","sdp":"` + strings.Repeat("a=x\\r\\n", 2000) + `"}`,
		`{"type":"","sdp":"x"}`,
		`{"type":"offer","sdp":12}`,
		`{`,
	} {
		f.Add(true, []byte(nil), []byte(second))
	}
	wsURL := strings.Replace(g.URL(), "http://", "ws://", 1) + "signal"
	header := http.Header{"Origin": {strings.TrimSuffix(g.URL(), "/")}}
	reasons := map[string]bool{wire.ReasonUnauthorized: true, wire.ReasonRevoked: true, wire.ReasonBadRequest: true, wire.ReasonBusy: true}
	f.Fuzz(func(t *testing.T, withToken bool, first, second []byte) {
		ws, _, err := websocket.DefaultDialer.Dial(wsURL, header)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.Close()
		if withToken {
			first, _ = json.Marshal(wire.Signal{Type: wire.TypeHello, Token: token})
		}
		ws.SetWriteDeadline(time.Now().Add(2 * time.Second))
		ws.WriteMessage(websocket.TextMessage, first)
		if len(second) > 0 {
			ws.WriteMessage(websocket.TextMessage, second)
		}
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the gateway kept the socket open past its open timeout")
				}
				break
			}
			var m wire.Signal
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("the gateway sent %q", msg)
			}
			switch m.Type {
			case wire.TypeWelcome:
				if !withToken {
					t.Fatalf("welcome for %q: only a paired token gets in", first)
				}
			case wire.TypeAnswer:
				if !strings.Contains(m.SDP, "m=application") {
					t.Fatalf("answer without a data channel: %q", m.SDP)
				}
			case wire.TypeError:
				if !reasons[m.Reason] || m.Message == "" {
					t.Fatalf("error %+v", m)
				}
			default:
				t.Fatalf("message of type %q", m.Type)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+"healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("healthz after the signaling: %v", err)
		}
		resp.Body.Close()
	})
}
