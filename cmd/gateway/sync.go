package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"sitesync.example/gateway/control"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newSyncCommand) }

// MetaUplinkStatus is the meta key where serve keeps the uplink's latest status (JSON), so
// that `gateway sync status` can show the link even when it cannot reach serve.
const MetaUplinkStatus = "upstream_status"

// uplinkStatusEvery bounds how often serve rewrites MetaUplinkStatus when only byte counts
// and times changed.
const uplinkStatusEvery = 10 * time.Second

// ControlUplinkStatusPath is where serve's control socket answers GET with the uplink's live
// upstream.Status (UplinkStatusHandler).
const ControlUplinkStatusPath = "/uplink/status"

// UplinkStatusHandler answers the uplink's live status as JSON; serve registers it on the
// control socket under "GET "+ControlUplinkStatusPath.
func UplinkStatusHandler(u *upstream.Uplink) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(u.Status())
	})
}

// syncControl reaches a running serve through its control socket; tests replace it.
var syncControl = struct {
	// Now asks serve to try the link at once (its uplink waker flushes the uplink).
	Now func(ctx context.Context, socket string) (handled bool, err error)
	// Status returns serve's live uplink status; handled is false when no serve answers.
	Status func(ctx context.Context, socket string) (st *upstream.Status, handled bool, err error)
}{
	Now: func(ctx context.Context, socket string) (bool, error) {
		c := control.NewClient(socket)
		handled, err := c.Wake(ctx, control.WakeUplink)
		if err != nil || !handled {
			return handled, err
		}
		// A gateway without a downlink has no such waker: the uplink's flush is all there is.
		c.Wake(ctx, control.WakeDownlink)
		return true, nil
	},
	Status: func(ctx context.Context, socket string) (*upstream.Status, bool, error) {
		var st upstream.Status
		handled, err := control.NewClient(socket).Do(ctx, http.MethodGet, ControlUplinkStatusPath, nil, &st)
		if err != nil || !handled {
			return nil, handled, err
		}
		return &st, true, nil
	},
}

func newSyncCommand(m *Main) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Show or nudge the link to ERP5",
		Long: `Show the satellite link to ERP5 (state, traffic and cost today, what waits in the
outbox) or ask the running gateway to try the link now.`,
	}
	cmd.AddCommand(newSyncStatusCommand(m), newSyncNowCommand(m), newSyncResumeCommand(m))
	return cmd
}

// SyncReport is what `gateway sync status -o json` prints.
type SyncReport struct {
	// Live is true when the status came from a running serve, false when it is the last one
	// serve recorded (AsOf) or none at all.
	Live bool             `json:"live"`
	AsOf time.Time        `json:"as_of,omitzero"`
	Link *upstream.Status `json:"uplink,omitempty"`
	// Outbox counts the entries by open state, from the database.
	Outbox map[string]int `json:"outbox"`
	// ReceiverGone are the entries sent to ERP5's receiver whose outcome is unknown while the
	// uplink runs in stock mode: no results query will settle them; the operator ends each
	// with outbox resolve --assume-applied|--assume-lost.
	ReceiverGone []int64 `json:"receiver_gone,omitempty"`
	// BytesToday and CostToday are today's traffic (UTC day) and its price at CostPerMB
	// (per 1,000,000 bytes).
	BytesToday int64   `json:"bytes_today"`
	CostToday  float64 `json:"cost_today"`
	CostPerMB  float64 `json:"cost_per_mb"`
}

func newSyncStatusCommand(m *Main) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the link state, today's traffic and cost, and the outbox by state",
		Long: `Print the link to ERP5: its state (up, degraded, down) and since when, the last
time ERP5 answered and the last time it did not, the next try, the last error; the protocol
(batch receiver or stock); bytes up and down today (UTC) and their cost at
upstream.cost_per_mb (per 1,000,000 bytes) against upstream.daily_budget; ERP5's clock
skew; alarms; and the outbox's entries by state. The link part comes from the running
gateway, else from the last status it recorded.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json":
			default:
				return usagef("-o %q: want table or json", output)
			}
			rep, err := m.syncReport(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return writeSyncReport(m.Stdout, rep, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newSyncNowCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "now",
		Short: "Ask the running gateway to try the link now",
		Long: `Ask the running gateway, through its control socket, to try the link to ERP5 now:
