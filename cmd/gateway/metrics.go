package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// scrapeTimeout bounds the database reads of one /metrics scrape: a scrape that waits behind
// a long write must not pile up.
const scrapeTimeout = 3 * time.Second

// rpcMetrics count the data channels' requests (gateway_rpc_*) and the policy's refusals
// (gateway_policy_denials_total).
type rpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	denials  *prometheus.CounterVec
}

// newRPCMetrics creates the RPC collectors and registers them with reg.
func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rpc_requests_total",
			Help: "Data-channel RPC requests by method and answer status (200, or the error's HTTP-like status).",
		}, []string{"method", "status"}),
		// Buckets from 50 µs (a keyed get) to 10 s (a durable write waiting behind a
		// checkpoint on a slow disk).
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_rpc_request_duration_seconds",
			Help:    "Time to answer a data-channel RPC request, by method (policy, replica and commit; not the channel).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14),
		}, []string{"method"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_policy_denials_total",
			Help: "Requests the policy refused, by reason (denied, type_not_allowed, field_not_writable, rate_limited, schema…).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.duration, m.denials)
	return m
}

// instrument returns svc with every call counted and timed. Method names are the fixed set
// the LAN server lets through (it refuses unknown methods before calling), so the label's
// cardinality is bounded.
func (m *rpcMetrics) instrument(svc lan.Service) lan.Service {
	return lan.ServiceFunc(func(ctx context.Context, peer gateway.Actor, method string, params json.RawMessage) (any, error) {
		start := time.Now()
		res, err := svc.Call(ctx, peer, method, params)
		m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
		code := gateway.ErrorCode(err)
		m.requests.WithLabelValues(method, strconv.Itoa(gateway.Status(code))).Inc()
		if reason := denialReason(err); reason != "" {
			m.denials.WithLabelValues(reason).Inc()
		}
		return res, err
	})
}

// denialReason returns the reason word when err is a refusal by the policy: a denial
// (EFORBIDDEN, by its reason), a rate limit, or a document that fails its schema (EINVALID
// with per-field messages). Anything else is "".
func denialReason(err error) string {
	switch gateway.ErrorCode(err) {
	case gateway.EFORBIDDEN, gateway.ERATELIMITED:
		return gateway.ErrorReason(err)
	case gateway.EINVALID:
		if e, ok := err.(*gateway.Error); ok && len(e.Fields) > 0 {
			return "schema"
		}
	}
	return ""
}

// batchMetrics measure what compression buys on the uplink: every batch posted to the
// receiver is counted twice, as sent and as its plain JSON.
type batchMetrics struct {
	bytes *prometheus.CounterVec
	ratio prometheus.Gauge
}

func newBatchMetrics(reg prometheus.Registerer) *batchMetrics {
	m := &batchMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_batch_body_bytes_total",
			Help: "Bodies of the batches posted to the receiver: as sent (compressed) and as plain JSON.",
		}, []string{"form"}),
		ratio: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_upstream_compression_ratio",
			Help: "Compressed size over plain size of the last batch posted to the receiver.",
		}),
	}
	reg.MustRegister(m.bytes, m.ratio)
	return m
}

// wrap returns rt with batch bodies measured. Only POSTs to the receiver's batch script with
// a Content-Encoding are looked at; their body, already in memory, is decompressed once more
// to learn its plain size (a batch is ~32 KB compressed: the cost is negligible next to the
// link's).
func (m *batchMetrics) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		enc := req.Header.Get("Content-Encoding")
		if req.Method != http.MethodPost || enc == "" || req.Body == nil || !strings.Contains(req.URL.Path, upstream.BatchPath) {
			return rt.RoundTrip(req)
		}
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		if plain, err := upstream.Decompress(enc, body); err == nil && len(plain) > 0 {
			m.bytes.WithLabelValues("compressed").Add(float64(len(body)))
			m.bytes.WithLabelValues("plain").Add(float64(len(plain)))
			m.ratio.Set(float64(len(body)) / float64(len(plain)))
		}
		return rt.RoundTrip(req)
	})
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// stateCollector reads, at each scrape, what the gateway holds: the outbox by state and the
// age of each state's oldest entry, peers and channels, the replica's documents and each
// scope's freshness, the database's size and the free disk.
type stateCollector struct {
	s       *Server
	db      *sqlite.DB
	dbPath  string
	dataDir string
	version string
	started time.Time

	outboxEntries *prometheus.Desc
	oldest        *prometheus.Desc
	oldestPending *prometheus.Desc
	peersOnline   *prometheus.Desc
	channels      *prometheus.Desc
	peersPaired   *prometheus.Desc
	documents     *prometheus.Desc
	freshAge      *prometheus.Desc
	scopeComplete *prometheus.Desc
	pulledRows    *prometheus.Desc
	lastPull      *prometheus.Desc
	dbBytes       *prometheus.Desc
	diskFree      *prometheus.Desc
	diskSize      *prometheus.Desc
	buildInfo     *prometheus.Desc
	startTime     *prometheus.Desc
	scrapeErrors  prometheus.Counter
}

