package erp5sim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"sitesync.example/gateway/linksim"
)

// FaultKind is what goes wrong with a request.
type FaultKind int

// Fault kinds. "Processed" means the request was handled and its changes committed.
const (
	// FaultNone only waits Fault.Delay, then serves normally (added latency).
	FaultNone FaultKind = iota
	// FaultCutBeforeRead cuts the connection before the request body is read: nothing is
	// applied and no response is sent.
	FaultCutBeforeRead
	// FaultCutAfterCommit processes the request, then cuts the connection without a response:
	// the change is committed but the client cannot know.
	FaultCutAfterCommit
	// FaultCutAfterResponse processes the request, writes the whole response to the
	// connection, then cuts it: across a linksim link the response is lost in flight (on a
	// plain TCP connection it may still arrive).
	FaultCutAfterResponse
	// FaultStatus answers Status (default 503) without processing; with RetryAfter it sets
	// Retry-After. 401, 429, 500, 502, 503, 504 are the useful ones.
	FaultStatus
	// FaultStatusAfterCommit processes the request, then answers Status (default 502) instead
	// of the real response, as a front end timing out on a slow ERP5 does.
	FaultStatusAfterCommit
	// FaultSlow processes the request, then sends the response body at Rate bytes per second.
	FaultSlow
	// FaultGarbage processes the request, then answers 200 with Body (default an HTML proxy
	// page) in place of the real body.
	FaultGarbage
	// FaultTruncate processes the request, then sends the response headers (with the full
	// Content-Length) and half the body, and closes the connection.
	FaultTruncate
)

var faultNames = map[FaultKind]string{
	FaultNone: "none", FaultCutBeforeRead: "cut_before_read", FaultCutAfterCommit: "cut_after_commit",
	FaultCutAfterResponse: "cut_after_response", FaultStatus: "status", FaultStatusAfterCommit: "status_after_commit",
	FaultSlow: "slow", FaultGarbage: "garbage", FaultTruncate: "truncate",
}

// String returns the kind's name.
func (k FaultKind) String() string {
	if s, ok := faultNames[k]; ok {
		return s
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is a scripted failure for requests to one endpoint.
type Fault struct {
	// Endpoint is the endpoint it applies to; "" means any.
	Endpoint Endpoint
	Kind     FaultKind
	// Delay is waited before anything else (for every kind).
	Delay time.Duration
	// Status and RetryAfter are FaultStatus's and FaultStatusAfterCommit's answer.
	Status     int
	RetryAfter string
	// Rate is FaultSlow's speed in bytes per second (default 100).
	Rate int
	// Body is FaultGarbage's body.
	Body []byte
	// Times is how many requests the fault applies to; 0 means one.
	Times int
}

// InjectFault queues faults; each request takes the first queued fault whose Endpoint
// matches it, and a fault is dropped once it has applied Times times.
func (s *Server) InjectFault(fs ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		f := f
		if f.Times <= 0 {
			f.Times = 1
		}
		s.faults = append(s.faults, &f)
	}
}

// SetFaultFunc installs a hook consulted for every request after the queue: it returns the
// fault to apply, or nil. Pass nil to remove it.
func (s *Server) SetFaultFunc(fn func(r *http.Request, ep Endpoint) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFn = fn
}

// ClearFaults drops every queued fault and the hook.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.faultFn = nil
}

// PendingFaults returns how many queued faults have not applied yet.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

func (s *Server) takeFault(r *http.Request, ep Endpoint) *Fault {
	s.mu.Lock()
	for i, f := range s.faults {
		if f.Endpoint == "" || f.Endpoint == ep {
			f.Times--
			if f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			s.stats.Faults++
			c := *f
			s.mu.Unlock()
			return &c
		}
	}
	fn := s.faultFn
	s.mu.Unlock()
	if fn != nil {
		if f := fn(r, ep); f != nil {
			s.mu.Lock()
			s.stats.Faults++
			s.mu.Unlock()
			return f
		}
	}
	return nil
}

