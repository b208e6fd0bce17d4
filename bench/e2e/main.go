// Command agentstart measures the time from `coder agent` start to the
// first byte the server's tailnet node gets from it: a real `coder server`
// (built-in PostgreSQL, loopback), a manual workspace, and N agent starts.
// Each run starts the agent process, then opens the web terminal websocket
// (which the server relays to the agent's PTY over its own tailnet node)
// until the first output frame arrives.
//
//	go run ./bench/agentstart -coder bin/coder [-n 10]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
)

func main() {
	bin := flag.String("coder", "bin/coder", "the coder binary")
	n := flag.Int("n", 10, "agent starts")
	flag.Parse()
	if err := run(*bin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "agentstart:", err)
		os.Exit(1)
	}
}

func run(bin string, n int) error {
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
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	srv.Stderr = io.Discard
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

	var times []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		agent := exec.Command(bin, "agent")
		agent.Env = append(os.Environ(), "CODER_AGENT_URL="+base, "CODER_AGENT_TOKEN="+ag.Token)
		agent.Dir = dir
		if err := agent.Start(); err != nil {
			return err
		}
		d, err := firstByte(u, c.Token, ag.ID, start)
		agent.Process.Signal(os.Interrupt)
		agent.Wait()
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
