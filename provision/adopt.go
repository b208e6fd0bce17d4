package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gatewaydev/coder/internal/userproc"
)

// pidRecord says which process runs an agent, so that the next server on
// the same directory can find it again. A pid alone could be a recycled
// one: the process's start time (in clock ticks since boot, from
// /proc/PID/stat) and the boot's id name the process itself.
type pidRecord struct {
	AgentID string `json:"agent_id"`
	PID     int    `json:"pid"`
	Start   uint64 `json:"start_ticks"`
	BootID  string `json:"boot_id"`
	// Binary is the executable it was started from (an older one, after
	// an upgrade); URL the server URL it dials; UID its OS account.
	Binary string `json:"binary"`
	URL    string `json:"url"`
	UID    int    `json:"uid"`
}

var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// pidFile is where the record of agentID lives under root.
func (p *Process) pidFile(root, agentID string) string {
	name := agentID
	if !safeID.MatchString(name) {
		sum := sha256.Sum256([]byte(agentID))
		name = hex.EncodeToString(sum[:16])
	}
	return filepath.Join(root, "agents", name+".pid")
}

// procStat returns a process's start time and whether it is a zombie
// (exited, not yet reaped).
func procStat(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, so
	// the fields start after the last ')'. starttime is field 22; state,
	// field 3, is the first after comm.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	return start, string(f[0]) == "Z", err
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return string(bytes.TrimSpace(b))
}

// recordOf describes the just-started process pid running run.
func recordOf(pid int, run agentRun) (pidRecord, error) {
	start, _, err := procStat(pid)
	if err != nil {
		return pidRecord{}, err
	}
	return pidRecord{AgentID: run.agentID, PID: pid, Start: start, BootID: bootID(), Binary: run.binary, URL: run.url, UID: run.uid}, nil
}

// alive reports whether the process that rec names still runs.
func (rec pidRecord) alive() bool {
	if rec.PID <= 0 || rec.BootID != bootID() {
		return false
	}
	start, zombie, err := procStat(rec.PID)
	return err == nil && !zombie && start == rec.Start
}

// writeRecord writes rec to path (0600, in a 0700 directory, both the
// server's) through a temporary file.
func writeRecord(path string, rec pidRecord) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("record agent process: %w", err)
	}
	b, _ := json.Marshal(rec)
	if err := replaceFile(path, ".pid-", append(b, '\n'), nil); err != nil {
		return fmt.Errorf("record agent process: %w", err)
	}
	return nil
}

func readRecord(path string) (pidRecord, error) {
	var rec pidRecord
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("read %s: %w", path, err)
	}
	return rec, nil
}

// removeRecord removes path if it still names rec's process (and not one
// started since).
func removeRecord(path string, rec pidRecord) {
	if cur, err := readRecord(path); err == nil && (cur.PID != rec.PID || cur.Start != rec.Start) {
		return
	}
	os.Remove(path)
}

// watchExit returns a channel closed when process pid exits (it need not
// be our child: a pidfd tells), and stop, which ends the watch.
func watchExit(pid int) (exited <-chan struct{}, stop func(), err error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, nil, err
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		unix.Close(pidfd)
		return nil, nil, err
	}
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(pidfd)
		defer unix.Close(pipe[0])
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(pipe[0]), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && fds[0].Revents != 0 {
				close(ch)
			}
			return
		}
	}()
	return ch, func() {
		unix.Write(pipe[1], []byte{0})
		<-done
		unix.Close(pipe[1])
	}, nil
}

// terminate stops rec's process group (SIGTERM, then SIGKILL after
// stopGrace) and waits for the agent to exit.
func terminate(rec pidRecord) {
	exited, stop, err := watchExit(rec.PID)
	if err != nil {
		return // gone already
	}
	defer stop()
	if rec.alive() { // the pidfd is of rec's process, not a recycled pid
		userproc.Terminate(rec.PID, syscall.SIGTERM, stopGrace, exited)
	}
}

