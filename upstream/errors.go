package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrOffline means ERP5 could not be reached: the link is down or the request never left.
	ErrOffline = errors.New("erp5 unreachable")
	// ErrNotSent marks a failure before the whole request was handed to the network: ERP5
	// cannot have acted on it.
	ErrNotSent = errors.New("request not sent")
	// ErrNoResponse marks a request that was sent but got no complete response (a cut, a
	// timeout): ERP5 may or may not have applied it.
	ErrNoResponse = errors.New("no complete response")
	// ErrBadResponse is a 2xx whose body does not parse: the outcome is unknown.
	ErrBadResponse = errors.New("unparseable response")
	// ErrNoLocation is a 201 without X-Location: something was created, but which is unknown.
	ErrNoLocation = errors.New("201 without X-Location")
	// ErrStalled marks a request abandoned because no byte moved for the stall window (the
	// link went silent): the link is down, though the request's deadline was far.
	ErrStalled = errors.New("transfer stalled")
	// ErrNoReceiver means the capability URL answered 404 twice in a row: stock ERP5.
	ErrNoReceiver = errors.New("no batch receiver")
	// ErrNotEditable is a stock put naming a field the document's form does not let the user
	// edit (or a document without _actions.put): ERP5 would refuse or ignore it.
	ErrNotEditable = errors.New("not editable through the stock interface")
)

// MaxRetryAfter caps a server's Retry-After: a front end asking for a day would otherwise
// park the outbox past any operator's patience.
const MaxRetryAfter = time.Hour

// HTTPError is an answer from ERP5 (or its front end) with a status other than success.
// RetryAfter is the parsed Retry-After header (clamped to MaxRetryAfter), 0 when absent; Err
// carries ERP5's message when the body had one.
type HTTPError struct {
	Status     int
	RetryAfter time.Duration
	Err        error
}

// Error implements error: "HTTP 503 (Retry-After 300s): message".
func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (Retry-After %s)", e.RetryAfter.Round(time.Second))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the detail error.
func (e *HTTPError) Unwrap() error { return e.Err }

// Retryable reports whether the same request may succeed later without change: 401 (after
// the credentials are fixed), 408, 413 (split), 429 and 5xx.
func (e *HTTPError) Retryable() bool {
	o := classifyStatus(e.Status)
	return o != OutcomeDead && o != OutcomeOK
}

// Outcome is what a send's result means for the entries it carried (docs/DESIGN.md §7).
type Outcome int

// Outcomes.
const (
	OutcomeUnknown      Outcome = iota
	OutcomeOK                   // 2xx with a parseable body: settle from it
	OutcomeDead                 // ERP5 refused the write: dead with the reason
	OutcomeDeferred             // transient: retry later (a sent entry stays possibly applied)
	OutcomeUnauthorized         // 401: deferred, and an alarm about the credentials
	OutcomeTooLarge             // 413: deferred, and the batch is split
	OutcomeUncertain            // no complete or no parseable response: ask before resending
)

var outcomeNames = [...]string{"unknown", "ok", "dead", "deferred", "unauthorized", "too_large", "uncertain"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Classify maps the error of one stock write or batch send to its outcome: nil is OK;
// HTTP 400, 403, 404, 409, 410 and 422 are dead; 401 unauthorized; 413 too large; 408, 429,
// 5xx and any other status deferred; a failure before the request was sent deferred; a cut,
// timeout, unparseable 2xx or 201 without X-Location uncertain. A cancelled ctx of the caller
// is uncertain too when the request may have left.
func Classify(err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return classifyStatus(he.Status)
	}
	switch {
	case errors.Is(err, ErrNotSent):
		return OutcomeDeferred
	case errors.Is(err, ErrNotEditable):
		return OutcomeDead
	case errors.Is(err, ErrNoResponse), errors.Is(err, ErrBadResponse), errors.Is(err, ErrNoLocation):
		return OutcomeUncertain
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeUncertain
	}
	return OutcomeUncertain
}

func classifyStatus(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return OutcomeOK
	case status == http.StatusUnauthorized:
		return OutcomeUnauthorized
	case status == http.StatusRequestEntityTooLarge:
		return OutcomeTooLarge
	case status == http.StatusBadRequest, status == http.StatusForbidden, status == http.StatusNotFound,
		status == http.StatusConflict, status == http.StatusGone, status == http.StatusUnprocessableEntity:
		return OutcomeDead
	}
	// 408, 429, 5xx and anything unexpected (405, 406 from a misconfigured front end): only
	// ERP5 can reject an entry, so the uplink retries rather than guess.
	return OutcomeDeferred
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date (RFC 9110
// §10.2.3), relative to now, clamped to [0, MaxRetryAfter].
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return clampRetryAfter(d)
}

func clampRetryAfter(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	if d > MaxRetryAfter {
		return MaxRetryAfter
	}
	return d
}
