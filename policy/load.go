package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"go.yaml.in/yaml/v4"

	"sitesync.example/gateway/query"
)

// Problem is one thing wrong (or, among Engine.Warnings, doubtful) in a policy file.
type Problem struct {
	File    string
	Line    int    // 1-based; 0 when unknown
	Column  int    // 1-based; 0 when unknown
	Path    string // where in the file, e.g. roles.clerk.rules[1].when
	Rule    string // the rule's name, when the problem is inside a rule
	Message string
}

// String formats the problem as FILE:LINE:COL: PATH (rule NAME): MESSAGE.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		if p.Rule != "" && !strings.HasSuffix(p.Rule, "]") {
			kind := "rule"
			if strings.HasPrefix(p.Path, "schemas.") {
				kind = "check"
			}
			fmt.Fprintf(&b, " (%s %s)", kind, p.Rule)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError is a policy file that cannot be loaded; it lists every problem found.
type LoadError struct {
	Problems []Problem
}

// Error implements error: the problems, one a line.
func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

var (
	envOnce sync.Once
	envVal  *cel.Env
	envErr  error
)

// sharedEnv returns the CEL environment, built once: it is immutable and safe to share.
func sharedEnv() (*cel.Env, error) {
	envOnce.Do(func() { envVal, envErr = newEnv() })
	return envVal, envErr
}

// Parse compiles a policy from YAML data; name is the file name problems are reported under.
// Every problem is reported at once, as a *LoadError.
func Parse(name string, data []byte) (*Engine, error) {
	env, err := sharedEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	l := &loader{
		file:    name,
		lines:   strings.Split(string(data), "\n"),
		env:     env,
		e:       &Engine{name: name, roles: map[string]*role{}, schemas: map[string]*schema{}, env: env},
		typeSet: map[string]bool{},
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p := Problem{File: name, Message: err.Error()}
		var le *yaml.LoadError
		if errors.As(err, &le) {
			p.Line, p.Column, p.Message = le.Mark.Line, le.Mark.Column, le.Message
		}
		return nil, &LoadError{Problems: []Problem{p}}
	}
	if len(doc.Content) == 0 {
		return nil, &LoadError{Problems: []Problem{{File: name, Message: "the policy is empty: it needs roles"}}}
	}
	l.top(doc.Content[0])
	if len(l.problems) > 0 {
		sort.SliceStable(l.problems, func(i, j int) bool { return l.problems[i].Line < l.problems[j].Line })
		return nil, &LoadError{Problems: l.problems}
	}
	e := l.e
	for n := range e.roles {
		e.roleNames = append(e.roleNames, n)
	}
	sort.Strings(e.roleNames)
	for t := range e.schemas {
		l.typeSet[t] = true
	}
	e.types = sortedKeys(l.typeSet)
	e.warnings = l.warnings
	return e, nil
}

// loader walks the YAML tree and collects problems instead of stopping at the first.
type loader struct {
	file     string
	lines    []string
	env      *cel.Env
	e        *Engine
	typeSet  map[string]bool
	problems []Problem
	warnings []Problem
}

// problem records an error at node n.
func (l *loader) problem(n *yaml.Node, path, rule, format string, args ...any) {
	p := Problem{File: l.file, Path: path, Rule: rule, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	l.problems = append(l.problems, p)
}

// warn records a warning at node n.
func (l *loader) warn(n *yaml.Node, path, rule, format string, args ...any) {
	p := Problem{File: l.file, Path: path, Rule: rule, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	l.warnings = append(l.warnings, p)
}

// pair is one key and value of a YAML mapping.
type pair struct {
	key   string
	kn, v *yaml.Node
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or an explicit null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// mapping returns the pairs of a mapping node, with `<<` merge keys expanded (explicit keys
// win) and duplicate keys reported. ok is false (and a problem recorded) when n is not a
// mapping.
func (l *loader) mapping(n *yaml.Node, path, rule string) ([]pair, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		l.problem(n, path, rule, "must be a mapping")
		return nil, false
	}
	var out, merged []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, v := n.Content[i], n.Content[i+1]
		if kn.Value == "<<" && kn.Tag == "!!merge" {
			for _, src := range mergeSources(v) {
				ps, ok := l.mapping(src, path, rule)
				if !ok {
					continue
				}
				merged = append(merged, ps...)
			}
			continue
		}
		if seen[kn.Value] {
			l.problem(kn, join(path, kn.Value), rule, "duplicate key %q", kn.Value)
			continue
		}
		seen[kn.Value] = true
		out = append(out, pair{kn.Value, kn, v})
	}
	for _, p := range merged {
		if !seen[p.key] {
			seen[p.key] = true
			out = append(out, p)
		}
	}
	return out, true
}

// mergeSources returns the mappings a `<<` value names: one, or a sequence of them.
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = resolve(v)
	if v != nil && v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
}

