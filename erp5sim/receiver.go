package erp5sim

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"sitesync.example/gateway/query"
)

// Receiver limits that do not depend on options.
const (
	// MaxDecodedBytes bounds a decompressed request body (a zip bomb gets 413).
	MaxDecodedBytes = 64 << 20
	// MaxResultSeqs bounds the seqs one results query may name (413 above).
	MaxResultSeqs = 100_000
)

// zstd coders are built once, outside any synctest bubble (they hold channels), and are
// safe for concurrent EncodeAll/DecodeAll.
var (
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecodedBytes))
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
)

// record is what the receiver remembers for an entry key or a write key.
type record struct {
	hash   string
	result map[string]any
}

func entryKey(gateway, epoch string, seq int64) string {
	return "s\x00" + gateway + "\x00" + epoch + "\x00" + strconv.FormatInt(seq, 10)
}

func writeKey(gateway, peer, key string) string {
	return "k\x00" + gateway + "\x00" + peer + "\x00" + key
}

func ownKey(gateway, id string) string { return gateway + "\x00" + id }

// receiverError is a whole-request failure: status and a JSON body {"error", "message"}.
type receiverError struct {
	status int
	code   string
	msg    string
}

func (e *receiverError) Error() string { return e.code + ": " + e.msg }

func badRequest(format string, args ...any) *receiverError {
	return &receiverError{http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...)}
}

func writeReceiverError(w http.ResponseWriter, err error) {
	var re *receiverError
	if !errors.As(err, &re) {
		re = &receiverError{http.StatusInternalServerError, "internal", err.Error()}
	}
	writeJSON(w, re.status, "application/json", map[string]any{"error": re.code, "message": re.msg})
}

func (s *Server) handleCapability(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	writeJSON(w, http.StatusOK, "application/json", s.capability())
}

func (s *Server) capability() map[string]any {
	return map[string]any{
		"version":         1,
		"encodings":       s.encodings,
		"max_batch_bytes": s.opts.MaxBatchBytes,
		"max_entries":     s.opts.MaxEntries,
		"retention_days":  s.opts.RetentionDays,
	}
}

// readBody reads and decodes a request body by its Content-Encoding. It returns the body and
// the encoding the answer must use ("" for none).
func (s *Server) readBody(r *http.Request) ([]byte, string, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc == "identity" {
		enc = ""
	}
	if enc != "" && !slices.Contains(s.encodings, enc) {
		return nil, "", &receiverError{http.StatusUnsupportedMediaType, "unsupported_encoding", "content encoding " + enc + " is not supported"}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(s.opts.MaxBatchBytes)+1))
	if err != nil {
		return nil, "", badRequest("read body: %v", err)
	}
	if len(raw) > s.opts.MaxBatchBytes {
		return nil, "", &receiverError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", s.opts.MaxBatchBytes)}
	}
	body, err := decode(enc, raw)
	if err != nil {
		return nil, "", err
	}
	return body, enc, nil
}

// decode undoes a content encoding, refusing output above MaxDecodedBytes.
func decode(enc string, raw []byte) ([]byte, error) {
	tooLarge := &receiverError{http.StatusRequestEntityTooLarge, "too_large", "decoded body too large"}
	switch enc {
	case "":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, badRequest("gzip: %v", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, MaxDecodedBytes+1))
		if err != nil {
			return nil, badRequest("gzip: %v", err)
		}
		if len(out) > MaxDecodedBytes {
			return nil, tooLarge
		}
		return out, nil
	case "zstd":
		out, err := zdec.DecodeAll(raw, nil)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || len(out) > MaxDecodedBytes {
			return nil, tooLarge
		}
		if err != nil {
			return nil, badRequest("zstd: %v", err)
		}
		return out, nil
	}
	return nil, badRequest("unknown encoding %q", enc)
}

// encode applies a content encoding.
func encode(enc string, data []byte) []byte {
	switch enc {
	case "gzip":
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		return b.Bytes()
	case "zstd":
		return zenc.EncodeAll(data, nil)
	}
	return data
}

// writeEncoded answers v as JSON in the request's encoding.
func writeEncoded(w http.ResponseWriter, enc string, v any) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(fmt.Sprintf("erp5sim: encode response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	if enc != "" {
		w.Header().Set("Content-Encoding", enc)
	}
	w.WriteHeader(http.StatusOK)
	w.Write(encode(enc, b.Bytes()))
}

