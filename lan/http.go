package lan

import (
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/wire"
)

// webFS is the site web app: plain HTML, CSS and JavaScript modules, no build step, no CDN.
//
//go:embed all:web
var webFS embed.FS

// WebFS returns the embedded web app, rooted at its top directory.
func WebFS() fs.FS {
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err)
	}
	return sub
}

// routes registers the server's own handlers. Patterns carry no method, so that routes the
// caller adds with Handle ("/metrics" or "GET /metrics") never conflict with them.
func (s *Server) routes() {
	static := http.FileServerFS(WebFS())
	s.mux.Handle("/", getOnly(noCache(static)))
	s.mux.Handle("/pair", getOnly(noCache(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, WebFS(), "pair.html")
	}))))
	s.mux.HandleFunc("/api/pair", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, wire.HTTPError{Status: http.StatusMethodNotAllowed, Reason: wire.ReasonBadRequest, Message: "use POST"})
			return
		}
		s.handlePair(w, r)
	})
	s.mux.Handle("/signal", getOnly(http.HandlerFunc(s.handleSignal)))
	s.mux.Handle("/healthz", getOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})))
}

// getOnly answers 405 to anything but GET and HEAD.
func getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// noCache makes browsers revalidate the web app on every load, so that an upgraded gateway
// never runs an old page against a new wire.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// maxPairBody bounds the body of POST /api/pair.
const maxPairBody = 4 << 10

// handlePair redeems a one-time pairing code: POST {"code"} → {"peer","role","token"}.
// Attempts are rate-limited per client address and overall, so codes cannot be guessed.
func (s *Server) handlePair(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	if wait := s.pairLim.take(remoteHost(r), now); wait > 0 {
		writeHTTPError(w, wait, gateway.ReasonErrorf(gateway.ERATELIMITED, gateway.ERATELIMITED, "too many pairing attempts; wait a moment"))
		return
	}
	if wait := s.globLim.take("", now); wait > 0 {
		writeHTTPError(w, wait, gateway.ReasonErrorf(gateway.ERATELIMITED, gateway.ERATELIMITED, "too many pairing attempts; wait a moment"))
		return
	}
	var req wire.PairRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPairBody))
	if err := dec.Decode(&req); err != nil || req.Code == "" {
		writeHTTPError(w, 0, gateway.ReasonErrorf(gateway.EINVALID, wire.ReasonBadRequest, `the body must be {"code": "…"}`))
		return
	}
	peer, token, err := s.peers.RedeemInvite(r.Context(), req.Code)
	if err != nil {
		if gateway.ErrorCode(err) == gateway.EINTERNAL {
			s.Logger.Error("redeem invite", "err", err)
		}
		writeHTTPError(w, 0, err)
		return
	}
	s.Logger.Info("peer paired", "peer", peer.Name, "role", peer.Role, "address", remoteHost(r))
	writeJSON(w, http.StatusOK, wire.PairResponse{Peer: peer.Name, Role: peer.Role, Token: token})
}

// writeHTTPError writes err as a wire.HTTPError with its status; retry, when positive, goes
// into Retry-After.
func writeHTTPError(w http.ResponseWriter, retry time.Duration, err error) {
	status := gateway.Status(gateway.ErrorCode(err))
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
	}
	writeJSON(w, status, wire.HTTPError{Status: status, Reason: gateway.ErrorReason(err), Message: gateway.ErrorMessage(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Rate is a token bucket's refill interval and size; Every 0 means no limit.
type Rate struct {
	Every time.Duration // one token per Every
	Burst int
}

// limiter is a set of token buckets keyed by client address. Buckets that are full again are
// forgotten, so its size follows the clients that are actually hammering.
type limiter struct {
	rate    Rate
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(r Rate) *limiter {
	if r.Burst < 1 {
		r.Burst = 1
	}
	return &limiter{rate: r, buckets: make(map[string]*bucket)}
}

// take spends a token of key's bucket; it returns 0 when one was there, else how long until
// there will be one.
func (l *limiter) take(key string, now time.Time) time.Duration {
	if l.rate.Every <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if l.refill(b, now) >= float64(l.rate.Burst) {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(l.rate.Burst), at: now}
		l.buckets[key] = b
	}
	if l.refill(b, now) >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.rate.Every))
}

func (l *limiter) refill(b *bucket, now time.Time) float64 {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(float64(l.rate.Burst), b.tokens+float64(d)/float64(l.rate.Every))
		b.at = now
	}
	return b.tokens
}
