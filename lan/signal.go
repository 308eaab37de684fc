package lan

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/wire"
)

// maxSignalMessage bounds one signaling message; an offer is a few KiB.
const maxSignalMessage = 256 << 10

// gatherTimeout bounds the wait for our own ICE gathering, which on the mux takes
// milliseconds: the candidates are the mux's addresses.
const gatherTimeout = 5 * time.Second

// upgrader upgrades /signal. Its origin check is the same-origin rule of docs/DESIGN.md §3, which
// gorilla applies too, spelled out here so that a refusal is logged.
func (s *Server) upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4 << 10,
		WriteBufferSize:  4 << 10,
		CheckOrigin: func(r *http.Request) bool {
			if sameOrigin(r) {
				return true
			}
			s.Logger.Warn("signal refused: foreign origin", "origin", r.Header.Get("Origin"), "host", r.Host, "address", remoteHost(r))
			return false
		},
	}
}

// sameOrigin reports whether the request's Origin, if any, names the host it was sent to. A
// request without Origin comes from a program, not a page another site served.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// handleSignal runs one peer's signaling: hello → welcome, offer → answer, then waits for
// the data channel to open and closes the socket. A peer whose channel is not open within
// OpenTimeout of the upgrade is dropped.
func (s *Server) handleSignal(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "the gateway is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	ws, err := s.upgrader().Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered (403 for a foreign origin)
	}
	c := newConn(s, remoteHost(r))
	c.ws = ws
	c.signal()
}

// conn is one peer connection, from its WebSocket upgrade to the close of its data channel.
type conn struct {
	s    *Server
	addr string
	// ctx ends when the connection closes; requests in flight see it cancelled.
	ctx    context.Context //nolint:containedctx // one connection's lifetime
	cancel context.CancelFunc

	peer  gateway.Peer // set by hello, then fixed
	actor gateway.Actor

	mu         sync.Mutex
	ws         *websocket.Conn // nil after the signaling ends
	pc         *webrtc.PeerConnection
	dc         *webrtc.DataChannel
	closed     bool
	registered bool
	wsMu       sync.Mutex // one writer on ws at a time
	opened     chan struct{}
	isOpenFlag atomic.Bool
	closeOnce  sync.Once
	openedAt   time.Time

	wg sync.WaitGroup // request workers and the sender

	// Receiving: touched only by pion's read loop for this channel.
	reasm wire.Reassembler

	dispatch dispatcher
	out      sender
}

func newConn(s *Server, addr string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{s: s, addr: addr, ctx: ctx, cancel: cancel, opened: make(chan struct{})}
	c.reasm = wire.Reassembler{MaxMessageSize: s.MaxMessageSize, MaxPartial: s.MaxPartial}
	c.out.init(c)
	return c
}

func (c *conn) isOpen() bool { return c.isOpenFlag.Load() }

