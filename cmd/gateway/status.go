package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newOperatorTokenCommand) }

// Meta keys of the status page.
const (
	// MetaOperatorToken holds the SHA-256 of the operator token (never the token itself).
	MetaOperatorToken = "operator_token_sha256"
	// MetaLinkHistory holds the link's state changes of the last day (JSON), so that the
	// status page's 24-hour strip survives a restart.
	MetaLinkHistory = "link_history"
)

// Status page routes on the LAN listener.
const (
	StatusPath     = "/status"
	StatusJSONPath = "/status.json"
)

// Status page tuning.
const (
	// historyWindow is what the link strip shows, historySlots how many bars it has (15
	// minutes each: an outage of a few minutes is still visible).
	historyWindow = 24 * time.Hour
	historySlots  = 96
	// maxHistoryEvents bounds the stored history of a flapping link.
	maxHistoryEvents = 5000
	// maxProblemEntries bounds the dead and conflict entries listed; the counts stay exact.
	maxProblemEntries = 50
)

func newOperatorTokenCommand(m *Main) *cobra.Command {
	var revoke bool
	cmd := &cobra.Command{
		Use:   "operator-token [--revoke]",
		Short: "Print a new token for the status page (replaces the previous one)",
		Long: `Print a new operator token for the status page (/status) and the address that carries
it. The status page answers browsers on this machine (loopback) without a token; from another
machine it needs this token. Only its hash is stored; running the command again replaces the
token, and --revoke removes it (loopback only from then on). Run it as the service's user.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if revoke {
				if err := db.SetMeta(ctx, MetaOperatorToken, ""); err != nil {
					return fmt.Errorf("operator token: %w", err)
				}
				_ = db.Audit(ctx, operatorName(), "operator-token", "revoked")
				fmt.Fprintln(m.Stdout, "operator token revoked: the status page answers loopback only")
				return nil
			}
			token, err := newOperatorToken()
			if err != nil {
				return err
			}
			if err := db.SetMeta(ctx, MetaOperatorToken, sqlite.HashSecret(token)); err != nil {
				return fmt.Errorf("operator token: %w", err)
			}
			_ = db.Audit(ctx, operatorName(), "operator-token", "new token")
			fmt.Fprintln(m.Stdout, token)
			if base, err := lan.BaseURL(lanServerConfig(m.Config.LAN), m.Config.LAN.Listen); err == nil {
				u := base.ResolveReference(&url.URL{Path: StatusPath, Fragment: "token=" + token}).String()
				fmt.Fprintf(m.Stdout, "Status page: %s\n", u)
			}
			fmt.Fprintln(m.Stdout, "This token replaces any earlier one. Keep it secret: it shows the queue and the peers.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&revoke, "revoke", false, "remove the operator token")
	return cmd
}

// observeUplink, called before the uplink opens, records the link's history for the status
// page (unknown from this start until the first exchange, then every change the uplink
// reports) and measures the batches' compression for the metrics.
func (s *Server) observeUplink(ctx context.Context, m *Main) {
	u := s.Uplink
	s.history = newLinkHistory(ctx, s.DB, m.Logger)
	s.history.record(upstream.LinkUnknown.String(), time.Now())
	s.Status.history = s.history
	prev := u.OnStatus
	u.OnStatus = func(st upstream.Status) {
		if prev != nil {
			prev(st)
		}
		s.history.record(st.Link.State.String(), time.Now())
	}
	if hc := u.Client.HTTPClient; hc != nil && hc.Transport != nil {
		hc.Transport = newBatchMetrics(s.Registry).wrap(hc.Transport)
	}
}

// newOperatorToken returns 256 random bits, base64url.
func newOperatorToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("operator token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// operatorAuth decides who may read the status: a request from this machine (loopback,
// without forwarding headers: a reverse proxy on the same machine does not make the LAN
// local), or one carrying the operator token as a bearer token.
type operatorAuth struct {
	db *sqlite.DB
}

// allowed reports whether r may read the status.
func (a *operatorAuth) allowed(r *http.Request) bool {
	if isLocalRequest(r) {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return false
	}
	want, err := a.db.Meta(r.Context(), MetaOperatorToken)
	if err != nil || want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(sqlite.HashSecret(strings.TrimSpace(token))), []byte(want)) == 1
}

// require answers h to the requests allowed reads and 401 to the others: /metrics says as
// much as the status (outbox counts, peers, disk), so the same rule guards it; Prometheus
// sends the token with its scrape config's authorization (type Bearer).
func (a *operatorAuth) require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gateway metrics"`)
			writeStatusError(w, http.StatusUnauthorized, gateway.EUNAUTHORIZED,
				"the metrics answer this machine, or the operator token (gateway operator-token) as a bearer token from elsewhere")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isLocalRequest reports whether r comes straight from this machine.
func isLocalRequest(r *http.Request) bool {
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// linkEvent is one change of the link's state.
type linkEvent struct {
	At    time.Time `json:"at"`
	State string    `json:"state"`
}

// Link states of the history besides upstream's: the gateway was not running.
const stateOff = "off"

// linkHistory keeps the link's state changes of the last day, in the database, for the
// status page's strip.
type linkHistory struct {
	db     *sqlite.DB
	logger *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	events []linkEvent // by time; the first may precede the window (the state at its start)
}

// newLinkHistory loads the stored history.
func newLinkHistory(ctx context.Context, db *sqlite.DB, logger *slog.Logger) *linkHistory {
	h := &linkHistory{db: db, logger: logger, now: time.Now}
	if raw, err := db.Meta(ctx, MetaLinkHistory); err == nil && raw != "" {
		if err := json.Unmarshal([]byte(raw), &h.events); err != nil {
			logger.Warn("link history unreadable; starting a new one", "err", err)
			h.events = nil
		}
	}
	return h
}

// record notes the link's state at at; a state equal to the last one is ignored.
func (h *linkHistory) record(state string, at time.Time) {
	h.mu.Lock()
	if n := len(h.events); n > 0 && h.events[n-1].State == state {
		h.mu.Unlock()
		return
	}
	h.events = append(h.events, linkEvent{At: at.UTC(), State: state})
	h.pruneLocked(h.now())
	b, err := json.Marshal(h.events)
	h.mu.Unlock()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = h.db.SetMeta(ctx, MetaLinkHistory, string(b))
		cancel()
	}
	if err != nil {
		h.logger.Warn("record link history", "err", err)
	}
}

// pruneLocked drops the events before the window but the last of them (the state the window
// starts in), and the oldest beyond maxHistoryEvents.
func (h *linkHistory) pruneLocked(now time.Time) {
	start := now.Add(-historyWindow)
	i := 0
	for i+1 < len(h.events) && !h.events[i+1].At.After(start) {
		i++
	}
	h.events = h.events[i:]
	if len(h.events) > maxHistoryEvents {
		h.events = h.events[len(h.events)-maxHistoryEvents:]
	}
}

// HistorySlot is one bar of the link strip: how many seconds of it the link spent in each
// state ("up", "degraded", "down", "unknown", "off").
type HistorySlot struct {
	Start   time.Time          `json:"start"`
	Seconds map[string]float64 `json:"seconds"`
}

// strip returns the window ending at now in historySlots slots.
func (h *linkHistory) strip(now time.Time) []HistorySlot {
	h.mu.Lock()
	events := slices.Clone(h.events)
	h.mu.Unlock()
	return stripOf(events, now, historyWindow, historySlots)
}

// stripOf cuts [now-window, now) into n slots and sums, in each, the time spent in each state
// of events (a state lasts until the next event; before the first event nothing is known).
func stripOf(events []linkEvent, now time.Time, window time.Duration, n int) []HistorySlot {
	start := now.Add(-window)
	step := window / time.Duration(n)
	slots := make([]HistorySlot, n)
	for i := range slots {
		slots[i] = HistorySlot{Start: start.Add(time.Duration(i) * step).UTC(), Seconds: map[string]float64{}}
	}
	for i, e := range events {
		from := e.At
		to := now
		if i+1 < len(events) {
			to = events[i+1].At
		}
		if from.Before(start) {
			from = start
		}
		if !to.After(from) {
			continue
		}
		for k := int(from.Sub(start) / step); k < n; k++ {
			s0 := start.Add(time.Duration(k) * step)
			s1 := s0.Add(step)
			if !s0.Before(to) {
				break
			}
			a, b := maxTime(from, s0), minTime(to, s1)
			if b.After(a) {
				slots[k].Seconds[e.State] += b.Sub(a).Seconds()
			}
		}
	}
	return slots
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// StatusReport is what /status.json answers: everything the status page shows.
type StatusReport struct {
	GeneratedAt time.Time `json:"generated_at"`
	SiteID      string    `json:"site_id"`
	Version     string    `json:"version"`
	Epoch       string    `json:"epoch"`
	StartedAt   time.Time `json:"started_at"`
	URL         string    `json:"url"`

	// Link is the uplink's status; nil when the uplink is not configured.
	Link *upstream.Status `json:"link,omitempty"`
	// History is the link's last 24 hours in 15-minute slots.
	History []HistorySlot `json:"history"`
	// Downlink is the downlink's status when it runs.
	Downlink *upstream.DownlinkStatus `json:"downlink,omitempty"`

	Traffic StatusTraffic `json:"traffic"`
	Outbox  StatusOutbox  `json:"outbox"`
	// Problems are the dead and conflict entries (the oldest maxProblemEntries), with
	// ERP5's reasons.
	Problems []StatusEntry `json:"problems"`
	// ReceiverGone are the sent entries of unknown outcome that no results query can settle
	// anymore (stock mode): the operator ends them with outbox resolve.
	ReceiverGone []int64       `json:"receiver_gone,omitempty"`
	Peers        StatusPeers   `json:"peers"`
	Replica      StatusReplica `json:"replica"`
	Storage      StatusStorage `json:"storage"`
}

// StatusTraffic is today's traffic on the link (UTC day) and its cost.
type StatusTraffic struct {
	Day         string  `json:"day"`
	UpToday     int64   `json:"up_today"`
	DownToday   int64   `json:"down_today"`
	BytesToday  int64   `json:"bytes_today"`
	CostToday   float64 `json:"cost_today"`
	CostPerMB   float64 `json:"cost_per_mb"`
	DailyBudget int64   `json:"daily_budget"`
}

// StatusOutbox is the queue by state.
type StatusOutbox struct {
	// Counts has every open state, zeros included.
	Counts map[string]int `json:"counts"`
	// Waiting counts the entries still to reach ERP5 (pending, inflight, deferred,
	// uncertain); OldestPending is when the oldest of them was queued.
	Waiting       int        `json:"waiting"`
	OldestPending *time.Time `json:"oldest_pending,omitempty"`
	// OldestProblem is when the oldest dead or conflict entry was queued.
	OldestProblem *time.Time `json:"oldest_problem,omitempty"`
}

// StatusEntry is a dead or conflict entry.
type StatusEntry struct {
	Seq        int64     `json:"seq"`
	State      string    `json:"state"`
	Op         string    `json:"op"`
	DocID      string    `json:"doc_id"`
	PortalType string    `json:"portal_type,omitempty"`
	Fields     []string  `json:"fields,omitempty"`
	Reason     string    `json:"reason"`
	Peer       string    `json:"peer,omitempty"`
	Attempts   int       `json:"attempts"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// StatusPeers are the paired peers and who is online.
type StatusPeers struct {
	Online   int           `json:"online"`
	Channels int           `json:"channels"`
	Paired   int           `json:"paired"`
	List     []PeerListing `json:"list"`
}

// StatusReplica is what the replica holds and how fresh each scope is.
type StatusReplica struct {
	Documents map[string]int `json:"documents"`
	Scopes    []StatusScope  `json:"scopes"`
}

// StatusScope is one configured downlink scope.
type StatusScope struct {
	Name       string     `json:"name"`
	PortalType string     `json:"portal_type"`
	Query      string     `json:"query,omitempty"`
	Complete   bool       `json:"complete"`
	FreshAt    *time.Time `json:"fresh_at,omitempty"`
}

// StatusStorage is the database's size and the disk's free space.
type StatusStorage struct {
	DataDir       string `json:"data_dir"`
	DatabaseBytes int64  `json:"database_bytes"`
	WALBytes      int64  `json:"wal_bytes"`
	DiskFreeBytes int64  `json:"disk_free_bytes"`
	DiskSizeBytes int64  `json:"disk_size_bytes"`
}

// statusPage serves /status and /status.json.
type statusPage struct {
	m       *Main
	s       *Server
	auth    operatorAuth
	history *linkHistory
	started time.Time
}

// register adds the page's routes to the LAN server.
func (p *statusPage) register(l *lan.Server) {
	l.Handle("GET "+StatusPath, http.HandlerFunc(p.handlePage))
	l.Handle("GET "+StatusJSONPath, http.HandlerFunc(p.handleJSON))
}

// handlePage serves the page itself: static HTML without data, so it needs no token; its
// script asks /status.json with the token from the address's fragment.
func (p *statusPage) handlePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	http.ServeFileFS(w, r, lan.WebFS(), "status.html")
}

// handleJSON answers the report to this machine or the operator token's bearer.
func (p *statusPage) handleJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !p.auth.allowed(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway status"`)
		writeStatusError(w, http.StatusUnauthorized, gateway.EUNAUTHORIZED,
			"the status answers this machine, or the operator token (gateway operator-token) from elsewhere")
		return
	}
	rep, err := p.report(r.Context())
	if err != nil {
		p.m.Logger.Error("status report", "err", err)
		writeStatusError(w, http.StatusInternalServerError, gateway.EINTERNAL, "the status could not be read; see the gateway's log")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

func writeStatusError(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"status": status, "reason": reason, "message": msg})
}

