// Package userproc is the one way the agent starts and ends a workspace
// user's processes: the web terminal's sessions (package terminal) and SSH
// sessions (package agent) both take their shell, environment, working
// directory and session from a [Builder], and end their processes with
// [Hangup]. The provisioner ends its agents with [Terminate].
//
// Like Coder's agent, where the reconnecting PTY reuses its SSH server's
// CreateCommand, the same user gets the same shell however they connect.
package userproc

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// DefaultPath is the PATH of processes whose base environment has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options configure [New]. The zero value describes the agent's own OS
// user and environment.
type Options struct {
	// Shell overrides the user's shell. Empty means $SHELL of Env, else
	// the shell of the process's user in /etc/passwd (looked up by uid),
	// else /bin/sh.
	Shell string
	// Dir is where processes start (the workspace's directory). Empty
	// means the user's home directory, else the agent's working directory.
	Dir string
	// Env is the base environment. Nil means the agent's own, without its
	// CODER_AGENT_* variables (the token stays secret).
	Env []string
}

// Builder builds the commands of a workspace user's processes. It is
// immutable and safe for concurrent use; create it with [New].
type Builder struct {
	shell string
	dir   string
	env   []string // base plus the login variables
}

// New resolves the user's shell, home, directory and environment once.
func New(o Options) *Builder {
	base := o.Env
	if base == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "CODER_AGENT_") {
				base = append(base, kv)
			}
		}
	}
	var name, home string
	if u, err := user.Current(); err == nil { // by uid
		name, home = u.Username, u.HomeDir
	}
	shell := o.Shell
	if shell == "" {
		shell = envValue(base, "SHELL")
	}
	if shell == "" {
		shell = passwdShell(strconv.Itoa(os.Getuid()))
	}
	if shell == "" {
		shell = "/bin/sh"
	}
	dir := o.Dir
	if dir == "" {
		if st, err := os.Stat(home); err == nil && st.IsDir() {
			dir = home
		}
	}
	env := append([]string(nil), base...)
	if envValue(env, "PATH") == "" {
		env = append(env, "PATH="+DefaultPath)
	}
	if name != "" {
		env = append(env, "USER="+name, "LOGNAME="+name)
	}
	if home != "" {
		env = append(env, "HOME="+home)
	}
	env = append(env, "SHELL="+shell)
	return &Builder{shell: shell, dir: dir, env: env}
}

// Shell is the user's shell.
func (b *Builder) Shell() string { return b.shell }

// Dir is where processes start; empty means the agent's working directory.
func (b *Builder) Dir() string { return b.dir }

// Environ is the processes' environment followed by extra, whose entries
// win over earlier ones of the same name.
func (b *Builder) Environ(extra ...string) []string {
	return dedupEnv(append(b.env[:len(b.env):len(b.env)], extra...))
}

// Command is the user's login shell (argv[0] "-name") when command is
// empty, else `shell -c command`, in Dir with Environ(extra...), in a new
// session (setsid) of its own, so that [Hangup] reaches all of it. Start
// it with [StartPTY] to give it a terminal, or with its Start method for
// pipes.
func (b *Builder) Command(command string, extra ...string) *exec.Cmd {
	var c *exec.Cmd
	if command == "" {
		c = &exec.Cmd{Path: b.shell, Args: []string{"-" + filepath.Base(b.shell)}}
	} else {
		c = exec.Command(b.shell, "-c", command)
	}
	c.Dir = b.dir
	c.Env = b.Environ(extra...)
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return c
}

// StartPTY starts c in a new PTY of cols×rows which becomes the
// controlling terminal of its session, and returns the PTY's master.
func StartPTY(c *exec.Cmd, cols, rows uint16) (*os.File, error) {
	return pty.StartWithSize(c, &pty.Winsize{Cols: cols, Rows: rows}) // sets Setsid and Setctty
}

// Hangup ends the process group pgid as a closed terminal does: SIGHUP,
// then SIGKILL if exited has not closed after grace. See [Terminate].
func Hangup(pgid int, grace time.Duration, exited <-chan struct{}) (clean bool) {
	return Terminate(pgid, syscall.SIGHUP, grace, exited)
}

// Terminate sends sig to the process group pgid and, if exited has not
// closed after grace, SIGKILL. It returns once exited closes, or at the
// latest grace after the SIGKILL, and reports whether the group ended on
// sig alone. exited is the caller's, never nil: closed when its Wait on
// the group's leader returned. A pgid below 1 is refused (false).
func Terminate(pgid int, sig syscall.Signal, grace time.Duration, exited <-chan struct{}) (clean bool) {
	if pgid <= 0 {
		return false // -0 and -(-1) would reach far more than the group
	}
	if err := syscall.Kill(-pgid, sig); errors.Is(err, syscall.ESRCH) {
		// The group is gone; the caller's Wait returns at once.
		<-exited
		return true
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	t.Reset(grace)
	select {
	case <-exited:
	case <-t.C:
	}
	return false
}

// envValue is the value of name in env (the last one wins), or "".
func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// dedupEnv keeps the last entry of each name, in the order of first use.
func dedupEnv(env []string) []string {
	idx := make(map[string]int, len(env))
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// passwdShell is the shell of uid in /etc/passwd, or "".
func passwdShell(uid string) string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[2] == uid && f[6] != "" {
			return f[6]
		}
	}
	return ""
}