func decodeJSONObject(body []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, badRequest("body is not JSON: %v", err)
	}
	if d.More() {
		return nil, badRequest("body has data after the JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest("body is not a JSON object")
	}
	return m, nil
}

// Entry is one decoded batch entry (docs/DESIGN.md appendix B).
type Entry struct {
	Seq               int64
	Op                string
	ID                string
	PortalType        string
	ParentRelativeURL string
	Fields            map[string]any
	Base              map[string]any
	Transition        string
	Comment           string
	Peer              string
	Key               string
	Covers            []int64
	// Keys are the (peer, key) pairs of the writes folded into this entry.
	Keys [][2]string
	Hash string
}

func intOf(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	return i, err == nil
}

func optString(m map[string]any, k string) (string, error) {
	switch v := m[k].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", badRequest("%s must be a string", k)
}

func optObject(m map[string]any, k string) (map[string]any, error) {
	switch v := m[k].(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return v, nil
	}
	return nil, badRequest("%s must be an object", k)
}

// parseBatch validates a batch request; a malformed one is refused whole (400).
func parseBatch(m map[string]any) (gateway, epoch string, entries []Entry, err error) {
	gateway, _ = m["gateway"].(string)
	epoch, _ = m["epoch"].(string)
	if gateway == "" || epoch == "" {
		return "", "", nil, badRequest("gateway and epoch are required strings")
	}
	list, ok := m["entries"].([]any)
	if !ok {
		return "", "", nil, badRequest("entries must be a list")
	}
	for i, v := range list {
		em, ok := v.(map[string]any)
		if !ok {
			return "", "", nil, badRequest("entry %d is not an object", i)
		}
		var e Entry
		if e.Seq, ok = intOf(em["seq"]); !ok || e.Seq < 0 {
			return "", "", nil, badRequest("entry %d: seq must be a non-negative integer", i)
		}
		if e.Hash, _ = em["hash"].(string); e.Hash == "" {
			return "", "", nil, badRequest("entry %d: hash is required", i)
		}
		for k, p := range map[string]*string{"op": &e.Op, "id": &e.ID, "portal_type": &e.PortalType,
			"parent_relative_url": &e.ParentRelativeURL, "transition": &e.Transition, "comment": &e.Comment,
			"peer": &e.Peer, "key": &e.Key} {
			if *p, err = optString(em, k); err != nil {
				return "", "", nil, badRequest("entry %d: %s must be a string", i, k)
			}
		}
		if e.Fields, err = optObject(em, "fields"); err != nil {
			return "", "", nil, badRequest("entry %d: fields must be an object", i)
		}
		if e.Base, err = optObject(em, "base"); err != nil {
			return "", "", nil, badRequest("entry %d: base must be an object", i)
		}
		switch c := em["covers"].(type) {
		case nil:
		case []any:
			for _, x := range c {
				n, ok := intOf(x)
				if !ok {
					return "", "", nil, badRequest("entry %d: covers must list integers", i)
				}
				e.Covers = append(e.Covers, n)
			}
		default:
			return "", "", nil, badRequest("entry %d: covers must be a list", i)
		}
		switch ks := em["keys"].(type) {
		case nil:
		case []any:
			for _, x := range ks {
				km, ok := x.(map[string]any)
				if !ok {
					return "", "", nil, badRequest("entry %d: keys must list objects", i)
				}
				peer, err1 := optString(km, "peer")
				key, err2 := optString(km, "key")
				if err1 != nil || err2 != nil {
					return "", "", nil, badRequest("entry %d: keys: peer and key must be strings", i)
				}
				e.Keys = append(e.Keys, [2]string{peer, key})
			}
		default:
			return "", "", nil, badRequest("entry %d: keys must be a list", i)
		}
		entries = append(entries, e)
	}
	return gateway, epoch, entries, nil
}

// readJSONPost reads a receiver POST's JSON object body (decoded by its Content-Encoding)
// and the encoding to answer in; on failure it has answered and ok is false.
func (s *Server) readJSONPost(w http.ResponseWriter, r *http.Request) (m map[string]any, enc string, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil, "", false
	}
	body, enc, err := s.readBody(r)
	if err != nil {
		writeReceiverError(w, err)
		return nil, "", false
	}
	if m, err = decodeJSONObject(body); err != nil {
		writeReceiverError(w, err)
		return nil, "", false
	}
	return m, enc, true
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	m, enc, ok := s.readJSONPost(w, r)
	if !ok {
		return
	}
	gateway, epoch, entries, err := parseBatch(m)
	if err != nil {
		writeReceiverError(w, err)
		return
	}
	if len(entries) > s.opts.MaxEntries {
		writeReceiverError(w, &receiverError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%d entries, at most %d per batch", len(entries), s.opts.MaxEntries)})
		return
	}
	results := s.ApplyBatch(gateway, epoch, entries, s.user(r))
	writeEncoded(w, enc, map[string]any{"results": results})
}

