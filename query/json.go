package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// MarshalJSON returns jIO's JSON tree of q: `{"type":"simple","key":K,"value":V}` with
// `"operator":OP` after the value only when an operator was written (a key-less leaf has
// `"key":""`), and `{"type":"complex","operator":OP,"query_list":[…]}`, without "operator"
// when it is empty. The nil query is `null`. The output is compact and does not escape HTML
// characters, so `<` stays `<`.
func MarshalJSON(q Query) ([]byte, error) {
	return appendJSON(nil, q), nil
}

// MarshalJSON implements json.Marshaler with jIO's tree.
func (q *Simple) MarshalJSON() ([]byte, error) { return appendJSON(nil, q), nil }

// MarshalJSON implements json.Marshaler with jIO's tree.
func (q *Complex) MarshalJSON() ([]byte, error) { return appendJSON(nil, q), nil }

func appendJSON(b []byte, q Query) []byte {
	switch q := q.(type) {
	case *Simple:
		if q == nil {
			return append(b, "null"...)
		}
		b = append(b, `{"type":"simple","key":`...)
		b = appendJSONString(b, q.Key)
		b = append(b, `,"value":`...)
		b = appendJSONString(b, q.Value)
		if q.Operator != "" {
			b = append(b, `,"operator":`...)
			b = appendJSONString(b, q.Operator)
		}
		return append(b, '}')
	case *Complex:
		if q == nil {
			return append(b, "null"...)
		}
		b = append(b, `{"type":"complex",`...)
		if q.Operator != "" {
			b = append(b, `"operator":`...)
			b = appendJSONString(b, q.Operator)
			b = append(b, ',')
		}
		b = append(b, `"query_list":[`...)
		for i, sub := range q.Queries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, sub)
		}
		return append(b, "]}"...)
	}
	return append(b, "null"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, and U+2028 and
// U+2029 are escaped so the output is also valid JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == 0x2028 || r == 0x2029:
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xF])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ParseJSON reads a query from JSON: a jIO tree as a client sends it, a JSON string (parsed
// as a query string with Parse) or null (the empty query, which matches everything; ParseJSON
// then returns nil).
//
// A tree is checked strictly: "type" is "simple" or "complex"; a leaf's "key" is a string
// (absent means ""), its "value" a string or a JSON number (kept as written: 10.0 stays
// "10.0"), its "operator" absent, "" or one of = != < <= > >=; a complex query's "operator" is
// absent or "" (meaning AND), "AND", "OR" or "NOT", and its "query_list" a non-empty array
// (exactly one query under NOT). Other members are ignored. Errors name the offending member by
// its path, e.g. `query_list[1].operator: unknown operator "XOR"`.
func ParseJSON(data []byte) (Query, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty query tree")
		}
		return nil, fmt.Errorf("decode query tree: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode query tree: data after the tree")
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return Parse(v)
	}
	return treeFromJSON(v, "", 0)
}

// TreeFromJSON converts a query tree already decoded from JSON (with json.Decoder.UseNumber,
// or without: float64 values are accepted and written in JavaScript's form) under the rules of
// ParseJSON; nil is the empty query.
func TreeFromJSON(v any) (Query, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return Parse(v)
	}
	return treeFromJSON(v, "", 0)
}

// treeError is a malformed member of a JSON tree.
func treeError(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return errors.New("query tree: " + msg)
	}
	return fmt.Errorf("query tree: %s: %s", path, msg)
}

func member(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func treeFromJSON(v any, path string, nest int) (Query, error) {
	if nest > MaxDepth {
		return nil, treeError(path, "nested too deeply")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, treeError(path, "want an object, got %s", jsonType(v))
	}
	typ, ok := obj["type"].(string)
	if !ok {
		if _, present := obj["type"]; !present {
			return nil, treeError(path, `missing "type"`)
		}
		return nil, treeError(member(path, "type"), "want a string, got %s", jsonType(obj["type"]))
	}
	switch typ {
	case "simple":
		s := &Simple{}
		if k, present := obj["key"]; present {
			key, ok := k.(string)
			if !ok {
				return nil, treeError(member(path, "key"), "want a string, got %s", jsonType(k))
			}
			s.Key = key
		}
		val, present := obj["value"]
		if !present {
			return nil, treeError(path, `missing "value"`)
		}
		switch val := val.(type) {
		case string:
			s.Value = val
		case json.Number:
			s.Value = val.String()
		case float64:
			s.Value = jsNumberString(val)
		default:
			return nil, treeError(member(path, "value"), "want a string or a number, got %s", jsonType(val))
		}
		if o, present := obj["operator"]; present {
			op, ok := o.(string)
			if !ok {
				return nil, treeError(member(path, "operator"), "want a string, got %s", jsonType(o))
			}
			switch op {
			case "", OpEQ, OpNE, OpLT, OpLE, OpGT, OpGE:
				s.Operator = op
			default:
				return nil, treeError(member(path, "operator"), "unknown operator %s", strconv.Quote(op))
			}
		}
		return s, nil
	case "complex":
		c := &Complex{}
		if o, present := obj["operator"]; present {
			op, ok := o.(string)
			if !ok {
				return nil, treeError(member(path, "operator"), "want a string, got %s", jsonType(o))
			}
			switch op {
			case "", "AND", "OR", "NOT":
				c.Operator = op
			default:
				return nil, treeError(member(path, "operator"), "unknown operator %s", strconv.Quote(op))
			}
		}
		l, present := obj["query_list"]
		if !present {
			return nil, treeError(path, `missing "query_list"`)
		}
		list, ok := l.([]any)
		if !ok {
			return nil, treeError(member(path, "query_list"), "want an array, got %s", jsonType(l))
		}
		if len(list) == 0 {
			return nil, treeError(member(path, "query_list"), "empty")
		}
		if c.Operator == "NOT" && len(list) != 1 {
			return nil, treeError(member(path, "query_list"), "NOT takes exactly one query, got %d", len(list))
		}
		c.Queries = make([]Query, len(list))
		for i, sub := range list {
			q, err := treeFromJSON(sub, fmt.Sprintf("%s[%d]", member(path, "query_list"), i), nest+1)
			if err != nil {
				return nil, err
			}
			c.Queries[i] = q
		}
		return c, nil
	}
	return nil, treeError(member(path, "type"), `want "simple" or "complex", got %s`, strconv.Quote(typ))
}

// jsonType names the JSON type of a decoded value, for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
