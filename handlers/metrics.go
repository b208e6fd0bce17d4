package handlers

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewaydev/coder/store"
)

type metrics struct {
	requests        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	agentsConnected prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, db *store.DB) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coderd", Subsystem: "api", Name: "requests_processed_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "coderd", Subsystem: "api", Name: "request_latencies_seconds",
			Help:    "Latency of HTTP requests by route pattern and method (websockets and event streams excluded).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		agentsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coderd", Name: "agents_connected",
			Help: "Workspace agents connected to this server.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.agentsConnected, newPoolCollector(db))
	}
	return m
}

// instrument counts requests by the mux pattern that matched them, so that
// label values stay bounded whatever paths clients send.
func (m *metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(sw, r)
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Inc()
		// Websockets and event streams live for minutes: their duration is
		// not a latency.
		if r.Header.Get("Upgrade") == "" && !strings.HasSuffix(route, "/events") {
			m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Hijack and Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker for handlers that assert it (the control
// protocol and DERP).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusSwitchingProtocols, true
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

// poolCollector reports pgx pool statistics.
type poolCollector struct {
	db                                *store.DB
	total, idle, acquired, maxConns   *prometheus.Desc
	acquireCount, acquireWaitDuration *prometheus.Desc
}

func newPoolCollector(db *store.DB) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("coderd_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		db:                  db,
		total:               d("connections", "Open database connections."),
		idle:                d("idle_connections", "Idle database connections."),
		acquired:            d("acquired_connections", "Database connections in use."),
		maxConns:            d("max_connections", "Maximum database connections."),
		acquireCount:        d("acquires_total", "Connections acquired from the pool."),
		acquireWaitDuration: d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.idle, c.acquired, c.maxConns, c.acquireCount, c.acquireWaitDuration} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.maxConns, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquireCount, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.acquireWaitDuration, prometheus.CounterValue, s.AcquireDuration().Seconds())
}
