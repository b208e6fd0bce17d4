package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
)

const browserOnlyMsg = "Non-browser connections are disabled for your deployment."

// sshEnv is a server with a workspace "dev" whose local agent is
// connected, a logged-in CLI config and a home directory for OpenSSH.
type sshEnv struct {
	srv                *testutil.Server
	dir, cfg, home     string
	pgURL, sshConfig   string
	serverDir, address string
}

func newSSHEnv(t *testing.T, addr string, flags ...string) *sshEnv {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("OpenSSH client missing: apt-get install openssh-client")
	}
	dir := t.TempDir()
	e := &sshEnv{dir: dir, cfg: filepath.Join(dir, "cli"), home: filepath.Join(dir, "home"), pgURL: storetest.URL(t), serverDir: filepath.Join(dir, "server"), address: addr}
	e.sshConfig = filepath.Join(e.home, ".ssh", "config")
	os.MkdirAll(filepath.Dir(e.sshConfig), 0o700)
	e.start(t, flags...)
	mustCoder(t, e.cfg, "login", e.srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")
	mustCoder(t, e.cfg, "templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	mustCoder(t, e.cfg, "create", "dev", "-t", "default")
	e.waitAgent(t)
	return e
}

func (e *sshEnv) start(t *testing.T, flags ...string) {
	args := []string{"--config-dir", e.serverDir}
	if e.address != "" {
		args = append(args, "--http-address", e.address)
	}
	e.srv = testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + e.pgURL}, append(args, flags...)...)
}

func (e *sshEnv) waitAgent(t *testing.T) sdk.WorkspaceAgent {
	t.Helper()
	var ag sdk.WorkspaceAgent
	testutil.Eventually(t, 30*time.Second, "the local agent to connect", func() bool {
		ws := listWorkspaces(t, e.cfg)
		if len(ws) == 1 && ws[0].Agents[0].Status == sdk.AgentConnected {
			ag = ws[0].Agents[0]
			return true
		}
		return false
	})
	return ag
}

// ssh runs the OpenSSH client with the config config-ssh wrote.
func (e *sshEnv) ssh(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, append([]string{"-F", e.sshConfig, "-o", "BatchMode=yes"}, args...)...)
	cmd.Env = append(testutil.CleanEnv(), "HOME="+e.home)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out.String(), errOut.String(), code
}

