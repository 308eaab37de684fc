// Package upstream talks to ERP5 over the satellite link: the stock HATEOAS interface, the
// batch receiver (docs/DESIGN.md appendices A and B), and the uplink that drains the outbox to them exactly once
// (docs/DESIGN.md §7).
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LogKeySubsystem is the log attribute naming the component.
const LogKeySubsystem = "subsystem"

// DefaultUserAgent is short on purpose: every header byte crosses the link on every request.
const DefaultUserAgent = "sitesync/1"

// maxResponseSize bounds a response body read from the link (before decoding).
const maxResponseSize = 64 << 20

// Auth is how the client authenticates to ERP5 (docs/DESIGN.md appendix A): HTTP Basic (User, Password),
// an X-ACCESS-TOKEN header (Token) or the `__ac` cookie (Cookie). The first one set wins in
// that order. Its String and LogValue never show a secret.
type Auth struct {
	User     string
	Password string
	Token    string
	Cookie   string
}

// String describes the method without the secret.
func (a Auth) String() string {
	switch {
	case a.User != "":
		return "basic(" + a.User + ", password redacted)"
	case a.Token != "":
		return "token(redacted)"
	case a.Cookie != "":
		return "cookie(redacted)"
	}
	return "anonymous"
}

// LogValue implements slog.LogValuer so that logging an Auth never prints a secret.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

func (a Auth) apply(h http.Header) {
	switch {
	case a.User != "":
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.User+":"+a.Password)))
	case a.Token != "":
		h.Set("X-ACCESS-TOKEN", a.Token)
	case a.Cookie != "":
		h.Set("Cookie", "__ac="+a.Cookie)
	}
}

// Client talks to one ERP5 HATEOAS web site (docs/DESIGN.md appendices A and B): the stock interface and the batch
// receiver installed beside it. Set the exported fields before the first call; it is safe
// for concurrent use afterwards.
type Client struct {
	// URL is the web site, e.g. https://erp5.example.org/erp5/web_site_module/hateoas/.
	URL string
	// HTTPClient sends the requests; nil uses one with NewTransport's settings.
	HTTPClient *http.Client
	// Auth are the credentials.
	Auth Auth
	// Logger is where the client logs; nil is slog.Default() with subsystem=upstream.
	Logger *slog.Logger
	// Now returns the current time (clock skew, Retry-After dates); nil is time.Now.
	Now func() time.Time
	// UserAgent is sent on every request; "" is DefaultUserAgent.
	UserAgent string
	// OnExchange, if set, is called after every exchange with ERP5 (metrics, link state):
	// the request's method and path, the status (0 without a response) and the error.
	OnExchange func(method, path string, status int, err error)
	// StallWindow is how long a request may go without a byte moving before it is abandoned
	// as stalled (ErrStalled, the link down); 0 derives it from the measured round-trip time
	// (stallWindow).
	StallWindow time.Duration
	// View is the traverse view of documents' forms (upstream.view); "" is DefaultView. A
	// document whose type lacks it is traversed again with DefaultView.
	View string
	// Related, if set, gives the text (of the catalog index, usually title) and catalog uid
	// of a related document for stock puts of relation fields, from the replica; ok false
	// (or no uid) makes the client search ERP5 for them.
	Related func(ctx context.Context, id, index string) (r Related, ok bool)

	initOnce sync.Once
	base     *url.URL
	baseErr  error

	mu    sync.Mutex
	root  *Root
	forms map[string]*learnedForm // portal type → what one traverse taught about its form

	codec     codec
	skewNanos atomic.Int64
	skewKnown atomic.Bool
	requests  atomic.Int64
	rttNanos  atomic.Int64
}