// join appends a key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// str returns a scalar's value; a problem when n is not a scalar.
func (l *loader) str(n *yaml.Node, path, rule string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.problem(n, path, rule, "must be a string")
		return "", false
	}
	return n.Value, true
}

// strList returns a list of scalars, or star true for the scalar "*".
func (l *loader) strList(n *yaml.Node, path, rule string) (list []string, star, ok bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.Value == "*" {
		return nil, true, true
	}
	if n == nil || n.Kind != yaml.SequenceNode {
		l.problem(n, path, rule, `must be a list or "*"`)
		return nil, false, false
	}
	ok = true
	seen := map[string]bool{}
	for i, c := range n.Content {
		s, good := l.str(c, fmt.Sprintf("%s[%d]", path, i), rule)
		switch {
		case !good:
			ok = false
		case s == "*":
			star = true
		case s == "":
			l.problem(c, fmt.Sprintf("%s[%d]", path, i), rule, "must not be empty")
			ok = false
		case !seen[s]:
			seen[s] = true
			list = append(list, s)
		}
	}
	if star && len(list) > 0 {
		l.problem(n, path, rule, `"*" already means every one; list names or "*", not both`)
		ok = false
	}
	return list, star, ok
}

// integer returns a non-negative integer scalar.
func (l *loader) integer(n *yaml.Node, path string) (int, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil && v >= 0 && v <= math.MaxInt32 {
			return int(v), true
		}
	}
	l.problem(n, path, "", "must be a whole number, 0 or more")
	return 0, false
}

// number returns a non-negative number scalar.
func (l *loader) number(n *yaml.Node, path string) (float64, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil && v >= 0 && !math.IsInf(v, 0) {
			return v, true
		}
	}
	l.problem(n, path, "", "must be a number, 0 or more")
	return 0, false
}

// boolean returns a true/false scalar.
func (l *loader) boolean(n *yaml.Node, path, rule string) (bool, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
	}
	l.problem(n, path, rule, "must be true or false")
	return false, false
}

// unknown reports a key the format does not have.
func (l *loader) unknown(p pair, path, rule string, known string) {
	l.problem(p.kn, join(path, p.key), rule, "unknown key %q (known: %s)", p.key, known)
}

// top reads the document's root mapping.
func (l *loader) top(n *yaml.Node) {
	pairs, ok := l.mapping(n, "", "")
	if !ok {
		return
	}
	var rolesNode *yaml.Node
	for _, p := range pairs {
		switch p.key {
		case "roles":
			rolesNode = p.v
		case "schemas":
			l.schemas(p.v)
		default:
			l.unknown(p, "", "", "roles, schemas")
		}
	}
	if rolesNode == nil || isNull(rolesNode) {
		l.problem(n, "roles", "", "the policy defines no roles (everything would be denied)")
		return
	}
	roles, ok := l.mapping(rolesNode, "roles", "")
	if !ok {
		return
	}
	for _, p := range roles {
		if p.key == "" {
			l.problem(p.kn, "roles", "", "a role needs a name")
			continue
		}
		l.role(p.key, p.v)
	}
}