// ApplyBatch applies decoded entries as one ERP5 transaction, in seq order, each in its own
// savepoint, and returns one result per entry (docs/DESIGN.md appendix B). user is recorded in the log.
func (s *Server) ApplyBatch(gateway, epoch string, entries []Entry, user string) []map[string]any {
	entries = slices.Clone(entries)
	slices.SortStableFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	s.mu.Lock()
	defer s.mu.Unlock()
	results := make([]map[string]any, 0, len(entries))
	for _, e := range entries {
		results = append(results, s.receiveLocked(gateway, epoch, e, user))
	}
	return results
}

func withSeq(result map[string]any, seq int64) map[string]any {
	c := maps.Clone(result)
	c["seq"] = seq
	return c
}

// receiveLocked deduplicates and applies one entry. The order of the checks is the
// contract (erp5/README.md): exact (epoch, seq) membership, then covers, then the write
// key, then the change itself. The result is also remembered under each folded write key
// of keys that has no record yet.
func (s *Server) receiveLocked(gateway, epoch string, e Entry, user string) map[string]any {
	k := entryKey(gateway, epoch, e.Seq)
	if rec, ok := s.records[k]; ok {
		if rec.hash == e.Hash {
			return maps.Clone(rec.result)
		}
		return map[string]any{"seq": e.Seq, "status": "seq_reused"}
	}
	for _, c := range e.Covers {
		if _, ok := s.records[entryKey(gateway, epoch, c)]; ok && c != e.Seq {
			return map[string]any{"seq": e.Seq, "status": "seq_reused"}
		}
	}
	var wk string
	if e.Peer != "" && e.Key != "" {
		wk = writeKey(gateway, e.Peer, e.Key)
	}
	var result map[string]any
	if rec, ok := s.records[wk]; wk != "" && ok {
		result = withSeq(rec.result, e.Seq)
	} else {
		result = s.applyLocked(gateway, epoch, e, user)
		if wk != "" {
			s.records[wk] = &record{result: result}
		}
	}
	for _, fk := range e.Keys {
		if fk[0] == "" || fk[1] == "" {
			continue
		}
		if w := writeKey(gateway, fk[0], fk[1]); s.records[w] == nil {
			s.records[w] = &record{result: result}
		}
	}
	s.records[k] = &record{hash: e.Hash, result: result}
	for _, c := range e.Covers {
		if c != e.Seq {
			// A folded seq holds the covering entry's payload: its hash.
			s.records[entryKey(gateway, epoch, c)] = &record{hash: e.Hash, result: withSeq(result, c)}
		}
	}
	return maps.Clone(result)
}

func rejected(seq int64, reason, msg string) map[string]any {
	return map[string]any{"seq": seq, "status": "rejected", "reason": reason, "message": msg}
}

