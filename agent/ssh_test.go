package agent_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/gatewaydev/coder/agent"
)

// startSSH serves an agent SSH server on loopback and returns a client
// that pins its host key.
func startSSH(t *testing.T) (*ssh.Client, string) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	dir := t.TempDir()
	key := agent.SSHHostKey("test-token")
	srv, err := agent.NewSSHServer(agent.SSHOptions{HostKey: key, Dir: dir, Env: []string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
	})
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "coder", HostKeyCallback: ssh.FixedHostKey(pub), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

func TestSSHHostKeyIsStableAndPinned(t *testing.T) {
	if !bytes.Equal(agent.SSHHostKey("a"), agent.SSHHostKey("a")) {
		t.Fatal("host key of one token differs between calls")
	}
	if bytes.Equal(agent.SSHHostKey("a"), agent.SSHHostKey("b")) {
		t.Fatal("two tokens share a host key")
	}
	c, _ := startSSH(t)
	other, _ := ssh.NewPublicKey(agent.SSHHostKey("other").Public())
	_, err := ssh.Dial("tcp", c.RemoteAddr().String(), &ssh.ClientConfig{User: "coder", HostKeyCallback: ssh.FixedHostKey(other), Timeout: 10 * time.Second})
	if err == nil {
		t.Fatal("a client pinning another key connected")
	}
}

func TestSSHExec(t *testing.T) {
	c, dir := startSSH(t)
	for _, tc := range []struct {
		name, cmd, stdin string
		env              map[string]string
		stdout, stderr   string
		code             int
	}{
		{name: "stdout", cmd: "echo ok", stdout: "ok\n"},
		{name: "exit code and stderr", cmd: "echo oops >&2; exit 42", stderr: "oops\n", code: 42},
		{name: "env", cmd: `echo "$LANG $FOO"`, env: map[string]string{"LANG": "C.UTF-8", "FOO": "bar"}, stdout: "C.UTF-8 bar\n"},
		{name: "stdin", cmd: "cat", stdin: "hello\n", stdout: "hello\n"},
		{name: "working directory", cmd: "pwd", stdout: dir + "\n"},
		{name: "no token in env", cmd: "env | grep -c CODER_AGENT_TOKEN || true", stdout: "0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for k, v := range tc.env {
				if err := s.Setenv(k, v); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut bytes.Buffer
			s.Stdout, s.Stderr, s.Stdin = &out, &errOut, strings.NewReader(tc.stdin)
			err = s.Run(tc.cmd)
			code := 0
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitStatus()
			} else if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.stdout || errOut.String() != tc.stderr || code != tc.code {
				t.Fatalf("got stdout %q stderr %q code %d, want %q %q %d", out.String(), errOut.String(), code, tc.stdout, tc.stderr, tc.code)
			}
		})
	}
}

func TestSSHPTYResize(t *testing.T) {
	c, _ := startSSH(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm-256color", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	r := newLineReader(t, out)
	io.WriteString(in, "echo TERM=$TERM; stty size; tty >/dev/null && echo istty\n")
	r.waitFor(t, "TERM=xterm-256color")
	r.waitFor(t, "24 80")
	r.waitFor(t, "istty")
	if err := s.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	// The window change travels beside the data, not in order with it: ask
	// until the shell sees the new size.
	deadline := time.Now().Add(10 * time.Second)
	for {
		io.WriteString(in, "stty size\n")
		if l := r.line(t); strings.Contains(l, "40 120") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell never saw the window change to 40x120")
		}
	}
	io.WriteString(in, "exit 3\n")
	var ee *ssh.ExitError
	if err := s.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("shell exit: %v, want status 3", err)
	}
}

func TestSSHSignal(t *testing.T) {
	c, _ := startSSH(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 30"); err != nil {
		t.Fatal(err)
	}
	newLineReader(t, out).waitFor(t, "started")
	if err := s.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *ssh.ExitError
	if err := s.Wait(); !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("after SIGTERM: %v, want exit signal TERM", err)
	}
}

