package handlers_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/terminal"
)

// newLimitedTermEnv is newTermEnv with an agent that keeps at most
// maxSessions terminal sessions.
func newLimitedTermEnv(t *testing.T, maxSessions int) *termEnv {
	t.Helper()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	ts.pushTemplate(t, "base", testTemplate)
	e := &termEnv{ts: ts, ws: createWorkspace(t, ts.Owner, "dev", "base"), agentReg: prometheus.NewRegistry()}
	m := terminal.NewMetrics()
	e.agentReg.MustRegister(m)
	a, err := agent.New(agent.Options{
		URL: ts.URL, Token: e.ws.Agents[0].Token, Logger: testLogger(t).With("side", "agent"), Version: "v-agent",
		StateDir: t.TempDir(), Directory: t.TempDir(), TerminalMetrics: m, MaxTerminalSessions: maxSessions,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	e.waitAgent(t, "dev", "connected")
	return e
}

// TestTerminalSessionLimit (issue 12): an agent with MaxTerminalSessions 2
// refuses a third distinct session with close code 1013 and a reason the
// page shows, while reattaching to an existing session still works; once a
// session ends there is room again, and a 65535×65535 request gets a PTY
// clamped to terminal.MaxWidth×terminal.MaxHeight (1000×500).
func TestTerminalSessionLimit(t *testing.T) {
	e := newLimitedTermEnv(t, 2)

	id1, id2 := uuid.NewString(), uuid.NewString()
	b1 := e.attach(t, id1, nil)
	b1.Type("echo one-$((1+1))\r")
	b1.WaitText("one-2")
	b2 := e.attach(t, id2, nil)
	b2.Type("echo two-$((1+2))\r")
	b2.WaitText("two-3")

	// A third session is refused with a reason, not a hang or a bare close.
	b3 := e.attach(t, uuid.NewString(), nil)
	exit, code, reason := b3.WaitClosed()
	if exit != nil || code != 1013 || reason != terminal.ReasonTooManySessions {
		t.Fatalf("third session: exit %v, close %d %q; want close 1013 %q", exit, code, reason, terminal.ReasonTooManySessions)
	}

	// Reattaching to session 1 (a second tab, then a reload) is not a new
	// session.
	again := e.attach(t, id1, nil)
	again.Type("echo again-$((2+2))\r")
	again.WaitText("again-4")
	if again.NewSessions() != 0 {
		t.Errorf("reattach to session 1 started a new session")
	}
	b1.Close()
	again.Close()
	reload := e.attach(t, id1, nil)
	reload.Type("echo reload-$((2+3))\r")
	reload.WaitText("reload-5")

	// Session 2 ends: a new session fits, with its size clamped.
	b2.Type("exit\r")
	if exit, _, _ := b2.WaitClosed(); exit == nil {
		t.Fatal("session 2 closed without its exit code")
	}
	testutil.Eventually(t, 30*time.Second, "the agent to forget session 2", func() bool {
		return metric(t, e.agentReg, "coder_terminal_sessions", nil) == 1
	})
	big := e.attach(t, uuid.NewString(), url.Values{"width": {"65535"}, "height": {"65535"}})
	big.Type("stty size\r")
	big.WaitText("\r500 1000\r\n")
	if big.NewSessions() != 1 {
		t.Errorf("the session after session 2 ended: %d new-session notices, want 1", big.NewSessions())
	}
}
