package handlers_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// localServer is a `coder server` process with the local provisioner on a
// state directory that outlives it, restarted by the tests on the same
// directory, database and address.
type localServer struct {
	t      *testing.T
	cfgDir string
	env    []string
	addr   string
	srv    *testutil.Server
	owner  *sdk.Client
}

// startLocalServer starts a server whose local agents outlive it (the
// default, CODER_STOP_LOCAL_AGENTS_ON_EXIT=false) with an owner "owner"
// and a local template "local". Cleanup kills whatever agents are left.
func startLocalServer(t *testing.T) *localServer {
	t.Helper()
	dir := testutil.ProvisionerDir(t)
	s := &localServer{t: t, cfgDir: filepath.Join(dir, "server"),
		env: []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t), "CODER_STOP_LOCAL_AGENTS_ON_EXIT=false"}}
	t.Cleanup(s.killAgents) // before ProvisionerDir's cleanup removes the accounts
	s.srv = testutil.StartServer(t, s.env, "--config-dir", s.cfgDir)
	u, _ := url.Parse(s.srv.URL)
	s.addr = u.Host
	s.owner = &sdk.Client{URL: u, HTTP: &http.Client{Timeout: 30 * time.Second}}
	ctx := testContext(t)
	if err := s.owner.Request(ctx, http.MethodPost, "/api/v2/users/first", sdk.CreateFirstUserRequest{Username: "owner", Email: "owner@example.com", Password: "owner-password"}, nil); err != nil {
		t.Fatal(err)
	}
	var login sdk.LoginResponse
	if err := s.owner.Request(ctx, http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: "owner", Password: "owner-password"}, &login); err != nil {
		t.Fatal(err)
	}
	s.owner.Token = login.SessionToken
	if err := s.owner.Request(ctx, http.MethodPut, "/api/v2/templates/local", sdk.PushTemplateRequest{Source: localTemplate}, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// restart starts the server again on the same directory and address
// (after the test killed it).
func (s *localServer) restart() {
	s.t.Helper()
	s.srv = testutil.StartServer(s.t, s.env, "--config-dir", s.cfgDir, "--http-address", s.addr)
}

// agentPIDs lists the `coder agent` processes of workspace ws (their
// directory is under the workspace's).
func (s *localServer) agentPIDs(ws string) []int {
	s.t.Helper()
	under := filepath.Join(s.cfgDir, "workspaces", ws) + string(filepath.Separator)
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		zombie := bytes.Contains(stat, []byte(") Z "))
		if len(args) == 2 && string(args[1]) == "agent" && strings.HasPrefix(cwd, under) && !zombie {
			pids = append(pids, pid)
		}
	}
	return pids
}

// oneAgent waits until workspace ws has exactly one agent process and
// the API says it is connected, and returns its pid.
func (s *localServer) oneAgent(ws sdk.Workspace) int {
	s.t.Helper()
	var pid int
	testutil.Eventually(s.t, 90*time.Second, "one connected agent process", func() bool {
		pids := s.agentPIDs(ws.ID)
		w, err := s.owner.Workspace(testContext(s.t), ws.Name)
		if err != nil || len(pids) != 1 || w.Agents[0].Status != sdk.AgentConnected {
			return false
		}
		pid = pids[0]
		return true
	})
	return pid
}

func (s *localServer) noAgent(ws sdk.Workspace) {
	s.t.Helper()
	testutil.Eventually(s.t, 30*time.Second, "no agent process", func() bool { return len(s.agentPIDs(ws.ID)) == 0 })
}

