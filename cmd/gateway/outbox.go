package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"sitesync.example/gateway"
	"sitesync.example/gateway/control"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newOutboxCommand) }

// newOutboxCommand builds `gateway outbox`, the operator's view of the queue of writes bound
// for ERP5 (docs/DESIGN.md §6, after Postfix's postqueue and postsuper).
func newOutboxCommand(m *Main) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "List, inspect and steer the writes waiting for ERP5",
		Long: `Every accepted write is an outbox entry until ERP5 has applied it. These commands read
and change the database directly, whether or not serve runs; a running serve is woken through
its control socket (data_dir/gateway.sock) and otherwise notices the change within a second.
SEQ is an entry's number; ALL (upper case) names every entry the command applies to.

States: pending, inflight (being sent), deferred (transient failure, retried forever),
uncertain (sent, outcome unknown: settled from ERP5's results), held (by an operator or after
seq_reused), dead (rejected by ERP5), conflict (changed at head office too), and the ended
ones: done, merged (folded into a later entry, or cancelled), superseded (replaced by a new
entry, or dropped).

Run the commands as the service's user (sudo -u USER gateway outbox …): files SQLite creates
beside the database must stay writable by the service.`,
	}
	cmd.AddCommand(newOutboxLsCommand(m), newOutboxShowCommand(m), newOutboxRetryCommand(m),
		newOutboxHoldCommand(m), newOutboxReleaseCommand(m), newOutboxDropCommand(m),
		newOutboxResolveCommand(m), newOutboxFlushCommand(m), newOutboxStatsCommand(m))
	return cmd
}

// openWriteDB opens the database for commands that write, with the site id and the modules
// of the configuration.
func (m *Main) openWriteDB(ctx context.Context) (*sqlite.DB, error) {
	db, err := m.CreateDB(ctx)
	if err != nil {
		return nil, err
	}
	db.SiteID = m.Config.SiteID
	if len(m.Config.Upstream.Modules) > 0 {
		db.Modules = m.Config.Upstream.Modules
	}
	// A process that writes while serve is down makes its own epoch (docs/DESIGN.md §6).
	if _, _, err := db.NewProcessEpoch(ctx, "operator command"); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// operatorActor names the operator in the audit table: the command line and the OS user.
func operatorActor() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		return "cli"
	}
	return "cli:" + name
}

// wakeServe asks a running serve to run its uplink now. It reports whether serve answered;
// no serve is not an error (it notices the database change when it starts, or within a
// second if it runs but its socket is unreachable).
func (m *Main) wakeServe(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	handled, err := control.NewClient(m.SocketPath()).Wake(ctx, control.WakeUplink)
	if err != nil {
		m.Logger.Warn("could not wake serve through its control socket; it notices within a second", "err", err)
	}
	return handled && err == nil
}

// serveNote is what commands print after a change.
func (m *Main) serveNote(ctx context.Context) string {
	if m.wakeServe(ctx) {
		return "serve notified"
	}
	return "serve is not running: the entries wait until it starts"
}

