package erp5sim

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"sitesync.example/gateway/query"
)

// FieldType is a Formulator field type, as ERP5's hal+json form names it in `type`.
type FieldType string

// The field types the double's forms use. jIO reads the first five into documents.
const (
	StringField   FieldType = "StringField"
	EmailField    FieldType = "EmailField"
	IntegerField  FieldType = "IntegerField"
	FloatField    FieldType = "FloatField"
	TextAreaField FieldType = "TextAreaField"
	DateTimeField FieldType = "DateTimeField"
	CheckBoxField FieldType = "CheckBoxField"
)

// Field is one property of a portal type's view form (`my_<Name>`).
type Field struct {
	Name     string
	Type     FieldType
	Title    string
	ReadOnly bool // rendered with "editable": false; Base_edit and the receiver refuse it
}

// PortalType describes a portal type the double knows: its view form and its workflow.
type PortalType struct {
	Name     string
	Module   string // the module its documents live in ("" for contained types)
	Fields   []Field
	StateVar string // the workflow state variable: validation_state or simulation_state
	Workflow map[string]Transition
}

// Transition is one workflow transition: the states it leaves from and the one it enters.
type Transition struct {
	From []string
	To   string
}

// The workflows the double applies: ERP5's validation_workflow and order_workflow, derived
// from their graphs (forms.go).
var (
	validationWorkflow = validationWorkflowDef.transitions(validationTargets)
	orderWorkflow      = orderWorkflowDef.transitions(orderTargets)
)

// PortalTypes are the portal types with a closed form. Any other portal type gets an open
// form (every property is a StringField) and the validation workflow.
var PortalTypes = map[string]*PortalType{
	"Person": {Name: "Person", Module: "person_module", StateVar: "validation_state", Workflow: validationWorkflow, Fields: []Field{
		{Name: "title", Type: StringField, Title: "Title"},
		{Name: "first_name", Type: StringField, Title: "First Name"},
		{Name: "last_name", Type: StringField, Title: "Last Name"},
		{Name: "reference", Type: StringField, Title: "Reference"},
		{Name: "default_email_text", Type: EmailField, Title: "Email"},
		{Name: "default_telephone_text", Type: StringField, Title: "Telephone"},
		{Name: "function", Type: StringField, Title: "Function"},
		{Name: "subordination", Type: StringField, Title: "Organisation"},
		{Name: "start_date", Type: DateTimeField, Title: "Start Date"},
		{Name: "description", Type: TextAreaField, Title: "Description"},
		{Name: "validation_state", Type: StringField, Title: "State", ReadOnly: true},
	}},
	"Organisation": {Name: "Organisation", Module: "organisation_module", StateVar: "validation_state", Workflow: validationWorkflow, Fields: []Field{
		{Name: "title", Type: StringField, Title: "Title"},
		{Name: "reference", Type: StringField, Title: "Reference"},
		{Name: "corporate_name", Type: StringField, Title: "Corporate Name"},
		{Name: "default_email_text", Type: EmailField, Title: "Email"},
		{Name: "default_telephone_text", Type: StringField, Title: "Telephone"},
		{Name: "default_address_street_address", Type: TextAreaField, Title: "Address"},
		{Name: "default_address_zip_code", Type: StringField, Title: "Postal Code"},
		{Name: "default_address_city", Type: StringField, Title: "City"},
		{Name: "role", Type: StringField, Title: "Role"},
		{Name: "description", Type: TextAreaField, Title: "Description"},
		{Name: "validation_state", Type: StringField, Title: "State", ReadOnly: true},
	}},
	"Product": {Name: "Product", Module: "product_module", StateVar: "validation_state", Workflow: validationWorkflow, Fields: []Field{
		{Name: "title", Type: StringField, Title: "Title"},
		{Name: "reference", Type: StringField, Title: "Reference"},
		{Name: "ean13_code", Type: StringField, Title: "EAN13"},
		{Name: "product_line", Type: StringField, Title: "Product Line"},
		{Name: "quantity_unit", Type: StringField, Title: "Quantity Unit"},
		{Name: "base_price", Type: FloatField, Title: "Base Price"},
		{Name: "weight", Type: FloatField, Title: "Weight"},
		{Name: "description", Type: TextAreaField, Title: "Description"},
		{Name: "validation_state", Type: StringField, Title: "State", ReadOnly: true},
	}},
	"Sale Order": {Name: "Sale Order", Module: "sale_order_module", StateVar: "simulation_state", Workflow: orderWorkflow, Fields: []Field{
		{Name: "title", Type: StringField, Title: "Title"},
		{Name: "reference", Type: StringField, Title: "Reference"},
		{Name: "source", Type: StringField, Title: "Supplier"},
		{Name: "source_section", Type: StringField, Title: "Supplier Section"},
		{Name: "destination", Type: StringField, Title: "Client"},
		{Name: "destination_section", Type: StringField, Title: "Client Section"},
		{Name: "start_date", Type: DateTimeField, Title: "Start Date"},
		{Name: "stop_date", Type: DateTimeField, Title: "Stop Date"},
		{Name: "price_currency", Type: StringField, Title: "Currency"},
		{Name: "comment", Type: TextAreaField, Title: "Comment"},
		{Name: "simulation_state", Type: StringField, Title: "State", ReadOnly: true},
	}},
	"Sale Order Line": {Name: "Sale Order Line", StateVar: "simulation_state", Workflow: orderWorkflow, Fields: []Field{
		{Name: "title", Type: StringField, Title: "Title"},
		{Name: "resource", Type: StringField, Title: "Product"},
		{Name: "quantity", Type: FloatField, Title: "Quantity"},
		{Name: "price", Type: FloatField, Title: "Price"},
		{Name: "int_index", Type: IntegerField, Title: "Index"},
		{Name: "description", Type: TextAreaField, Title: "Description"},
		{Name: "simulation_state", Type: StringField, Title: "State", ReadOnly: true},
	}},
}

