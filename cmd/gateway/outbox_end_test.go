package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// endEnv is a data directory with a database the test shapes directly.
type endEnv struct {
	t   *testing.T
	dir string
	db  *sqlite.DB
}

func newEndEnv(t *testing.T) *endEnv {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SiteID = "test-site"
	return &endEnv{t: t, dir: dir, db: db}
}

func (e *endEnv) seed(id string) {
	if _, err := e.db.Writer().Exec(`INSERT INTO documents (id, portal_type, body, upstream_body, updated_at)
		VALUES (?, 'Person', jsonb('{"portal_type":"Person","title":"t"}'), jsonb('{"portal_type":"Person","title":"t"}'), 'x')`, id); err != nil {
		e.t.Fatal(err)
	}
}

func (e *endEnv) write(w sqlite.Write) int64 {
	w.Peer = "tab-1"
	r, err := e.db.Write(context.Background(), w)
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Seq
}

// claim claims every due entry, in mode, and settles them with results.
func (e *endEnv) claim(mode string, results ...outbox.Result) {
	enc := outbox.Encoder(outbox.BatchEncoder)
	if mode == outbox.ModeStock {
		enc = func(en *outbox.Entry, hash string) (string, []byte, error) {
			_, p, err := outbox.BatchEncoder(en, hash)
			return outbox.ModeStock, p, err
		}
	}
	if _, err := e.db.Claim(context.Background(), outbox.Budget{}, enc); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.Settle(context.Background(), results); err != nil {
		e.t.Fatal(err)
	}
}

func (e *endEnv) entry(seq int64) *outbox.Entry {
	en, err := e.db.OutboxEntry(context.Background(), seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return en
}

func (e *endEnv) run(stdin string, argv ...string) (string, string, int) {
	return runOutbox(e.t, e.dir, stdin, argv...)
}

// setMode records the uplink's status as serve would, in mode.
func (e *endEnv) setMode(mode string) {
	b, _ := json.Marshal(savedStatus{At: time.Now().UTC(), Status: upstream.Status{Mode: mode, Protocol: upstream.ProtocolAuto}})
	if err := e.db.SetMeta(context.Background(), MetaUplinkStatus, string(b)); err != nil {
		e.t.Fatal(err)
	}
}

func lsRow(out string, seq int64) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, strconv.FormatInt(seq, 10)+" ") {
			return l
		}
	}
	return ""
}

// Stock mode, ERP5 answering 503: a held entry keeps its error beside the hold, shows no next
// try, and can be dropped although it was sent — with a warning that ERP5 may hold it.
func TestOutbox_HeldStockEntryDropsWithWarning(t *testing.T) {
	e := newEndEnv(t)
	e.seed("person_module/1")
	s := e.write(sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"title": "x"}})
	e.claim(outbox.ModeStock, outbox.Result{Seq: s, Status: outbox.ResultDeferred, Reason: "HTTP 503", NextAttemptAt: time.Now().Add(time.Minute)})
	if _, err := e.db.Hold(context.Background(), s, "test"); err != nil {
		t.Fatal(err)
	}
	en := e.entry(s)
	if en.LastError != "HTTP 503" || en.HeldReason != "held by operator" {
		t.Errorf("held: last error %q, held reason %q", en.LastError, en.HeldReason)
	}
	out, _, _ := e.run("", "outbox", "ls")
	row := lsRow(out, s)
	if !regexp.MustCompile(`held +\S+ +1 +- +`).MatchString(row) || !strings.Contains(row, "held by operator; last error: HTTP 503") {
		t.Errorf("held row: %q", row)
	}
	out, errOut, code := e.run("", "outbox", "drop", strconv.FormatInt(s, 10), "--yes")
	if code != 0 || !strings.Contains(out, "WARNING") || !strings.Contains(out, "ERP5 may hold it") {
		t.Fatalf("drop: exit %d\n%s%s", code, out, errOut)
	}
	if st := e.entry(s).State; st != outbox.StateSuperseded {
		t.Errorf("dropped entry is %s", st)
	}
}

