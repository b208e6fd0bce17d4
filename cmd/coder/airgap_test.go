package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// Air-gapped hosts (issue 14, item 7): tailscale counts the network as
// down when no interface has an address but loopback or link-local, and
// then never brings a node up. These tests run the real binary in network
// namespaces that have only such addresses and no default route, so that
// nothing can reach an outside address either.

// lockedBuffer is a process's output, read while the process runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// addNetns makes a network namespace with only lo up, removed when the
// test ends (even when it fails).
func addNetns(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// uniqueNetns returns a prefix for this test's namespaces.
func uniqueNetns() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "ag" + hex.EncodeToString(b)
}

// startIn runs the coder binary with args in namespace ns until the test
// ends (SIGINT, then wait), and logs its output if the test failed.
func startIn(t *testing.T, ns, what string, env []string, args ...string) *lockedBuffer {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, testutil.CoderBinary(t)}, args...)...)
	cmd.Env = append(testutil.CleanEnv(), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 30 s of SIGINT", what)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", what, out.String())
		}
	})
	return out
}

// airgapCLI runs the CLI in a namespace with its own config dir.
type airgapCLI struct {
	t   *testing.T
	ns  string
	cfg string
}

func (c airgapCLI) run(args ...string) (string, string, int) {
	c.t.Helper()
	return coderIn(c.t, c.cfg, c.ns, args...)
}

func (c airgapCLI) must(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("coder %v in %s: exit %d\n%s\n%s", args, c.ns, code, out, errOut)
	}
	return out
}

func (c airgapCLI) workspace() sdk.Workspace {
	c.t.Helper()
	var ws []sdk.Workspace
	if err := json.Unmarshal([]byte(c.must("list", "-o", "json")), &ws); err != nil || len(ws) != 1 {
		c.t.Fatalf("list: %v %+v", err, ws)
	}
	return ws[0]
}

// login waits for the server at u to answer and logs in as its first user.
func (c airgapCLI) login(u string) {
	c.t.Helper()
	testutil.Eventually(c.t, 90*time.Second, "the server to answer", func() bool {
		_, _, code := c.run("login", u, "--first-user-username", "admin", "--first-user-password", "admin-password")
		return code == 0
	})
}

// webTerminalIn types into agentID's web terminal from namespace ns (the
// server relays it to the agent through its own tailnet node) by running
// TestAirgapTerminalHelper there.
func webTerminalIn(t *testing.T, ns, serverURL, token, agentID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(serverURL, "http://", "ws://", 1) + "/api/v2/workspaceagents/" + agentID + "/pty?" +
		url.Values{"reconnect": {uuid.NewString()}, "width": {"80"}, "height": {"24"}}.Encode()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, self, "-test.run", "^TestAirgapTerminalHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "CODER_TEST_AIRGAP_PTY_URL="+u, "CODER_TEST_AIRGAP_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "web terminal answered") {
		t.Fatalf("web terminal in %s: %v\n%s", ns, err, out)
	}
}

// TestAirgapTerminalHelper is run by webTerminalIn inside a namespace; on
// its own it does nothing.
func TestAirgapTerminalHelper(t *testing.T) {
	u := os.Getenv("CODER_TEST_AIRGAP_PTY_URL")
	if u == "" {
		return
	}
	b := terminaltest.DialBrowser(t, u, terminaltest.BrowserOptions{Header: http.Header{sdk.SessionTokenHeader: {os.Getenv("CODER_TEST_AIRGAP_TOKEN")}}})
	// A shell that is still starting may discard what was typed: type
	// again until it answers.
	deadline := time.Now().Add(60 * time.Second)
	for !bytes.Contains(b.Output(), []byte("42-airgap")) {
		if time.Now().After(deadline) {
			t.Fatalf("the web terminal did not answer within 60 s; output ends with %q", b.Output())
		}
		b.Type("echo $((6*7))-airgap\r")
		select {
		case <-time.After(2 * time.Second):
		case <-t.Context().Done():
		}
	}
	t.Log("web terminal answered")
}

