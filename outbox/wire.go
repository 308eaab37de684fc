package outbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// marshal encodes v as compact JSON with object keys sorted (encoding/json sorts map keys),
// json.Number literals kept, and no HTML escaping (the bytes go to ERP5, not to a page).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Wire returns the entry as the batch receiver reads it (docs/DESIGN.md appendix B), without "hash": seq, op
// and id always; portal_type and parent_relative_url for a post; fields for a post or put;
// base for a put (null for a field that was absent); transition and comment for an action;
// peer, key, keys and covers when set. Empty optional members are left out: every byte crosses the
// satellite.
func Wire(e *Entry) map[string]any {
	m := map[string]any{"seq": e.Seq, "op": e.Op, "id": e.DocID}
	switch e.Op {
	case OpPost:
		if e.PortalType != "" {
			m["portal_type"] = e.PortalType
		}
		if e.ParentID != "" {
			m["parent_relative_url"] = e.ParentID
		}
		m["fields"] = nonNil(e.Fields)
	case OpPut:
		f := nonNil(e.Fields)
		m["fields"] = f
		base := make(map[string]any, len(f))
		for k := range f {
			base[k] = e.Base[k] // nil (JSON null) when absent
		}
		m["base"] = base
	case OpAction:
		m["transition"] = e.Transition
		if e.Comment != "" {
			m["comment"] = e.Comment
		}
	}
	if e.Peer != "" {
		m["peer"] = e.Peer
	}
	if e.Key != "" {
		m["key"] = e.Key
	}
	if len(e.Keys) > 0 {
		m["keys"] = e.Keys
	}
	if len(e.Covers) > 0 {
		m["covers"] = e.Covers
	}
	return m
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Canonical returns the entry's canonical JSON: Wire(e) with keys sorted at every level, no
// spaces, number literals as written, "hash" left out. Its SHA-256 is the entry's hash.
func Canonical(e *Entry) ([]byte, error) {
	pre, post, err := wireParts(e)
	if err != nil {
		return nil, err
	}
	return joinParts(pre, post, ""), nil
}

// wireParts encodes Wire(e) as the members that sort before "hash" (pre, starting with "{")
// and those after it (post, starting with "id" and ending with "}"), so that the canonical
// JSON and the payload with its hash are two joins of one encoding. It writes exactly what
// marshal(Wire(e)) writes.
func wireParts(e *Entry) (pre, post []byte, err error) {
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	member := func(k string) {
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":`)
	}
	value := func(v any) {
		if err != nil {
			return
		}
		var enc []byte
		if enc, err = marshal(v); err == nil {
			b.Write(enc)
		}
	}
	str := func(s string) {
		if safeASCII(s) {
			b.WriteByte('"')
			b.WriteString(s)
			b.WriteByte('"')
			return
		}
		value(s)
	}
	// An entry read by a claim carries its stored columns, canonical by construction
	// (storedJSON): they are copied as they are.
	raw := e.Fields == nil && e.rawFields != nil
	fields := nonNil(e.Fields)
	if e.Op == OpPut {
		member("base")
		if raw && e.rawBase != nil {
			b.Write(e.rawBase)
		} else {
			base := make(map[string]any, len(fields))
			for k := range fields {
				base[k] = e.Base[k]
			}
			value(base)
		}
	}
	if e.Op == OpAction && e.Comment != "" {
		member("comment")
		str(e.Comment)
	}
	if len(e.Covers) > 0 {
		member("covers")
		value(e.Covers)
	}
	if e.Op == OpPost || e.Op == OpPut {
		member("fields")
		if raw {
			b.Write(e.rawFields)
		} else {
			value(fields)
		}
	}
	pre = append([]byte(nil), b.Bytes()...)
	b.Reset()
	n = 0
	member("id")
	str(e.DocID)
	if e.Key != "" {
		member("key")
		str(e.Key)
	}
	if len(e.Keys) > 0 {
		member("keys")
		value(e.Keys)
	}
	member("op")
	str(e.Op)
	if e.Op == OpPost && e.ParentID != "" {
		member("parent_relative_url")
		str(e.ParentID)
	}
	if e.Peer != "" {
		member("peer")
		str(e.Peer)
	}
	if e.Op == OpPost && e.PortalType != "" {
		member("portal_type")
		str(e.PortalType)
	}
	member("seq")
	b.WriteString(strconv.FormatInt(e.Seq, 10))
	if e.Op == OpAction {
		member("transition")
		str(e.Transition)
	}
	b.WriteByte('}')
	return pre, b.Bytes(), err
}

// joinParts joins wireParts' halves, with "hash" between them when hash is set.
func joinParts(pre, post []byte, hash string) []byte {
	out := make([]byte, 0, len(pre)+len(post)+len(hash)+12)
	out = append(out, pre...)
	if len(pre) > 1 {
		out = append(out, ',')
	}
	if hash != "" {
		out = append(out, `"hash":"`...)
		out = append(out, hash...)
		out = append(out, `",`...)
	}
	return append(out, post...)
}

// safeASCII reports whether s encodes as itself between quotes: printable ASCII other than
// the characters JSON (or marshal) escapes.
func safeASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Hash returns the SHA-256, in hex, of canonical.
func Hash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// Encoder returns the mode and the exact bytes a never-sent entry is first sent with; hash is
// the entry's hash. The uplink passes one to Claim (BatchEncoder for the receiver; its own for
// stock ERP5, whose requests are forms).
type Encoder func(e *Entry, hash string) (mode string, payload []byte, err error)

// BatchEncoder encodes an entry for the batch receiver: its canonical JSON with "hash" added
// (keys still sorted), exactly the bytes the receiver's "entries" array carries.
func BatchEncoder(e *Entry, hash string) (string, []byte, error) {
	pre, post, err := wireParts(e)
	if err != nil {
		return "", nil, err
	}
	return ModeBatch, joinParts(pre, post, hash), nil
}

// equalJSON reports whether two decoded JSON values are the same value: compared through
// their canonical encodings, so key order does not matter and number literals must match.
func equalJSON(a, b any) bool {
	ab, err1 := marshal(a)
	bb, err2 := marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// SameValue reports whether ERP5 would see a and b as the same value: equal JSON, with null,
// "" and absent (nil) counting as equal (docs/DESIGN.md §7, Conflicts).
func SameValue(a, b any) bool {
	if isBlank(a) && isBlank(b) {
		return true
	}
	return equalJSON(a, b)
}

func isBlank(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && s == ""
}
