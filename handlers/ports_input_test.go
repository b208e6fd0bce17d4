package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// TestAgentReportsBadInput: an agent (or whoever holds its token) that
// reports nonsense gets it dropped: ports below 9, duplicates, a NUL in a
// process name, more than sdk.MaxListeningPorts ports, health for an app
// without a check or in a made-up state, unknown message types and broken
// JSON. The agent stays connected and its valid reports are kept.
func TestAgentReportsBadInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "health", `provisioner: manual
agents:
  - name: main
    apps:
      - {slug: web, url: "http://localhost:8080", healthcheck: {url: "http://localhost:8080"}}
      - {slug: plain, url: "http://localhost:8081"}
`)
	w := createWorkspace(t, ts.Owner, "dev", "health")
	u := "ws" + strings.TrimPrefix(ts.URL.String(), "http") + sdk.AgentConnectPath
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{sdk.SessionTokenHeader: {w.Agents[0].Token}})
	if err != nil {
		t.Fatalf("dial agent connection: %v", err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(sdk.AgentHello{Version: "v1", OS: "linux", Arch: "amd64"}); err != nil {
		t.Fatal(err)
	}
	var m sdk.AgentManifest
	if err := conn.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	send := func(s string) {
		t.Helper()
		if err := conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatalf("send %q: %v", s, err)
		}
	}
	send(`not json`)
	send(`{"type":"from-the-future","x":1}`)
	send(`{"type":"listening_ports","ports":[{"port":70000}]}`) // not a uint16: dropped whole
	var many []string
	for p := 1000; p < 1000+sdk.MaxListeningPorts+50; p++ {
		many = append(many, fmt.Sprintf(`{"port":%d,"network":"tcp","process_name":"x"}`, p))
	}
	send(`{"type":"listening_ports","ports":[{"port":0},{"port":5,"process_name":"sshd"},{"port":8080,"process_name":"py\u0000thon"},{"port":8080,"process_name":"dup"},` + strings.Join(many, ",") + `]}`)
	send(`{"type":"app_health","apps":{"web":"exploded","plain":"healthy","ghost":"healthy"}}`)
	send(`{"type":"heartbeat"}`)

	testutil.Eventually(t, 15*time.Second, "cleaned ports stored", func() bool {
		ports, err := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
		return err == nil && len(ports) == sdk.MaxListeningPorts
	})
	ports, _ := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
	if _, ok := hasPort(ports, 8080); !ok {
		t.Errorf("port 8080 (the first valid one sent) not kept")
	}
	for i, p := range ports {
		if p.Port < sdk.MinListeningPort || strings.ContainsRune(p.ProcessName, 0) || (i > 0 && p.Port <= ports[i-1].Port) {
			t.Fatalf("bad port kept: %+v", p)
		}
		if p.Port == 8080 && p.ProcessName != "python" {
			t.Errorf("port 8080: process %q, want python (NUL removed, duplicate dropped)", p.ProcessName)
		}
	}
	h, err := ts.DB.AgentReportsByWorkspace(testContext(t), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := h[w.Agents[0].ID].Health; len(got) != 0 {
		t.Errorf("health kept from bad input: %v", got)
	}
	// Still connected, and a valid report is taken.
	send(`{"type":"app_health","apps":{"web":"healthy"}}`)
	testutil.Eventually(t, 15*time.Second, "valid health stored", func() bool {
		h, err := ts.DB.AgentReportsByWorkspace(testContext(t), w.ID)
		return err == nil && h[w.Agents[0].ID].Health["web"] == sdk.AppHealthHealthy
	})
	got, err := ts.Owner.Workspace(testContext(t), "dev")
	if err != nil || got.Agents[0].Status != sdk.AgentConnected {
		t.Fatalf("agent after bad reports: %+v %v, want connected", got.Agents, err)
	}
	// Disconnecting clears what it reported.
	conn.Close()
	testutil.Eventually(t, 15*time.Second, "reports cleared on disconnect", func() bool {
		ports, err := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
		h, err2 := ts.DB.AgentReportsByWorkspace(testContext(t), w.ID)
		return err == nil && err2 == nil && len(ports) == 0 && len(h[w.Agents[0].ID].Health) == 0
	})
}
