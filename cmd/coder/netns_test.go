package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// netns is a set of network namespaces joined by a bridge: separate hosts
// on this machine, made and removed by the test.
type netns struct {
	t      *testing.T
	prefix string
}

// requireNetns fails (never skips) when the test cannot make namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces (separate hosts for client, agent and server) and needs root: run it as root (CI does)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: apt-get install iproute2 nftables", tool)
		}
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns makes a hub namespace with a bridge, and one namespace per host
// name, addressed 198.18.0.1, .2, ... (the benchmarking range: nothing
// outside this machine is ever addressed).
func newNetns(t *testing.T, hosts ...string) (*netns, map[string]string) {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	n := &netns{t: t, prefix: "ct" + hex.EncodeToString(b)}
	hub := n.prefix + "-hub"
	run(t, "ip", "netns", "add", hub)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", hub).Run() })
	run(t, "ip", "-n", hub, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", hub, "link", "set", "br0", "up")
	addrs := map[string]string{}
	for i, h := range hosts {
		ns := n.name(h)
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		veth, peer := fmt.Sprintf("%s%d", n.prefix, i), fmt.Sprintf("%sh%d", n.prefix, i)
		run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", veth, "netns", ns)
		run(t, "ip", "link", "set", peer, "netns", hub)
		run(t, "ip", "-n", hub, "link", "set", peer, "master", "br0", "up")
		addr := fmt.Sprintf("198.18.0.%d", i+1)
		run(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", veth)
		run(t, "ip", "-n", ns, "link", "set", veth, "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		addrs[h] = addr
	}
	return n, addrs
}

func (n *netns) name(host string) string { return n.prefix + "-" + host }

// TestAcrossHosts runs the server, an agent and the CLI in three network
// namespaces. With UDP allowed, `coder ping` is direct and `coder ssh`
// works; with UDP between the client and the agent dropped (nftables in the
// agent's namespace), ping is relayed through the server's DERP, and ssh and
// speedtest still work.
func TestAcrossHosts(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	ns, addr := newNetns(t, "srv", "agt", "cli")
	bin := testutil.CoderBinary(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o711) // the built-in PostgreSQL runs as the postgres user
	url := "http://" + addr["srv"] + ":3000"

	// The server, on the built-in PostgreSQL, in its own namespace.
	srvCmd := exec.Command("ip", "netns", "exec", ns.name("srv"), bin, "server",
		"--http-address", addr["srv"]+":3000", "--access-url", url, "--config-dir", filepath.Join(dir, "server"))
	srvCmd.Env = testutil.CleanEnv()
	var srvOut bytes.Buffer
	srvCmd.Stdout, srvCmd.Stderr = &srvOut, &srvOut
	if err := srvCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srvCmd.Process.Signal(os.Interrupt)
		srvCmd.Wait()
		if t.Failed() {
			t.Logf("server output:\n%s", srvOut.String())
		}
	})

	cfg := filepath.Join(dir, "cli")
	inNS := func(host string, args ...string) (string, string, int) {
		return coderIn(t, cfg, ns.name(host), args...)
	}
	testutil.Eventually(t, 60*time.Second, "the server to answer", func() bool {
		_, _, code := inNS("cli", "login", url, "--first-user-username", "admin", "--first-user-password", "admin-password")
		return code == 0
	})
	must := func(host string, args ...string) string {
		t.Helper()
		out, errOut, code := inNS(host, args...)
		if code != 0 {
			t.Fatalf("coder %v in %s: exit %d\n%s\n%s", args, host, code, out, errOut)
		}
		return out
	}
	tpl := filepath.Join(dir, "manual.yaml")
	os.WriteFile(tpl, []byte("provisioner: manual\nagents:\n  - name: main\n"), 0o644)
	must("cli", "templates", "push", "manual", "-f", tpl)
	var w sdk.Workspace
	if err := json.Unmarshal([]byte(must("cli", "create", "dev", "-t", "manual", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}

	// The agent, started by hand in its namespace.
	ctx, cancel := context.WithCancel(context.Background())
	agentCmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name("agt"), bin, "agent")
	agentCmd.Env = append(testutil.CleanEnv(), "CODER_AGENT_URL="+url, "CODER_AGENT_TOKEN="+w.Agents[0].Token)
	agentCmd.Dir = dir
	var agentOut bytes.Buffer
	agentCmd.Stdout, agentCmd.Stderr = &agentOut, &agentOut
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		agentCmd.Wait()
		if t.Failed() {
			t.Logf("agent output:\n%s", agentOut.String())
		}
	})
	testutil.Eventually(t, 30*time.Second, "the agent to connect", func() bool {
		var ws sdk.Workspace
		out, _, code := inNS("cli", "list", "-o", "json")
		var list []sdk.Workspace
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			return false
		}
		ws = list[0]
		return ws.Agents[0].Status == sdk.AgentConnected
	})

	// UDP allowed: direct, to the agent's own address.
	out := must("cli", "ping", "dev", "-n", "5", "--wait", "200ms")
	if !strings.Contains(out, "p2p via "+addr["agt"]+":") || !strings.Contains(out, "✔ You are connected directly (p2p)") {
		t.Fatalf("with UDP allowed, ping should end direct to %s:\n%s", addr["agt"], out)
	}

	if out := must("cli", "ssh", "dev", "--", "echo", "over-ssh-direct"); out != "over-ssh-direct\n" {
		t.Fatalf("coder ssh across hosts (direct): %q", out)
	}

	// UDP between client and agent dropped: relayed, and still working.
	rules := fmt.Sprintf(`table inet coder_test {
	chain input { type filter hook input priority 0; ip saddr %[1]s meta l4proto udp drop; }
	chain output { type filter hook output priority 0; ip daddr %[1]s meta l4proto udp drop; }
}`, addr["cli"])
	nft := exec.Command("ip", "netns", "exec", ns.name("agt"), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	out = must("cli", "ping", "dev", "-n", "3", "--wait", "200ms")
	if !strings.Contains(out, "proxied via DERP(coder)") || strings.Contains(out, " p2p via ") {
		t.Fatalf("with UDP dropped, ping should be relayed through DERP:\n%s", out)
	}
	if !strings.Contains(out, "❗ You are connected via a DERP relay, not directly (p2p)") {
		t.Fatalf("ping should say it is relayed:\n%s", out)
	}
	if out := must("cli", "ssh", "dev", "--", "echo", "over-ssh-derp"); out != "over-ssh-derp\n" {
		t.Fatalf("coder ssh across hosts (via DERP): %q", out)
	}
	var rows []struct {
		Bytes int  `json:"transferred_bytes"`
		Total bool `json:"total"`
	}
	if err := json.Unmarshal([]byte(must("cli", "speedtest", "dev", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || rows[len(rows)-1].Bytes == 0 {
		t.Fatalf("speedtest over DERP moved nothing: %+v", rows)
	}
}

// coderIn runs the CLI inside a network namespace.
func coderIn(t *testing.T, cfg, ns string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, testutil.CoderBinary(t)}, args...)...)
	cmd.Env = append(testutil.CleanEnv(), "CODER_CONFIG_DIR="+cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run coder %v in %s: %v", args, ns, err)
	}
	return stdout.String(), stderr.String(), code
}
