package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
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
	// Isolates reports whether each user's agents run as an OS account
	// of that user alone. When false, agents run as the server's own OS
	// user, and only owners may run local workspaces.
	Isolates() bool
	// RemoveOwner removes what the provisioner keeps for a deleted user
	// (their OS account and home), after their agents were stopped.
	RemoveOwner(ctx context.Context, userID string) error
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
	// OwnerID and OwnerName are the workspace owner's user ID and
	// username: whose OS account the agent runs as.
	OwnerID   string
	OwnerName string
}

// errLocalNeedsIsolation refuses a local workspace to a user who is not an
// owner when the provisioner cannot give them an OS account of their own.
var errLocalNeedsIsolation = &HTTPError{Code: http.StatusForbidden,
	Msg: "Local workspaces are for owners on this server: it does not run as root, so it cannot give your workspace an OS account of its own, " +
		"and the workspace would run as the server itself. Use a template with \"provisioner: manual\" and run its agent on a machine of yours, " +
		"or ask an owner to run the server as root."}

// checkLocalAllowed returns errLocalNeedsIsolation when owner may not run
// local workspaces.
func (a *API) checkLocalAllowed(owner store.User) error {
	if a.opts.Provisioner == nil || a.opts.Provisioner.Isolates() || owner.Role == store.RoleOwner {
		return nil
	}
	return errLocalNeedsIsolation
}