the uplink's backoff wait is cut short, the receiver is probed again and deferred entries
are sent. Without a running gateway, deferred entries are made due now, and are sent as soon
as the gateway runs.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if syncControl.Now != nil {
				handled, err := syncControl.Now(ctx, m.SocketPath())
				if err != nil {
					return fmt.Errorf("sync now: %w", err)
				}
				if handled {
					fmt.Fprintln(m.Stdout, "the gateway is trying the link now")
					return nil
				}
			}
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := db.Flush(ctx, operatorName())
			if err != nil {
				return fmt.Errorf("sync now: %w", err)
			}
			fmt.Fprintf(m.Stdout, "no running gateway answered on %s; %d deferred entries are due now and go when it runs\n",
				m.SocketPath(), n)
			return nil
		},
	}
}

// operatorName names the operator in the audit table.
func operatorName() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}

// syncReport gathers the status: live from serve when it answers, else the last one serve
// recorded; the outbox counts from the database.
func (m *Main) syncReport(ctx context.Context) (*SyncReport, error) {
	rep := &SyncReport{CostPerMB: m.Config.Upstream.CostPerMB}
	if syncControl.Status != nil {
		st, handled, err := syncControl.Status(ctx, m.SocketPath())
		if err == nil && handled && st != nil {
			rep.Live, rep.Link, rep.AsOf = true, st, time.Now().UTC()
		}
	}
	db, err := m.OpenDB(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if rep.Link == nil {
		raw, err := db.Meta(ctx, MetaUplinkStatus)
		if err != nil {
			return nil, fmt.Errorf("sync status: %w", err)
		}
		if raw != "" {
			var saved savedStatus
			if err := json.Unmarshal([]byte(raw), &saved); err == nil {
				rep.Link, rep.AsOf = &saved.Status, saved.At
			}
		}
	}
	if rep.Outbox, err = db.OutboxCounts(ctx); err != nil {
		return nil, fmt.Errorf("sync status: %w", err)
	}
	if rep.Link != nil {
		if rep.ReceiverGone, err = receiverGoneSeqs(ctx, db, rep.Link.Mode); err != nil {
			return nil, fmt.Errorf("sync status: %w", err)
		}
	}
	if rep.Link != nil {
		b := rep.Link.Bytes
		if b.Day == time.Now().UTC().Format(time.DateOnly) {
			rep.BytesToday = b.UpToday + b.DownToday
		}
	}
	rep.CostToday = float64(rep.BytesToday) / 1e6 * rep.CostPerMB
	return rep, nil
}

// savedStatus is MetaUplinkStatus's value.
type savedStatus struct {
	At     time.Time       `json:"at"`
	Status upstream.Status `json:"status"`
}

// writeSyncReport prints the report as aligned lines.
func writeSyncReport(w io.Writer, rep *SyncReport, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// One line per value: an error joined from several ends lines inside it, and a line
	// without a tab would end the aligned block.
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, obOneLine(fmt.Sprintf(format, a...))) }
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339) + " (" + roundAgo(now.Sub(t)) + " ago)"
	}
	if st := rep.Link; st != nil {
		source := "live"
		if !rep.Live {
			source = "as recorded " + ago(rep.AsOf) + "; the gateway is not answering"
		}
		line("link:", "%s since %s [%s]", st.Link.State, ago(st.Link.Since), source)
		line("last up:", "%s", ago(st.Link.LastUp))
		line("last down:", "%s", ago(st.Link.LastDown))
		next := "-"
		if !st.Link.NextTryAt.IsZero() {
			if d := st.Link.NextTryAt.Sub(now); d > 0 {
				next = "in " + roundAgo(d)
			} else {
				next = "now"
			}
		}
		line("next try:", "%s", next)
		if st.Link.LastError != "" {
			line("last error:", "%s (%d failures in a row)", st.Link.LastError, st.Link.Failures)
		}
		mode := st.Mode
		switch {
		case mode == "":
			mode = "not probed yet"
		case st.Capability != nil:
			mode = fmt.Sprintf("%s (receiver v%d, %s)", mode, st.Capability.Version, strings.Join(st.Capability.Encodings, "/"))
		case mode == upstream.ModeStock:
			mode += " (no receiver: creates at-least-once, removes and actions wait)"
		}
		line("protocol:", "%s, configured %s", mode, st.Protocol)
		if st.Paused {
			line("PAUSED:", "%s (resume after checking the held entries)", st.PauseCause)
		}
		line("today:", "up %s, down %s; %s ≈ %.2f at %.2f per MB", humanBytes(st.Bytes.UpToday), humanBytes(st.Bytes.DownToday),
			humanBytes(rep.BytesToday), rep.CostToday, rep.CostPerMB)
		if st.DailyBudget > 0 {
			state := fmt.Sprintf("%.0f%% used", 100*float64(rep.BytesToday)/float64(st.DailyBudget))
			if st.BudgetSpent {
				state = "spent: the uplink waits for the next UTC day"
			}
			line("budget:", "%s per day, %s", humanBytes(st.DailyBudget), state)
		}
		if st.SkewKnown {
			line("clock skew:", "%+ds (ERP5 minus this machine)", int64(st.ClockSkew/time.Second))
		}
		for _, a := range st.Alarms {
			line("ALARM:", "%s: %s", a.Kind, a.Message)
		}
	} else {
		line("link:", "unknown (the gateway has not run the uplink yet)")
	}
	states := make([]string, 0, len(outbox.OpenStates))
	for _, s := range outbox.OpenStates {
		states = append(states, fmt.Sprintf("%s %d", s, rep.Outbox[s]))
	}
	line("outbox:", "%s", strings.Join(states, ", "))
	if n := len(rep.ReceiverGone); n > 0 {
		line("RECEIVER GONE:", "%d %s sent to ERP5's receiver, outcome unknown, nothing left to ask (seq %s): check at ERP5, then `gateway outbox resolve SEQ --assume-applied|--assume-lost`",
			n, obPlural(n, "entry", "entries"), upstream.FormatSeqs(rep.ReceiverGone))
	}
	return tw.Flush()
}

