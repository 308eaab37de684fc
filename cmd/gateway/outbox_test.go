package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sitesync.example/gateway/control"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// runOutbox runs the command line in-process and returns stdout, stderr and the exit status.
func runOutbox(tb testing.TB, dir, stdin string, argv ...string) (string, string, int) {
	tb.Helper()
	return runDocs(tb, stdin, append([]string{"--data-dir", dir}, argv...)...)
}

// queueEveryState builds, in a new data directory, an outbox with entries in every state and
// returns the directory and the seq of one entry per state.
func queueEveryState(tb testing.TB) (string, map[string]int64) {
	tb.Helper()
	tb.Chdir(tb.TempDir())
	dir := tb.TempDir()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	db.SiteID = "test-site"
	seed := func(id string) {
		if _, err := db.Writer().Exec(`INSERT INTO documents (id, portal_type, body, upstream_body, updated_at)
			VALUES (?, 'Person', jsonb('{"portal_type":"Person","title":"t"}'), jsonb('{"portal_type":"Person","title":"t"}'), 'x')`, id); err != nil {
			tb.Fatal(err)
		}
	}
	put := func(id, title string) int64 {
		r, err := db.Write(ctx, sqlite.Write{Op: "put", ID: id, Doc: map[string]any{"title": title}, Peer: "tab-1"})
		if err != nil {
			tb.Fatal(err)
		}
		return r.Seq
	}
	seqs := map[string]int64{}
	for _, s := range []string{"done", "inflight", "deferred", "uncertain", "dead", "conflict", "superseded", "merged"} {
		seed("person_module/" + s)
	}
	for _, s := range []string{"done", "inflight", "deferred", "uncertain", "dead", "conflict", "superseded"} {
		seqs[s] = put("person_module/"+s, s)
	}
	seqs["merged"] = put("person_module/merged", "m1")
	into := put("person_module/merged", "m2")
	b, err := db.Claim(ctx, outbox.Budget{}, nil)
	if err != nil || len(b.Entries) != 8 {
		tb.Fatalf("claim: %v %v", b, err)
	}
	if _, err := db.Settle(ctx, []outbox.Result{
		{Seq: seqs["done"], Status: "ok"},
		{Seq: seqs["deferred"], Status: "deferred", Reason: "HTTP 503 (Retry-After 300s)", NextAttemptAt: time.Now().Add(5 * time.Minute)},
		{Seq: seqs["uncertain"], Status: "uncertain", Reason: "timeout"},
		{Seq: seqs["dead"], Status: "rejected", Reason: "title: too long"},
		{Seq: seqs["conflict"], Status: "conflict", Current: json.RawMessage(`{"title":"head office"}`)},
		{Seq: seqs["superseded"], Status: "rejected", Reason: "no"},
		{Seq: into, Status: "ok"},
	}); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Retry(ctx, seqs["superseded"], "test"); err != nil {
		tb.Fatal(err)
	}
	seed("person_module/pending")
	seqs["pending"] = put("person_module/pending", "p")
	seed("person_module/held")
	seqs["held"] = put("person_module/held", "h")
	if _, err := db.Hold(ctx, seqs["held"], "test"); err != nil {
		tb.Fatal(err)
	}
	for st, seq := range seqs {
		e, err := db.OutboxEntry(ctx, seq)
		if err != nil || e.State != st {
			tb.Fatalf("entry %d is %v, want %s (%v)", seq, e, st, err)
		}
	}
	return dir, seqs
}

var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