// AdoptAgent takes over the agent la when a server before this one on the
// same directory left it running (see [Process.Detach]): the process its
// record names still runs, as la's account, dialling la's URL. It then
// watches that process as its own (StopAgent and Close stop it, and it is
// started again when it exits, with the token it has) and reports true;
// the agent keeps its token and reconnects to this server by itself. Else
// it stops what runs under the record, if anything, and reports false:
// the caller starts the agent afresh with [Process.StartAgent]. la.Token
// is not used.
func (p *Process) AdoptAgent(ctx context.Context, la Agent) bool {
	root, _, err := p.prepare()
	if err != nil {
		return false
	}
	path := p.pidFile(root, la.ID)
	rec, err := readRecord(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.Logger.Warn("unreadable agent record: starting the agent afresh", "agent_id", la.ID, "err", err)
			os.Remove(path)
		}
		return false
	}
	log := p.Logger.With("agent_id", la.ID, "agent", la.Name, "pid", rec.PID)
	if !rec.alive() {
		log.Info("the agent exited while no server watched it: starting it again")
		os.Remove(path)
		return false
	}
	run, err := p.setup(ctx, la, false)
	if err != nil {
		log.Error("cannot adopt the running agent: restarting it", "err", err)
		p.stopRecorded(la.ID)
		return false
	}
	if rec.AgentID != la.ID || rec.URL != la.URL || rec.UID != run.uid {
		log.Info("the running agent has other settings (server URL or account): restarting it", "url", rec.URL, "want_url", la.URL)
		p.stopRecorded(la.ID)
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.procs == nil {
		p.procs = map[string]*agentProc{}
	}
	if p.procs[la.ID] != nil {
		return true
	}
	runCtx, cancel := context.WithCancel(context.Background())
	proc := &agentProc{cancel: cancel, done: make(chan struct{})}
	p.procs[la.ID] = proc
	log.Info("adopted the running agent", "binary", rec.Binary)
	go p.supervise(runCtx, proc, la, run, &rec)
	return true
}

// watch waits for the adopted process rec to exit (and returns an error
// then, so that supervise starts it again) or for ctx to end (and stops
// it, unless detaching).
func (p *Process) watch(ctx context.Context, proc *agentProc, run agentRun, rec pidRecord, log *slog.Logger) error {
	exited, stop, err := watchExit(rec.PID)
	if err != nil || !rec.alive() {
		if stop != nil {
			stop()
		}
		removeRecord(run.pidFile, rec)
		return fmt.Errorf("adopted agent (pid %d) is gone", rec.PID)
	}
	defer stop()
	select {
	case <-exited:
		removeRecord(run.pidFile, rec)
		return fmt.Errorf("adopted agent (pid %d) exited", rec.PID)
	case <-ctx.Done():
		if proc.detach.Load() {
			log.Info("leaving the agent running", "pid", rec.PID)
			return nil
		}
		userproc.Terminate(rec.PID, syscall.SIGTERM, stopGrace, exited)
		removeRecord(run.pidFile, rec)
		return nil
	}
}

// stopRecorded stops the process that agentID's record names, if it still
// runs, and removes the record.
func (p *Process) stopRecorded(agentID string) {
	root, _, err := p.prepare()
	if err != nil {
		return
	}
	path := p.pidFile(root, agentID)
	rec, err := readRecord(path)
	if err != nil {
		return
	}
	if rec.alive() {
		p.Logger.Info("stopping an agent an earlier server left running", "agent_id", agentID, "pid", rec.PID)
		terminate(rec)
	}
	removeRecord(path, rec)
}

// Detach stops watching the agents and leaves them running, for the next
// server on the same directory to adopt ([Process.AdoptAgent]); the
// server calls it on its way out instead of Close, unless told to stop its
// agents. Later calls of StartAgent fail, and Close does nothing more.
func (p *Process) Detach() {
	p.mu.Lock()
	p.closed = true
	procs := p.procs
	p.procs = nil
	p.mu.Unlock()
	for _, proc := range procs {
		proc.detach.Store(true)
		proc.cancel()
	}
	for _, proc := range procs {
		<-proc.done
	}
}