// roundAgo formats a duration to the second under an hour, to the minute above.
func roundAgo(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// humanBytes formats n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

// NewUplink builds the uplink the configuration describes, over db: the ERP5 client (site
// URL, credentials, a transport counting bytes into the uplink's meter), the protocol, the
// modules, the daily budget, and the status kept in the database for `sync status`. It
// restores today's byte counts from that status. reg registers the metrics (nil: none).
// serve calls it after db.NewEpoch, then Open; the write path calls Wake after each commit,
// the control socket's uplink waker calls Flush. The Store is an *UplinkStore: set its
// OnSettle to pass renamed and changed documents on to the data channels.
func (m *Main) NewUplink(ctx context.Context, db *sqlite.DB, reg prometheus.Registerer) (*upstream.Uplink, error) {
	cfg := m.Config
	if cfg.SiteID == "" || cfg.SiteID == ExampleSiteID {
		return nil, &ConfigError{"site_id", errors.New("must name this site at ERP5 (the example value is refused)")}
	}
	if cfg.Upstream.URL == "" {
		return nil, &ConfigError{"upstream.url", errors.New("must be the ERP5 HATEOAS web site's URL")}
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With(upstream.LogKeySubsystem, "upstream")
	for _, name := range cfg.UnsetEnv {
		logger.Warn("config names an unset environment variable; using empty", "name", name)
	}
	meter := &upstream.Meter{}
	if raw, err := db.Meta(ctx, MetaUplinkStatus); err == nil && raw != "" {
		var saved savedStatus
		if json.Unmarshal([]byte(raw), &saved) == nil {
			meter.Restore(saved.Status.Bytes)
		}
	}
	client := &upstream.Client{
		URL:        cfg.Upstream.URL,
		HTTPClient: &http.Client{Transport: upstream.NewTransport(upstream.TransportConfig{Meter: meter, DialContext: m.UpstreamDial})},
		Auth: upstream.Auth{User: cfg.Upstream.Auth.User, Password: cfg.Upstream.Auth.Password,
			Token: cfg.Upstream.Auth.Token, Cookie: cfg.Upstream.Auth.Cookie},
		Logger:  logger,
		View:    cfg.Upstream.View,
		Related: relatedFromReplica(db),
	}
	u := &upstream.Uplink{
		Client:      client,
		Store:       &UplinkStore{DB: db},
		Protocol:    cfg.Upstream.Protocol,
		Modules:     cfg.Upstream.Modules,
		DailyBudget: cfg.Upstream.DailyBudget,
		Meter:       meter,
		Logger:      logger,
		OnStatus:    statusRecorder(db, logger),
	}
	if reg != nil {
		u.Metrics = upstream.NewMetrics(reg)
	}
	logger.Info("uplink configured", "url", cfg.Upstream.URL, "auth", client.Auth, "protocol", u.Protocol, "site_id", cfg.SiteID)
	return u, nil
}

// statusRecorder returns an OnStatus hook that keeps the uplink's status in the meta table:
// at once when something an operator reads changes (link state, mode, pause, alarms, budget,
// outbox counts), else at most every uplinkStatusEvery (byte counts, times).
func statusRecorder(db *sqlite.DB, logger *slog.Logger) func(upstream.Status) {
	var mu sync.Mutex
	var last time.Time
	var lastKey string
	return func(st upstream.Status) {
		key := fmt.Sprint(st.Link.State, st.Mode, st.Paused, len(st.Alarms), st.BudgetSpent, st.Outbox)
		mu.Lock()
		defer mu.Unlock() // held through the write, so a newer status is never overwritten
		now := time.Now()
		if now.Sub(last) < uplinkStatusEvery && key == lastKey {
			return
		}
		last, lastKey = now, key
		b, err := json.Marshal(savedStatus{At: now.UTC(), Status: st})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = db.SetMeta(ctx, MetaUplinkStatus, string(b))
			cancel()
		}
		if err != nil {
			logger.Warn("record uplink status", "err", err)
		}
	}
}

// UplinkStore adapts *sqlite.DB to upstream.Store. OnSettle, when set, receives each settle
// report (renamed local ids and changed documents, for the data channels' `changed`
// notifications).
type UplinkStore struct {
	*sqlite.DB
	OnSettle func(*sqlite.SettleReport)
}

var _ upstream.Store = (*UplinkStore)(nil)

// Settle records results through sqlite.DB.Settle.
func (s *UplinkStore) Settle(ctx context.Context, results []outbox.Result) ([]outbox.Settled, error) {
	rep, err := s.DB.Settle(ctx, results)
	if err != nil {
		return nil, err
	}
	if s.OnSettle != nil {
		s.OnSettle(rep)
	}
	return rep.Settled, nil
}

// RecordCreated stores the id a stock newContent gave a post's document in the entry's answer,
// before the edit is sent; only an inflight entry is touched.
func (s *UplinkStore) RecordCreated(ctx context.Context, seq int64, id string) error {
	b, err := json.Marshal(map[string]string{"status": "created", "id": id})
	if err != nil {
		return err
	}
	res, err := s.Writer().ExecContext(ctx, `UPDATE outbox SET answer = ?, updated_at = ? WHERE seq = ? AND state = 'inflight'`,
		string(b), s.NowText(), seq)
	if err != nil {
		return fmt.Errorf("record created %s for %d: %w", id, seq, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("record created %s: entry %d is not inflight", id, seq)
	}
	return nil
}

// NextDue returns when the earliest deferred entry that may be claimed (of the running epoch,
// or checked under it) is due; the zero time when none is.
func (s *UplinkStore) NextDue(ctx context.Context) (time.Time, error) {
	var v sql.NullString
	if err := s.Reader().QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM outbox WHERE state = 'deferred'
		AND (epoch = (SELECT value FROM meta WHERE key = ?1) OR checked_epoch = (SELECT value FROM meta WHERE key = ?1))`,
		sqlite.MetaEpoch).Scan(&v); err != nil {
		return time.Time{}, fmt.Errorf("next due: %w", err)
	}
	if !v.Valid {
		return time.Time{}, nil
	}
	return sqlite.ParseTime(v.String)
}

func newSyncResumeCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "Resume an uplink paused by an alarm",
		Long: `Resume the running gateway's uplink after it paused on an alarm: ERP5 answered
seq_reused, which means a key ERP5 had seen was offered another payload (a bug, a database
copied between sites, tampering). The entry stays held; look at it with 'gateway outbox show'
first. Restarting serve also resumes.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			handled, err := control.NewClient(m.SocketPath()).Wake(cmd.Context(), control.WakeResume)
			if err != nil && !control.NotRunning(err) {
				return fmt.Errorf("sync resume: %w", err)
			}
			if !handled {
				return errors.New("sync resume: the gateway is not running (a new serve starts unpaused)")
			}
			_, err = fmt.Fprintln(m.Stdout, "uplink resumed")
			return err
		},
	}
}
