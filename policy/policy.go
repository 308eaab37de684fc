// Package policy decides what each role may read and write (docs/DESIGN.md §3, §4, §8): rules and
// schemas from a YAML file, CEL conditions compiled once at load, jIO query scoping and per-peer
// rate limits. Deny by default; a matching deny rule wins over any allow rule. Every refusal is
// a *gateway.Error whose Reason is a stable word a form can branch on.
//
// The package is pure: Load reads the policy file, nothing else does I/O.
package policy

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"cel.dev/cel-go/cel"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// LogKeySubsystem is the slog key naming the component a log line comes from.
const LogKeySubsystem = "subsystem"

// Reason words of the refusals this package returns (gateway.Error.Reason). Each refines
// gateway.EFORBIDDEN unless noted.
const (
	ReasonUnknownRole          = "unknown_role"           // the peer's role is not in the policy
	ReasonDenied               = "denied"                 // a deny rule matched
	ReasonTypeNotAllowed       = "type_not_allowed"       // no rule of the role names the portal type
	ReasonMethodNotAllowed     = "method_not_allowed"     // no allow rule grants the method on the type
	ReasonTransitionNotAllowed = "transition_not_allowed" // no allow rule grants the workflow transition
	ReasonConditionFailed      = "condition_failed"       // allow rules matched but no `when` held
	ReasonFieldNotWritable     = "field_not_writable"     // the request changes a field no rule lets it write
	ReasonFieldNotReadable     = "field_not_readable"     // a query filters or sorts on an unreadable field
	ReasonOutOfScope           = "out_of_scope"           // a get of a document outside read.scope
	ReasonRateLimited          = "rate_limited"           // gateway.ERATELIMITED: the peer's token bucket is empty
)

// Engine is a loaded policy. It is safe for concurrent use; a changed policy file is a new
// Engine (Load again).
type Engine struct {
	// Logger receives one line for every CEL expression that fails to evaluate (the request
	// is then refused). Defaults to slog.Default() with subsystem "policy".
	Logger *slog.Logger

	// Now is the clock CEL's `now` reads. Defaults to time.Now.
	Now func() time.Time

	// DateKeys names the keys compared as dates (the configuration's query.date_keys) when a
	// get is checked against read.scope. ScopeQuery uses its options' DateKeys instead.
	DateKeys []string

	name      string
	roles     map[string]*role
	roleNames []string
	schemas   map[string]*schema
	types     []string // every portal type the file names, sorted
	warnings  []Problem
	env       *cel.Env
}

// role is one entry of `roles:`.
type role struct {
	name      string
	scopeSrc  string
	scope     query.Query // nil: no restriction beyond the rules' portal types
	allFields bool        // read.fields: "*"
	fields    []string    // readable fields, sorted; always holds portal_type
	fieldSet  map[string]bool
	rules     []*rule // in file order
	allow     []*rule
	deny      []*rule
	limits    Limits
}

// effect is what a rule does when it matches.
type effect uint8

const (
	effectUnknown effect = iota
	effectAllow
	effectDeny
)

func (e effect) String() string {
	switch e {
	case effectAllow:
		return "allow"
	case effectDeny:
		return "deny"
	}
	return "unknown"
}

// rule is one entry of a role's `rules:`.
type rule struct {
	name   string // `name:` or roles.ROLE.rules[i]
	line   int
	effect effect

	methods method // a set of method bits

	allTypes bool
	types    map[string]bool
	typeList []string

	allTransitions bool
	transitions    map[string]bool
	transitionList []string

	hasWrite  bool // write: was given
	allWrite  bool
	write     map[string]bool
	writeList []string

	when *expr
}

// matches reports whether the rule applies to method m on portal type pt (and, for action,
// transition tr).
func (r *rule) matches(m method, pt, tr string) bool {
	if !r.methods.has(m) || !(r.allTypes || r.types[pt]) {
		return false
	}
	return m != mAction || r.allTransitions || r.transitions[tr]
}