func TestOutboxLs_JSONEveryState(t *testing.T) {
	dir, seqs := queueEveryState(t)
	for _, c := range []struct {
		args   []string
		states []string
	}{
		{[]string{"outbox", "ls", "-o", "json"}, outbox.OpenStates},
		{[]string{"outbox", "ls", "-o", "json", "--state", "all"}, outbox.States},
		{[]string{"outbox", "ls", "-o", "json", "--state", "dead", "--state", "merged"}, []string{"dead", "merged"}},
	} {
		out, errOut, code := runOutbox(t, dir, "", c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		var raw []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("%v: not a JSON array: %v\n%s", c.args, err, out)
		}
		var got []string
		for _, obj := range raw {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if want := []string{"attempts", "bytes", "created_at", "doc_id", "last_error", "next_attempt_at", "op", "seq", "state"}; !slices.Equal(keys, want) {
				t.Fatalf("keys %v, want exactly %v", keys, want)
			}
			var e OutboxEntryJSON
			if err := json.Unmarshal(mustMarshal(t, obj), &e); err != nil {
				t.Fatal(err)
			}
			if !rfc3339UTC.MatchString(e.CreatedAt) || e.Bytes <= 0 || e.Op != "put" || !strings.HasPrefix(e.DocID, "person_module/") {
				t.Errorf("entry %+v", e)
			}
			if (e.State == "deferred") != (e.NextAttemptAt != nil) || (e.NextAttemptAt != nil && !rfc3339UTC.MatchString(*e.NextAttemptAt)) {
				t.Errorf("next_attempt_at of a %s entry: %v", e.State, e.NextAttemptAt)
			}
			if string(obj["next_attempt_at"]) != "null" && e.NextAttemptAt == nil {
				t.Errorf("next_attempt_at %s", obj["next_attempt_at"])
			}
			if e.State == "dead" && (e.LastError != "title: too long" || e.Seq != seqs["dead"] || e.Attempts != 1) {
				t.Errorf("dead entry %+v", e)
			}
			got = append(got, e.State)
		}
		sort.Strings(got)
		want := slices.Clone(c.states)
		sort.Strings(want)
		// One entry per state, plus the entry that superseded one (pending) and the merged
		// entry's target (done) when those states are listed.
		want = slices.Compact(want)
		if !subsetWithAll(got, want) {
			t.Errorf("%v: states %v, want every one of %v and no other", c.args, got, want)
		}
	}
	// jsonl: one object per line, the same entries.
	out, _, code := runOutbox(t, dir, "", "outbox", "ls", "-o", "jsonl")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 8 { // 7 open states + the superseding entry (pending)
		t.Fatalf("jsonl: exit %d, %d lines:\n%s", code, len(lines), out)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("jsonl line %q", l)
		}
	}
}

// subsetWithAll reports whether got holds every state of want at least once and nothing else.
func subsetWithAll(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			return false
		}
	}
	return true
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestOutboxLs_Table(t *testing.T) {
	dir, seqs := queueEveryState(t)
	out, errOut, code := runOutbox(t, dir, "", "outbox", "ls")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !regexp.MustCompile(`^SEQ +STATE +AGE +ATTEMPTS +NEXT-TRY +SIZE +OP +DOCUMENT +LAST-ERROR$`).MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	if len(lines) != 10 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	deferred := regexp.MustCompile(`^\d+ +deferred +\d+s +1 +in 4m5\ds +\d+B +put +person_module/deferred +HTTP 503 \(Retry-After 300s\)$`)
	if !slices.ContainsFunc(lines, deferred.MatchString) {
		t.Errorf("no deferred row like the design's:\n%s", out)
	}
	summary := regexp.MustCompile(`^-- 8 entries, \d+\.\d KiB \(≈\d+\.\d KiB compressed\); oldest \d+s; link state unknown; serve not running$`)
	if !summary.MatchString(lines[len(lines)-1]) {
		t.Errorf("summary %q", lines[len(lines)-1])
	}
	// --limit, "… N more", --no-headers.
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "--limit", "3", "--no-headers")
	lines = strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || lines[3] != "… 5 more" || strings.HasPrefix(lines[0], "SEQ") {
		t.Errorf("--limit 3 --no-headers:\n%s", out)
	}
	// Filters.
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "--doc", "person_module/held", "-o", "wide")
	if !strings.Contains(out, "EPOCH") || !strings.Contains(out, "tab-1") || !strings.Contains(out, "held by operator") || strings.Count(out, "\n") != 3 {
		t.Errorf("--doc -o wide:\n%s", out)
	}
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "--peer", "nobody", "-o", "json")
	if out != "[]\n" {
		t.Errorf("--peer nobody: %q", out)
	}
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "--older-than", "1h")
	if !strings.Contains(out, "-- 0 entries") {
		t.Errorf("--older-than 1h:\n%s", out)
	}
	for _, bad := range [][]string{{"--state", "gone"}, {"-o", "yaml"}, {"--older-than", "soon"}, {"--limit", "-1"}} {
		if _, _, code := runOutbox(t, dir, "", append([]string{"outbox", "ls"}, bad...)...); code != 2 {
			t.Errorf("ls %v: exit %d, want 2", bad, code)
		}
	}
	_ = seqs
}

