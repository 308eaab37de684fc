package policy

// TypeInfo is what a role may do with one portal type: an element of the `types` array of the
// describe method's result (docs/DESIGN.md §3), from which the web app builds its forms.
type TypeInfo struct {
	PortalType string `json:"portal_type"`
	// Methods are the methods some rule allows (and no unconditional deny rule takes back);
	// a condition may still refuse a given document.
	Methods []string `json:"methods"`
	// Transitions are the workflow transitions action may apply; ["*"] for any.
	Transitions []string `json:"transitions"`
	// Readable are the fields the role reads; ["*"] for every field.
	Readable []string `json:"readable"`
	// Writable are the fields post and put may set; ["*"] for every field.
	Writable []string `json:"writable"`
	Schema   Schema   `json:"schema"`
}

// Schema is a portal type's schema as the policy file writes it.
type Schema struct {
	Fields map[string]FieldSchema `json:"fields"`
	Checks []CheckInfo            `json:"checks"`
}

// FieldSchema is one field of a Schema. Type is string, number, integer, boolean, date or
// list (a list of strings, to which max_length, pattern and enum apply element by element).
type FieldSchema struct {
	Type      string `json:"type"`
	Required  bool   `json:"required"`
	MaxLength int    `json:"max_length,omitempty"`
	Pattern   string `json:"pattern,omitempty"`
	Enum      []any  `json:"enum,omitempty"`
}

// CheckInfo is a whole-document check of a Schema: its name and the message a form shows
// when it fails.
type CheckInfo struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Describe returns the portal types role may use, sorted by name, each with its methods,
// transitions, readable and writable fields and schema. An unknown role gets none. Every
// slice is non-nil, so it encodes as [] rather than null.
func (e *Engine) Describe(role string) []TypeInfo {
	r := e.roles[role]
	out := []TypeInfo{}
	if r == nil {
		return out
	}
	var candidates []string
	all := false
	seen := map[string]bool{}
	for _, ru := range r.allow {
		all = all || ru.allTypes
		for _, t := range ru.typeList {
			if !seen[t] {
				seen[t] = true
				candidates = append(candidates, t)
			}
		}
	}
	if all {
		candidates = e.types
	}
	candidates = unique(append([]string(nil), candidates...))
	readable := []string{"*"}
	if !r.allFields {
		readable = append([]string(nil), r.fields...)
	}
	for _, pt := range candidates {
		ti := e.describeType(r, pt)
		if len(ti.Methods) == 0 {
			continue
		}
		ti.Readable = readable
		out = append(out, ti)
	}
	return out
}

// describeType computes one portal type's entry.
func (e *Engine) describeType(r *role, pt string) TypeInfo {
	var methods method
	trans := map[string]bool{}
	anyTrans, anyWrite := false, false
	write := map[string]bool{}
	for _, ru := range r.allow {
		if !(ru.allTypes || ru.types[pt]) {
			continue
		}
		methods |= ru.methods
		if ru.methods.has(mAction) {
			anyTrans = anyTrans || ru.allTransitions
			for _, t := range ru.transitionList {
				trans[t] = true
			}
		}
		if ru.hasWrite {
			anyWrite = anyWrite || ru.allWrite
			for _, f := range ru.writeList {
				write[f] = true
			}
		}
	}
	// Deny rules without conditions take back what they deny for every document.
	for _, ru := range r.deny {
		if ru.when != nil || !(ru.allTypes || ru.types[pt]) {
			continue
		}
		if ru.hasWrite {
			if !ru.allWrite {
				for _, f := range ru.writeList {
					delete(write, f)
				}
				continue
			}
			// Denying every field denies the writes themselves.
			methods &^= ru.methods & (mPost | mPut)
			continue
		}
		if ru.methods.has(mAction) && !ru.allTransitions {
			for _, t := range ru.transitionList {
				delete(trans, t)
			}
			methods &^= ru.methods &^ mAction
			continue
		}
		methods &^= ru.methods
	}
	ti := TypeInfo{PortalType: pt, Methods: methods.names(), Transitions: []string{}, Writable: []string{}}
	if ti.Methods == nil {
		ti.Methods = []string{}
	}
	if methods.has(mAction) {
		if anyTrans {
			ti.Transitions = []string{"*"}
		} else {
			ti.Transitions = sortedKeys(trans)
		}
	}
	if methods&(mPost|mPut) != 0 {
		if anyWrite {
			ti.Writable = []string{"*"}
		} else {
			ti.Writable = sortedKeys(write)
		}
	}
	ti.Schema = e.schemaInfo(pt)
	return ti
}

// schemaInfo returns the describe form of a portal type's schema; empty when it has none.
func (e *Engine) schemaInfo(pt string) Schema {
	out := Schema{Fields: map[string]FieldSchema{}, Checks: []CheckInfo{}}
	s := e.schemas[pt]
	if s == nil {
		return out
	}
	for _, f := range s.fieldList {
		out.Fields[f.name] = FieldSchema{
			Type:      f.typ.String(),
			Required:  f.required,
			MaxLength: f.maxLength,
			Pattern:   f.pattern,
			Enum:      append([]any(nil), f.enumJSON...),
		}
	}
	for _, c := range s.checks {
		out.Checks = append(out.Checks, CheckInfo{Name: c.name, Message: c.message})
	}
	return out
}