// applyLocked applies one entry's change: on any failure nothing of it remains (the
// savepoint is rolled back), which here means the edited copy is dropped.
func (s *Server) applyLocked(gateway, epoch string, e Entry, user string) map[string]any {
	var (
		old *Document
		nd  *Document
	)
	switch e.Op {
	case "post":
		if e.PortalType == "" || e.ParentRelativeURL == "" {
			return rejected(e.Seq, "invalid", "post needs portal_type and parent_relative_url")
		}
		d, err := s.newDocLocked(e.PortalType, e.ParentRelativeURL)
		if err != nil {
			return rejected(e.Seq, "invalid", err.Error())
		}
		if err := editProps(d, e.Fields); err != nil {
			return rejected(e.Seq, "invalid", err.Error())
		}
		nd = d
	case "put", "remove", "action":
		if e.ID == "" {
			return rejected(e.Seq, "invalid", e.Op+" needs an id")
		}
		if e.Op == "action" && e.Transition == "" {
			return rejected(e.Seq, "invalid", "action needs a transition")
		}
		d, ok := s.docs[e.ID]
		if !ok {
			return rejected(e.Seq, "not_found", "no document "+e.ID)
		}
		old = d
		if e.Op != "remove" {
			if current := conflicts(d, e.Fields, e.Base); current != nil {
				return map[string]any{"seq": e.Seq, "status": "conflict", "id": d.ID, "current": current, "version": d.Version()}
			}
		}
		nd = d.clone()
		if e.Op != "remove" {
			if err := editProps(nd, e.Fields); err != nil {
				return rejected(e.Seq, "invalid", err.Error())
			}
			if e.Op == "action" && !propsEqual(d.Properties, nd.Properties) {
				s.bumpLocked(nd) // the edit, then the transition: two steps
			}
		}
		switch e.Op {
		case "remove":
			if err := doTransition(nd, "delete_action"); err != nil {
				return rejected(e.Seq, "not_allowed", err.Error())
			}
		case "action":
			if err := doTransition(nd, e.Transition); err != nil {
				return rejected(e.Seq, "not_allowed", err.Error())
			}
		}
	default:
		return rejected(e.Seq, "invalid", fmt.Sprintf("unknown op %q", e.Op))
	}
	nd = s.commitLocked(old, nd, Change{Via: ViaReceiver, User: user, Gateway: gateway, Epoch: epoch, Seq: e.Seq,
		Covers: e.Covers, Peer: e.Peer, Key: e.Key, Op: e.Op, Fields: e.Fields, Transition: e.Transition})
	s.own[ownKey(gateway, nd.ID)] = nd.Version()
	return map[string]any{
		"seq": e.Seq, "status": "ok", "id": nd.ID, "version": nd.Version(),
		"modification_date": formatRFC822(nd.ModificationDate), "state": nd.state(),
	}
}

// conflicts returns the current values of the fields that conflict (the current value
// differs from both the base and the new value), or nil.
func conflicts(d *Document, fields, base map[string]any) map[string]any {
	var current map[string]any
	for k, v := range fields {
		if k == "portal_type" {
			continue
		}
		cur := d.Properties[k]
		if !valuesEqual(cur, base[k]) && !valuesEqual(cur, v) {
			if current == nil {
				current = map[string]any{}
			}
			current[k] = cur
		}
	}
	return current
}

