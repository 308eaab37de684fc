package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
)

// badInputRole and badInputSchema extend the example policy for the bad-input catalogue: a
// role without rate limits over a portal type whose schema uses every kind of rule.
const (
	badInputRole = `  tester:
    read:
      scope: 'portal_type:("Person" OR "Gadget" OR "Sale Order" OR "Sale Order Line" OR "Product")'
      fields: "*"
    rules:
      - name: everything
        effect: allow
        methods: "*"
        portal_types: [Person, Gadget, Product, Sale Order, Sale Order Line]
        write: "*"
        transitions: "*"
    limits: {max_limit: 100, max_doc_bytes: 65536, rate: 0, max_concurrent_queries: 4}
`
	badInputSchema = `  Gadget:
    fields:
      title: {type: string, required: true, max_length: 10, pattern: '^[A-Z]'}
      count: {type: integer}
      weight: {type: number}
      active: {type: boolean}
      made: {type: date}
      tags: {type: list, max_length: 5, enum: [red, green, blue]}
      code: {type: list, pattern: '^[a-z]+$'}
      color: {type: string, enum: [red, green]}
    checks:
      - {name: weight_positive, expr: '!has(doc.weight) || doc.weight > 0', message: "the weight must be positive"}
`
)

// badInputPolicy writes the example policy with badInputRole and badInputSchema added.
func badInputPolicy(tb testing.TB) string {
	tb.Helper()
	text := string(gateway.ExamplePolicy)
	for _, ins := range []struct{ after, add string }{{"\nroles:\n", badInputRole}, {"\nschemas:\n", badInputSchema}} {
		i := strings.Index(text, ins.after)
		if i < 0 {
			tb.Fatalf("the example policy has no %q", ins.after)
		}
		i += len(ins.after)
		text = text[:i] + ins.add + text[i:]
	}
	path := filepath.Join(tb.TempDir(), "policy.yaml")
	relWriteFile(tb, path, text)
	return path
}

// badCase is one malformed or hostile message and the structured reply it must get.
type badCase struct {
	name string
	// text is sent as one text message (fragmented by the client when over 64 KiB); #ID#
	// stands for the case's request id.
	text string
	// frames are sent as binary messages instead, in order.
	frames [][]byte
	// id is the reply's id as JSON: "" means the case's own id.
	id     string
	code   int
	status int    // application errors
	reason string // application errors
	fields []string
	// message, when set, must appear in the error message.
	message string
}

