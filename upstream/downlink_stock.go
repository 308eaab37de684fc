package upstream

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"sitesync.example/gateway/query"
)

// pullStock pulls one scope through the stock search: pages sorted by (modification_date,
// relative_url), each page after the last row of the one before (keyset paging: ERP5 never
// has to skip rows), every request with a limit (without one ERP5 returns 10 rows). A pass
// starts at min(position, AsOf - Overlap), so documents indexed late are read again; rows
// already applied are skipped by the replica (same version, same fields). Each page is
// applied in one transaction with the new position.
func (d *Downlink) pullStock(ctx context.Context, st *scopeState) error {
	d.startInitial(st)
	d.mu.Lock()
	pos, complete := st.pos, st.complete
	d.mu.Unlock()
	limit := d.PageSize
	base := query.And(&query.Simple{Key: "portal_type", Value: st.PortalType}, st.query)
	// The catalog uid goes with every document: a stock put of a relation names the related
	// document by it (docs/DESIGN.md appendix A).
	selectList := withKeys(st.Fields, "modification_date", "uid")
	if len(st.Fields) == 0 {
		// Every field comes from the document's form, whose state field shows the state's
		// title: its id comes with the search.
		selectList = []string{"modification_date", "uid", "validation_state", "simulation_state"}
	}
	passStart := d.erp5Now().Add(-time.Second)
	var cond query.Query
	if start := windowStart(pos, d.Overlap); start != "" {
		cond = &query.Simple{Key: "modification_date", Operator: query.OpGE, Value: start}
	}
	for {
		if err := d.gate(ctx); err != nil {
			return err
		}
		found, err := d.Client.Search(ctx, SearchOptions{
			Query:      query.Format(query.And(base, cond)),
			SelectList: selectList,
			Limit:      []int{0, limit},
			SortOn:     [][2]string{{"modification_date", "ascending"}, {"relative_url", "ascending"}},
		})
		if err != nil {
			return err
		}
		rows := make([]PulledRow, 0, len(found))
		var lastDate, lastID string
		for _, r := range found {
			md, _ := r.Fields["modification_date"].(string)
			t, ok := parseERP5Date(md)
			if r.ID == "" || !ok {
				return fmt.Errorf("erp5 search: %w: row %q without a readable modification_date %q", ErrBadResponse, r.ID, md)
			}
			fields := r.Fields
			if len(st.Fields) == 0 {
				doc, err := d.Client.Get(ctx, r.ID)
				if err != nil {
					return err
				}
				fields = doc.Fields
				if uid, ok := r.Fields["uid"]; ok && uid != nil {
					fields["uid"] = uid
				}
				for sv := range doc.States {
					if v, ok := r.Fields[sv]; ok {
						fields[sv] = v
					}
				}
			} else if !slices.Contains(st.Fields, "modification_date") {
				delete(fields, "modification_date")
			}
			withParent(r.ID, fields)
			rows = append(rows, PulledRow{ID: r.ID, Version: t.Format(time.RFC3339Nano), Coarse: true, Fields: fields})
			pos.advance(md, r.ID)
			lastDate, lastID = formatRFC822(t), r.ID
		}
		last := len(found) < limit
		pos.AsOf = passStart.UTC().Format(time.RFC3339Nano)
		done := complete || last
		var fields []string
		if len(st.Fields) > 0 {
			fields = withKeys(st.Fields, "uid")
			if contained(rows) {
				fields = withKeys(fields, "parent_relative_url")
			}
		}
		pages := []ScopePage{{
			Scope: st.Name, PortalType: st.PortalType, Fields: fields, Rows: rows, AtLeast: !complete,
			Cursor: &ScopeCursor{Scope: st.Name, Cursor: pos.text(), Complete: done, FreshAt: d.now()},
		}}
		rep, err := d.apply(ctx, pages)
		if err != nil {
			return fmt.Errorf("downlink apply: %w", err)
		}
		d.applied(pages, map[string]position{st.Name: pos}, rep, map[string]int{st.Name: len(rows)})
		d.logProgress(st)
		complete = done
		if last {
			return nil
		}
		// The next page starts strictly after the last row.
		cond = &query.Complex{Operator: "OR", Queries: []query.Query{
			&query.Simple{Key: "modification_date", Operator: query.OpGT, Value: lastDate},
			&query.Complex{Operator: "AND", Queries: []query.Query{
				&query.Simple{Key: "modification_date", Operator: query.OpEQ, Value: lastDate},
				&query.Simple{Key: "relative_url", Operator: query.OpGT, Value: lastID},
			}},
		}}
	}
}

