package main

import (
	"context"

	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// downlinkReplica is upstream.Replica over the database: upstream may not import sqlite, so
// the two packages' identical types are converted here.
type downlinkReplica struct {
	*sqlite.DB
}

var _ upstream.Replica = downlinkReplica{}

func (r downlinkReplica) SyncCursors(ctx context.Context) (map[string]upstream.ScopeCursor, error) {
	m, err := r.DB.SyncCursors(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]upstream.ScopeCursor, len(m))
	for k, c := range m {
		out[k] = upstream.ScopeCursor(c)
	}
	return out, nil
}

func (r downlinkReplica) SetSyncCursors(ctx context.Context, cs []upstream.ScopeCursor) error {
	return r.DB.SetSyncCursors(ctx, toSyncCursors(cs))
}

func (r downlinkReplica) ApplyPull(ctx context.Context, pages []upstream.ScopePage) (*upstream.PullReport, error) {
	list := make([]sqlite.PullPage, len(pages))
	for i, p := range pages {
		rows := make([]sqlite.PullRow, len(p.Rows))
		for j, row := range p.Rows {
			rows[j] = sqlite.PullRow(row)
		}
		list[i] = sqlite.PullPage{Scope: p.Scope, PortalType: p.PortalType, Fields: p.Fields, Rows: rows,
			Gone: p.Gone, AtLeast: p.AtLeast}
		if p.Cursor != nil {
			c := sqlite.SyncCursor(*p.Cursor)
			list[i].Cursor = &c
		}
	}
	rep, err := r.DB.ApplyPull(ctx, list)
	if err != nil {
		return nil, err
	}
	out := upstream.PullReport(*rep)
	return &out, nil
}

// toSyncCursors converts the downlink's cursors to the database's.
func toSyncCursors(cs []upstream.ScopeCursor) []sqlite.SyncCursor {
	list := make([]sqlite.SyncCursor, len(cs))
	for i, c := range cs {
		list[i] = sqlite.SyncCursor(c)
	}
	return list
}

// scopes returns upstream.scopes as the downlink takes them.
func (m *Main) scopes() []upstream.Scope {
	out := make([]upstream.Scope, len(m.Config.Upstream.Scopes))
	for i, s := range m.Config.Upstream.Scopes {
		out[i] = upstream.Scope{Name: s.Name, PortalType: s.PortalType, Query: s.Query, Fields: s.Fields}
	}
	return out
}

// NewDownlink builds the downlink over db that shares the uplink's ERP5 client and byte
// meter: the uplink goes first (the downlink waits while it sends), one daily budget covers
// both, and link state learnt by either is seen by both. Call before u.Open: it hooks the
// client's exchanges.
func (m *Main) NewDownlink(db *sqlite.DB, u *upstream.Uplink) *upstream.Downlink {
	d := &upstream.Downlink{
		Client:      u.Client,
		Replica:     downlinkReplica{db},
		Scopes:      m.scopes(),
		Gateway:     m.Config.SiteID,
		Protocol:    m.Config.Upstream.Protocol,
		Modules:     m.Config.Upstream.Modules,
		DailyBudget: m.Config.Upstream.DailyBudget,
		Meter:       u.Meter,
		UplinkBusy:  u.Busy,
		Mode: func() (string, *upstream.Capability) {
			st := u.Status()
			return st.Mode, st.Capability
		},
		Forms:  formStore{db},
		Logger: m.Logger.With(upstream.LogKeySubsystem, "downlink"),
	}
	u.Client.OnExchange = d.ObserveExchange
	return d
}
