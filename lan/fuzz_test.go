package lan

import (
	"bytes"
	"encoding/json"
	"testing"

	"sitesync.example/gateway/lan/wire"
)

// FuzzParseRequest feeds the data channel's JSON-RPC decoder (a message, or each item of a
// batch, as handleText splits it): a request it accepts names a known method with params of
// the right shape and an id it can echo; anything else is one of the protocol errors; and
// the reply it makes is always valid JSON.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"get","params":{"id":"person_module/1"}}`,
		`{"jsonrpc":"2.0","id":"a\"b","method":"allDocs","params":{"query":"title:x","sort_on":[["title","ascending"]],"limit":[0,10],"select_list":["title"],"include_docs":true}}`,
		`{"jsonrpc":"2.0","method":"put","params":{"id":"x","doc":{"a":1},"key":"k"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"status"}`,
		`{"jsonrpc":"2.0","id":2,"method":"sync","params":{"ids":["a",1]}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"describe"},42,{"id":{}}]`,
		`{"jsonrpc":"1.0","id":3,"method":"get"}`,
		`{"jsonrpc":"2.0","id":4,"method":"get","params":"x"}`,
		`{"jsonrpc":"2.0","id":-1.5e3,"method":"action","params":{"id":"a","transition":"t","comment":null}}`,
		`{"jsonrpc":"2.0","id":5,"method":"allDocs","params":{"limit":[1,2,3]}}`,
		`{"jsonrpc":"2.0","id":6,"method":"post","params":{"doc":null}}`,
		"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"get\",\"params\":{\"id\":\"\xff\"}}",
		`{`, ``, `null`, `[]`, `[[[]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		items := []json.RawMessage{data}
		if d := bytes.TrimLeft(data, " \t\r\n"); len(d) > 0 && d[0] == '[' {
			if json.Unmarshal(d, &items) != nil {
				return
			}
		}
		for _, raw := range items {
			req, e := parseRequest(raw)
			if req.id != nil && !json.Valid(req.id) {
				t.Fatalf("id %q is not JSON", req.id)
			}
			if e != nil {
				switch e.Code {
				case wire.CodeParseError, wire.CodeInvalidRequest, wire.CodeMethodNotFound, wire.CodeInvalidParams:
				default:
					t.Fatalf("error code %d for %q", e.Code, raw)
				}
				if b := errorResponse(req.id, e); !json.Valid(b) {
					t.Fatalf("error reply is not JSON: %q", b)
				}
				continue
			}
			if _, ok := methodParams[req.method]; !ok {
				t.Fatalf("accepted unknown method %q", req.method)
			}
			if err := ValidateParams(req.method, req.params); err != nil {
				t.Fatalf("accepted params that do not validate: %v", err)
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(req.params, &obj); err != nil || obj == nil {
				t.Fatalf("accepted params that are not an object: %q", req.params)
			}
			if b := resultResponse(req.id, []byte(`{"ok":true}`)); !json.Valid(b) {
				t.Fatalf("result reply is not JSON: %q", b)
			}
		}
	})
}
