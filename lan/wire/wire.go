// Package wire holds the browser ↔ gateway wire formats of docs/DESIGN.md §3, shared by the gateway's
// LAN server and its Go client: signaling messages, JSON-RPC 2.0 envelopes and the binary
// fragments that carry messages over 64 KiB on the data channel.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// ChannelLabel is the label of the one data channel a client opens.
const ChannelLabel = "jio"

// Signaling message types.
const (
	TypeHello     = "hello"
	TypeWelcome   = "welcome"
	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypeError     = "error"
)

// Signaling error reasons.
const (
	ReasonUnauthorized = "unauthorized"
	ReasonRevoked      = "revoked"
	ReasonBadRequest   = "bad_request"
	ReasonBusy         = "busy"
)

// Signal is one WebSocket message of the signaling exchange. Fields a type does not use are
// left out when marshalled.
type Signal struct {
	Type string `json:"type"`
	// Token is the peer's token in a hello, and the newly issued one in a welcome under open
	// enrollment.
	Token string `json:"token,omitempty"`
	// Peer and Role name the authenticated peer in a welcome.
	Peer string `json:"peer,omitempty"`
	Role string `json:"role,omitempty"`
	// SDP is the session description of an offer or an answer.
	SDP string `json:"sdp,omitempty"`
	// Candidate is a trickled ICE candidate (RTCIceCandidateInit), accepted but not needed.
	Candidate json.RawMessage `json:"candidate,omitempty"`
	// Reason and Message describe an error.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// PairRequest is the body of POST /api/pair.
type PairRequest struct {
	Code string `json:"code"`
}

// PairResponse is the answer to a successful pairing.
type PairResponse struct {
	Peer  string `json:"peer"`
	Role  string `json:"role"`
	Token string `json:"token"`
}

// HTTPError is the JSON body of a failed HTTP request to the gateway (/api/pair).
type HTTPError struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Version is the jsonrpc member of every request and response.
const Version = "2.0"

// JSON-RPC error codes (docs/DESIGN.md §3).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeApplication    = -32000
)

// Request is a JSON-RPC request, or a notification when ID is absent.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is a JSON-RPC response: Result or Error. ID is null when the request's id could not
// be read.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Error is a JSON-RPC error object. Application errors (CodeApplication) carry Data.
type Error struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Data    *ErrorData `json:"data,omitempty"`
}

