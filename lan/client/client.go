// Package client connects to a site gateway exactly as a browser does (docs/DESIGN.md §3): it pairs
// with a one-time code (POST /api/pair), says hello over the /signal WebSocket, offers one
// ordered, reliable data channel labelled "jio" with its candidates gathered, and then speaks
// JSON-RPC 2.0 over it, fragmenting messages over 64 KiB both ways. Tests, benchmarks,
// `gateway bench` and scripts on the LAN use it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"sitesync.example/gateway/lan/wire"
)

// Defaults for Options.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxMessageSize = 16 << 20
	// notificationBuffer is how many notifications wait for the reader of Notifications
	// before new ones are dropped.
	notificationBuffer = 1024
	highWater          = 1 << 20
	lowWater           = 256 << 10
)

// ErrClosed is returned by calls on a closed client, and to calls pending when it closes.
var ErrClosed = errors.New("gateway connection closed")

// SignalError is the gateway's refusal during signaling: {"type":"error","reason","message"}.
type SignalError struct {
	Reason  string // unauthorized, revoked, bad_request or busy
	Message string
}

// Error implements error.
func (e *SignalError) Error() string {
	return fmt.Sprintf("gateway refused (%s): %s", e.Reason, e.Message)
}

// PairError is a refused pairing: the HTTP status and the gateway's reason and message.
type PairError struct {
	Status  int
	Reason  string
	Message string
}

// Error implements error.
func (e *PairError) Error() string {
	return fmt.Sprintf("pairing refused (%d %s): %s", e.Status, e.Reason, e.Message)
}

// Credentials are what pairing gives a peer.
type Credentials struct {
	Peer  string `json:"peer"`
	Role  string `json:"role"`
	Token string `json:"token"`
}

// Pair redeems a one-time pairing code at the gateway whose web app is at baseURL. hc may be
// nil (http.DefaultClient).
func Pair(ctx context.Context, hc *http.Client, baseURL, code string) (Credentials, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u, err := endpoint(baseURL, "/api/pair", false)
	if err != nil {
		return Credentials{}, err
	}
	body, _ := json.Marshal(wire.PairRequest{Code: code})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Credentials{}, fmt.Errorf("pair: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Credentials{}, fmt.Errorf("pair: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var he wire.HTTPError
		_ = json.NewDecoder(resp.Body).Decode(&he)
		return Credentials{}, &PairError{Status: resp.StatusCode, Reason: he.Reason, Message: he.Message}
	}
	var pr wire.PairResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil || pr.Token == "" {
		return Credentials{}, fmt.Errorf("pair: malformed answer: %v", err)
	}
	return Credentials(pr), nil
}

// endpoint resolves path against baseURL, switching to ws(s) when ws is set.
func endpoint(baseURL, path string, ws bool) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("gateway url %q is not absolute", baseURL)
	}
	u = u.ResolveReference(&url.URL{Path: path})
	if ws {
		switch u.Scheme {
		case "https":
			u.Scheme = "wss"
		default:
			u.Scheme = "ws"
		}
	}
	return u.String(), nil
}

// Options tune Dial.
type Options struct {
	// Token is the peer's token; empty says hello without one (open enrollment).
	Token string
	// Origin is the Origin header of the WebSocket upgrade; empty means the gateway URL's
	// origin, as a page served by the gateway sends.
	Origin string
	// TLSConfig is used for wss:// signaling.
	TLSConfig *tls.Config
	// Timeout bounds signaling until the channel is open (DefaultTimeout).
	Timeout time.Duration
	// MaxMessageSize bounds a reassembled incoming message (DefaultMaxMessageSize).
	MaxMessageSize int
	// API makes the PeerConnection; nil uses one suited to the gateway's address (loopback
	// candidates only when the gateway is on loopback).
	API *webrtc.API
}

// Client is one open data channel to a gateway. Its methods are safe for concurrent use.
type Client struct {
	// Peer, Role and Token are what the gateway's welcome said (Token only under open
	// enrollment, else the one given).
	Peer, Role, Token string
	// ReadyTime is how long signaling took, from sending hello to the channel opening.
	ReadyTime time.Duration

	pc  *webrtc.PeerConnection
	dc  *webrtc.DataChannel
	max int

	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan wire.Response
	closed  bool
	err     error
	done    chan struct{}

	sendMu  sync.Mutex
	sendNum uint32
	low     chan struct{}

	reasm   wire.Reassembler // read loop only
	notes   chan wire.Notification
	strays  chan wire.Response
	dropped atomic.Int64
}