// serveWithFault runs process (which fills rec) and sends rec, as f dictates. It returns
// the number of response body bytes written.
func (s *Server) serveWithFault(w http.ResponseWriter, r *http.Request, ep Endpoint, f *Fault, rec *recorder, process func()) int {
	if f == nil {
		process()
		return rec.send(w)
	}
	sleepCtx(r.Context(), f.Delay)
	switch f.Kind {
	case FaultCutBeforeRead:
		cut(w, nil)
		return 0
	case FaultStatus:
		status := f.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="Zope"`)
		}
		w.WriteHeader(status)
		return 0
	}
	process()
	switch f.Kind {
	case FaultCutAfterCommit:
		cut(w, nil)
		return 0
	case FaultCutAfterResponse:
		raw := rec.raw(len(rec.body.Bytes()))
		cut(w, raw)
		return rec.body.Len()
	case FaultStatusAfterCommit:
		status := f.Status
		if status == 0 {
			status = http.StatusBadGateway
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		n, _ := fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", status, http.StatusText(status))
		return n
	case FaultSlow:
		rate := f.Rate
		if rate <= 0 {
			rate = 100
		}
		maps.Copy(w.Header(), rec.header)
		w.Header().Set("Content-Length", strconv.Itoa(rec.body.Len()))
		w.WriteHeader(rec.status)
		fl, _ := w.(http.Flusher)
		body := rec.body.Bytes()
		chunk := max(rate/10, 1)
		n := 0
		for len(body) > 0 {
			c := min(chunk, len(body))
			m, err := w.Write(body[:c])
			n += m
			if err != nil {
				return n
			}
			if fl != nil {
				fl.Flush()
			}
			body = body[c:]
			sleepCtx(r.Context(), time.Duration(c)*time.Second/time.Duration(rate))
		}
		return n
	case FaultGarbage:
		body := f.Body
		if body == nil {
			body = []byte("<html><head><title>Proxy Error</title></head><body>The proxy server received an invalid response.</body></html>\n")
		}
		w.Header().Set("Content-Type", rec.header.Get("Content-Type"))
		if enc := rec.header.Get("Content-Encoding"); enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		n, _ := w.Write(body)
		return n
	case FaultTruncate:
		half := rec.body.Len() / 2
		raw := rec.raw(half)
		hijack(w, func(c net.Conn) {
			c.Write(raw)
			c.Close()
		})
		return half
	}
	return rec.send(w)
}

// cut takes over the connection, writes raw (if any) and resets the connection: a linksim
// connection is cut (data in flight lost), a TCP one closed with an RST.
func cut(w http.ResponseWriter, raw []byte) {
	hijack(w, func(c net.Conn) {
		if raw != nil {
			c.Write(raw)
		}
		switch c := c.(type) {
		case *linksim.Conn:
			c.Cut()
		case *net.TCPConn:
			c.SetLinger(0)
			c.Close()
		default:
			c.Close()
		}
	})
}

func hijack(w http.ResponseWriter, fn func(net.Conn)) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a recorder: abort the handler, which resets the stream.
		panic(http.ErrAbortHandler)
	}
	fn(c)
}

// recorder buffers a response so faults can replace, delay or mangle it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, status: 0} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// send copies the recorded response to w and returns the body size.
func (r *recorder) send(w http.ResponseWriter) int {
	maps.Copy(w.Header(), r.header)
	if r.code() != http.StatusNoContent && r.code() != http.StatusNotModified {
		w.Header().Set("Content-Length", strconv.Itoa(r.body.Len()))
	}
	w.WriteHeader(r.code())
	n, _ := w.Write(r.body.Bytes())
	return n
}

// raw formats the recorded response as HTTP/1.1 bytes with its full Content-Length and the
// first n bytes of the body.
func (r *recorder) raw(n int) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", r.code(), http.StatusText(r.code()))
	h := r.header.Clone()
	h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	h.Write(bw)
	bw.WriteString("\r\n")
	bw.Write(r.body.Bytes()[:n])
	bw.Flush()
	return b.Bytes()
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// Stats are the double's counters.
type Stats struct {
	// Requests counts requests by endpoint, Status by endpoint and status code.
	Requests map[Endpoint]int
	Status   map[Endpoint]map[int]int
	// BytesIn and BytesOut count request and response body bytes by endpoint, as sent on the
	// wire (compressed when the body was).
	BytesIn  map[Endpoint]int64
	BytesOut map[Endpoint]int64
	// Faults counts faults applied.
	Faults int
}

func newStats() Stats {
	return Stats{Requests: map[Endpoint]int{}, Status: map[Endpoint]map[int]int{}, BytesIn: map[Endpoint]int64{}, BytesOut: map[Endpoint]int64{}}
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Stats{Requests: maps.Clone(s.stats.Requests), Status: map[Endpoint]map[int]int{}, BytesIn: maps.Clone(s.stats.BytesIn), BytesOut: maps.Clone(s.stats.BytesOut), Faults: s.stats.Faults}
	for k, v := range s.stats.Status {
		c.Status[k] = maps.Clone(v)
	}
	return c
}

// ResetStats zeroes the counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newStats()
}

func (s *Server) count(ep Endpoint, in int64, out int, handled bool, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests[ep]++
	s.stats.BytesIn[ep] += in
	s.stats.BytesOut[ep] += int64(out)
	if handled {
		if s.stats.Status[ep] == nil {
			s.stats.Status[ep] = map[int]int{}
		}
		if status == 0 {
			status = http.StatusOK
		}
		s.stats.Status[ep][status]++
	}
}
