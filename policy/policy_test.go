package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
)

// testPolicy exercises every kind of rule. The errs role's conditions read keys documents
// lack, so they fail to evaluate.
const testPolicy = `
roles:
  clerk:
    read:
      scope: 'portal_type:("Person" OR "Organisation" OR "Product")'
      fields: [title, first_name, last_name, email, reference]
    rules:
      - {name: persons, effect: allow, methods: [get, allDocs, post, put], portal_types: [Person],
         write: [title, first_name, last_name, email], when: 'old == null || !has(old.reference) || old.reference == doc.reference'}
      - {name: orgs, effect: allow, methods: [get, allDocs], portal_types: [Organisation]}
      - {name: products, effect: allow, methods: [get, allDocs, remove], portal_types: [Product]}
      - {name: no_remove, effect: deny, methods: [remove], portal_types: ["*"]}
      - {name: kiosk, effect: deny, methods: [post, put], portal_types: ["*"], when: 'peer.name == "kiosk"'}
      - {name: owner_reference, effect: allow, methods: [put], portal_types: [Person], write: [reference],
         when: 'has(doc.owner) && doc.owner == peer.name'}
    limits: {max_limit: 50, max_doc_bytes: 1000, rate: 2, burst: 3, max_concurrent_queries: 2}
  store:
    read: {fields: "*"}
    rules:
      - {name: orders, effect: allow, methods: [get, allDocs, post, put], portal_types: [Sale Order], write: "*"}
      - {name: workflow, effect: allow, methods: [action], portal_types: [Sale Order], transitions: [plan_action, order_action],
         when: 'old.simulation_state != "cancelled"'}
      - {name: no_price, effect: deny, methods: [put, post], portal_types: [Sale Order], write: [price]}
      - {name: no_cancel, effect: deny, methods: [action], portal_types: [Sale Order], transitions: [cancel_action]}
  errs:
    read: {fields: "*"}
    rules:
      - {name: needs_missing, effect: allow, methods: [put], portal_types: [Person], write: "*", when: 'doc.missing == "x"'}
      - {name: not_bool, effect: allow, methods: [post], portal_types: [Person], write: "*", when: 'doc.title'}
      - {name: remove_all, effect: allow, methods: [remove], portal_types: [Person]}
      - {name: deny_broken, effect: deny, methods: [remove], portal_types: [Person], when: 'old.missing == 1'}
      - {name: get_all, effect: allow, methods: [get], portal_types: [Person]}
schemas:
  Person:
    fields:
      title: {type: string, required: true, max_length: 10}
      email: {type: string, pattern: '^[^@]+@[^@]+$'}
      kind: {type: string, enum: [customer, supplier]}
      age: {type: integer}
      height: {type: number, enum: [1.5, 2]}
      active: {type: boolean}
      birthday: {type: date}
      tags: {type: list, max_length: 3, enum: [a, b, abcd]}
  Sale Order:
    fields:
      destination: {type: string, required: true}
    checks:
      - {name: dates_in_order, expr: 'doc.stop_date >= doc.start_date', message: "stop date before start date"}
`

// mustParse parses a policy or fails the test.
func mustParse(tb testing.TB, src string) *policy.Engine {
	tb.Helper()
	e, err := policy.Parse("test.yaml", []byte(src))
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	e.Logger = slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	return e
}

