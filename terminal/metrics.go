package terminal

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus collectors of the agent's [Server] and of the
// [Relay]. Create them with [NewMetrics] and register them with
// prometheus.Registerer.MustRegister(m): *Metrics is a prometheus.Collector.
// A nil *Metrics records nothing.
type Metrics struct {
	// Sessions is the number of open PTY sessions on the agent.
	Sessions prometheus.Gauge
	// Attaches is the number of connections attached to sessions on the
	// agent.
	Attaches prometheus.Gauge
	// Terminals is the number of browser websockets open through the relay.
	Terminals prometheus.Gauge
	// Bytes counts terminal bytes through the relay by direction: "in"
	// (browser input to the agent) and "out" (output to the browser).
	Bytes *prometheus.CounterVec

	bytesIn, bytesOut prometheus.Counter
}

// NewMetrics returns unregistered collectors named coder_terminal_*.
func NewMetrics() *Metrics {
	m := &Metrics{
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coder", Subsystem: "terminal", Name: "sessions",
			Help: "Open reconnecting PTY sessions on this agent.",
		}),
		Attaches: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coder", Subsystem: "terminal", Name: "attaches",
			Help: "Connections attached to PTY sessions on this agent.",
		}),
		Terminals: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coder", Subsystem: "terminal", Name: "open",
			Help: "Web terminals (browser websockets) open through this relay.",
		}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coder", Subsystem: "terminal", Name: "bytes_total",
			Help: "Terminal bytes relayed, by direction: in (browser input), out (output to the browser).",
		}, []string{"direction"}),
	}
	m.bytesIn = m.Bytes.WithLabelValues("in")
	m.bytesOut = m.Bytes.WithLabelValues("out")
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.Sessions.Describe(ch)
	m.Attaches.Describe(ch)
	m.Terminals.Describe(ch)
	m.Bytes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.Sessions.Collect(ch)
	m.Attaches.Collect(ch)
	m.Terminals.Collect(ch)
	m.Bytes.Collect(ch)
}

func (m *Metrics) addSessions(d float64) {
	if m != nil {
		m.Sessions.Add(d)
	}
}

func (m *Metrics) addAttaches(d float64) {
	if m != nil {
		m.Attaches.Add(d)
	}
}

func (m *Metrics) addTerminals(d float64) {
	if m != nil {
		m.Terminals.Add(d)
	}
}

func (m *Metrics) addIn(n int) {
	if m != nil && n > 0 {
		m.bytesIn.Add(float64(n))
	}
}

func (m *Metrics) addOut(n int) {
	if m != nil && n > 0 {
		m.bytesOut.Add(float64(n))
	}
}