// signal runs the WebSocket half of the connection on the handler's goroutine.
func (c *conn) signal() {
	s := c.s
	ws := c.ws
	ws.SetReadLimit(maxSignalMessage)
	deadline := time.Now().Add(s.OpenTimeout)
	ws.SetReadDeadline(deadline)

	var hello wire.Signal
	if err := ws.ReadJSON(&hello); err != nil {
		c.failSignal(wire.ReasonBadRequest, "expected a hello message")
		return
	}
	if hello.Type != wire.TypeHello {
		c.failSignal(wire.ReasonBadRequest, "the first message must be a hello")
		return
	}
	peer, token, err := s.authenticate(c.ctx, hello.Token, c.addr)
	if err != nil {
		reason := wire.ReasonUnauthorized
		switch {
		case gateway.ErrorReason(err) == wire.ReasonRevoked:
			reason = wire.ReasonRevoked
		case gateway.ErrorCode(err) == gateway.ERATELIMITED:
			reason = wire.ReasonBusy
		case gateway.ErrorCode(err) != gateway.EUNAUTHORIZED:
			s.Logger.Error("authenticate peer", "err", err, "address", c.addr)
			reason = wire.ReasonBusy
		}
		c.failSignal(reason, gateway.ErrorMessage(err))
		return
	}
	c.peer = peer
	c.actor = gateway.Actor{Peer: peer.Name, Role: peer.Role}
	if !s.register(c) {
		c.failSignal(wire.ReasonBusy, "the gateway has too many connections; try again shortly")
		return
	}
	c.mu.Lock()
	c.registered = true
	c.mu.Unlock()
	if err := c.writeSignal(wire.Signal{Type: wire.TypeWelcome, Peer: peer.Name, Role: peer.Role, Token: token}); err != nil {
		c.close("signaling socket failed")
		return
	}

	offered := false
	for {
		var m wire.Signal
		if err := ws.ReadJSON(&m); err != nil {
			var syntax *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if errors.As(err, &syntax) || errors.As(err, &typ) {
				c.failSignal(wire.ReasonBadRequest, "a signaling message is not JSON")
				return
			}
			break // closed by the peer, by us on open, or the deadline
		}
		switch {
		case m.Type == wire.TypeOffer && !offered:
			offered = true
			answer, err := c.answer(m.SDP)
			if err != nil {
				if !errors.Is(err, errClosed) {
					c.failSignal(wire.ReasonBadRequest, err.Error())
				}
				return
			}
			if err := c.writeSignal(wire.Signal{Type: wire.TypeAnswer, SDP: answer}); err != nil {
				c.close("signaling socket failed")
				return
			}
		case m.Type == wire.TypeCandidate && offered:
			c.addCandidate(m.Candidate)
		case m.Type == wire.TypeHello || m.Type == "":
			c.failSignal(wire.ReasonBadRequest, "unexpected signaling message "+strconvQuote(m.Type))
			return
		default:
			// A candidate before the offer (the offer carries them anyway), a second offer, or
			// a type a newer client knows: ignored, for compatibility.
			s.Logger.Debug("signaling message ignored", "type", m.Type, "peer", c.peer.Name)
		}
	}
	if !offered {
		c.endSignal(websocket.CloseNormalClosure, "no offer")
		c.close("signaling ended before an offer")
		return
	}
	// The socket is done; the channel may still be opening (a peer may close its socket as
	// soon as its side of the channel opens, before ours fires).
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-c.opened:
		c.endSignal(websocket.CloseNormalClosure, "channel open")
	case <-timer.C:
		s.Logger.Info("peer dropped: no data channel in time", "peer", c.peer.Name, "address", c.addr, "timeout", s.OpenTimeout)
		c.endSignal(websocket.ClosePolicyViolation, "no data channel within "+s.OpenTimeout.String())
		c.close("no data channel in time")
	case <-c.ctx.Done():
	}
}

// authenticate checks a hello's token, or enrolls a new peer under open enrollment (then the
// new token is returned, to be sent in the welcome).
func (s *Server) authenticate(ctx context.Context, token, addr string) (gateway.Peer, string, error) {
	if token != "" {
		p, err := s.peers.FindPeerByToken(ctx, token)
		return p, "", err
	}
	if s.Config.Enrollment != EnrollmentOpen {
		return gateway.Peer{}, "", gateway.Errorf(gateway.EUNAUTHORIZED, "this browser is not paired with the gateway: open a pairing link first")
	}
	if wait := s.globLim.take("enroll", s.Now()); wait > 0 {
		return gateway.Peer{}, "", gateway.Errorf(gateway.ERATELIMITED, "too many new browsers at once; try again in a moment")
	}
	p, tok, err := s.peers.EnrollPeer(ctx, s.Config.DefaultRole)
	if err == nil {
		s.Logger.Info("peer enrolled", "peer", p.Name, "role", p.Role, "address", addr)
	}
	return p, tok, err
}

// answer makes the PeerConnection for an offer and returns the answer once our ICE gathering
// is complete (no trickle).
func (c *conn) answer(offer string) (string, error) {
	s := c.s
	if !strings.Contains(offer, "m=application") {
		return "", errors.New("the offer has no data channel")
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{s.cert}})
	if err != nil {
		return "", errors.New("the gateway could not make a connection")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		pc.Close()
		return "", errClosed
	}
	c.pc = pc
	c.mu.Unlock()
	pc.OnDataChannel(c.onDataChannel)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			c.close("connection " + st.String())
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", errors.New("the offer is not a valid session description")
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", errors.New("the offer cannot be answered")
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", errors.New("the offer cannot be answered")
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-c.ctx.Done():
		return "", errClosed
	}
	return pc.LocalDescription().SDP, nil
}