// A batch entry left uncertain (or held after its send) when the receiver disappeared: the
// uplink runs in stock mode, no results query will settle it. outbox ls and sync status say
// so; retry and drop refuse with what to do; resolve --assume-lost queues the same write again
// as a new entry, --assume-applied ends it (a post needs ERP5's id).
func TestOutbox_ReceiverGoneResolve(t *testing.T) {
	e := newEndEnv(t)
	for _, d := range []string{"person_module/1", "person_module/2"} {
		e.seed(d)
	}
	lost := e.write(sqlite.Write{Op: "put", ID: "person_module/1", Doc: map[string]any{"title": "lost?"}})
	applied := e.write(sqlite.Write{Op: "put", ID: "person_module/2", Doc: map[string]any{"title": "applied?"}})
	post := e.write(sqlite.Write{Op: "post", Doc: map[string]any{"portal_type": "Person", "title": "new"}})
	e.claim(outbox.ModeBatch,
		outbox.Result{Seq: lost, Status: outbox.ResultUncertain, Reason: "no complete response"},
		outbox.Result{Seq: applied, Status: outbox.ResultUncertain, Reason: "no complete response"},
		outbox.Result{Seq: post, Status: outbox.ResultUncertain, Reason: "no complete response"})
	if _, err := e.db.Hold(context.Background(), applied, "test"); err != nil {
		t.Fatal(err)
	}
	e.setMode(upstream.ModeStock)

	out, _, _ := e.run("", "outbox", "ls", "-o", "wide")
	for _, s := range []int64{lost, applied, post} {
		if row := lsRow(out, s); !strings.Contains(row, "the receiver is gone") || !strings.Contains(row, "--assume-applied|--assume-lost") {
			t.Errorf("ls row of %d: %q", s, row)
		}
	}
	out, _, _ = e.run("", "sync", "status")
	if !strings.Contains(out, "RECEIVER GONE:") || !strings.Contains(out, upstream.FormatSeqs([]int64{lost, applied, post})) {
		t.Errorf("sync status:\n%s", out)
	}
	for _, verb := range []string{"retry", "drop"} {
		_, errOut, code := e.run("", "outbox", verb, strconv.FormatInt(lost, 10), "--yes")
		if code == 0 || !strings.Contains(errOut, "resolve "+strconv.FormatInt(lost, 10)+" --assume-applied|--assume-lost") {
			t.Errorf("%s of an uncertain entry: exit %d, %q", verb, code, errOut)
		}
	}

	// Lost: the same write, under a new seq, in the old one's place.
	out, errOut, code := e.run("y\n", "outbox", "resolve", strconv.FormatInt(lost, 10), "--assume-lost")
	if code != 0 || !strings.Contains(out, "WARNING") {
		t.Fatalf("assume lost: exit %d\n%s%s", code, out, errOut)
	}
	old := e.entry(lost)
	if old.State != outbox.StateSuperseded || old.SupersededBy == 0 {
		t.Fatalf("lost entry: %s superseded by %d", old.State, old.SupersededBy)
	}
	n := e.entry(old.SupersededBy)
	if n.State != outbox.StatePending || n.Attempts != 0 || n.OrderKey != old.OrderKey || n.Fields["title"] != "lost?" || n.DocID != old.DocID {
		t.Errorf("queued again: %+v", n)
	}

	// Applied: a held put; a post needs the id ERP5 gave it.
	if _, _, code := e.run("", "outbox", "resolve", strconv.FormatInt(applied, 10), "--assume-applied", "--yes"); code != 0 {
		t.Errorf("assume applied: exit %d", code)
	}
	if en := e.entry(applied); en.State != outbox.StateDone {
		t.Errorf("applied entry: %s", en.State)
	}
	if _, errOut, code := e.run("", "outbox", "resolve", strconv.FormatInt(post, 10), "--assume-applied", "--yes"); code == 0 || !strings.Contains(errOut, "--id") {
		t.Errorf("post assumed applied without --id: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.run("", "outbox", "resolve", strconv.FormatInt(post, 10), "--assume-applied", "--id", "person_module/77", "--yes"); code != 0 {
		t.Fatalf("post assumed applied: exit %d %q", code, errOut)
	}
	if id, err := e.db.ResolveID(context.Background(), e.entry(post).DocID); err != nil || id != "person_module/77" {
		t.Errorf("the post's document is %q (%v), want person_module/77", id, err)
	}
	var audits int
	e.db.Reader().QueryRow(`SELECT count(*) FROM audit WHERE action = 'resolve' AND detail LIKE '%assumed%'`).Scan(&audits)
	if audits != 3 {
		t.Errorf("%d audit lines for the assumptions, want 3", audits)
	}
	// Nothing of the kind is left.
	out, _, _ = e.run("", "sync", "status")
	if strings.Contains(out, "RECEIVER GONE") {
		t.Errorf("sync status after resolving:\n%s", out)
	}
}

// outbox ls and outbox stats count the same bytes; outbox show on an action prints no empty
// three-way table.
func TestOutbox_LsStatsSizesAgreeAndShowAction(t *testing.T) {
	e := newEndEnv(t)
	for i := range 8 {
		id := "person_module/" + strconv.Itoa(i)
		e.seed(id)
		e.write(sqlite.Write{Op: "put", ID: id, Doc: map[string]any{"title": strings.Repeat("x", 40*i)}})
	}
	ls, _, _ := e.run("", "outbox", "ls")
	stats, _, _ := e.run("", "outbox", "stats")
	lsKiB := regexp.MustCompile(`-- 8 entries, (\S+ KiB)`).FindStringSubmatch(ls)
	stKiB := regexp.MustCompile(`-- 8 open entries, (\S+ KiB)`).FindStringSubmatch(stats)
	if lsKiB == nil || stKiB == nil || lsKiB[1] != stKiB[1] {
		t.Errorf("ls says %v, stats says %v:\n%s\n%s", lsKiB, stKiB, ls, stats)
	}

	act := e.write(sqlite.Write{Op: "action", ID: "person_module/1", Transition: "validate_action"})
	e.claim(outbox.ModeBatch)
	if _, err := e.db.Settle(context.Background(), []outbox.Result{{Seq: act, Status: outbox.ResultRejected, Reason: "no such transition"}}); err != nil {
		t.Fatal(err)
	}
	if st := e.entry(act).State; st != outbox.StateDead {
		t.Fatalf("action is %s", st)
	}
	out, _, _ := e.run("", "outbox", "show", strconv.FormatInt(act, 10))
	if strings.Contains(out, "head office (base") {
		t.Errorf("show of an action prints the three-way heading:\n%s", out)
	}
}

// sync status keeps its columns aligned when a value (a joined error) spans lines.
func TestSyncStatus_ColumnsAligned(t *testing.T) {
	now := time.Now()
	st := &upstream.Status{Mode: upstream.ModeBatch, Protocol: "auto",
		Link: upstream.LinkStatus{State: upstream.LinkDown, Since: now.Add(-time.Minute), Failures: 3,
			LastError: "POST /x: request not sent\nerp5 unreachable\ndial: link down"},
		Alarms: []upstream.Alarm{{Kind: "bad_version", Message: "two\nlines"}}}
	var b strings.Builder
	if err := writeSyncReport(&b, &SyncReport{Live: true, Link: st, Outbox: map[string]int{}}, now); err != nil {
		t.Fatal(err)
	}
	col := -1
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		i := strings.Index(l, ":")
		j := i + 1
		for j < len(l) && l[j] == ' ' {
			j++
		}
		if i < 0 || j == len(l) {
			t.Fatalf("line without a key and value: %q\n%s", l, b.String())
		}
		if col == -1 {
			col = j
		} else if j != col {
			t.Errorf("value of %q starts at %d, not %d:\n%s", l, j, col, b.String())
		}
	}
}

