package handlers

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/web"
)

// How long a measured path or DERP report is shown before it is measured
// again (in the background: pages never wait for a measurement).
const (
	pathTTL      = 5 * time.Second
	netcheckTTL  = time.Minute
	probeTimeout = 5 * time.Second
)

// netStatus caches what the server's node measures: the path to each agent
// and the DERP/STUN report.
type netStatus struct {
	mu       sync.Mutex
	paths    map[string]pathEntry // by agent id
	report   *tailnet.Report
	reportAt time.Time
	checking bool
}

type pathEntry struct {
	at       time.Time
	measured bool
	probing  bool
	res      tailnet.PingResult
	err      error
}

// agentPath returns what is known of the server's path to an agent, and
// starts a new measurement when it is stale.
func (a *API) agentPath(agentID string) (pathEntry, bool) {
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	if a.net.paths == nil {
		a.net.paths = map[string]pathEntry{}
	}
	e := a.net.paths[agentID]
	if !e.probing && time.Since(e.at) > pathTTL && a.track() {
		e.probing = true
		a.net.paths[agentID] = e
		go func() {
			defer a.wg.Done()
			res, err := a.pingAgent(agentID)
			a.net.mu.Lock()
			a.net.paths[agentID] = pathEntry{at: time.Now(), measured: true, res: res, err: err}
			a.net.mu.Unlock()
		}()
	}
	return e, e.measured
}

func (a *API) pingAgent(agentID string) (tailnet.PingResult, error) {
	a.node.mu.Lock()
	n := a.node.node
	a.node.mu.Unlock()
	if n == nil {
		return tailnet.PingResult{}, fmt.Errorf("the server's tailnet node is not running")
	}
	ctx, cancel := context.WithTimeout(a.ctx, probeTimeout)
	defer cancel()
	return n.Ping(ctx, tailnet.AddrOf(tailnet.KindAgent, agentID))
}

// regionCode names a DERP region by its code, or its id.
func (a *API) regionCode(id int) string {
	if a.derpMap != nil {
		if r := a.derpMap.Regions[id]; r != nil {
			return r.RegionCode
		}
	}
	return fmt.Sprint(id)
}

// describePath renders a ping result the way `coder ping` does.
func (a *API) describePath(agentID string) (conn, derp string) {
	if a.tailnet == nil {
		return "", ""
	}
	for _, n := range a.tailnet.Nodes() {
		if n.Identity.Kind == tailnet.KindAgent && n.Identity.ID == agentID && n.HomeDERP != 0 {
			derp = "DERP(" + a.regionCode(n.HomeDERP) + ")"
		}
	}
	if down := a.serverNodeDown(false); down != "" {
		return down, derp
	}
	e, ok := a.agentPath(agentID)
	switch {
	case !ok:
		conn = "measuring…"
	case e.err != nil:
		conn = "unreachable from the server"
	case e.res.Direct:
		conn = fmt.Sprintf("direct (p2p) via %s · %s", e.res.Endpoint, latencyBucket(e.res.Latency))
	default:
		conn = fmt.Sprintf("relayed via DERP(%s) · %s", e.res.DERPRegionCode, latencyBucket(e.res.Latency))
	}
	return conn, derp
}

// latencyBucket rounds a latency for the live part of the workspace page,
// which is re-sent whenever its text changes: exact figures would change
// every few seconds.
func latencyBucket(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "< 1ms"
	case d < 10*time.Millisecond:
		return "< 10ms"
	case d < 50*time.Millisecond:
		return "< 50ms"
	case d < 100*time.Millisecond:
		return "< 100ms"
	}
	return fmt.Sprintf("~%dms", d.Round(100*time.Millisecond).Milliseconds())
}

// netcheckReport returns the last DERP/STUN report, starting a new one when
// it is stale. nil means none yet.
func (a *API) netcheckReport() (*tailnet.Report, time.Time) {
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	if a.derpMap != nil && !a.net.checking && time.Since(a.net.reportAt) > netcheckTTL && a.track() {
		a.net.checking = true
		go func() {
			defer a.wg.Done()
			ctx, cancel := context.WithTimeout(a.ctx, 20*time.Second)
			defer cancel()
			rep, err := tailnet.Netcheck(ctx, a.derpMap)
			a.net.mu.Lock()
			defer a.net.mu.Unlock()
			a.net.checking = false
			a.net.reportAt = time.Now()
			if err != nil {
				a.logger.Warn("netcheck", "err", err)
				a.net.report = &tailnet.Report{}
				return
			}
			a.net.report = &rep
		}()
	}
	return a.net.report, a.net.reportAt
}

// derpRegions describes the DERP map and its measured health for the
// deployment page.
func (a *API) derpRegions() ([]web.DERPRegion, string) {
	if a.derpMap == nil {
		return nil, "The tailnet is off."
	}
	rep, at := a.netcheckReport()
	lat := map[int]time.Duration{}
	stun := "measuring…"
	if rep != nil {
		for _, r := range rep.Regions {
			lat[r.RegionID] = r.Latency
		}
		if rep.UDP {
			stun = "answers (UDP works)"
		} else {
			stun = "no answer: clients will relay through DERP"
		}
		stun += " · measured " + web.Since(at)
	}
	var out []web.DERPRegion
	for id, r := range a.derpMap.Regions {
		row := web.DERPRegion{ID: id, Code: r.RegionCode, Name: r.RegionName, Health: "measuring…"}
		var hosts []string
		for _, n := range r.Nodes {
			h := n.HostName
			if n.STUNPort > 0 {
				h += fmt.Sprintf(" (STUN :%d)", n.STUNPort)
			}
			hosts = append(hosts, h)
		}
		row.Nodes = strings.Join(hosts, ", ")
		if rep != nil {
			if d, ok := lat[id]; ok {
				row.Health, row.Latency = "healthy", sdk.FormatLatency(d)
			} else {
				row.Health = "unreachable"
			}
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, stun
}

// serveDERPMap gives CLIs the DERP map, for `coder netcheck`.
func (a *API) serveDERPMap(w http.ResponseWriter, r *http.Request) error {
	if a.derpMap == nil {
		return &HTTPError{Code: http.StatusNotFound, Msg: "The tailnet is off on this server."}
	}
	writeJSON(w, http.StatusOK, a.derpMap)
	return nil
}