// obj decodes a JSON object the way the gateway does: numbers as json.Number.
func obj(tb testing.TB, s string) map[string]any {
	tb.Helper()
	if s == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// merge applies a flat merge patch to a copy of old.
func merge(old, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range old {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// checkErr asserts an error's code and reason ("" code: no error).
func checkErr(t *testing.T, err error, code, reason string) {
	t.Helper()
	if got := gateway.ErrorCode(err); got != code {
		t.Fatalf("code = %q, want %q (err: %v)", got, code, err)
	}
	if code != "" && reason != "" {
		if got := gateway.ErrorReason(err); got != reason {
			t.Fatalf("reason = %q, want %q (err: %v)", got, reason, err)
		}
	}
	var ge *gateway.Error
	if err != nil && !errors.As(err, &ge) {
		t.Fatalf("%v is not a *gateway.Error", err)
	}
	if ge != nil && ge.Message == "" {
		t.Fatalf("error without a message: %#v", ge)
	}
}

func TestParse_Example(t *testing.T) {
	e, err := policy.Load(filepath.Join("..", "policy.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(e.Roles(), ","), "clerk,storekeeper,supervisor"; got != want {
		t.Fatalf("roles = %s, want %s", got, want)
	}
	if w := e.Warnings(); len(w) != 0 {
		t.Fatalf("warnings: %v", w)
	}
	if l := e.Limits("supervisor"); l.Rate != 0 {
		t.Fatalf("supervisor rate = %v, want no limit", l.Rate)
	}
	// A supervisor may do everything on the five types.
	types := e.Describe("supervisor")
	if len(types) != 5 {
		t.Fatalf("supervisor types = %d, want 5", len(types))
	}
	for _, ti := range types {
		if got := strings.Join(ti.Methods, ","); got != "get,allDocs,post,put,remove,action" {
			t.Errorf("%s methods = %s", ti.PortalType, got)
		}
	}
}

func TestWriteInput_AuthorizeWrite(t *testing.T) {
	e := mustParse(t, testPolicy)
	tests := []struct {
		name       string
		role, peer string
		method     string
		transition string
		old, patch string // put: doc = merge(old, patch)
		doc        string // post, or an explicit doc
		code       string
		reason     string
		fields     []string
	}{
		{name: "OK/post", role: "clerk", method: "post", doc: `{"portal_type":"Person","title":"Ann"}`},
		{name: "OK/put", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann","reference":"R1"}`, patch: `{"email":"a@b"}`},
		{name: "OK/unchangedFieldIgnored", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann","reference":"R1"}`, patch: `{"reference":"R1","title":"Bo"}`},
		{name: "OK/emptyCountsAsAbsent", role: "clerk", method: "post", doc: `{"portal_type":"Person","title":"Ann","reference":""}`},
		{name: "OK/parentIsNotAField", role: "clerk", method: "post", doc: `{"portal_type":"Person","title":"Ann","parent_relative_url":"person_module"}`},
		{name: "OK/portalTypeRepeated", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann"}`, patch: `{"portal_type":"Person","title":"Bo"}`},
		{name: "OK/unionOfRules", role: "clerk", peer: "ann", method: "put", old: `{"portal_type":"Person","title":"Ann","owner":"ann"}`, patch: `{"reference":"R2","title":"Bo"}`},
		{name: "OK/numbersUnchanged", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann","age":10}`, patch: `{"age":10.0}`},
		{name: "ErrFieldNotWritable", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann"}`, patch: `{"age":3}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotWritable, fields: []string{"age"}},
		{name: "ErrFieldNotWritable/conditionOfSecondRuleFalse", role: "clerk", peer: "bob", method: "put", old: `{"portal_type":"Person","title":"Ann","owner":"ann"}`, patch: `{"reference":"R2"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotWritable, fields: []string{"reference"}},
		{name: "ErrFieldNotWritable/clearing", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann","age":3}`, patch: `{"age":null}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotWritable, fields: []string{"age"}},
		{name: "ErrDenied/denyWins", role: "clerk", method: "remove", old: `{"portal_type":"Product","title":"Cement"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonDenied},
		{name: "ErrDenied/peerCondition", role: "clerk", peer: "kiosk", method: "post", doc: `{"portal_type":"Person","title":"Ann"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonDenied},
		{name: "ErrMethodNotAllowed", role: "clerk", method: "put", old: `{"portal_type":"Organisation","title":"Acme"}`, patch: `{"title":"B"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonMethodNotAllowed},
		{name: "ErrTypeNotAllowed", role: "clerk", method: "post", doc: `{"portal_type":"Sale Order","destination":"x"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonTypeNotAllowed},
		{name: "ErrConditionFailed/old", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann","reference":"R1"}`, doc: `{"portal_type":"Person","title":"Ann","reference":"R2"}`, patch: `{"title":"Ann"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonConditionFailed},
		{name: "ErrUnknownRole", role: "visitor", method: "post", doc: `{"portal_type":"Person","title":"Ann"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonUnknownRole},
		{name: "ErrPortalTypeChanged", role: "clerk", method: "put", old: `{"portal_type":"Person","title":"Ann"}`, patch: `{"portal_type":"Organisation"}`,
			code: gateway.EINVALID},
		{name: "ErrNoPortalType", role: "clerk", method: "post", doc: `{"title":"Ann"}`, code: gateway.EINVALID},
		{name: "ErrNotAWriteMethod", role: "clerk", method: "get", doc: `{"portal_type":"Person","title":"Ann"}`, code: gateway.EINVALID},
		{name: "OK/action", role: "store", method: "action", transition: "plan_action", old: `{"portal_type":"Sale Order","destination":"x","simulation_state":"draft"}`},
		{name: "ErrTransitionNotAllowed", role: "store", method: "action", transition: "confirm_action", old: `{"portal_type":"Sale Order","destination":"x"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonTransitionNotAllowed},
		{name: "ErrDenied/transition", role: "store", method: "action", transition: "cancel_action", old: `{"portal_type":"Sale Order","destination":"x"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonDenied},
		{name: "ErrConditionFailed/action", role: "store", method: "action", transition: "plan_action", old: `{"portal_type":"Sale Order","destination":"x","simulation_state":"cancelled"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonConditionFailed},
		{name: "ErrAction/noTransition", role: "store", method: "action", old: `{"portal_type":"Sale Order","destination":"x"}`, code: gateway.EINVALID},
		{name: "ErrFieldNotWritable/denyRuleOnField", role: "store", method: "put", old: `{"portal_type":"Sale Order","destination":"x","price":1}`, patch: `{"price":2}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonFieldNotWritable, fields: []string{"price"}},
		{name: "OK/denyRuleOnFieldNotTouched", role: "store", method: "put", old: `{"portal_type":"Sale Order","destination":"x","price":1,"start_date":"2024-01-01","stop_date":"2024-01-02"}`, patch: `{"destination":"y","price":1}`},
		// CEL evaluation errors never allow.
		{name: "ErrCEL/allowRuleMissingKey", role: "errs", method: "put", old: `{"portal_type":"Person","title":"Ann"}`, patch: `{"title":"Bo"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonConditionFailed},
		{name: "ErrCEL/notBool", role: "errs", method: "post", doc: `{"portal_type":"Person","title":"Ann"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonConditionFailed},
		{name: "ErrCEL/denyRuleMissingKey", role: "errs", method: "remove", old: `{"portal_type":"Person","title":"Ann"}`,
			code: gateway.EFORBIDDEN, reason: policy.ReasonDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := policy.WriteInput{Peer: tt.peer, Role: tt.role, Method: tt.method, Transition: tt.transition, ID: "x/1",
				Old: obj(t, tt.old), Patch: obj(t, tt.patch), Doc: obj(t, tt.doc)}
			if in.Peer == "" {
				in.Peer = "p1"
			}
			if tt.method == "put" && in.Doc == nil {
				in.Doc = merge(in.Old, in.Patch)
			}
			err := e.AuthorizeWrite(in)
			checkErr(t, err, tt.code, tt.reason)
			if len(tt.fields) > 0 {
				var ge *gateway.Error
				errors.As(err, &ge)
				if len(ge.Fields) != len(tt.fields) {
					t.Fatalf("fields = %v, want %v", ge.Fields, tt.fields)
				}
				for _, f := range tt.fields {
					if ge.Fields[f] == "" {
						t.Fatalf("fields = %v, want %s", ge.Fields, f)
					}
				}
			}
		})
	}
}

func TestWriteInput_PutWithoutPatch(t *testing.T) {
	e := mustParse(t, testPolicy)
	old := obj(t, `{"portal_type":"Person","title":"Ann","age":3}`)
	// Without a patch the changed fields are the documents' differences: age was removed.
	err := e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "clerk", Method: "put", Old: old,
		Doc: obj(t, `{"portal_type":"Person","title":"Bo"}`)})
	checkErr(t, err, gateway.EFORBIDDEN, policy.ReasonFieldNotWritable)
	err = e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "clerk", Method: "put", Old: old,
		Doc: obj(t, `{"portal_type":"Person","title":"Bo","age":3}`)})
	checkErr(t, err, "", "")
}

func TestSchema_Validate(t *testing.T) {
	e := mustParse(t, testPolicy)
	tests := []struct {
		name  string
		doc   string
		field string // the one field named, "" for a check
	}{
		{"Required/absent", `{}`, "title"},
		{"Required/null", `{"title":null}`, "title"},
		{"Required/empty", `{"title":""}`, "title"},
		{"String/type", `{"title":12}`, "title"},
		{"String/maxLength", `{"title":"ééééééééééé"}`, "title"},
		{"String/pattern", `{"title":"A","email":"nope"}`, "email"},
		{"String/enum", `{"title":"A","kind":"partner"}`, "kind"},
		{"Integer/fraction", `{"title":"A","age":3.5}`, "age"},
		{"Integer/string", `{"title":"A","age":"3"}`, "age"},
		{"Number/type", `{"title":"A","height":"tall"}`, "height"},
		{"Number/enum", `{"title":"A","height":1.75}`, "height"},
		{"Boolean/type", `{"title":"A","active":"yes"}`, "active"},
		{"Date/format", `{"title":"A","birthday":"31/12/2000"}`, "birthday"},
		{"Date/type", `{"title":"A","birthday":20001231}`, "birthday"},
		{"List/type", `{"title":"A","tags":"a"}`, "tags"},
		{"List/elementType", `{"title":"A","tags":["a",1]}`, "tags"},
		{"List/elementEnum", `{"title":"A","tags":["a","c"]}`, "tags"},
		{"List/elementMaxLength", `{"title":"A","tags":["abcd"]}`, "tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := obj(t, tt.doc)
			doc["portal_type"] = "Person"
			err := e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "errs", Method: "put",
				Old: map[string]any{"portal_type": "Person", "title": "x", "missing": "x"}, Doc: mergeMissing(doc), Patch: map[string]any{}})
			checkErr(t, err, gateway.EINVALID, "")
			var ge *gateway.Error
			errors.As(err, &ge)
			if len(ge.Fields) != 1 || ge.Fields[tt.field] == "" {
				t.Fatalf("fields = %v, want only %s", ge.Fields, tt.field)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		for _, d := range []string{
			`{"title":"A","email":"a@b","kind":"customer","age":3,"height":2,"active":false,"birthday":"2000-12-31","tags":["a","b"]}`,
			`{"title":"A","age":3.0,"height":1.5,"birthday":"Wed, 06 Sep 2017 00:27:13 +0000","tags":[]}`,
			`{"title":"A","birthday":"6 Sep 2017 00:27 GMT"}`,
			`{"title":"A","birthday":"2017-09-06T00:27:13.5Z","unknown_field":{"x":1}}`,
		} {
			doc := mergeMissing(obj(t, d))
			doc["portal_type"] = "Person"
			err := e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "errs", Method: "put",
				Old: map[string]any{"portal_type": "Person", "title": "x"}, Doc: doc, Patch: map[string]any{}})
			checkErr(t, err, "", "")
		}
	})
	t.Run("Check", func(t *testing.T) {
		base := `{"portal_type":"Sale Order","destination":"organisation_module/1","start_date":"2024-06-10"`
		for _, tt := range []struct {
			doc  string
			want string
		}{
			{base + `,"stop_date":"2024-06-11"}`, ""},
			{base + `,"stop_date":"2024-06-01"}`, gateway.EINVALID},
			{base + `}`, gateway.EINVALID}, // the check reads a missing key: it fails, never passes
		} {
			err := e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "store", Method: "post", Doc: obj(t, tt.doc)})
			checkErr(t, err, tt.want, "")
			if err != nil && !strings.Contains(gateway.ErrorMessage(err), "stop date before start date") {
				t.Fatalf("message = %q, want the check's", gateway.ErrorMessage(err))
			}
		}
	})
}

// mergeMissing sets the key the errs role's put condition reads, so that the request reaches
// the schema.
func mergeMissing(doc map[string]any) map[string]any {
	doc["missing"] = "x"
	return doc
}

func TestEngine_AuthorizeGet(t *testing.T) {
	e := mustParse(t, testPolicy)
	tests := []struct {
		name   string
		role   string
		doc    string
		code   string
		reason string
	}{
		{"OK", "clerk", `{"portal_type":"Person","title":"Ann"}`, "", ""},
		{"OK/conditionOnOld", "clerk", `{"portal_type":"Person","title":"Ann","reference":"R"}`, "", ""},
		{"ErrTypeNotAllowed", "clerk", `{"portal_type":"Sale Order"}`, gateway.EFORBIDDEN, policy.ReasonTypeNotAllowed},
		{"OK/noScope", "errs", `{"portal_type":"Person"}`, "", ""},
		{"ErrUnknownRole", "nobody", `{"portal_type":"Person"}`, gateway.EFORBIDDEN, policy.ReasonUnknownRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, e.AuthorizeGet("p", tt.role, "x/1", obj(t, tt.doc)), tt.code, tt.reason)
		})
	}
	t.Run("ErrOutOfScope", func(t *testing.T) {
		e := mustParse(t, `
roles:
  r:
    read: {scope: 'site:"north"', fields: "*"}
    rules: [{effect: allow, methods: [get], portal_types: [Person]}]
`)
		checkErr(t, e.AuthorizeGet("p", "r", "x/1", obj(t, `{"portal_type":"Person","site":"north"}`)), "", "")
		checkErr(t, e.AuthorizeGet("p", "r", "x/1", obj(t, `{"portal_type":"Person","site":"south"}`)), gateway.EFORBIDDEN, policy.ReasonOutOfScope)
		checkErr(t, e.AuthorizeGet("p", "r", "x/1", obj(t, `{"portal_type":"Person"}`)), gateway.EFORBIDDEN, policy.ReasonOutOfScope)
	})
}

func TestEngine_CELErrorIsLogged(t *testing.T) {
	e := mustParse(t, testPolicy)
	var buf bytes.Buffer
	e.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	err := e.AuthorizeWrite(policy.WriteInput{Peer: "p", Role: "errs", Method: "remove", ID: "person_module/1",
		Old: map[string]any{"portal_type": "Person"}})
	checkErr(t, err, gateway.EFORBIDDEN, policy.ReasonDenied)
	if !strings.Contains(buf.String(), "deny_broken") || !strings.Contains(buf.String(), "no such key") {
		t.Fatalf("log = %q, want the rule's name and the CEL error", buf.String())
	}
}

func TestEngine_Now(t *testing.T) {
	e := mustParse(t, `
roles:
  r:
    rules:
      - {effect: allow, methods: [post], portal_types: [Person], write: "*",
         when: 'now < timestamp("2030-01-01T00:00:00Z") && request.method == "post" && request.id == "person_module/1"'}
`)
	in := policy.WriteInput{Peer: "p", Role: "r", Method: "post", ID: "person_module/1", Doc: map[string]any{"portal_type": "Person"}}
	e.Now = func() time.Time { return time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC) }
	checkErr(t, e.AuthorizeWrite(in), "", "")
	e.Now = func() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) }
	checkErr(t, e.AuthorizeWrite(in), gateway.EFORBIDDEN, policy.ReasonConditionFailed)
}