// parseOutboxTarget reads SEQ or ALL; "all" in lower case is refused, as postsuper does.
func parseOutboxTarget(s string) (int64, error) {
	if s == "ALL" {
		return sqlite.All, nil
	}
	if strings.EqualFold(s, "all") {
		return 0, usagef("%q: ALL must be written in upper case", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, usagef("%q is not an entry number (SEQ) or ALL", s)
	}
	return n, nil
}

// askYes asks a yes/no question on m.Stdin; only "y" or "yes" agrees.
func (m *Main) askYes(question string) bool {
	fmt.Fprintf(m.Stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(m.Stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// errOutboxNotConfirmed ends a command whose question was answered no.
var errOutboxNotConfirmed = errors.New("not confirmed; nothing changed")

// outboxLsFlags are the options of `outbox ls`.
type outboxLsFlags struct {
	states    []string
	doc, peer string
	olderThan string
	limit     int
	output    string
	noHeaders bool
}

// OutboxListLimit is how many entries `outbox ls` shows in a table unless --limit says.
const OutboxListLimit = 50

func newOutboxLsCommand(m *Main) *cobra.Command {
	var f outboxLsFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List outbox entries",
		Long: `List outbox entries, oldest first: by default the ones still in the queue (every state
but done, merged and superseded); --state picks states (repeat it; "all" lists every state).

-o table (default) prints at most --limit entries (default 50, then "… N more") and a summary
line; -o wide adds the epoch, peer, write key, mode, covers and the whole last error; -o json
prints a JSON array of {"seq", "state", "op", "doc_id", "attempts", "next_attempt_at",
"last_error", "bytes", "created_at"} (times RFC 3339 UTC, next_attempt_at null when none;
bytes is the payload as sent, or as it would be sent) and nothing else; -o jsonl one such
object per line. JSON output is not limited unless --limit is given.`,
		Example: `  gateway outbox ls
  gateway outbox ls --state dead --state conflict
  gateway outbox ls --doc person_module/20001 -o wide
  gateway outbox ls --older-than 2h -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			list, total, err := db.OutboxList(ctx, filter)
			if err != nil {
				return err
			}
			now := time.Now()
			switch f.output {
			case "json":
				return writeEntriesJSON(m.Stdout, list, true)
			case "jsonl":
				return writeEntriesJSON(m.Stdout, list, false)
			}
			return m.writeEntriesTable(ctx, db, list, total, filter, f, now)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.states, "state", nil, "list entries in `STATE` (repeat; all: every state)")
	fl.StringVar(&f.doc, "doc", "", "list the entries of document `ID` only")
	fl.StringVar(&f.peer, "peer", "", "list the entries written by peer `P` only")
	fl.StringVar(&f.olderThan, "older-than", "", "list entries queued more than `D` ago (90s, 2h, 3d)")
	fl.IntVar(&f.limit, "limit", OutboxListLimit, "show at most `N` entries (0: all)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table, wide, json or jsonl")
	fl.BoolVar(&f.noHeaders, "no-headers", false, "print neither the header line nor the summary")
	return cmd
}

// filter checks the flags; its errors are usage errors.
func (f *outboxLsFlags) filter(cmd *cobra.Command) (outbox.Filter, error) {
	var flt outbox.Filter
	switch f.output {
	case "table", "wide", "json", "jsonl":
	default:
		return flt, usagef("-o %q: want table, wide, json or jsonl", f.output)
	}
	for _, s := range f.states {
		for _, p := range strings.Split(s, ",") {
			switch {
			case p == "all":
				flt.States = append(flt.States, outbox.States...)
			case outbox.IsState(p):
				flt.States = append(flt.States, p)
			default:
				return flt, usagef("--state %q: want one of %s, or all", p, strings.Join(outbox.States, ", "))
			}
		}
	}
	flt.DocID, flt.Peer = f.doc, f.peer
	if f.olderThan != "" {
		d, err := parseOutboxAge(f.olderThan)
		if err != nil {
			return flt, usagef("--older-than %q: %v", f.olderThan, err)
		}
		flt.CreatedBefore = time.Now().Add(-d)
	}
	if f.limit < 0 {
		return flt, usagef("--limit %d: must not be negative", f.limit)
	}
	flt.Limit = f.limit
	if (f.output == "json" || f.output == "jsonl") && !cmd.Flags().Changed("limit") {
		flt.Limit = 0
	}
	return flt, nil
}

// parseOutboxAge parses a Go duration, also accepting whole days ("3d").
func parseOutboxAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, errors.New("not a duration (like 90s, 2h or 3d)")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("not a duration (like 90s, 2h or 3d)")
	}
	return d, nil
}

// OutboxEntryJSON is one entry as `outbox ls -o json` prints it.
type OutboxEntryJSON struct {
	Seq           int64   `json:"seq"`
	State         string  `json:"state"`
	Op            string  `json:"op"`
	DocID         string  `json:"doc_id"`
	Attempts      int     `json:"attempts"`
	NextAttemptAt *string `json:"next_attempt_at"`
	LastError     string  `json:"last_error"`
	Bytes         int     `json:"bytes"`
	CreatedAt     string  `json:"created_at"`
}

// obRFC3339 formats t in UTC, RFC 3339 with whole seconds.
func obRFC3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func outboxEntryJSON(e *outbox.Entry) OutboxEntryJSON {
	j := OutboxEntryJSON{Seq: e.Seq, State: e.State, Op: e.Op, DocID: e.DocID, Attempts: e.Attempts,
		LastError: e.LastError, Bytes: e.Size(), CreatedAt: obRFC3339(e.CreatedAt)}
	if !e.NextAttemptAt.IsZero() && obWaits(e) {
		s := obRFC3339(e.NextAttemptAt)
		j.NextAttemptAt = &s
	}
	return j
}

// writeEntriesJSON prints a JSON array (array true: one entry per line inside it) or JSON
// Lines.
func writeEntriesJSON(w io.Writer, list []*outbox.Entry, array bool) error {
	bw := bufio.NewWriter(w)
	if array {
		bw.WriteString("[")
	}
	for i, e := range list {
		b, err := json.Marshal(outboxEntryJSON(e))
		if err != nil {
			return err
		}
		if array {
			if i > 0 {
				bw.WriteString(",")
			}
			bw.WriteString("\n")
		}
		bw.Write(b)
		if !array {
			bw.WriteString("\n")
		}
	}
	if array {
		if len(list) > 0 {
			bw.WriteString("\n")
		}
		bw.WriteString("]\n")
	}
	return bw.Flush()
}

// outboxErrorWidth is how much of the last error the table shows (-o wide shows it whole).
const outboxErrorWidth = 60

// writeEntriesTable prints the table of docs/DESIGN.md §6 and its summary line.
func (m *Main) writeEntriesTable(ctx context.Context, db *sqlite.DB, list []*outbox.Entry, total int,
	filter outbox.Filter, f outboxLsFlags, now time.Time) error {
	wide := f.output == "wide"
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	if !f.noHeaders {
		if wide {
			fmt.Fprintln(tw, "SEQ\tSTATE\tAGE\tATTEMPTS\tNEXT-TRY\tSIZE\tOP\tDOCUMENT\tEPOCH\tPEER\tKEY\tMODE\tCOVERS\tLAST-ERROR")
		} else {
			fmt.Fprintln(tw, "SEQ\tSTATE\tAGE\tATTEMPTS\tNEXT-TRY\tSIZE\tOP\tDOCUMENT\tLAST-ERROR")
		}
	}
	mode := m.uplinkMode(ctx, db)
	for _, e := range list {
		next := obNextTry(e, now)
		lastErr := obOneLine(entryNote(e, mode))
		if !wide && len([]rune(lastErr)) > outboxErrorWidth {
			lastErr = string([]rune(lastErr)[:outboxErrorWidth-1]) + "…"
		}
		cols := []string{strconv.FormatInt(e.Seq, 10), e.State, obAge(now.Sub(e.CreatedAt)), strconv.Itoa(e.Attempts),
			next, obSize(int64(e.Size())), e.Op, e.DocID}
		if wide {
			covers := "-"
			if len(e.Covers) > 0 {
				covers = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(e.Covers)), ","), "[]")
			}
			cols = append(cols, shortEpoch(e.Epoch), obDash(e.Peer), obDash(e.Key), obDash(e.Mode), covers)
		}
		cols = append(cols, obDash(lastErr))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more := total - len(list); more > 0 {
		fmt.Fprintf(m.Stdout, "… %d more\n", more)
	}
	if f.noHeaders {
		return nil
	}
	sum, err := outboxSummary(ctx, db, filter, list, total)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("-- %d %s, %s (≈%s compressed)", total, obPlural(total, "entry", "entries"),
		obKiB(sum.bytes), obKiB(sum.compressed))
	if !sum.oldest.IsZero() {
		line += "; oldest " + obAge(now.Sub(sum.oldest))
	}
	line += "; " + m.linkSummary(ctx, db, now)
	_, err = fmt.Fprintln(m.Stdout, line)
	return err
}

// outboxListSummary is the summary line's figures over every entry the filter selects.
type outboxListSummary struct {
	bytes, compressed int64
	oldest            time.Time
}

// outboxSummaryExact bounds the entries the summary encodes and compresses; beyond it the figures
// are scaled from that many.
const outboxSummaryExact = 5000

func outboxSummary(ctx context.Context, db *sqlite.DB, filter outbox.Filter, shown []*outbox.Entry, total int) (outboxListSummary, error) {
	var s outboxListSummary
	all := shown
	if total > len(shown) {
		f := filter
		f.Limit = outboxSummaryExact
		var err error
		if all, _, err = db.OutboxList(ctx, f); err != nil {
			return s, err
		}
	}
	payloads := make([][]byte, 0, len(all))
	for _, e := range all {
		p := e.Payload
		if len(p) == 0 {
			p, _ = outbox.Canonical(e)
		}
		payloads = append(payloads, p)
		s.bytes += int64(e.Size()) // as outbox stats counts it
		if s.oldest.IsZero() || e.CreatedAt.Before(s.oldest) {
			s.oldest = e.CreatedAt
		}
	}
	s.compressed = zstdSize(payloads)
	if len(all) > 0 && total > len(all) {
		scale := float64(total) / float64(len(all))
		s.bytes = int64(float64(s.bytes) * scale)
		s.compressed = int64(float64(s.compressed) * scale)
	}
	return s, nil
}

// zstdSize estimates what payloads cost on the link: their zstd size as one batch body
// (the receiver's best codec).
func zstdSize(payloads [][]byte) int64 {
	if len(payloads) == 0 {
		return 0
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0
	}
	defer enc.Close()
	var body []byte
	body = append(body, `{"entries":[`...)
	for i, p := range payloads {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, p...)
	}
	body = append(body, "]}"...)
	return int64(len(enc.EncodeAll(body, nil)))
}

// linkSummary describes the link as serve last recorded it, and whether serve runs.
func (m *Main) linkSummary(ctx context.Context, db *sqlite.DB, now time.Time) string {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	running, _ := control.NewClient(m.SocketPath()).Running(cctx)
	cancel()
	var out string
	if raw, err := db.Meta(ctx, MetaUplinkStatus); err == nil && raw != "" {
		var saved savedStatus
		if json.Unmarshal([]byte(raw), &saved) == nil {
			l := saved.Status.Link
			out = "link " + l.State.String()
			if !l.Since.IsZero() {
				out += " since " + obClock(l.Since, now)
			}
			out += alarmSummary(&saved.Status)
		}
	}
	if out == "" {
		out = "link state unknown"
	}
	if !running {
		out += "; serve not running"
	}
	return out
}

// alarmSummary is the footer's note of a paused uplink and its alarms ("" when none).
func alarmSummary(st *upstream.Status) string {
	var out string
	if st.Paused {
		out += "; UPLINK PAUSED (" + st.PauseCause + ")"
	}
	for _, a := range st.Alarms {
		out += "; ALARM " + a.Kind
		if len(a.Seqs) > 0 {
			out += " (seq " + upstream.FormatSeqs(a.Seqs) + ")"
		}
	}
	return out
}

// obClock prints t as 09:12Z today, else as Jan 2 09:12Z.
func obClock(t, now time.Time) string {
	t = t.UTC()
	if t.YearDay() == now.UTC().YearDay() && t.Year() == now.UTC().Year() {
		return t.Format("15:04Z")
	}
	return t.Format("Jan 2 15:04Z")
}

// obAge prints a duration the way the table does: 45s, 4m12s, 2h13m, 3d4h.
func obAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// obSize prints a byte count compactly: 612B, 1.1K, 2.3M.
func obSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%dB", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1fK", float64(n)/1024)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1024/1024)
}

// obKiB prints a byte count in KiB or MiB with one decimal.
func obKiB(n int64) string {
	if n < 1024*1024 {
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/1024/1024)
}

func obPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func obDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func obOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func shortEpoch(e string) string {
	if len(e) > 8 {
		return e[:8]
	}
	return e
}

func newOutboxShowCommand(m *Main) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one entry: payload, attempts, errors, ERP5's answer, both sides of a conflict",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseOutboxTarget(a[0])
			if err != nil || seq == sqlite.All {
				return usagef("show takes one entry number")
			}
			if output != "text" && output != "json" {
				return usagef("-o %q: want text or json", output)
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			e, err := db.OutboxEntry(ctx, seq)
			if err != nil {
				return err
			}
			changes, err := db.HeadOffice(ctx, e)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeOutboxShowJSON(m.Stdout, e, changes)
			}
			return writeOutboxShow(m.Stdout, e, changes, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// OutboxShowJSON is what `outbox show -o json` prints: the whole entry.
type OutboxShowJSON struct {
	OutboxEntryJSON
	Epoch        string               `json:"epoch"`
	SiteID       string               `json:"site_id"`
	OrderKey     int64                `json:"order_key"`
	PortalType   string               `json:"portal_type,omitempty"`
	Parent       string               `json:"parent_relative_url,omitempty"`
	Fields       map[string]any       `json:"fields,omitempty"`
	Base         map[string]any       `json:"base,omitempty"`
	Transition   string               `json:"transition,omitempty"`
	Comment      string               `json:"comment,omitempty"`
	Peer         string               `json:"peer,omitempty"`
	Key          string               `json:"key,omitempty"`
	Mode         string               `json:"mode,omitempty"`
	Hash         string               `json:"hash,omitempty"`
	Payload      json.RawMessage      `json:"payload,omitempty"`
	Answer       json.RawMessage      `json:"answer,omitempty"`
	MergedInto   int64                `json:"merged_into,omitempty"`
	Covers       []int64              `json:"covers,omitempty"`
	SupersededBy int64                `json:"superseded_by,omitempty"`
	UpdatedAt    string               `json:"updated_at"`
	HeadOffice   []sqlite.FieldChange `json:"fields_three_ways,omitempty"`
	HeldReason   string               `json:"held_reason,omitempty"`
}

func writeOutboxShowJSON(w io.Writer, e *outbox.Entry, changes []sqlite.FieldChange) error {
	j := OutboxShowJSON{OutboxEntryJSON: outboxEntryJSON(e), Epoch: e.Epoch, SiteID: e.SiteID, OrderKey: e.OrderKey,
		PortalType: e.PortalType, Parent: e.ParentID, Fields: e.Fields, Base: e.Base, Transition: e.Transition,
		Comment: e.Comment, Peer: e.Peer, Key: e.Key, Mode: e.Mode, Hash: e.Hash, Answer: e.Answer,
		MergedInto: e.MergedInto, Covers: e.Covers, SupersededBy: e.SupersededBy, UpdatedAt: obRFC3339(e.UpdatedAt),
		HeldReason: e.HeldReason}
	if json.Valid(e.Payload) {
		j.Payload = e.Payload
	}
	if e.State == outbox.StateConflict || e.State == outbox.StateDead {
		j.HeadOffice = changes
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(j)
}

func writeOutboxShow(w io.Writer, e *outbox.Entry, changes []sqlite.FieldChange, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	line("seq", "%d", e.Seq)
	line("state", "%s", e.State)
	line("op", "%s", e.Op)
	line("document", "%s", e.DocID)
	if e.PortalType != "" {
		line("portal type", "%s", e.PortalType)
	}
	if e.ParentID != "" {
		line("parent", "%s", e.ParentID)
	}
	if e.Op == outbox.OpAction {
		line("transition", "%s", e.Transition)
		if e.Comment != "" {
			line("comment", "%s", e.Comment)
		}
	}
	line("epoch", "%s", e.Epoch)
	line("site", "%s", obDash(e.SiteID))
	line("order key", "%d", e.OrderKey)
	line("peer", "%s", obDash(e.Peer))
	line("write key", "%s", obDash(e.Key))
	line("created", "%s (%s ago)", obRFC3339(e.CreatedAt), obAge(now.Sub(e.CreatedAt)))
	line("updated", "%s", obRFC3339(e.UpdatedAt))
	line("attempts", "%d", e.Attempts)
	if !e.ClaimedAt.IsZero() {
		line("last claimed", "%s", obRFC3339(e.ClaimedAt))
	}
	if !e.NextAttemptAt.IsZero() && obWaits(e) {
		line("next attempt", "%s", obRFC3339(e.NextAttemptAt))
	}
	if e.State == outbox.StateHeld {
		line("held", "%s", obDash(e.HeldReason))
	}
	if e.LastError != "" {
		line("last error", "%s", e.LastError)
	}
	if e.MergedInto != 0 {
		line("merged into", "%d", e.MergedInto)
	}
	if len(e.Covers) > 0 {
		line("covers", "%v", e.Covers)
	}
	if e.SupersededBy != 0 {
		line("superseded by", "%d", e.SupersededBy)
	}
	if e.Mode != "" {
		line("mode", "%s", e.Mode)
		line("hash", "%s", e.Hash)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.Fields) > 0 {
		fmt.Fprintln(w, "\nfields (before → after):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, c := range changes {
			if e.Op == outbox.OpPost {
				fmt.Fprintf(tw, "  %s\t%s\n", c.Field, obJSON(c.Local))
			} else {
				fmt.Fprintf(tw, "  %s\t%s → %s\n", c.Field, obJSON(c.Base), obJSON(c.Local))
			}
		}
		tw.Flush()
	}
	if e.State == outbox.StateConflict || e.State == outbox.StateDead {
		writeThreeWays(w, changes)
	}
	if len(e.Payload) > 0 {
		fmt.Fprintf(w, "\npayload (%s, as sent):\n%s\n", obSize(int64(len(e.Payload))), e.Payload)
	}
	if len(e.Answer) > 0 {
		fmt.Fprintf(w, "\nERP5's answer:\n%s\n", e.Answer)
	}
	return nil
}

// writeThreeWays prints, per field, what the write was based on, head office's value and the
// local one, marking the fields head office changed.
func writeThreeWays(w io.Writer, changes []sqlite.FieldChange) {
	if len(changes) == 0 {
		return // an action or a remove changes no field
	}
	fmt.Fprintln(w, "\nhead office (base / head office now / local):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range changes {
		mark := ""
		if !outbox.SameValue(c.Base, c.HeadOffice) {
			mark = "  ← changed at head office"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\n", c.Field, obJSON(c.Base), obJSON(c.HeadOffice), obJSON(c.Local), mark)
	}
	tw.Flush()
}

func obJSON(v any) string {
	if v == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// targetFlags is --yes, for the commands that ask first.
func newOutboxRetryCommand(m *Main) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "retry SEQ|ALL",
		Short: "Retry entries: deferred ones now; dead or conflict ones as new entries",
		Long: `A deferred entry is made due now and resent exactly as it was first sent (it may have
been applied already; ERP5 recognises it). A dead or conflict entry is replaced by a new entry
with the same changes, based on head office's current values: a new seq under the running
epoch, in the old entry's place before the later edits of its document; the old one becomes
superseded. What head office changed is shown first and the command asks unless --yes. ALL
retries every deferred, dead and conflict entry.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseOutboxTarget(a[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := m.openWriteDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			list, err := outboxTargets(ctx, db, seq, outbox.StateDeferred, outbox.StateDead, outbox.StateConflict)
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintln(m.Stdout, "nothing to retry")
				return nil
			}
			var replace []*outbox.Entry
			for _, e := range list {
				if e.State == outbox.StateDead || e.State == outbox.StateConflict {
					replace = append(replace, e)
				}
			}
			if len(replace) > 0 && !yes {
				for _, e := range replace {
					changes, err := db.HeadOffice(ctx, e)
					if err != nil {
						return err
					}
					fmt.Fprintf(m.Stdout, "entry %d (%s, %s %s): %s\n", e.Seq, e.State, e.Op, e.DocID, obDash(e.LastError))
					if e.Op == outbox.OpPut {
						writeThreeWays(m.Stdout, changes)
					}
				}
				if !m.askYes(fmt.Sprintf("Queue %d new %s in place of these?", len(replace), obPlural(len(replace), "entry", "entries"))) {
					return errOutboxNotConfirmed
				}
			}
			for _, e := range list {
				rs, err := db.Retry(ctx, e.Seq, operatorActor())
				if err != nil {
					return fmt.Errorf("retry %d: %w", e.Seq, err)
				}
				for _, r := range rs {
					if r.NewSeq != 0 {
						fmt.Fprintf(m.Stdout, "entry %d (%s): replaced by entry %d\n", r.Entry.Seq, r.Entry.State, r.NewSeq)
					} else {
						fmt.Fprintf(m.Stdout, "entry %d (deferred): due now\n", r.Entry.Seq)
					}
				}
			}
			fmt.Fprintln(m.Stdout, m.serveNote(ctx))
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

// outboxTargets returns the entry seq, or (sqlite.All) the entries in states.
func outboxTargets(ctx context.Context, db *sqlite.DB, seq int64, states ...string) ([]*outbox.Entry, error) {
	if seq != sqlite.All {
		e, err := db.OutboxEntry(ctx, seq)
		if err != nil {
			return nil, err
		}
		return []*outbox.Entry{e}, nil
	}
	list, _, err := db.OutboxList(ctx, outbox.Filter{States: states})
	return list, err
}

func newOutboxHoldCommand(m *Main) *cobra.Command {
	return m.outboxStateCommand("hold SEQ|ALL", "Hold entries: they are not sent, and later entries of their documents wait",
		`Hold a pending, deferred or uncertain entry (ALL: every one). A held entry is not sent
until released; the later entries of its document wait behind it, other documents flow.`,
		"held", (*sqlite.DB).Hold, false)
}

func newOutboxReleaseCommand(m *Main) *cobra.Command {
	return m.outboxStateCommand("release SEQ|ALL", "Release held entries",
		`Release a held entry (ALL: every one). One never sent is pending again; one that was
sent becomes uncertain, so that ERP5's results settle it before anything is resent.`,
		"released", (*sqlite.DB).Release, true)
}

// outboxStateCommand builds a command that moves one entry (or ALL) with op and reports the
// entries it moved; wake also tells a running serve, for entries that may now be sent.
func (m *Main) outboxStateCommand(use, short, long, verb string,
	op func(db *sqlite.DB, ctx context.Context, seq int64, actor string) ([]*outbox.Entry, error), wake bool) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseOutboxTarget(a[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			list, err := op(db, ctx, seq, operatorActor())
			if err != nil {
				return err
			}
			note := ""
			if wake {
				note = "; " + m.serveNote(ctx)
			}
			fmt.Fprintf(m.Stdout, "%s %d %s%s%s\n", verb, len(list), obPlural(len(list), "entry", "entries"), seqSuffix(list), note)
			return nil
		},
	}
}

func seqSuffix(list []*outbox.Entry) string {
	if len(list) == 0 || len(list) > 20 {
		return ""
	}
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = strconv.FormatInt(e.Seq, 10)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func newOutboxDropCommand(m *Main) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "drop SEQ|ALL",
		Short: "Drop dead or held entries for good, reverting the replica",
		Long: `Drop a dead entry, or a held entry that was never sent (ALL: every such entry). Its
fields in the replica go back to head office's last known values (fields a later edit of the
document changes keep that edit); a dropped remove restores the document; a dropped post also
drops the later entries of its document and removes the local document. The entry stays in the
outbox as superseded, and an audit line records it. The command asks unless --yes.

A held entry that was sent to ERP5's receiver may have been applied: release it first, so
that ERP5's results settle it (or, when the receiver is gone, end it with resolve
--assume-applied|--assume-lost). A held entry that was sent through stock ERP5 can be dropped:
stock ERP5 keeps no results, so the command warns that ERP5 may hold it and the operator
checks.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseOutboxTarget(a[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			list, err := outboxTargets(ctx, db, seq, outbox.StateDead, outbox.StateHeld)
			if err != nil {
				return err
			}
			if seq == sqlite.All {
				kept := list[:0]
				for _, e := range list {
					if e.State == outbox.StateDead || !e.Frozen() || e.Mode == outbox.ModeStock {
						kept = append(kept, e)
					}
				}
				list = kept
			}
			for _, e := range list {
				if e.State == outbox.StateHeld && e.Frozen() && e.Mode == outbox.ModeStock {
					fmt.Fprintf(m.Stdout, "WARNING: entry %d was sent through stock ERP5 (%d attempts) and ERP5 may hold it: "+
						"stock ERP5 keeps no results to tell; check %s at ERP5 before dropping it\n", e.Seq, e.Attempts, e.DocID)
				}
			}
			if len(list) == 0 {
				fmt.Fprintln(m.Stdout, "nothing to drop")
				return nil
			}
			if !yes {
				for _, e := range list {
					what := "reverts its fields in the replica"
					switch e.Op {
					case outbox.OpPost:
						what = "removes the local document and drops its later entries"
					case outbox.OpRemove:
						what = "restores the document"
					case outbox.OpAction:
						what = "the transition is not made"
					}
					fmt.Fprintf(m.Stdout, "entry %d (%s, %s %s): %s\n", e.Seq, e.State, e.Op, e.DocID, what)
				}
				if !m.askYes(fmt.Sprintf("Drop %d %s?", len(list), obPlural(len(list), "entry", "entries"))) {
					return errOutboxNotConfirmed
				}
			}
			var dropped []*outbox.Entry
			for _, e := range list {
				d, err := db.Drop(ctx, e.Seq, operatorActor())
				if err != nil {
					return fmt.Errorf("drop %d: %w", e.Seq, err)
				}
				dropped = append(dropped, d...)
			}
			fmt.Fprintf(m.Stdout, "dropped %d %s%s\n", len(dropped), obPlural(len(dropped), "entry", "entries"), seqSuffix(dropped))
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

func newOutboxResolveCommand(m *Main) *cobra.Command {
	var (
		keep                      string
		yes                       bool
		assumeApplied, assumeLost bool
		erp5ID                    string
	)
	cmd := &cobra.Command{
		Use:   "resolve SEQ --keep local|remote | --assume-applied [--id ID] | --assume-lost",
		Short: "Settle a conflict, or end an entry whose outcome ERP5 cannot tell",
		Long: `--keep local queues a new entry with the site's values, based on head office's current
ones (the old entry becomes superseded). --keep remote takes head office's values into the
replica and ends the entry; later edits of the same fields are based on head office's values.
The three sides are shown first and the command asks unless --yes.

--assume-applied and --assume-lost end an entry that was sent and whose outcome is unknown
(uncertain, or held after a send) when no results query can settle it: ERP5's receiver is
gone, or the entry went through stock ERP5. Check the document at ERP5 first. Applied: the
entry is done (a post needs --id, the id ERP5 gave the document; the local document takes
it). Lost: the same write is queued again as a new entry in its place, and the replica keeps
it. The command warns, asks unless --yes, and writes an audit line.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseOutboxTarget(a[0])
			if err != nil || seq == sqlite.All {
				return usagef("resolve takes one entry number")
			}
			given := 0
			for _, set := range []bool{keep != "", assumeApplied, assumeLost} {
				if set {
					given++
				}
			}
			if given != 1 {
				return usagef("give one of --keep local|remote, --assume-applied or --assume-lost")
			}
			if assumeApplied || assumeLost {
				assume := sqlite.AssumeLost
				if assumeApplied {
					assume = sqlite.AssumeApplied
				}
				return m.resolveAssumed(cmd.Context(), seq, assume, erp5ID, yes)
			}
			if erp5ID != "" {
				return usagef("--id goes with --assume-applied")
			}
			if keep != sqlite.KeepLocal && keep != sqlite.KeepRemote {
				return usagef("--keep must be local or remote")
			}
			ctx := cmd.Context()
			db, err := m.openWriteDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			e, err := db.OutboxEntry(ctx, seq)
			if err != nil {
				return err
			}
			if !yes && e.State == outbox.StateConflict {
				changes, err := db.HeadOffice(ctx, e)
				if err != nil {
					return err
				}
				fmt.Fprintf(m.Stdout, "entry %d (%s %s): %s\n", e.Seq, e.Op, e.DocID, obDash(e.LastError))
				writeThreeWays(m.Stdout, changes)
				if !m.askYes(fmt.Sprintf("Keep the %s values?", map[string]string{"local": "site's", "remote": "head office's"}[keep])) {
					return errOutboxNotConfirmed
				}
			}
			n, err := db.Resolve(ctx, seq, keep, operatorActor())
			if err != nil {
				return err
			}
			if n != 0 {
				fmt.Fprintf(m.Stdout, "entry %d: replaced by entry %d; %s\n", seq, n, m.serveNote(ctx))
			} else {
				fmt.Fprintf(m.Stdout, "entry %d: head office's values kept\n", seq)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "local or remote")
	cmd.Flags().BoolVar(&assumeApplied, "assume-applied", false, "end the entry as applied at ERP5 (checked by the operator)")
	cmd.Flags().BoolVar(&assumeLost, "assume-lost", false, "end the entry as never applied: its write is queued again as a new entry")
	cmd.Flags().StringVar(&erp5ID, "id", "", "with --assume-applied on a post: the id ERP5 gave the document")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

func newOutboxFlushCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "flush",
		Short: "Try the uplink now: deferred entries become due and serve is woken",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := db.Flush(ctx, operatorActor())
			if err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "%d deferred %s due now; %s\n", n, obPlural(n, "entry", "entries"), m.serveNote(ctx))
			return nil
		},
	}
}

// OutboxStatsJSON is what `outbox stats -o json` prints.
type OutboxStatsJSON struct {
	States          map[string]outbox.StateStats `json:"states"`
	Open            int                          `json:"open"`
	OpenBytes       int64                        `json:"open_bytes"`
	CompressedBytes int64                        `json:"open_bytes_compressed"`
	OldestPending   *string                      `json:"oldest_pending_at"`
	OldestAgeSec    int64                        `json:"oldest_pending_age_seconds"`
}

func newOutboxStatsCommand(m *Main) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count entries and bytes by state; oldest pending age; estimated compressed size",
		Long: `Print, per state, how many entries and bytes the outbox holds; the age of the oldest
entry still to be sent (pending, deferred, uncertain); and what the open entries would cost on
the link compressed with zstd. Bytes are the payloads as sent, or as they would be sent.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usagef("-o %q: want table or json", output)
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := db.OutboxStats(ctx)
			if err != nil {
				return err
			}
			open, _, err := db.OutboxList(ctx, outbox.Filter{Limit: outboxSummaryExact})
			if err != nil {
				return err
			}
			var payloads [][]byte
			for _, e := range open {
				p := e.Payload
				if len(p) == 0 {
					p, _ = outbox.Canonical(e)
				}
				payloads = append(payloads, p)
			}
			now := time.Now()
			j := OutboxStatsJSON{States: map[string]outbox.StateStats{}}
			for _, s := range st.States {
				j.States[s.State] = s
				if !outbox.IsFinal(s.State) {
					j.Open += s.Count
					j.OpenBytes += s.Bytes
				}
			}
			j.CompressedBytes = zstdSize(payloads)
			if len(open) > 0 && j.Open > len(open) {
				j.CompressedBytes = j.CompressedBytes * int64(j.Open) / int64(len(open))
			}
			if !st.OldestPending.IsZero() {
				s := obRFC3339(st.OldestPending)
				j.OldestPending = &s
				j.OldestAgeSec = int64(now.Sub(st.OldestPending) / time.Second)
			}
			if output == "json" {
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(j)
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STATE\tCOUNT\tBYTES")
			for _, s := range st.States {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", s.State, s.Count, obSize(s.Bytes))
			}
			tw.Flush()
			line := fmt.Sprintf("-- %d open %s, %s (≈%s zstd)", j.Open, obPlural(j.Open, "entry", "entries"),
				obKiB(j.OpenBytes), obKiB(j.CompressedBytes))
			if j.OldestPending != nil {
				line += "; oldest pending " + obAge(now.Sub(st.OldestPending))
			} else {
				line += "; nothing pending"
			}
			_, err = fmt.Fprintln(m.Stdout, line)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// Outbox maintenance while serve runs.
const (
	// outboxPruneEvery is how often ended entries past outbox.keep_done and expired write keys
	// are deleted.
	outboxPruneEvery = time.Hour
	// outboxIdleCheckpoint is how long the database must see no commit before the WAL is
	// checkpointed and truncated.
	outboxIdleCheckpoint = 30 * time.Second
)

// outboxRuntime is the outbox's share of `gateway serve`: its background loops.
type outboxRuntime struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	ready   bool           // the start's epoch is made
	pending []func() error // run once it is (whenReady)
	logger  *slog.Logger
}

// epochRetryEvery is how often serve, started on a full disk, tries again to make its epoch.
const epochRetryEvery = time.Second

// whenReady runs f now when the start's epoch is made, else once it is (its error logged).
func (r *outboxRuntime) whenReady(f func() error) error {
	r.mu.Lock()
	if !r.ready {
		r.pending = append(r.pending, f)
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	return f()
}

// makeReady records that the epoch is made and runs what waited for it.
func (r *outboxRuntime) makeReady() {
	r.mu.Lock()
	r.ready = true
	fs := r.pending
	r.pending = nil
	r.mu.Unlock()
	for _, f := range fs {
		if err := f(); err != nil {
			r.logger.Error("after the new epoch", "err", err)
		}
	}
}

// startEpoch makes the start's epoch and turns what a stopped process left inflight into
// uncertain.
func (m *Main) startEpoch(ctx context.Context, db *sqlite.DB) error {
	epoch, err := db.NewEpoch(ctx)
	if err != nil {
		return err
	}
	n, err := db.RecoverInflight(ctx)
	if err != nil {
		return err
	}
	m.Logger.Info("outbox ready", "epoch", epoch, "uncertain_after_restart", n)
	return nil
}

// startOutbox makes the database ready to serve and starts the outbox's background work. It
// sets the site id and modules from the configuration, makes a new epoch (docs/DESIGN.md §6: every
// start of serve), turns entries a stopped process left inflight into uncertain — both before
// anything is claimed — and then, until Close: calls changed whenever the database changes
// (another process's operator command, or this process's own writes: wake the uplink), prunes
// ended entries older than outbox.keep_done and expired write keys every hour, and checkpoints
// the WAL once the database has been idle for 30 seconds.
func (m *Main) startOutbox(ctx context.Context, db *sqlite.DB, changed func()) (*outboxRuntime, error) {
	db.SiteID = m.Config.SiteID
	if len(m.Config.Upstream.Modules) > 0 {
		db.Modules = m.Config.Upstream.Modules
	}
	r := &outboxRuntime{done: make(chan struct{}), logger: m.Logger}
	// On a full disk serve starts read-only (docs/DESIGN.md §9): reads are answered, writes
	// refused with 507 until the epoch is made, which is tried again every second.
	err := m.startEpoch(ctx, db)
	switch {
	case err == nil:
		r.ready = true
	case gateway.ErrorCode(err) == gateway.ENOSPACE:
		m.Logger.Warn("disk full: serving reads only until space is freed", "err", err)
		db.HoldWrites(&gateway.Error{Code: gateway.ENOSPACE,
			Message: "the gateway's disk is full: it serves reads only until space is freed; the write was not stored"})
	default:
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	lastChange := make(chan struct{}, 1)
	var watch sync.WaitGroup
	go func() {
		defer close(r.done)
		defer watch.Wait()
		if !r.ready {
			t := time.NewTicker(epochRetryEvery)
			for !r.ready {
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				if err := m.startEpoch(ctx, db); err != nil {
					if gateway.ErrorCode(err) != gateway.ENOSPACE && ctx.Err() == nil {
						m.Logger.Warn("new epoch", "err", err)
					}
					continue
				}
				db.ReleaseWrites()
				m.Logger.Info("space is back: writes are accepted")
				r.makeReady()
			}
			t.Stop()
		}
		watch.Go(func() {
			err := db.WatchChanges(ctx, 0, func() {
				select {
				case lastChange <- struct{}{}:
				default:
				}
				if changed != nil {
					changed()
				}
			})
			if err != nil {
				m.Logger.Warn("outbox: watching the database for changes", "err", err)
			}
		})
		keep := time.Duration(m.Config.Outbox.KeepDone)
		prune := time.NewTicker(outboxPruneEvery)
		defer prune.Stop()
		idle := time.NewTimer(outboxIdleCheckpoint)
		defer idle.Stop()
		dirty := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-lastChange:
				dirty = true
				idle.Reset(outboxIdleCheckpoint)
			case <-idle.C:
				if dirty {
					if err := db.Checkpoint(ctx); err != nil && ctx.Err() == nil {
						m.Logger.Warn("outbox: idle checkpoint", "err", err)
					}
					dirty = false
				}
			case <-prune.C:
				rep, err := db.Prune(ctx, keep)
				switch {
				case err != nil && ctx.Err() == nil:
					m.Logger.Warn("outbox: prune", "err", err)
				case rep.Entries+rep.WriteKeys > 0:
					m.Logger.Info("outbox: pruned", "entries", rep.Entries, "write_keys", rep.WriteKeys)
				}
			}
		}
	}()
	return r, nil
}

// Close stops the background loops and waits for them.
func (r *outboxRuntime) Close() {
	r.cancel()
	<-r.done
}