// rpcReq returns a request text with the case id placeholder.
func rpcReq(method, params string) string {
	return `{"jsonrpc":"2.0","id":#ID#,"method":"` + method + `","params":` + params + `}`
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func nested(open, leaf, close string, n int) string {
	return strings.Repeat(open, n) + leaf + strings.Repeat(close, n)
}

// frag makes one binary fragment.
func frag(num, index, count uint32, payload string) []byte {
	return wire.AppendFragment(nil, wire.FragmentHeader{Message: num, Index: index, Count: count}, []byte(payload))
}

// badCases returns the catalogue, with person, gadget and order existing documents.
func badCases(person, gadget string) []badCase {
	const (
		parse   = wire.CodeParseError
		invalid = wire.CodeInvalidRequest
		unknown = wire.CodeMethodNotFound
		params  = wire.CodeInvalidParams
		app     = wire.CodeApplication
	)
	get := func(id string) string { return rpcReq("get", `{"id":`+jsonString(id)+`}`) }
	post := func(doc string) string { return rpcReq("post", `{"doc":`+doc+`}`) }
	gadgetPost := func(fields string) string {
		return post(`{"portal_type":"Gadget","title":"Gizmo"` + fields + `}`)
	}
	allDocs := func(p string) string { return rpcReq("allDocs", p) }
	return []badCase{
		// Malformed JSON: -32700 with a null id (the id cannot be read).
		{name: "TruncatedObject", text: `{"jsonrpc":"2.0","id":#ID#,"method":"get",`, id: "null", code: parse},
		{name: "Garbage", text: `GET / HTTP/1.1`, id: "null", code: parse},
		{name: "Empty", text: ``, id: "null", code: parse},
		{name: "Whitespace", text: " \t\r\n ", id: "null", code: parse},
		{name: "OpenBracket", text: `[`, id: "null", code: parse},
		{name: "TrailingBrace", text: get(person) + `}`, id: "null", code: parse},
		{name: "TwoObjects", text: get(person) + get(person), id: "null", code: parse},
		{name: "NaN", text: rpcReq("get", `{"id":NaN}`), id: "null", code: parse},
		{name: "SingleQuotes", text: `{'jsonrpc':'2.0','id':#ID#,'method':'get'}`, id: "null", code: parse},
		{name: "UnterminatedString", text: `{"jsonrpc":"2.0","id":#ID#,"method":"get","params":{"id":"abc}}`, id: "null", code: parse},
		{name: "BadEscape", text: rpcReq("get", `{"id":"\x"}`), id: "null", code: parse},
		{name: "ControlCharInString", text: rpcReq("get", "{\"id\":\"a\x01b\"}"), id: "null", code: parse},
		{name: "NestedTooDeep", text: rpcReq("get", `{"id":"x","deep":`+nested(`[`, `1`, `]`, 20000)+`}`), id: "null", code: parse},

		// Wrong JSON-RPC shapes: -32600.
		{name: "Number", text: `42`, id: "null", code: invalid},
		{name: "String", text: `"get"`, id: "null", code: invalid},
		{name: "Null", text: `null`, id: "null", code: invalid},
		{name: "True", text: `true`, id: "null", code: invalid},
		{name: "EmptyBatch", text: `[]`, id: "null", code: invalid},
		{name: "NoVersion", text: `{"id":#ID#,"method":"get","params":{"id":"a"}}`, code: invalid},
		{name: "OldVersion", text: `{"jsonrpc":"1.0","id":#ID#,"method":"get","params":{"id":"a"}}`, code: invalid},
		{name: "VersionNumber", text: `{"jsonrpc":2.0,"id":#ID#,"method":"get","params":{"id":"a"}}`, code: invalid},
		{name: "NoMethod", text: `{"jsonrpc":"2.0","id":#ID#,"params":{"id":"a"}}`, code: invalid},
		{name: "MethodNumber", text: `{"jsonrpc":"2.0","id":#ID#,"method":1}`, code: invalid},
		{name: "MethodNull", text: `{"jsonrpc":"2.0","id":#ID#,"method":null}`, code: invalid},
		{name: "IDObject", text: `{"jsonrpc":"2.0","id":{"$ne":1},"method":"get","params":{"id":"a"}}`, id: "null", code: invalid},
		{name: "IDArray", text: `{"jsonrpc":"2.0","id":[1],"method":"get","params":{"id":"a"}}`, id: "null", code: invalid},
		{name: "IDBool", text: `{"jsonrpc":"2.0","id":true,"method":"get","params":{"id":"a"}}`, id: "null", code: invalid},
		{name: "ParamsString", text: rpcReq("get", `"a"`), code: invalid},
		{name: "ParamsNumber", text: rpcReq("get", `7`), code: invalid},

		// Unknown methods: -32601.
		{name: "UnknownMethod", text: rpcReq("drop", `{}`), code: unknown},
		{name: "MethodCase", text: rpcReq("GET", `{"id":"a"}`), code: unknown},
		{name: "MethodProto", text: rpcReq("__proto__", `{}`), code: unknown},
		{name: "MethodTrailingSpace", text: rpcReq("get ", `{"id":"a"}`), code: unknown},
		{name: "MethodRPCDiscover", text: rpcReq("rpc.discover", `{}`), code: unknown},
		{name: "MethodSQL", text: rpcReq("get'; DROP TABLE documents; --", `{}`), code: unknown},

		// Params of the wrong JSON type or shape: -32602.
		{name: "GetIDNumber", text: rpcReq("get", `{"id":12}`), code: params},
		{name: "GetIDMissing", text: rpcReq("get", `{}`), code: params},
		{name: "GetIDNull", text: rpcReq("get", `{"id":null}`), code: params},
		{name: "GetParamsArray", text: rpcReq("get", `["a"]`), code: params},
		{name: "PutDocString", text: rpcReq("put", `{"id":`+jsonString(person)+`,"doc":"{}"}`), code: params},
		{name: "PostDocArray", text: rpcReq("post", `{"doc":[{"portal_type":"Person"}]}`), code: params},
		{name: "PostKeyNumber", text: rpcReq("post", `{"doc":{"portal_type":"Person","title":"x"},"key":1}`), code: params},
		{name: "ActionNoTransition", text: rpcReq("action", `{"id":`+jsonString(person)+`}`), code: params},
		{name: "LimitString", text: allDocs(`{"limit":"10"}`), code: params},
		{name: "LimitThree", text: allDocs(`{"limit":[1,2,3]}`), code: params},
		{name: "SortOnFlat", text: allDocs(`{"sort_on":["title","ascending"]}`), code: params},
		{name: "IncludeDocsString", text: allDocs(`{"include_docs":"yes"}`), code: params},
		{name: "QueryObject", text: allDocs(`{"query":{"type":"simple","key":"title"}}`), code: params},
		{name: "SyncIDsNumbers", text: rpcReq("sync", `{"ids":[1,2]}`), code: params},
		{name: "SelectListNested", text: allDocs(`{"select_list":[["title"]]}`), code: params},

		// Well-formed values that are wrong: application errors.
		{name: "LimitNegative", text: allDocs(`{"limit":[-1,5]}`), code: app, status: 400, reason: "invalid"},
		{name: "LimitHuge", text: allDocs(`{"limit":[0,1e12]}`), code: app, status: 400, reason: "invalid"},
		{name: "SortWord", text: allDocs(`{"sort_on":[["title","sideways"]]}`), code: app, status: 400, reason: "invalid"},
		{name: "KeyTooLong", text: rpcReq("post", `{"doc":{"portal_type":"Person","title":"x"},"key":"`+strings.Repeat("k", 300)+`"}`), code: app, status: 400, reason: "invalid"},
		{name: "SyncTooManyIDs", text: rpcReq("sync", `{"ids":[`+strings.TrimSuffix(strings.Repeat(`"a",`, 1001), ",")+`]}`), code: app, status: 413, reason: "too_large"},

		// Query strings built to break the parser: 400 invalid or 413, never a crash.
		{name: "QueryUnclosedParen", text: allDocs(`{"query":"title:(\"a\""}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryUnclosedQuote", text: allDocs(`{"query":"title:\"abc"}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryDeepParens", text: allDocs(`{"query":` + jsonString(nested("(", `title:"x"`, ")", 5000)) + `}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryTooManyTerms", text: allDocs(`{"query":` + jsonString(strings.Repeat(`title:"x" OR `, 10000)+`title:"y"`) + `}`), code: app, status: 413, reason: "too_large"},
		{name: "QueryDanglingOperator", text: allDocs(`{"query":"title:\"a\" AND"}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryOnlyOperator", text: allDocs(`{"query":"OR"}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryDoubleOperator", text: allDocs(`{"query":"title:\"a\" AND AND title:\"b\""}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryComparisonNoValue", text: allDocs(`{"query":"title:>="}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryEmptyKey", text: allDocs(`{"query":":\"x\""}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryCloseParen", text: allDocs(`{"query":")"}`), code: app, status: 400, reason: "invalid"},
		{name: "QueryOperatorBeforeParen", text: allDocs(`{"query":"title:(\"a\" OR)"}`), code: app, status: 400, reason: "invalid"},

		// Documents violating every kind of schema rule: 400 invalid naming the field.
		{name: "SchemaRequiredMissing", text: post(`{"portal_type":"Gadget"}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaRequiredNull", text: post(`{"portal_type":"Gadget","title":null}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaRequiredEmpty", text: post(`{"portal_type":"Gadget","title":""}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaMaxLength", text: post(`{"portal_type":"Gadget","title":"Abcdefghijk"}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaPattern", text: post(`{"portal_type":"Gadget","title":"lowercase"}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaStringType", text: post(`{"portal_type":"Gadget","title":42}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaIntegerFraction", text: gadgetPost(`,"count":1.5`), code: app, status: 400, reason: "invalid", fields: []string{"count"}},
		{name: "SchemaIntegerString", text: gadgetPost(`,"count":"3"`), code: app, status: 400, reason: "invalid", fields: []string{"count"}},
		{name: "SchemaNumberString", text: gadgetPost(`,"weight":"heavy"`), code: app, status: 400, reason: "invalid", fields: []string{"weight"}},
		{name: "SchemaBoolean", text: gadgetPost(`,"active":"yes"`), code: app, status: 400, reason: "invalid", fields: []string{"active"}},
		{name: "SchemaDate", text: gadgetPost(`,"made":"yesterday"`), code: app, status: 400, reason: "invalid", fields: []string{"made"}},
		{name: "SchemaDateImpossible", text: gadgetPost(`,"made":"2024-13-45"`), code: app, status: 400, reason: "invalid", fields: []string{"made"}},
		{name: "SchemaListNotList", text: gadgetPost(`,"tags":"red"`), code: app, status: 400, reason: "invalid", fields: []string{"tags"}},
		{name: "SchemaListEnum", text: gadgetPost(`,"tags":["red","pink"]`), code: app, status: 400, reason: "invalid", fields: []string{"tags"}},
		{name: "SchemaListElementType", text: gadgetPost(`,"tags":[1]`), code: app, status: 400, reason: "invalid", fields: []string{"tags"}},
		{name: "SchemaListElementLength", text: gadgetPost(`,"tags":["greenish"]`), code: app, status: 400, reason: "invalid", fields: []string{"tags"}},
		{name: "SchemaListPattern", text: gadgetPost(`,"code":["abc","ABC"]`), code: app, status: 400, reason: "invalid", fields: []string{"code"}},
		{name: "SchemaEnum", text: gadgetPost(`,"color":"purple"`), code: app, status: 400, reason: "invalid", fields: []string{"color"}},
		{name: "SchemaCheck", text: gadgetPost(`,"weight":-1`), code: app, status: 400, reason: "invalid", message: "the weight must be positive"},
		{name: "SchemaSeveralAtOnce", text: post(`{"portal_type":"Gadget","title":"x","count":"1","color":"pink"}`), code: app, status: 400, reason: "invalid", fields: []string{"title", "count", "color"}},
		{name: "SchemaPutClearsRequired", text: rpcReq("put", `{"id":`+jsonString(gadget)+`,"doc":{"title":null}}`), code: app, status: 400, reason: "invalid", fields: []string{"title"}},
		{name: "SchemaPutBreaksEnum", text: rpcReq("put", `{"id":`+jsonString(gadget)+`,"doc":{"color":"blue"}}`), code: app, status: 400, reason: "invalid", fields: []string{"color"}},
		{name: "ExamplePersonEmail", text: post(`{"portal_type":"Person","title":"x","default_email_text":"not an email"}`), code: app, status: 400, reason: "invalid", fields: []string{"default_email_text"}},
		{name: "ExampleOrderDestination", text: post(`{"portal_type":"Sale Order","destination":"../../etc/passwd"}`), code: app, status: 400, reason: "invalid", fields: []string{"destination"}},
		{name: "ExampleOrderDates", text: post(`{"portal_type":"Sale Order","destination":"organisation_module/1","start_date":"2025-02-01","stop_date":"2025-01-01"}`), code: app, status: 400, reason: "invalid", message: "the delivery date is before the order date"},
		{name: "ExampleLineQuantity", text: post(`{"portal_type":"Sale Order Line","resource":"product_module/1","quantity":0}`), code: app, status: 400, reason: "invalid", message: "the quantity must be more than zero"},
		{name: "NoPortalType", text: post(`{"title":"untyped"}`), code: app, status: 400, reason: "invalid"},
		{name: "PortalTypeNotString", text: post(`{"portal_type":["Person"],"title":"x"}`), code: app, status: 400, reason: "invalid"},
		{name: "PortalTypeChange", text: rpcReq("put", `{"id":`+jsonString(person)+`,"doc":{"portal_type":"Gadget"}}`), code: app, status: 400, reason: "invalid"},
		{name: "TypeWithoutRule", text: post(`{"portal_type":"Nuclear Reactor","title":"x"}`), code: app, status: 403, reason: "type_not_allowed"},
		{name: "DocTooLarge", text: post(`{"portal_type":"Person","title":"x","notes":"` + strings.Repeat("n", 70000) + `"}`), code: app, status: 413, reason: "too_large"},
		{name: "DocNestedDeep", text: post(`{"portal_type":"Person","title":"x","n":` + nested(`{"a":`, `1`, `}`, 2000) + `}`), code: app, status: 400, reason: "invalid"},
		{name: "DocNestedArrays", text: post(`{"portal_type":"Person","title":"x","n":` + nested(`[`, ``, `]`, 1500) + `}`), code: app, status: 400, reason: "invalid"},
		{name: "PatchNestedDeep", text: rpcReq("put", `{"id":`+jsonString(person)+`,"doc":{"n":`+nested(`[`, ``, `]`, 1200)+`}}`), code: app, status: 400, reason: "invalid"},
		{name: "DocDuplicateMember", text: post(`{"portal_type":"Person","title":"x","title":"y"}`), code: app, status: 400, reason: "invalid"},
		{name: "DocInvalidUTF8", text: post("{\"portal_type\":\"Person\",\"title\":\"\xff\xfe\"}"), code: app, status: 400, reason: "invalid"},
		{name: "DocOverlongUTF8", text: post("{\"portal_type\":\"Person\",\"title\":\"\xc0\xaf\"}"), code: app, status: 400, reason: "invalid"},
		{name: "DocSurrogateUTF8", text: post("{\"portal_type\":\"Person\",\"title\":\"\xed\xa0\x80\"}"), code: app, status: 400, reason: "invalid"},
		{name: "ParentPathTrick", text: post(`{"portal_type":"Sale Order Line","parent_relative_url":"sale_order_module/../x","resource":"product_module/1","quantity":1}`), code: app, status: 400, reason: "invalid"},

		// Ids with path tricks: 400 invalid, for every method that takes one.
		{name: "IDDotDot", text: get("../etc/passwd"), code: app, status: 400, reason: "invalid"},
		{name: "IDInnerDotDot", text: get("person_module/../peers"), code: app, status: 400, reason: "invalid"},
		{name: "IDDot", text: get("person_module/."), code: app, status: 400, reason: "invalid"},
		{name: "IDEncodedSlash", text: get("person_module%2F1"), code: app, status: 400, reason: "invalid"},
		{name: "IDEncodedDotDot", text: get("%2e%2e/%2e%2e/etc"), code: app, status: 400, reason: "invalid"},
		{name: "IDRawNUL", text: rpcReq("get", "{\"id\":\"person_module/1\x00\"}"), id: "null", code: parse},
		{name: "IDEscapedNUL", text: rpcReq("get", `{"id":"person_module/1\u0000"}`), code: app, status: 400, reason: "invalid"},
		{name: "IDEmpty", text: get(""), code: app, status: 400, reason: "invalid"},
		{name: "IDLeadingSlash", text: get("/person_module/1"), code: app, status: 400, reason: "invalid"},
		{name: "IDDoubleSlash", text: get("person_module//1"), code: app, status: 400, reason: "invalid"},
		{name: "IDBackslash", text: get(`person_module\1`), code: app, status: 400, reason: "invalid"},
		{name: "IDTooLong", text: get("person_module/" + strings.Repeat("9", 300)), code: app, status: 400, reason: "invalid"},
		{name: "IDUnicode", text: get("person_module/café"), code: app, status: 400, reason: "invalid"},
		{name: "IDQueryString", text: get("person_module/1?view=raw"), code: app, status: 400, reason: "invalid"},
		{name: "IDInvalidUTF8", text: rpcReq("get", "{\"id\":\"person_module/\xff\"}"), code: app, status: 400, reason: "invalid"},
		{name: "PutPathTrick", text: rpcReq("put", `{"id":"../`+person+`","doc":{"title":"x"}}`), code: app, status: 400, reason: "invalid"},
		{name: "RemovePathTrick", text: rpcReq("remove", `{"id":"person_module/%2e%2e"}`), code: app, status: 400, reason: "invalid"},
		{name: "ActionPathTrick", text: rpcReq("action", `{"id":"./x","transition":"validate_action"}`), code: app, status: 400, reason: "invalid"},
		{name: "SyncPathTrick", text: rpcReq("sync", `{"ids":["ok_module/1","../x"]}`), code: app, status: 400, reason: "invalid"},
		{name: "PutUnknownID", text: rpcReq("put", `{"id":"person_module/404404","doc":{"title":"x"}}`), code: app, status: 404, reason: "not_found"},
		{name: "RemoveUnknownID", text: rpcReq("remove", `{"id":"person_module/404404"}`), code: app, status: 404, reason: "not_found"},

		// Fragments with bad headers: -32700, or 413 for a message announced too large.
		{name: "FragmentShort", frames: [][]byte{{0, 0, 0, 1, 0}}, id: "null", code: parse},
		{name: "FragmentEmptyBinary", frames: [][]byte{{}}, id: "null", code: parse},
		{name: "FragmentZeroCount", frames: [][]byte{frag(1<<30, 0, 0, "x")}, id: "null", code: parse},
		{name: "FragmentIndexPastCount", frames: [][]byte{frag(1<<30+1, 3, 3, "x")}, id: "null", code: parse},
		{name: "FragmentNoPayload", frames: [][]byte{frag(1<<30+2, 0, 2, "")}, id: "null", code: parse},
		{name: "FragmentPayloadTooBig", frames: [][]byte{frag(1<<30+3, 0, 2, strings.Repeat("x", wire.MaxFragmentPayload+1))}, id: "null", code: parse},
		{name: "FragmentHugeCount", frames: [][]byte{frag(1<<30+4, 0, 1<<31, `{"jsonrpc":"2.0","id":#ID#,`)}, code: app, status: 413, reason: "too_large"},
		{name: "FragmentCountChanges", frames: [][]byte{frag(1<<30+5, 0, 3, `{"jsonrpc":"2.0","id":#ID#,`), frag(1<<30+5, 1, 4, `"x":1`)}, code: parse},
		{name: "FragmentDuplicate", frames: [][]byte{frag(1<<30+6, 0, 3, `{"jsonrpc":"2.0","id":#ID#,`), frag(1<<30+6, 0, 3, `{"jsonrpc":"2.0","id":#ID#,`)}, code: parse},
		{name: "FragmentsMakeGarbage", frames: [][]byte{frag(1<<30+7, 1, 2, `"method":`), frag(1<<30+7, 0, 2, `{"jsonrpc":"2.0","id":#ID#,`)}, id: "null", code: parse},
		{name: "FragmentsInvalidUTF8", frames: [][]byte{frag(1<<30+8, 1, 2, "\xff\xfe\"}}"), frag(1<<30+8, 0, 2, `{"jsonrpc":"2.0","id":#ID#,"method":"get","params":{"id":"`)}, code: app, status: 400, reason: "invalid"},
	}
}

// TestBadInput sends the catalogue over a real data channel to a real gateway (the policy,
// the replica and the write path behind it). Each message gets the structured error of
// docs/DESIGN.md §3; the channel stays open (a get after each case succeeds); nothing is stored;
// memory stays bounded.
func TestBadInput(t *testing.T) {
	s := relStart(t, t.TempDir(), relOptions{Policy: badInputPolicy(t)})
	c, _ := mustPairClient(t, s, "tester-1", "tester")
	ctx := context.Background()
	person := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Known"}})["id"].(string)
	gadget := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Gadget", "title": "Gizmo", "color": "red"}})["id"].(string)
	before := storedCounts(t, s)

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	cases := badCases(person, gadget)
	if len(cases) < 50 {
		t.Fatalf("the catalogue has %d cases, want at least 50", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := strconv.Itoa(1000 + i)
			if tc.text != "" || tc.frames == nil {
				if err := c.SendText(ctx, []byte(strings.ReplaceAll(tc.text, "#ID#", id))); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.frames {
				if err := c.SendBinary(ctx, []byte(strings.ReplaceAll(string(f), "#ID#", id))); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.id
			if want == "" {
				want = id
			}
			r, ok := relStray(t, c, 10*time.Second)
			if !ok {
				t.Fatal("no reply")
			}
			checkBadReply(t, r, want, tc)
			// Nothing else came back, and the channel still serves.
			if extra, ok := relStray(t, c, 0); ok {
				t.Errorf("a second reply: %+v", extra)
			}
			if got := call(t, c, "get", map[string]any{"id": person}); got["title"] != "Known" {
				t.Fatalf("get after the case: %v", got)
			}
		})
	}

	t.Run("BatchOfThousands", func(t *testing.T) {
		// 5,000 requests in one batch: each gets its own reply, a result or 429 once the
		// channel's in-flight bound is reached; none is lost.
		calls := make([]client.Call, 5000)
		for i := range calls {
			calls[i] = client.Call{Method: "get", Params: map[string]any{"id": person}}
		}
		calls[17] = client.Call{Method: "nope", Params: map[string]any{}}
		calls[4321] = client.Call{Method: "get", Params: map[string]any{"id": "../x"}}
		res, err := c.Batch(ctx, calls)
		if err != nil {
			t.Fatal(err)
		}
		ok, limited := 0, 0
		for i, r := range res {
			switch {
			case i == 17:
				if r.Err == nil || r.Err.Code != wire.CodeMethodNotFound {
					t.Errorf("unknown method in the batch: %+v", r)
				}
			case r.Err == nil && len(r.Result) > 0:
				ok++
			case r.Err != nil && r.Err.Data != nil && r.Err.Data.Status == 429 && r.Err.Data.Reason == gateway.ERATELIMITED:
				limited++
			case i == 4321 && r.Err != nil && r.Err.Data != nil && r.Err.Data.Status == 400:
			default:
				t.Errorf("reply %d: %+v", i, r)
			}
		}
		if ok == 0 || ok+limited < 4998 {
			t.Errorf("%d results, %d refused of 5000", ok, limited)
		}
		t.Logf("batch of 5000: %d answered, %d refused with 429", ok, limited)
	})

	t.Run("BatchOfNotifications", func(t *testing.T) {
		// 10,000 notifications (no ids), malformed ones among them: no reply at all.
		calls := make([]client.Call, 10000)
		for i := range calls {
			calls[i] = client.Call{Method: "get", Params: map[string]any{"id": person}, Notify: true}
			if i%10 == 0 {
				calls[i] = client.Call{Method: "no_such_method", Notify: true}
			}
		}
		if _, err := c.Batch(ctx, calls); err != nil {
			t.Fatal(err)
		}
		// The notifications run (or are dropped beyond the channel's in-flight bound): until
		// they are done, a request may be refused with 429; then it is served.
		deadline := time.Now().Add(20 * time.Second)
		for {
			var got map[string]any
			err := c.Call(ctx, "get", map[string]any{"id": person}, &got)
			if err == nil && got["title"] == "Known" {
				break
			}
			var we *wire.Error
			if !errors.As(err, &we) || we.Data == nil || we.Data.Status != 429 || time.Now().After(deadline) {
				t.Fatalf("get after the notifications: %v %v", got, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r, ok := relStray(t, c, 200*time.Millisecond); ok {
			t.Errorf("a notification got a reply: %+v", r)
		}
	})

	t.Run("MixedBatch", func(t *testing.T) {
		msg := `[` + strings.Join([]string{
			`{"jsonrpc":"2.0","id":"a","method":"get","params":{"id":` + jsonString(person) + `}}`,
			`42`,
			`{"jsonrpc":"2.0","id":"b","method":"get","params":{"id":"../x"}}`,
			`{"jsonrpc":"2.0","method":"get","params":{"id":"x"}}`,
			`{"jsonrpc":"2.0","id":"c","method":"nope"}`,
		}, ",") + `]`
		if err := c.SendText(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := map[string]wire.Response{}
		for range 4 {
			r, ok := relStray(t, c, 5*time.Second)
			if !ok {
				t.Fatalf("%d replies of 4", len(got))
			}
			got[string(r.ID)] = r
		}
		if r := got[`"a"`]; r.Error != nil || len(r.Result) == 0 {
			t.Errorf("a: %+v", r)
		}
		if r := got["null"]; r.Error == nil || r.Error.Code != wire.CodeInvalidRequest {
			t.Errorf("42: %+v", r)
		}
		if r := got[`"b"`]; r.Error == nil || r.Error.Data == nil || r.Error.Data.Status != 400 {
			t.Errorf("b: %+v", r)
		}
		if r := got[`"c"`]; r.Error == nil || r.Error.Code != wire.CodeMethodNotFound {
			t.Errorf("c: %+v", r)
		}
	})

	t.Run("HugeMessage", func(t *testing.T) {
		// Over the 16 MiB message limit: 413 for the request (its id is in the first
		// fragment), and the channel carries on — large messages included.
		huge := `{"jsonrpc":"2.0","id":"huge","method":"post","params":{"doc":{"portal_type":"Person","title":"x","blob":"` +
			strings.Repeat("0123456789abcdef", (17<<20)/16) + `"}}}`
		if err := c.SendText(ctx, []byte(huge)); err != nil {
			t.Fatal(err)
		}
		r, ok := relStray(t, c, 30*time.Second)
		if !ok {
			t.Fatal("no reply")
		}
		checkBadReply(t, r, `"huge"`, badCase{code: wire.CodeApplication, status: 413, reason: gateway.ETOOLARGE})
		for range 6 {
			// Each is fragmented; the trailing fragments of the refused message hold no
			// reassembly slot.
			var out map[string]any
			if err := c.Call(ctx, "get", map[string]any{"id": person, "pad": strings.Repeat("p", 100<<10)}, &out); err != nil || out["title"] != "Known" {
				t.Fatalf("a large message after the huge one: %v", err)
			}
		}
	})

	t.Run("FragmentFlood", func(t *testing.T) {
		// More half-sent messages than the channel keeps: the one too many is refused by its
		// id; the others complete later and are answered.
		const keep = 4 // lan.DefaultMaxPartial
		head := func(n int) string {
			return `{"jsonrpc":"2.0","id":"flood-` + strconv.Itoa(n) + `","method":"get","params":{"id":"`
		}
		for n := range keep + 1 {
			if err := c.SendBinary(ctx, frag(1<<31+uint32(n), 0, 2, head(n))); err != nil {
				t.Fatal(err)
			}
		}
		r, ok := relStray(t, c, 5*time.Second)
		if !ok {
			t.Fatal("no reply to the message one too many")
		}
		checkBadReply(t, r, `"flood-4"`, badCase{code: wire.CodeParseError})
		for n := range keep {
			if err := c.SendBinary(ctx, frag(1<<31+uint32(n), 1, 2, person+`"}}`)); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		for range keep {
			r, ok := relStray(t, c, 5*time.Second)
			if !ok {
				t.Fatalf("%d of %d completed messages answered", len(seen), keep)
			}
			if r.Error != nil {
				t.Errorf("completed message %s: %+v", r.ID, r.Error)
			}
			seen[string(r.ID)] = true
		}
		// The refused message's second fragment is dropped without a reply, and without
		// taking a reassembly slot: several rounds of refusals still leave room.
		for round := range 3 {
			base := 1<<31 + 100 + uint32(round*10)
			c.SendBinary(ctx, frag(base, 0, 3, head(100+round)))
			c.SendBinary(ctx, frag(base, 1, 4, `x`)) // contradicts the count: refused
			relStray(t, c, 5*time.Second)
			c.SendBinary(ctx, frag(base, 2, 3, `y`)) // the rest of the refused message
		}
		var out map[string]any
		if err := c.Call(ctx, "get", map[string]any{"id": person, "pad": strings.Repeat("p", 300<<10)}, &out); err != nil || out["title"] != "Known" {
			t.Fatalf("a fragmented message after the flood: %v", err)
		}
	})

	t.Run("ReusedWriteKeys", func(t *testing.T) {
		first := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Keyed"}, "key": "k-1"})
		again := call(t, c, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Keyed"}, "key": "k-1"})
		if again["id"] != first["id"] {
			t.Errorf("same key and request: %v, first %v", again, first)
		}
		for _, tc := range []struct {
			method string
			params map[string]any
		}{
			{"post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": "Other"}, "key": "k-1"}},
			{"put", map[string]any{"id": first["id"], "doc": map[string]any{"title": "Keyed"}, "key": "k-1"}},
			{"remove", map[string]any{"id": first["id"], "key": "k-1"}},
			{"action", map[string]any{"id": first["id"], "transition": "validate_action", "key": "k-1"}},
		} {
			e := callErr(t, c, tc.method, tc.params)
			if e.Status != 409 || e.Reason != "key_reused" {
				t.Errorf("%s with a reused key: %+v, want 409 key_reused", tc.method, e)
			}
		}
		if got := call(t, c, "get", map[string]any{"id": first["id"]}); got["title"] != "Keyed" {
			t.Errorf("after refused reuses: %v", got)
		}
	})

	// Nothing the catalogue sent was stored, but the writes meant to succeed.
	after := storedCounts(t, s)
	if want := before + 1; after != want { // the post of ReusedWriteKeys
		t.Errorf("documents = %d, want %d: a bad message was stored", after, want)
	}
	if t.Failed() {
		return
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	grew := int64(m1.HeapInuse) - int64(m0.HeapInuse)
	t.Logf("heap in use %d MiB before, %d MiB after; goroutines %d → %d", m0.HeapInuse>>20, m1.HeapInuse>>20, g0, runtime.NumGoroutine())
	if grew > 96<<20 {
		t.Errorf("heap grew by %d MiB over the catalogue", grew>>20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > g0+20 {
		t.Errorf("goroutines %d → %d", g0, n)
	}
}

// checkBadReply asserts a reply's id and structured error.
func checkBadReply(t *testing.T, r wire.Response, id string, tc badCase) {
	t.Helper()
	if string(r.ID) != id {
		t.Errorf("reply id %s, want %s", r.ID, id)
	}
	if r.Error == nil {
		t.Fatalf("no error: result %.200s", r.Result)
	}
	if r.Error.Code != tc.code || r.Error.Message == "" {
		t.Errorf("error %d %q, want code %d with a message", r.Error.Code, r.Error.Message, tc.code)
	}
	if tc.code != wire.CodeApplication {
		if r.Error.Data != nil {
			t.Errorf("a protocol error carries data %+v", r.Error.Data)
		}
		return
	}
	d := r.Error.Data
	if d == nil {
		t.Fatalf("application error without data: %q", r.Error.Message)
	}
	if d.Status != tc.status || d.Reason != tc.reason {
		t.Errorf("status %d reason %s (%q), want %d %s", d.Status, d.Reason, r.Error.Message, tc.status, tc.reason)
	}
	for _, f := range tc.fields {
		if d.Fields[f] == "" {
			t.Errorf("no message for field %s: %v (%q)", f, d.Fields, r.Error.Message)
		}
	}
	if tc.message != "" && !strings.Contains(r.Error.Message, tc.message) {
		t.Errorf("message %q lacks %q", r.Error.Message, tc.message)
	}
	if strings.Contains(r.Error.Message, "SQL") || strings.Contains(r.Error.Message, "sqlite") {
		t.Errorf("the message leaks storage detail: %q", r.Error.Message)
	}
}

// storedCounts returns the number of documents in the replica.
func storedCounts(t *testing.T, s *Server) int {
	t.Helper()
	var n int
	if err := s.DB.Reader().QueryRow(`SELECT count(*) FROM documents`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
