// Package rpc implements the data channel's methods (docs/DESIGN.md §3): every request is checked by
// the policy, then answered from the replica or sent through the write path. The transport
// (framing, fragments, JSON-RPC envelopes) is lan's; this package is what the methods mean.
package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

// LinkStatus is the uplink's view of the satellite link, as the status method reports it.
type LinkStatus struct {
	State     string     `json:"state"` // "up", "degraded", "down" or "unknown"
	Since     *time.Time `json:"since,omitempty"`
	NextTryAt *time.Time `json:"next_try_at,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Service answers the data channel's methods. It implements lan.Service.
type Service struct {
	DB     *sqlite.DB
	Policy *policy.Engine
	// Link reports the link's state; nil reports "unknown".
	Link func() LinkStatus
	// Fetch, when set, is asked for a document the replica lacks (a get outside every
	// completed scope). It returns ENOTFOUND or EUNAVAILABLE (link down) when it cannot.
	Fetch func(ctx context.Context, id string) (*gateway.Document, error)
	// OnChanged, when set, is told the ids a write changed (for `changed` notifications).
	OnChanged func(ids []string, renamed map[string]string)
	// DateKeys are the keys compared as dates (query.date_keys).
	DateKeys []string
	Logger   *slog.Logger
	// UpstreamMode, when set, reports how the uplink reaches ERP5: UpstreamReceiver,
	// UpstreamStock or UpstreamUnknown (describe, status).
	UpstreamMode func() string

	limiter *policy.RateLimiter
	mu      sync.Mutex
	running map[string]int // queries running per peer
	counts  typeCounts     // documents by portal type, for query costs
}

// NewService returns a Service over db and the policy.
func NewService(db *sqlite.DB, p *policy.Engine) *Service {
	return &Service{DB: db, Policy: p, Logger: slog.Default(), limiter: p.NewRateLimiter(), running: map[string]int{}}
}

// Forget drops a peer's rate-limit state (when its last channel closes).
func (s *Service) Forget(peer string) { s.limiter.Forget(peer) }

// Call runs one method for a peer.
func (s *Service) Call(ctx context.Context, a gateway.Actor, method string, params json.RawMessage) (any, error) {
	if !s.Policy.HasRole(a.Role) {
		return nil, gateway.ReasonErrorf(gateway.EFORBIDDEN, policy.ReasonUnknownRole, "role %q is not in the policy", a.Role)
	}
	if err := s.limiter.Allow(a.Peer, a.Role); err != nil {
		return nil, err
	}
	switch method {
	case gateway.MethodGet:
		return s.get(ctx, a, params)
	case gateway.MethodPost, gateway.MethodPut, gateway.MethodRemove, gateway.MethodAction:
		return s.write(ctx, a, method, params)
	case gateway.MethodAllDocs:
		return s.allDocs(ctx, a, params)
	case gateway.MethodSync:
		return s.sync(ctx, a, params)
	case gateway.MethodDescribe:
		return s.Describe(ctx, a)
	case gateway.MethodStatus:
		return s.Status(ctx, a)
	}
	return nil, gateway.Errorf(gateway.EINVALID, "unknown method %q", method)
}

// decodeParams decodes params into v, naming the problem for the caller.
func decodeParams(params json.RawMessage, v any) error {
	if len(bytes.TrimSpace(params)) == 0 {
		params = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return gateway.Errorf(gateway.EINVALID, "params: %v", err)
	}
	return nil
}

type getParams struct {
	ID string `json:"id"`
}

func (s *Service) get(ctx context.Context, a gateway.Actor, params json.RawMessage) (any, error) {
	var p getParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := gateway.ValidateID(p.ID); err != nil {
		return nil, err
	}
	doc, err := s.DB.GetDocument(ctx, p.ID)
	if gateway.ErrorCode(err) == gateway.ENOTFOUND && s.Fetch != nil && !gateway.IsLocalID(p.ID) && s.mayHold(a, p.ID) {
		doc, err = s.Fetch(ctx, p.ID)
	}
	if err != nil {
		return nil, err
	}
	body, err := sqlite.DecodeObject(doc.Body)
	if err != nil {
		return nil, err
	}
	if err := s.Policy.AuthorizeGet(a.Peer, a.Role, doc.ID, body); err != nil {
		if !s.Policy.CanRead(a.Peer, a.Role, doc.ID, body) {
			return nil, policy.NotFound(p.ID)
		}
		return nil, err
	}
	return s.filtered(a.Role, doc.Body, body)
}

// filtered returns the stored JSON unchanged when the role reads every field (so key order
// and number literals stay exactly as stored), else the document without unreadable fields.
func (s *Service) filtered(role string, raw json.RawMessage, body map[string]any) (any, error) {
	if _, all := s.Policy.Readable(role); all {
		return raw, nil
	}
	return s.Policy.FilterDoc(role, body), nil
}

type writeParams struct {
	ID         string          `json:"id"`
	Doc        json.RawMessage `json:"doc"`
	Key        string          `json:"key"`
	Transition string          `json:"transition"`
	Comment    string          `json:"comment"`
}

func (s *Service) write(ctx context.Context, a gateway.Actor, method string, params json.RawMessage) (any, error) {
	var p writeParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := s.Policy.CheckDocSize(a.Role, len(params)); err != nil {
		return nil, err
	}
	w := sqlite.Write{Op: method, ID: p.ID, Transition: p.Transition, Comment: p.Comment, Peer: a.Peer, Key: p.Key}
	switch method {
	case gateway.MethodPost, gateway.MethodPut:
		if len(p.Doc) == 0 || bytes.Equal(bytes.TrimSpace(p.Doc), []byte("null")) {
			return nil, gateway.Errorf(gateway.EINVALID, "params.doc: a document object is required")
		}
		doc, err := sqlite.DecodeObject(p.Doc)
		if err != nil {
			return nil, gateway.Errorf(gateway.EINVALID, "params.doc: %v", err)
		}
		w.Doc = doc
		if method == gateway.MethodPost {
			w.Body = p.Doc
		}
	case gateway.MethodAction:
		if p.Transition == "" {
			return nil, gateway.Errorf(gateway.EINVALID, "params.transition is required")
		}
	}
	if method != gateway.MethodPost {
		if err := gateway.ValidateID(p.ID); err != nil {
			return nil, err
		}
	}
	w.Visible = func(old map[string]any) error {
		if !s.Policy.CanRead(a.Peer, a.Role, w.ID, old) {
			return policy.NotFound(w.ID)
		}
		return nil
	}
	w.Authorize = func(old, doc, patch map[string]any) error {
		id := w.ID
		return s.Policy.AuthorizeWrite(policy.WriteInput{
			Peer: a.Peer, Role: a.Role, Method: method, ID: id, Transition: p.Transition,
			Patch: patch, Doc: doc, Old: old,
		})
	}
	if method == gateway.MethodPost {
		w.CheckParent = func(parent, pt string, pdoc map[string]any) error {
			return s.checkParent(a, parent, pt, pdoc)
		}
	}
	res, err := s.DB.Write(ctx, w)
	if err != nil {
		return nil, err
	}
	if s.OnChanged != nil && !res.Replayed {
		s.OnChanged([]string{res.ID}, nil)
	}
	return map[string]string{"id": res.ID}, nil
}

type allDocsParams struct {
	Query       json.RawMessage `json:"query"`
	SortOn      [][]string      `json:"sort_on"`
	Limit       []int           `json:"limit"`
	SelectList  []string        `json:"select_list"`
	IncludeDocs bool            `json:"include_docs"`
}

// AllDocsRow is one row of an allDocs result.
type AllDocsRow struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"value"`
	Doc   json.RawMessage `json:"doc,omitempty"`
	Sync  string          `json:"sync"`
}

