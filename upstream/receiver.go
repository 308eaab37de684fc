package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Receiver endpoints, under the site URL (docs/DESIGN.md appendix B; ERP5 acquisition finds them).
const (
	CapabilityPath = "ERP5Site_getSyncGatewayCapability"
	BatchPath      = "ERP5Site_receiveSyncGatewayBatch"
	ResultsPath    = "ERP5Site_getSyncGatewayResults"
	ChangesPath    = "ERP5Site_getSyncGatewayChanges"
)

// Capability is what the receiver advertises.
type Capability struct {
	Version   int      `json:"version"`
	Encodings []string `json:"encodings"`
	// MaxBatchBytes is the largest compressed batch body it accepts.
	MaxBatchBytes int64 `json:"max_batch_bytes"`
	// MaxEntries is the most entries per batch; more is refused with 413.
	MaxEntries int `json:"max_entries"`
	// RetentionDays is how long dedupe records are kept.
	RetentionDays int `json:"retention_days"`
}

// Encoding returns the request encoding to use: zstd when offered, else gzip.
func (c *Capability) Encoding() string { return chooseEncoding(c.Encodings) }

// Capability asks the receiver what it supports. A 404 is an *HTTPError with Status 404: one
// 404 alone does not mean stock ERP5 (see Prober).
func (c *Client) Capability(ctx context.Context) (*Capability, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	ex, err := c.do(ctx, request{method: http.MethodGet, url: c.base.String() + CapabilityPath, accept: "application/json", expect: 512})
	if err != nil {
		return nil, fmt.Errorf("erp5 capability: %w", err)
	}
	var capa Capability
	if err := json.Unmarshal(ex.body, &capa); err != nil || capa.Version < 1 {
		if err == nil {
			err = fmt.Errorf("version %d", capa.Version)
		}
		return nil, fmt.Errorf("erp5 capability: %w", errors.Join(ErrBadResponse, err))
	}
	return &capa, nil
}

// batchWorkPerEntry is the time ERP5 is allowed per entry to apply a batch before it answers,
// on top of the stall window.
const batchWorkPerEntry = 30 * time.Millisecond