func TestSSHSFTP(t *testing.T) {
	c, dir := startSSH(t)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.Create("hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hi there"))
	f.Close()
	b, err := os.ReadFile(filepath.Join(dir, "hello.txt"))
	if err != nil || string(b) != "hi there" {
		t.Fatalf("file written over sftp: %q %v", b, err)
	}
	ents, err := sc.ReadDir(".")
	if err != nil || len(ents) != 1 || ents[0].Name() != "hello.txt" {
		t.Fatalf("sftp ls: %v %v", ents, err)
	}
}

func TestSSHPortForwarding(t *testing.T) {
	c, _ := startSSH(t)
	echo := echoServer(t)

	// Local forward: the client asks the workspace to dial.
	conn, err := c.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn, "local")

	// Remote forward: the workspace listens, the client is dialled back.
	ln, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		rc, err := ln.Accept()
		if err != nil {
			return
		}
		defer rc.Close()
		io.Copy(rc, rc)
	}()
	wc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, wc, "remote")
}

func TestSSHAgentForwarding(t *testing.T) {
	c, _ := startSSH(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring := sshagent.NewKeyring()
	if err := keyring.Add(sshagent.AddedKey{PrivateKey: priv, Comment: "forwarded-key"}); err != nil {
		t.Fatal(err)
	}
	if err := sshagent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := sshagent.RequestAgentForwarding(s); err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	in, _ := s.StdinPipe()
	if err := s.Start(`echo "$SSH_AUTH_SOCK"; read x`); err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimSpace(newLineReader(t, out).line(t))
	if sock == "" {
		t.Fatal("SSH_AUTH_SOCK is not set in the session")
	}
	uc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sshagent.NewClient(uc).List()
	uc.Close()
	if err != nil || len(keys) != 1 || keys[0].Comment != "forwarded-key" {
		t.Fatalf("keys through the forwarded agent: %v %v", keys, err)
	}
	in.Write([]byte("\n"))
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
}

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q %v", msg, buf, err)
	}
}

// lineReader reads lines from a stream in the background, until the
// stream ends or the test does (lines nobody reads are then dropped).
type lineReader struct{ lines chan string }

func newLineReader(t *testing.T, r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 100)}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		defer close(lr.lines)
		var buf []byte
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			buf = append(buf, b[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				select {
				case lr.lines <- strings.TrimRight(string(buf[:i]), "\r"):
				case <-done:
					return
				}
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	return lr
}

func (lr *lineReader) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-lr.lines:
		if !ok {
			t.Fatal("stream ended")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10 s")
	}
	return ""
}

func (lr *lineReader) waitFor(t *testing.T, want string) {
	t.Helper()
	for {
		if l := lr.line(t); strings.Contains(l, want) {
			return
		}
	}
}

// TestSSHSFTPExitStatus: the SFTP subsystem ends with exit status 0 (scp
// in SFTP mode fails without it).
func TestSSHSFTPExitStatus(t *testing.T) {
	c, _ := startSSH(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"})); !ok || err != nil {
		t.Fatalf("subsystem sftp: %v %v", ok, err)
	}
	ch.CloseWrite()
	for req := range reqs {
		if req.Type == "exit-status" {
			if st := ssh.Marshal(struct{ Status uint32 }{0}); string(req.Payload) != string(st) {
				t.Fatalf("exit status payload %x, want 0", req.Payload)
			}
			return
		}
	}
	t.Fatal("the sftp session closed without an exit status")
}

// TestSSHHangupOnDisconnect: when the client goes away while a command
// runs, the command gets SIGHUP (as with sshd), so nothing is left waiting
// on it and the server can close.
func TestSSHHangupOnDisconnect(t *testing.T) {
	c, dir := startSSH(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm-256color", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("trap 'echo hup > hung-up; exit 0' HUP; echo ready; while :; do sleep 0.1; done"); err != nil {
		t.Fatal(err)
	}
	newLineReader(t, out).waitFor(t, "ready")
	c.Close()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "hung-up")); err == nil && strings.TrimSpace(string(b)) == "hup" {
			return
		}
		select {
		case <-deadline:
			t.Fatal("the command did not get SIGHUP after the client left")
		case <-tick.C:
		}
	}
}
