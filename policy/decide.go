package policy

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"cel.dev/cel-go/interpreter"

	"sitesync.example/gateway"
)

// WriteInput is one request to decide. Maps are JSON objects decoded with
// json.Decoder.UseNumber, so numbers are json.Number (float64 and ints work too).
type WriteInput struct {
	Peer   string
	Role   string
	Method string // post, put, remove or action (get and allDocs for Explain)
	ID     string
	// Transition is the workflow transition of an action.
	Transition string
	// Patch holds the fields the request sets: put's merge patch (null clears a field),
	// post's document. Nil for a put means "diff Doc against Old".
	Patch map[string]any
	// Doc is the document after the change; for remove and action, nil means Old.
	Doc map[string]any
	// Old is the stored document as read inside the write transaction; nil for post.
	Old map[string]any
}

// AuthorizeWrite decides a post, put, remove or action: rules (deny wins, then an allow rule
// whose condition holds and which covers every field the request changes), then, for post and
// put, the portal type's schema on the resulting document. The write path calls it inside its
// transaction, with Old as read there, so conditions on old cannot race a concurrent write.
//
// Errors: gateway.EFORBIDDEN with a Reason* word; gateway.EINVALID with Fields for a document
// that breaks its schema (or a request the rules cannot read, such as a changed portal_type).
func (e *Engine) AuthorizeWrite(in WriteInput) error {
	m := parseMethod(in.Method)
	if m&(mPost|mPut|mRemove|mAction) == 0 {
		return gateway.Errorf(gateway.EINVALID, "%q is not a write method", in.Method)
	}
	return e.authorize(&in, m, nil)
}

// AuthorizeGet decides a get of doc (the stored document, also `old` to conditions): an allow
// rule for get on its portal type whose condition holds, no deny rule, and the role's
// read.scope matching the document. Remove unreadable fields with FilterDoc before replying.
//
// Errors: gateway.EFORBIDDEN with a Reason* word (ReasonOutOfScope outside read.scope).
func (e *Engine) AuthorizeGet(peer, role, id string, doc map[string]any) error {
	in := WriteInput{Peer: peer, Role: role, Method: gateway.MethodGet, ID: id, Doc: doc, Old: doc}
	return e.authorize(&in, mGet, nil)
}

// Explanation is a decision with the steps that led to it, for `gateway policy explain`.
type Explanation struct {
	// Err is nil when the request is allowed, else the error the request gets.
	Err error
	// DecidedBy names the rule that decided; "" when deny-by-default (or a schema) decided.
	DecidedBy string
	// Steps lists each rule considered, in order, with what it did.
	Steps []Step
}

// Step is one rule's part in a decision.
type Step struct {
	Rule    string // the rule's name
	Line    int    // its line in the policy file
	Effect  string // allow or deny
	Outcome string // a sentence: "does not match method put", "condition false", ...
}

// String formats the step as one line.
func (s Step) String() string {
	return fmt.Sprintf("%-5s %s (line %d): %s", s.Effect, s.Rule, s.Line, s.Outcome)
}

// Explain decides any request a rule can name (get, allDocs, post, put, remove, action) and
// says why. For allDocs it decides at the level of Doc's portal type, as rules do (conditions
// on doc or old do not apply to lists).
func (e *Engine) Explain(in WriteInput) Explanation {
	tr := &trace{}
	m := parseMethod(in.Method)
	var err error
	switch {
	case alwaysAllowed(in.Method):
		tr.decided = "(always allowed to an enrolled peer)"
	case m == 0:
		err = gateway.Errorf(gateway.EINVALID, "%q is not a method", in.Method)
	default:
		if m == mGet && in.Old == nil {
			in.Old = in.Doc
		}
		err = e.authorize(&in, m, tr)
	}
	return Explanation{Err: err, DecidedBy: tr.decided, Steps: tr.steps}
}

// trace records a decision's steps; a nil *trace records nothing (the fast path).
type trace struct {
	steps   []Step
	decided string
}

// add records what a rule did.
func (t *trace) add(r *rule, format string, args ...any) {
	t.steps = append(t.steps, Step{Rule: r.name, Line: r.line, Effect: r.effect.String(), Outcome: fmt.Sprintf(format, args...)})
}

// evaluator evaluates the CEL expressions of one request, building their variables once.
type evaluator struct {
	e   *Engine
	in  *WriteInput
	act interpreter.Activation
}

// activation returns the variables of the request's expressions.
func (ev *evaluator) activation() interpreter.Activation {
	if ev.act == nil {
		in := ev.in
		vars := map[string]any{
			"peer":    map[string]string{"name": in.Peer, "role": in.Role},
			"request": map[string]string{"method": in.Method, "id": in.ID, "transition": in.Transition},
			"doc":     nilIfEmpty(in.Doc),
			"old":     nilIfEmpty(in.Old),
			"now":     ev.e.now(),
		}
		ev.act, _ = interpreter.NewActivation(vars) // a non-nil map never fails
	}
	return ev.act
}

