package provision

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
)

// The agents of these tests dial a loopback port where nothing listens:
// they keep retrying, which is all the process tests need.
const deadURL = "http://127.0.0.1:1"

func newProcess(t *testing.T, dir string) *Process {
	t.Helper()
	return &Process{Binary: testutil.CoderBinary(t), Dir: dir, Logger: testutil.Logger(t, slog.LevelDebug), NoIsolation: true}
}

func testAgent(url string) Agent {
	return Agent{ID: "5f0c7a4e-0000-4000-8000-0000000000a1", WorkspaceID: "5f0c7a4e-0000-4000-8000-0000000000b1", Name: "main", URL: url, Token: "secret-token"}
}

// agentPIDs lists the `coder agent` processes whose directory is la's
// under dir.
func agentPIDs(t *testing.T, dir string, la Agent) []int {
	t.Helper()
	want := filepath.Join(dir, "workspaces", la.WorkspaceID, la.Name)
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
		if _, zombie, err := procStat(pid); err == nil && !zombie && len(args) == 2 && string(args[1]) == "agent" && cwd == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitOneAgent waits until exactly one agent of la runs, with its record
// naming it, and returns its pid.
func waitOneAgent(t *testing.T, dir string, la Agent) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, 30*time.Second, "one recorded agent process", func() bool {
		pids := agentPIDs(t, dir, la)
		rec, err := readRecord(filepath.Join(dir, "agents", la.ID+".pid"))
		if err != nil || len(pids) != 1 || rec.PID != pids[0] || !rec.alive() {
			return false
		}
		pid = pids[0]
		return true
	})
	return pid
}

func waitNoAgent(t *testing.T, dir string, la Agent) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "no agent process", func() bool { return len(agentPIDs(t, dir, la)) == 0 })
	if _, err := os.Stat(filepath.Join(dir, "agents", la.ID+".pid")); !os.IsNotExist(err) {
		t.Errorf("the agent's record outlived it: %v", err)
	}
}

// TestDetachThenAdopt: an agent runs in a session of its own (so a Ctrl+C
// or SIGTERM at the server's terminal or group does not reach it); Detach
// leaves it running; the next Process on the directory adopts that very
// process (no second one, its token file untouched), and its StopAgent
// stops it. The next Process may run another binary (an upgrade).
func TestDetachThenAdopt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	la := testAgent(deadURL)
	p1 := newProcess(t, dir)
	if err := p1.StartAgent(context.Background(), la); err != nil {
		t.Fatal(err)
	}
	pid := waitOneAgent(t, dir, la)
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:])
	if string(f[2]) != strconv.Itoa(pid) || string(f[3]) != strconv.Itoa(pid) {
		t.Errorf("agent %d is in group %s, session %s; want its own session", pid, f[2], f[3])
	}
	p1.Detach()
	if err := p1.StartAgent(context.Background(), la); err == nil {
		t.Error("StartAgent after Detach did not fail")
	}
	if got := waitOneAgent(t, dir, la); got != pid {
		t.Fatalf("after Detach the agent is %d, want %d still running", got, pid)
	}

	tokenFile := filepath.Join(dir, "workspaces", la.WorkspaceID, la.Name, "agent-token")
	before, _ := os.Stat(tokenFile)
	// The next server may run a newer binary.
	p2 := newProcess(t, dir)
	p2.Binary = filepath.Join(t.TempDir(), "coder-new")
	if err := os.Link(p1.Binary, p2.Binary); err != nil {
		if _, err := copyExecutable(p1.Binary, filepath.Dir(p2.Binary)); err != nil {
			t.Fatal(err)
		}
		p2.Binary = filepath.Join(filepath.Dir(p2.Binary), "coder")
	}
	t.Cleanup(func() { p2.Close() })
	adopt := la
	adopt.Token = ""
	if !p2.AdoptAgent(context.Background(), adopt) {
		t.Fatal("the next Process did not adopt the running agent")
	}
	if got := waitOneAgent(t, dir, la); got != pid {
		t.Fatalf("after adoption the agent is %d, want %d", got, pid)
	}
	if after, err := os.Stat(tokenFile); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("adoption rewrote the agent's token file (%v)", err)
	}
	p2.StopAgent(la.ID)
	waitNoAgent(t, dir, la)
}