// killAgents kills every agent process group the provisioner recorded.
func (s *localServer) killAgents() {
	files, _ := filepath.Glob(filepath.Join(s.cfgDir, "agents", "*.pid"))
	for _, f := range files {
		var rec struct {
			PID int `json:"pid"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &rec) == nil && rec.PID > 0 {
			syscall.Kill(-rec.PID, syscall.SIGKILL)
		}
	}
}

// TestBrowserLocalAgentSurvivesRestart: vim open in the web terminal of a
// local workspace; kill -TERM the server and start it again on the same
// config dir, then the same with kill -KILL: each time the page comes back
// to the very same screen (every cell, the cursor and the modes), the same
// agent process runs (adopted, not restarted; one per workspace), and
// typing goes on.
func TestBrowserLocalAgentSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := startLocalServer(t)
	var w sdk.Workspace
	if err := s.owner.Request(testContext(t), http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "local"}, &w); err != nil {
		t.Fatal(err)
	}
	pid := s.oneAgent(w)

	p := termPage{t: t, ctx: browsertest.New(t, 300*time.Second)}
	p.login(s.srv.URL, "owner", "owner-password")
	p.openTerminal(s.srv.URL)
	p.input("seq -f 'line %g of the notes' 200 > notes.txt; echo $((6*7))-made\r")
	p.waitLine("42-made")
	before := p.openVim("notes.txt")

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		s.srv.Kill(sig)
		p.waitFor("the page to notice the server went away", jsStatus, func(s string) bool { return strings.HasPrefix(s, "reconnecting") })
		p.wipe()
		s.restart()
		up := time.Now()
		p.wait = 90 * time.Second
		p.status("connected")
		p.wait = 0
		p.sameScreen("after "+sig.String()+" and a restart", before)
		t.Logf("after %v: the screen was back %v after the new server's banner", sig, time.Since(up).Round(10*time.Millisecond))
		if got := s.oneAgent(w); got != pid {
			t.Fatalf("after %v the agent is process %d, want %d adopted", sig, got, pid)
		}
	}
	p.input(":wq\r")
	p.waitFor("the shell after vim", jsScreen, func(s string) bool { return parseScreen(s).Buffer == "normal" })
	p.input("echo $(grep -c '^fresh line typed in vim$' notes.txt)-saved\r")
	p.waitLine("1-saved")
}

// TestLocalAgentLifecycleAcrossRestarts: an agent killed while the server
// is down is started again by the next server; `coder stop` and deletion
// stop an adopted agent (its process group, its record).
func TestLocalAgentLifecycleAcrossRestarts(t *testing.T) {
	t.Parallel()
	s := startLocalServer(t)
	ctx := testContext(t)
	var w sdk.Workspace
	if err := s.owner.Request(ctx, http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "local"}, &w); err != nil {
		t.Fatal(err)
	}
	pid := s.oneAgent(w)

	// Killed while the server is away: started again.
	s.srv.Kill(syscall.SIGTERM)
	if len(s.agentPIDs(w.ID)) != 1 {
		t.Fatalf("the agent did not outlive the server: %v", s.agentPIDs(w.ID))
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	s.noAgent(w)
	s.restart()
	next := s.oneAgent(w)
	if next == pid {
		t.Fatalf("agent pid %d unchanged", pid)
	}

	// Adopted, then stopped.
	s.srv.Kill(syscall.SIGKILL)
	s.restart()
	if got := s.oneAgent(w); got != next {
		t.Fatalf("agent %d, want %d adopted", got, next)
	}
	if _, err := s.owner.StopWorkspace(testContext(t), w.ID); err != nil {
		t.Fatal(err)
	}
	s.noAgent(w)
	if files, _ := filepath.Glob(filepath.Join(s.cfgDir, "agents", "*.pid")); len(files) != 0 {
		t.Errorf("records left after stop: %v", files)
	}

	// Started, adopted, deleted.
	if _, err := s.owner.StartWorkspace(testContext(t), w.ID); err != nil {
		t.Fatal(err)
	}
	started := s.oneAgent(w)
	s.srv.Kill(syscall.SIGTERM)
	s.restart()
	if got := s.oneAgent(w); got != started {
		t.Fatalf("agent %d, want %d adopted", got, started)
	}
	if err := s.owner.DeleteWorkspace(testContext(t), w.ID); err != nil {
		t.Fatal(err)
	}
	s.noAgent(w)
}

// TestLocalAgentsCtrlC: Ctrl+C (SIGINT) leaves local agents running by
// default, and the next server adopts them; with
// CODER_STOP_LOCAL_AGENTS_ON_EXIT=true (as make run sets it) Ctrl+C stops
// them.
func TestLocalAgentsCtrlC(t *testing.T) {
	t.Parallel()
	s := startLocalServer(t)
	var w sdk.Workspace
	if err := s.owner.Request(testContext(t), http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "local"}, &w); err != nil {
		t.Fatal(err)
	}
	pid := s.oneAgent(w)
	s.srv.Stop() // SIGINT, a clean exit
	if got := s.agentPIDs(w.ID); len(got) != 1 || got[0] != pid {
		t.Fatalf("after Ctrl+C the agents are %v, want %d still running", got, pid)
	}
	s.env = append(s.env, "CODER_STOP_LOCAL_AGENTS_ON_EXIT=true")
	s.restart()
	if got := s.oneAgent(w); got != pid {
		t.Fatalf("agent %d, want %d adopted", got, pid)
	}
	s.srv.Stop()
	s.noAgent(w)
}