// AllDocsResult is the allDocs method's result.
type AllDocsResult struct {
	TotalRows int          `json:"total_rows"`
	Rows      []AllDocsRow `json:"rows"`
	FreshAt   *time.Time   `json:"fresh_at"`
}

func (s *Service) allDocs(ctx context.Context, a gateway.Actor, params json.RawMessage) (any, error) {
	var p allDocsParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	var q query.Query
	if len(p.Query) > 0 {
		var err error
		if q, err = query.ParseJSON(p.Query); err != nil {
			return nil, gateway.Errorf(gateway.EINVALID, "query: %v", err)
		}
	}
	opts := query.Options{SelectList: p.SelectList, IncludeDocs: p.IncludeDocs, DateKeys: s.DateKeys}
	for _, so := range p.SortOn {
		if len(so) != 2 {
			return nil, gateway.Errorf(gateway.EINVALID, "sort_on: each element is [key, \"ascending\"|\"descending\"]")
		}
		k, err := query.NewSortKey(so[0], so[1])
		if err != nil {
			return nil, gateway.Errorf(gateway.EINVALID, "sort_on: %v", err)
		}
		opts.SortOn = append(opts.SortOn, k)
	}
	var err error
	if opts.Skip, opts.Count, err = query.ParseLimit(p.Limit); err != nil {
		return nil, gateway.Errorf(gateway.EINVALID, "limit: %v", err)
	}
	asked := q
	if q, opts, err = s.Policy.ScopeQuery(a.Peer, a.Role, q, opts); err != nil {
		return nil, err
	}
	if err := s.checkCost(ctx, a, asked); err != nil {
		return nil, err
	}
	release, err := s.acquire(a)
	if err != nil {
		return nil, err
	}
	res, err := s.runQuery(ctx, a, q, opts)
	release()
	if err != nil {
		return nil, err
	}
	out := AllDocsResult{TotalRows: res.TotalRows, Rows: make([]AllDocsRow, 0, len(res.Rows))}
	ids := make([]string, len(res.Rows))
	for i, r := range res.Rows {
		ids[i] = r.ID
	}
	states, err := s.DB.SyncStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	_, all := s.Policy.Readable(a.Role)
	for _, r := range res.Rows {
		row := AllDocsRow{ID: r.ID, Value: r.Value, Doc: r.Doc, Sync: stateOf(states, r.ID).State}
		if !all {
			if row.Value, err = s.filterRaw(a.Role, r.Value); err != nil {
				return nil, err
			}
			if len(r.Doc) > 0 {
				if row.Doc, err = s.filterRaw(a.Role, r.Doc); err != nil {
					return nil, err
				}
			}
		}
		out.Rows = append(out.Rows, row)
	}
	if fresh, err := s.DB.FreshAt(ctx); err == nil {
		out.FreshAt = oldest(fresh)
	}
	return out, nil
}

