// Command e2e measures real `coder server` and `coder agent` processes on
// loopback (built-in PostgreSQL):
//
//   - the time from `coder agent` start to the first byte the server's
//     tailnet node gets from it (N runs: start the agent, open the web
//     terminal websocket, which the server relays to the agent's PTY over its
//     own tailnet node, until the first output frame arrives);
//
//   - the server's RSS while M agents flood their web terminals at full speed
//     (`cat` of random data as base64, read as fast as the websocket allows),
//     and after the floods end, over -rounds rounds (growth from one to the
//     next is a leak);
//
//   - a keystroke's round trip through the web terminal's websocket
//     (server, tailnet, agent, bash) next to bash on a local PTY;
//
//   - `coder ssh` start and throughput next to a local OpenSSH server.
//
//     go run ./bench/e2e -coder bin/coder [-n 10] [-flood 5] [-flood-time 10s] [-rounds 1] [-settle 1m] [-echo 200] [-ssh 10]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
)

func main() {
	bin := flag.String("coder", "bin/coder", "the coder binary")
	n := flag.Int("n", 10, "agent starts")
	flood := flag.Int("flood", 5, "agents flooding their terminals at once")
	floodTime := flag.Duration("flood-time", 10*time.Second, "how long each flood runs")
	sshRuns := flag.Int("ssh", 10, "cold `coder ssh -- true` runs (0 skips the SSH figures)")
	flag.IntVar(&echoKeys, "echo", 200, "keys typed through the terminal websocket and into a local PTY (0 skips)")
	flag.DurationVar(&echoThink, "echo-think", 30*time.Millisecond, "pause before each key")
	flag.DurationVar(&settle, "settle", time.Minute, "how long after the floods to read the server's RSS again")
	flag.IntVar(&rounds, "rounds", 1, "flood rounds, one after another, each followed by -settle")
	flag.Parse()
	if err := run(*bin, *n, *flood, *floodTime, *sshRuns); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

func run(bin string, n, flood int, floodTime time.Duration, sshRuns int) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "coder-bench-agentstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o711)
	srv := exec.Command(bin, "server", "--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "127.0.0.1:0", "--config-dir", filepath.Join(dir, "server"))
	if a := os.Getenv("E2E_PPROF"); a != "" {
		srv.Args = append(srv.Args, "--pprof-enable", "--pprof-address", a)
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	srv.Stderr = io.Discard
	if f := os.Getenv("E2E_SERVER_LOG"); f != "" {
		lf, err := os.Create(f)
		if err == nil {
			srv.Stderr = lf
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	base, err := waitBanner(out)
	if err != nil {
		return err
	}
	go io.Copy(io.Discard, out)
	u, _ := url.Parse(base)
	ctx := context.Background()
	c := &sdk.Client{URL: u}
	if err := c.Request(ctx, "POST", "/api/v2/users/first", sdk.CreateFirstUserRequest{Username: "bench", Email: "bench@example.com", Password: "bench-password"}, nil); err != nil {
		return err
	}
	var login sdk.LoginResponse
	if err := c.Request(ctx, "POST", "/api/v2/users/login", sdk.LoginRequest{Login: "bench", Password: "bench-password"}, &login); err != nil {
		return err
	}
	c.Token = login.SessionToken
	if err := c.Request(ctx, "PUT", "/api/v2/templates/manual", sdk.PushTemplateRequest{Source: "provisioner: manual\nagents:\n  - name: main\n"}, nil); err != nil {
		return err
	}
	var w sdk.Workspace
	if err := c.Request(ctx, "POST", "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "bench", Template: "manual"}, &w); err != nil {
		return err
	}
	ag := w.Agents[0]
	if err := agentStarts(bin, dir, base, u, c, ag, n); err != nil {
		return err
	}
	if flood > 0 {
		if err := floods(bin, dir, base, u, c, srv.Process.Pid, flood, floodTime); err != nil {
			return err
		}
	}
	if echoKeys > 0 {
		if err := echoBench(bin, dir, base, u, c, ag, echoKeys, echoThink); err != nil {
			return err
		}
	}
	if sshRuns > 0 {
		return sshBench(bin, dir, base, c, ag, sshRuns)
	}
	return nil
}

func agentStarts(bin, dir, base string, u *url.URL, c *sdk.Client, ag sdk.WorkspaceAgent, n int) error {
	var times []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		agent, err := startAgent(bin, dir, base, ag.Token)
		if err != nil {
			return err
		}
		d, err := firstByte(u, c.Token, ag.ID, start)
		stopAgent(agent)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		times = append(times, d)
		fmt.Printf("run %2d: agent start -> first byte %v\n", i+1, d.Round(time.Millisecond))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("agent start -> first byte over the tailnet: p50 %v, min %v, max %v (n=%d, target <= 2s)\n",
		times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), len(times))
	fmt.Printf("JSON {\"bench\":\"agent_start_first_byte\",\"p50_ms\":%d,\"min_ms\":%d,\"max_ms\":%d,\"n\":%d}\n",
		times[len(times)/2].Milliseconds(), times[0].Milliseconds(), times[len(times)-1].Milliseconds(), len(times))
	return nil
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmRSS:"), "kB")), &kb)
			return kb / 1024
		}
	}
	return -1
}

// floods starts m agents, floods each one's terminal, and samples the
// server's RSS during and after.
func floods(bin, dir, base string, u *url.URL, c *sdk.Client, serverPID, m int, d time.Duration) error {
	ctx := context.Background()
	var agents []*exec.Cmd
	defer func() {
		for _, a := range agents {
			stopAgent(a)
		}
	}()
	var ids []string
	for i := 0; i < m; i++ {
		var w sdk.Workspace
		if err := c.Request(ctx, "POST", "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: fmt.Sprintf("flood%d", i), Template: "manual"}, &w); err != nil {
			return err
		}
		a, err := startAgent(bin, dir, base, w.Agents[0].Token)
		if err != nil {
			return err
		}
		agents = append(agents, a)
		ids = append(ids, w.Agents[0].ID)
	}
	// Wait for every agent to connect before the clock starts.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ws []sdk.Workspace
		if err := c.Request(ctx, "GET", "/api/v2/workspaces", nil, &ws); err != nil {
			return err
		}
		up := 0
		for _, w := range ws {
			if strings.HasPrefix(w.Name, "flood") && w.Agents[0].Status == sdk.AgentConnected {
				up++
			}
		}
		if up == m {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d flood agents connected within 60 s", up, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle := rssMiB(serverPID)
	for r := 1; r <= rounds; r++ {
		peak, after, later, mbs := floodRound(u, c.Token, ids, serverPID, idle, d)
		fmt.Printf("round %d: server RSS with %d agents idle %.0f MiB, peak while %d terminals flood %.0f MiB, 5 s after %.0f MiB, %s after %.0f MiB; relayed %.1f MB/s in all\n",
			r, m, idle, m, peak, after, settle, later, mbs)
		fmt.Printf("JSON {\"bench\":\"server_rss_flood\",\"round\":%d,\"agents\":%d,\"idle_mib\":%.0f,\"peak_mib\":%.0f,\"after_mib\":%.0f,\"settled_mib\":%.0f,\"settle_s\":%.0f,\"relayed_mb_s\":%.1f}\n",
			r, m, idle, peak, after, later, settle.Seconds(), mbs)
	}
	return nil
}

// floodRound floods every agent's terminal for d and returns the server's
// peak RSS, its RSS 5 s and settle after the floods end, and the MB/s
// relayed.
func floodRound(u *url.URL, token string, ids []string, serverPID int, idle float64, d time.Duration) (peak, after, later, mbs float64) {
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := flood(u, token, id, stop)
			if err != nil {
				fmt.Fprintln(os.Stderr, "flood:", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	peak = idle
	for time.Now().Before(stop) {
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, rssMiB(serverPID))
	}
	wg.Wait()
	time.Sleep(5 * time.Second)
	after = rssMiB(serverPID)
	// The server returns memory to the OS once it has been quiet for a
	// while (tailnet.Trimmer): look again later.
	time.Sleep(settle - 5*time.Second)
	later = rssMiB(serverPID)
	return peak, after, later, float64(total) / d.Seconds() / 1e6
}

// flood opens a terminal running a fast producer and reads until stop.
func flood(u *url.URL, token, agentID string, stop time.Time) (int64, error) {
	ws := *u
	ws.Scheme = "ws"
	ws.Path = "/api/v2/workspaceagents/" + agentID + "/pty"
	ws.RawQuery = url.Values{"reconnect": {uuid.NewString()}, "width": {"120"}, "height": {"40"},
		"command": {"cat /dev/urandom | base64"}}.Encode()
	h := http.Header{}
	h.Set(sdk.SessionTokenHeader, token)
	var conn *websocket.Conn
	var lastErr error
	for time.Now().Before(stop) {
		var resp *http.Response
		conn, resp, lastErr = websocket.DefaultDialer.Dial(ws.String(), h)
		if lastErr == nil {
			break
		}
		if resp != nil {
			lastErr = fmt.Errorf("%w (%s)", lastErr, resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if conn == nil {
		return 0, fmt.Errorf("agent %s: no terminal before the flood ended: %v", agentID, lastErr)
	}
	defer conn.Close()
	var n int64
	conn.SetReadDeadline(stop)
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			if time.Now().Before(stop.Add(-time.Second)) {
				return n, fmt.Errorf("agent %s: terminal ended early: %w", agentID, err)
			}
			return n, nil
		}
		n += int64(len(b))
	}
}

var (
	settle time.Duration // how long after the floods the RSS is read again
	rounds int           // flood rounds

	echoKeys  int           // keys typed by echoBench
	echoThink time.Duration // pause before each key
)

var bannerRE = regexp.MustCompile(`Dashboard:\s+(\S+)`)

func waitBanner(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	deadline := time.Now().Add(90 * time.Second)
	for sc.Scan() {
		if m := bannerRE.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], nil
		}
		if time.Now().After(deadline) {
			break
		}
	}
	return "", fmt.Errorf("coder server did not print its banner")
}

// firstByte opens the terminal websocket until a frame of output arrives
// (the server answers 502 until the agent is on the tailnet).
func firstByte(u *url.URL, token, agentID string, start time.Time) (time.Duration, error) {
	ws := *u
	ws.Scheme = "ws"
	ws.Path = "/api/v2/workspaceagents/" + agentID + "/pty"
	ws.RawQuery = url.Values{"reconnect": {uuid.NewString()}, "width": {"80"}, "height": {"24"}}.Encode()
	h := http.Header{}
	h.Set(sdk.SessionTokenHeader, token)
	for time.Since(start) < 60*time.Second {
		conn, _, err := websocket.DefaultDialer.Dial(ws.String(), h)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			typ, _, err := conn.ReadMessage()
			if err != nil {
				break
			}
			if typ == websocket.BinaryMessage {
				conn.Close()
				return time.Since(start), nil
			}
		}
		conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no output within 60 s")
}

// median returns the middle of ds (sorted in place).
func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// timeRuns runs cmd() n times and returns the durations.
func timeRuns(n int, cmd func() *exec.Cmd) ([]time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		c := cmd()
		start := time.Now()
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out)
		}
		ds = append(ds, time.Since(start))
	}
	return ds, nil
}