// TestAdoptedAgentRestartsWhenItDies: an adopted agent that dies is started
// again, as the Process's own ones are, and Close stops the new one.
func TestAdoptedAgentRestartsWhenItDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	la := testAgent(deadURL)
	p1 := newProcess(t, dir)
	if err := p1.StartAgent(context.Background(), la); err != nil {
		t.Fatal(err)
	}
	pid := waitOneAgent(t, dir, la)
	p1.Detach()
	p2 := newProcess(t, dir)
	if !p2.AdoptAgent(context.Background(), la) {
		t.Fatal("not adopted")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	var next int
	testutil.Eventually(t, 30*time.Second, "a new agent", func() bool {
		pids := agentPIDs(t, dir, la)
		if len(pids) == 1 && pids[0] != pid {
			next = pids[0]
			return true
		}
		return false
	})
	if got := waitOneAgent(t, dir, la); got != next {
		t.Fatalf("agent %d, want %d", got, next)
	}
	p2.Close()
	waitNoAgent(t, dir, la)
}

// TestAgentDiedWhileAway: an agent that died while no Process watched it
// is not adopted (the caller starts a fresh one), and its record goes.
func TestAgentDiedWhileAway(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	la := testAgent(deadURL)
	p1 := newProcess(t, dir)
	if err := p1.StartAgent(context.Background(), la); err != nil {
		t.Fatal(err)
	}
	pid := waitOneAgent(t, dir, la)
	p1.Detach()
	syscall.Kill(pid, syscall.SIGKILL)
	testutil.Eventually(t, 30*time.Second, "the agent to die", func() bool { return len(agentPIDs(t, dir, la)) == 0 })
	p2 := newProcess(t, dir)
	t.Cleanup(func() { p2.Close() })
	if p2.AdoptAgent(context.Background(), la) {
		t.Fatal("adopted a dead agent")
	}
	waitNoAgent(t, dir, la)
}

// TestAdoptWithOtherURL: an agent left running that dials another server
// URL than the workspace now says is stopped, not adopted; so is one
// that StopAgent names without adopting it (a workspace stopped while
// the server was away).
func TestAdoptWithOtherURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	la := testAgent(deadURL)
	p1 := newProcess(t, dir)
	if err := p1.StartAgent(context.Background(), la); err != nil {
		t.Fatal(err)
	}
	waitOneAgent(t, dir, la)
	p1.Detach()
	p2 := newProcess(t, dir)
	t.Cleanup(func() { p2.Close() })
	moved := la
	moved.URL = "http://127.0.0.1:2"
	if p2.AdoptAgent(context.Background(), moved) {
		t.Fatal("adopted an agent that dials another URL")
	}
	waitNoAgent(t, dir, la)

	if err := p2.StartAgent(context.Background(), la); err != nil {
		t.Fatal(err)
	}
	waitOneAgent(t, dir, la)
	p2.Detach()
	p3 := newProcess(t, dir)
	p3.StopAgent(la.ID)
	waitNoAgent(t, dir, la)
}

// TestRecycledPID: a record whose pid now belongs to another process (its
// start time differs) is neither adopted nor signalled.
func TestRecycledPID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	la := testAgent(deadURL)
	other := exec.Command("sleep", "300")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	start, _, err := procStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	p := newProcess(t, dir)
	t.Cleanup(func() { p.Close() })
	root, _, err := p.prepare()
	if err != nil {
		t.Fatal(err)
	}
	rec := pidRecord{AgentID: la.ID, PID: other.Process.Pid, Start: start + 1, BootID: bootID(), URL: la.URL, UID: os.Getuid()}
	if err := writeRecord(p.pidFile(root, la.ID), rec); err != nil {
		t.Fatal(err)
	}
	if p.AdoptAgent(context.Background(), la) {
		t.Fatal("adopted a recycled pid")
	}
	p.StopAgent(la.ID)
	if _, zombie, err := procStat(other.Process.Pid); err != nil || zombie {
		t.Fatalf("the process with the recycled pid was killed (%v)", err)
	}
	if pids := slices.Collect(slices.Values(agentPIDs(t, dir, la))); len(pids) != 0 {
		t.Fatalf("agents %v started", pids)
	}
}
