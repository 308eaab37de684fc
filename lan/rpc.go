package lan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/wire"
)

// request is a parsed JSON-RPC request. A notification (no id member) gets no reply.
type request struct {
	id     json.RawMessage
	notify bool
	method string
	params json.RawMessage
}

// envelope reads a request object's members without interpreting their values.
type envelope struct {
	JSONRPC json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// handleText handles one whole text message: a request or a batch. It runs on pion's read
// loop, so it only parses and queues.
func (c *conn) handleText(data []byte) {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		c.sendError(nil, &wire.Error{Code: wire.CodeParseError, Message: "parse error: empty message"})
		return
	}
	switch data[0] {
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			c.sendError(nil, &wire.Error{Code: wire.CodeParseError, Message: "parse error: " + jsonErrorText(err)})
			return
		}
		if len(items) == 0 {
			c.sendError(nil, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: empty batch"})
			return
		}
		b := &batch{c: c, replies: make([][]byte, len(items)), left: len(items)}
		for i, item := range items {
			c.start(item, func(reply []byte, worker bool) bool { return b.set(i, reply, worker) })
		}
	case '{':
		c.start(data, func(reply []byte, worker bool) bool {
			if reply == nil {
				return false
			}
			return c.out.enqueue(reply, worker, worker)
		})
	default:
		if json.Valid(data) {
			c.sendError(nil, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: a message must be a request object or a batch array"})
		} else {
			c.sendError(nil, &wire.Error{Code: wire.CodeParseError, Message: "parse error: " + jsonErrorText(json.Unmarshal(data, new(any)))})
		}
	}
}

// jsonErrorText describes a JSON syntax error for a reply.
func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("%s (at byte %d)", syntax.Error(), syntax.Offset)
	}
	if err == nil {
		return "not JSON"
	}
	return err.Error()
}

// start validates one request object and queues it. reply receives its response (nil for a
// notification); worker says whether it runs on a worker (which may wait for room in the
// send queue and must drain it when reply returns true) or on the read loop (which must
// not wait).
func (c *conn) start(raw json.RawMessage, reply func(resp []byte, worker bool) bool) {
	req, e := parseRequest(raw)
	if e != nil {
		// A well-formed notification gets no reply, not even an error (JSON-RPC 2.0 §4.1).
		if req.notify && (e.Code == wire.CodeMethodNotFound || e.Code == wire.CodeInvalidParams) {
			reply(nil, false)
			return
		}
		reply(errorResponse(req.id, e), false)
		return
	}
	ok := c.submit(isWrite(req.method), func() {
		resp := c.call(req)
		if req.notify {
			resp = nil
		}
		c.done()
		if reply(resp, true) {
			c.out.run()
		}
	})
	if !ok {
		var resp []byte
		if !req.notify {
			resp = errorResponse(req.id, &wire.Error{
				Code: wire.CodeApplication, Message: "too many requests in flight on this channel; wait for replies",
				Data: &wire.ErrorData{Status: gateway.Status(gateway.ERATELIMITED), Reason: gateway.ERATELIMITED},
			})
		}
		reply(resp, false)
	}
}

// parseRequest checks a request object (JSON-RPC 2.0 §4) and its params' shape. The request
// it returns carries the id whenever one could be read, for the error reply.
func parseRequest(raw json.RawMessage) (request, *wire.Error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return request{}, &wire.Error{Code: wire.CodeParseError, Message: "parse error: " + jsonErrorText(err)}
		}
		return request{}, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: not a request object"}
	}
	// json.RawMessage keeps a null member as "null": nil means the member is absent.
	req := request{notify: env.ID == nil}
	// An id must be a string, a number or null; anything else cannot be echoed.
	if env.ID != nil {
		switch env.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			req.id = env.ID
		case 'n':
			req.id = env.ID
		default:
			return request{}, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: id must be a string, a number or null"}
		}
	}
	if string(env.JSONRPC) != `"2.0"` {
		return req, &wire.Error{Code: wire.CodeInvalidRequest, Message: `invalid request: jsonrpc must be "2.0"`}
	}
	if len(env.Method) == 0 || env.Method[0] != '"' || json.Unmarshal(env.Method, &req.method) != nil {
		return req, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: method must be a string"}
	}
	if len(env.Params) > 0 && env.Params[0] != '{' && env.Params[0] != '[' && string(env.Params) != "null" {
		return req, &wire.Error{Code: wire.CodeInvalidRequest, Message: "invalid request: params must be an object or an array"}
	}
	if _, known := methodParams[req.method]; !known {
		return req, &wire.Error{Code: wire.CodeMethodNotFound, Message: "method not found: " + strconv.Quote(req.method)}
	}
	req.params = env.Params
	if len(req.params) == 0 || string(req.params) == "null" {
		req.params = json.RawMessage("{}")
	}
	if err := ValidateParams(req.method, req.params); err != nil {
		return req, &wire.Error{Code: wire.CodeInvalidParams, Message: "invalid params: " + err.Error()}
	}
	return req, nil
}