func (s *Server) handleResults(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	gateway, epoch := q.Get("gateway"), q.Get("epoch")
	if gateway == "" || epoch == "" {
		writeReceiverError(w, badRequest("gateway and epoch are required"))
		return
	}
	seqs, err := ParseSeqs(q.Get("seqs"))
	if err != nil {
		writeReceiverError(w, err)
		return
	}
	s.mu.Lock()
	results := make([]map[string]any, 0, len(seqs))
	for _, n := range seqs {
		if rec, ok := s.records[entryKey(gateway, epoch, n)]; ok {
			res := maps.Clone(rec.result)
			if rec.hash != "" {
				res["hash"] = rec.hash
			}
			results = append(results, res)
		} else {
			results = append(results, map[string]any{"seq": n, "status": "unknown"})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json", map[string]any{"results": results})
}

// ParseSeqs parses a results query's seqs: comma-separated numbers and inclusive ranges
// ("10423,10424,10500-10650"), returned sorted without repeats. Items naming more than
// MaxResultSeqs seqs in all are refused (413).
func ParseSeqs(s string) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, badRequest("seqs is required")
	}
	set := map[int64]bool{}
	total := int64(0)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		a, ok1 := parseDigits(lo)
		b, ok2 := a, true
		if isRange {
			b, ok2 = parseDigits(hi)
		}
		if !ok1 || !ok2 || b < a {
			return nil, badRequest("bad seqs item %q", part)
		}
		if total += b - a + 1; total > MaxResultSeqs {
			return nil, &receiverError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("more than %d seqs", MaxResultSeqs)}
		}
		for n := a; n <= b; n++ {
			set[n] = true
		}
	}
	out := make([]int64, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// parseDigits parses 1 to 18 ASCII digits.
func parseDigits(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// changeScope is one scope of a changes query.
type changeScope struct {
	name, portalType string
	query            query.Query
	fields           []string
	after            int64
	cursor           any // as received, echoed when nothing is examined
}

func encodeCursor(serial int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("erp5sim:" + strconv.FormatInt(serial, 10)))
}

func decodeCursor(c string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, badRequest("bad cursor")
	}
	n, ok := strings.CutPrefix(string(raw), "erp5sim:")
	if !ok {
		return 0, badRequest("bad cursor")
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 0 {
		return 0, badRequest("bad cursor")
	}
	return v, nil
}

func parseChanges(m map[string]any) (gateway string, limit int, scopes []changeScope, err error) {
	gateway, _ = m["gateway"].(string)
	if gateway == "" {
		return "", 0, nil, badRequest("gateway is required")
	}
	limit = DefaultChangesLimit
	if v, ok := m["limit"]; ok && v != nil {
		n, ok := intOf(v)
		if !ok || n <= 0 {
			return "", 0, nil, badRequest("limit must be a positive integer")
		}
		limit = int(min(n, MaxChangesLimit))
	}
	list, ok := m["scopes"].([]any)
	if !ok {
		return "", 0, nil, badRequest("scopes must be a list")
	}
	for i, v := range list {
		sm, ok := v.(map[string]any)
		if !ok {
			return "", 0, nil, badRequest("scope %d is not an object", i)
		}
		var sc changeScope
		if sc.name, _ = sm["name"].(string); sc.name == "" {
			return "", 0, nil, badRequest("scope %d: name is required", i)
		}
		if sc.portalType, err = optString(sm, "portal_type"); err != nil {
			return "", 0, nil, badRequest("scope %s: portal_type must be a string", sc.name)
		}
		qs, err := optString(sm, "query")
		if err != nil {
			return "", 0, nil, badRequest("scope %s: query must be a string", sc.name)
		}
		if sc.query, err = query.Parse(qs); err != nil {
			return "", 0, nil, badRequest("scope %s: query: %v", sc.name, err)
		}
		switch f := sm["fields"].(type) {
		case nil:
		case []any:
			sc.fields = []string{}
			for _, x := range f {
				name, ok := x.(string)
				if !ok {
					return "", 0, nil, badRequest("scope %s: fields must list strings", sc.name)
				}
				sc.fields = append(sc.fields, name)
			}
		default:
			return "", 0, nil, badRequest("scope %s: fields must be a list", sc.name)
		}
		switch c := sm["cursor"].(type) {
		case nil:
		case string:
			if sc.after, err = decodeCursor(c); err != nil {
				return "", 0, nil, badRequest("scope %s: bad cursor", sc.name)
			}
			sc.cursor = c
		default:
			return "", 0, nil, badRequest("scope %s: cursor must be a string or null", sc.name)
		}
		scopes = append(scopes, sc)
	}
	return gateway, limit, scopes, nil
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) {
	m, enc, ok := s.readJSONPost(w, r)
	if !ok {
		return
	}
	gateway, limit, scopes, err := parseChanges(m)
	if err != nil {
		writeReceiverError(w, err)
		return
	}
	s.mu.Lock()
	s.catchUpLocked()
	out := make([]any, 0, len(scopes))
	for _, sc := range scopes {
		out = append(out, s.scopeChangesLocked(gateway, sc, limit))
	}
	s.mu.Unlock()
	writeEncoded(w, enc, map[string]any{"scopes": out})
}

// scopeChangesLocked lists a scope's catalog changes after its cursor, in index order. Of
// the first limit candidates, those whose version is the one this gateway's own last change
// produced are skipped (it has their state already); the cursor moves past every candidate
// examined, so a page may hold fewer than limit rows while more is true.
func (s *Server) scopeChangesLocked(gateway string, sc changeScope, limit int) map[string]any {
	var cands []*catalogEntry
	for _, e := range s.catalog {
		if e.serial <= sc.after || (sc.portalType != "" && e.pt != sc.portalType) {
			continue
		}
		if !query.Match(sc.query, e.body, dateKeys) {
			continue
		}
		cands = append(cands, e)
	}
	slices.SortFunc(cands, func(a, b *catalogEntry) int { return cmp.Compare(a.serial, b.serial) })
	more := len(cands) > limit
	if more {
		cands = cands[:limit]
	}
	rows := make([]any, 0, len(cands))
	cursor := sc.cursor
	for _, e := range cands {
		cursor = encodeCursor(e.serial)
		if s.own[ownKey(gateway, e.id)] == e.version {
			continue
		}
		fields := map[string]any{}
		if sc.fields == nil {
			maps.Copy(fields, e.state)
		} else {
			for _, f := range sc.fields {
				fields[f] = e.state[f]
			}
		}
		rows = append(rows, map[string]any{"id": e.id, "version": e.version, "modification_date": e.body["modification_date"], "fields": fields})
	}
	return map[string]any{"name": sc.name, "rows": rows, "cursor": cursor, "more": more}
}
