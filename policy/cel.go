package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"sitesync.example/gateway/query"
)

// costLimit bounds one evaluation. Rules are not Turing-complete, but a comprehension over a
// large list field (nested, say) could still cost a lot per request; 100k steps is far above
// any sensible rule and far below a noticeable stall.
const costLimit = 100_000

// expr is a compiled CEL expression: a rule's `when` or a schema check.
type expr struct {
	src     string
	prg     cel.Program
	usesDoc bool // it reads doc or old, so it cannot apply to allDocs
}

// newEnv returns the CEL environment every expression compiles in: peer {name, role},
// request {method, id, transition}, doc and old (JSON objects, old may be null) and now.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("peer", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("doc", cel.DynType),
		cel.Variable("old", cel.DynType),
		cel.Variable("now", cel.TimestampType),
		cel.CustomTypeAdapter(jsonAdapter{types.DefaultTypeAdapter}),
		// date(s) reads a date as ERP5 and jIO write them (RFC 822 or ISO 8601, any
		// precision), so that checks compare dates in time order whatever their text.
		cel.Function("date", cel.Overload("date_string", []*cel.Type{cel.StringType}, cel.TimestampType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, ok := v.(types.String)
				if !ok {
					return types.NewErr("date: %v is not a string", v)
				}
				t, _, ok := query.ParseDate(string(s))
				if !ok {
					return types.NewErr("date: %q is not a date", string(s))
				}
				return types.Timestamp{Time: t}
			}))),
	)
}

// compileExpr compiles src and checks it is boolean. Issues come back with their 1-based
// line and 0-based column inside src.
func compileExpr(env *cel.Env, src string) (*expr, []exprIssue) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var out []exprIssue
		for _, e := range iss.Errors() {
			out = append(out, exprIssue{line: e.Location.Line(), col: e.Location.Column(), msg: e.Message})
		}
		return nil, out
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, []exprIssue{{line: 1, col: 0, msg: fmt.Sprintf("must be a boolean expression, not %s", t)}}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(costLimit))
	if err != nil {
		return nil, []exprIssue{{line: 1, col: 0, msg: err.Error()}}
	}
	x := &expr{src: src, prg: prg}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == "doc" || ref.Name == "old" {
			x.usesDoc = true
		}
	}
	return x, nil
}

// exprIssue is one compile error of an expression.
type exprIssue struct {
	line, col int
	msg       string
}

// errNotBool is the evaluation error of an expression whose value is not a boolean.
var errNotBool = errors.New("the expression's value is not a boolean")

// eval runs the expression against an activation.
func (x *expr) eval(act interpreter.Activation) (bool, error) {
	out, _, err := x.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errNotBool
	}
	return bool(b), nil
}

// jsonAdapter lets CEL read documents decoded with json.Decoder.UseNumber: a json.Number
// becomes an int when it is one, else a double. Maps and lists are wrapped with this adapter
// so that nested numbers convert too (the default adapter would make them strings).
type jsonAdapter struct{ types.Adapter }

// NativeToValue implements types.Adapter.
func (a jsonAdapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case json.Number:
		return numberValue(v)
	case map[string]any:
		if v == nil {
			return types.NullValue
		}
		return types.NewStringInterfaceMap(a, v)
	case []any:
		return types.NewDynamicList(a, v)
	}
	return a.Adapter.NativeToValue(v)
}

// numberValue converts a JSON number to a CEL int or double.
func numberValue(n json.Number) ref.Val {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return types.Int(i)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return types.NewErr("invalid number %q", string(n))
	}
	return types.Double(f)
}
