// Package control is the running gateway's local admin API: HTTP over the unix socket
// data_dir/gateway.sock. Operator commands reach a running `gateway serve` through it (wake
// the uplink, peers' online state and revocation, sync now); when no serve listens they act
// on the database directly and the server notices within a second.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Paths served by every Server.
const (
	// PingPath answers GET with Ping.
	PingPath = "/ping"
	// WakePath is POST WakePath+NAME: run the waker registered under NAME (HandleWake).
	WakePath = "/wake/"
)

// Waker names the gateway registers.
const (
	WakeUplink   = "uplink"   // the outbox changed, or an operator asked to try the link now
	WakeDownlink = "downlink" // refresh the replica from ERP5 now
	WakeResume   = "resume"   // resume an uplink paused by an alarm (seq_reused)
)

// SocketMode is the control socket's permission: the service's user and group. Operators in
// the service's group may use it; others go through `sudo -u`.
const SocketMode = 0o660

// Ping is the answer of PingPath.
type Ping struct {
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
}

// ErrRunning is returned by Open when another process already answers on the socket.
var ErrRunning = errors.New("another gateway serve answers on the control socket")

// Server serves the control socket. Register handlers before Open.
type Server struct {
	// Path is the socket file.
	Path   string
	Logger *slog.Logger

	mux     *http.ServeMux
	mu      sync.Mutex
	wakers  map[string]func()
	ln      net.Listener
	srv     *http.Server
	started time.Time
	wg      sync.WaitGroup
}

// NewServer returns a Server for the socket at path.
func NewServer(path string) *Server {
	s := &Server{Path: path, mux: http.NewServeMux(), wakers: map[string]func(){}}
	s.mux.HandleFunc("GET "+PingPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, Ping{PID: os.Getpid(), StartedAt: s.started})
	})
	s.mux.HandleFunc("POST "+WakePath+"{name}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		fn := s.wakers[r.PathValue("name")]
		s.mu.Unlock()
		if fn == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "nothing to wake under " + r.PathValue("name")})
			return
		}
		fn()
		writeJSON(w, http.StatusOK, map[string]bool{"woken": true})
	})
	return s
}

// Handle registers h for pattern (net/http ServeMux patterns), e.g. "/peers/" for the LAN
// server's control handler.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleWake registers fn under name: POST /wake/NAME calls it. fn must not block.
func (s *Server) HandleWake(name string, fn func()) {
	s.mu.Lock()
	s.wakers[name] = fn
	s.mu.Unlock()
}

// Open listens on the socket. A socket file left by a process that stopped is replaced; one
// that answers means another serve runs on this data directory, and Open returns ErrRunning.
func (s *Server) Open() error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if _, err := os.Stat(s.Path); err == nil {
		if ok, _ := NewClient(s.Path).Running(context.Background()); ok {
			return fmt.Errorf("control socket %s: %w", s.Path, ErrRunning)
		}
		if err := os.Remove(s.Path); err != nil {
			return fmt.Errorf("control socket: remove stale %s: %w", s.Path, err)
		}
	}
	// Connecting needs write permission on the socket file: the usual umask leaves it to the
	// owner until the chmod below opens it to the service's group.
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(s.Path, SocketMode); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.ln = ln
	s.started = time.Now().UTC()
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("control socket", "err", err)
		}
	})
	return nil
}

// Close stops serving and removes the socket file. It is safe to call more than once.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	s.srv = nil
	os.Remove(s.Path)
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Client talks to a Server over its socket.
type Client struct {
	// Path is the socket file.
	Path string
	// HTTP is the client used; NewClient sets one that dials Path.
	HTTP *http.Client
}

// NewClient returns a Client for the socket at path, with a 5-second timeout per request.
func NewClient(path string) *Client {
	return &Client{Path: path, HTTP: &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// NotRunning reports whether err means that no server listens on the socket (no file, or a
// file nobody accepts on).
func NotRunning(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Do sends a request with in (JSON, when not nil) and decodes a 2xx answer into out (when
// not nil). handled is false, with no error, when no server listens; a non-2xx answer is an
// error carrying its body.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (handled bool, err error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return false, err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://gateway"+path, body)
	if err != nil {
		return false, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if NotRunning(err) {
			return false, nil
		}
		return true, fmt.Errorf("control socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return true, fmt.Errorf("control socket: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return true, fmt.Errorf("control socket: %s %s: %w", method, path, err)
		}
	}
	return true, nil
}

// Running reports whether a server answers on the socket.
func (c *Client) Running(ctx context.Context) (bool, error) {
	var p Ping
	return c.Do(ctx, http.MethodGet, PingPath, nil, &p)
}

// Wake asks the running server to run its waker name (WakeUplink…). handled is false when no
// server listens.
func (c *Client) Wake(ctx context.Context, name string) (handled bool, err error) {
	return c.Do(ctx, http.MethodPost, WakePath+name, nil, nil)
}
