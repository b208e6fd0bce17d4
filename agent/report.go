package agent

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
)

// reports holds what the agent tells the server besides heartbeats: the
// listening ports and the apps' health. Each has a version that goes up on
// every change, so that the control connection sends only what changed
// since it last sent (and everything on a new connection). Guarded by
// Agent.mu.
type reports struct {
	ports     []sdk.ListeningPort
	portsVer  uint64
	health    map[string]string
	healthVer uint64
}

// sentVersions is what one control connection has sent.
type sentVersions struct {
	ports, health uint64
}

// reportChanged wakes the control connection (a buffered channel of one:
// wakes coalesce).
func (a *Agent) reportChanged() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// setPorts records the listening ports, if they changed.
func (a *Agent) setPorts(ports []sdk.ListeningPort) {
	a.mu.Lock()
	if a.reports.portsVer > 0 && slices.Equal(a.reports.ports, ports) {
		a.mu.Unlock()
		return
	}
	a.reports.ports = ports
	a.reports.portsVer++
	a.mu.Unlock()
	a.reportChanged()
}

// ListeningPorts returns the TCP ports listening in the workspace as the
// agent last read them (every Options.PortScanInterval), by port.
func (a *Agent) ListeningPorts() []sdk.ListeningPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reports.ports)
}

// AppHealth returns the health of each app with a health check, by slug.
func (a *Agent) AppHealth() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.reports.health)
}

// setHealth records the health of the app slug; replace, when not nil,
// replaces every app's (a new manifest).
func (a *Agent) setHealth(slug, state string, replace map[string]string) {
	a.mu.Lock()
	switch {
	case replace != nil:
		a.reports.health = replace
	case a.reports.health[slug] == state:
		a.mu.Unlock()
		return
	default:
		h := maps.Clone(a.reports.health)
		if h == nil {
			h = map[string]string{}
		}
		h[slug] = state
		a.reports.health = h
	}
	a.reports.healthVer++
	a.mu.Unlock()
	a.reportChanged()
}

// sendReports writes to conn what changed since sent, and updates sent.
// The caller is the connection's only writer.
func (a *Agent) sendReports(conn *websocket.Conn, sent *sentVersions) error {
	a.mu.Lock()
	r := a.reports
	a.mu.Unlock()
	var msgs []any
	if r.portsVer != sent.ports {
		ports := r.ports
		if ports == nil {
			ports = []sdk.ListeningPort{}
		}
		msgs = append(msgs, sdk.AgentListeningPorts{Type: sdk.AgentMessageListeningPorts, Ports: ports})
	}
	if r.healthVer != sent.health {
		h := r.health
		if h == nil {
			h = map[string]string{}
		}
		msgs = append(msgs, sdk.AgentAppHealth{Type: sdk.AgentMessageAppHealth, Apps: h})
	}
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
			return fmt.Errorf("send report: %w", err)
		}
	}
	sent.ports, sent.health = r.portsVer, r.healthVer
	return nil
}
