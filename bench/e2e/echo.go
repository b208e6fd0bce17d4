package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/creack/pty"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
)

// echoBench types n keys, think apart, into bash through the web
// terminal's websocket (server, tailnet, agent, PTY) and into bash on a
// local PTY, and prints the round trip until the echo arrives: the part of
// a browser's keystroke echo that is not xterm.js drawing. The difference
// is what the relay and the two tailnet crossings cost.
func echoBench(bin, dir, base string, u *url.URL, c *sdk.Client, ag sdk.WorkspaceAgent, n int, think time.Duration) error {
	agent, err := startAgent(bin, dir, base, ag.Token)
	if err != nil {
		return err
	}
	defer stopAgent(agent)

	ws := *u
	ws.Scheme = "ws"
	ws.Path = "/api/v2/workspaceagents/" + ag.ID + "/pty"
	ws.RawQuery = url.Values{"reconnect": {uuid.NewString()}, "width": {"120"}, "height": {"40"},
		"command": {"bash --noprofile --norc"}}.Encode()
	h := http.Header{}
	h.Set(sdk.SessionTokenHeader, c.Token)
	var conn *websocket.Conn
	wsType := func(k string) error {
		return conn.WriteJSON(map[string]string{"data": k})
	}
	wsWait := func(want string) error {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		return readUntil(want, func() ([]byte, error) {
			_, b, err := conn.ReadMessage()
			return b, err
		})
	}
	// Until the agent is up and the prompt answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		conn, _, err = websocket.DefaultDialer.Dial(ws.String(), h)
		if err == nil {
			err = wsType("echo rea\"\"dy\r")
		}
		if err == nil {
			err = wsWait("ready")
		}
		if err == nil {
			break
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("echo: no terminal within 60 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer conn.Close()
	ours, err := typeKeys(n, think, wsType, wsWait)
	if err != nil {
		return err
	}

	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 120, Rows: 40})
	if err != nil {
		return err
	}
	defer func() { ptmx.Close(); cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 4096)
	ptyType := func(k string) error { _, err := ptmx.Write([]byte(k)); return err }
	ptyWait := func(want string) error {
		ptmx.SetReadDeadline(time.Now().Add(10 * time.Second))
		return readUntil(want, func() ([]byte, error) {
			m, err := ptmx.Read(buf)
			return buf[:m], err
		})
	}
	if err := ptyType("echo rea\"\"dy\r"); err != nil {
		return err
	}
	if err := ptyWait("ready"); err != nil {
		return fmt.Errorf("echo: local bash never answered: %w", err)
	}
	local, err := typeKeys(n, think, ptyType, ptyWait)
	if err != nil {
		return err
	}
	p := func(ds []time.Duration, q float64) float64 {
		return float64(ds[int(float64(len(ds)-1)*q)]) / float64(time.Millisecond)
	}
	fmt.Printf("keystroke echo, %d keys %v apart: web terminal websocket (server, tailnet, agent, bash) p50 %.2f ms p99 %.2f ms; bash on a local PTY p50 %.2f ms p99 %.2f ms\n",
		n, think, p(ours, 0.5), p(ours, 0.99), p(local, 0.5), p(local, 0.99))
	fmt.Printf("JSON {\"bench\":\"echo_rtt\",\"keys\":%d,\"ws_p50_ms\":%.2f,\"ws_p99_ms\":%.2f,\"local_pty_p50_ms\":%.2f,\"local_pty_p99_ms\":%.2f}\n",
		n, p(ours, 0.5), p(ours, 0.99), p(local, 0.5), p(local, 0.99))
	return nil
}

// typeKeys types n letters, think apart, each followed by waiting for its
// echo, then erases them, and returns the sorted round trips.
func typeKeys(n int, think time.Duration, typ func(string) error, wait func(string) error) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		k := string(rune('a' + i%26))
		if i%40 == 39 {
			// Keep the line short: erase it (Ctrl+U) and wait for the
			// redraw, off the clock.
			if err := typ("\x15"); err != nil {
				return nil, err
			}
			time.Sleep(think)
		}
		time.Sleep(think)
		t0 := time.Now()
		if err := typ(k); err != nil {
			return nil, err
		}
		if err := wait(k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds, nil
}

// readUntil calls read until the bytes read so far contain want.
func readUntil(want string, read func() ([]byte, error)) error {
	var got []byte
	for !bytes.Contains(got, []byte(want)) {
		b, err := read()
		if err != nil {
			return err
		}
		got = append(got, b...)
	}
	return nil
}
