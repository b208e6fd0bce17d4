package tailnet

import (
	"expvar"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's counters; they are read at scrape time by the
// collector returned from [Server.Collectors].
type metrics struct {
	s           *Server
	streams     atomic.Int64
	mapFull     atomic.Int64
	mapDelta    atomic.Int64
	mapKeep     atomic.Int64
	derpRefused atomic.Int64
	derpVars    expvar.Var // derpserver's metrics set, nil without DERP
}

func newMetrics(s *Server) *metrics { return &metrics{s: s} }

func (m *metrics) mapSent(typ string) {
	switch typ {
	case "full":
		m.mapFull.Add(1)
	case "delta":
		m.mapDelta.Add(1)
	default:
		m.mapKeep.Add(1)
	}
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Nodes counts known nodes by kind; Online those with a map stream.
	Nodes, Online map[Kind]int
	// MapResponses counts map messages sent by type: "full", "delta",
	// "keepalive".
	MapResponses map[string]int64
	// DERPClients is the number of connected DERP clients.
	DERPClients int64
	// DERPBytesReceived and DERPBytesSent count relayed bytes.
	DERPBytesReceived, DERPBytesSent int64
	// DERPRefused counts DERP connections refused by admission control.
	DERPRefused int64
	// STUNRequests counts STUN binding requests received (and answered).
	STUNRequests int64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	m := s.metrics
	st := Stats{
		Nodes:  map[Kind]int{},
		Online: map[Kind]int{},
		MapResponses: map[string]int64{
			"full":      m.mapFull.Load(),
			"delta":     m.mapDelta.Load(),
			"keepalive": m.mapKeep.Load(),
		},
		DERPRefused: m.derpRefused.Load(),
	}
	s.mu.RLock()
	for _, n := range s.nodes {
		st.Nodes[n.ident.Kind]++
		if n.online() {
			st.Online[n.ident.Kind]++
		}
	}
	s.mu.RUnlock()
	if g, ok := m.derpVars.(interface{ Get(string) expvar.Var }); ok {
		st.DERPClients = expvarInt(g.Get("gauge_current_connections"))
		st.DERPBytesReceived = expvarInt(g.Get("bytes_received"))
		st.DERPBytesSent = expvarInt(g.Get("bytes_sent"))
	}
	if s.stun != nil {
		st.STUNRequests = s.stun.Requests()
	}
	return st
}

func expvarInt(v expvar.Var) int64 {
	if i, ok := v.(*expvar.Int); ok {
		return i.Value()
	}
	return 0
}

var (
	descNodes        = prometheus.NewDesc("coder_tailnet_nodes", "Tailnet nodes known to the control server.", []string{"kind", "online"}, nil)
	descMapResponses = prometheus.NewDesc("coder_tailnet_coordination_updates_sent_total", "Map messages sent to nodes.", []string{"type"}, nil)
	descDERPClients  = prometheus.NewDesc("coder_tailnet_derp_clients", "Connected DERP clients.", nil, nil)
	descDERPBytes    = prometheus.NewDesc("coder_tailnet_derp_bytes_total", "Bytes through the embedded DERP relay.", []string{"direction"}, nil)
	descDERPRefused  = prometheus.NewDesc("coder_tailnet_derp_refused_total", "DERP connections refused by admission control.", nil, nil)
	descSTUN         = prometheus.NewDesc("coder_tailnet_stun_requests_total", "STUN binding requests answered.", nil, nil)
)

type collector struct{ s *Server }

// Collectors returns Prometheus collectors for the server's metrics: nodes
// by kind, coordination updates sent, DERP clients, bytes and refusals,
// and STUN requests. Register them on the deployment's registry.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{collector{s}}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descMapResponses, descDERPClients, descDERPBytes, descDERPRefused, descSTUN} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, k := range []Kind{KindAgent, KindClient, KindServer, KindProxy} {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(st.Online[k]), string(k), "true")
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(st.Nodes[k]-st.Online[k]), string(k), "false")
	}
	for typ, v := range st.MapResponses {
		ch <- prometheus.MustNewConstMetric(descMapResponses, prometheus.CounterValue, float64(v), typ)
	}
	ch <- prometheus.MustNewConstMetric(descDERPClients, prometheus.GaugeValue, float64(st.DERPClients))
	ch <- prometheus.MustNewConstMetric(descDERPBytes, prometheus.CounterValue, float64(st.DERPBytesReceived), "received")
	ch <- prometheus.MustNewConstMetric(descDERPBytes, prometheus.CounterValue, float64(st.DERPBytesSent), "sent")
	ch <- prometheus.MustNewConstMetric(descDERPRefused, prometheus.CounterValue, float64(st.DERPRefused))
	ch <- prometheus.MustNewConstMetric(descSTUN, prometheus.CounterValue, float64(st.STUNRequests))
}