// filterRaw removes the role's unreadable fields from a stored JSON object.
func (s *Service) filterRaw(role string, raw json.RawMessage) (json.RawMessage, error) {
	body, err := sqlite.DecodeObject(raw)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s.Policy.FilterDoc(role, body))
}

// acquire takes one of the peer's concurrent-query slots (limits.max_concurrent_queries).
func (s *Service) acquire(a gateway.Actor) (func(), error) {
	limit := s.Policy.Limits(a.Role).MaxConcurrentQueries
	if limit <= 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[a.Peer] >= limit {
		return nil, gateway.ReasonErrorf(gateway.ERATELIMITED, policy.ReasonRateLimited, "too many queries at once (at most %d)", limit)
	}
	s.running[a.Peer]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.running[a.Peer]--; s.running[a.Peer] <= 0 {
			delete(s.running, a.Peer)
		}
	}, nil
}

// oldest returns the earliest freshness among scopes: how stale the least fresh data is.
func oldest(fresh map[string]time.Time) *time.Time {
	var min *time.Time
	for _, t := range fresh {
		if min == nil || t.Before(*min) {
			t := t
			min = &t
		}
	}
	return min
}

// stateOf returns an id's sync state, synced when nothing waits.
func stateOf(states map[string]outbox.DocState, id string) outbox.DocState {
	if st, ok := states[id]; ok {
		return st
	}
	return outbox.DocState{State: "synced"}
}

type syncParams struct {
	IDs []string `json:"ids"`
}

// maxSyncIDs bounds one sync request; a form asks for the rows it shows.
const maxSyncIDs = 1000

func (s *Service) sync(ctx context.Context, a gateway.Actor, params json.RawMessage) (any, error) {
	var p syncParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if len(p.IDs) > maxSyncIDs {
		return nil, gateway.Errorf(gateway.ETOOLARGE, "sync asks for %d ids; at most %d", len(p.IDs), maxSyncIDs)
	}
	for _, id := range p.IDs {
		if err := gateway.ValidateID(id); err != nil {
			return nil, err
		}
	}
	// A document the peer may not read is answered as one that does not exist: nothing waits.
	ids, err := s.readableIDs(ctx, a, p.IDs)
	if err != nil {
		return nil, err
	}
	states, err := s.DB.SyncStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]outbox.DocState, len(p.IDs))
	for _, id := range p.IDs {
		out[id] = stateOf(states, id)
	}
	return s.withTransitions(ctx, out)
}

// StatusResult is the status method's result and the status notification's params.
type StatusResult struct {
	Peer    string               `json:"peer"`
	Role    string               `json:"role"`
	Link    LinkStatus           `json:"link"`
	Outbox  map[string]int       `json:"outbox"`
	FreshAt map[string]time.Time `json:"fresh_at"`
	// FormsHash changes whenever a learned form or workflow does (the app describes again);
	// UpstreamMode is describe's.
	FormsHash    string `json:"forms_hash"`
	UpstreamMode string `json:"upstream_mode"`
}

// Status returns what the status method reports to a.
func (s *Service) Status(ctx context.Context, a gateway.Actor) (*StatusResult, error) {
	counts, err := s.DB.OutboxCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	fresh, err := s.DB.FreshAt(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	link := LinkStatus{State: "unknown"}
	if s.Link != nil {
		link = s.Link()
	}
	hash, err := s.DB.FormsHash(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return &StatusResult{Peer: a.Peer, Role: a.Role, Link: link, Outbox: counts, FreshAt: fresh,
		FormsHash: hash, UpstreamMode: s.upstreamMode()}, nil
}

// Readable reports whether a peer of role may read id: the filter for `changed`
// notifications, so that they never leak an id the peer could not get.
func (s *Service) Readable(ctx context.Context, role, id string) bool {
	doc, err := s.DB.GetDocument(ctx, id)
	if err != nil {
		return false
	}
	body, err := sqlite.DecodeObject(doc.Body)
	if err != nil {
		return false
	}
	return s.Policy.AuthorizeGet("", role, id, body) == nil
}
