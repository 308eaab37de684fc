package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// Downlink defaults.
const (
	// DefaultPullInterval is how often the downlink refreshes when nothing asks it to. With the
	// receiver an idle refresh costs about 1 KB; the interval is under the transport's idle
	// timeout, so a refresh reuses the warm connection instead of paying a new handshake.
	DefaultPullInterval = 5 * time.Minute
	// DefaultOverlap is the overlap window of stock pulls: ERP5 indexes asynchronously, so a
	// document modified before the last position read may appear in the catalog later; every
	// pull re-reads what was modified within this window before it. It must exceed the
	// catalog's indexing lag (activities) plus the clock error.
	DefaultOverlap = 10 * time.Minute
	// DefaultPageSize is how many rows one request asks for: the receiver's maximum. A page of
	// ten-field documents is ~100 KB compressed, ~2 s on the satellite, so the round trip
	// each page costs is a small share.
	DefaultPageSize = 1000
	// DefaultReconcileInterval is how often the ids ERP5 has in a type's scopes are compared
	// with the replica's, to find documents that left a scope. A listing costs ~10 bytes per
	// document compressed.
	DefaultReconcileInterval = 24 * time.Hour
	// DefaultFetchTimeout bounds a get the replica could not answer: a browser is waiting.
	DefaultFetchTimeout = 30 * time.Second
	// DefaultMaxUplinkWait bounds how long a pull waits for a busy uplink: writes go first,
	// but a stream of them must not keep the replica stale for ever.
	DefaultMaxUplinkWait = 2 * time.Minute
	// downlinkMinBackoff and downlinkMaxBackoff bound the wait after a failed pull.
	downlinkMinBackoff = 5 * time.Second
	downlinkMaxBackoff = 5 * time.Minute
	// uplinkPoll is how often a pull waiting for the uplink looks again.
	uplinkPoll = 500 * time.Millisecond
)

// Scope is one set of documents the downlink replicates (upstream.scopes): documents of
// PortalType matching Query, with the properties in Fields.
type Scope struct {
	// Name identifies the scope (its cursor, fresh_at); default the portal type.
	Name string
	// PortalType is the documents' portal type; every stored document carries it.
	PortalType string
	// Query is a jIO query ANDed with the portal type; "" takes every document of the type.
	Query string
	// Fields are the replicated properties; empty replicates every property the receiver
	// knows (stock ERP5 then needs a traverse per document: list the fields).
	Fields []string
}

// Validate checks the scope and fills its default name.
func (s *Scope) Validate() error {
	if s.PortalType == "" {
		return fmt.Errorf("scope %q: no portal_type", s.Name)
	}
	if s.Name == "" {
		s.Name = s.PortalType
	}
	if _, err := query.Parse(s.Query); err != nil {
		return fmt.Errorf("scope %s: query: %w", s.Name, err)
	}
	seen := map[string]bool{}
	for _, f := range s.Fields {
		if f == "" || seen[f] {
			return fmt.Errorf("scope %s: field %q is empty or repeated", s.Name, f)
		}
		seen[f] = true
	}
	return nil
}