// addCandidate adds a trickled browser candidate. The gateway does not need them (the
// browser's checks reveal its address) but takes them when sent.
func (c *conn) addCandidate(raw json.RawMessage) {
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	var init webrtc.ICECandidateInit
	if json.Unmarshal(raw, &init) != nil || init.Candidate == "" {
		return
	}
	c.mu.Lock()
	pc := c.pc
	c.mu.Unlock()
	if pc != nil {
		_ = pc.AddICECandidate(init)
	}
}

// onDataChannel accepts the one ordered, reliable channel labelled "jio"; anything else is
// closed.
func (c *conn) onDataChannel(dc *webrtc.DataChannel) {
	if dc.Label() != wire.ChannelLabel || !dc.Ordered() || dc.MaxRetransmits() != nil || dc.MaxPacketLifeTime() != nil {
		c.s.Logger.Debug("refused data channel", "label", dc.Label(), "peer", c.peer.Name)
		dc.Close()
		return
	}
	c.mu.Lock()
	if c.dc != nil || c.closed {
		c.mu.Unlock()
		dc.Close()
		return
	}
	c.dc = dc
	c.mu.Unlock()
	c.out.attach(dc)
	dc.OnMessage(c.onMessage)
	dc.OnOpen(c.onOpen)
	dc.OnClose(func() { c.close("data channel closed") })
}

// onOpen makes the peer online and ends its signaling.
func (c *conn) onOpen() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.openedAt = c.s.Now()
	c.isOpenFlag.Store(true)
	close(c.opened)
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.SetReadDeadline(time.Now()) // wakes the signaling loop, which closes the socket
	}
	c.s.Logger.Debug("data channel open", "peer", c.peer.Name, "address", c.addr)
	c.touch(c.openedAt)
}

// touch records the peer's last sighting, off the caller's goroutine.
func (c *conn) touch(at time.Time) {
	c.s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.s.peers.TouchPeer(ctx, c.peer.Name, c.addr, at); err != nil {
			c.s.Logger.Warn("record peer last seen", "peer", c.peer.Name, "err", err)
		}
	})
}

// writeSignal sends one signaling message.
func (c *conn) writeSignal(m wire.Signal) error {
	c.wsMu.Lock()
	defer c.wsMu.Unlock()
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return errClosed
	}
	ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return ws.WriteJSON(m)
}

// failSignal sends an error message, closes the socket and the connection.
func (c *conn) failSignal(reason, message string) {
	_ = c.writeSignal(wire.Signal{Type: wire.TypeError, Reason: reason, Message: message})
	c.endSignal(websocket.CloseNormalClosure, reason)
	c.close(reason)
}

// endSignal closes the WebSocket with a close frame.
func (c *conn) endSignal(code int, text string) {
	c.wsMu.Lock()
	defer c.wsMu.Unlock()
	c.mu.Lock()
	ws := c.ws
	c.ws = nil
	c.mu.Unlock()
	if ws == nil {
		return
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	ws.Close()
}

// revoke tells a peer still signaling that it was revoked, and closes the connection.
func (c *conn) revoke() {
	c.mu.Lock()
	signaling := c.ws != nil
	c.mu.Unlock()
	if signaling {
		c.failSignal(wire.ReasonRevoked, "access for this browser has been revoked")
		return
	}
	c.close("revoked")
}

// close ends the connection: it leaves the server's tables at once (so the peer shows
// offline), cancels requests in flight, and closes the socket and the PeerConnection.
func (c *conn) close(why string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		wasOpen := c.isOpenFlag.Swap(false)
		registered := c.registered
		ws, pc := c.ws, c.pc
		c.ws = nil
		c.mu.Unlock()
		c.cancel()
		if registered {
			c.s.unregister(c)
		}
		if ws != nil {
			ws.Close() // unblocks the signaling loop
		}
		c.dispatch.stop()
		c.out.stop()
		if wasOpen {
			c.s.Logger.Debug("data channel closed", "peer", c.peer.Name, "why", why)
			c.touch(c.s.Now())
		}
		// PeerConnection.Close waits for pion's goroutines; never run it on one of them.
		c.s.wg.Go(func() {
			if pc != nil {
				if err := pc.Close(); err != nil {
					c.s.Logger.Debug("close peer connection", "peer", c.peer.Name, "err", err)
				}
			}
			c.wg.Wait()
		})
	})
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
