package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// termEnv is a real server with its tailnet on loopback, a workspace "dev"
// and its agent (in process, on the tailnet, with real PTYs).
type termEnv struct {
	ts *testServer
	// ws is the owner's workspace; ws.Agents[0] runs.
	ws sdk.Workspace
	// agentReg holds the agent's terminal metrics.
	agentReg *prometheus.Registry
}

func newTermEnv(t *testing.T, opts ...func(*testOptions)) *termEnv {
	t.Helper()
	ts := newTestServer(t, append([]func(*testOptions){func(o *testOptions) { o.tailnet = true }}, opts...)...)
	ts.pushTemplate(t, "base", testTemplate)
	e := &termEnv{ts: ts, ws: createWorkspace(t, ts.Owner, "dev", "base"), agentReg: prometheus.NewRegistry()}
	m := terminal.NewMetrics()
	e.agentReg.MustRegister(m)
	startAgent(t, ts, e.ws.Agents[0].Token, m)
	e.waitAgent(t, "dev", sdk.AgentConnected)
	return e
}

// startAgent runs an agent in process; it stops at cleanup (or when the
// returned func is called).
func startAgent(t *testing.T, ts *testServer, token string, m *terminal.Metrics) (stop func()) {
	t.Helper()
	return startAgentIn(t, ts, token, t.TempDir(), m)
}

