package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// fieldType is a schema field's type.
type fieldType uint8

const (
	typeUnknown fieldType = iota
	typeString
	typeNumber
	typeInteger
	typeBoolean
	typeDate
	typeList // a list of strings
)

// String returns the type's name as the policy file and describe spell it.
func (t fieldType) String() string {
	switch t {
	case typeString:
		return "string"
	case typeNumber:
		return "number"
	case typeInteger:
		return "integer"
	case typeBoolean:
		return "boolean"
	case typeDate:
		return "date"
	case typeList:
		return "list"
	}
	return "unknown"
}

// parseFieldType reads a type name; "list of string(s)" is accepted for list.
func parseFieldType(s string) fieldType {
	switch s {
	case "string":
		return typeString
	case "number":
		return typeNumber
	case "integer":
		return typeInteger
	case "boolean":
		return typeBoolean
	case "date":
		return typeDate
	case "list", "list of string", "list of strings":
		return typeList
	}
	return typeUnknown
}

// schema is one portal type's `schemas:` entry.
type schema struct {
	portalType string
	fields     map[string]*field
	fieldList  []*field // sorted by name
	checks     []*check
	// containers are the portal types whose documents may hold one of this type (a post's
	// parent_relative_url); anyContainer is `containers: "*"`.
	containers   []string
	anyContainer bool
}

// field is one field of a schema.
type field struct {
	name      string
	typ       fieldType
	required  bool
	maxLength int // in characters; for a list, of each element
	pattern   string
	re        *regexp.Regexp
	enum      []string  // string and list fields
	enumNum   []float64 // number and integer fields
	enumJSON  []any     // the enum as describe shows it
}

// check is a CEL expression over the whole document.
type check struct {
	name    string
	message string
	expr    *expr
}

// validate checks doc against the schema: each field, then each check. The error is
// gateway.EINVALID with a message per failing field in Fields.
func (s *schema) validate(doc map[string]any, ev *evaluator) error {
	var fields map[string]string
	var msgs []string
	for _, f := range s.fieldList {
		if msg := f.validate(doc[f.name]); msg != "" {
			if fields == nil {
				fields = map[string]string{}
			}
			fields[f.name] = msg
			msgs = append(msgs, f.name+" "+msg)
		}
	}
	for _, c := range s.checks {
		ok, err := ev.eval(c.expr, "check "+c.name)
		if err != nil || !ok {
			msgs = append(msgs, c.message)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &gateway.Error{
		Code:    gateway.EINVALID,
		Message: strings.Join(msgs, "; "),
		Fields:  fields,
	}
}

// isEmpty reports whether a value counts as not given: absent, null, "" or an empty list
// (ERP5 stores them alike).
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case []string:
		return len(v) == 0
	}
	return false
}

// validate returns what is wrong with one field's value, "" when nothing is.
func (f *field) validate(v any) string {
	if isEmpty(v) {
		if f.required {
			return "is required"
		}
		return ""
	}
	switch f.typ {
	case typeString:
		s, ok := v.(string)
		if !ok {
			return "must be a string"
		}
		return f.checkText(s)
	case typeList:
		switch l := v.(type) {
		case []any:
			for _, e := range l {
				s, ok := e.(string)
				if !ok {
					return "must be a list of strings"
				}
				if msg := f.checkText(s); msg != "" {
					return "element " + strconv.Quote(s) + " " + msg
				}
			}
		case []string:
			for _, s := range l {
				if msg := f.checkText(s); msg != "" {
					return "element " + strconv.Quote(s) + " " + msg
				}
			}
		default:
			return "must be a list of strings"
		}
	case typeNumber, typeInteger:
		n, ok := toFloat(v)
		if !ok {
			return "must be a number"
		}
		if f.typ == typeInteger && (n != math.Trunc(n) || math.Abs(n) > 1<<53) {
			return "must be a whole number"
		}
		if len(f.enumNum) > 0 {
			for _, e := range f.enumNum {
				if e == n {
					return ""
				}
			}
			return "must be one of " + joinJSON(f.enumJSON)
		}
	case typeBoolean:
		if _, ok := v.(bool); !ok {
			return "must be true or false"
		}
	case typeDate:
		s, ok := v.(string)
		if !ok || !isDate(s) {
			return "must be a date, like 2024-05-31 or 2024-05-31 14:30:00"
		}
	}
	return ""
}

// checkText applies max_length, pattern and enum to a string.
func (f *field) checkText(s string) string {
	if f.maxLength > 0 && utf8.RuneCountInString(s) > f.maxLength {
		return fmt.Sprintf("must be at most %d characters", f.maxLength)
	}
	if f.re != nil && !f.re.MatchString(s) {
		return "must match " + f.pattern
	}
	if len(f.enum) > 0 {
		for _, e := range f.enum {
			if e == s {
				return ""
			}
		}
		return "must be one of " + joinJSON(f.enumJSON)
	}
	return ""
}

// joinJSON writes enum values as a form shows them: A, B or C.
func joinJSON(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ", ")
}

// toFloat returns a JSON number's value; ok is false for anything else.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil && !math.IsInf(f, 0)
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	}
	return 0, false
}

// isDate reports whether s is a date the query language compares as one (query.ParseDate):
// ISO 8601 at any precision, or RFC 822/1123 as ERP5 sends it. A date field that queries could
// not compare would silently drop out of date-keyed filters and sorts.
func isDate(s string) bool {
	_, _, ok := query.ParseDate(s)
	return ok
}