// role reads one role.
func (l *loader) role(name string, n *yaml.Node) {
	path := "roles." + name
	r := &role{name: name, fieldSet: map[string]bool{},
		limits: Limits{MaxQueryCost: DefaultMaxQueryCost, QueryTimeout: DefaultQueryTimeout}}
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return
	}
	var readNode *yaml.Node
	for _, p := range pairs {
		switch p.key {
		case "read":
			readNode = p.v
			l.read(r, p.v, join(path, "read"))
		case "rules":
			l.rules(r, p.v, join(path, "rules"))
		case "limits":
			l.limits(r, p.v, join(path, "limits"))
		default:
			l.unknown(p, path, "", "read, rules, limits")
		}
	}
	if !r.allFields && !r.fieldSet["portal_type"] {
		r.fieldSet["portal_type"] = true
	}
	r.fields = sortedKeys(r.fieldSet)
	var reads method
	for _, ru := range r.allow {
		reads |= ru.methods & (mGet | mAllDocs)
	}
	if reads != 0 && readNode == nil {
		l.warn(n, path, "", "the role may get or list documents but has no read: section, so it reads only portal_type")
	}
	l.e.roles[name] = r
}

// read reads a role's `read:` section.
func (l *loader) read(r *role, n *yaml.Node, path string) {
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return
	}
	for _, p := range pairs {
		switch p.key {
		case "scope":
			if isNull(p.v) {
				continue
			}
			src, ok := l.str(p.v, join(path, "scope"), "")
			if !ok || strings.TrimSpace(src) == "" {
				continue
			}
			q, err := query.Parse(src)
			if err != nil {
				l.problem(p.v, join(path, "scope"), "", "not a jIO query: %v", err)
				var pe *query.ParseError
				if errors.As(err, &pe) && pe.Pos > 0 {
					last := &l.problems[len(l.problems)-1]
					last.Line, last.Column = l.exprPosition(resolve(p.v), 1, pe.Pos-1)
				}
				continue
			}
			r.scopeSrc, r.scope = src, q
		case "fields":
			list, star, ok := l.strList(p.v, join(path, "fields"), "")
			if !ok {
				continue
			}
			r.allFields = star
			for _, f := range list {
				r.fieldSet[f] = true
			}
		default:
			l.unknown(p, path, "", "scope, fields")
		}
	}
}

// limits reads a role's `limits:` section.
func (l *loader) limits(r *role, n *yaml.Node, path string) {
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return
	}
	burstSet := false
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "max_limit":
			r.limits.MaxLimit, _ = l.integer(p.v, kp)
		case "max_doc_bytes":
			r.limits.MaxDocBytes, _ = l.integer(p.v, kp)
		case "rate":
			r.limits.Rate, _ = l.number(p.v, kp)
		case "burst":
			r.limits.Burst, _ = l.integer(p.v, kp)
			burstSet = true
		case "max_concurrent_queries":
			r.limits.MaxConcurrentQueries, _ = l.integer(p.v, kp)
		case "max_query_cost":
			r.limits.MaxQueryCost, _ = l.integer(p.v, kp)
		case "query_timeout":
			r.limits.QueryTimeout = l.duration(p.v, kp)
		default:
			l.unknown(p, path, "", "max_limit, max_doc_bytes, rate, burst, max_concurrent_queries, max_query_cost, query_timeout")
		}
	}
	if r.limits.Rate > 0 && r.limits.Burst == 0 {
		if burstSet {
			l.problem(n, join(path, "burst"), "", "must be at least 1 when rate is set (a bucket of 0 tokens refuses everything)")
		}
		// Without a burst, allow one second's worth of requests at once.
		r.limits.Burst = max(1, int(math.Ceil(r.limits.Rate)))
	}
}

// duration reads a duration written as Go does ("5s", "1m30s"); 0 is no duration.
func (l *loader) duration(n *yaml.Node, path string) time.Duration {
	if v := resolve(n); v != nil && v.Kind == yaml.ScalarNode && v.Value == "0" {
		return 0
	}
	s, ok := l.str(n, path, "")
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		l.problem(n, path, "", `must be a duration such as "5s" or "1m", or 0`)
		return 0
	}
	return d
}

// rules reads a role's `rules:` list.
func (l *loader) rules(r *role, n *yaml.Node, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problem(n, path, "", "must be a list of rules")
		return
	}
	names := map[string]bool{}
	for i, c := range n.Content {
		ru := l.rule(r, c, fmt.Sprintf("%s[%d]", path, i))
		if ru == nil {
			continue
		}
		if names[ru.name] {
			l.problem(c, fmt.Sprintf("%s[%d].name", path, i), ru.name, "another rule of role %s has this name", r.name)
		}
		names[ru.name] = true
		r.rules = append(r.rules, ru)
		if ru.effect == effectAllow {
			r.allow = append(r.allow, ru)
		} else {
			r.deny = append(r.deny, ru)
		}
	}
}

