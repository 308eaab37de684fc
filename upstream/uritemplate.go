package upstream

import (
	"fmt"
	"strconv"
	"strings"
)

// Expand expands an RFC 6570 URI template (levels 1 to 4, without associative arrays) with
// vars. A value is a string, a []string (a list), or anything fmt formats (numbers); a name
// absent from vars, or bound to nil or an empty list, is undefined and omitted; an empty
// string is defined and kept (`{&query}` with "" gives "&query="). ERP5's entry points are
// such templates (docs/DESIGN.md appendix A): `{&relative_url,view}`, `{&query,select_list*,limit*,…}`.
//
// Unlike url.QueryEscape, every octet outside the unreserved set is percent-encoded (space is
// %20, never +; ':' '/' ',' '"' '[' are encoded), except with the reserved operators '+' and
// '#', which keep reserved characters and existing pct-encodings.
func Expand(template string, vars map[string]any) (string, error) {
	var b strings.Builder
	for i := 0; i < len(template); {
		c := template[i]
		switch c {
		case '{':
			end := strings.IndexByte(template[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("uri template %q: unclosed expression at %d", template, i)
			}
			if err := expandExpr(&b, template[i+1:i+end], vars); err != nil {
				return "", fmt.Errorf("uri template %q: %w", template, err)
			}
			i += end + 1
		case '}':
			return "", fmt.Errorf("uri template %q: stray '}' at %d", template, i)
		default:
			// Literals: copied, with characters a URI may not hold percent-encoded.
			if isUnreserved(c) || isReserved(c) || c == '%' {
				b.WriteByte(c)
			} else {
				pctEncode(&b, c)
			}
			i++
		}
	}
	return b.String(), nil
}

// operator is one RFC 6570 expression operator's behaviour (RFC 6570 appendix A).
type operator struct {
	first    string
	sep      string
	named    bool
	ifemp    string
	reserved bool // allow reserved characters unencoded
}

var operators = map[byte]operator{
	0:   {first: "", sep: ",", named: false, ifemp: "", reserved: false},
	'+': {first: "", sep: ",", named: false, ifemp: "", reserved: true},
	'.': {first: ".", sep: ".", named: false, ifemp: "", reserved: false},
	'/': {first: "/", sep: "/", named: false, ifemp: "", reserved: false},
	';': {first: ";", sep: ";", named: true, ifemp: "", reserved: false},
	'?': {first: "?", sep: "&", named: true, ifemp: "=", reserved: false},
	'&': {first: "&", sep: "&", named: true, ifemp: "=", reserved: false},
	'#': {first: "#", sep: ",", named: false, ifemp: "", reserved: true},
}

// expandExpr writes one expression (the text between braces).
func expandExpr(b *strings.Builder, expr string, vars map[string]any) error {
	if expr == "" {
		return fmt.Errorf("empty expression")
	}
	op := operators[0]
	if o, isOp := operators[expr[0]]; isOp && expr[0] != 0 {
		op = o
		expr = expr[1:]
	} else if strings.IndexByte("=,!@|", expr[0]) >= 0 {
		return fmt.Errorf("reserved operator %q", expr[0])
	}
	first := true
	for _, spec := range strings.Split(expr, ",") {
		name, explode, prefix, err := parseVarSpec(spec)
		if err != nil {
			return err
		}
		val, defined := lookup(vars, name)
		if !defined {
			continue
		}
		if first {
			b.WriteString(op.first)
			first = false
		} else {
			b.WriteString(op.sep)
		}
		switch v := val.(type) {
		case string:
			if prefix > 0 {
				v = truncateRunes(v, prefix)
			}
			if op.named {
				b.WriteString(name)
				if v == "" {
					b.WriteString(op.ifemp)
					continue
				}
				b.WriteByte('=')
			}
			encode(b, v, op.reserved)
		case []string:
			if prefix > 0 {
				return fmt.Errorf("prefix modifier on list %q", name)
			}
			if !explode {
				if op.named {
					b.WriteString(name)
					b.WriteByte('=')
				}
				for j, item := range v {
					if j > 0 {
						b.WriteByte(',')
					}
					encode(b, item, op.reserved)
				}
				continue
			}
			for j, item := range v {
				if j > 0 {
					b.WriteString(op.sep)
				}
				if op.named {
					b.WriteString(name)
					if item == "" {
						b.WriteString(op.ifemp)
						continue
					}
					b.WriteByte('=')
				}
				encode(b, item, op.reserved)
			}
		}
	}
	return nil
}

// lookup returns vars[name] normalised to a string or a []string, and whether it is defined.
func lookup(vars map[string]any, name string) (any, bool) {
	v, ok := vars[name]
	if !ok || v == nil {
		return nil, false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case []string:
		if len(x) == 0 {
			return nil, false
		}
		return x, true
	case []int:
		if len(x) == 0 {
			return nil, false
		}
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = strconv.Itoa(n)
		}
		return s, true
	case []any:
		if len(x) == 0 {
			return nil, false
		}
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = fmt.Sprint(n)
		}
		return s, true
	default:
		return fmt.Sprint(x), true
	}
}

// parseVarSpec splits "name", "name*" or "name:3".
func parseVarSpec(spec string) (name string, explode bool, prefix int, err error) {
	switch {
	case strings.HasSuffix(spec, "*"):
		name, explode = spec[:len(spec)-1], true
	case strings.Contains(spec, ":"):
		i := strings.IndexByte(spec, ':')
		name = spec[:i]
		prefix, err = strconv.Atoi(spec[i+1:])
		if err != nil || prefix <= 0 || prefix >= 10000 {
			return "", false, 0, fmt.Errorf("bad prefix in %q", spec)
		}
	default:
		name = spec
	}
	if name == "" {
		return "", false, 0, fmt.Errorf("empty variable name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '%') {
			return "", false, 0, fmt.Errorf("bad variable name %q", name)
		}
	}
	return name, explode, prefix, nil
}

func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// encode writes s percent-encoded: unreserved characters as they are, and with reserved true
// also reserved characters and well-formed pct-encodings.
func encode(b *strings.Builder, s string, reserved bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c):
			b.WriteByte(c)
		case reserved && isReserved(c):
			b.WriteByte(c)
		case reserved && c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteString(s[i : i+3])
			i += 2
		default:
			pctEncode(b, c)
		}
	}
}

func pctEncode(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&15])
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isUnreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

func isReserved(c byte) bool {
	return strings.IndexByte(":/?#[]@!$&'()*+,;=", c) >= 0
}
