package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

// Provisioner runs the agents of workspaces whose template uses the local
// provisioner.
type Provisioner interface {
	// StartAgent starts (or restarts) the agent. It does not block.
	StartAgent(ctx context.Context, a LocalAgent) error
	// StopAgent stops the agent and waits for it to exit.
	StopAgent(agentID string)
}

// LocalAgent is what a provisioner needs to run an agent.
type LocalAgent struct {
	ID          string
	WorkspaceID string
	Name        string
	// URL is the server URL the agent dials (the template's agent_url or
	// the access URL).
	URL   string
	Token string
}

// startAgents starts the agents of a running workspace whose template is
// local, each with a fresh token (the previous one stops working).
func (a *API) startAgents(ctx context.Context, wk store.Workspace) {
	if a.opts.Provisioner == nil || wk.DesiredState != "running" {
		return
	}
	// The workspace is already marked running: finish even if the request
	// that asked for it is abandoned now.
	ctx = context.WithoutCancel(ctx)
	t, err := a.db.TemplateByID(ctx, wk.TemplateID)
	if err != nil {
		a.logger.Error("start agents: load template", "workspace_id", wk.ID, "err", err)
		return
	}
	spec := templateSpec(t)
	if spec.Provisioner != sdk.ProvisionerLocal {
		return
	}
	agentURL := a.opts.AccessURL.String()
	if spec.AgentURL != "" {
		agentURL = spec.AgentURL
	}
	ags, err := a.db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		a.logger.Error("start agents: load agents", "workspace_id", wk.ID, "err", err)
		return
	}
	for _, ag := range ags {
		tok := randomString(32)
		if err := a.db.SetAgentToken(ctx, ag.ID, hashSecret(tok)); err != nil {
			a.logger.Error("start agent: set token", "agent_id", ag.ID, "err", err)
			continue
		}
		err := a.opts.Provisioner.StartAgent(ctx, LocalAgent{ID: ag.ID, WorkspaceID: wk.ID, Name: ag.Name, URL: agentURL, Token: tok})
		if err != nil {
			a.logger.Error("start agent", "agent_id", ag.ID, "err", err)
		}
	}
}

func (a *API) stopAgents(ctx context.Context, wk store.Workspace) {
	ctx = context.WithoutCancel(ctx) // as in startAgents
	ags, err := a.db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		a.logger.Error("stop agents: load agents", "workspace_id", wk.ID, "err", err)
		return
	}
	for _, ag := range ags {
		if a.opts.Provisioner != nil {
			a.opts.Provisioner.StopAgent(ag.ID)
		}
		// A stopped workspace's agent must not reconnect with its old token.
		if err := a.db.SetAgentToken(ctx, ag.ID, hashSecret(randomString(32))); err != nil {
			a.logger.Error("stop agent: revoke token", "agent_id", ag.ID, "err", err)
		}
		a.disconnectAgent(ag.ID)
		if a.tailnet != nil {
			a.tailnet.Disconnect(ctx, tailnet.Identity{Kind: tailnet.KindAgent, ID: ag.ID})
		}
	}
}

// StartWorkspaces starts the agents of every running local workspace; the
// server calls it once at start.
func (a *API) StartWorkspaces(ctx context.Context) error {
	ws, err := a.db.ListWorkspaces(ctx, "")
	if err != nil {
		return fmt.Errorf("start workspaces: %w", err)
	}
	for _, wk := range ws {
		a.startAgents(ctx, wk)
	}
	return nil
}

// ProcessProvisioner runs local agents as child processes of the server:
// `<Binary> agent` in a directory of their own under Dir, restarted with
// backoff when they die, stopped on StopAgent and Close.
type ProcessProvisioner struct {
	// Binary is the coder executable; Dir the parent of the agents'
	// directories.
	Binary string
	Dir    string
	Logger *slog.Logger
	// Env is added to each agent's environment (after the server's own).
	Env []string

	mu     sync.Mutex
	procs  map[string]*agentProc
	closed bool
}

type agentProc struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// StartAgent implements Provisioner. A running agent of the same id is
// stopped first.
func (p *ProcessProvisioner) StartAgent(_ context.Context, la LocalAgent) error {
	p.StopAgent(la.ID)
	dir := filepath.Join(p.Dir, la.WorkspaceID, la.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("start agent %s: %w", la.ID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("start agent: provisioner closed")
	}
	if p.procs == nil {
		p.procs = map[string]*agentProc{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	proc := &agentProc{cancel: cancel, done: make(chan struct{})}
	p.procs[la.ID] = proc
	go p.supervise(ctx, proc, la, dir)
	return nil
}

// supervise runs the agent until ctx ends, restarting it with backoff
// (1 s doubling to 30 s, reset after a minute of running).
func (p *ProcessProvisioner) supervise(ctx context.Context, proc *agentProc, la LocalAgent, dir string) {
	defer close(proc.done)
	log := p.Logger.With("agent_id", la.ID, "agent", la.Name)
	backoff := time.Second
	for {
		start := time.Now()
		err := p.run(ctx, la, dir, log)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		log.Warn("agent exited; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (p *ProcessProvisioner) run(ctx context.Context, la LocalAgent, dir string, log *slog.Logger) error {
	cmd := exec.Command(p.Binary, "agent")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Env = append(cmd.Env, "CODER_AGENT_URL="+la.URL, "CODER_AGENT_TOKEN="+la.Token, "CODER_AGENT_DIRECTORY="+dir)
	logFile, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, so a Ctrl+C at the server's terminal reaches the
	// server only, which then stops its agents in order; and die with the
	// server if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s agent: %w", p.Binary, err)
	}
	log.Info("agent started", "pid", cmd.Process.Pid, "dir", dir)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		return err
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-waitErr:
			return err
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			return <-waitErr
		}
	}
}

// StopAgent implements Provisioner.
func (p *ProcessProvisioner) StopAgent(agentID string) {
	p.mu.Lock()
	proc := p.procs[agentID]
	delete(p.procs, agentID)
	p.mu.Unlock()
	if proc != nil {
		proc.cancel()
		<-proc.done
	}
}

// Close stops every agent and waits for them. It is idempotent.
func (p *ProcessProvisioner) Close() error {
	p.mu.Lock()
	p.closed = true
	procs := p.procs
	p.procs = nil
	p.mu.Unlock()
	for _, proc := range procs {
		proc.cancel()
	}
	for _, proc := range procs {
		<-proc.done
	}
	return nil
}
