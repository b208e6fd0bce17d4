package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gatewaydev/coder/internal/userproc"
	"github.com/gatewaydev/coder/sdk"
)

// startupStopGrace is how long the startup script gets after SIGTERM when
// the agent closes while it still runs.
const startupStopGrace = 3 * time.Second

// startupBatchDelay is how long the agent gathers startup log lines
// before it sends them.
const startupBatchDelay = 200 * time.Millisecond

// startupLog is the startup script's state and the newest lines of its
// output, bounded like the server's copy (sdk.StartupLogMaxLines and
// sdk.StartupLogMaxBytes). Lines are numbered from 0 in the order they
// came; a connection sends from the number it reached.
type startupLog struct {
	mu       sync.Mutex
	started  bool
	state    string // "" until the script starts
	exitCode int
	lines    []string
	first    int // number of lines[0]
	bytes    int
	// changed is woken (without blocking) on every new line or state.
	changed chan struct{}
}

func newStartupLog() *startupLog { return &startupLog{changed: make(chan struct{}, 1)} }

func (l *startupLog) wake() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *startupLog) setState(state string, code int) {
	l.mu.Lock()
	l.state, l.exitCode = state, code
	l.mu.Unlock()
	l.wake()
}

func (l *startupLog) add(line string) {
	line = truncateLine(line, sdk.StartupLogMaxLineBytes)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.bytes += len(line) + 1
	for len(l.lines) > sdk.StartupLogMaxLines || l.bytes > sdk.StartupLogMaxBytes {
		l.bytes -= len(l.lines[0]) + 1
		l.lines[0] = ""
		l.lines = l.lines[1:]
		l.first++
	}
	l.mu.Unlock()
	l.wake()
}

// since returns the lines from number n on, the number after them, and
// the state.
func (l *startupLog) since(n int) (lines []string, next int, state string, code int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < l.first {
		n = l.first
	}
	return append([]string(nil), l.lines[n-l.first:]...), l.first + len(l.lines), l.state, l.exitCode
}

// truncateLine cuts s to at most max bytes on a rune boundary, marking the
// cut, and makes it valid UTF-8 without NUL bytes (PostgreSQL stores
// neither).
func truncateLine(s string, max int) string {
	s = string(bytes.ReplaceAll([]byte(s), []byte{0}, []byte("\uFFFD")))
	s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	if len(s) <= max {
		return s
	}
	const mark = " …(truncated)"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// startupSender sends a connection's share of the startup log: every line
// from next on and the state when it changed.
type startupSender struct {
	next      int
	sentState string
	sentCode  int
	reset     bool
}

// frames returns the JSON frames to send now: lines in frames of at most
// sdk.StartupLogFrameBytes, then the state if it changed.
func (s *startupSender) frames(l *startupLog) [][]byte {
	lines, next, state, code := l.since(s.next)
	if state == "" {
		return nil // no script, or not started yet
	}
	var out [][]byte
	for len(lines) > 0 || s.reset {
		n, size := 0, 0
		for n < len(lines) && (n == 0 || size+len(lines[n])+8 <= sdk.StartupLogFrameBytes) {
			size += len(lines[n]) + 8 // quotes, comma and some escaping
			n++
		}
		b, _ := json.Marshal(sdk.AgentStartupLog{Type: sdk.AgentMessageStartupLog, Reset: s.reset, Lines: lines[:n]})
		out = append(out, b)
		s.reset = false
		lines = lines[n:]
	}
	s.next = next
	if state != "" && (state != s.sentState || code != s.sentCode) {
		b, _ := json.Marshal(sdk.AgentStartupState{Type: sdk.AgentMessageStartupState, State: state, ExitCode: code})
		out = append(out, b)
		s.sentState, s.sentCode = state, code
	}
	return out
}

// startupLogPath is where the agent writes the startup script's output.
func (a *Agent) startupLogPath(agentID string) string {
	dir := a.opts.LogDir
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "coder-startup-script-"+agentID+".log")
}

