package apps

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the front door's Prometheus metrics: app requests by kind
// and status, response bytes, latency, open app websockets, and app
// tokens issued and refused. A nil *Metrics counts nothing. Register it
// with a prometheus.Registerer (it is a Collector).
type Metrics struct {
	requests      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	websockets    prometheus.Gauge
	tokensIssued  prometheus.Counter
	tokensRefused *prometheus.CounterVec
}

// NewMetrics returns the front door's metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "requests_total",
			Help: "Requests to workspace apps by kind (path, subdomain, port) and status code.",
		}, []string{"kind", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "response_bytes_total",
			Help: "Bytes of response bodies sent to browsers by workspace apps, by kind.",
		}, []string{"kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "request_duration_seconds",
			Help:    "Duration of requests to workspace apps by kind (websockets excluded).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "websockets_open",
			Help: "Websockets open through the app proxy.",
		}),
		tokensIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "tokens_issued_total",
			Help: "App tokens issued by the primary.",
		}),
		tokensRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coderd", Subsystem: "apps", Name: "tokens_refused_total",
			Help: "App tokens refused (forged, expired, revoked, for another app), by where they came from (cookie, query).",
		}, []string{"from"}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.bytes, m.latency, m.websockets, m.tokensIssued, m.tokensRefused}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// TokenIssued counts an app token issued.
func (m *Metrics) TokenIssued() {
	if m != nil {
		m.tokensIssued.Inc()
	}
}

// TokenRefused counts an app token refused, or a visitor refused one (from
// "issue"), by where it came from.
func (m *Metrics) TokenRefused(from string) {
	if m != nil {
		m.tokensRefused.WithLabelValues(from).Inc()
	}
}

// instrument serves h and counts it under kind.
func (m *Metrics) instrument(kind string, w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request)) {
	if m == nil {
		h(w, r)
		return
	}
	cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
	ws := isWebsocket(r)
	if ws {
		m.websockets.Inc()
		defer m.websockets.Dec()
	}
	start := time.Now()
	h(cw, r)
	m.requests.WithLabelValues(kind, strconv.Itoa(cw.code)).Inc()
	m.bytes.WithLabelValues(kind).Add(float64(cw.n))
	if !ws {
		m.latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
}

// countingWriter records a response's status and body size; Unwrap lets
// http.ResponseController reach Flush and Hijack beneath it.
type countingWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	n     int64
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 || code == http.StatusSwitchingProtocols {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