// portalType returns the description of a portal type, an open one for unknown types.
func portalType(name string) *PortalType {
	if pt, ok := PortalTypes[name]; ok {
		return pt
	}
	return &PortalType{Name: name, StateVar: "validation_state", Workflow: validationWorkflow}
}

// field returns the form field for a property: the schema's, or an open StringField for a
// type without a closed form. ok is false when a closed form has no such field.
func (pt *PortalType) field(name string) (Field, bool) {
	for _, f := range pt.Fields {
		if f.Name == name {
			return f, true
		}
	}
	if len(pt.Fields) == 0 {
		return Field{Name: name, Type: StringField, Title: name}, true
	}
	return Field{}, false
}

// protected are the properties no edit may set: identity, dates and workflow variables.
var protected = map[string]bool{
	"id": true, "relative_url": true, "parent_relative_url": true, "uid": true,
	"creation_date": true, "modification_date": true,
	"validation_state": true, "simulation_state": true,
}

// valueError is a value a field refuses; Message is Formulator's wording.
type valueError struct {
	Field   string
	Message string
}

func (e *valueError) Error() string { return e.Field + ": " + e.Message }

// coerce converts a JSON value given for a property to the value stored, as ERP5's property
// setters would: null and "" clear a property; numbers and numeric strings set a number
// field; dates are stored in RFC 822 form. Strings fields take strings only.
func coerce(f Field, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if s, ok := v.(string); ok && s == "" {
		if f.Type == StringField || f.Type == TextAreaField || f.Type == EmailField {
			return "", nil
		}
		return nil, nil
	}
	switch f.Type {
	case IntegerField, FloatField:
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		case string:
			s = strings.TrimSpace(x)
		default:
			return nil, &valueError{f.Name, numberMessage(f.Type)}
		}
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
			return nil, &valueError{f.Name, numberMessage(f.Type)}
		}
		if f.Type == IntegerField {
			if n != math.Trunc(n) {
				return nil, &valueError{f.Name, numberMessage(f.Type)}
			}
			return json.Number(strconv.FormatInt(int64(n), 10)), nil
		}
		return json.Number(formatFloat(n)), nil
	case DateTimeField:
		s, ok := v.(string)
		if !ok {
			return nil, &valueError{f.Name, "You did not enter a valid date and time."}
		}
		t, _, ok := query.ParseDate(strings.TrimSpace(s))
		if !ok {
			return nil, &valueError{f.Name, "You did not enter a valid date and time."}
		}
		return formatRFC822(t), nil
	case CheckBoxField:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			return x == "1" || x == "on" || x == "true", nil
		}
		return nil, &valueError{f.Name, "You did not check or uncheck the box."}
	case EmailField:
		s, ok := v.(string)
		at := strings.LastIndex(s, "@")
		if !ok || at < 1 || !strings.Contains(s[at+1:], ".") || strings.ContainsAny(s, " \t\n") {
			return nil, &valueError{f.Name, "You did not enter a valid email address."}
		}
		return s, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, &valueError{f.Name, "You did not enter a string."}
	}
	return s, nil
}

func numberMessage(t FieldType) string {
	if t == IntegerField {
		return "You did not enter an integer."
	}
	return "You did not enter a floating point number."
}

// formatFloat writes a float the way Python's repr does for the values a form holds, so the
// double and the Python receiver agree on numbers: integral values keep ".0".
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// Time formats. Versions carry microseconds, the precision of ERP5's DateTime; dates in
// search results and forms are RFC 822 with a numeric zone, as ERP5 writes them.
const (
	VersionLayout = "2006-01-02T15:04:05.000000Z07:00"
	RFC822Layout  = time.RFC1123Z
)

// FormatVersion returns the version string of a modification time: UTC, microseconds,
// fixed width, so versions sort as text.
func FormatVersion(t time.Time) string { return t.UTC().Format(VersionLayout) }

// ParseVersion parses a version string.
func ParseVersion(s string) (time.Time, error) {
	t, err := time.Parse(VersionLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse version %q: %w", s, err)
	}
	return t, nil
}

func formatRFC822(t time.Time) string { return t.UTC().Format(RFC822Layout) }
