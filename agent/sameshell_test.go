package agent_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// report prints what a shell was started as and with: BEGIN and END are
// split by quotes so that the echo of the typed line never matches.
const report = `echo BE""GIN; echo "shell=$SHELL"; echo "arg0=$0"; pwd; env | sort; echo EN""D`

// TestTerminalAndSSHStartTheSameShell: for the same user, the web terminal
// and SSH (a shell with a PTY, and `ssh -- command`) start the same shell
// in the same directory with the same environment, both with their
// defaults. $SHELL is set to a shell other than the passwd one, so that a
// server that ignores it starts another shell.
func TestTerminalAndSSHStartTheSameShell(t *testing.T) {
	shell := "/bin/sh"
	if passwdShell(t) == shell {
		shell = "/bin/bash"
	}
	t.Setenv("SHELL", shell)
	t.Setenv("CODER_AGENT_TOKEN", "secret") // never reaches a session
	dir := t.TempDir()

	key := agent.SSHHostKey("test-token")
	sshSrv, err := agent.NewSSHServer(agent.SSHOptions{HostKey: key, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- sshSrv.Serve(ln) }()
	t.Cleanup(func() {
		sshSrv.Close()
		<-served
	})
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "coder", HostKeyCallback: ssh.FixedHostKey(pub), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	termSrv := terminal.NewServer(terminal.ServerOptions{Dir: dir, Logger: testutil.Logger(t, slog.LevelDebug)})
	dial := terminaltest.StartServer(t, termSrv)

	// A login shell with a PTY each way.
	term := terminaltest.Attach(t, dial, terminal.Params{Reconnect: uuid(), Width: 200, Height: 50}, terminaltest.ClientOptions{})
	term.Type(report + "\r")
	term.WaitText("\r\nEND\r\n")
	termShell := between(t, term.Text())

	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out syncBuffer
	s.Stdout = &out
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm-256color", 50, 200, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(in, "%s\n", report)
	testutil.Eventually(t, terminaltest.WaitLong, "the SSH shell's report", func() bool {
		return strings.Contains(out.String(), "\r\nEND\r\n")
	})
	sshShell := between(t, out.String())
	fmt.Fprintf(in, "exit\n")

	want := []string{"shell=" + shell, "arg0=-" + shell[strings.LastIndex(shell, "/")+1:], dir}
	for name, got := range map[string][]string{"terminal": termShell, "ssh": sshShell} {
		if !slices.Equal(got[:3], want) {
			t.Errorf("%s shell started as %q, want %q", name, got[:3], want)
		}
	}
	compareEnv(t, "login shell", termShell, sshShell, "SSH_")

	// A command: the terminal's with a PTY, SSH's with pipes (so no TERM).
	cmdTerm := terminaltest.Attach(t, dial, terminal.Params{Reconnect: uuid(), Width: 200, Height: 50, Command: report}, terminaltest.ClientOptions{})
	cmdTerm.WaitText("\r\nEND\r\n")
	termCmd := between(t, cmdTerm.Text())
	s2, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	b, err := s2.Output(report)
	if err != nil {
		t.Fatal(err)
	}
	sshCmd := between(t, strings.ReplaceAll(string(b), "\n", "\r\n"))
	wantCmd := []string{"shell=" + shell, "arg0=" + shell, dir}
	for name, got := range map[string][]string{"terminal": termCmd, "ssh": sshCmd} {
		if !slices.Equal(got[:3], wantCmd) {
			t.Errorf("%s command started as %q, want %q", name, got[:3], wantCmd)
		}
	}
	compareEnv(t, "command", termCmd, sshCmd, "SSH_", "TERM=")
}

// compareEnv fails t unless a and b (lines after the first three) are the
// same but for lines with the given prefixes, and checks the login
// variables and the secret.
func compareEnv(t *testing.T, what string, a, b []string, skip ...string) {
	t.Helper()
	keep := func(lines []string) []string {
		var out []string
		for _, l := range lines[3:] {
			if !slices.ContainsFunc(skip, func(p string) bool { return strings.HasPrefix(l, p) }) {
				out = append(out, l)
			}
		}
		return out
	}
	ea, eb := keep(a), keep(b)
	if !slices.Equal(ea, eb) {
		t.Errorf("%s: the terminal's environment\n%s\ndiffers from SSH's\n%s", what, strings.Join(ea, "\n"), strings.Join(eb, "\n"))
	}
	home, _ := os.UserHomeDir()
	for _, v := range []string{"HOME=" + home, "USER=", "LOGNAME=", "PATH="} {
		if !slices.ContainsFunc(ea, func(l string) bool { return strings.HasPrefix(l, v) }) {
			t.Errorf("%s: no %s in the environment", what, v)
		}
	}
	for _, l := range ea {
		if strings.HasPrefix(l, "CODER_AGENT_") {
			t.Errorf("%s: the agent's %s reached the session", what, l)
		}
	}
}

// between returns the lines between the BEGIN and END lines of out.
func between(t *testing.T, out string) []string {
	t.Helper()
	i := strings.Index(out, "BEGIN\r\n")
	j := strings.Index(out, "\r\nEND\r\n")
	if i < 0 || j < i {
		t.Fatalf("no report in %q", out)
	}
	return strings.Split(out[i+len("BEGIN\r\n"):j], "\r\n")
}

// passwdShell is the shell of the test's user in /etc/passwd.
func passwdShell(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(os.Getuid())
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[2] == uid {
			return f[6]
		}
	}
	return ""
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