func TestOutboxLs_Empty(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	out, errOut, code := runOutbox(t, dir, "", "outbox", "ls")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SEQ") || !strings.HasPrefix(lines[1], "-- 0 entries, 0.0 KiB (≈0.0 KiB compressed)") {
		t.Errorf("empty queue:\n%s", out)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "ls", "-o", "json")
	if code != 0 || out != "[]\n" {
		t.Errorf("empty json: %d %q", code, out)
	}
}

func TestOutboxCommands(t *testing.T) {
	dir, seqs := queueEveryState(t)
	seq := func(s string) string { return strconv.FormatInt(seqs[s], 10) }

	// ALL must be upper case; a bad target is a usage error.
	for _, a := range [][]string{{"hold", "all"}, {"release", "All"}, {"drop", "x"}, {"retry", "0"}, {"show", "ALL"}} {
		if _, _, code := runOutbox(t, dir, "", append([]string{"outbox"}, a...)...); code != 2 {
			t.Errorf("outbox %v: exit %d, want 2", a, code)
		}
	}
	// show: the entry, its payload, both sides of a conflict.
	out, _, code := runOutbox(t, dir, "", "outbox", "show", seq("conflict"))
	if code != 0 || !strings.Contains(out, "state:") || !strings.Contains(out, `"head office"`) ||
		!strings.Contains(out, "changed at head office") || !strings.Contains(out, "payload") {
		t.Errorf("show conflict:\n%s", out)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "show", seq("done"), "-o", "json")
	var shown OutboxShowJSON
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Seq != seqs["done"] || shown.Hash == "" || len(shown.Payload) == 0 {
		t.Errorf("show -o json:\n%s", out)
	}
	if _, _, code := runOutbox(t, dir, "", "outbox", "show", "99999"); code != 1 {
		t.Errorf("show of a missing entry: exit %d", code)
	}
	// hold / release.
	out, _, code = runOutbox(t, dir, "", "outbox", "hold", seq("pending"))
	if code != 0 || !strings.Contains(out, "held 1 entry") {
		t.Errorf("hold: %d %s", code, out)
	}
	if _, _, code := runOutbox(t, dir, "", "outbox", "hold", seq("dead")); code != 1 {
		t.Errorf("hold of a dead entry: exit %d", code)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "release", "ALL")
	if code != 0 || !strings.Contains(out, "released 2 entries") || !strings.Contains(out, "serve is not running") {
		t.Errorf("release ALL: %d %s", code, out)
	}
	// drop asks; "n" changes nothing.
	_, errOut, code := runOutbox(t, dir, "n\n", "outbox", "drop", seq("dead"))
	if code != 1 || !strings.Contains(errOut, "not confirmed") {
		t.Errorf("drop answered no: %d %s", code, errOut)
	}
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "--state", "dead", "-o", "json")
	if !strings.Contains(out, `"state":"dead"`) {
		t.Error("a refused drop dropped")
	}
	out, _, code = runOutbox(t, dir, "yes\n", "outbox", "drop", seq("dead"))
	if code != 0 || !strings.Contains(out, "dropped 1 entry") {
		t.Errorf("drop: %d %s", code, out)
	}
	if _, _, code := runOutbox(t, dir, "", "outbox", "drop", seq("pending"), "--yes"); code != 1 {
		t.Errorf("drop of a pending entry: exit %d", code)
	}
	// retry: conflict asks (shows head office's values), then queues a new entry.
	out, _, code = runOutbox(t, dir, "y\n", "outbox", "retry", seq("conflict"))
	if code != 0 || !strings.Contains(out, "replaced by entry") || !strings.Contains(out, `"head office"`) {
		t.Errorf("retry conflict: %d %s", code, out)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "retry", seq("deferred"))
	if code != 0 || !strings.Contains(out, "due now") {
		t.Errorf("retry deferred: %d %s", code, out)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "flush")
	if code != 0 || !strings.Contains(out, "deferred entries due now") {
		t.Errorf("flush: %d %s", code, out)
	}
	// resolve needs a conflict entry and --keep.
	if _, _, code := runOutbox(t, dir, "", "outbox", "resolve", seq("uncertain")); code != 2 {
		t.Errorf("resolve without --keep: exit %d", code)
	}
	if _, _, code := runOutbox(t, dir, "", "outbox", "resolve", seq("uncertain"), "--keep", "local", "--yes"); code != 1 {
		t.Errorf("resolve of an uncertain entry: exit %d", code)
	}
	// stats.
	out, _, code = runOutbox(t, dir, "", "outbox", "stats", "-o", "json")
	var st OutboxStatsJSON
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.States["superseded"].Count != 3 || st.Open == 0 ||
		st.OpenBytes <= 0 || st.CompressedBytes <= 0 || st.OldestPending == nil {
		t.Errorf("stats json: %d\n%s", code, out)
	}
	out, _, code = runOutbox(t, dir, "", "outbox", "stats")
	if code != 0 || !strings.Contains(out, "STATE") || !regexp.MustCompile(`-- \d+ open entries, .* zstd\); oldest pending \d+s`).MatchString(out) {
		t.Errorf("stats:\n%s", out)
	}
	// Every operator action left an audit line.
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	db.Reader().QueryRow(`SELECT count(*) FROM audit WHERE actor LIKE 'cli%' AND action IN ('hold', 'release', 'drop', 'retry', 'flush')`).Scan(&n)
	if n < 6 {
		t.Errorf("%d audit lines", n)
	}
}

