package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sitesync.example/gateway"
)

// scrape fetches url and parses it with the Prometheus text parser.
func scrape(tb testing.TB, url string) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the family's series whose labels include want; ok is false
// when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics_Parse(t *testing.T) {
	s := mustStartServer(t, t.TempDir())
	sup, _ := mustPairClient(t, s, "office-1", "supervisor")
	clerk, _ := mustPairClient(t, s, "desk-1", "clerk")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Three writes wait in the outbox (no uplink is configured); one get succeeds, one is
	// not found; the clerk is refused a product edit by the policy.
	var ids []string
	for _, title := range []string{"Ana Lima", "Rui Costa", "Eva Dias"} {
		ids = append(ids, call(t, sup, "post", map[string]any{"doc": map[string]any{"portal_type": "Person", "title": title}})["id"].(string))
	}
	call(t, sup, "get", map[string]any{"id": ids[0]})
	if d := callErr(t, sup, "get", map[string]any{"id": "person_module/404"}); d.Status != 404 {
		t.Fatalf("get missing: %+v", d)
	}
	d := callErr(t, clerk, "post", map[string]any{"doc": map[string]any{"portal_type": "Product", "title": "Drill"}})
	if d.Status != 403 {
		t.Fatalf("clerk post Product: %+v", d)
	}
	if err := clerk.Call(ctx, "status", nil, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the queued-at times are in the past

	fams := scrape(t, s.URL()+"metrics")
	for name, f := range fams {
		if !strings.HasPrefix(name, "gateway_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			t.Errorf("metric %s lacks the gateway_ prefix", name)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"gateway_rpc_requests_total", map[string]string{"method": "post", "status": "200"}, eq(3), "3"},
		{"gateway_rpc_requests_total", map[string]string{"method": "get", "status": "200"}, eq(1), "1"},
		{"gateway_rpc_requests_total", map[string]string{"method": "get", "status": "404"}, eq(1), "1"},
		{"gateway_rpc_requests_total", map[string]string{"method": "post", "status": "403"}, eq(1), "1"},
		{"gateway_rpc_request_duration_seconds", map[string]string{"method": "post"}, eq(4), "4 observations"},
		{"gateway_policy_denials_total", map[string]string{"reason": d.Reason}, eq(1), "1"},
		{"gateway_policy_denials_total", map[string]string{"reason": gateway.EINTERNAL}, nil, "absent"},
		{"gateway_outbox_entries", map[string]string{"state": "pending"}, eq(3), "3"},
		{"gateway_outbox_entries", map[string]string{"state": "dead"}, eq(0), "0"},
		{"gateway_outbox_oldest_entry_age_seconds", map[string]string{"state": "pending"}, pos, "> 0"},
		{"gateway_outbox_oldest_pending_age_seconds", nil, pos, "> 0"},
		{"gateway_peers_online", nil, eq(2), "2"},
		{"gateway_peers_paired", nil, eq(2), "2"},
		{"gateway_channels_open", nil, eq(2), "2"},
		{"gateway_replica_documents", map[string]string{"portal_type": "Person"}, eq(3), "3"},
		{"gateway_database_bytes", map[string]string{"file": "main"}, pos, "> 0"},
		{"gateway_disk_free_bytes", nil, pos, "> 0"},
		{"gateway_build_info", map[string]string{"version": Version}, eq(1), "1"},
	}
	for _, c := range checks {
		v, found := sample(fams, c.name, c.labels)
		switch {
		case c.ok == nil && found:
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		case c.ok != nil && !found:
			t.Errorf("%s%v missing", c.name, c.labels)
		case c.ok != nil && !c.ok(v):
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
	// The one refusal is counted once, under the policy's reason word.
	var denials float64
	for _, m := range fams["gateway_policy_denials_total"].GetMetric() {
		denials += m.GetCounter().GetValue()
	}
	if denials != 1 || d.Reason == "" {
		t.Errorf("policy denials = %v (reason %q), want 1", denials, d.Reason)
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

func pos(v float64) bool { return v > 0 }

func TestDenialReason(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{gateway.ReasonErrorf(gateway.EFORBIDDEN, "type_not_allowed", "no"), "type_not_allowed"},
		{gateway.Errorf(gateway.ERATELIMITED, "slow down"), gateway.ERATELIMITED},
		{&gateway.Error{Code: gateway.EINVALID, Message: "bad", Fields: map[string]string{"email": "not an email"}}, "schema"},
		{gateway.Errorf(gateway.EINVALID, "params: bad json"), ""},
		{gateway.Errorf(gateway.ENOTFOUND, "gone"), ""},
		{errors.New("disk on fire"), ""},
	} {
		if got := denialReason(tt.err); got != tt.want {
			t.Errorf("denialReason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