// rule reads one rule; nil when it has problems.
func (l *loader) rule(r *role, n *yaml.Node, path string) *rule {
	ru := &rule{name: path, line: resolve(n).Line}
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return nil
	}
	for _, p := range pairs {
		if p.key == "name" {
			if s, ok := l.str(p.v, join(path, "name"), ""); ok && s != "" {
				ru.name = s
			}
		}
	}
	before := len(l.problems)
	var whenNode, methodsNode, typesNode, transNode, writeNode *yaml.Node
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "name":
		case "effect":
			s, ok := l.str(p.v, kp, ru.name)
			switch {
			case !ok:
			case s == "allow":
				ru.effect = effectAllow
			case s == "deny":
				ru.effect = effectDeny
			default:
				l.problem(p.v, kp, ru.name, "%q is not allow or deny", s)
			}
		case "methods":
			methodsNode = p.v
			list, star, ok := l.strList(p.v, kp, ru.name)
			if !ok {
				continue
			}
			if star {
				ru.methods = mAll
			}
			for i, s := range list {
				m := parseMethod(s)
				if m == 0 {
					msg := "is not get, allDocs, post, put, remove or action"
					if alwaysAllowed(s) {
						msg = "is always allowed to an enrolled peer; rules do not name it"
					}
					l.problem(resolve(p.v).Content[i], fmt.Sprintf("%s[%d]", kp, i), ru.name, "%q %s", s, msg)
					continue
				}
				ru.methods |= m
			}
		case "portal_types":
			typesNode = p.v
			list, star, ok := l.strList(p.v, kp, ru.name)
			if !ok {
				continue
			}
			ru.allTypes = star
			ru.types = map[string]bool{}
			for _, t := range list {
				ru.types[t] = true
				l.typeSet[t] = true
			}
			ru.typeList = list
		case "transitions":
			transNode = p.v
			list, star, ok := l.strList(p.v, kp, ru.name)
			if !ok {
				continue
			}
			ru.allTransitions = star
			ru.transitions = map[string]bool{}
			for _, t := range list {
				ru.transitions[t] = true
			}
			ru.transitionList = list
		case "write":
			writeNode = p.v
			list, star, ok := l.strList(p.v, kp, ru.name)
			if !ok {
				continue
			}
			ru.hasWrite, ru.allWrite = true, star
			ru.write = map[string]bool{}
			for _, f := range list {
				ru.write[f] = true
			}
			ru.writeList = list
		case "when":
			whenNode = p.v
			if isNull(p.v) {
				continue
			}
			src, ok := l.str(p.v, kp, ru.name)
			if ok {
				ru.when = l.compile(p.v, kp, ru.name, src)
			}
		default:
			l.unknown(p, path, ru.name, "name, effect, methods, portal_types, transitions, write, when")
		}
	}
	rn := resolve(n)
	if ru.effect == effectUnknown && len(l.problems) == before {
		l.problem(rn, join(path, "effect"), ru.name, "missing: allow or deny")
	}
	if methodsNode == nil {
		l.problem(rn, join(path, "methods"), ru.name, `missing: a list of get, allDocs, post, put, remove, action, or "*"`)
	}
	if typesNode == nil {
		l.problem(rn, join(path, "portal_types"), ru.name, `missing: a list of portal types, or ["*"]`)
	}
	if len(l.problems) > before {
		return nil
	}
	writes := ru.methods & (mPost | mPut)
	switch {
	case ru.effect == effectAllow && writes != 0 && !ru.hasWrite:
		l.problem(rn, join(path, "write"), ru.name, `missing: the rule allows %s, so it must list the fields it lets the role write (or "*")`, strings.Join(writes.names(), " and "))
	case ru.hasWrite && writes == 0:
		l.problem(writeNode, join(path, "write"), ru.name, "only rules for post or put name fields to write")
	}
	switch {
	case ru.effect == effectAllow && ru.methods.has(mAction) && transNode == nil:
		l.problem(rn, join(path, "transitions"), ru.name, `missing: the rule allows action, so it must list the workflow transitions it allows (or "*")`)
	case transNode != nil && !ru.methods.has(mAction):
		l.problem(transNode, join(path, "transitions"), ru.name, "only rules for action name transitions")
	case transNode == nil:
		// A deny rule without transitions denies every transition.
		ru.allTransitions = true
	}
	if ru.effect == effectDeny && ru.methods.has(mAllDocs) && ru.when != nil && ru.when.usesDoc {
		l.warn(whenNode, join(path, "when"), ru.name, "a condition on doc or old never applies to allDocs, so this rule does not deny allDocs; restrict lists with read.scope")
	}
	if len(l.problems) > before {
		return nil
	}
	return ru
}

