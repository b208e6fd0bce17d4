// Package provision runs the agents of `local` workspaces on the server's
// machine: each `coder agent` in a directory and session of its own,
// restarted when it dies, and, when the server is root, as an unprivileged
// OS account of its workspace owner alone (created with useradd on first
// use, removed with the user). Agents outlive the server that started them
// (see [Process.Detach]); the next server on the same directory adopts
// them (see [Process.AdoptAgent]).
//
// It imports nothing of this module's but small internal helpers: the
// server wires a [Process] to the API. Each agent's supervising goroutine is owned by the [Process]
// and ends on [Process.StopAgent] or [Process.Close].
package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatewaydev/coder/internal/backoff"
	"github.com/gatewaydev/coder/internal/userproc"
)

// Agent is what a [Process] needs to run an agent.
type Agent struct {
	ID          string
	WorkspaceID string
	Name        string
	// URL is the server URL the agent dials.
	URL   string
	Token string
	// OwnerID and OwnerName are the workspace owner's user ID and
	// username: whose OS account the agent runs as.
	OwnerID   string
	OwnerName string
}

// Process runs local agents as processes of their own session:
// `<Binary> agent` in a directory of its own, restarted with backoff when
// it dies, stopped on StopAgent and Close, left running by Detach and
// adopted again by AdoptAgent.
//
// When the server is root (and NoIsolation is false), each coder user's
// agents run as an unprivileged OS account of that user alone, created on
// first use (see [Process.Isolates]). Agents get a minimal environment,
// never the server's, and read their token from a file that only their
// account can read.
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
//	agents/<agent id>.pid            which process runs the agent, 0600, the server's (see AdoptAgent)
type Process struct {
	// Binary is the coder executable; Dir the provisioner's state
	// directory (created 0711 when missing).
	Binary string
	Dir    string
	Logger *slog.Logger
	// Env is added to each agent's environment, which is otherwise only
	// PATH (a standard one unless Env sets it), HOME, USER, LOGNAME and
	// SHELL of the account it runs as, and its CODER_AGENT_* settings
	// (the server passes its PATH and LANG).
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
	// detach, set before cancel, makes the supervisor leave the agent
	// running.
	detach atomic.Bool
}

// Isolates reports whether each user's agents run as an OS account of
// their own: true when the server runs as root and NoIsolation is false.
func (p *Process) Isolates() bool { return !p.NoIsolation && os.Geteuid() == 0 }

// fallbackRoot holds the state of provisioners whose Dir other users cannot
// traverse.
const fallbackRoot = "/var/lib/coder-workspaces"

// prepare finds the state root and, when isolating, copies Binary to
// root/bin/coder (0755) so that every account may run it. It runs at each
// agent start until it succeeds once.
func (p *Process) prepare() (root, binary string, err error) {
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
	uid    int                 // the account it runs as

	pidFile string // its pid record (see AdoptAgent)
	agentID string
	url     string
}

// StartAgent starts (or restarts) the agent; it does not block. A running
// agent of the same id is stopped first. When isolating, it creates the
// owner's OS account on first use.
func (p *Process) StartAgent(ctx context.Context, la Agent) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return errors.New("start agent: provisioner closed")
	}
	p.StopAgent(la.ID)
	run, err := p.setup(ctx, la, true)
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
	go p.supervise(runCtx, proc, la, run, nil)
	return nil
}

