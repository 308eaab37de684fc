package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/query"
)

// pullReceiver pulls every scope through the receiver's changes query: one request carries
// every scope with its cursor (null the first time, then the one last received); the
// scopes whose answer says more are asked again until none does. Each answer is applied in
// one transaction with the cursors it brought.
func (d *Downlink) pullReceiver(ctx context.Context, states []*scopeState, capa *Capability) error {
	encoding := EncodingGzip
	if capa != nil {
		encoding = capa.Encoding()
	}
	limit := min(d.PageSize, 1000)
	active := states
	for _, st := range states {
		d.startInitial(st)
	}
	for len(active) > 0 {
		if err := d.gate(ctx); err != nil {
			return err
		}
		req := ChangesRequest{Gateway: d.Gateway, Limit: limit}
		byName := map[string]*scopeState{}
		floors := map[string]string{}
		for _, st := range active {
			d.mu.Lock()
			pos := st.pos
			d.mu.Unlock()
			floor := pos.Floor
			if len(pos.Receiver) == 0 && floor == "" && pos.Date != "" {
				// The scope's position is known as a date only: start the receiver's cursor
				// from it rather than from the beginning.
				floor = windowStart(pos, d.Overlap)
			}
			floors[st.Name] = floor
			byName[st.Name] = st
			req.Scopes = append(req.Scopes, ChangesScope{
				Name:       st.Name,
				PortalType: st.PortalType,
				Query:      receiverQuery(st.query, floor),
				Fields:     st.Fields,
				Cursor:     pos.Receiver,
			})
		}
		asked := d.erp5Now()
		resp, err := d.Client.Changes(ctx, req, encoding)
		if err != nil {
			return err
		}
		fresh := d.now()
		var pages []ScopePage
		var next []*scopeState
		newPos := map[string]position{}
		rowCount := map[string]int{}
		for _, sc := range resp.Scopes {
			st := byName[sc.Name]
			if st == nil {
				return fmt.Errorf("erp5 changes: %w: answer for unknown scope %q", ErrBadResponse, sc.Name)
			}
			delete(byName, sc.Name)
			d.mu.Lock()
			pos, complete := st.pos, st.complete
			d.mu.Unlock()
			rows := make([]PulledRow, 0, len(sc.Rows))
			for _, r := range sc.Rows {
				fields, err := outbox.DecodeObject(r.Fields)
				if err != nil {
					return fmt.Errorf("erp5 changes: %w: row %s: %v", ErrBadResponse, r.ID, err)
				}
				if r.ID == "" {
					return fmt.Errorf("erp5 changes: %w: a row without id", ErrBadResponse)
				}
				withParent(r.ID, fields)
				rows = append(rows, PulledRow{ID: r.ID, Version: r.Version, Fields: fields})
				pos.advance(r.ModificationDate, r.ID)
			}
			if len(sc.Cursor) > 0 && !bytes.Equal(sc.Cursor, []byte("null")) {
				pos.Receiver = append(json.RawMessage(nil), sc.Cursor...)
				pos.Floor = floors[sc.Name]
			}
			if !sc.More {
				// Every change indexed before the request was sent is in.
				pos.AsOf = asked.Add(-time.Second).UTC().Format(time.RFC3339Nano)
			}
			done := complete || !sc.More
			newPos[sc.Name] = pos
			rowCount[sc.Name] = len(rows)
			pageFields := st.Fields
			if len(st.Fields) > 0 && contained(rows) {
				pageFields = withKeys(st.Fields, "parent_relative_url")
			}
			pages = append(pages, ScopePage{
				Scope: st.Name, PortalType: st.PortalType, Fields: pageFields, Rows: rows, AtLeast: !complete,
				Cursor: &ScopeCursor{Scope: st.Name, Cursor: pos.text(), Complete: done, FreshAt: fresh},
			})
			if sc.More {
				next = append(next, st)
			}
		}
		if len(byName) > 0 {
			return fmt.Errorf("erp5 changes: %w: %d scopes missing from the answer", ErrBadResponse, len(byName))
		}
		rep, err := d.apply(ctx, pages)
		if err != nil {
			return fmt.Errorf("downlink apply: %w", err)
		}
		d.applied(pages, newPos, rep, rowCount)
		for _, st := range active {
			d.logProgress(st)
		}
		active = next
	}
	return nil
}

// receiverQuery is a scope's query for the changes query: its own, ANDed with
// modification_date >= floor when the cursor starts from a date.
func receiverQuery(q query.Query, floor string) string {
	if floor == "" {
		return query.Format(q)
	}
	return query.Format(query.And(q, &query.Simple{Key: "modification_date", Operator: query.OpGE, Value: floor}))
}

// advance moves the stock keyset position to (date, id) when that is later.
func (p *position) advance(date, id string) {
	if date == "" {
		return
	}
	t, ok := parseERP5Date(date)
	if !ok {
		return
	}
	if p.Date != "" {
		cur, ok := parseERP5Date(p.Date)
		if ok {
			switch c := t.Compare(cur); {
			case c < 0, c == 0 && id <= p.ID:
				return
			}
		}
	}
	p.Date, p.ID = formatRFC822(t), id
}

// windowStart is where a pull from p starts: min(Date, AsOf - overlap), as an RFC 822 date.
// A change not yet applied at a position up to (Date, ID) was indexed after AsOf, so (the
// indexing lag being under overlap) it was modified after AsOf - overlap.
func windowStart(p position, overlap time.Duration) string {
	t, ok := parseERP5Date(p.Date)
	if !ok {
		return ""
	}
	start := t
	if a, err := time.Parse(time.RFC3339Nano, p.AsOf); err == nil {
		if w := a.Add(-overlap); w.Before(start) {
			start = w
		}
	} else {
		start = t.Add(-overlap)
	}
	return formatRFC822(start)
}

// rfc822 is how ERP5 writes dates in search results and forms.
const rfc822 = time.RFC1123Z

func formatRFC822(t time.Time) string { return t.UTC().Format(rfc822) }

// parseERP5Date reads a date as ERP5 or an export writes it: RFC 822, RFC 3339, or ISO 8601
// as the query language reads it.
func parseERP5Date(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{rfc822, time.RFC1123, time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	if t, _, ok := query.ParseDate(s); ok {
		return t.UTC(), true
	}
	return time.Time{}, false
}