// checkLocalStart is checkLocalAllowed for starting wk: it passes for
// workspaces whose template is not local.
func (a *API) checkLocalStart(ctx context.Context, wk store.Workspace) error {
	t, err := a.db.TemplateByID(ctx, wk.TemplateID)
	if err != nil || templateSpec(t).Provisioner != sdk.ProvisionerLocal {
		return err
	}
	owner, err := a.db.UserByID(ctx, wk.OwnerID)
	if err != nil {
		return err
	}
	return a.checkLocalAllowed(owner)
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
	owner, err := a.db.UserByID(ctx, wk.OwnerID)
	if err != nil {
		a.logger.Error("start agents: load owner", "workspace_id", wk.ID, "err", err)
		return
	}
	if err := a.checkLocalAllowed(owner); err != nil {
		a.logger.Warn("not starting a member's local workspace: the server is not root and cannot isolate it", "workspace_id", wk.ID, "owner", owner.Username)
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
		err := a.opts.Provisioner.StartAgent(ctx, LocalAgent{ID: ag.ID, WorkspaceID: wk.ID, Name: ag.Name, URL: agentURL, Token: tok,
			OwnerID: owner.ID, OwnerName: owner.Username})
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
// `<Binary> agent` in a directory of its own, restarted with backoff when
// it dies, stopped on StopAgent and Close.
//
// When the server is root (and NoIsolation is false), each coder user's
// agents run as an unprivileged OS account of that user alone, created on
// first use (see [ProcessProvisioner.Isolates]). Agents get a minimal
// environment, never the server's, and read their token from a file that
// only their account can read.
//
// Layout under the state root (Dir, or /var/lib/coder-workspaces/<hash of
// Dir> when isolating and Dir's ancestors are not traversable by other
// users, e.g. under /root):
//
//	bin/coder                        copy of Binary that every account can run (isolating only)
//	homes/<account>/                 the account's home, 0700 (isolating only)
//	workspaces/<workspace>/<agent>/  the agent's directory and state, 0700, the agent's
//	workspaces/<workspace>/<agent>/agent-token  its token, 0600, the agent's
//	workspaces/<workspace>/<agent>.log          its output, 0600, the server's
type ProcessProvisioner struct {
	// Binary is the coder executable; Dir the provisioner's state
	// directory (created 0711 when missing).
	Binary string
	Dir    string
	Logger *slog.Logger
	// Env is added to each agent's environment, which is otherwise only
	// PATH (a standard one unless Env sets it), HOME, USER, LOGNAME and
	// SHELL of the account it runs as, and its CODER_AGENT_* settings.
	Env []string
	// NoIsolation runs every agent as the server's own OS user even when
	// the server is root, as a non-root server does: the API then lets
	// only owners create local workspaces. False isolates users when root.
	NoIsolation bool

	mu     sync.Mutex
	procs  map[string]*agentProc
	closed bool
	root   string // state root, once known
	binary string // the executable agents run, once known
}

type agentProc struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Isolates implements Provisioner: true when the server runs as root and
// NoIsolation is false.
func (p *ProcessProvisioner) Isolates() bool { return !p.NoIsolation && os.Geteuid() == 0 }

// fallbackRoot holds the state of provisioners whose Dir other users cannot
// traverse.
const fallbackRoot = "/var/lib/coder-workspaces"

// prepare finds the state root and, when isolating, copies Binary to
// root/bin/coder (0755) so that every account may run it. It runs at each
// agent start until it succeeds once.
func (p *ProcessProvisioner) prepare() (root, binary string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.root != "" {
		return p.root, p.binary, nil
	}
	dir, err := filepath.Abs(p.Dir)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", "", fmt.Errorf("create provisioner dir: %w", err)
	}
	root, binary = dir, p.Binary
	if p.Isolates() {
		if !traversable(dir) {
			sum := sha256.Sum256([]byte(dir))
			root = filepath.Join(fallbackRoot, hex.EncodeToString(sum[:8]))
			if err := os.MkdirAll(root, 0o711); err != nil {
				return "", "", fmt.Errorf("create provisioner dir: %w", err)
			}
			if err := os.Chmod(fallbackRoot, 0o711); err != nil {
				return "", "", err
			}
			p.Logger.Info("other users cannot reach the provisioner dir: keeping agents' homes and state elsewhere", "dir", dir, "state_dir", root)
		}
		if binary, err = copyExecutable(p.Binary, filepath.Join(root, "bin")); err != nil {
			return "", "", err
		}
	}
	p.root, p.binary = root, binary
	return root, binary, nil
}

// traversable reports whether every directory from / to dir lets other
// users through (the x bit for others).
func traversable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// copyExecutable copies src to dir/coder (dir 0755, file 0755, both the
// server's) through a temporary file, so that a running agent keeps its
// executable.
func copyExecutable(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("copy coder for agents: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("copy coder for agents: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("copy coder for agents: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".coder-")
	if err != nil {
		return "", fmt.Errorf("copy coder for agents: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	dst := filepath.Join(dir, "coder")
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", fmt.Errorf("copy coder for agents: %w", err)
	}
	return dst, nil
}

// agentRun is what one start of an agent needs.
type agentRun struct {
	binary string
	dir    string // the agent's directory
	log    string // its log file
	token  string // its token file
	env    []string
	cred   *syscall.Credential // nil: the server's own user
}

// StartAgent implements Provisioner. A running agent of the same id is
// stopped first. When isolating, it creates the owner's OS account on
// first use.
func (p *ProcessProvisioner) StartAgent(ctx context.Context, la LocalAgent) error {
	p.StopAgent(la.ID)
	run, err := p.setup(ctx, la)
	if err != nil {
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
	runCtx, cancel := context.WithCancel(context.Background())
	proc := &agentProc{cancel: cancel, done: make(chan struct{})}
	p.procs[la.ID] = proc
	go p.supervise(runCtx, proc, la, run)
	return nil
}

// setup prepares the agent's account, directory, token file and
// environment.
func (p *ProcessProvisioner) setup(ctx context.Context, la LocalAgent) (agentRun, error) {
	root, binary, err := p.prepare()
	if err != nil {
		return agentRun{}, err
	}
	wsDir := filepath.Join(root, "workspaces", la.WorkspaceID)
	for _, d := range []string{filepath.Dir(wsDir), wsDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return agentRun{}, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return agentRun{}, err
		}
	}
	run := agentRun{binary: binary, dir: filepath.Join(wsDir, la.Name), log: filepath.Join(wsDir, la.Name+".log")}
	run.token = filepath.Join(run.dir, "agent-token")
	uid, gid := os.Getuid(), os.Getgid()
	var home, name, shell string
	if p.Isolates() {
		if la.OwnerID == "" {
			return agentRun{}, errors.New("no owner to run the agent as")
		}
		acct, err := ensureAccount(ctx, la.OwnerID, la.OwnerName, filepath.Join(root, "homes"))
		if err != nil {
			return agentRun{}, err
		}
		uid, gid, home, name, shell = acct.UID, acct.GID, acct.Home, acct.Name, accountShell
		run.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	} else if u, err := user.Current(); err == nil {
		home, name, shell = u.HomeDir, u.Username, "/bin/sh"
		if _, err := os.Stat("/bin/bash"); err == nil {
			shell = "/bin/bash"
		}
	}
	if err := os.Mkdir(run.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return agentRun{}, err
	}
	if fi, err := os.Lstat(run.dir); err != nil || !fi.IsDir() {
		return agentRun{}, fmt.Errorf("agent dir %s is not a directory", run.dir)
	}
	if err := os.Lchown(run.dir, uid, gid); err != nil {
		return agentRun{}, err
	}
	if err := os.Chmod(run.dir, 0o700); err != nil {
		return agentRun{}, err
	}
	if err := writeTokenFile(run.token, la.Token, uid, gid); err != nil {
		return agentRun{}, err
	}
	run.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "USER=" + name, "LOGNAME=" + name, "SHELL=" + shell}
	run.env = append(run.env, p.Env...)
	run.env = append(run.env, "CODER_AGENT_URL="+la.URL, "CODER_AGENT_TOKEN_FILE="+run.token, "CODER_AGENT_DIRECTORY="+run.dir)
	return run, nil
}

// writeTokenFile writes token to path (0600, owned by uid:gid) through a
// new file in the same directory: the directory belongs to the agent's
// account, so a file or link of its making at path is replaced, never
// written through.
func writeTokenFile(path, token string, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".token-")
	if err != nil {
		return fmt.Errorf("write agent token: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write agent token: %w", err)
	}
	return nil
}

// supervise runs the agent until ctx ends, restarting it with backoff
// (1 s doubling to 30 s, reset after a minute of running).
func (p *ProcessProvisioner) supervise(ctx context.Context, proc *agentProc, la LocalAgent, run agentRun) {
	defer close(proc.done)
	log := p.Logger.With("agent_id", la.ID, "agent", la.Name)
	backoff := time.Second
	for {
		start := time.Now()
		err := p.run(ctx, run, log)
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

func (p *ProcessProvisioner) run(ctx context.Context, run agentRun, log *slog.Logger) error {
	cmd := exec.Command(run.binary, "agent")
	cmd.Dir = run.dir
	cmd.Env = run.env
	logFile, err := os.OpenFile(run.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, so a Ctrl+C at the server's terminal reaches the
	// server only, which then stops its agents in order; and die with the
	// server if it is killed (Go sets the parent-death signal after
	// changing user, which would clear it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: run.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s agent: %w", run.binary, err)
	}
	log.Info("agent started", "pid", cmd.Process.Pid, "dir", run.dir)
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

// RemoveOwner implements Provisioner: it removes the OS account of a
// deleted user and its home. The caller stops the user's agents first.
// It is a no-op when not isolating or when the user has no account.
func (p *ProcessProvisioner) RemoveOwner(ctx context.Context, userID string) error {
	if !p.Isolates() {
		return nil
	}
	root, _, err := p.prepare()
	if err != nil {
		return err
	}
	return removeAccount(ctx, userID, filepath.Join(root, "homes"))
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