// newStateCollector returns a collector over the server's database (its file at dbPath, in
// dataDir), LAN server and downlink, each read at scrape time (absent parts are left out).
func newStateCollector(s *Server, dbPath, dataDir string) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		s: s, db: s.DB, dbPath: dbPath, dataDir: dataDir, version: Version, started: time.Now(),
		outboxEntries: d("gateway_outbox_entries", "Outbox entries by open state (pending, inflight, deferred, uncertain, held, dead, conflict).", "state"),
		oldest:        d("gateway_outbox_oldest_entry_age_seconds", "Age of the oldest entry in each open state that has entries.", "state"),
		oldestPending: d("gateway_outbox_oldest_pending_age_seconds", "Age of the oldest entry still waiting to reach ERP5 (pending, inflight, deferred, uncertain); 0 when none."),
		peersOnline:   d("gateway_peers_online", "Peers with at least one open data channel."),
		channels:      d("gateway_channels_open", "Open data channels."),
		peersPaired:   d("gateway_peers_paired", "Paired peers (not revoked)."),
		documents:     d("gateway_replica_documents", "Live documents in the replica, by portal type.", "portal_type"),
		freshAge:      d("gateway_replica_fresh_age_seconds", "Time since the replica last heard from ERP5 for each downlink scope (the downlink's lag).", "scope"),
		scopeComplete: d("gateway_replica_scope_complete", "1 once a scope's initial sync finished.", "scope"),
		pulledRows:    d("gateway_downlink_rows_total", "Documents the downlink received from ERP5 since the start, by scope.", "scope"),
		lastPull:      d("gateway_downlink_last_pull_age_seconds", "Time since the downlink's last completed pull."),
		dbBytes:       d("gateway_database_bytes", "Size of the database files: the main file and its write-ahead log.", "file"),
		diskFree:      d("gateway_disk_free_bytes", "Free bytes on the data directory's file system, as an unprivileged user sees them."),
		diskSize:      d("gateway_disk_size_bytes", "Size of the data directory's file system."),
		buildInfo:     d("gateway_build_info", "Always 1; the version label is the running build.", "version"),
		startTime:     d("gateway_start_time_seconds", "When serve started, Unix seconds."),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_metrics_scrape_errors_total",
			Help: "Database reads that failed while collecting metrics (the affected series are left out).",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.outboxEntries, c.oldest, c.oldestPending, c.peersOnline, c.channels,
		c.peersPaired, c.documents, c.freshAge, c.scopeComplete, c.pulledRows, c.lastPull, c.dbBytes, c.diskFree, c.diskSize, c.buildInfo, c.startTime} {
		ch <- d
	}
	c.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	now := time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.buildInfo, 1, c.version)
	gauge(c.startTime, float64(c.started.Unix()))

	if ob, err := readOutboxAges(ctx, c.db.Reader()); err == nil {
		var pending time.Time
		for _, s := range outbox.OpenStates {
			st := ob[s]
			gauge(c.outboxEntries, float64(st.Count), s)
			if st.Count > 0 {
				gauge(c.oldest, now.Sub(st.Oldest).Seconds(), s)
				if isWaiting(s) && (pending.IsZero() || st.Oldest.Before(pending)) {
					pending = st.Oldest
				}
			}
		}
		age := 0.0
		if !pending.IsZero() {
			age = now.Sub(pending).Seconds()
		}
		gauge(c.oldestPending, age)
	} else {
		c.scrapeErrors.Inc()
	}
	if l := c.s.LAN; l != nil {
		gauge(c.peersOnline, float64(len(l.OnlinePeers())))
		gauge(c.channels, float64(l.Channels()))
	}
	var paired int
	if err := c.db.Reader().QueryRowContext(ctx, `SELECT count(*) FROM peers WHERE revoked_at IS NULL`).Scan(&paired); err == nil {
		gauge(c.peersPaired, float64(paired))
	} else {
		c.scrapeErrors.Inc()
	}
	if docs, err := readReplicaCounts(ctx, c.db.Reader()); err == nil {
		for pt, n := range docs {
			gauge(c.documents, float64(n), pt)
		}
	} else {
		c.scrapeErrors.Inc()
	}
	if cursors, err := c.db.SyncCursors(ctx); err == nil {
		for name, cur := range cursors {
			complete := 0.0
			if cur.Complete {
				complete = 1
			}
			gauge(c.scopeComplete, complete, name)
			if !cur.FreshAt.IsZero() {
				gauge(c.freshAge, now.Sub(cur.FreshAt).Seconds(), name)
			}
		}
	} else {
		c.scrapeErrors.Inc()
	}
	if dl := c.s.Downlink; dl != nil {
		st := dl.Status()
		for _, sc := range st.Scopes {
			ch <- prometheus.MustNewConstMetric(c.pulledRows, prometheus.CounterValue, float64(sc.Rows), sc.Name)
		}
		if !st.LastPull.IsZero() {
			gauge(c.lastPull, now.Sub(st.LastPull).Seconds())
		}
	}
	main, wal := databaseSizes(c.dbPath)
	gauge(c.dbBytes, float64(main), "main")
	gauge(c.dbBytes, float64(wal), "wal")
	if free, size, err := diskSpace(c.dataDir); err == nil {
		gauge(c.diskFree, float64(free))
		gauge(c.diskSize, float64(size))
	}
	ch <- c.scrapeErrors
}