var (
	apiOnce     sync.Once
	loopbackAPI *webrtc.API
	lanAPI      *webrtc.API
)

// defaultAPI returns a data-only pion API; for a gateway on loopback it gathers loopback
// candidates only, which is what tests and benchmarks on one machine need.
func defaultAPI(loopback bool) *webrtc.API {
	apiOnce.Do(func() {
		build := func(lo bool) *webrtc.API {
			se := webrtc.SettingEngine{}
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
			se.SetSCTPMaxMessageSize(256 << 10)
			if lo {
				se.SetIncludeLoopbackCandidate(true)
				se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
			}
			return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
				webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
		}
		loopbackAPI, lanAPI = build(true), build(false)
	})
	if loopback {
		return loopbackAPI
	}
	return lanAPI
}

// isLoopbackHost reports whether the gateway URL's host is a loopback address or localhost.
func isLoopbackHost(baseURL string) bool {
	u, err := url.Parse(baseURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Dial connects to the gateway whose web app is at baseURL and returns once the data channel
// is open. A refusal is a *SignalError.
func Dial(ctx context.Context, baseURL string, opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	api := opts.API
	if api == nil {
		api = defaultAPI(isLoopbackHost(baseURL))
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	wsURL, err := endpoint(baseURL, "/signal", true)
	if err != nil {
		return nil, err
	}
	origin := opts.Origin
	if origin == "" {
		u, _ := url.Parse(baseURL)
		origin = u.Scheme + "://" + u.Host
	}
	dialer := websocket.Dialer{TLSClientConfig: opts.TLSConfig, HandshakeTimeout: opts.Timeout}
	ws, resp, err := dialer.DialContext(ctx, wsURL, http.Header{"Origin": {origin}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("signal: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("signal: %w", err)
	}
	defer ws.Close()
	if d, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(d)
		ws.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { ws.SetReadDeadline(time.Now()) })
	defer stop()

	c := &Client{
		max:     opts.MaxMessageSize,
		pending: make(map[string]chan wire.Response),
		done:    make(chan struct{}),
		low:     make(chan struct{}, 1),
		notes:   make(chan wire.Notification, notificationBuffer),
		strays:  make(chan wire.Response, 64),
		Token:   opts.Token,
	}
	c.reasm = wire.Reassembler{MaxMessageSize: opts.MaxMessageSize, MaxPartial: 16}

	start := time.Now()
	if err := ws.WriteJSON(wire.Signal{Type: wire.TypeHello, Token: opts.Token}); err != nil {
		return nil, fmt.Errorf("signal: hello: %w", err)
	}
	if c.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, fmt.Errorf("peer connection: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			c.pc.Close()
		}
	}()
	ordered := true
	if c.dc, err = c.pc.CreateDataChannel(wire.ChannelLabel, &webrtc.DataChannelInit{Ordered: &ordered}); err != nil {
		return nil, fmt.Errorf("data channel: %w", err)
	}
	opened := make(chan struct{})
	c.dc.OnOpen(func() { close(opened) })
	c.dc.OnMessage(c.onMessage)
	c.dc.OnClose(func() { c.shutdown(ErrClosed) })
	c.dc.SetBufferedAmountLowThreshold(lowWater)
	c.dc.OnBufferedAmountLow(func() {
		select {
		case c.low <- struct{}{}:
		default:
		}
	})
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			c.shutdown(fmt.Errorf("%w: connection %s", ErrClosed, s))
		}
	})
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	if err := ws.WriteJSON(wire.Signal{Type: wire.TypeOffer, SDP: c.pc.LocalDescription().SDP}); err != nil {
		return nil, fmt.Errorf("signal: offer: %w", err)
	}
	for answered := false; !answered; {
		var m wire.Signal
		if err := ws.ReadJSON(&m); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("signal: %w", ctx.Err())
			}
			return nil, fmt.Errorf("signal: %w", err)
		}
		switch m.Type {
		case wire.TypeWelcome:
			c.Peer, c.Role = m.Peer, m.Role
			if m.Token != "" {
				c.Token = m.Token
			}
		case wire.TypeAnswer:
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
				return nil, fmt.Errorf("signal: answer: %w", err)
			}
			answered = true
		case wire.TypeError:
			return nil, &SignalError{Reason: m.Reason, Message: m.Message}
		}
	}
	select {
	case <-opened:
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, fmt.Errorf("data channel did not open: %w", ctx.Err())
	}
	c.ReadyTime = time.Since(start)
	ok = true
	return c, nil
}