// call runs one request on the service and returns the encoded response.
func (c *conn) call(req request) (resp []byte) {
	defer func() {
		if p := recover(); p != nil {
			c.s.Logger.Error("rpc method panicked", "method", req.method, "peer", c.peer.Name, "panic", p, "stack", string(debug.Stack()))
			resp = errorResponse(req.id, applicationError(errors.New("panic")))
		}
	}()
	ctx, cancel := context.WithTimeout(gateway.NewContextWithActor(c.ctx, c.actor), c.s.RequestTimeout)
	defer cancel()
	result, err := c.s.service.Call(ctx, c.actor, req.method, req.params)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && gateway.ErrorCode(err) == gateway.EINTERNAL {
			err = gateway.ReasonErrorf(gateway.EUNAVAILABLE, "timeout", "the request took longer than %s", c.s.RequestTimeout)
		}
		if gateway.ErrorCode(err) == gateway.EINTERNAL && c.ctx.Err() == nil {
			c.s.Logger.Error("rpc method failed", "method", req.method, "peer", c.peer.Name, "err", err)
		}
		return errorResponse(req.id, applicationError(err))
	}
	b, err := marshalResult(result)
	if err != nil {
		c.s.Logger.Error("rpc result does not marshal", "method", req.method, "err", err)
		return errorResponse(req.id, applicationError(err))
	}
	if len(b) > c.s.MaxMessageSize {
		return errorResponse(req.id, tooLargeError(c.s.MaxMessageSize))
	}
	return resultResponse(req.id, b)
}

// marshalResult encodes a method's result; json.RawMessage and []byte of JSON pass as they
// are.
func marshalResult(v any) ([]byte, error) {
	switch r := v.(type) {
	case json.RawMessage:
		if len(r) == 0 {
			return []byte("null"), nil
		}
		return r, nil
	case nil:
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// resultResponse builds a success response around an already encoded result, without
// encoding it again.
func resultResponse(id, result []byte) []byte {
	if id == nil {
		id = []byte("null")
	}
	b := make([]byte, 0, len(result)+len(id)+32)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// errorResponse encodes an error response.
func errorResponse(id []byte, e *wire.Error) []byte {
	if id == nil {
		id = []byte("null")
	}
	b, _ := json.Marshal(wire.Response{JSONRPC: wire.Version, ID: id, Error: e})
	return b
}

// applicationError maps an error to a JSON-RPC application error: a *gateway.Error keeps its
// message, status, reason and fields; anything else is a 500 whose detail stays in the log.
func applicationError(err error) *wire.Error {
	var ge *gateway.Error
	if errors.As(err, &ge) {
		msg := ge.Message
		if msg == "" {
			msg = ge.Code
		}
		return &wire.Error{Code: wire.CodeApplication, Message: msg, Data: &wire.ErrorData{
			Status: gateway.Status(ge.Code), Reason: gateway.ErrorReason(ge), Fields: ge.Fields,
		}}
	}
	return &wire.Error{Code: wire.CodeApplication, Message: gateway.ErrorMessage(err), Data: &wire.ErrorData{
		Status: gateway.Status(gateway.EINTERNAL), Reason: gateway.EINTERNAL,
	}}
}

// tooLargeError is the error for a message over the size limit.
func tooLargeError(limit int) *wire.Error {
	return &wire.Error{Code: wire.CodeApplication, Message: fmt.Sprintf("the message is larger than %d bytes", limit),
		Data: &wire.ErrorData{Status: gateway.Status(gateway.ETOOLARGE), Reason: gateway.ETOOLARGE}}
}

// batch collects the replies of a batch request and sends them as one array once the last
// is in. Notifications leave no reply; a batch of notifications gets no message at all.
type batch struct {
	c       *conn
	mu      sync.Mutex
	replies [][]byte
	left    int
}

func (b *batch) set(i int, reply []byte, worker bool) bool {
	b.mu.Lock()
	b.replies[i] = reply
	b.left--
	last := b.left == 0
	b.mu.Unlock()
	if !last {
		return false
	}
	var out []byte
	for _, r := range b.replies {
		if r == nil {
			continue
		}
		if out == nil {
			out = append(out, '[')
		} else {
			out = append(out, ',')
		}
		out = append(out, r...)
	}
	if out == nil {
		return false
	}
	out = append(out, ']')
	return b.c.out.enqueue(out, worker, worker)
}

// isWrite reports whether a method changes documents; writes of one channel run in order.
func isWrite(method string) bool {
	switch method {
	case gateway.MethodPost, gateway.MethodPut, gateway.MethodRemove, gateway.MethodAction:
		return true
	}
	return false
}