// A seq_reused alarm (uplink paused) shows in outbox ls's summary line.
func TestOutboxLs_ShowsAlarms(t *testing.T) {
	e := newEndEnv(t)
	b, _ := json.Marshal(savedStatus{At: time.Now().UTC(), Status: upstream.Status{Mode: upstream.ModeBatch, Paused: true,
		PauseCause: "seq_reused", Alarms: []upstream.Alarm{{Kind: upstream.AlarmSeqReused, Message: "m", Seqs: []int64{4, 5, 6}}}}})
	if err := e.db.SetMeta(context.Background(), MetaUplinkStatus, string(b)); err != nil {
		t.Fatal(err)
	}
	out, _, _ := e.run("", "outbox", "ls")
	if !strings.Contains(out, "UPLINK PAUSED (seq_reused); ALARM seq_reused (seq 4-6)") {
		t.Errorf("ls summary:\n%s", out)
	}
}

// The status page (status.json) names the entries whose receiver is gone: serve runs against
// a stock-only ERP5 while entries first sent to the receiver are uncertain.
func TestStatus_ReceiverGone(t *testing.T) {
	dir, seqs := queueEveryState(t)
	ctx := context.Background()
	sim := erp5sim.New(erp5sim.Options{Stock: true, Logger: slog.New(slog.DiscardHandler)})
	erp5 := startSimERP5(sim, linksim.Thuraya)
	t.Cleanup(erp5.Close)
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = dir
	m.Config.SiteID = "mine-north"
	m.Config.Upstream.URL = erp5.URL
	m.Config.LAN.Listen = "127.0.0.1:0"
	m.Config.LAN.WebRTC.UDPPort = 0
	m.Logger = slog.New(slog.DiscardHandler)
	m.UpstreamDial = erp5.Link.DialContext
	s, err := m.StartServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.Close(cctx)
	})
	waitUntil(t, 60*time.Second, "the uplink in stock mode", func() bool { return s.Uplink.Status().Mode == upstream.ModeStock })
	rep := fetchStatus(t, s.URL(), "")
	// The uncertain entry and the one a stopped process left inflight (now uncertain) were
	// sent to the receiver.
	want := []int64{seqs["inflight"], seqs["uncertain"]}
	slices.Sort(want)
	if !slices.Equal(rep.ReceiverGone, want) {
		t.Errorf("receiver_gone = %v, want %v", rep.ReceiverGone, want)
	}
}
