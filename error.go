// Package gateway holds the site sync gateway's domain: documents, peers, requests and the
// error codes every adapter maps to its own wire format. It imports the standard library only.
package gateway

import (
	"errors"
	"fmt"
)

// Error codes. Each is one family of docs/DESIGN.md §3's `reason` words; adapters map a code to an
// HTTP-like status (Status) and callers branch on ErrorCode(err).
const (
	EINVALID      = "invalid"      // 400: a well-formed request whose value is wrong
	EUNAUTHORIZED = "unauthorized" // 401: no or bad token
	EFORBIDDEN    = "denied"       // 403: the policy said no
	ENOTFOUND     = "not_found"    // 404
	ECONFLICT     = "conflict"     // 409: write key reused, concurrent change, state conflict
	ETOOLARGE     = "too_large"    // 413
	ERATELIMITED  = "rate_limited" // 429
	EINTERNAL     = "internal"     // 500: a bug or an I/O failure; logged, never shown in detail
	EUNAVAILABLE  = "offline"      // 503: ERP5 is needed and the link is down
	ENOSPACE      = "disk_full"    // 507
)

// Error is a failure whose message is safe to show to a site user. Reason refines Code with a
// stable word a client may branch on (`key_reused` within ECONFLICT, say); Fields carries one
// message per document field for a form.
type Error struct {
	Code    string
	Reason  string
	Message string
	Fields  map[string]string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Reason != "" && e.Reason != e.Code {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ReasonErrorf returns an *Error with a code, a reason word that refines it, and a message.
func ReasonErrorf(code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, "" for nil and EINTERNAL for any
// other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorReason returns the reason word of the *Error in err's chain: its Reason, else its Code;
// EINTERNAL for any other error and "" for nil.
func ErrorReason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Reason != "" {
			return e.Reason
		}
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-safe message of the *Error in err's chain, or a generic text
// for any other error (whose details belong in the log, not in a browser).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Status returns the HTTP-like status number a jIO user knows for an error code.
func Status(code string) int {
	switch code {
	case EINVALID:
		return 400
	case EUNAUTHORIZED:
		return 401
	case EFORBIDDEN:
		return 403
	case ENOTFOUND:
		return 404
	case ECONFLICT:
		return 409
	case ETOOLARGE:
		return 413
	case ERATELIMITED:
		return 429
	case EUNAVAILABLE:
		return 503
	case ENOSPACE:
		return 507
	case "":
		return 200
	}
	return 500
}
