package upstream

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// LinkState is what the gateway knows of its line to ERP5.
type LinkState int

// Link states. Unknown until the first exchange; Up when ERP5 answers; Degraded when it
// answers but with overload or server errors (429, 5xx, 408); Down when nothing comes back.
const (
	LinkUnknown LinkState = iota
	LinkUp
	LinkDegraded
	LinkDown
)

var linkStateNames = [...]string{"unknown", "up", "degraded", "down"}

// String returns the state's name.
func (s LinkState) String() string {
	if int(s) < len(linkStateNames) {
		return linkStateNames[s]
	}
	return "LinkState(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (s LinkState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *LinkState) UnmarshalText(b []byte) error {
	for i, n := range linkStateNames {
		if n == string(b) {
			*s = LinkState(i)
			return nil
		}
	}
	return errors.New("unknown link state " + strconv.Quote(string(b)))
}

// LinkStatus is the link part of Status (docs/DESIGN.md §3 `status`: state, since, next_try_at,
// last_error).
type LinkStatus struct {
	State     LinkState `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	NextTryAt time.Time `json:"next_try_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// LastUp is the last time ERP5 answered; LastDown the last time a request got nothing.
	LastUp   time.Time `json:"last_up,omitzero"`
	LastDown time.Time `json:"last_down,omitzero"`
	// Failures counts consecutive failed exchanges.
	Failures int `json:"failures"`
}

// link tracks the link state from every exchange the client makes, and logs each distinct
// error once, then one "recovered after N failures" line.
type link struct {
	logger *slog.Logger
	now    func() time.Time
	// onReturn is called (outside the lock) when the link comes back after being down.
	onReturn func()
	// onChange is called (outside the lock) after every state change.
	onChange func()

	mu          sync.Mutex
	st          LinkStatus
	lastLogged  string
	loggedCount int
}

// observe records one exchange: status is 0 without a response.
func (l *link) observe(method, path string, status int, err error) {
	if status == 0 && errors.Is(err, context.Canceled) {
		// Our own cancellation (shutdown, a request abandoned) says nothing of the link.
		return
	}
	now := l.now()
	next := LinkUp
	switch {
	case status == 0 && err != nil:
		next = LinkDown
	case status == 408 || status == 429 || status >= 500:
		next = LinkDegraded
	case err != nil && (errors.Is(err, ErrNoResponse) || errors.Is(err, ErrBadResponse)):
		// A response began but did not complete or parse: the line is unreliable.
		next = LinkDegraded
	}
	var returned, changed bool
	var recovered int
	l.mu.Lock()
	prev := l.st.State
	if next != prev {
		l.st.State = next
		l.st.Since = now
		changed = true
	}
	if next == LinkUp {
		l.st.LastUp = now
		if l.st.Failures > 0 {
			recovered = l.st.Failures
		}
		l.st.Failures = 0
		l.st.LastError = ""
		l.lastLogged = ""
		// Only a return from "down" cuts a backoff short: after "degraded" ERP5 itself was
		// failing, and an answer to another request says nothing about it.
		returned = prev == LinkDown
	} else {
		if next == LinkDown {
			l.st.LastDown = now
		} else {
			l.st.LastUp = now
		}
		l.st.Failures++
		msg := "link failure"
		if err != nil {
			msg = err.Error()
		}
		l.st.LastError = msg
		key := errorKey(msg)
		if key != l.lastLogged {
			l.lastLogged = key
			l.loggedCount++
			l.mu.Unlock()
			l.logger.Warn("erp5 exchange failed", "method", method, "path", path, "status", status, "link", next.String(), "err", msg)
			l.mu.Lock()
		}
	}
	l.mu.Unlock()
	if recovered > 0 {
		l.logger.Info("erp5 link recovered after " + strconv.Itoa(recovered) + " failures")
	}
	if returned && l.onReturn != nil {
		l.onReturn()
	}
	if changed && l.onChange != nil {
		l.onChange()
	}
}

func (l *link) setNextTry(t time.Time) {
	l.mu.Lock()
	l.st.NextTryAt = t
	l.mu.Unlock()
}

func (l *link) status() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

var digits = regexp.MustCompile(`[0-9]+`)

// errorKey is an error message with its numbers blanked, so that "batch of 12" and "batch of
// 13" count as the same error (logged once) while "HTTP 503" and "connection refused" don't.
func errorKey(msg string) string {
	return digits.ReplaceAllStringFunc(msg, func(s string) string {
		if len(s) == 3 && (s[0] == '4' || s[0] == '5') {
			return s // keep HTTP statuses apart
		}
		return "#"
	})
}