func TestEngine_CheckDocSize(t *testing.T) {
	e := mustParse(t, testPolicy)
	checkErr(t, e.CheckDocSize("clerk", 1000), "", "")
	checkErr(t, e.CheckDocSize("clerk", 1001), gateway.ETOOLARGE, "")
	checkErr(t, e.CheckDocSize("store", 1<<30), "", "")
	if got := e.Limits("clerk"); got != (policy.Limits{MaxLimit: 50, MaxDocBytes: 1000, Rate: 2, Burst: 3, MaxConcurrentQueries: 2,
		MaxQueryCost: policy.DefaultMaxQueryCost, QueryTimeout: policy.DefaultQueryTimeout}) {
		t.Fatalf("limits = %+v", got)
	}
	if !e.HasRole("clerk") || e.HasRole("nobody") {
		t.Fatal("HasRole is wrong")
	}
}

func TestEngine_FilterDoc(t *testing.T) {
	e := mustParse(t, testPolicy)
	doc := obj(t, `{"portal_type":"Person","title":"Ann","salary":10,"email":"a@b"}`)
	got := e.FilterDoc("clerk", doc)
	if len(got) != 3 || got["salary"] != nil || got["title"] != "Ann" || got["portal_type"] != "Person" {
		t.Fatalf("FilterDoc = %v", got)
	}
	if len(doc) != 4 {
		t.Fatal("FilterDoc modified its argument")
	}
	if got := e.FilterDoc("store", doc); len(got) != 4 {
		t.Fatalf("FilterDoc(*) = %v", got)
	}
	if got := e.FilterDoc("nobody", doc); len(got) != 0 {
		t.Fatalf("FilterDoc(unknown role) = %v", got)
	}
	fields, all := e.Readable("clerk")
	if all || strings.Join(fields, ",") != "email,first_name,last_name,portal_type,reference,title" {
		t.Fatalf("Readable = %v, %v", fields, all)
	}
}