// Result is the receiver's answer for one entry (docs/DESIGN.md appendix B).
type Result struct {
	Seq    int64  `json:"seq"`
	Status string `json:"status"`
	// ID is the document's ERP5 id (a post's new id).
	ID string `json:"id,omitempty"`
	// Version is the document's modification time at full precision after the change.
	Version          string `json:"version,omitempty"`
	ModificationDate string `json:"modification_date,omitempty"`
	// State is every replicated field after the change.
	State json.RawMessage `json:"state,omitempty"`
	// Current is ERP5's value of each conflicting field.
	Current json.RawMessage `json:"current,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	// Message details Reason, when the receiver gives one.
	Message string `json:"message,omitempty"`
	// Hash is the entry hash ERP5 stored under the key (results query): a stored result whose
	// hash differs from the row's own belongs to another payload (docs/DESIGN.md §6, Identity).
	Hash string `json:"hash,omitempty"`
	// Raw is the whole result object as received, for the outbox's answer column.
	Raw json.RawMessage `json:"-"`
	// BadVersion is a "version" that is not a JSON string (Version is then ""): the write's
	// outcome stands, but the version cannot be recorded.
	BadVersion string `json:"-"`
}

// Result statuses.
const (
	StatusOK        = "ok"
	StatusConflict  = "conflict"
	StatusRejected  = "rejected"
	StatusSeqReused = "seq_reused"
	StatusUnknown   = "unknown" // results query: never applied
)

// UnmarshalJSON keeps the raw object beside the decoded fields. A version that is not a
// string (a number, an object) does not make the whole answer unreadable: it is kept in
// BadVersion, so that the entry is settled from its status and an alarm raised.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var p struct {
		plain
		Version json.RawMessage `json:"version,omitempty"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Result(p.plain)
	if v := bytes.TrimSpace(p.Version); len(v) > 0 && string(v) != "null" {
		if err := json.Unmarshal(v, &r.Version); err != nil {
			r.Version, r.BadVersion = "", string(v)
		}
	}
	r.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// BatchBody assembles a batch request body from entries' stored JSON, byte for byte: the
// bytes each entry was first claimed with are what travels, so a resend is identical.
func BatchBody(gateway, epoch string, entries []json.RawMessage) []byte {
	var b bytes.Buffer
	g, _ := json.Marshal(gateway)
	e, _ := json.Marshal(epoch)
	b.WriteString(`{"gateway":`)
	b.Write(g)
	b.WriteString(`,"epoch":`)
	b.Write(e)
	b.WriteString(`,"entries":[`)
	for i, en := range entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(en)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// SendBatch posts one batch (entries of one epoch, at most one per document) to the
// receiver, compressed with encoding ("" sends it plain), and returns the per-entry results.
// It also returns the compressed size sent. Errors: *HTTPError for a status, ErrNotSent,
// ErrNoResponse or ErrBadResponse (a 2xx whose body does not parse or lacks results).
func (c *Client) SendBatch(ctx context.Context, gateway, epoch string, entries []json.RawMessage, encoding string) ([]Result, int, error) {
	if err := c.init(); err != nil {
		return nil, 0, err
	}
	plain := BatchBody(gateway, epoch, entries)
	body, enc, err := c.codec.encodeBody(encoding, plain)
	if err != nil {
		return nil, 0, fmt.Errorf("erp5 batch: compress: %w", err)
	}
	ex, err := c.do(ctx, request{
		method:      http.MethodPost,
		url:         c.base.String() + BatchPath,
		contentType: "application/json",
		encoding:    enc,
		accept:      "application/json",
		body:        body,
		expect:      len(entries) * 256,
		work:        time.Duration(len(entries)) * batchWorkPerEntry,
	})
	if err != nil {
		return nil, len(body), fmt.Errorf("erp5 batch of %d: %w", len(entries), err)
	}
	res, err := parseResults(ex.body)
	if err != nil {
		return nil, len(body), fmt.Errorf("erp5 batch of %d: %w", len(entries), errors.Join(ErrBadResponse, err))
	}
	return res, len(body), nil
}

func parseResults(body []byte) ([]Result, error) {
	var r struct {
		Results *[]Result `json:"results"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if r.Results == nil {
		return nil, errors.New(`no "results"`)
	}
	return *r.Results, nil
}

// Results asks the receiver for the stored results of seqs of one epoch (docs/DESIGN.md appendix B); a seq
// never applied answers StatusUnknown. The seqs travel as ranges (FormatSeqs), so a query for
// thousands of entries stays a few hundred bytes.
func (c *Client) Results(ctx context.Context, gateway, epoch string, seqs []int64) ([]Result, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	// Hand-built query: url.Values would encode the commas of the seq list.
	q := "gateway=" + queryEscape(gateway) + "&epoch=" + queryEscape(epoch) + "&seqs=" + FormatSeqs(seqs)
	ex, err := c.do(ctx, request{method: http.MethodGet, url: c.base.String() + ResultsPath + "?" + q, accept: "application/json", expect: 128 * len(seqs)})
	if err != nil {
		return nil, fmt.Errorf("erp5 results: %w", err)
	}
	res, err := parseResults(ex.body)
	if err != nil {
		return nil, fmt.Errorf("erp5 results: %w", errors.Join(ErrBadResponse, err))
	}
	return res, nil
}

func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// FormatSeqs writes seqs sorted, deduplicated, with runs as ranges: 10423,10424,10500-10650.
// A run of two stays two numbers (no shorter as a range).
func FormatSeqs(seqs []int64) string {
	s := slices.Clone(seqs)
	slices.Sort(s)
	s = slices.Compact(s)
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(s[i], 10))
		switch {
		case j == i+1:
			b.WriteByte(',')
			b.WriteString(strconv.FormatInt(s[j], 10))
		case j > i+1:
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(s[j], 10))
		}
		i = j + 1
	}
	return b.String()
}

// ParseSeqs reads FormatSeqs' syntax.
func ParseSeqs(s string) ([]int64, error) {
	var out []int64
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad seq %q", part)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := strconv.ParseInt(hi, 10, 64)
		if err != nil || b < a || b-a > 1_000_000 {
			return nil, fmt.Errorf("bad seq range %q", part)
		}
		for n := a; n <= b; n++ {
			out = append(out, n)
		}
	}
	return out, nil
}

// ChangesScope is one scope of a changes query: its name, what it replicates, and the cursor
// last received for it (nil the first time).
type ChangesScope struct {
	Name       string          `json:"name"`
	PortalType string          `json:"portal_type"`
	Query      string          `json:"query"`
	Fields     []string        `json:"fields"`
	Cursor     json.RawMessage `json:"cursor"`
}

// ChangesRequest is the body of a changes query (docs/DESIGN.md appendix B).
type ChangesRequest struct {
	Gateway string         `json:"gateway"`
	Scopes  []ChangesScope `json:"scopes"`
	Limit   int            `json:"limit"`
}

// ChangedRow is one changed document.
type ChangedRow struct {
	ID               string          `json:"id"`
	Version          string          `json:"version"`
	ModificationDate string          `json:"modification_date"`
	Fields           json.RawMessage `json:"fields"`
}

// ScopeChanges is one scope's answer: rows, the cursor to echo next time, and whether more
// rows wait.
type ScopeChanges struct {
	Name   string          `json:"name"`
	Rows   []ChangedRow    `json:"rows"`
	Cursor json.RawMessage `json:"cursor"`
	More   bool            `json:"more"`
}

// ChangesResponse is the answer to a changes query.
type ChangesResponse struct {
	Scopes []ScopeChanges `json:"scopes"`
}

// Changes asks the receiver for every scope's changes since its cursor, in one round trip,
// without the changes this gateway made itself. encoding compresses the request ("" plain)
// however small it is: the receiver answers in the request's encoding, and a page of
// changes is ~100 KB that compresses five-fold. The answer is decoded by its
// Content-Encoding.
func (c *Client) Changes(ctx context.Context, req ChangesRequest, encoding string) (*ChangesResponse, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	for i := range req.Scopes {
		if req.Scopes[i].Cursor == nil {
			req.Scopes[i].Cursor = json.RawMessage("null")
		}
	}
	plain, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("erp5 changes: %w", err)
	}
	body, err := c.codec.compress(encoding, plain)
	if err != nil {
		return nil, fmt.Errorf("erp5 changes: compress: %w", err)
	}
	ex, err := c.do(ctx, request{
		method:      http.MethodPost,
		url:         c.base.String() + ChangesPath,
		contentType: "application/json",
		encoding:    encoding,
		accept:      "application/json",
		body:        body,
		expect:      max(req.Limit, 100) * 512,
	})
	if err != nil {
		return nil, fmt.Errorf("erp5 changes: %w", err)
	}
	var out ChangesResponse
	if err := json.Unmarshal(ex.body, &out); err != nil {
		return nil, fmt.Errorf("erp5 changes: %w", errors.Join(ErrBadResponse, err))
	}
	return &out, nil
}