func (c *Client) init() error {
	c.initOnce.Do(func() {
		u := c.URL
		if u == "" {
			c.baseErr = errors.New("upstream: no ERP5 URL configured")
			return
		}
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		c.base, c.baseErr = url.Parse(u)
		if c.baseErr == nil && (c.base.Scheme != "http" && c.base.Scheme != "https") {
			c.baseErr = fmt.Errorf("upstream: URL %q is not http or https", c.URL)
		}
		if c.HTTPClient == nil {
			c.HTTPClient = &http.Client{Transport: NewTransport(TransportConfig{})}
		}
		if c.Logger == nil {
			c.Logger = slog.Default().With(LogKeySubsystem, "upstream")
		}
		c.forms = map[string]*learnedForm{}
	})
	return c.baseErr
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// SiteURL returns the site URL with its trailing slash.
func (c *Client) SiteURL() string {
	if err := c.init(); err != nil {
		return c.URL
	}
	return c.base.String()
}

// Requests returns how many requests the client has sent (tests count round trips with it).
func (c *Client) Requests() int64 { return c.requests.Load() }

// ClockSkew returns ERP5's clock minus ours, from the Date header of the latest response
// (to about a second plus half a round trip), and whether any response carried one.
func (c *Client) ClockSkew() (time.Duration, bool) {
	return time.Duration(c.skewNanos.Load()), c.skewKnown.Load()
}

// resolve returns ref (absolute, or relative to the site URL) as an absolute URL.
func (c *Client) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("bad URL %q from erp5: %w", ref, err)
	}
	return c.base.ResolveReference(u).String(), nil
}

// exchange is one request's outcome: the response (its body already read and decoded) or
// the error.
type exchange struct {
	resp *http.Response
	body []byte
}

// request describes one request for do.
type request struct {
	method      string
	url         string
	contentType string
	encoding    string // Content-Encoding of body
	accept      string
	body        []byte
	// expect is the expected response size, for the deadline.
	expect int
	// work is ERP5's expected work before it answers (applying a batch), allowed on top of
	// the stall window between the last byte sent and the first byte of the answer.
	work time.Duration
}

// do sends r and reads the whole response. A status outside 2xx is an *HTTPError (with
// the body's message); a failure before the request was fully written wraps ErrNotSent and
// ErrOffline; a failure after it wraps ErrNoResponse.
func (c *Client) do(ctx context.Context, r request) (*exchange, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout(len(r.body)+r.expect))
	defer cancel()
	ctx, dog := newWatchdog(ctx, c.stallWindow())
	defer dog.stop()
	var conn atomic.Pointer[meteredConn]
	defer func() {
		if mc := conn.Load(); mc != nil {
			mc.watch.CompareAndSwap(dog, nil)
		}
	}()
	// After the last byte is handed to the connection, the answer may wait for the bytes
	// still queued in the socket and for ERP5's work.
	answerWait := r.work + time.Duration(min(len(r.body), 256<<10))*time.Second/DefaultLinkRate
	var wrote atomic.Bool
	var wroteAt atomic.Int64
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			dog.progress()
			if mc := progressConn(info.Conn); mc != nil {
				mc.watch.Store(dog)
				conn.Store(mc)
			}
		},
		ConnectDone:      func(string, string, error) { dog.progress() },
		TLSHandshakeDone: func(tls.ConnectionState, error) { dog.progress() },
		WroteHeaders:     func() { dog.phase(answerWait) },
		GotFirstResponseByte: func() {
			dog.phase(0)
			if at := wroteAt.Load(); at != 0 && len(r.body) < 4096 && r.work == 0 {
				c.noteRTT(c.now().Sub(time.Unix(0, at)))
			}
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
				wroteAt.Store(c.now().UnixNano())
				dog.phase(answerWait)
			}
		},
	}
	ctx = httptrace.WithClientTrace(ctx, trace)
	var body io.Reader
	if r.body != nil {
		// Upload progress is seen on the connection (meteredConn), not here: a body reader
		// other than *bytes.Reader changes how the transport writes it.
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	h := req.Header
	ua := c.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	h.Set("User-Agent", ua)
	if r.accept != "" {
		h.Set("Accept", r.accept)
	}
	h.Set("Accept-Encoding", "gzip")
	if r.accept == "application/json" {
		// The receiver answers in the request's encoding; zstd is decoded here too.
		h.Set("Accept-Encoding", "zstd, gzip")
	}
	if r.contentType != "" {
		h.Set("Content-Type", r.contentType)
	}
	if r.encoding != "" {
		h.Set("Content-Encoding", r.encoding)
	}
	c.Auth.apply(h)
	c.requests.Add(1)
	sent := c.now()
	resp, err := c.HTTPClient.Do(req)
	path := req.URL.Path
	if err != nil {
		if dog.stalled() {
			err = c.stalledError(r.method, path, wrote.Load() && !isConnectError(err))
			c.report(r.method, path, 0, err)
			return nil, err
		}
		// WroteRequest fires once the request is in the connection's buffer, before it is
		// flushed; a dial or TLS failure of a retry on a fresh connection comes after it.
		if !wrote.Load() || isConnectError(err) {
			err = fmt.Errorf("%s %s: %w", r.method, path, errors.Join(ErrNotSent, ErrOffline, err))
		} else {
			err = fmt.Errorf("%s %s: %w", r.method, path, errors.Join(ErrNoResponse, err))
		}
		c.report(r.method, path, 0, err)
		return nil, err
	}
	defer resp.Body.Close()
	c.noteDate(resp.Header.Get("Date"), sent)
	raw, err := io.ReadAll(io.LimitReader(&progressReader{r: resp.Body, w: dog}, maxResponseSize))
	if err != nil && dog.stalled() {
		err = c.stalledError(r.method, path, true)
		c.report(r.method, path, 0, err)
		return nil, err
	}
	if err != nil {
		err = fmt.Errorf("%s %s: read response: %w", r.method, path, errors.Join(ErrNoResponse, err))
		c.report(r.method, path, resp.StatusCode, err)
		return nil, err
	}
	decoded, err := c.codec.decompress(strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))), raw)
	if err != nil {
		err = fmt.Errorf("%s %s: decode response: %w", r.method, path, errors.Join(ErrBadResponse, err))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			err = c.httpError(resp, nil)
		}
		c.report(r.method, path, resp.StatusCode, err)
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := c.httpError(resp, decoded)
		c.report(r.method, path, resp.StatusCode, err)
		return &exchange{resp: resp, body: decoded}, err
	}
	c.report(r.method, path, resp.StatusCode, nil)
	return &exchange{resp: resp, body: decoded}, nil
}