func TestEngine_Describe(t *testing.T) {
	e := mustParse(t, testPolicy)
	got, err := json.Marshal(e.Describe("clerk"))
	if err != nil {
		t.Fatal(err)
	}
	var types []map[string]any
	_ = json.Unmarshal(got, &types)
	byType := map[string]map[string]any{}
	for _, ti := range types {
		byType[ti["portal_type"].(string)] = ti
	}
	if len(byType) != 3 || byType["Person"] == nil || byType["Organisation"] == nil || byType["Product"] == nil {
		t.Fatalf("types = %s", got)
	}
	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	p := byType["Person"]
	if got := str(p["methods"]); got != `["get","allDocs","post","put"]` {
		t.Errorf("Person methods = %s", got)
	}
	if got := str(p["writable"]); got != `["email","first_name","last_name","reference","title"]` {
		t.Errorf("Person writable = %s", got)
	}
	if got := str(p["readable"]); got != `["email","first_name","last_name","portal_type","reference","title"]` {
		t.Errorf("Person readable = %s", got)
	}
	if got := str(p["schema"].(map[string]any)["fields"].(map[string]any)["email"]); got != `{"pattern":"^[^@]+@[^@]+$","required":false,"type":"string"}` {
		t.Errorf("Person email schema = %s", got)
	}
	if got := str(p["schema"].(map[string]any)["fields"].(map[string]any)["height"]); got != `{"enum":[1.5,2],"required":false,"type":"number"}` {
		t.Errorf("Person height schema = %s", got)
	}
	// The deny rule takes remove back from Product.
	if got := str(byType["Product"]["methods"]); got != `["get","allDocs"]` {
		t.Errorf("Product methods = %s", got)
	}
	if got := str(byType["Product"]["transitions"]); got != `[]` {
		t.Errorf("Product transitions = %s", got)
	}
	store := e.Describe("store")
	if len(store) != 1 {
		t.Fatalf("store types = %+v", store)
	}
	so := store[0]
	if strings.Join(so.Transitions, ",") != "order_action,plan_action" || strings.Join(so.Writable, ",") != "*" || strings.Join(so.Readable, ",") != "*" {
		t.Errorf("Sale Order = %+v", so)
	}
	if len(so.Schema.Checks) != 1 || so.Schema.Checks[0] != (policy.CheckInfo{Name: "dates_in_order", Message: "stop date before start date"}) {
		t.Errorf("checks = %+v", so.Schema.Checks)
	}
	if len(e.Describe("nobody")) != 0 {
		t.Error("an unknown role has types")
	}
}