// compile compiles a CEL expression held by scalar node n, reporting issues at their
// position in the file.
func (l *loader) compile(n *yaml.Node, path, rule, src string) *expr {
	x, issues := compileExpr(l.env, src)
	for _, is := range issues {
		line, col := l.exprPosition(resolve(n), is.line, is.col)
		l.problems = append(l.problems, Problem{File: l.file, Line: line, Column: col, Path: path, Rule: rule, Message: is.msg})
	}
	return x
}

// exprPosition maps a position inside an expression (1-based line, 0-based column) to the
// file. Exact for one-line plain or quoted scalars without escapes and for block scalars;
// otherwise close.
func (l *loader) exprPosition(n *yaml.Node, line, col int) (int, int) {
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The content starts on the line after the indicator, indented as its first line is.
		fl := n.Line + line
		if n.Line < len(l.lines) {
			first := l.lines[n.Line]
			indent := len(first) - len(strings.TrimLeft(first, " "))
			return fl, indent + col + 1
		}
		return fl, col + 1
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if line == 1 {
			return n.Line, n.Column + 1 + col
		}
	default:
		if line == 1 {
			return n.Line, n.Column + col
		}
	}
	return n.Line + line - 1, col + 1
}

// schemas reads the `schemas:` section.
func (l *loader) schemas(n *yaml.Node) {
	if isNull(n) {
		return
	}
	types, ok := l.mapping(n, "schemas", "")
	if !ok {
		return
	}
	for _, p := range types {
		s := l.schema(p.key, p.v, "schemas."+p.key)
		if s != nil {
			l.e.schemas[p.key] = s
		}
	}
}

// schema reads one portal type's schema.
func (l *loader) schema(pt string, n *yaml.Node, path string) *schema {
	s := &schema{portalType: pt, fields: map[string]*field{}}
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return nil
	}
	for _, p := range pairs {
		switch p.key {
		case "fields":
			if isNull(p.v) {
				continue
			}
			fields, ok := l.mapping(p.v, join(path, "fields"), "")
			if !ok {
				continue
			}
			for _, fp := range fields {
				if f := l.field(fp.key, fp.v, join(path, "fields."+fp.key)); f != nil {
					s.fields[fp.key] = f
					s.fieldList = append(s.fieldList, f)
				}
			}
		case "checks":
			l.checks(s, p.v, join(path, "checks"))
		case "containers":
			s.containers, s.anyContainer, _ = l.strList(p.v, join(path, "containers"), "")
		default:
			l.unknown(p, path, "", "fields, checks, containers")
		}
	}
	sort.Slice(s.fieldList, func(i, j int) bool { return s.fieldList[i].name < s.fieldList[j].name })
	return s
}