// Done is closed when the channel closes.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client closed, or nil while open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Notifications delivers the gateway's notifications (changed, status). Unread ones beyond a
// buffer are dropped and counted by Dropped.
func (c *Client) Notifications() <-chan wire.Notification { return c.notes }

// Dropped returns how many notifications were dropped because Notifications was not read.
func (c *Client) Dropped() int64 { return c.dropped.Load() }

// Strays delivers responses that answer no pending call: errors with a null id (a message the
// gateway could not parse) and late replies.
func (c *Client) Strays() <-chan wire.Response { return c.strays }

// Close closes the channel and the PeerConnection; pending calls fail with ErrClosed.
func (c *Client) Close() error {
	c.shutdown(ErrClosed)
	return c.pc.Close()
}

func (c *Client) shutdown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.err = err
	close(c.done)
	for id, ch := range c.pending {
		delete(c.pending, id)
		close(ch)
	}
}

// Call runs method with params and decodes its result into result (unless nil). An error
// reply is a *wire.Error; its Data holds the status and reason of an application error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	raw, err := c.CallRaw(ctx, method, params)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(raw, result)
}

// CallRaw runs method with params (nil sends {}) and returns the raw result.
func (c *Client) CallRaw(ctx context.Context, method string, params any) (json.RawMessage, error) {
	req, ch, err := c.request(method, params)
	if err != nil {
		return nil, err
	}
	msg, err := json.Marshal(req)
	if err != nil {
		c.forget(req.ID)
		return nil, err
	}
	if err := c.SendText(ctx, msg); err != nil {
		c.forget(req.ID)
		return nil, err
	}
	return c.wait(ctx, req.ID, ch)
}

// Call is one call of a Batch. A Notify call has no id and gets no result.
type Call struct {
	Method string
	Params any
	Notify bool
}

// Result is one call's outcome in a Batch: Result or Err.
type Result struct {
	Result json.RawMessage
	Err    *wire.Error
}

// Batch sends calls as one batch message and returns their results in the same order
// (notifications get a zero Result).
func (c *Client) Batch(ctx context.Context, calls []Call) ([]Result, error) {
	reqs := make([]wire.Request, len(calls))
	chans := make([]chan wire.Response, len(calls))
	for i, call := range calls {
		if call.Notify {
			p, err := marshalParams(call.Params)
			if err != nil {
				return nil, err
			}
			reqs[i] = wire.Request{JSONRPC: wire.Version, Method: call.Method, Params: p}
			continue
		}
		req, ch, err := c.request(call.Method, call.Params)
		if err != nil {
			return nil, err
		}
		reqs[i], chans[i] = req, ch
	}
	defer func() {
		for i, r := range reqs {
			if chans[i] != nil {
				c.forget(r.ID)
			}
		}
	}()
	msg, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	if err := c.SendText(ctx, msg); err != nil {
		return nil, err
	}
	out := make([]Result, len(calls))
	for i, ch := range chans {
		if ch == nil {
			continue
		}
		raw, err := c.wait(ctx, reqs[i].ID, ch)
		var we *wire.Error
		switch {
		case errors.As(err, &we):
			out[i].Err = we
		case err != nil:
			return out, err
		default:
			out[i].Result = raw
		}
	}
	return out, nil
}

// Notify sends a request without an id; the gateway runs it and sends nothing back.
func (c *Client) Notify(ctx context.Context, method string, params any) error {
	p, err := marshalParams(params)
	if err != nil {
		return err
	}
	msg, _ := json.Marshal(wire.Request{JSONRPC: wire.Version, Method: method, Params: p})
	return c.SendText(ctx, msg)
}

