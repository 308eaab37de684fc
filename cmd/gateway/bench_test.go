package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/sqlite"
)

// TestBench_ShortJSON runs `gateway bench -o json --short` as the test suite's setting: its
// own gateway, double and link; every measurement present and sane, and the drains ordered as
// the protocols predict (the receiver cheapest in requests, time and bytes per edit).
func TestBench_ShortJSON(t *testing.T) {
	t.Chdir(t.TempDir())
	out, errOut, code := runMain(t, "bench", "-o", "json", "--short")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "bench: drain receiver") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	var rep BenchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Target != "self-contained" || !rep.Short || rep.Machine.CPUs < 1 || rep.Link != "2mbit,100ms" {
		t.Errorf("report head: %+v", rep)
	}
	names := map[string]BenchRPC{}
	for _, r := range rep.RPC {
		names[r.Name] = r
		if r.Requests < 10 || r.Errors != 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.PerSecond <= 0 || r.Peers != 2 {
			t.Errorf("rpc %s: %+v", r.Name, r)
		}
	}
	for _, n := range []string{"get", "allDocs (20 rows)", "put (durable)"} {
		if _, ok := names[n]; !ok {
			t.Errorf("no %q measurement: %+v", n, rep.RPC)
		}
	}
	if w := names["put (durable)"]; !w.Durable || w.VsGet <= 1 {
		t.Errorf("durable writes: %+v (a commit to disk costs more than a keyed read)", w)
	}
	if len(rep.Drains) != 3 {
		t.Fatalf("drains: %+v", rep.Drains)
	}
	recv, stock, jio := rep.Drains[0], rep.Drains[1], rep.Drains[2]
	if recv.Mode != "receiver" || stock.Mode != "stock" || jio.Mode != "jio" {
		t.Fatalf("drain modes: %s %s %s", recv.Mode, stock.Mode, jio.Mode)
	}
	for _, d := range rep.Drains {
		if d.Sent == 0 || d.Seconds <= 0 || d.BytesUp == 0 || d.BytesDown == 0 || d.Requests == 0 {
			t.Errorf("drain %s: %+v", d.Mode, d)
		}
	}
	// 100 edits fit in one or two receiver batches; stock and jIO cost requests per edit.
	if recv.Requests > 3 || stock.Requests < stock.Sent || jio.Requests < 3*jio.Sent {
		t.Errorf("requests: receiver %d for %d, stock %d for %d, jio %d for %d", recv.Requests, recv.Sent,
			stock.Requests, stock.Sent, jio.Requests, jio.Sent)
	}
	if stock.TimeVsReceiver <= 1 || jio.TimeVsReceiver <= stock.TimeVsReceiver || jio.BytesVsReceiver <= 1 {
		t.Errorf("ratios: stock %.1f× time, jio %.1f× time, %.1f× bytes", stock.TimeVsReceiver, jio.TimeVsReceiver, jio.BytesVsReceiver)
	}
	// The everyday drains: every write delivered, each against its floor.
	if len(rep.Everyday) != 2 {
		t.Fatalf("everyday drains: %+v", rep.Everyday)
	}
	for _, d := range rep.Everyday {
		if d.Sent != d.Edits || d.Edits != 100 || d.BytesUp == 0 || d.Floor <= 0 || d.VsFloor < 1 {
			t.Errorf("everyday %s: %+v (a drain cannot beat the link's floor)", d.Mode, d)
		}
	}
	// The backlog drain: drained through the faults, the peers' figures with the uplink
	// idle and while it drained.
	b := rep.Backlog
	if b == nil || b.Entries != 1000 || b.PerSecond <= 0 || b.Cores <= 0 || b.Batches == 0 || len(b.Idle) != 2 || len(b.Draining) != 2 {
		t.Fatalf("backlog: %+v", b)
	}
	for _, r := range append(b.Idle, b.Draining...) {
		if r.Requests == 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms {
			t.Errorf("backlog %s: %+v", r.Name, r)
		}
	}
}

// TestBench_ReadOnlyAgainstAGateway measures a running gateway through --url: reads only,
// nothing queued for ERP5.
func TestBench_ReadOnlyAgainstAGateway(t *testing.T) {
	t.Chdir(t.TempDir())
	s := mustStartServer(t, t.TempDir())
	ctx := context.Background()
	var lines []string
	for i := range 30 {
		b, _ := json.Marshal(map[string]any{"id": "person_module/" + string(rune('a'+i%26)) + string(rune('0'+i/26)),
			"doc": map[string]any{"portal_type": "Person", "title": "Person " + string(rune('a'+i%26))}})
		lines = append(lines, string(b))
	}
	if _, err := s.DB.Import(ctx, strings.NewReader(strings.Join(lines, "\n")), sqlite.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	code, err := sqlite.NewPeerService(s.DB).CreateInvite(ctx, "bench", "supervisor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := pairOnly(s, code)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, exit := runMain(t, "bench", "-o", "json", "--url", s.URL(), "--token", creds.Token,
		"--peers", "2", "--duration", "300ms", "--count", "2")
	if exit != 0 {
		t.Fatalf("bench --url: exit %d: %s", exit, errOut)
	}
	var rep BenchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Target != s.URL() || rep.Docs != 30 || len(rep.Drains) != 0 || len(rep.RPC) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	for _, r := range rep.RPC {
		if r.Durable || r.Requests == 0 || r.Errors != 0 {
			t.Errorf("%+v", r)
		}
	}
	counts, err := s.DB.OutboxCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("the bench queued %d %s entries on a live gateway", n, st)
		}
	}
}

func TestBench_UsageErrors(t *testing.T) {
	for _, argv := range [][]string{
		{"bench", "-o", "yaml"},
		{"bench", "--url", "http://127.0.0.1:1/"},
		{"bench", "--peers", "0"},
		{"bench", "--link", "fast"},
		{"bench", "--only", "everything"},
		{"bench", "--url", "http://127.0.0.1:1/", "--token", "t", "--only", "drain"},
	} {
		_, errOut, code := runMain(t, argv...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", argv, code, errOut)
		}
	}
}