// startAgentIn is startAgent with the agent's directory (where shells
// start).
func startAgentIn(t *testing.T, ts *testServer, token, dir string, m *terminal.Metrics) (stop func()) {
	t.Helper()
	a, err := agent.New(agent.Options{
		URL: ts.URL, Token: token, Logger: testLogger(t).With("side", "agent"), Version: "v-agent",
		StateDir: t.TempDir(), Directory: dir, TerminalMetrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return func() { a.Close() }
}

func (e *termEnv) waitAgent(t *testing.T, workspace, status string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "agent of "+workspace+" "+status, func() bool {
		w, err := e.ts.Owner.Workspace(testContext(t), workspace)
		return err == nil && w.Agents[0].Status == status
	})
}

// ptyURL is the websocket URL of agentID's terminal with query q.
func (e *termEnv) ptyURL(agentID string, q url.Values) string {
	return "ws://" + e.ts.URL.Host + "/api/v2/workspaceagents/" + agentID + "/pty?" + q.Encode()
}

func tokenHeader(token string) http.Header {
	return http.Header{sdk.SessionTokenHeader: {token}}
}

// attach opens the owner's terminal session id on the workspace's agent.
func (e *termEnv) attach(t *testing.T, id string, extra url.Values) *terminaltest.Browser {
	t.Helper()
	q := url.Values{"reconnect": {id}}
	for k, v := range extra {
		q[k] = v
	}
	return terminaltest.DialBrowser(t, e.ptyURL(e.ws.Agents[0].ID, q), terminaltest.BrowserOptions{Header: tokenHeader(e.ts.Owner.Token)})
}

// dialRefused dials a websocket that must be refused before the upgrade,
// and returns the status and the JSON message of the refusal.
func dialRefused(t *testing.T, u string, h http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, h)
	if err == nil {
		ws.Close()
		t.Fatalf("dial %s: upgraded, want a refusal", u)
	}
	if resp == nil {
		t.Fatalf("dial %s: %v (no response)", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r sdk.Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("dial %s: status %d, body %q is not a JSON error", u, resp.StatusCode, b)
	}
	return resp.StatusCode, r.Message
}

// metric sums the samples of the family name whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestTerminalThroughTailnet types into a real shell on a real agent over
// the real tailnet through /api/v2/workspaceagents/{id}/pty, re-attaches
// to the same session, and checks the metrics of server and agent.
func TestTerminalThroughTailnet(t *testing.T) {
	t.Parallel()
	e := newTermEnv(t)
	reg := e.ts.Reg
	id := uuid.NewString()

	b := e.attach(t, id, url.Values{"width": {"100"}, "height": {"30"}})
	b.Type("echo $((6*7))-pty; stty size; echo term=$TERM; tty\r")
	b.WaitText("42-pty")
	b.WaitText("30 100")
	b.WaitText("term=xterm-256color")
	b.WaitText("/dev/pts/")

	// Metrics while attached: one terminal through the relay, one session
	// and one attach on the agent, bytes both ways.
	if got := metric(t, reg, "coder_terminal_open", nil); got != 1 {
		t.Errorf("coder_terminal_open = %v, want 1", got)
	}
	in := metric(t, reg, "coder_terminal_bytes_total", map[string]string{"direction": "in"})
	if want := float64(len("echo $((6*7))-pty; stty size; echo term=$TERM; tty\r")); in != want {
		t.Errorf("bytes in = %v, want %v", in, want)
	}
	// What the client has received before the metric is read is a lower
	// bound: the relay counts before it writes, and more (the prompt) may
	// still be arriving.
	received := b.Total()
	out := metric(t, reg, "coder_terminal_bytes_total", map[string]string{"direction": "out"})
	if out < float64(received) || out == 0 {
		t.Errorf("bytes out = %v, want at least the %d the client received", out, received)
	}
	if got := metric(t, e.agentReg, "coder_terminal_sessions", nil); got != 1 {
		t.Errorf("agent sessions = %v, want 1", got)
	}
	if got := metric(t, e.agentReg, "coder_terminal_attaches", nil); got != 1 {
		t.Errorf("agent attaches = %v, want 1", got)
	}

	// A second client on the same id (in upper case) shares the session and
	// starts from its screen; both see new output.
	b2 := e.attach(t, strings.ToUpper(id), nil)
	b2.WaitText("42-pty")
	testutil.Eventually(t, 10*time.Second, "two terminals and attaches", func() bool {
		return metric(t, reg, "coder_terminal_open", nil) == 2 && metric(t, e.agentReg, "coder_terminal_attaches", nil) == 2
	})
	b2.Type("echo $((7*7))-both\r")
	b.WaitText("49-both")
	b2.WaitText("49-both")

	// Closing both leaves the session running on the agent, with nobody
	// attached; a new attach finds the screen.
	b.Close()
	b2.Close()
	testutil.Eventually(t, 10*time.Second, "terminals closed", func() bool {
		return metric(t, reg, "coder_terminal_open", nil) == 0 && metric(t, e.agentReg, "coder_terminal_attaches", nil) == 0
	})
	if got := metric(t, e.agentReg, "coder_terminal_sessions", nil); got != 1 {
		t.Errorf("agent sessions after detaching = %v, want 1", got)
	}
	b3 := e.attach(t, id, nil)
	b3.WaitText("49-both")

	// The process exits: exit code, then close 1000; the session is gone.
	b3.Type("exit 7\r")
	code, closeCode, _ := b3.WaitClosed()
	if code == nil || *code != 7 || closeCode != websocket.CloseNormalClosure {
		t.Fatalf("after exit 7: exit code %v, close %d; want 7 and 1000", code, closeCode)
	}
	testutil.Eventually(t, 10*time.Second, "session gone", func() bool { return metric(t, e.agentReg, "coder_terminal_sessions", nil) == 0 })
}

// TestTerminalBadInput sends each kind of bad input of issue 6 next to a
// healthy session, which must keep working after every case.
func TestTerminalBadInput(t *testing.T) {
	t.Parallel()
	e := newTermEnv(t)
	agentID := e.ws.Agents[0].ID
	victimID := uuid.NewString()
	victim := e.attach(t, victimID, nil)
	victim.Type("echo $((100+1))-victim\r")
	victim.WaitText("101-victim")
	n := 0
	victimAlive := func(t *testing.T) {
		t.Helper()
		n++
		victim.Type(fmt.Sprintf("echo $((%d+1000))-alive\r", n))
		victim.WaitText(fmt.Sprintf("%d-alive", n+1000))
	}
	member := e.ts.member(t, "mallory")

	closes := []struct {
		name       string
		typ        int
		msg        string
		wantCode   int
		wantReason string
	}{
		{"non-JSON frame", websocket.TextMessage, "ls -la\r", websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"JSON that is not an object", websocket.TextMessage, `["data","ls"]`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"data of the wrong type", websocket.TextMessage, `{"data":42}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"width without height", websocket.TextMessage, `{"width":80}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"size above 65535", websocket.TextMessage, `{"width":65536,"height":24}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"negative size", websocket.TextMessage, `{"width":-1,"height":24}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"oversized frame", websocket.TextMessage, `{"data":"` + strings.Repeat("x", terminal.MaxInputFrame) + `"}`, websocket.CloseMessageTooBig, "larger than 64 KiB"},
		{"binary frame", websocket.BinaryMessage, `{"data":"ls\r"}`, websocket.CloseUnsupportedData, "not binary"},
	}
	for _, c := range closes {
		t.Run(c.name, func(t *testing.T) {
			b := e.attach(t, uuid.NewString(), nil)
			b.WaitFor(terminaltest.WaitLong, "the first screen", func(p []byte) bool { return len(p) > 0 })
			b.SendRaw(c.typ, []byte(c.msg))
			exit, code, reason := b.WaitClosed()
			if exit != nil || code != c.wantCode || !strings.Contains(reason, c.wantReason) {
				t.Errorf("closed with exit %v, code %d %q; want code %d with %q", exit, code, reason, c.wantCode, c.wantReason)
			}
			victimAlive(t)
		})
	}

	// Sizes of 0 mean the default; 65535 is clamped to the maximum, both in
	// the URL and in resize messages.
	sizes := []struct {
		name   string
		query  url.Values
		resize string // sent after the first screen, if not empty
		want   string // `stty size`: rows cols
	}{
		{"URL size 0", url.Values{"width": {"0"}, "height": {"0"}}, "", "24 80"},
		{"URL size 65535", url.Values{"width": {"65535"}, "height": {"65535"}}, "", "500 1000"},
		{"resize to 0 is ignored", url.Values{"width": {"90"}, "height": {"20"}}, `{"width":0,"height":0}`, "20 90"},
		{"resize to 65535 is clamped", url.Values{"width": {"90"}, "height": {"20"}}, `{"width":65535,"height":65535}`, "500 1000"},
	}
	for _, c := range sizes {
		t.Run(c.name, func(t *testing.T) {
			b := e.attach(t, uuid.NewString(), c.query)
			b.WaitFor(terminaltest.WaitLong, "the first screen", func(p []byte) bool { return len(p) > 0 })
			if c.resize != "" {
				b.SendRaw(websocket.TextMessage, []byte(c.resize))
			}
			b.Type("stty size | tr ' ' '_'\r")
			b.WaitText(strings.ReplaceAll(c.want, " ", "_"))
			victimAlive(t)
		})
	}

	// Refused before the upgrade, with a JSON reason.
	base := func(id string, q url.Values) string {
		return e.ptyURL(id, q)
	}
	refusals := []struct {
		name       string
		url        string
		header     http.Header
		wantStatus int
		wantMsg    string
	}{
		{"missing reconnect id", base(agentID, nil), tokenHeader(e.ts.Owner.Token), 400, "has no reconnect ID"},
		{"malformed reconnect id", base(agentID, url.Values{"reconnect": {"not-a-uuid"}}), tokenHeader(e.ts.Owner.Token), 400, "reconnect ID is not a UUID"},
		{"reconnect id with a suffix", base(agentID, url.Values{"reconnect": {victimID + "0"}}), tokenHeader(e.ts.Owner.Token), 400, "reconnect ID is not a UUID"},
		{"reconnect id in braces", base(agentID, url.Values{"reconnect": {"{" + victimID[1:35] + "}"}}), tokenHeader(e.ts.Owner.Token), 400, "reconnect ID is not a UUID"},
		{"width 65536", base(agentID, url.Values{"reconnect": {victimID}, "width": {"65536"}}), tokenHeader(e.ts.Owner.Token), 400, "width is not a whole number"},
		{"negative height", base(agentID, url.Values{"reconnect": {victimID}, "height": {"-1"}}), tokenHeader(e.ts.Owner.Token), 400, "height is not a whole number"},
		{"NUL in command", base(agentID, url.Values{"reconnect": {uuid.NewString()}, "command": {"ls\x00"}}), tokenHeader(e.ts.Owner.Token), 400, "NUL"},
		{"cross-origin websocket", base(agentID, url.Values{"reconnect": {victimID}}), http.Header{"Origin": {"https://evil.example"}, sdk.SessionTokenHeader: {e.ts.Owner.Token}}, 403, "origin"},
		{"another port of the same host", base(agentID, url.Values{"reconnect": {victimID}}), http.Header{"Origin": {"http://127.0.0.1:1"}, sdk.SessionTokenHeader: {e.ts.Owner.Token}}, 403, "origin"},
		{"not logged in", base(agentID, url.Values{"reconnect": {victimID}}), nil, 401, "not logged in"},
		{"someone else's agent", base(agentID, url.Values{"reconnect": {victimID}}), tokenHeader(member.Token), 404, "not found"},
		{"someone else's agent, cross-origin", base(agentID, url.Values{"reconnect": {victimID}}), http.Header{"Origin": {"https://evil.example"}, sdk.SessionTokenHeader: {member.Token}}, 404, "not found"},
		{"unknown agent", base(uuid.NewString(), url.Values{"reconnect": {victimID}}), tokenHeader(e.ts.Owner.Token), 404, "not found"},
		{"malformed agent id", base("main", url.Values{"reconnect": {victimID}}), tokenHeader(e.ts.Owner.Token), 404, "not found"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			status, msg := dialRefused(t, c.url, c.header)
			if status != c.wantStatus || !strings.Contains(strings.ToLower(msg), strings.ToLower(c.wantMsg)) {
				t.Errorf("refused with %d %q; want %d with %q", status, msg, c.wantStatus, c.wantMsg)
			}
			victimAlive(t)
		})
	}

	// The dashboard's own origin is allowed (the browser tests use it).
	t.Run("same origin", func(t *testing.T) {
		h := tokenHeader(e.ts.Owner.Token)
		h.Set("Origin", e.ts.URL.String())
		b := terminaltest.DialBrowser(t, e.ptyURL(agentID, url.Values{"reconnect": {victimID}}), terminaltest.BrowserOptions{Header: h})
		b.WaitText("101-victim")
		b.Close()
		victimAlive(t)
	})

	if got := metric(t, e.agentReg, "coder_terminal_sessions", nil); got < 1 {
		t.Errorf("agent sessions = %v; the victim's session ended", got)
	}
}