func TestOutbox_WakesServe(t *testing.T) {
	dir, seqs := queueEveryState(t)
	ctl := control.NewServer(filepath.Join(dir, "gateway.sock"))
	var woken atomic.Int32
	ctl.HandleWake(control.WakeUplink, func() { woken.Add(1) })
	if err := ctl.Open(); err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	out, _, code := runOutbox(t, dir, "", "outbox", "flush")
	if code != 0 || !strings.Contains(out, "serve notified") || woken.Load() != 1 {
		t.Errorf("flush with serve: %d %s (woken %d)", code, out, woken.Load())
	}
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls")
	if strings.Contains(out, "serve not running") {
		t.Errorf("ls says serve is not running:\n%s", out)
	}
	if _, _, code := runOutbox(t, dir, "", "outbox", "release", strconv.FormatInt(seqs["held"], 10)); code != 0 || woken.Load() != 2 {
		t.Errorf("release did not wake serve: %d", woken.Load())
	}
}

func TestDocsWrite(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	out, errOut, code := runOutbox(t, dir, "", "docs", "post", `{"portal_type":"Person","title":"Anne","n":1.50}`, "--key", "k1")
	if code != 0 {
		t.Fatalf("post: %d %s", code, errOut)
	}
	var res struct{ ID string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || !strings.HasPrefix(res.ID, "person_module/local-") || out != `{"id":"`+res.ID+`"}`+"\n" {
		t.Fatalf("post printed %q", out)
	}
	again, _, code := runOutbox(t, dir, "", "docs", "post", `{"portal_type":"Person","title":"Anne","n":1.50}`, "--key", "k1")
	if code != 0 || again != out {
		t.Errorf("replayed key: %q, want %q", again, out)
	}
	if _, errOut, code := runOutbox(t, dir, "", "docs", "post", `{"portal_type":"Person","title":"Other"}`, "--key", "k1"); code != 1 || !strings.Contains(errOut, "key_reused") {
		t.Errorf("reused key: %d %s", code, errOut)
	}
	if _, errOut, code := runOutbox(t, dir, `{"email":"a@b","n":null}`, "docs", "put", res.ID, "-"); code != 0 {
		t.Fatalf("put: %s", errOut)
	}
	out, _, _ = runOutbox(t, dir, "", "docs", "get", res.ID)
	if out != `{"portal_type":"Person","title":"Anne","email":"a@b"}`+"\n" {
		t.Errorf("get after put: %q", out)
	}
	if _, errOut, code := runOutbox(t, dir, "", "docs", "put", "person_module/nope", `{"a":1}`); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("put of a missing document: %d %s", code, errOut)
	}
	if _, _, code := runOutbox(t, dir, "", "docs", "rm", res.ID); code != 0 {
		t.Error("rm failed")
	}
	out, _, _ = runOutbox(t, dir, "", "outbox", "ls", "-o", "json")
	var list []OutboxEntryJSON
	json.Unmarshal([]byte(out), &list)
	if len(list) != 3 || list[0].Op != "post" || list[1].Op != "put" || list[2].Op != "remove" {
		t.Errorf("outbox after post, put, rm: %s", out)
	}
	if _, _, code := runOutbox(t, dir, "", "docs", "post", `[1,2]`); code != 1 {
		t.Errorf("post of an array: exit %d", code)
	}
}

