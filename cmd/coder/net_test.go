package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// startWorkspace runs a server (with extra flags) on a fresh database,
// logs in, and creates a workspace "dev" whose local agent is connected.
func startWorkspace(t *testing.T, flags ...string) (*testutil.Server, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cli")
	srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t)}, append([]string{"--config-dir", filepath.Join(dir, "server")}, flags...)...)
	mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")
	mustCoder(t, cfg, "templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	mustCoder(t, cfg, "create", "dev", "-t", "default")
	testutil.Eventually(t, 30*time.Second, "the local agent to connect", func() bool {
		ws := listWorkspaces(t, cfg)
		return len(ws) == 1 && ws[0].Agents[0].Status == sdk.AgentConnected
	})
	return srv, cfg
}

func TestPingSpeedtestNetcheck(t *testing.T) {
	t.Parallel()
	_, cfg := startWorkspace(t)

	out := mustCoder(t, cfg, "ping", "dev", "-n", "3", "--wait", "100ms")
	if !strings.Contains(out, "pong from dev.main p2p via ") || !strings.Contains(out, "✔ You are connected directly (p2p)") {
		t.Fatalf("ping on loopback should be direct:\n%s", out)
	}

	var rows []struct {
		Bytes int     `json:"transferred_bytes"`
		Mbits float64 `json:"throughput_mbits"`
		Total bool    `json:"total"`
	}
	if err := json.Unmarshal([]byte(mustCoder(t, cfg, "speedtest", "dev", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 2 || !rows[len(rows)-1].Total || rows[len(rows)-1].Bytes == 0 || rows[len(rows)-1].Mbits <= 0 {
		t.Fatalf("speedtest rows = %+v, want intervals and a non-zero total", rows)
	}
	table := mustCoder(t, cfg, "speedtest", "dev", "--direction", "up")
	if !strings.HasPrefix(table, "INTERVAL") || !strings.Contains(table, "Mbits/sec") {
		t.Fatalf("speedtest table:\n%s", table)
	}
	if _, errOut, code := coder(t, cfg, "", "speedtest", "dev", "-t", "1s"); code == 0 || !strings.Contains(errOut, "between 5s and 30s") {
		t.Fatalf("speedtest -t 1s: %d %q", code, errOut)
	}

	var rep struct {
		UDP       bool `json:"udp"`
		Preferred int  `json:"preferred_derp"`
		Regions   []struct {
			ID int `json:"region_id"`
		} `json:"regions"`
	}
	if err := json.Unmarshal([]byte(mustCoder(t, cfg, "netcheck")), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.UDP || rep.Preferred != 999 || len(rep.Regions) != 1 {
		t.Fatalf("netcheck = %+v, want UDP, preferred 999 and one region", rep)
	}

	if _, errOut, code := coder(t, cfg, "", "ping", "nope"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("ping of an unknown workspace: %d %q", code, errOut)
	}
}

// TestPrometheus: --prometheus-enable serves HTTP, agent, database and
// tailnet metrics on its own address.
func TestPrometheus(t *testing.T) {
	t.Parallel()
	srv, cfg := startWorkspace(t, "--prometheus-enable", "--prometheus-address", "127.0.0.1:0")
	mustCoder(t, cfg, "list")
	m := regexp.MustCompile(`serving prometheus metrics.* address=(\S+)`).FindStringSubmatch(srv.Logs())
	if m == nil {
		t.Fatalf("no prometheus address in the logs:\n%s", srv.Logs())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`coderd_api_requests_processed_total{code="200",method="GET",route="GET /api/v2/workspaces"}`,
		"coderd_api_request_latencies_seconds_bucket",
		"coderd_agents_connected 1",
		"coderd_db_pool_max_connections",
		`coder_tailnet_nodes{kind="agent",online="true"} 1`,
		"coder_tailnet_coordination_updates_sent_total",
		"coder_terminal_sessions",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestPingBlockDirect(t *testing.T) {
	t.Parallel()
	_, cfg := startWorkspace(t, "--block-direct-connections")
	out := mustCoder(t, cfg, "ping", "dev", "-n", "2", "--wait", "100ms")
	if !strings.Contains(out, "pong from dev.main proxied via DERP(coder)") || strings.Contains(out, " p2p via ") {
		t.Fatalf("ping with --block-direct-connections should be relayed:\n%s", out)
	}
	if !strings.Contains(out, "❗ You are connected via a DERP relay, not directly (p2p)") || !strings.Contains(out, "--block-direct-connections") {
		t.Fatalf("ping should say why it is relayed:\n%s", out)
	}
}

// TestPingForceWebsockets: with --derp-force-websockets the server's own
// node reaches DERP over websockets (its debug log says so), agents and
// CLIs learn the setting from the build info, and with direct connections
// blocked the relayed pings work.
func TestPingForceWebsockets(t *testing.T) {
	t.Parallel()
	srv, cfg := startWorkspace(t, "--derp-force-websockets", "--block-direct-connections", "--verbose")
	out := mustCoder(t, cfg, "ping", "dev", "-n", "2", "--wait", "100ms")
	if !strings.Contains(out, "pong from dev.main proxied via DERP(coder)") {
		t.Fatalf("ping over websocket DERP:\n%s", out)
	}
	if !strings.Contains(srv.Logs(), "connecting websocket to http://") {
		t.Fatalf("the server's node did not reach DERP over websockets:\n%s", srv.Logs())
	}
}