// TestOpenSSH drives a real OpenSSH client through config-ssh: commands
// and exit codes, scp both ways, sftp, and coder's own ssh, port-forward
// and interactive shell.
func TestOpenSSH(t *testing.T) {
	t.Parallel()
	e := newSSHEnv(t, "")
	userLines := "# my own config\nHost other\n  User me\n"
	os.WriteFile(e.sshConfig, []byte(userLines), 0o600)

	// --dry-run shows the diff and writes nothing.
	out := mustCoder(t, e.cfg, "config-ssh", "--ssh-config-file", e.sshConfig, "--dry-run")
	if !strings.Contains(out, "+Host coder.dev\n") || !strings.Contains(out, "+# ------------START-CODER-----------") {
		t.Fatalf("dry-run diff:\n%s", out)
	}
	if b, _ := os.ReadFile(e.sshConfig); string(b) != userLines {
		t.Fatalf("--dry-run changed the file:\n%s", b)
	}
	mustCoder(t, e.cfg, "config-ssh", "--ssh-config-file", e.sshConfig)
	first, _ := os.ReadFile(e.sshConfig)
	if !strings.HasPrefix(string(first), userLines+"\n# ------------START-CODER-----------\n") || !strings.HasSuffix(string(first), "# ------------END-CODER------------\n") {
		t.Fatalf("config after config-ssh:\n%s", first)
	}
	// Lines added after the block by hand survive, and a second run
	// changes nothing.
	os.WriteFile(e.sshConfig, append(first, []byte("Host after\n  User you\n")...), 0o600)
	_, errOut, code := coder(t, e.cfg, "", "config-ssh", "--ssh-config-file", e.sshConfig)
	if code != 0 || !strings.Contains(errOut, "No changes") {
		t.Fatalf("second config-ssh: %d %q", code, errOut)
	}
	if b, _ := os.ReadFile(e.sshConfig); string(b) != string(first)+"Host after\n  User you\n" {
		t.Fatalf("second config-ssh changed the file:\n%s", b)
	}

	// Commands and exit codes; the host key is pinned (no prompt in
	// BatchMode, StrictHostKeyChecking yes).
	if out, errOut, code := e.ssh(t, "ssh", "coder.dev", "echo", "ok"); out != "ok\n" || code != 0 {
		t.Fatalf("ssh coder.dev echo ok: %q %q %d", out, errOut, code)
	}
	if _, _, code := e.ssh(t, "ssh", "coder.dev", "exit 7"); code != 7 {
		t.Fatalf("ssh exit 7: got %d", code)
	}

	// scp both ways (OpenSSH 9 speaks SFTP underneath), then sftp ls.
	local := filepath.Join(e.dir, "up.txt")
	os.WriteFile(local, []byte("uploaded\n"), 0o644)
	if _, errOut, code := e.ssh(t, "scp", local, "coder.dev:up.txt"); code != 0 {
		t.Fatalf("scp up: %d %s", code, errOut)
	}
	if out, _, _ := e.ssh(t, "ssh", "coder.dev", "cat up.txt; echo downloaded > down.txt"); out != "uploaded\n" {
		t.Fatalf("uploaded file reads %q", out)
	}
	down := filepath.Join(e.dir, "down.txt")
	if _, errOut, code := e.ssh(t, "scp", "coder.dev:down.txt", down); code != 0 {
		t.Fatalf("scp down: %d %s", code, errOut)
	}
	if b, _ := os.ReadFile(down); string(b) != "downloaded\n" {
		t.Fatalf("downloaded %q", b)
	}
	batch := filepath.Join(e.dir, "batch")
	os.WriteFile(batch, []byte("ls\n"), 0o644)
	if out, errOut, code := e.ssh(t, "sftp", "-b", batch, "coder.dev"); code != 0 || !strings.Contains(out, "up.txt") || !strings.Contains(out, "down.txt") {
		t.Fatalf("sftp ls: %d %q %q", code, out, errOut)
	}

	// ssh -L through OpenSSH to a server on the workspace's localhost.
	httpPort := httpServer(t, "hello from the workspace")
	lport := freePort(t)
	fwd := exec.Command("ssh", "-F", e.sshConfig, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", lport, httpPort), "coder.dev")
	fwd.Env = append(testutil.CleanEnv(), "HOME="+e.home)
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	waitHTTP(t, lport, "hello from the workspace")

	// coder ssh: command mode with the exit code, and stdout only.
	stdout, stderr, code := coder(t, e.cfg, "", "ssh", "dev", "--", "echo hi; echo err >&2; exit 3")
	if stdout != "hi\n" || stderr != "err\n" || code != 3 {
		t.Fatalf("coder ssh command: %q %q %d", stdout, stderr, code)
	}
	// coder ssh -R: the workspace reaches a port of this machine.
	back := lineServer(t, "hello from the laptop")
	rport := freePort(t)
	stdout, stderr, code = coder(t, e.cfg, "", "ssh", "-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", rport, back), "dev", "--",
		fmt.Sprintf(`bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; cat <&3'`, rport))
	if stdout != "hello from the laptop\n" || code != 0 {
		t.Fatalf("coder ssh -R: %q %q %d", stdout, stderr, code)
	}

	// coder port-forward: TCP and UDP, and a busy local port.
	tport, uport := freePort(t), freeUDPPort(t)
	udpRemote := udpEcho(t)
	pf := exec.Command(testutil.CoderBinary(t), "port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", tport, httpPort), "--udp", fmt.Sprintf("127.0.0.1:%d:%d", uport, udpRemote))
	pf.Env = append(testutil.CleanEnv(), "CODER_CONFIG_DIR="+e.cfg)
	pfErr, _ := pf.StderrPipe()
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Process.Kill(); pf.Wait() })
	sc := bufio.NewScanner(pfErr)
	for sc.Scan() && !strings.Contains(sc.Text(), "Ready") {
	}
	go io.Copy(io.Discard, pfErr)
	waitHTTP(t, tport, "hello from the workspace")
	uc, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", uport))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("ping-udp"))
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	if n, err := uc.Read(buf); err != nil || string(buf[:n]) != "ping-udp" {
		t.Fatalf("udp echo through port-forward: %q %v", buf[:n], err)
	}
	_, errOut, code = coder(t, e.cfg, "", "port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", tport, httpPort))
	if code == 0 || !strings.Contains(errOut, fmt.Sprintf("local tcp port %d on 127.0.0.1 is already in use", tport)) {
		t.Fatalf("busy local port: %d %q", code, errOut)
	}

	// An interactive shell through a PTY, with a resize.
	shell := exec.Command(testutil.CoderBinary(t), "ssh", "dev")
	shell.Env = append(testutil.CleanEnv(), "CODER_CONFIG_DIR="+e.cfg, "TERM=xterm")
	ptmx, err := pty.StartWithSize(shell, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	screen := newScreen(ptmx)
	io.WriteString(ptmx, "stty size; echo TERM=$TERM\r")
	screen.waitFor(t, "24 80")
	screen.waitFor(t, "TERM=xterm")
	pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100})
	// The resize reaches the remote side asynchronously: ask until it shows.
	testutil.Eventually(t, 30*time.Second, "the resize to reach the workspace", func() bool {
		io.WriteString(ptmx, "stty size\r")
		return screen.seenWithin("30 100", time.Second)
	})
	io.WriteString(ptmx, "exit 5\r")
	if err := shell.Wait(); shell.ProcessState.ExitCode() != 5 {
		t.Fatalf("interactive shell exit: %v, want 5", err)
	}
}

