package erp5sim

import (
	"encoding/json"
	"maps"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Document is one ERP5 document as the double holds it. Accessors return copies.
type Document struct {
	// ID is the relative URL, e.g. "person_module/12" or "sale_order_module/3/1".
	ID         string
	PortalType string
	// Properties are the document's own properties: string, json.Number, bool, nil or []any.
	// Workflow state (validation_state or simulation_state) is one of them.
	Properties map[string]any
	// CreationDate and ModificationDate carry full precision (microseconds); ModificationDate
	// is the document's version.
	CreationDate     time.Time
	ModificationDate time.Time
	// ReadOnly documents are rendered without `_actions.put` and refuse Base_edit (403).
	ReadOnly bool
}

// Version returns the document's version: its modification time at full precision.
func (d *Document) Version() string { return FormatVersion(d.ModificationDate) }

// Parent returns the relative URL of the document's container.
func (d *Document) Parent() string { return parentOf(d.ID) }

func parentOf(id string) string {
	dir := path.Dir(id)
	if dir == "." {
		return ""
	}
	return dir
}

func (d *Document) clone() *Document {
	c := *d
	c.Properties = cloneProps(d.Properties)
	return &c
}

func cloneProps(p map[string]any) map[string]any {
	c := make(map[string]any, len(p))
	for k, v := range p {
		if l, ok := v.([]any); ok {
			v = append([]any(nil), l...)
		}
		c[k] = v
	}
	return c
}

// catalogBody is the row the catalog indexes and queries evaluate: the properties plus the
// catalog's own columns. Dates are RFC 822 strings, as ERP5 returns them.
func (d *Document) catalogBody(uid int64) map[string]any {
	b := maps.Clone(d.Properties)
	if b == nil {
		b = map[string]any{}
	}
	b["portal_type"] = d.PortalType
	b["relative_url"] = d.ID
	b["id"] = path.Base(d.ID)
	b["parent_relative_url"] = d.Parent()
	b["uid"] = json.Number(strconv.FormatInt(uid, 10))
	b["creation_date"] = formatRFC822(d.CreationDate)
	b["modification_date"] = formatRFC822(d.ModificationDate)
	return b
}

// state is the receiver's `state` of a document: every property plus portal_type.
func (d *Document) state() map[string]any {
	s := cloneProps(d.Properties)
	s["portal_type"] = d.PortalType
	return s
}

// dateKeys are the catalog columns compared as dates.
var dateKeys = []string{"modification_date", "creation_date", "start_date", "stop_date"}

// Clock is a settable clock for tests: Now returns the time last set, unchanged until Set
// or Advance, so several edits can share one instant (or one second).
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// moduleOf returns the module a relative URL lives in ("person_module/1/2" → "person_module").
func moduleOf(id string) string {
	m, _, _ := strings.Cut(id, "/")
	return m
}

// isModule reports whether a relative URL names a module.
func isModule(id string) bool { return !strings.Contains(id, "/") && strings.HasSuffix(id, "_module") }

// valuesEqual compares two property values the way the receiver's conflict check does:
// null, "" and absent are equal; numbers compare by value; lists element by element.
func valuesEqual(a, b any) bool {
	a, b = normalize(a), normalize(b)
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valuesEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !valuesEqual(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func normalize(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	return v
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}