// ErrorData is the data of an application error: an HTTP-like status, a stable reason word
// and, for an invalid document, a message per field.
type ErrorData struct {
	Status int               `json:"status"`
	Reason string            `json:"reason"`
	Fields map[string]string `json:"fields,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	if e.Data != nil {
		return fmt.Sprintf("rpc error %d (%d %s): %s", e.Code, e.Data.Status, e.Data.Reason, e.Message)
	}
	return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message)
}

// Notification is a message from the gateway without an id.
type Notification struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Notification methods.
const (
	NotifyChanged = "changed"
	NotifyStatus  = "status"
)

// Changed is the params of a `changed` notification.
type Changed struct {
	IDs     []string          `json:"ids"`
	Renamed map[string]string `json:"renamed"`
}

// Fragment framing: messages longer than MaxFragmentPayload bytes travel as binary messages,
// each a FragmentHeaderSize-byte header (message number, fragment index, fragment count, all
// u32 big-endian) followed by at most MaxFragmentPayload bytes of the message's UTF-8 text.
// Chrome caps a data-channel message at 256 KiB and a large message holds up every other one
// on the association, so 64 KiB pieces keep small replies flowing beside a big one.
const (
	FragmentHeaderSize = 12
	MaxFragmentPayload = 64 << 10
)

// FragmentHeader is the header of one binary fragment.
type FragmentHeader struct {
	Message uint32 // the message number, per direction and channel
	Index   uint32 // 0-based
	Count   uint32 // fragments in the message, ≥ 1
}

// AppendFragment appends the fragment h with payload to dst.
func AppendFragment(dst []byte, h FragmentHeader, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Message)
	dst = binary.BigEndian.AppendUint32(dst, h.Index)
	dst = binary.BigEndian.AppendUint32(dst, h.Count)
	return append(dst, payload...)
}

// FragmentCount returns how many fragments a message of n bytes is split into.
func FragmentCount(n int) uint32 {
	return uint32((n + MaxFragmentPayload - 1) / MaxFragmentPayload)
}

// Fragment returns the i-th fragment of msg under message number num.
func Fragment(num uint32, msg []byte, i uint32) []byte {
	start := int(i) * MaxFragmentPayload
	end := min(start+MaxFragmentPayload, len(msg))
	buf := make([]byte, 0, FragmentHeaderSize+end-start)
	return AppendFragment(buf, FragmentHeader{Message: num, Index: i, Count: FragmentCount(len(msg))}, msg[start:end])
}

// ErrBadFragment is wrapped by every error about a malformed or unexpected fragment.
var ErrBadFragment = errors.New("bad fragment")

// ErrMessageTooLarge is wrapped when a reassembled message would exceed the receiver's limit.
var ErrMessageTooLarge = errors.New("message too large")

// ParseFragment splits a binary message into its header and payload.
func ParseFragment(b []byte) (FragmentHeader, []byte, error) {
	if len(b) < FragmentHeaderSize {
		return FragmentHeader{}, nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrBadFragment, len(b), FragmentHeaderSize)
	}
	h := FragmentHeader{
		Message: binary.BigEndian.Uint32(b[0:4]),
		Index:   binary.BigEndian.Uint32(b[4:8]),
		Count:   binary.BigEndian.Uint32(b[8:12]),
	}
	p := b[FragmentHeaderSize:]
	switch {
	case h.Count == 0:
		return h, nil, fmt.Errorf("%w: message %d has a fragment count of 0", ErrBadFragment, h.Message)
	case h.Index >= h.Count:
		return h, nil, fmt.Errorf("%w: message %d: fragment index %d is not below the count %d", ErrBadFragment, h.Message, h.Index, h.Count)
	case len(p) == 0:
		return h, nil, fmt.Errorf("%w: message %d: fragment %d is empty", ErrBadFragment, h.Message, h.Index)
	case len(p) > MaxFragmentPayload:
		return h, nil, fmt.Errorf("%w: message %d: fragment %d carries %d bytes, more than %d", ErrBadFragment, h.Message, h.Index, len(p), MaxFragmentPayload)
	}
	return h, p, nil
}

// FragmentError is a fragment the Reassembler refused. It names the message that was dropped
// and keeps that message's first fragment when it had arrived, so that the receiver can still
// find the request's id there (see PeekID) and answer it.
type FragmentError struct {
	Message uint32
	First   []byte // payload of fragment 0, or nil
	Err     error
}

// Error implements error.
func (e *FragmentError) Error() string { return e.Err.Error() }

// Unwrap returns ErrBadFragment or ErrMessageTooLarge, wrapped.
func (e *FragmentError) Unwrap() error { return e.Err }

// PeekID returns the "id" member of a JSON-RPC request from the start of its text, when it
// comes before anything that cannot be read (clients write jsonrpc, id and method before
// params); nil otherwise.
func PeekID(prefix []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if key == "id" {
			switch v[0] {
			case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				return v
			}
			return nil
		}
	}
	return nil
}

// Reassembler rebuilds fragmented messages received on one channel. Fragments of several
// messages may interleave and may arrive in any order. It is not safe for concurrent use.
type Reassembler struct {
	// MaxMessageSize bounds a reassembled message, in bytes.
	MaxMessageSize int
	// MaxPartial bounds the messages being reassembled at once.
	MaxPartial int

	partial map[uint32]*partialMessage
	// dropped holds the numbers of the latest messages refused, oldest first, so that their
	// remaining fragments are ignored rather than starting a message that never completes
	// and holds a MaxPartial slot for good.
	dropped []uint32
}

// maxDropped bounds Reassembler.dropped: a sender numbers its messages in order, so only the
// latest refusals can still have fragments on the way.
const maxDropped = 64

type partialMessage struct {
	count    uint32
	parts    map[uint32][]byte
	received int // bytes so far
}

// Add takes one binary message. It returns the whole message once its last fragment arrives,
// and nil before. A fragment that is malformed, contradicts earlier ones of its message,
// would push the message past MaxMessageSize or would start one partial message too many is
// a *FragmentError (wrapping ErrBadFragment or ErrMessageTooLarge) and drops its message;
// the well-formed fragments of a dropped message that follow are ignored (nil, nil).
func (r *Reassembler) Add(b []byte) ([]byte, error) {
	h, p, err := ParseFragment(b)
	if err != nil {
		if len(b) >= FragmentHeaderSize {
			return nil, r.fail(h.Message, nil, err)
		}
		return nil, &FragmentError{Err: err}
	}
	if r.partial == nil {
		r.partial = make(map[uint32]*partialMessage)
	}
	if h.Index != 0 && r.partial[h.Message] == nil && r.wasDropped(h.Message) {
		// The rest of a message already refused (and answered): nothing to do.
		return nil, nil
	}
	first := p
	if h.Index != 0 {
		first = nil
	}
	if uint64(h.Count) > uint64(r.MaxMessageSize) {
		// Each fragment carries at least one byte.
		return nil, r.fail(h.Message, first, fmt.Errorf("%w: message %d announces %d fragments", ErrMessageTooLarge, h.Message, h.Count))
	}
	m := r.partial[h.Message]
	if m == nil {
		if h.Count == 1 {
			if len(p) > r.MaxMessageSize {
				return nil, r.fail(h.Message, p, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(p), r.MaxMessageSize))
			}
			return append([]byte(nil), p...), nil
		}
		if len(r.partial) >= max(r.MaxPartial, 1) {
			r.drop(h.Message)
			return nil, &FragmentError{Message: h.Message, First: first, Err: fmt.Errorf("%w: message %d would be more than %d messages in reassembly at once", ErrBadFragment, h.Message, r.MaxPartial)}
		}
		m = &partialMessage{count: h.Count, parts: make(map[uint32][]byte)}
		r.partial[h.Message] = m
	}
	if h.Count != m.count {
		return nil, r.fail(h.Message, first, fmt.Errorf("%w: message %d: fragment %d says %d fragments, an earlier one %d", ErrBadFragment, h.Message, h.Index, h.Count, m.count))
	}
	if _, dup := m.parts[h.Index]; dup {
		return nil, r.fail(h.Message, nil, fmt.Errorf("%w: message %d: fragment %d arrived twice", ErrBadFragment, h.Message, h.Index))
	}
	if m.received+len(p) > r.MaxMessageSize {
		return nil, r.fail(h.Message, first, fmt.Errorf("%w: message %d is over %d bytes", ErrMessageTooLarge, h.Message, r.MaxMessageSize))
	}
	m.parts[h.Index] = append([]byte(nil), p...)
	m.received += len(p)
	if uint32(len(m.parts)) < m.count {
		return nil, nil
	}
	msg := make([]byte, 0, m.received)
	for i := uint32(0); i < m.count; i++ {
		msg = append(msg, m.parts[i]...)
	}
	delete(r.partial, h.Message)
	return msg, nil
}

// fail drops message num and returns the error, with the message's first fragment.
func (r *Reassembler) fail(num uint32, first []byte, err error) *FragmentError {
	if m := r.partial[num]; m != nil {
		if f, ok := m.parts[0]; ok {
			first = f
		}
		delete(r.partial, num)
	}
	r.drop(num)
	return &FragmentError{Message: num, First: first, Err: err}
}

// drop remembers that message num was refused.
func (r *Reassembler) drop(num uint32) {
	if len(r.dropped) >= maxDropped {
		r.dropped = append(r.dropped[:0], r.dropped[1:]...)
	}
	r.dropped = append(r.dropped, num)
}

// wasDropped reports whether message num was refused lately.
func (r *Reassembler) wasDropped(num uint32) bool {
	for _, d := range r.dropped {
		if d == num {
			return true
		}
	}
	return false
}

// Partial returns the number of messages being reassembled.
func (r *Reassembler) Partial() int { return len(r.partial) }
