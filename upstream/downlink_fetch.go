package upstream

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"sitesync.example/gateway"
)

// Fetch answers a get of a document the replica may lack (docs/DESIGN.md §4): the replica's document
// when it has one; ENOTFOUND for a local id, or an id directly in the module of a scope that
// takes every document of its type and whose initial sync completed; otherwise ERP5 is asked
// (a traverse) when the link is up, and the answer cached in the replica. EUNAVAILABLE
// (reason offline) when the link is down, today's budget is spent or ERP5 does not answer;
// ENOTFOUND when ERP5 has no such document.
func (d *Downlink) Fetch(ctx context.Context, id string) (*gateway.Document, error) {
	if err := gateway.ValidateID(id); err != nil {
		return nil, err
	}
	if gateway.IsLocalID(id) {
		return nil, gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
	}
	doc, err := d.Replica.GetDocument(ctx, id)
	if err == nil || gateway.ErrorCode(err) != gateway.ENOTFOUND {
		return doc, err
	}
	if d.knownAbsent(id) {
		return nil, gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
	}
	d.mu.Lock()
	down := d.linkDown
	d.mu.Unlock()
	if down {
		return nil, gateway.Errorf(gateway.EUNAVAILABLE, "document %s is not on the site and the link to head office is down", id)
	}
	if d.overBudget() {
		return nil, gateway.Errorf(gateway.EUNAVAILABLE, "document %s is not on the site and today's link budget is spent", id)
	}
	ctx, cancel := context.WithTimeout(ctx, d.FetchTimeout)
	defer cancel()
	up, err := d.Client.Get(ctx, id)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return nil, gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
		}
		d.Logger.Warn("fetch from erp5 failed", "id", id, "err", shortErr(err))
		return nil, gateway.Errorf(gateway.EUNAVAILABLE, "document %s is not on the site and head office did not answer", id)
	}
	fields := make(map[string]any, len(up.Fields))
	for k, v := range up.Fields {
		if k != "portal_type" {
			fields[k] = v
		}
	}
	doc, err = d.Replica.CacheDocument(context.WithoutCancel(ctx), id, up.PortalType, fields)
	if err != nil {
		return nil, err
	}
	return doc, nil
}

// knownAbsent reports whether id would be in the replica if ERP5 had it: it sits directly in
// the module of a complete scope that takes every document of its type.
func (d *Downlink) knownAbsent(id string) bool {
	module, rest, ok := strings.Cut(id, "/")
	if !ok || strings.Contains(rest, "/") {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.states {
		if st.complete && st.query == nil && gateway.ModuleOf(st.PortalType, d.Modules) == module {
			return true
		}
	}
	return false
}