func TestBackupRestorePromote(t *testing.T) {
	dir, _ := queueEveryState(t)
	backup := filepath.Join(t.TempDir(), "b.db")
	out, errOut, code := runOutbox(t, dir, "", "backup", backup)
	if code != 0 || !strings.Contains(out, "backup written") {
		t.Fatalf("backup: %d %s %s", code, out, errOut)
	}
	if _, _, code := runOutbox(t, dir, "", "docs", "post", `{"portal_type":"Person","title":"after"}`); code != 0 {
		t.Fatal("post")
	}
	countAfter := func() int {
		out, _, _ := runOutbox(t, dir, "", "docs", "query", "title:after", "-o", "json")
		var q struct {
			TotalRows int `json:"total_rows"`
		}
		if err := json.Unmarshal([]byte(out), &q); err != nil {
			t.Fatalf("query: %v: %s", err, out)
		}
		return q.TotalRows
	}
	if n := countAfter(); n != 1 {
		t.Fatalf("the post is not found before the restore (%d)", n)
	}
	ctl := control.NewServer(filepath.Join(dir, "gateway.sock"))
	if err := ctl.Open(); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runOutbox(t, dir, "", "restore", backup); code != 1 || !strings.Contains(errOut, "serve is running") {
		t.Errorf("restore while serving: %d %s", code, errOut)
	}
	if _, errOut, code := runOutbox(t, dir, "", "promote"); code != 1 || !strings.Contains(errOut, "serve is running") {
		t.Errorf("promote while serving: %d %s", code, errOut)
	}
	ctl.Close()
	out, errOut, code = runOutbox(t, dir, "", "restore", backup)
	if code != 0 || !regexp.MustCompile(`new epoch [0-9a-f]{32}`).MatchString(out) || !strings.Contains(out, "1 entry that were being sent") ||
		!strings.Contains(out, "pre-restore") || !strings.Contains(out, "are lost") {
		t.Errorf("restore: %d\n%s%s", code, out, errOut)
	}
	if n := countAfter(); n != 0 {
		t.Errorf("a post made after the backup survived the restore (%d)", n)
	}
	out, _, code = runOutbox(t, dir, "", "promote")
	if code != 0 || !regexp.MustCompile(`^promoted; new epoch [0-9a-f]{32}\n$`).MatchString(out) {
		t.Errorf("promote: %d %q", code, out)
	}
}

func TestStartOutbox(t *testing.T) {
	dir, seqs := queueEveryState(t)
	m := NewMain()
	m.Stdout, m.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	if err := m.Run(context.Background(), []string{"--data-dir", dir, "version"}); err != nil {
		t.Fatal(err)
	}
	m.Config.SiteID = "mine-7"
	ctx := context.Background()
	db, err := m.OpenDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before, _ := db.Epoch(ctx)
	var changed atomic.Int32
	r, err := m.startOutbox(ctx, db, func() { changed.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	after, _ := db.Epoch(ctx)
	if after == before {
		t.Error("serve's start made no new epoch")
	}
	if e, _ := db.OutboxEntry(ctx, seqs["inflight"]); e.State != outbox.StateUncertain {
		t.Errorf("inflight entry after start: %s", e.State)
	}
	// Another process's change is noticed within a second.
	if _, _, code := runOutbox(t, dir, "", "outbox", "hold", strconv.FormatInt(seqs["pending"], 10)); code != 0 {
		t.Fatal("hold")
	}
	deadline := time.Now().Add(2 * time.Second)
	for changed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if changed.Load() == 0 {
		t.Error("a change by another process was not noticed")
	}
	w, err := db.Write(ctx, sqlite.Write{Op: "put", ID: "person_module/pending", Doc: map[string]any{"title": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := db.OutboxEntry(ctx, w.Seq); e.SiteID != "mine-7" || e.Epoch != after {
		t.Errorf("new row site %q epoch %s", e.SiteID, e.Epoch)
	}
}