// throughput runs cmd, counts its stdout, and returns MB/s.
func throughput(cmd *exec.Cmd) (float64, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, _ := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}

const gib = "1073741824"

// sshBench measures coder ssh against a local OpenSSH server.
func sshBench(bin, dir, base string, c *sdk.Client, ag sdk.WorkspaceAgent, n int) error {
	cfg := filepath.Join(dir, "cli")
	os.MkdirAll(cfg, 0o700)
	os.WriteFile(filepath.Join(cfg, "url"), []byte(base), 0o600)
	os.WriteFile(filepath.Join(cfg, "session"), []byte(c.Token), 0o600)
	agent, err := startAgent(bin, dir, base, ag.Token)
	if err != nil {
		return err
	}
	defer stopAgent(agent)
	coder := func(args ...string) *exec.Cmd {
		return exec.Command(bin, append([]string{"--global-config", cfg}, args...)...)
	}
	// Warm: the agent is up and answering before the clock starts.
	deadline := time.Now().Add(60 * time.Second)
	for coder("ssh", "bench", "--", "true").Run() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("coder ssh never worked")
		}
		time.Sleep(200 * time.Millisecond)
	}
	ds, err := timeRuns(n, func() *exec.Cmd { return coder("ssh", "bench", "--", "true") })
	if err != nil {
		return err
	}
	ours := median(ds)
	sshMBs, err := throughput(coder("ssh", "bench", "--", "head", "-c", gib, "/dev/zero"))
	if err != nil {
		return err
	}
	var st []struct {
		Mbits float64 `json:"throughput_mbits"`
		Total bool    `json:"total"`
	}
	var raw float64
	if out, err := coder("speedtest", "bench", "-o", "json").Output(); err == nil && json.Unmarshal(out, &st) == nil && len(st) > 0 {
		raw = st[len(st)-1].Mbits / 8
	}
	peer, peerMBs, perr := openSSHPeer(dir, n)
	fmt.Printf("coder ssh ws -- true (cold CLI, warm agent): p50 %v over %d runs (target <= 500ms)\n", ours.Round(time.Millisecond), n)
	if perr != nil {
		fmt.Printf("OpenSSH peer unavailable: %v\n", perr)
	} else {
		fmt.Printf("ssh to a local OpenSSH server -- true: p50 %v over %d runs\n", peer.Round(time.Millisecond), n)
	}
	fmt.Printf("1 GiB over coder ssh: %.0f MB/s; raw tailnet (coder speedtest): %.0f MB/s; 1 GiB over local OpenSSH: %.0f MB/s\n", sshMBs, raw, peerMBs)
	fmt.Printf("JSON {\"bench\":\"ssh\",\"coder_true_p50_ms\":%d,\"openssh_true_p50_ms\":%d,\"coder_ssh_mb_s\":%.0f,\"tailnet_mb_s\":%.0f,\"openssh_mb_s\":%.0f}\n",
		ours.Milliseconds(), peer.Milliseconds(), sshMBs, raw, peerMBs)
	return nil
}