// stalledError is the error of a request the watchdog abandoned: sent (possibly applied) or
// not, and the link is down. It does not wrap the context's cancellation, which would read
// as the caller's own.
func (c *Client) stalledError(method, path string, sent bool) error {
	what := ErrNotSent
	if sent {
		what = ErrNoResponse
	}
	return fmt.Errorf("%s %s: %w", method, path, errors.Join(what, ErrOffline,
		fmt.Errorf("%w: no byte moved for %s", ErrStalled, c.stallWindow().Round(time.Second))))
}

// isConnectError reports whether err is a failure to open a connection (dial, proxy, TLS
// handshake), which no request byte can have crossed.
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return true
	}
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv)
}

func (c *Client) report(method, path string, status int, err error) {
	if c.OnExchange != nil {
		c.OnExchange(method, path, status, err)
	}
}

// httpError builds the *HTTPError of a non-2xx response, with a short message from its body.
func (c *Client) httpError(resp *http.Response, body []byte) error {
	he := &HTTPError{Status: resp.StatusCode}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		he.RetryAfter = parseRetryAfter(ra, c.now())
	}
	if msg := errorMessage(body); msg != "" {
		he.Err = errors.New(msg)
	}
	return he
}

// errorMessage extracts a short, single-line message from an error body: a JSON object's
// "reason", "message", "error_text" or per-field error_text, else the text itself.
func errorMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	if body[0] == '{' {
		if m := jsonErrorMessage(body); m != "" {
			return m
		}
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if strings.HasPrefix(s, "<") {
		return "" // an HTML error page from a front end says nothing useful
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// noteDate records the clock skew from a response's Date header, taking the middle of the
// exchange as our time of the server's reading.
func (c *Client) noteDate(date string, sent time.Time) {
	if date == "" {
		return
	}
	t, err := http.ParseTime(date)
	if err != nil {
		return
	}
	now := c.now()
	mid := sent.Add(now.Sub(sent) / 2)
	// Date has one-second resolution: the server's clock was somewhere in [t, t+1s).
	skew := t.Add(500 * time.Millisecond).Sub(mid).Round(time.Second)
	c.skewNanos.Store(int64(skew))
	c.skewKnown.Store(true)
}