// isWaiting reports whether entries in state s still wait to reach ERP5 (the states of the
// oldest-pending age).
func isWaiting(s string) bool {
	switch s {
	case outbox.StatePending, outbox.StateInflight, outbox.StateDeferred, outbox.StateUncertain:
		return true
	}
	return false
}

// stateAge is how many open entries one state holds and when the oldest was queued.
type stateAge struct {
	Count  int
	Oldest time.Time
}

// readOutboxAges counts the open entries by state with each state's oldest creation time. The
// open rows have their own partial index, so this stays cheap however many done rows the
// table keeps.
func readOutboxAges(ctx context.Context, q *sql.DB) (map[string]stateAge, error) {
	rows, err := q.QueryContext(ctx, `SELECT state, count(*), min(created_at) FROM outbox WHERE open = 1 GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]stateAge{}
	for rows.Next() {
		var s, oldest string
		var n int
		if err := rows.Scan(&s, &n, &oldest); err != nil {
			return nil, err
		}
		t, _ := sqlite.ParseTime(oldest)
		out[s] = stateAge{Count: n, Oldest: t}
	}
	return out, rows.Err()
}

// readReplicaCounts counts the replica's live documents by portal type.
func readReplicaCounts(ctx context.Context, q *sql.DB) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT coalesce(portal_type, ''), count(*) FROM documents WHERE deleted = 0 GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var pt string
		var n int
		if err := rows.Scan(&pt, &n); err != nil {
			return nil, err
		}
		out[pt] = n
	}
	return out, rows.Err()
}

// databaseSizes returns the sizes of the database file and its write-ahead log (0 for a
// missing file).
func databaseSizes(path string) (main, wal int64) {
	if fi, err := os.Stat(path); err == nil {
		main = fi.Size()
	}
	if fi, err := os.Stat(path + "-wal"); err == nil {
		wal = fi.Size()
	}
	return main, wal
}

// diskSpace returns the bytes available to an unprivileged user and the size of the file
// system holding dir.
func diskSpace(dir string) (free, size int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