func TestEngine_Explain(t *testing.T) {
	e := mustParse(t, testPolicy)
	x := e.Explain(policy.WriteInput{Peer: "p", Role: "clerk", Method: "remove", Old: map[string]any{"portal_type": "Product"}})
	checkErr(t, x.Err, gateway.EFORBIDDEN, policy.ReasonDenied)
	if x.DecidedBy != "no_remove" {
		t.Fatalf("DecidedBy = %q", x.DecidedBy)
	}
	if len(x.Steps) == 0 || x.Steps[len(x.Steps)-1].Rule != "no_remove" || x.Steps[len(x.Steps)-1].Line != 12 {
		t.Fatalf("steps = %+v", x.Steps)
	}
	x = e.Explain(policy.WriteInput{Peer: "p", Role: "clerk", Method: "get", Doc: map[string]any{"portal_type": "Person", "title": "A"}})
	if x.Err != nil || x.DecidedBy != "persons" {
		t.Fatalf("get: %+v", x)
	}
	x = e.Explain(policy.WriteInput{Peer: "p", Role: "clerk", Method: "allDocs", Doc: map[string]any{"portal_type": "Person"}})
	if x.Err != nil || x.DecidedBy != "persons" {
		t.Fatalf("allDocs: %+v", x)
	}
	x = e.Explain(policy.WriteInput{Peer: "p", Role: "clerk", Method: "status"})
	if x.Err != nil {
		t.Fatalf("status: %+v", x)
	}
}