// report gathers the status.
func (p *statusPage) report(ctx context.Context) (*StatusReport, error) {
	now := time.Now()
	db := p.s.DB
	cfg := p.m.Config
	rep := &StatusReport{
		GeneratedAt: now.UTC(), SiteID: cfg.SiteID, Version: Version, StartedAt: p.started.UTC(),
		Problems: []StatusEntry{},
	}
	if p.s.LAN != nil {
		rep.URL = p.s.LAN.URL()
	}
	var err error
	if rep.Epoch, err = db.Epoch(ctx); err != nil {
		return nil, err
	}
	rep.Traffic = StatusTraffic{Day: now.UTC().Format(time.DateOnly), CostPerMB: cfg.Upstream.CostPerMB, DailyBudget: cfg.Upstream.DailyBudget}
	if u := p.s.Uplink; u != nil {
		st := u.Status()
		rep.Link = &st
		if rep.ReceiverGone, err = receiverGoneSeqs(ctx, db, st.Mode); err != nil {
			return nil, fmt.Errorf("status: outbox: %w", err)
		}
		if st.Bytes.Day == rep.Traffic.Day {
			rep.Traffic.UpToday, rep.Traffic.DownToday = st.Bytes.UpToday, st.Bytes.DownToday
		}
	}
	rep.Traffic.BytesToday = rep.Traffic.UpToday + rep.Traffic.DownToday
	rep.Traffic.CostToday = float64(rep.Traffic.BytesToday) / 1e6 * rep.Traffic.CostPerMB
	if p.history != nil {
		rep.History = p.history.strip(now)
	}
	if dl := p.s.Downlink; dl != nil {
		st := dl.Status()
		rep.Downlink = &st
	}

	ages, err := readOutboxAges(ctx, db.Reader())
	if err != nil {
		return nil, fmt.Errorf("status: outbox: %w", err)
	}
	rep.Outbox.Counts = map[string]int{}
	for _, s := range outbox.OpenStates {
		a := ages[s]
		rep.Outbox.Counts[s] = a.Count
		if a.Count == 0 {
			continue
		}
		t := a.Oldest.UTC()
		switch {
		case isWaiting(s):
			rep.Outbox.Waiting += a.Count
			if rep.Outbox.OldestPending == nil || t.Before(*rep.Outbox.OldestPending) {
				rep.Outbox.OldestPending = &t
			}
		case s == outbox.StateDead || s == outbox.StateConflict:
			if rep.Outbox.OldestProblem == nil || t.Before(*rep.Outbox.OldestProblem) {
				rep.Outbox.OldestProblem = &t
			}
		}
	}
	if ages[outbox.StateDead].Count+ages[outbox.StateConflict].Count > 0 {
		entries, _, err := db.OutboxList(ctx, outbox.Filter{States: []string{outbox.StateDead, outbox.StateConflict}, Limit: maxProblemEntries})
		if err != nil {
			return nil, fmt.Errorf("status: problems: %w", err)
		}
		for _, e := range entries {
			fields := make([]string, 0, len(e.Fields))
			for k := range e.Fields {
				fields = append(fields, k)
			}
			sort.Strings(fields)
			rep.Problems = append(rep.Problems, StatusEntry{
				Seq: e.Seq, State: e.State, Op: e.Op, DocID: e.DocID, PortalType: e.PortalType, Fields: fields,
				Reason: e.LastError, Peer: e.Peer, Attempts: e.Attempts, CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(),
			})
		}
	}

	peers, err := sqlite.NewPeerService(db).FindPeers(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: peers: %w", err)
	}
	online := map[string]bool{}
	if p.s.LAN != nil {
		for _, n := range p.s.LAN.OnlinePeers() {
			online[n] = true
		}
		rep.Peers.Channels = p.s.LAN.Channels()
	}
	rep.Peers.List = make([]PeerListing, 0, len(peers))
	for _, pe := range peers {
		l := PeerListing{Name: pe.Name, Role: pe.Role, CreatedAt: pe.CreatedAt.UTC(), Online: online[pe.Name], Address: pe.Address}
		if !pe.LastSeen.IsZero() {
			seen := pe.LastSeen.UTC()
			l.LastSeen = &seen
		}
		if l.Online {
			rep.Peers.Online++
		}
		rep.Peers.List = append(rep.Peers.List, l)
	}
	// Online first, then the most recently seen.
	sort.SliceStable(rep.Peers.List, func(i, j int) bool {
		a, b := rep.Peers.List[i], rep.Peers.List[j]
		if a.Online != b.Online {
			return a.Online
		}
		return seenTime(a).After(seenTime(b))
	})
	rep.Peers.Paired = len(peers)

	if rep.Replica.Documents, err = readReplicaCounts(ctx, db.Reader()); err != nil {
		return nil, fmt.Errorf("status: replica: %w", err)
	}
	cursors, err := db.SyncCursors(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: replica: %w", err)
	}
	for _, sc := range cfg.Upstream.Scopes {
		name := sc.Name
		if name == "" {
			name = sc.PortalType
		}
		ss := StatusScope{Name: name, PortalType: sc.PortalType, Query: sc.Query}
		if c, ok := cursors[name]; ok {
			ss.Complete = c.Complete
			if !c.FreshAt.IsZero() {
				t := c.FreshAt.UTC()
				ss.FreshAt = &t
			}
		}
		rep.Replica.Scopes = append(rep.Replica.Scopes, ss)
	}

	rep.Storage.DataDir = cfg.DataDir
	rep.Storage.DatabaseBytes, rep.Storage.WALBytes = databaseSizes(p.m.DBPath())
	rep.Storage.DiskFreeBytes, rep.Storage.DiskSizeBytes, _ = diskSpace(cfg.DataDir)
	return rep, nil
}

func seenTime(p PeerListing) time.Time {
	if p.LastSeen == nil {
		return time.Time{}
	}
	return *p.LastSeen
}