// nilIfEmpty turns a nil map into an untyped nil, which CEL sees as null (a typed nil map
// would be an empty map).
func nilIfEmpty(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// eval evaluates x. An evaluation error (a missing key, a type mismatch) is logged with what
// (the rule or check) and returned; the caller refuses.
func (ev *evaluator) eval(x *expr, what string) (bool, error) {
	ok, err := x.eval(ev.activation())
	if err != nil {
		ev.e.logger().Warn("policy expression failed to evaluate; refusing",
			"expr", what, "role", ev.in.Role, "peer", ev.in.Peer, "method", ev.in.Method, "id", ev.in.ID, "err", err)
	}
	return ok, err
}

// authorize is the decision every entry point shares. tr may be nil.
func (e *Engine) authorize(in *WriteInput, m method, tr *trace) error {
	r := e.roles[in.Role]
	if r == nil {
		return forbidden(ReasonUnknownRole, "role %q is not in the policy", in.Role)
	}
	switch m {
	case mRemove, mAction:
		if in.Doc == nil {
			in.Doc = in.Old
		}
		if m == mAction && in.Transition == "" {
			return gateway.Errorf(gateway.EINVALID, "an action needs a transition")
		}
	case mPost, mPut:
		if in.Doc == nil {
			return gateway.Errorf(gateway.EINVALID, "the request has no document")
		}
	}
	pt, err := portalTypeOf(in, m)
	if err != nil {
		return err
	}
	var changed []string
	if m == mPost || m == mPut {
		changed = changedFields(in, m)
	}
	ev := &evaluator{e: e, in: in}
	// A condition on doc or old never applies to a list: allDocs is decided per portal type and
	// read.scope restricts its rows.
	applies := func(x *expr) bool { return x != nil && !(m == mAllDocs && x.usesDoc) }

	// Deny rules first: a matching deny rule wins over every allow rule.
	for _, ru := range r.deny {
		if !ru.matches(m, pt, in.Transition) {
			if tr != nil {
				tr.add(ru, "does not match %s on %s", m, pt)
			}
			continue
		}
		var hit []string
		if ru.hasWrite {
			for _, f := range changed {
				if ru.allWrite || ru.write[f] {
					hit = append(hit, f)
				}
			}
			if len(hit) == 0 {
				if tr != nil {
					tr.add(ru, "the request changes none of its fields")
				}
				continue
			}
		}
		if ru.when != nil {
			if !applies(ru.when) {
				if tr != nil {
					tr.add(ru, "its condition on doc/old does not apply to allDocs")
				}
				continue
			}
			ok, err := ev.eval(ru.when, ru.name)
			if err != nil {
				if tr != nil {
					tr.add(ru, "condition %s failed to evaluate (%v): denies", ru.when.src, err)
					tr.decided = ru.name
				}
				return forbidden(ReasonDenied, "denied by rule %s: its condition could not be evaluated", ru.name)
			}
			if !ok {
				if tr != nil {
					tr.add(ru, "condition %s is false", ru.when.src)
				}
				continue
			}
		}
		if tr != nil {
			tr.add(ru, "matches: denies")
			tr.decided = ru.name
		}
		if len(hit) > 0 {
			fields := make(map[string]string, len(hit))
			for _, f := range hit {
				fields[f] = "not writable by role " + r.name
			}
			return &gateway.Error{Code: gateway.EFORBIDDEN, Reason: ReasonFieldNotWritable, Fields: fields,
				Message: fmt.Sprintf("role %s may not change %s on %s documents (rule %s)", r.name, strings.Join(hit, ", "), pt, ru.name)}
		}
		return forbidden(ReasonDenied, "role %s may not %s %s documents (rule %s)", r.name, verb(m, in.Transition), pt, ru.name)
	}

	// Allow rules: one whose condition holds must grant the method, and together they must
	// cover every changed field.
	var typeSeen, methodSeen, transSeen, granted bool
	var condRule *rule
	remaining := changed
	for _, ru := range r.allow {
		if !(ru.allTypes || ru.types[pt]) {
			if tr != nil {
				tr.add(ru, "names other portal types than %s", pt)
			}
			continue
		}
		typeSeen = true
		if !ru.methods.has(m) {
			if tr != nil {
				tr.add(ru, "does not grant %s", m)
			}
			continue
		}
		methodSeen = true
		if m == mAction && !(ru.allTransitions || ru.transitions[in.Transition]) {
			if tr != nil {
				tr.add(ru, "does not grant transition %q", in.Transition)
			}
			continue
		}
		transSeen = true
		if ru.when != nil && !applies(ru.when) && tr != nil {
			tr.add(ru, "its condition on doc/old does not apply to allDocs")
		}
		if applies(ru.when) {
			ok, err := ev.eval(ru.when, ru.name)
			if err != nil || !ok {
				if condRule == nil {
					condRule = ru
				}
				if tr != nil {
					if err != nil {
						tr.add(ru, "condition %s failed to evaluate (%v): grants nothing", ru.when.src, err)
					} else {
						tr.add(ru, "condition %s is false", ru.when.src)
					}
				}
				continue
			}
		}
		granted = true
		if m != mPost && m != mPut {
			if tr != nil {
				tr.add(ru, "matches: allows")
				tr.decided = ru.name
			}
			if m == mGet {
				return e.checkScope(r, in, tr)
			}
			return nil
		}
		if !ru.allWrite && len(remaining) > 0 {
			var left []string
			for _, f := range remaining {
				if !ru.write[f] {
					left = append(left, f)
				}
			}
			remaining = left
		} else {
			remaining = nil
		}
		if len(remaining) == 0 {
			if tr != nil {
				tr.add(ru, "matches: allows; every changed field is writable")
				tr.decided = ru.name
			}
			if s := e.schemas[pt]; s != nil {
				return s.validate(in.Doc, ev)
			}
			return nil
		}
		if tr != nil {
			tr.add(ru, "matches, but does not let the role write %s", strings.Join(remaining, ", "))
		}
	}
	switch {
	case !typeSeen:
		return forbidden(ReasonTypeNotAllowed, "role %s may not use %s documents", r.name, pt)
	case !methodSeen:
		return forbidden(ReasonMethodNotAllowed, "role %s may not %s %s documents", r.name, m, pt)
	case !transSeen:
		return forbidden(ReasonTransitionNotAllowed, "role %s may not apply transition %q to %s documents", r.name, in.Transition, pt)
	case !granted:
		return forbidden(ReasonConditionFailed, "role %s may not %s this %s: the condition of rule %s does not hold", r.name, verb(m, in.Transition), pt, condRule.name)
	}
	fields := make(map[string]string, len(remaining))
	for _, f := range remaining {
		fields[f] = "not writable by role " + r.name
	}
	return &gateway.Error{Code: gateway.EFORBIDDEN, Reason: ReasonFieldNotWritable, Fields: fields,
		Message: fmt.Sprintf("role %s may not change %s on %s documents", r.name, strings.Join(remaining, ", "), pt)}
}

// checkScope refuses a get of a document outside the role's read.scope.
func (e *Engine) checkScope(r *role, in *WriteInput, tr *trace) error {
	if r.scope == nil || e.matchDoc(r.scope, in.Doc) {
		return nil
	}
	if tr != nil {
		tr.decided = "read.scope"
		tr.steps = append(tr.steps, Step{Rule: "read.scope", Effect: "deny", Outcome: "the document is outside " + r.scopeSrc})
	}
	return forbidden(ReasonOutOfScope, "role %s may not read this document: it is outside the role's read scope", r.name)
}

// verb names what a method does to a document, for messages.
func verb(m method, transition string) string {
	if m == mAction {
		return fmt.Sprintf("apply %q to", transition)
	}
	return m.String()
}

// portalTypeOf returns the request's portal type: the stored document's, which a put may
// repeat but never change.
func portalTypeOf(in *WriteInput, m method) (string, error) {
	pt, _ := in.Doc["portal_type"].(string)
	if old, _ := in.Old["portal_type"].(string); old != "" {
		if pt != "" && pt != old {
			return "", gateway.Errorf(gateway.EINVALID, "portal_type cannot change (%s to %s)", old, pt)
		}
		if v, ok := in.Patch["portal_type"]; ok && v != old {
			return "", gateway.Errorf(gateway.EINVALID, "portal_type cannot change (%s to %v)", old, v)
		}
		pt = old
	}
	if pt == "" {
		return "", gateway.Errorf(gateway.EINVALID, "the document has no portal_type")
	}
	return pt, nil
}

// changedFields returns, sorted, the fields a post or put changes: the patch's fields (post:
// the document's) whose value differs from the stored one, null, "" and absent counting as
// equal. portal_type is checked apart (it cannot change), and a post's parent_relative_url
// places the document rather than setting a field.
func changedFields(in *WriteInput, m method) []string {
	src := in.Patch
	if src == nil && m == mPost {
		src = in.Doc
	}
	var out []string
	if src == nil { // a put without its patch: diff the documents
		for k, v := range in.Doc {
			if k != "portal_type" && !sameValue(v, in.Old[k]) {
				out = append(out, k)
			}
		}
		for k, v := range in.Old {
			if _, ok := in.Doc[k]; !ok && k != "portal_type" && !isEmpty(v) {
				out = append(out, k)
			}
		}
	} else {
		for k, v := range src {
			if k == "portal_type" || m == mPost && k == "parent_relative_url" {
				continue
			}
			if !sameValue(v, in.Old[k]) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// sameValue compares two JSON values: null, "" and absent are equal, numbers compare by value.
func sameValue(a, b any) bool {
	if isEmpty(a) || isEmpty(b) {
		return isEmpty(a) && isEmpty(b)
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	fa, okA := toFloat(a)
	fb, okB := toFloat(b)
	if okA && okB {
		return fa == fb
	}
	return reflect.DeepEqual(a, b)
}