func TestRateLimiter_Allow(t *testing.T) {
	e := mustParse(t, testPolicy) // clerk: rate 2/s, burst 3; store: no limit
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	l := e.NewRateLimiter()
	l.Now = func() time.Time { return now }
	allow := func(peer, role string) bool {
		err := l.Allow(peer, role)
		if err != nil {
			checkErr(t, err, gateway.ERATELIMITED, policy.ReasonRateLimited)
		}
		return err == nil
	}
	for i := 0; i < 3; i++ {
		if !allow("a", "clerk") {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if allow("a", "clerk") {
		t.Fatal("request beyond the burst allowed")
	}
	if !allow("b", "clerk") {
		t.Fatal("another peer's bucket is shared")
	}
	now = now.Add(499 * time.Millisecond)
	if allow("a", "clerk") {
		t.Fatal("a token came back before 1/rate")
	}
	now = now.Add(time.Millisecond)
	if !allow("a", "clerk") {
		t.Fatal("no token after 1/rate")
	}
	now = now.Add(-time.Hour) // a clock stepping back adds nothing
	if allow("a", "clerk") {
		t.Fatal("a clock stepping back refilled the bucket")
	}
	now = now.Add(2 * time.Hour) // refills to the burst, not beyond
	for i := 0; i < 3; i++ {
		if !allow("a", "clerk") {
			t.Fatalf("request %d after refill refused", i)
		}
	}
	if allow("a", "clerk") {
		t.Fatal("the bucket refilled beyond its burst")
	}
	l.Forget("a")
	if !allow("a", "clerk") {
		t.Fatal("Forget kept the bucket")
	}
	for i := 0; i < 1000; i++ {
		if !allow("s", "store") {
			t.Fatal("a role without rate was limited")
		}
	}
}

func TestLoad_Missing(t *testing.T) {
	_, err := policy.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}