// reconcileDue reconciles every portal type whose scopes are all complete and whose last
// reconciliation is older than ReconcileInterval. A type never reconciled counts from now:
// its initial sync (or the offline import) has just listed it.
func (d *Downlink) reconcileDue(ctx context.Context, states []*scopeState) error {
	if d.ReconcileInterval < 0 {
		return nil
	}
	byType := map[string][]*scopeState{}
	var types []string
	for _, st := range states {
		if _, ok := byType[st.PortalType]; !ok {
			types = append(types, st.PortalType)
		}
		byType[st.PortalType] = append(byType[st.PortalType], st)
	}
	now := d.erp5Now()
	for _, pt := range types {
		due := true
		d.mu.Lock()
		for _, st := range byType[pt] {
			if !st.complete {
				due = false
				break
			}
			last, err := time.Parse(time.RFC3339Nano, st.pos.Reconciled)
			if err != nil {
				st.pos.Reconciled = now.UTC().Format(time.RFC3339Nano)
				due = false
				continue
			}
			if now.Sub(last) < d.ReconcileInterval {
				due = false
			}
		}
		d.mu.Unlock()
		if due {
			if err := d.reconcile(ctx, pt, byType[pt]); err != nil {
				return fmt.Errorf("reconcile %s: %w", pt, err)
			}
		}
	}
	return nil
}

// reconcile compares the ids ERP5 has in a type's scopes with the replica's documents of that
// type, and removes from the replica those ERP5 no longer has in any of them (unless they
// have pending local edits). The replica's ids are read first: a document pulled during the
// listing is not mistaken for one that left.
func (d *Downlink) reconcile(ctx context.Context, pt string, states []*scopeState) error {
	started := d.erp5Now()
	have, err := d.Replica.ReplicaIDs(ctx, pt)
	if err != nil {
		return err
	}
	var scopeQ query.Query
	var ors []query.Query
	for _, st := range states {
		if st.query == nil {
			ors = nil
			break
		}
		ors = append(ors, st.query)
	}
	switch len(ors) {
	case 0:
	case 1:
		scopeQ = ors[0]
	default:
		scopeQ = &query.Complex{Operator: "OR", Queries: ors}
	}
	base := query.And(&query.Simple{Key: "portal_type", Value: pt}, scopeQ)
	listed := map[string]bool{}
	after := ""
	for {
		if err := d.gate(ctx); err != nil {
			return err
		}
		var cond query.Query
		if after != "" {
			cond = &query.Simple{Key: "relative_url", Operator: query.OpGT, Value: after}
		}
		found, err := d.Client.Search(ctx, SearchOptions{
			Query:  query.Format(query.And(base, cond)),
			Limit:  []int{0, d.PageSize},
			SortOn: [][2]string{{"relative_url", "ascending"}},
		})
		if err != nil {
			return err
		}
		for _, r := range found {
			listed[r.ID] = true
			after = r.ID
		}
		if len(found) < d.PageSize {
			break
		}
	}
	var gone []string
	for _, id := range have {
		if !listed[id] {
			gone = append(gone, id)
		}
	}
	stamp := started.UTC().Format(time.RFC3339Nano)
	var pages []ScopePage
	newPos := map[string]position{}
	for i, st := range states {
		d.mu.Lock()
		pos, complete := st.pos, st.complete
		d.mu.Unlock()
		pos.Reconciled = stamp
		newPos[st.Name] = pos
		p := ScopePage{Scope: st.Name, PortalType: pt, Cursor: &ScopeCursor{Scope: st.Name, Cursor: pos.text(), Complete: complete}}
		if i == 0 {
			p.Gone = gone
		}
		pages = append(pages, p)
	}
	rep, err := d.apply(ctx, pages)
	if err != nil {
		return fmt.Errorf("downlink apply: %w", err)
	}
	d.mu.Lock()
	for name, pos := range newPos {
		d.byName[name].pos = pos
	}
	d.mu.Unlock()
	if rep.Removed > 0 || len(gone) > 0 {
		d.Logger.Info("reconciled: documents that left their scope removed", "portal_type", pt,
			"listed", len(listed), "removed", rep.Removed, "kept_with_local_edits", len(gone)-rep.Removed)
	}
	if len(rep.Changed) > 0 && d.OnChanged != nil {
		d.OnChanged(slices.Clone(rep.Changed))
	}
	return nil
}

// withKeys returns fields with keys appended where missing (a new slice).
func withKeys(fields []string, keys ...string) []string {
	out := slices.Clone(fields)
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// withParent sets a contained document's parent_relative_url from its id when the row lacks
// it: an order's lines carry their order, which the app lists them by. A document directly in
// its module is left as ERP5 sent it (its module is in its id).
func withParent(id string, fields map[string]any) {
	if _, ok := fields["parent_relative_url"]; ok || strings.Count(id, "/") < 2 {
		return
	}
	fields["parent_relative_url"] = id[:strings.LastIndexByte(id, '/')]
}

// contained reports whether rows hold a document inside another document (a line).
func contained(rows []PulledRow) bool {
	for _, r := range rows {
		if strings.Count(r.ID, "/") >= 2 {
			return true
		}
	}
	return false
}