// readSession reads the CLI's session token from its config dir.
func readSession(t *testing.T, cfg string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg, "session"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAirgappedLoopbackOnly: a host whose only network is lo (no address
// but 127.0.0.1, no default route) runs the server on the built-in
// PostgreSQL, a local workspace's agent and the CLI: the server's node
// comes up, `coder ping` and `coder ssh` reach the agent, and the web
// terminal works.
func TestAirgappedLoopbackOnly(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	ns := uniqueNetns() + "-lo"
	addNetns(t, ns)
	dir := testutil.ProvisionerDir(t) // as root, admin's agent runs as an OS account with its home in here
	const u = "http://127.0.0.1:3000"
	srv := startIn(t, ns, "server", nil, "server", "--stop-local-agents-on-exit", "--http-address", "127.0.0.1:3000", "--access-url", u,
		"--derp-server-stun-addresses", "127.0.0.1:0", "--config-dir", filepath.Join(dir, "server"))

	cli := airgapCLI{t: t, ns: ns, cfg: filepath.Join(dir, "cli")}
	cli.login(u)
	cli.must("templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	cli.must("create", "dev", "-t", "default")
	testutil.Eventually(t, 60*time.Second, "the local agent to connect", func() bool {
		return cli.workspace().Agents[0].Status == sdk.AgentConnected
	})
	if strings.Contains(srv.String(), "did not start") {
		t.Fatalf("the server's tailnet node did not start:\n%s", srv.String())
	}

	out := cli.must("ping", "dev", "-n", "3", "--wait", "100ms")
	if !strings.Contains(out, "pong from dev.main p2p via 127.0.0.1:") {
		t.Fatalf("ping on a loopback-only host should be direct over 127.0.0.1:\n%s", out)
	}
	if out := cli.must("ssh", "dev", "--", "echo", "airgap-ssh"); out != "airgap-ssh\n" {
		t.Fatalf("coder ssh: %q", out)
	}
	webTerminalIn(t, ns, u, readSession(t, cli.cfg), cli.workspace().Agents[0].ID)
}

// TestAirgappedLinkLocal: two hosts joined by a cable and nothing else,
// addressed link-local (169.254.0.0/16, as zeroconf does without DHCP), no
// default route: the server on one, an agent and the CLI on the other.
// The server relays every connection (--block-direct-connections), so
// DERP over the link-local network carries pings, SSH and the web
// terminal.
func TestAirgappedLinkLocal(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	prefix := uniqueNetns()
	srvNS, agtNS := prefix+"-srv", prefix+"-agt"
	addNetns(t, srvNS)
	addNetns(t, agtNS)
	veth, peer := prefix+"s", prefix+"a"
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() }) // if it never moved
	run(t, "ip", "link", "set", veth, "netns", srvNS)
	run(t, "ip", "link", "set", peer, "netns", agtNS)
	run(t, "ip", "-n", srvNS, "addr", "add", "169.254.77.1/16", "dev", veth)
	run(t, "ip", "-n", agtNS, "addr", "add", "169.254.77.2/16", "dev", peer)
	run(t, "ip", "-n", srvNS, "link", "set", veth, "up")
	run(t, "ip", "-n", agtNS, "link", "set", peer, "up")

	dir := t.TempDir()
	os.Chmod(dir, 0o711) // the built-in PostgreSQL runs as the postgres user
	const u = "http://169.254.77.1:3000"
	startIn(t, srvNS, "server", nil, "server", "--stop-local-agents-on-exit", "--http-address", "169.254.77.1:3000", "--access-url", u,
		"--derp-server-stun-addresses", "169.254.77.1:0", "--block-direct-connections", "--config-dir", filepath.Join(dir, "server"))

	cli := airgapCLI{t: t, ns: agtNS, cfg: filepath.Join(dir, "cli")}
	cli.login(u)
	tpl := filepath.Join(dir, "manual.yaml")
	os.WriteFile(tpl, []byte("provisioner: manual\nagents:\n  - name: main\n"), 0o644)
	cli.must("templates", "push", "manual", "-f", tpl)
	var w sdk.Workspace
	if err := json.Unmarshal([]byte(cli.must("create", "dev", "-t", "manual", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}
	// The agent runs as root here: /bin/sh keeps its shells out of this
	// machine's root bash dotfiles (pyenv's rehash there waits for a lock
	// that other root shells hold).
	agentDir := filepath.Join(dir, "agent")
	os.MkdirAll(agentDir, 0o755)
	startIn(t, agtNS, "agent", []string{"CODER_AGENT_URL=" + u, "CODER_AGENT_TOKEN=" + w.Agents[0].Token, "SHELL=/bin/sh"}, "agent", "--verbose", "--directory", agentDir)
	testutil.Eventually(t, 60*time.Second, "the agent to connect", func() bool {
		return cli.workspace().Agents[0].Status == sdk.AgentConnected
	})

	relayed := func() bool {
		out, _, code := cli.run("ping", "dev", "-n", "2", "--wait", "100ms")
		return code == 0 && strings.Contains(out, "pong from dev.main proxied via DERP(coder)")
	}
	if !relayed() {
		out, errOut, _ := cli.run("ping", "dev", "-n", "2", "--wait", "100ms")
		t.Fatalf("ping over a link-local network should be relayed by the server's DERP:\n%s\n%s", out, errOut)
	}
	if out := cli.must("ssh", "dev", "--", "echo", "linklocal-ssh"); out != "linklocal-ssh\n" {
		t.Fatalf("coder ssh: %q", out)
	}
	webTerminalIn(t, agtNS, u, readSession(t, cli.cfg), w.Agents[0].ID)
}

// TestAirgappedNetworkLost: on a loopback-only host whose server relays
// every connection (--block-direct-connections), a routable address comes
// and goes. Tailscale takes its loss as the network going down and closes
// every DERP connection of the server's and the agent's nodes; they open
// them again, and relayed pings and the web terminal work again.
func TestAirgappedNetworkLost(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	ns := uniqueNetns() + "-lost"
	addNetns(t, ns)
	dir := testutil.ProvisionerDir(t)
	const u = "http://127.0.0.1:3000"
	srv := startIn(t, ns, "server", nil, "server", "--stop-local-agents-on-exit", "--http-address", "127.0.0.1:3000", "--access-url", u,
		"--derp-server-stun-addresses", "127.0.0.1:0", "--block-direct-connections", "--verbose", "--config-dir", filepath.Join(dir, "server"))
	cli := airgapCLI{t: t, ns: ns, cfg: filepath.Join(dir, "cli")}
	cli.login(u)
	cli.must("templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	cli.must("create", "dev", "-t", "default")
	testutil.Eventually(t, 60*time.Second, "the local agent to connect", func() bool {
		return cli.workspace().Agents[0].Status == sdk.AgentConnected
	})
	relayed := func() bool {
		out, _, code := cli.run("ping", "dev", "-n", "2", "--wait", "100ms")
		return code == 0 && strings.Contains(out, "pong from dev.main proxied via DERP(coder)")
	}
	if !relayed() {
		out, errOut, _ := cli.run("ping", "dev", "-n", "2", "--wait", "100ms")
		t.Fatalf("ping should be relayed by the server's DERP:\n%s\n%s", out, errOut)
	}

	// A veth pair inside the namespace gets a routable address, which is
	// then removed.
	closed := func() int { return strings.Count(srv.String(), "(network-down)") }
	before := closed()
	a, b := ns[:8]+"x", ns[:8]+"y"
	run(t, "ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
	run(t, "ip", "-n", ns, "link", "set", a, "up")
	run(t, "ip", "-n", ns, "link", "set", b, "up")
	run(t, "ip", "-n", ns, "addr", "add", "198.18.7.2/24", "dev", a)
	testutil.Eventually(t, 30*time.Second, "the server's node to see the network up", func() bool {
		return strings.Contains(srv.String(), "magicsock: SetNetworkUp(true)")
	})
	run(t, "ip", "-n", ns, "addr", "del", "198.18.7.2/24", "dev", a)
	testutil.Eventually(t, 30*time.Second, "the server's node to close DERP for the network going down", func() bool {
		return closed() > before
	})
	testutil.Eventually(t, 30*time.Second, "relayed pings after the network went down", relayed)
	webTerminalIn(t, ns, u, readSession(t, cli.cfg), cli.workspace().Agents[0].ID)
}

// TestServerNodeDownInList: a server whose access URL does not lead back
// to it (nothing listens there) cannot start its own tailnet node; an
// agent that reaches the server by its real address connects, and
// `coder list` warns that the server cannot reach it, and why to look.
func TestServerNodeDownInList(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	ns := uniqueNetns() + "-down"
	addNetns(t, ns)
	dir := t.TempDir()
	os.Chmod(dir, 0o711) // the built-in PostgreSQL runs as the postgres user
	const u = "http://127.0.0.1:3000"
	srv := startIn(t, ns, "server", nil, "server", "--stop-local-agents-on-exit", "--http-address", "127.0.0.1:3000", "--access-url", "http://127.0.0.1:3001",
		"--derp-server-stun-addresses", "127.0.0.1:0", "--config-dir", filepath.Join(dir, "server"))
	cli := airgapCLI{t: t, ns: ns, cfg: filepath.Join(dir, "cli")}
	cli.login(u)
	tpl := filepath.Join(dir, "manual.yaml")
	os.WriteFile(tpl, []byte("provisioner: manual\nagents:\n  - name: main\n"), 0o644)
	cli.must("templates", "push", "manual", "-f", tpl)
	var w sdk.Workspace
	if err := json.Unmarshal([]byte(cli.must("create", "dev", "-t", "manual", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}
	startIn(t, ns, "agent", []string{"CODER_AGENT_URL=" + u, "CODER_AGENT_TOKEN=" + w.Agents[0].Token, "SHELL=/bin/sh"}, "agent", "--directory", dir)
	testutil.Eventually(t, 60*time.Second, "the server's node to give up its first attempt", func() bool {
		return strings.Contains(srv.String(), "the server's tailnet node did not start")
	})
	testutil.Eventually(t, 30*time.Second, "coder list to warn", func() bool {
		_, errOut, code := cli.run("list")
		return code == 0 && strings.Contains(errOut, "warning: admin/dev.main: The server's tailnet node is not running")
	})
	if !strings.Contains(srv.String(), "did not hear back from the coordination server") && !strings.Contains(srv.String(), "tailscale's state") {
		t.Fatalf("the server's log does not say why its node did not come up:\n%s", srv.String())
	}
}