// setup prepares the agent's account, directory, token file (unless
// writeToken is false: an adopted agent keeps the one it has) and
// environment.
func (p *Process) setup(ctx context.Context, la Agent, writeToken bool) (agentRun, error) {
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
	run := agentRun{binary: binary, dir: filepath.Join(wsDir, la.Name), log: filepath.Join(wsDir, la.Name+".log"),
		pidFile: p.pidFile(root, la.ID), agentID: la.ID, url: la.URL}
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
	fi, err := os.Lstat(run.dir)
	if err != nil || !fi.IsDir() {
		return agentRun{}, fmt.Errorf("agent dir %s is not a directory", run.dir)
	}
	if owner := int(fi.Sys().(*syscall.Stat_t).Uid); owner != uid && owner == os.Getuid() {
		// The server's own directory, from before the agent had an account
		// (an older server, or not root): hand over what its shells made
		// too. The account cannot enter the directory until it is its own,
		// which happens last, so nothing moves under this walk.
		err := filepath.WalkDir(run.dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil || path == run.dir {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return agentRun{}, fmt.Errorf("hand the agent dir to its account: %w", err)
		}
	}
	if err := os.Lchown(run.dir, uid, gid); err != nil {
		return agentRun{}, err
	}
	if err := os.Chmod(run.dir, 0o700); err != nil {
		return agentRun{}, err
	}
	if writeToken {
		if err := writeTokenFile(run.token, la.Token, uid, gid); err != nil {
			return agentRun{}, err
		}
	}
	run.uid = uid
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
	if err := replaceFile(path, ".token-", []byte(token+"\n"), func(f *os.File) error { return f.Chown(uid, gid) }); err != nil {
		return fmt.Errorf("write agent token: %w", err)
	}
	return nil
}

// replaceFile writes data to a new file (0600) in path's directory, lets
// prepare (if set) change it, and renames it over path: a reader sees the
// old file or the whole new one, and a file or link at path is replaced,
// never written through.
func replaceFile(path, prefix string, data []byte, prepare func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), prefix)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil && prepare != nil {
		err = prepare(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	return err
}

// supervise runs the agent until ctx ends, restarting it with backoff
// (1 s doubling to 30 s, reset after a minute of running). With adopted
// set, it first watches that process (see AdoptAgent) and starts a new one
// only when it exits.
func (p *Process) supervise(ctx context.Context, proc *agentProc, la Agent, run agentRun, adopted *pidRecord) {
	defer close(proc.done)
	log := p.Logger.With("agent_id", la.ID, "agent", la.Name)
	first := func() error { return p.run(ctx, proc, run, log) }
	if adopted != nil {
		first = func() error { return p.watch(ctx, proc, run, *adopted, log) }
	}
	backoff.New(time.Second, 30*time.Second).Loop(ctx, time.Minute, func() error {
		f := first
		first = func() error { return p.run(ctx, proc, run, log) }
		return f()
	}, func(err error, in time.Duration) {
		log.Warn("agent exited; restarting", "err", err, "in", in)
	})
}

func (p *Process) run(ctx context.Context, proc *agentProc, run agentRun, log *slog.Logger) error {
	cmd := exec.Command(run.binary, "agent")
	cmd.Dir = run.dir
	cmd.Env = run.env
	logFile, err := os.OpenFile(run.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own, and no parent-death signal: neither a Ctrl+C
	// at the server's terminal nor the server's exit (a restart, a crash,
	// an upgrade) reaches the agent, which reconnects to the next server
	// (see AdoptAgent). Its output goes to its log file, never to a pipe
	// that would die with the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: run.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s agent: %w", run.binary, err)
	}
	log.Info("agent started", "pid", cmd.Process.Pid, "dir", run.dir)
	var waitErr error
	waited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(waited)
	}()
	rec, err := recordOf(cmd.Process.Pid, run)
	if err == nil {
		err = writeRecord(run.pidFile, rec)
	}
	if err != nil {
		// Without its record the next server cannot adopt the agent, and
		// would start a second one: better none outlives this server.
		log.Error("cannot record the agent's process: stopping it", "err", err)
		userproc.Terminate(cmd.Process.Pid, syscall.SIGTERM, stopGrace, waited)
		<-waited
		return err
	}
	select {
	case <-waited:
	case <-ctx.Done():
		if proc.detach.Load() {
			log.Info("leaving the agent running", "pid", cmd.Process.Pid)
			return nil
		}
		// SIGTERM lets the agent close its sessions; its group is itself
		// (its sessions have their own).
		userproc.Terminate(cmd.Process.Pid, syscall.SIGTERM, stopGrace, waited)
		<-waited
	}
	removeRecord(run.pidFile, rec)
	return waitErr
}

// stopGrace is how long a stopping agent gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// RemoveOwner removes the OS account of a
// deleted user and its home. The caller stops the user's agents first.
// It is a no-op when not isolating or when the user has no account.
func (p *Process) RemoveOwner(ctx context.Context, userID string) error {
	if !p.Isolates() {
		return nil
	}
	root, _, err := p.prepare()
	if err != nil {
		return err
	}
	return removeAccount(ctx, userID, filepath.Join(root, "homes"))
}

// StopAgent stops the agent and waits for it to exit: the one this
// Process runs or adopted, or one that an earlier server left running and
// that was not adopted.
func (p *Process) StopAgent(agentID string) {
	p.mu.Lock()
	proc := p.procs[agentID]
	delete(p.procs, agentID)
	p.mu.Unlock()
	if proc != nil {
		proc.cancel()
		<-proc.done
	}
	p.stopRecorded(agentID)
}

// Close stops every agent and waits for them. It is idempotent.
func (p *Process) Close() error {
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
