package lan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"sitesync.example/gateway"
)

// kind is the JSON shape a parameter must have.
type kind int

const (
	kindString      kind = iota + 1
	kindObject           // a JSON object
	kindBool             // true or false
	kindStringArray      // an array of strings
	kindSortOn           // [[key, direction], …]: an array of two-string arrays
	kindLimit            // [skip] or [skip, count]: an array of one or two numbers
)

// String describes the kind for an error message.
func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindObject:
		return "an object"
	case kindBool:
		return "true or false"
	case kindStringArray:
		return "an array of strings"
	case kindSortOn:
		return `an array of [key, "ascending"|"descending"] pairs`
	case kindLimit:
		return "an array of one or two numbers ([skip] or [skip, count])"
	}
	return "unknown"
}

type param struct {
	name     string
	kind     kind
	required bool
}

// methodParams lists every RPC method of docs/DESIGN.md §3 with the shape of its params. Members not
// listed are let through for the service to ignore; a null member counts as absent.
var methodParams = map[string][]param{
	gateway.MethodGet:    {{"id", kindString, true}},
	gateway.MethodPost:   {{"doc", kindObject, true}, {"key", kindString, false}},
	gateway.MethodPut:    {{"id", kindString, true}, {"doc", kindObject, true}, {"key", kindString, false}},
	gateway.MethodRemove: {{"id", kindString, true}, {"key", kindString, false}},
	gateway.MethodAction: {{"id", kindString, true}, {"transition", kindString, true}, {"comment", kindString, false}, {"key", kindString, false}},
	gateway.MethodAllDocs: {{"query", kindString, false}, {"sort_on", kindSortOn, false}, {"limit", kindLimit, false},
		{"select_list", kindStringArray, false}, {"include_docs", kindBool, false}},
	gateway.MethodSync:     {{"ids", kindStringArray, true}},
	gateway.MethodDescribe: {},
	gateway.MethodStatus:   {},
}

// Methods returns the RPC method names the server accepts, sorted.
func Methods() []string {
	names := make([]string, 0, len(methodParams))
	for m := range methodParams {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

// ValidateParams checks the JSON shape of a method's params: an object whose required
// members are present and whose known members have the right JSON types. Values are not
// judged (an unparsable query is the service's to refuse). The server sends a failure as
// -32602.
func ValidateParams(method string, params json.RawMessage) error {
	spec, ok := methodParams[method]
	if !ok {
		return fmt.Errorf("unknown method %q", method)
	}
	if len(bytes.TrimSpace(params)) == 0 {
		params = json.RawMessage("{}")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(params, &members); err != nil || members == nil {
		return fmt.Errorf("params must be an object")
	}
	for _, p := range spec {
		v, present := members[p.name]
		if !present || string(v) == "null" {
			if p.required {
				return fmt.Errorf("%q is required (%s)", p.name, p.kind)
			}
			continue
		}
		if !p.kind.matches(v) {
			return fmt.Errorf("%q must be %s", p.name, p.kind)
		}
	}
	return nil
}

// matches reports whether v has the kind's JSON shape.
func (k kind) matches(v json.RawMessage) bool {
	switch k {
	case kindString:
		return v[0] == '"'
	case kindObject:
		return v[0] == '{'
	case kindBool:
		return string(v) == "true" || string(v) == "false"
	case kindStringArray:
		var a []json.RawMessage
		if v[0] != '[' || json.Unmarshal(v, &a) != nil {
			return false
		}
		for _, e := range a {
			if e[0] != '"' {
				return false
			}
		}
		return true
	case kindSortOn:
		var a []json.RawMessage
		if v[0] != '[' || json.Unmarshal(v, &a) != nil {
			return false
		}
		for _, e := range a {
			var pair []json.RawMessage
			if e[0] != '[' || json.Unmarshal(e, &pair) != nil || len(pair) != 2 || pair[0][0] != '"' || pair[1][0] != '"' {
				return false
			}
		}
		return true
	case kindLimit:
		var a []json.RawMessage
		if v[0] != '[' || json.Unmarshal(v, &a) != nil || len(a) < 1 || len(a) > 2 {
			return false
		}
		for _, e := range a {
			if c := e[0]; c != '-' && (c < '0' || c > '9') {
				return false
			}
		}
		return true
	}
	return false
}