// field reads one field of a schema.
func (l *loader) field(name string, n *yaml.Node, path string) *field {
	f := &field{name: name}
	pairs, ok := l.mapping(n, path, "")
	if !ok {
		return nil
	}
	before := len(l.problems)
	var enumNode, patternNode, maxNode *yaml.Node
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "type":
			s, ok := l.str(p.v, kp, "")
			if !ok {
				continue
			}
			f.typ = parseFieldType(s)
			if f.typ == typeUnknown {
				l.problem(p.v, kp, "", "%q is not string, number, integer, boolean, date or list (of strings)", s)
			}
		case "required":
			f.required, _ = l.boolean(p.v, kp, "")
		case "max_length":
			maxNode = p.v
			f.maxLength, _ = l.integer(p.v, kp)
		case "pattern":
			patternNode = p.v
			s, ok := l.str(p.v, kp, "")
			if !ok {
				continue
			}
			re, err := regexp.Compile(s)
			if err != nil {
				l.problem(p.v, kp, "", "not a regular expression: %v", err)
				continue
			}
			f.pattern, f.re = s, re
		case "enum":
			enumNode = p.v
		default:
			l.unknown(p, path, "", "type, required, max_length, pattern, enum")
		}
	}
	if f.typ == typeUnknown {
		if len(l.problems) == before {
			l.problem(resolve(n), join(path, "type"), "", "missing: string, number, integer, boolean, date or list")
		}
		return nil
	}
	textual := f.typ == typeString || f.typ == typeList
	if maxNode != nil && !textual {
		l.problem(maxNode, join(path, "max_length"), "", "only string and list fields have a max_length")
	}
	if patternNode != nil && !textual {
		l.problem(patternNode, join(path, "pattern"), "", "only string and list fields have a pattern")
	}
	if enumNode != nil {
		l.enum(f, enumNode, join(path, "enum"))
	}
	if len(l.problems) > before {
		return nil
	}
	return f
}

// enum reads a field's list of allowed values.
func (l *loader) enum(f *field, n *yaml.Node, path string) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.problem(n, path, "", "must be a non-empty list of values")
		return
	}
	switch f.typ {
	case typeString, typeList:
		for i, c := range n.Content {
			if s, ok := l.str(c, fmt.Sprintf("%s[%d]", path, i), ""); ok {
				f.enum = append(f.enum, s)
				f.enumJSON = append(f.enumJSON, s)
			}
		}
	case typeNumber, typeInteger:
		for i, c := range n.Content {
			c = resolve(c)
			v, err := strconv.ParseFloat(c.Value, 64)
			if c.Kind != yaml.ScalarNode || (c.Tag != "!!int" && c.Tag != "!!float") || err != nil {
				l.problem(c, fmt.Sprintf("%s[%d]", path, i), "", "must be a number")
				continue
			}
			if f.typ == typeInteger && v != math.Trunc(v) {
				l.problem(c, fmt.Sprintf("%s[%d]", path, i), "", "must be a whole number")
				continue
			}
			f.enumNum = append(f.enumNum, v)
			f.enumJSON = append(f.enumJSON, json.Number(strconv.FormatFloat(v, 'g', -1, 64)))
		}
	default:
		l.problem(n, path, "", "only string, list, number and integer fields have an enum")
	}
}

// checks reads a schema's `checks:` list.
func (l *loader) checks(s *schema, n *yaml.Node, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problem(n, path, "", "must be a list of checks")
		return
	}
	names := map[string]bool{}
	for i, c := range n.Content {
		cp := fmt.Sprintf("%s[%d]", path, i)
		pairs, ok := l.mapping(c, cp, "")
		if !ok {
			continue
		}
		ck := &check{}
		var exprNode *yaml.Node
		for _, p := range pairs {
			kp := join(cp, p.key)
			switch p.key {
			case "name":
				ck.name, _ = l.str(p.v, kp, "")
			case "message":
				ck.message, _ = l.str(p.v, kp, "")
			case "expr":
				exprNode = p.v
			default:
				l.unknown(p, cp, "", "name, expr, message")
			}
		}
		rn := resolve(c)
		switch {
		case ck.name == "":
			l.problem(rn, join(cp, "name"), "", "missing: a name for the check")
		case names[ck.name]:
			l.problem(rn, join(cp, "name"), ck.name, "another check of %s has this name", s.portalType)
		}
		names[ck.name] = true
		if ck.message == "" {
			l.problem(rn, join(cp, "message"), ck.name, "missing: the message a form shows when the check fails")
		}
		if exprNode == nil {
			l.problem(rn, join(cp, "expr"), ck.name, "missing: a CEL expression that is true for a valid document")
			continue
		}
		src, ok := l.str(exprNode, join(cp, "expr"), ck.name)
		if !ok {
			continue
		}
		ck.expr = l.compile(exprNode, join(cp, "expr"), ck.name, src)
		if ck.expr != nil {
			s.checks = append(s.checks, ck)
		}
	}
}
