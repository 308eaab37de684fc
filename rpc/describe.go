package rpc

import (
	"context"
	"encoding/json"
	"fmt"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/sqlite"
)

// Upstream modes as describe and status report them.
const (
	UpstreamReceiver = "receiver"
	UpstreamStock    = "stock"
	UpstreamUnknown  = "unknown"
)

// DescribedType is one element of describe's types: what the policy lets the role do, and
// ERP5's view form and workflow learned for the type (null when none is known yet).
type DescribedType struct {
	policy.TypeInfo
	Form     json.RawMessage `json:"form"`
	Workflow json.RawMessage `json:"workflow"`
}

// DescribeResult is the describe method's result (docs/DESIGN.md §3).
type DescribeResult struct {
	Peer         string          `json:"peer"`
	Role         string          `json:"role"`
	FormsHash    string          `json:"forms_hash"`
	UpstreamMode string          `json:"upstream_mode"`
	Types        []DescribedType `json:"types"`
}

// upstreamMode returns the uplink's mode as describe reports it.
func (s *Service) upstreamMode() string {
	if s.UpstreamMode == nil {
		return UpstreamUnknown
	}
	switch m := s.UpstreamMode(); m {
	case UpstreamReceiver, UpstreamStock:
		return m
	}
	return UpstreamUnknown
}

// Describe returns what role a may use, each type with the form and workflow the downlink
// learned of it: the form carries its hash and learned_at.
func (s *Service) Describe(ctx context.Context, a gateway.Actor) (*DescribeResult, error) {
	learned, err := s.DB.LearnedForms(ctx)
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	byType := make(map[string]sqlite.LearnedForm, len(learned))
	for _, f := range learned {
		byType[f.PortalType] = f
	}
	hash, err := s.DB.FormsHash(ctx)
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	out := &DescribeResult{Peer: a.Peer, Role: a.Role, FormsHash: hash, UpstreamMode: s.upstreamMode(), Types: []DescribedType{}}
	for _, ti := range s.Policy.Describe(a.Role) {
		dt := DescribedType{TypeInfo: ti, Form: json.RawMessage("null"), Workflow: json.RawMessage("null")}
		if f, ok := byType[ti.PortalType]; ok {
			if f.Form != nil {
				if dt.Form, err = withFormMeta(f); err != nil {
					return nil, fmt.Errorf("describe %s: %w", ti.PortalType, err)
				}
			}
			if f.Workflow != nil {
				dt.Workflow = f.Workflow
			}
		}
		out.Types = append(out.Types, dt)
	}
	return out, nil
}

// withFormMeta returns a stored form with its type's hash and learned_at.
func withFormMeta(f sqlite.LearnedForm) (json.RawMessage, error) {
	form, err := sqlite.DecodeObject(f.Form)
	if err != nil {
		return nil, err
	}
	form["hash"] = f.Hash
	form["learned_at"] = f.LearnedAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	return json.Marshal(form)
}

// SyncState is one document's entry in the sync method's result: its outbox state and, for a
// pending workflow action, the transition waiting (the earliest not yet done).
type SyncState struct {
	outbox.DocState
	Transition string `json:"transition,omitempty"`
}

// withTransitions returns the sync result, each pending document with its waiting
// transition.
func (s *Service) withTransitions(ctx context.Context, states map[string]outbox.DocState) (any, error) {
	var pending []string
	for id, st := range states {
		if st.State == outbox.SyncPending {
			pending = append(pending, id)
		}
	}
	trans, err := s.DB.PendingTransitions(ctx, pending)
	if err != nil {
		return nil, err
	}
	out := make(map[string]SyncState, len(states))
	for id, st := range states {
		out[id] = SyncState{DocState: st, Transition: trans[id]}
	}
	return map[string]any{"states": out}, nil
}