// TestTerminalAgentOffline opens the terminal of an agent that never
// connected and of one that went away: the websocket closes at once with
// 1011 and a reason (the page shows it and retries), and a session on
// another workspace's agent is not harmed.
func TestTerminalAgentOffline(t *testing.T) {
	t.Parallel()
	e := newTermEnv(t)
	victim := e.attach(t, uuid.NewString(), nil)
	victim.Type("echo $((2+3))-victim\r")
	victim.WaitText("5-victim")

	never := createWorkspace(t, e.ts.Owner, "never", "base")
	gone := createWorkspace(t, e.ts.Owner, "gone", "base")
	stop := startAgent(t, e.ts, gone.Agents[0].Token, nil)
	e.waitAgent(t, "gone", sdk.AgentConnected)
	b := terminaltest.DialBrowser(t, e.ptyURL(gone.Agents[0].ID, url.Values{"reconnect": {uuid.NewString()}}), terminaltest.BrowserOptions{Header: tokenHeader(e.ts.Owner.Token)})
	b.Type("echo $((3+4))-gone\r")
	b.WaitText("7-gone")
	stop()
	if _, code, _ := b.WaitClosed(); code != websocket.CloseInternalServerErr {
		t.Errorf("agent stopped under an open terminal: close %d, want 1011", code)
	}
	e.waitAgent(t, "gone", sdk.AgentDisconnected)

	for _, w := range []sdk.Workspace{never, gone} {
		t.Run(w.Name, func(t *testing.T) {
			start := time.Now()
			b := terminaltest.DialBrowser(t, e.ptyURL(w.Agents[0].ID, url.Values{"reconnect": {uuid.NewString()}}), terminaltest.BrowserOptions{Header: tokenHeader(e.ts.Owner.Token)})
			exit, code, reason := b.WaitClosed()
			if exit != nil || code != websocket.CloseInternalServerErr || !strings.Contains(reason, "agent") {
				t.Errorf("closed with exit %v, code %d %q; want 1011 naming the agent", exit, code, reason)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("an offline agent took %v to report; want at once", d)
			}
		})
	}
	victim.Type("echo $((3+3))-still\r")
	victim.WaitText("6-still")
}
