package handlers_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// startScriptAgent runs an agent of the workspace off the tailnet (the
// startup script needs only the control connection), logging to logDir.
func startScriptAgent(t *testing.T, ts *testServer, token, dir, logDir string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{URL: ts.URL, Token: token, Logger: testLogger(t).With("side", "agent"),
		Directory: dir, LogDir: logDir, NoTailnet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// waitStartup waits until the workspace's first agent reports state.
func waitStartup(t *testing.T, c *sdk.Client, workspace, state string) sdk.WorkspaceAgent {
	t.Helper()
	var ag sdk.WorkspaceAgent
	testutil.Eventually(t, 30*time.Second, "startup state "+state, func() bool {
		w, err := c.Workspace(testContext(t), workspace)
		if err != nil || len(w.Agents) == 0 {
			return false
		}
		ag = w.Agents[0]
		return ag.StartupState == state
	})
	return ag
}

// pageText is the workspace page as the owner's browser gets it.
func pageText(t *testing.T, b *browser, path string) string {
	t.Helper()
	resp := b.do("GET", path, nil, nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return html.UnescapeString(string(body))
}

func TestStartupScriptReady(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "script", `provisioner: manual
agents:
  - name: main
    startup_script: |
      echo "hello from $CODER_WORKSPACE_OWNER_NAME/$CODER_WORKSPACE_NAME.$CODER_WORKSPACE_AGENT_NAME in $(pwd)"
      echo "to stderr" >&2
      echo "dashboard at $CODER_ACCESS_URL"
      echo run >> runs
      nohup sh -c 'echo $$ > bg.pid; exec sleep 300' >/dev/null 2>&1 &
      i=0; while [ $i -lt 30 ]; do echo "line $i"; i=$((i+1)); done
`)
	w := createWorkspace(t, ts.Owner, "dev", "script")
	if st := w.Agents[0].StartupState; st != sdk.StartupPending {
		t.Errorf("before the agent connects: startup_state %q, want pending", st)
	}
	dir, logDir := t.TempDir(), t.TempDir()
	a := startScriptAgent(t, ts, w.Agents[0].Token, dir, logDir)
	waitStartup(t, ts.Owner, "dev", sdk.StartupReady)

	b := loggedIn(t, ts, "owner", "owner-password")
	page := pageText(t, b, "/@owner/dev")
	for _, want := range []string{
		"hello from owner/dev.main in " + dir, "to stderr", "line 0", "line 29", "dashboard at " + ts.URL.String(),
		`data-testid="startup-state" data-state="ready"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("workspace page lacks %q", want)
		}
	}
	// The agent's log file has the same output, for its user alone.
	logPath := filepath.Join(logDir, "coder-startup-script-"+w.Agents[0].ID+".log")
	st, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "line 29\n") {
		t.Errorf("log file: %q", b)
	}

	// A new agent start runs the script again and replaces the log;
	// reconnections of one agent do not (the first agent ran it once).
	// What the script left running in the background ends with the agent.
	var bgPid int
	testutil.Eventually(t, 10*time.Second, "the background process's pid", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "bg.pid"))
		bgPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return bgPid > 0
	})
	if err := syscall.Kill(bgPid, 0); err != nil {
		t.Fatalf("the background process is not running: %v", err)
	}
	a.Close()
	testutil.Eventually(t, 10*time.Second, "the background process ended", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", bgPid))
		return err != nil
	})
	if runs, _ := os.ReadFile(filepath.Join(dir, "runs")); string(runs) != "run\n" {
		t.Errorf("runs after the first agent: %q", runs)
	}
	startScriptAgent(t, ts, w.Agents[0].Token, dir, logDir)
	testutil.Eventually(t, 30*time.Second, "the second run's output", func() bool {
		runs, _ := os.ReadFile(filepath.Join(dir, "runs"))
		return string(runs) == "run\nrun\n"
	})
	waitStartup(t, ts.Owner, "dev", sdk.StartupReady)
	testutil.Eventually(t, 30*time.Second, "the log replaced, not appended", func() bool {
		return strings.Count(pageText(t, b, "/@owner/dev"), "line 29") == 1
	})

	// Another member cannot see the log: the workspace is not theirs.
	bob := ts.member(t, "bob")
	_ = bob
	mb := loggedIn(t, ts, "bob", "bob-password")
	if resp := mb.do("GET", "/@owner/dev", nil, nil); resp.StatusCode == http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(body), "line 29") {
			t.Error("another member sees the owner's startup log")
		}
	}
}

func TestStartupScriptError(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "script", `provisioner: manual
agents:
  - name: main
    startup_script: |
      echo "about to fail" >&2
      exit 3
`)
	w := createWorkspace(t, ts.Owner, "dev", "script")
	startScriptAgent(t, ts, w.Agents[0].Token, t.TempDir(), t.TempDir())
	ag := waitStartup(t, ts.Owner, "dev", sdk.StartupError)
	if ag.StartupExitCode != 3 {
		t.Errorf("exit code %d, want 3", ag.StartupExitCode)
	}
	page := pageText(t, loggedIn(t, ts, "owner", "owner-password"), "/@owner/dev")
	for _, want := range []string{"about to fail", "failed with exit code 3", `data-testid="startup-log" open`} {
		if !strings.Contains(page, want) {
			t.Errorf("workspace page lacks %q", want)
		}
	}
}

// TestStartupLogHostileAgent is an agent (whoever holds its token: the
// workspace's user) sending what the real agent never would: NUL bytes,
// invalid UTF-8, a line far beyond the limit, an unknown state, garbage.
// The server stores clean, bounded lines and keeps the connection.
func TestStartupLogHostileAgent(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "script", "provisioner: manual\nagents:\n  - name: main\n    startup_script: echo hi\n")
	w := createWorkspace(t, ts.Owner, "dev", "script")
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+ts.URL.Host+sdk.AgentConnectPath, tokenHeader(w.Agents[0].Token))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(sdk.AgentHello{Version: "v"}); err != nil {
		t.Fatal(err)
	}
	var m sdk.AgentManifest
	if err := conn.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	if m.StartupScript != "echo hi" {
		t.Errorf("manifest startup script %q", m.StartupScript)
	}
	for _, msg := range []string{
		`not json`,
		`{"type":"startup_state","state":"pwned","exit_code":1}`,
		`{"type":"startup_log","lines":"not a list"}`,
		`{"type":"startup_state","state":"running"}`,
		`{"type":"startup_log","reset":true,"lines":["nul\u0000byte","bad ` + "\xff" + ` utf8","` + strings.Repeat("x", 40000) + `"]}`,
		`{"type":"startup_state","state":"error","exit_code":-1}`,
	} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	ag := waitStartup(t, ts.Owner, "dev", sdk.StartupError)
	if ag.StartupExitCode != -1 {
		t.Errorf("exit code %d", ag.StartupExitCode)
	}
	s, err := ts.DB.StartupOf(testContext(t), w.Agents[0].ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Lines) != 3 || s.Lines[0] != "nul\uFFFDbyte" || s.Lines[1] != "bad \uFFFD utf8" || len(s.Lines[2]) != sdk.StartupLogMaxLineBytes {
		t.Errorf("stored lines: %q…", s.Lines[:min(2, len(s.Lines))])
	}
	// The connection is still the agent's: it is connected.
	if w, _ := ts.Owner.Workspace(testContext(t), "dev"); w.Agents[0].Status != sdk.AgentConnected {
		t.Errorf("agent status %q after bad messages", w.Agents[0].Status)
	}
}
