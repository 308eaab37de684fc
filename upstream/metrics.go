package upstream

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the uplink's Prometheus collectors, named gateway_upstream_*. Create them with
// NewMetrics and set Uplink.Metrics; a nil *Metrics records nothing.
type Metrics struct {
	Requests  *prometheus.CounterVec // by method and HTTP status ("0" without a response)
	Bytes     *prometheus.CounterVec // by direction: up, down
	Entries   *prometheus.CounterVec // settled entries by outcome state
	Batches   *prometheus.CounterVec // batches sent by mode
	BatchSize prometheus.Histogram   // compressed bytes per batch
	LinkState prometheus.Gauge       // 0 unknown, 1 up, 2 degraded, 3 down
	ClockSkew prometheus.Gauge       // ERP5's clock minus ours, seconds
	Budget    prometheus.Gauge       // bytes left of the daily budget (-1 for none)
	Queue     *prometheus.GaugeVec   // outbox entries by state, at the last round
	RoundTime prometheus.Histogram   // seconds per uplink round that sent something
	Alarms    *prometheus.GaugeVec   // 1 while an alarm of the kind is raised
	Paused    prometheus.Gauge       // 1 while the uplink is paused (seq_reused)
}

// NewMetrics creates the collectors and registers them with reg (nil registers nothing).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_requests_total", Help: "Requests to ERP5 by method and status (0: no response).",
		}, []string{"method", "status"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_bytes_total", Help: "Bytes on the ERP5 link, TLS and HTTP framing included.",
		}, []string{"direction"}),
		Entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_entries_total", Help: "Outbox entries settled by the uplink, by resulting state.",
		}, []string{"state"}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_batches_total", Help: "Batches (receiver) or writes (stock) sent, by mode.",
		}, []string{"mode"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_upstream_batch_bytes", Help: "Compressed size of the batches sent.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 8),
		}),
		LinkState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_upstream_link_state", Help: "Link state: 0 unknown, 1 up, 2 degraded, 3 down.",
		}),
		ClockSkew: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_upstream_clock_skew_seconds", Help: "ERP5's clock minus the gateway's, from the Date header.",
		}),
		Budget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_upstream_budget_remaining_bytes", Help: "Bytes left of today's upstream.daily_budget (-1: no budget).",
		}),
		Queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_upstream_outbox_entries", Help: "Outbox entries by state, as of the uplink's last round.",
		}, []string{"state"}),
		RoundTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_upstream_round_seconds", Help: "Duration of uplink rounds that sent something.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 10),
		}),
		Alarms: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_upstream_alarm", Help: "1 while an uplink alarm of the kind is raised (seq_reused, unauthorized, forbidden, budget, ...).",
		}, []string{"kind"}),
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_upstream_paused", Help: "1 while the uplink is paused by an alarm (resume with gateway sync resume).",
		}),
	}
	if reg != nil {
		for _, c := range m.collectors() {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Requests, m.Bytes, m.Entries, m.Batches, m.BatchSize, m.LinkState,
		m.ClockSkew, m.Budget, m.Queue, m.RoundTime, m.Alarms, m.Paused}
}

func (m *Metrics) request(method string, status int) {
	if m != nil {
		m.Requests.WithLabelValues(method, strconv.Itoa(status)).Inc()
	}
}

func (m *Metrics) entries(state string, n int) {
	if m != nil && n > 0 {
		m.Entries.WithLabelValues(state).Add(float64(n))
	}
}

func (m *Metrics) batch(mode string, size int) {
	if m != nil {
		m.Batches.WithLabelValues(mode).Inc()
		if size > 0 {
			m.BatchSize.Observe(float64(size))
		}
	}
}

// alarmState records the raised alarms and the pause.
func (m *Metrics) alarmState(kinds []string, cleared string, paused bool) {
	if m == nil {
		return
	}
	if cleared != "" {
		m.Alarms.WithLabelValues(cleared).Set(0)
	}
	for _, k := range kinds {
		m.Alarms.WithLabelValues(k).Set(1)
	}
	v := 0.0
	if paused {
		v = 1
	}
	m.Paused.Set(v)
}