// definition identifies what the scope replicates: a change makes the scope start over.
func (s *Scope) definition() string {
	f := slices.Clone(s.Fields)
	slices.Sort(f)
	sum := sha256.Sum256([]byte(s.PortalType + "\x00" + s.Query + "\x00" + strings.Join(f, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// PulledRow is one document as ERP5 sent it (sqlite.PullRow has the same fields).
type PulledRow struct {
	// ID is the document's relative URL.
	ID string
	// Version is ERP5's modification time, RFC 3339.
	Version string
	// Coarse marks a version known to the second only (stock search).
	Coarse bool
	// Fields are the scope's fields (nil: absent), decoded with UseNumber.
	Fields map[string]any
}

// ScopeCursor is a scope's row of sync_cursors (sqlite.SyncCursor has the same fields).
type ScopeCursor struct {
	// Scope names the scope.
	Scope string
	// Cursor is the downlink's position, JSON it alone reads; "" none.
	Cursor string
	// Complete is set once the initial sync finished.
	Complete bool
	// FreshAt is when the replica last heard from ERP5 for the scope (zero: unchanged).
	FreshAt time.Time
	// UpdatedAt is when the row changed (read only).
	UpdatedAt time.Time
}

// ScopePage is what one exchange brought for one scope: applied in one transaction with the
// other pages of that exchange (sqlite.PullPage).
type ScopePage struct {
	// Scope names the scope; PortalType is what its stored documents carry.
	Scope      string
	PortalType string
	// Fields are the replicated fields (nil: the rows' own keys).
	Fields []string
	// Rows are the changed documents.
	Rows []PulledRow
	// Gone are ids that left the scope.
	Gone []string
	// AtLeast applies rows at the replica's own version too (initial sync).
	AtLeast bool
	// Cursor is stored with the page.
	Cursor *ScopeCursor
}

// PullReport is what applying pages did (sqlite.PullReport has the same fields).
type PullReport struct {
	// Inserted and Updated count rows stored; Skipped rows not newer than the replica; Kept
	// rows that met pending local edits.
	Inserted, Updated, Skipped, Kept int
	// Removed counts documents that left their scope and were removed.
	Removed int
	// Conflicts are the outbox entries turned into (or refreshed as) conflicts.
	Conflicts []int64
	// Changed are the ids whose replica document changed: the `changed` notification's ids.
	Changed []string
}

// Replica is the database side of the downlink; *sqlite.DB provides it, with a conversion of
// its argument types that cmd/gateway does. Errors of GetDocument are gateway errors.
type Replica interface {
	// SyncCursors returns every scope's cursor.
	SyncCursors(ctx context.Context) (map[string]ScopeCursor, error)
	// SetSyncCursors stores cursors (a scope reset).
	SetSyncCursors(ctx context.Context, cursors []ScopeCursor) error
	// DeleteSyncCursors forgets scopes no longer configured.
	DeleteSyncCursors(ctx context.Context, scopes []string) error
	// ApplyPull applies pages, with their cursors, in one transaction.
	ApplyPull(ctx context.Context, pages []ScopePage) (*PullReport, error)
	// ReplicaIDs returns the ERP5 ids (no local ids) of the replica's documents of a type.
	ReplicaIDs(ctx context.Context, portalType string) ([]string, error)
	// GetDocument returns a live document (ENOTFOUND without one).
	GetDocument(ctx context.Context, id string) (*gateway.Document, error)
	// CacheDocument stores a fetched document unless the replica has it, and returns the
	// replica's document.
	CacheDocument(ctx context.Context, id, portalType string, fields map[string]any) (*gateway.Document, error)
}

// Downlink keeps the replica of the configured scopes fresh (docs/DESIGN.md §7, Downlink): with the
// receiver, one changes query for every scope with ERP5's opaque cursors; without it, keyset
// pages of the stock search by (modification date, id) with an overlap window. It pulls on
// an interval, right after the link comes back, and on SyncNow; it waits while the uplink is
// sending and stops at the daily byte budget. Set the fields, then Open; SyncNow, Status,
// Progress and Fetch are safe for concurrent use.
type Downlink struct {
	// Client talks to ERP5; its OnExchange should lead to ObserveExchange.
	Client *Client
	// Replica is the database.
	Replica Replica
	// Scopes are what the replica holds (upstream.scopes).
	Scopes []Scope
	// Gateway is the site's name at ERP5 (site_id): the receiver leaves its own changes out.
	// Without it the stock search is used.
	Gateway string
	// Protocol is auto, batch or stock ("" is auto): stock never asks the receiver.
	Protocol string
	// Modules maps portal types to their modules (upstream.modules): an id directly in the
	// module of a complete scope without a query is known absent when the replica lacks it.
	Modules map[string]string
	// Interval is the time between refreshes (DefaultPullInterval).
	Interval time.Duration
	// Overlap is the stock pulls' overlap window (DefaultOverlap).
	Overlap time.Duration
	// PageSize is the rows per request (DefaultPageSize; the receiver caps it at 1000).
	PageSize int
	// ReconcileInterval is the time between reconciliations of a type (default
	// DefaultReconcileInterval; negative: never).
	ReconcileInterval time.Duration
	// DailyBudget stops pulls for the rest of the UTC day once today's traffic on Meter
	// reached it (0: none); Meter must be the one the client's transport counts into.
	DailyBudget int64
	Meter       *Meter
	// UplinkBusy reports whether the uplink is sending; a pull waits for it (at most
	// MaxUplinkWait at a time). (*Uplink).Busy fits.
	UplinkBusy    func() bool
	MaxUplinkWait time.Duration
	// Mode, when set, reports the uplink's mode and capability (ModeBatch, ModeStock, or
	// ModeUnknown to let the downlink probe itself).
	Mode func() (string, *Capability)
	// ProbeInterval is how often the downlink's own capability probe is repeated.
	ProbeInterval time.Duration
	// OnChanged is called after each applied page with the ids whose replica document
	// changed (the `changed` notification; the caller filters by what each peer may read).
	OnChanged func(ids []string)
	// OnStatus is called after each pass.
	OnStatus func(DownlinkStatus)
	// Forms, when set, keeps the forms and workflows the downlink learns of the scopes' types
	// (and the types their forms embed): once, then every FormsInterval
	// (DefaultFormsInterval; negative: never) and on RefreshForms. OnFormsChanged is called
	// after a learning changed one.
	Forms          FormStore
	FormsInterval  time.Duration
	OnFormsChanged func()
	// FetchTimeout bounds Fetch's request (DefaultFetchTimeout).
	FetchTimeout time.Duration
	Logger       *slog.Logger
	// Now returns the current time (nil: time.Now); timers use the time package, so tests run
	// under testing/synctest.
	Now func() time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	// uplinkWaitLeft is what a pass may still wait for the uplink (the loop's goroutine only).
	uplinkWaitLeft time.Duration

	mu        sync.Mutex
	opened    bool
	closed    bool
	states    []*scopeState
	byName    map[string]*scopeState
	st        DownlinkStatus
	requested bool
	// formsRequested asks the next pass to learn the forms (RefreshForms).
	formsRequested bool
	inPass         bool
	linkDown       bool
	lastErr        string
	failures       int
	probe          struct {
		mode string
		capa *Capability
		at   time.Time
		n404 int
	}
}

// scopeState is a scope and where its pulls stand.
type scopeState struct {
	Scope
	def      string
	query    query.Query // the scope's query, parsed
	pos      position
	complete bool
	freshAt  time.Time

	// progress since Open
	rows, pages int64
	started     time.Time // start of the running initial sync
	lastLog     time.Time
}

// position is a scope's cursor as the downlink stores it (sync_cursors.cursor).
type position struct {
	// Def is the scope definition the position belongs to.
	Def string `json:"def"`
	// Receiver is ERP5's opaque cursor, echoed back.
	Receiver json.RawMessage `json:"r,omitempty"`
	// Floor is a modification date (RFC 822) ANDed with the scope's query in the receiver's
	// changes query, when the receiver cursor was started from a known date (seeded offline,
	// or synced in stock mode): the catch-up then skips older documents. Any later change has
	// a later modification date, so the condition stays for the cursor's life.
	Floor string `json:"floor,omitempty"`
	// Date and ID are the greatest (modification_date, id) applied: the stock keyset.
	Date string `json:"d,omitempty"`
	ID   string `json:"i,omitempty"`
	// AsOf is an ERP5 time (RFC 3339) before which every change indexed at a position up to
	// (Date, ID) was applied: a later pull re-reads from min(Date, AsOf - Overlap).
	AsOf string `json:"a,omitempty"`
	// Reconciled is when the type's ids were last reconciled (RFC 3339).
	Reconciled string `json:"rc,omitempty"`
}

// DownlinkStatus is what the downlink shows (`gateway sync status`, the status page).
type DownlinkStatus struct {
	// Mode is batch (receiver changes query) or stock (search), "" before the first pull.
	Mode string `json:"mode"`
	// State is idle, pulling, waiting_uplink (writes go first), budget_spent (until the next
	// UTC day) or backoff (after a failure, until NextPull).
	State     string        `json:"state"`
	LastPull  time.Time     `json:"last_pull,omitzero"`
	NextPull  time.Time     `json:"next_pull,omitzero"`
	LastError string        `json:"last_error,omitempty"`
	Failures  int           `json:"failures"`
	Scopes    []ScopeStatus `json:"scopes"`
}

// ScopeStatus is one scope's progress.
type ScopeStatus struct {
	Name       string `json:"name"`
	PortalType string `json:"portal_type"`
	// Complete is set once the initial sync finished.
	Complete bool      `json:"complete"`
	FreshAt  time.Time `json:"fresh_at,omitzero"`
	// Position is the last (modification date, id) applied.
	Position string `json:"position,omitempty"`
	// Rows and Pages count what the downlink received since it started.
	Rows  int64 `json:"rows"`
	Pages int64 `json:"pages"`
	// InitialSince is when the running initial sync started; Rate its rows per second.
	InitialSince time.Time `json:"initial_since,omitzero"`
	Rate         float64   `json:"rate,omitempty"`
}

// Open validates the scopes, loads their cursors (a scope whose definition changed starts
// over) and starts the loop, which pulls at once.
func (d *Downlink) Open(ctx context.Context) error {
	if d.Client == nil || d.Replica == nil {
		return errors.New("downlink: no client or replica")
	}
	switch d.Protocol {
	case "":
		d.Protocol = ProtocolAuto
	case ProtocolAuto, ProtocolBatch, ProtocolStock:
	default:
		return fmt.Errorf("downlink: protocol %q is not auto, batch or stock", d.Protocol)
	}
	if err := d.Client.init(); err != nil {
		return err
	}
	if d.Logger == nil {
		d.Logger = slog.Default().With(LogKeySubsystem, "downlink")
	}
	if d.Interval <= 0 {
		d.Interval = DefaultPullInterval
	}
	if d.Overlap <= 0 {
		d.Overlap = DefaultOverlap
	}
	if d.PageSize <= 0 {
		d.PageSize = DefaultPageSize
	}
	if d.ReconcileInterval == 0 {
		d.ReconcileInterval = DefaultReconcileInterval
	}
	if d.FetchTimeout <= 0 {
		d.FetchTimeout = DefaultFetchTimeout
	}
	if d.MaxUplinkWait <= 0 {
		d.MaxUplinkWait = DefaultMaxUplinkWait
	}
	if d.ProbeInterval <= 0 {
		d.ProbeInterval = DefaultProbeInterval
	}
	if d.FormsInterval == 0 {
		d.FormsInterval = DefaultFormsInterval
	}
	if err := d.load(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.wake = make(chan struct{}, 1)
	d.opened, d.requested = true, true
	d.mu.Unlock()
	ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	d.wg.Go(func() { d.run(ctx) })
	return nil
}

// load validates the scopes and reads their cursors.
func (d *Downlink) load(ctx context.Context) error {
	stored, err := d.Replica.SyncCursors(ctx)
	if err != nil {
		return fmt.Errorf("downlink open: %w", err)
	}
	names := map[string]bool{}
	var states []*scopeState
	var reset []ScopeCursor
	for i := range d.Scopes {
		s := d.Scopes[i]
		if err := s.Validate(); err != nil {
			return fmt.Errorf("downlink: %w", err)
		}
		if names[s.Name] {
			return fmt.Errorf("downlink: two scopes are named %q", s.Name)
		}
		names[s.Name] = true
		q, _ := query.Parse(s.Query)
		st := &scopeState{Scope: s, def: s.definition(), query: q}
		c, ok := stored[s.Name]
		if ok && c.Cursor != "" {
			if err := json.Unmarshal([]byte(c.Cursor), &st.pos); err != nil {
				d.Logger.Warn("unreadable downlink cursor: the scope starts over", "scope", s.Name, "err", err)
				st.pos = position{}
			}
		}
		st.complete, st.freshAt = c.Complete, c.FreshAt
		if ok && st.pos.Def != st.def {
			if c.Cursor != "" {
				d.Logger.Warn("scope definition changed: it is pulled again from the start", "scope", s.Name)
			}
			st.pos, st.complete = position{Def: st.def}, false
			reset = append(reset, ScopeCursor{Scope: s.Name, Cursor: st.pos.text()})
		}
		st.pos.Def = st.def
		states = append(states, st)
	}
	if len(reset) > 0 {
		if err := d.Replica.SetSyncCursors(ctx, reset); err != nil {
			return fmt.Errorf("downlink open: %w", err)
		}
	}
	var gone []string
	for name := range stored {
		if !names[name] {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		if err := d.Replica.DeleteSyncCursors(ctx, gone); err != nil {
			return fmt.Errorf("downlink open: %w", err)
		}
	}
	d.mu.Lock()
	d.states = states
	d.byName = map[string]*scopeState{}
	for _, st := range states {
		d.byName[st.Name] = st
	}
	d.st.State = "idle"
	d.mu.Unlock()
	return nil
}

func (p position) text() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// Close stops the loop and waits for it, at most until ctx is done. A page being applied is
// finished first. It is safe to call more than once.
func (d *Downlink) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed || d.cancel == nil {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("downlink close: %w", ctx.Err())
	}
}

// SyncNow asks for a pull now (`gateway sync now`): it cuts a backoff or interval wait short.
// The budget still holds.
func (d *Downlink) SyncNow() {
	d.mu.Lock()
	d.requested = true
	d.mu.Unlock()
	d.signal()
}

func (d *Downlink) signal() {
	d.mu.Lock()
	wake := d.wake
	d.mu.Unlock()
	if wake == nil {
		return
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

// ObserveExchange follows the link from an exchange with ERP5; it has Client.OnExchange's
// signature, and every exchange the client makes (the uplink's too) should reach it: set
// Client.OnExchange to it before the uplink and the downlink are opened (the uplink wraps
// it). A request that got no answer means the link is down, and Fetch answers offline at
// once; an answer after that means it came back, and a pull follows at once.
func (d *Downlink) ObserveExchange(method, path string, status int, err error) {
	down := status == 0 && err != nil && !errors.Is(err, context.Canceled)
	d.mu.Lock()
	was := d.linkDown
	d.linkDown = down
	// A pull running now is already using the link: no second one after it.
	back := was && !down && !d.inPass && d.opened && !d.closed
	if back {
		d.requested = true
	}
	d.mu.Unlock()
	if back {
		d.Logger.Info("link back: pulling now")
		d.signal()
	}
}

// Status returns the downlink's state and each scope's progress.
func (d *Downlink) Status() DownlinkStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.st
	st.LastError, st.Failures = d.lastErr, d.failures
	st.Scopes = d.progressLocked()
	return st
}

// Progress returns each scope's progress.
func (d *Downlink) Progress() []ScopeStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.progressLocked()
}

func (d *Downlink) progressLocked() []ScopeStatus {
	now := d.now()
	out := make([]ScopeStatus, 0, len(d.states))
	for _, s := range d.states {
		ss := ScopeStatus{Name: s.Name, PortalType: s.PortalType, Complete: s.complete, FreshAt: s.freshAt,
			Rows: s.rows, Pages: s.pages, InitialSince: s.started}
		if s.pos.Date != "" {
			ss.Position = s.pos.Date + " " + s.pos.ID
		}
		if !s.started.IsZero() {
			if el := now.Sub(s.started).Seconds(); el > 0 {
				ss.Rate = float64(s.rows) / el
			}
		}
		out = append(out, ss)
	}
	return out
}

func (d *Downlink) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// erp5Now is ERP5's clock, as well as the Date headers tell it.
func (d *Downlink) erp5Now() time.Time {
	skew, _ := d.Client.ClockSkew()
	return d.now().Add(skew)
}

func (d *Downlink) setState(s string) {
	d.mu.Lock()
	d.st.State = s
	d.mu.Unlock()
}

func (d *Downlink) publish() {
	if d.OnStatus != nil {
		d.OnStatus(d.Status())
	}
}

// errBudget stops a pass: today's byte budget is spent.
var errBudget = errors.New("today's upstream byte budget is spent")

// overBudget reports whether today's traffic reached the daily budget.
func (d *Downlink) overBudget() bool {
	if d.DailyBudget <= 0 || d.Meter == nil {
		return false
	}
	r := d.Meter.Reading()
	return r.UpToday+r.DownToday >= d.DailyBudget
}

// run is the loop: a pass at once, then one every Interval, right after the link returns and
// on SyncNow; failures back off exponentially.
func (d *Downlink) run(ctx context.Context) {
	next := d.now()
	for ctx.Err() == nil {
		d.mu.Lock()
		requested := d.requested
		d.st.NextPull = next
		d.mu.Unlock()
		if wait := next.Sub(d.now()); !requested && wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-d.wake:
			case <-timer.C:
			}
			timer.Stop()
			d.mu.Lock()
			requested = d.requested
			d.mu.Unlock()
			if !requested && d.now().Before(next) {
				continue
			}
		}
		d.mu.Lock()
		d.requested = false
		d.mu.Unlock()
		if d.overBudget() {
			d.setState("budget_spent")
			now := d.now().UTC()
			y, m, day := now.Date()
			next = time.Date(y, m, day+1, 0, 0, 1, 0, time.UTC)
			d.publish()
			continue
		}
		d.mu.Lock()
		d.inPass = true
		d.mu.Unlock()
		err := d.pass(ctx)
		d.mu.Lock()
		d.inPass = false
		d.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		now := d.now()
		d.mu.Lock()
		switch {
		case err == nil:
			if d.failures > 0 {
				d.Logger.Info(fmt.Sprintf("downlink recovered after %d failures", d.failures))
			}
			d.failures, d.lastErr = 0, ""
			d.st.State, d.st.LastPull = "idle", now
			next = now.Add(d.Interval)
		case errors.Is(err, errBudget):
			d.st.State = "budget_spent"
			y, m, day := now.UTC().Date()
			next = time.Date(y, m, day+1, 0, 0, 1, 0, time.UTC)
		default:
			d.failures++
			msg := shortErr(err)
			if errorKey(msg) != errorKey(d.lastErr) {
				d.Logger.Warn("downlink pull failed", "err", msg, "failures", d.failures)
			}
			d.lastErr = msg
			d.st.State = "backoff"
			wait := downlinkMinBackoff << min(d.failures-1, 10)
			next = now.Add(min(wait, downlinkMaxBackoff))
		}
		d.mu.Unlock()
		d.publish()
	}
}

// waitUplink waits while the uplink is sending (writes go first): at most MaxUplinkWait in
// all during one pass, so that a stream of writes delays a pull without stopping it.
func (d *Downlink) waitUplink(ctx context.Context) error {
	if d.UplinkBusy == nil || d.uplinkWaitLeft <= 0 || !d.UplinkBusy() {
		return nil
	}
	d.setState("waiting_uplink")
	defer d.setState("pulling")
	start := d.now()
	deadline := start.Add(d.uplinkWaitLeft)
	defer func() { d.uplinkWaitLeft -= d.now().Sub(start) }()
	for d.UplinkBusy() && d.now().Before(deadline) {
		t := time.NewTimer(uplinkPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// gate runs before every request of a pass: the uplink first, then the budget.
func (d *Downlink) gate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.waitUplink(ctx); err != nil {
		return err
	}
	if d.overBudget() {
		return errBudget
	}
	return nil
}

// pass pulls every scope once, then reconciles the types that are due.
func (d *Downlink) pass(ctx context.Context) error {
	d.setState("pulling")
	d.uplinkWaitLeft = d.MaxUplinkWait
	// The uplink first: its round also probes the receiver, which the mode then reuses.
	if err := d.gate(ctx); err != nil {
		return err
	}
	mode, capa, err := d.mode(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.st.Mode = mode
	states := slices.Clone(d.states)
	d.mu.Unlock()
	if mode == ModeBatch {
		if err := d.pullReceiver(ctx, states, capa); err != nil {
			return err
		}
	} else {
		for _, st := range states {
			if err := d.pullStock(ctx, st); err != nil {
				return err
			}
		}
	}
	if err := d.learnFormsDue(ctx, mode, capa); err != nil {
		return err
	}
	return d.reconcileDue(ctx, states)
}

// mode returns how to pull: the receiver's changes query (ModeBatch) or the stock search.
// The uplink's knowledge is used when it has some; else the downlink asks the capability
// itself (two 404s in a row mean stock ERP5, as for the uplink).
func (d *Downlink) mode(ctx context.Context) (string, *Capability, error) {
	if d.Protocol == ProtocolStock {
		return ModeStock, nil, nil
	}
	if d.Gateway == "" {
		return ModeStock, nil, nil
	}
	if d.Mode != nil {
		if m, c := d.Mode(); m == ModeBatch || m == ModeStock {
			return m, c, nil
		}
	}
	d.mu.Lock()
	p := d.probe
	d.mu.Unlock()
	if p.mode != "" && d.now().Sub(p.at) < d.ProbeInterval {
		return p.mode, p.capa, nil
	}
	if err := d.gate(ctx); err != nil {
		return "", nil, err
	}
	capa, err := d.Client.Capability(ctx)
	var he *HTTPError
	switch {
	case err == nil:
		d.mu.Lock()
		d.probe.mode, d.probe.capa, d.probe.at, d.probe.n404 = ModeBatch, capa, d.now(), 0
		d.mu.Unlock()
		return ModeBatch, capa, nil
	case errors.As(err, &he) && he.Status == 404:
		d.mu.Lock()
		d.probe.n404++
		n := d.probe.n404
		if n >= 2 {
			d.probe.mode, d.probe.capa, d.probe.at, d.probe.n404 = ModeStock, nil, d.now(), 0
		}
		d.mu.Unlock()
		if n >= 2 {
			return ModeStock, nil, nil
		}
		// One 404 alone may be a front end's hiccup: ask again at once.
		return d.mode(ctx)
	}
	return "", nil, fmt.Errorf("capability probe: %w", err)
}

// applyTimeout bounds storing one page while the downlink closes.
const applyTimeout = time.Minute

// apply stores pages. A page that crossed the link is paid for: it is stored even while the
// downlink closes (within applyTimeout).
func (d *Downlink) apply(ctx context.Context, pages []ScopePage) (*PullReport, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	return d.Replica.ApplyPull(ctx, pages)
}

// applied records a page's outcome in memory and notifies the changed ids.
func (d *Downlink) applied(pages []ScopePage, newPos map[string]position, rep *PullReport, rows map[string]int) {
	d.mu.Lock()
	for _, p := range pages {
		st := d.byName[p.Scope]
		if st == nil {
			continue
		}
		if pos, ok := newPos[p.Scope]; ok {
			st.pos = pos
		}
		if p.Cursor != nil {
			if !st.complete && p.Cursor.Complete {
				el := d.now().Sub(st.started)
				d.Logger.Info("initial sync complete", "scope", st.Name, "rows", st.rows+int64(rows[p.Scope]),
					"elapsed", el.Round(time.Second))
				st.started = time.Time{}
			}
			st.complete = p.Cursor.Complete
			if !p.Cursor.FreshAt.IsZero() {
				st.freshAt = p.Cursor.FreshAt
			}
		}
		st.rows += int64(rows[p.Scope])
		st.pages++
	}
	d.mu.Unlock()
	if rep != nil && len(rep.Changed) > 0 && d.OnChanged != nil {
		d.OnChanged(slices.Clone(rep.Changed))
	}
}

// startInitial notes the start of a scope's initial sync, for its progress.
func (d *Downlink) startInitial(st *scopeState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !st.complete && st.started.IsZero() {
		st.started = d.now()
		st.lastLog = st.started
		what := "starting"
		if st.pos.Date != "" || len(st.pos.Receiver) > 0 {
			what = "resuming"
		}
		d.Logger.Info("initial sync "+what, "scope", st.Name, "portal_type", st.PortalType, "position", st.pos.Date+" "+st.pos.ID)
	}
}

// logProgress logs an initial sync's progress at most every 30 seconds.
func (d *Downlink) logProgress(st *scopeState) {
	d.mu.Lock()
	now := d.now()
	if st.complete || st.started.IsZero() || now.Sub(st.lastLog) < 30*time.Second {
		d.mu.Unlock()
		return
	}
	st.lastLog = now
	rows, el := st.rows, now.Sub(st.started)
	pos := st.pos.Date + " " + st.pos.ID
	d.mu.Unlock()
	d.Logger.Info("initial sync progress", "scope", st.Name, "rows", rows, "elapsed", el.Round(time.Second),
		"rate", fmt.Sprintf("%.0f/s", float64(rows)/max(el.Seconds(), 1e-9)), "position", pos)
}