// maybeStartScript runs the manifest's startup script once per agent
// start, in the background; later manifests (reconnections) do not run it
// again.
func (a *Agent) maybeStartScript(m *sdk.AgentManifest) {
	l := a.startup
	l.mu.Lock()
	if l.started || m.StartupScript == "" {
		l.mu.Unlock()
		return
	}
	l.started = true
	l.mu.Unlock()
	l.setState(sdk.StartupRunning, 0)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		code, err := a.runScript(m)
		switch {
		case err != nil:
			l.add("coder: " + err.Error())
			a.logger.Warn("startup script", "err", err)
			l.setState(sdk.StartupError, code)
		case code != 0:
			a.logger.Warn("startup script failed", "exit_code", code)
			l.setState(sdk.StartupError, code)
		default:
			a.logger.Info("startup script done")
			l.setState(sdk.StartupReady, 0)
		}
	}()
}

// runScript runs the startup script with the user's shell in the
// workspace directory, its output (stdout and stderr together) to the log
// file and to a.startup, line by line. It returns the exit code (-1 when
// there is none) once the script exits; processes it left in the
// background keep writing to the log until they close their output or the
// agent closes.
func (a *Agent) runScript(m *sdk.AgentManifest) (int, error) {
	path := a.startupLogPath(m.AgentID)
	f, err := openLogFile(path)
	if err != nil {
		return -1, fmt.Errorf("open the startup log %s: %w", path, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		f.Close()
		return -1, err
	}
	env := append([]string{
		sdk.VarOwnerName + "=" + m.OwnerName, sdk.VarWorkspaceName + "=" + m.WorkspaceName, sdk.VarAgentName + "=" + m.AgentName,
		"CODER_STARTUP_LOG=" + path, sdk.AppSocketDirEnv + "=" + a.appSocketDirValue(),
		sdk.AccessURLEnv + "=" + m.AccessURL}, appBasePathEnv(m)...)
	cmd := a.procs.Command(m.StartupScript, env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = pw, pw
	a.logger.Info("startup script starting", "log", path)
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		f.Close()
		return -1, fmt.Errorf("start the startup script with %s: %w", a.procs.Shell(), err)
	}
	pw.Close() // the script and its children hold the write end now
	readDone := make(chan struct{})
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(readDone)
		defer f.Close()
		stop := context.AfterFunc(a.ctx, func() { pr.Close() })
		defer stop()
		defer pr.Close()
		r := bufio.NewReaderSize(pr, 64<<10)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 {
				f.Write(line)
				a.startup.add(string(bytes.TrimRight(line, "\r\n")))
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				// A line longer than the buffer: its rest is dropped.
				for errors.Is(err, bufio.ErrBufferFull) {
					line, err = r.ReadSlice('\n')
					f.Write(line)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-a.ctx.Done():
		userproc.Terminate(cmd.Process.Pid, syscall.SIGTERM, startupStopGrace, exited)
		<-exited
	}
	// What the script wrote before it exited is in the pipe: let the
	// reader take it before the state says the script is done, unless
	// processes left in the background keep the pipe open.
	select {
	case <-readDone:
	case <-time.After(time.Second):
	}
	// Processes the script left in the background (its process group)
	// end with the agent, which ends with its workspace; one the agent
	// never stopped (it was killed) is still running at the next start,
	// where the script can find it.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-a.ctx.Done()
		endGroup(cmd.Process.Pid, startupStopGrace)
	}()
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
		return 0, nil
	case errors.As(waitErr, &ee):
		return ee.ExitCode(), nil
	default:
		return -1, waitErr
	}
}

// openLogFile creates or truncates path for the agent's user alone,
// refusing a symbolic link or a file of another user (the log directory
// may be a shared /tmp).
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Getuid() || !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("it exists and is not a file of the agent's user")
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (a *Agent) appSocketDirValue() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appSockDir
}

// endGroup sends SIGTERM to the process group pgid, whose leader has
// exited (so there is nothing to Wait for), and SIGKILL to what is left
// after grace.
func endGroup(pgid int, grace time.Duration) {
	if pgid <= 0 || syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
	}
}