// openSSHPeer runs a throwaway sshd on loopback (Debian's openssh-server)
// and measures `ssh -- true` and 1 GiB through it.
func openSSHPeer(dir string, n int) (time.Duration, float64, error) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		return 0, 0, fmt.Errorf("no %s: apt-get install openssh-server", sshd)
	}
	d := filepath.Join(dir, "sshd")
	os.MkdirAll(d, 0o700)
	os.MkdirAll("/run/sshd", 0o755)
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(d, k)).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(d, "client.pub"))
	os.WriteFile(filepath.Join(d, "authorized_keys"), pub, 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	conf := fmt.Sprintf("Port %s\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\nStrictModes no\nPermitRootLogin prohibit-password\nUsePAM no\n",
		port, filepath.Join(d, "host"), filepath.Join(d, "authorized_keys"), filepath.Join(d, "pid"))
	os.WriteFile(filepath.Join(d, "sshd_config"), []byte(conf), 0o600)
	srv := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(d, "sshd_config"))
	if err := srv.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	ssh := func(args ...string) *exec.Cmd {
		return exec.Command("ssh", append([]string{"-i", filepath.Join(d, "client"), "-p", port, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "root@127.0.0.1"}, args...)...)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ssh("true").Run() != nil {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("local sshd did not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ds, err := timeRuns(n, func() *exec.Cmd { return ssh("true") })
	if err != nil {
		return 0, 0, err
	}
	mbs, err := throughput(ssh("head", "-c", gib, "/dev/zero"))
	return median(ds), mbs, err
}

// startAgent starts `coder agent` against the server at base.
func startAgent(bin, dir, base, token string) (*exec.Cmd, error) {
	a := exec.Command(bin, "agent")
	a.Env = append(os.Environ(), "CODER_AGENT_URL="+base, "CODER_AGENT_TOKEN="+token)
	a.Dir = dir
	return a, a.Start()
}

// stopAgent interrupts an agent and waits for it to exit.
func stopAgent(a *exec.Cmd) {
	a.Process.Signal(os.Interrupt)
	a.Wait()
}