func marshalParams(params any) (json.RawMessage, error) {
	if params == nil {
		return json.RawMessage("{}"), nil
	}
	if raw, ok := params.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(params)
}

func (c *Client) request(method string, params any) (wire.Request, chan wire.Response, error) {
	p, err := marshalParams(params)
	if err != nil {
		return wire.Request{}, nil, fmt.Errorf("params: %w", err)
	}
	id := json.RawMessage(strconv.FormatUint(c.nextID.Add(1), 10))
	ch := make(chan wire.Response, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return wire.Request{}, nil, c.err
	}
	c.pending[string(id)] = ch
	return wire.Request{JSONRPC: wire.Version, ID: id, Method: method, Params: p}, ch, nil
}

func (c *Client) forget(id json.RawMessage) {
	c.mu.Lock()
	delete(c.pending, string(id))
	c.mu.Unlock()
}

func (c *Client) wait(ctx context.Context, id json.RawMessage, ch chan wire.Response) (json.RawMessage, error) {
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, c.Err()
		}
		if resp.Error != nil {
			return nil, resp.Error
		}
		return resp.Result, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

// SendText sends one text message as it is — fragmented when over 64 KiB — for a request
// the typed methods cannot express (tests send malformed ones).
func (c *Client) SendText(ctx context.Context, msg []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if len(msg) <= wire.MaxFragmentPayload {
		if err := c.waitLow(ctx); err != nil {
			return err
		}
		return c.sendErr(c.dc.SendText(string(msg)))
	}
	num := c.sendNum
	c.sendNum++
	for i := uint32(0); i < wire.FragmentCount(len(msg)); i++ {
		if err := c.waitLow(ctx); err != nil {
			return err
		}
		if err := c.sendErr(c.dc.Send(wire.Fragment(num, msg, i))); err != nil {
			return err
		}
	}
	return nil
}

// SendBinary sends one binary message as it is (a hand-made fragment, in tests).
func (c *Client) SendBinary(ctx context.Context, frame []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.waitLow(ctx); err != nil {
		return err
	}
	return c.sendErr(c.dc.Send(frame))
}

func (c *Client) sendErr(err error) error {
	if err != nil {
		if e := c.Err(); e != nil {
			return e
		}
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// waitLow waits while more than highWater bytes are unacknowledged.
func (c *Client) waitLow(ctx context.Context) error {
	for c.dc.BufferedAmount() > highWater {
		select {
		case <-c.low:
		case <-time.After(100 * time.Millisecond):
		case <-c.done:
			return c.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// onMessage runs on pion's read loop.
func (c *Client) onMessage(m webrtc.DataChannelMessage) {
	data := m.Data
	if !m.IsString {
		msg, err := c.reasm.Add(data)
		if err != nil {
			c.stray(wire.Response{Error: &wire.Error{Code: wire.CodeParseError, Message: err.Error()}})
			return
		}
		if msg == nil {
			return
		}
		data = msg
	}
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) > 0 && data[0] == '[' {
		var items []json.RawMessage
		if json.Unmarshal(data, &items) != nil {
			return
		}
		for _, it := range items {
			c.deliver(it)
		}
		return
	}
	c.deliver(data)
}

// incoming is a response or a notification.
type incoming struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *wire.Error     `json:"error"`
}

func (c *Client) deliver(raw []byte) {
	var in incoming
	if json.Unmarshal(raw, &in) != nil {
		return
	}
	if in.Method != "" && in.ID == nil {
		select {
		case c.notes <- wire.Notification{JSONRPC: wire.Version, Method: in.Method, Params: in.Params}:
		default:
			c.dropped.Add(1)
		}
		return
	}
	resp := wire.Response{JSONRPC: wire.Version, ID: in.ID, Result: in.Result, Error: in.Error}
	c.mu.Lock()
	ch := c.pending[string(in.ID)]
	delete(c.pending, string(in.ID))
	c.mu.Unlock()
	if ch == nil {
		c.stray(resp)
		return
	}
	ch <- resp
}

func (c *Client) stray(r wire.Response) {
	select {
	case c.strays <- r:
	default:
	}
}