// Limits are a role's request limits (`limits:`). Zero means no limit.
type Limits struct {
	// MaxLimit caps the number of rows an allDocs returns.
	MaxLimit int `json:"max_limit"`
	// MaxDocBytes caps the size of a written document's JSON, in bytes.
	MaxDocBytes int `json:"max_doc_bytes"`
	// Rate is the sustained number of requests per second a peer may make, with Burst tokens.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// MaxConcurrentQueries caps the allDocs a peer may have running at once.
	MaxConcurrentQueries int `json:"max_concurrent_queries"`
	// MaxQueryCost caps an allDocs's estimated cost before it runs (QueryCost: weighted terms
	// times the documents the role's query may scan). Absent from the file it is
	// DefaultMaxQueryCost; 0 is no cap.
	MaxQueryCost int `json:"max_query_cost"`
	// QueryTimeout cancels an allDocs still running after it (SQLite interrupts the
	// statement). Absent from the file it is DefaultQueryTimeout; 0 is no deadline.
	QueryTimeout time.Duration `json:"query_timeout"`
}

// Load reads and compiles the policy file at path. Every problem in the file is reported at
// once, as a *LoadError.
func Load(path string) (*Engine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Name returns the file name the policy was parsed under.
func (e *Engine) Name() string { return e.name }

// Warnings returns what the file does that is allowed but probably not meant (a deny rule
// whose document condition cannot apply to allDocs, say). `gateway policy check` prints them.
func (e *Engine) Warnings() []Problem { return append([]Problem(nil), e.warnings...) }

// Roles returns the roles the policy defines, sorted.
func (e *Engine) Roles() []string { return append([]string(nil), e.roleNames...) }

// HasRole reports whether the policy defines role. Operator tools (`--as-role`) check it
// before applying a role to a write with AuthorizeWrite.
func (e *Engine) HasRole(role string) bool { return e.roles[role] != nil }

// Limits returns role's limits; the zero Limits (no limits) for an unknown role, whose
// requests are refused anyway.
func (e *Engine) Limits(role string) Limits {
	if r := e.roles[role]; r != nil {
		return r.limits
	}
	return Limits{}
}

// CheckDocSize refuses a written document of n bytes over role's max_doc_bytes with
// gateway.ETOOLARGE.
func (e *Engine) CheckDocSize(role string, n int) error {
	r := e.roles[role]
	if r == nil || r.limits.MaxDocBytes <= 0 || n <= r.limits.MaxDocBytes {
		return nil
	}
	return gateway.Errorf(gateway.ETOOLARGE, "the document is %d bytes; role %s may write at most %d", n, role, r.limits.MaxDocBytes)
}

// logger returns the engine's logger.
func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default().With(LogKeySubsystem, "policy")
}

// now returns the engine's idea of the current time.
func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// forbidden returns a gateway.EFORBIDDEN error with a reason word.
func forbidden(reason, format string, args ...any) *gateway.Error {
	return gateway.ReasonErrorf(gateway.EFORBIDDEN, reason, format, args...)
}

// method is one RPC method the rules name, as a bit.
type method uint8

const (
	mGet method = 1 << iota
	mAllDocs
	mPost
	mPut
	mRemove
	mAction
)

// mAll is every method a rule can name ("*").
const mAll = mGet | mAllDocs | mPost | mPut | mRemove | mAction

// methodNames lists the methods in the order describe reports them.
var methodNames = []struct {
	name string
	m    method
}{
	{gateway.MethodGet, mGet},
	{gateway.MethodAllDocs, mAllDocs},
	{gateway.MethodPost, mPost},
	{gateway.MethodPut, mPut},
	{gateway.MethodRemove, mRemove},
	{gateway.MethodAction, mAction},
}

// parseMethod returns the bit of a method name, 0 if the rules cannot name it.
func parseMethod(s string) method {
	for _, n := range methodNames {
		if n.name == s {
			return n.m
		}
	}
	return 0
}

func (m method) String() string {
	for _, n := range methodNames {
		if n.m == m {
			return n.name
		}
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// has reports whether the set m holds the method x.
func (m method) has(x method) bool { return m&x != 0 }

// names returns the methods of the set in describe's order.
func (m method) names() []string {
	var out []string
	for _, n := range methodNames {
		if m&n.m != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// alwaysAllowed reports whether an enrolled peer may call a method whatever its role.
func alwaysAllowed(name string) bool {
	switch name {
	case gateway.MethodDescribe, gateway.MethodSync, gateway.MethodStatus:
		return true
	}
	return false
}

// sortedKeys returns the keys of a set, sorted.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