// TestBrowserOnly: a deployment restarted in browser-only mode refuses
// every CLI tunnel with Coder's message, refuses a hand-made control
// registration, cuts off a client registered before the restart, and
// keeps the web terminal working.
func TestBrowserOnly(t *testing.T) {
	t.Parallel()
	e := newSSHEnv(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	mustCoder(t, e.cfg, "config-ssh", "--ssh-config-file", e.sshConfig)
	if out, errOut, code := e.ssh(t, "ssh", "coder.dev", "echo", "ok"); out != "ok\n" {
		t.Fatalf("ssh before browser-only: %q %q %d", out, errOut, code)
	}
	tokenB, _ := os.ReadFile(filepath.Join(e.cfg, "session"))
	token := strings.TrimSpace(string(tokenB))
	ag := e.waitAgent(t)

	// A client node of this test process, registered before the restart.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: e.srv.URL}); err != nil {
		t.Fatal(err)
	}
	node, err := tailnet.NewNode(ctx, tailnet.NodeOptions{Dir: t.TempDir(), ControlURL: e.srv.URL, AuthKey: "client:" + token})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	agentAddr := tailnet.AddrOf(tailnet.KindAgent, ag.ID)
	if err := node.WaitForPeer(ctx, agentAddr); err != nil {
		t.Fatal(err)
	}
	// The first dial waits for the WireGuard handshake: under load, longer
	// than one probe's 3 s.
	testutil.Eventually(t, 60*time.Second, "the client node to reach the agent's SSH before browser-only", func() bool {
		return sshBanner(ctx, node, agentAddr)
	})

	e.srv.Stop()
	e.start(t, "--browser-only")
	ag = e.waitAgent(t)

	// Every CLI tunnel path prints the message alone and exits non-zero.
	for _, args := range [][]string{
		{"ssh", "dev", "--", "echo", "ok"},
		{"ssh", "--stdio", "dev"},
		{"port-forward", "dev", "--tcp", fmt.Sprintf("%d:80", freePort(t))},
		{"config-ssh", "--ssh-config-file", e.sshConfig},
		{"ping", "dev"},
		{"speedtest", "dev"},
	} {
		stdout, stderr, code := coder(t, e.cfg, "", args...)
		if code == 0 || stdout != "" || stderr != browserOnlyMsg+"\n" {
			t.Errorf("coder %s in browser-only mode: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	// config-ssh's ProxyCommand, written before the restart.
	out, errOut, code := e.ssh(t, "ssh", "coder.dev", "echo", "ok")
	t.Logf("OpenSSH in browser-only mode: exit %d, stderr %q", code, errOut)
	if code == 0 || out != "" || !strings.Contains(errOut, browserOnlyMsg) {
		t.Errorf("OpenSSH through the ProxyCommand in browser-only mode: %d %q %q", code, out, errOut)
	}
	// The API answers 409 with the message.
	c := &sdk.Client{URL: mustParseURL(t, e.srv.URL), Token: token}
	var apiErr *sdk.Error
	err = c.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/"+ag.ID+"/connection", nil, nil)
	if sdk.StatusCode(err) != http.StatusConflict || !asSDKError(err, &apiErr) || apiErr.Message != browserOnlyMsg || apiErr.Code != sdk.CodeBrowserOnly {
		t.Errorf("connection API in browser-only mode: %v", err)
	}
	// A hand-made control-protocol registration with a valid API key.
	ln, err := tailnettest.NewLiteNode(ctx, e.srv.URL, "client:"+token, tailnettest.Identity{Kind: tailnet.KindClient, Name: "hand-made"}, nil)
	if err == nil {
		ln.Close()
		t.Error("a hand-made client registration was accepted in browser-only mode")
	} else if !strings.Contains(err.Error(), browserOnlyMsg) {
		t.Errorf("hand-made registration refused with %v, want %q", err, browserOnlyMsg)
	}
	// The client registered before the restart can no longer reach the
	// agent.
	testutil.Eventually(t, 30*time.Second, "the old client to lose the agent", func() bool {
		return !sshBanner(ctx, node, agentAddr)
	})

	// The web terminal still works for the dashboard in a browser (its
	// session cookie and Origin), never for the API token.
	q := url.Values{"reconnect": {uuid.NewString()}, "width": {"80"}, "height": {"24"}}.Encode()
	ptyURL := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/v2/workspaceagents/" + ag.ID + "/pty?" + q
	if ws, resp, err := websocket.DefaultDialer.DialContext(ctx, ptyURL, http.Header{sdk.SessionTokenHeader: {token}}); err == nil {
		ws.Close()
		t.Fatal("the web terminal opened with an API token in browser-only mode")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("web terminal with an API token in browser-only mode: %v, want 403", err)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, ptyURL, http.Header{"Cookie": {dashboardCookie(t, e.srv.URL, "admin", "admin-password")}, "Origin": {e.srv.URL}})
	if err != nil {
		t.Fatalf("web terminal in browser-only mode: %v", err)
	}
	defer ws.Close()
	msg, _ := json.Marshal(map[string]string{"data": "echo web-$((40+2))\r"})
	ws.WriteMessage(websocket.TextMessage, msg)
	var got strings.Builder
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(got.String(), "web-42") {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("web terminal output %q: %v", got.String(), err)
		}
		got.Write(data)
	}
}

// dashboardCookie logs in through the dashboard's login form, as a browser
// does, and returns the session cookie as a Cookie header value.
func dashboardCookie(t *testing.T, base, login, password string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"login": {login}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(base)
	for _, c := range jar.Cookies(u) {
		if c.Name == "coder_session" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("login form: status %d, no session cookie", resp.StatusCode)
	return ""
}

func asSDKError(err error, target **sdk.Error) bool {
	e, ok := err.(*sdk.Error)
	if ok {
		*target = e
	}
	return ok
}

// sshBanner tells whether node reaches the agent's SSH server (reads its
// version banner) within 3 s.
func sshBanner(ctx context.Context, node *tailnet.Node, addr netip.Addr) bool {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := node.Dial(dctx, addr, sdk.AgentSSHPort)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func httpServer(t *testing.T, body string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func lineServer(t *testing.T, line string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, line+"\n")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func udpEcho(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, a, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], a)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func waitHTTP(t *testing.T, port int, want string) {
	t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second}
	testutil.Eventually(t, 20*time.Second, "the forwarded port "+strconv.Itoa(port), func() bool {
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == want
	})
}

// screen collects a PTY's output.
type screen struct {
	ch  chan string
	buf strings.Builder
}

func newScreen(r io.Reader) *screen {
	s := &screen{ch: make(chan string, 1024)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			if n > 0 {
				s.ch <- string(b[:n])
			}
			if err != nil {
				close(s.ch)
				return
			}
		}
	}()
	return s
}

func (s *screen) seenWithin(want string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if i := strings.Index(s.buf.String(), want); i >= 0 {
			rest := s.buf.String()[i+len(want):]
			s.buf.Reset()
			s.buf.WriteString(rest)
			return true
		}
		select {
		case chunk, ok := <-s.ch:
			if !ok {
				return false
			}
			s.buf.WriteString(chunk)
		case <-deadline:
			return false
		}
	}
}

func (s *screen) waitFor(t *testing.T, want string) {
	t.Helper()
	if !s.seenWithin(want, 15*time.Second) {
		t.Fatalf("terminal never showed %q; last output %q", want, s.buf.String())
	}
}

// TestTunnelFlagsHaveEnv: every flag of the tunnel commands shows its
// CODER_* variable in --help.
func TestTunnelFlagsHaveEnv(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"ssh", "config-ssh", "port-forward"} {
		out, _, code := coder(t, t.TempDir(), "", c, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", c, code)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "-") && !strings.Contains(line, "--help") && !strings.Contains(line, "[$CODER_") {
				t.Errorf("coder %s: flag without a CODER_* variable: %q", c, line)
			}
		}
	}
}
