package testutil

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a `coder server` process started by StartServer.
type Server struct {
	// URL is the dashboard URL the server printed in its banner.
	URL string

	t    testing.TB
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

var dashboardRE = regexp.MustCompile(`Dashboard:\s+(\S+)`)

// StartServer runs `coder server` with args (on 127.0.0.1:0 unless args
// give --http-address; STUN on a free loopback port) and env added to an
// environment without the caller's CODER_* variables, and waits for its
// banner. The server stops its local agents when it exits
// (CODER_STOP_LOCAL_AGENTS_ON_EXIT=true) unless env says otherwise.
// Cleanup stops it with SIGINT (Ctrl+C) and logs its output if the test
// failed.
func StartServer(t testing.TB, env []string, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, done: make(chan struct{})}
	full := []string{"server", "--derp-server-stun-addresses", "127.0.0.1:0"}
	if !hasFlag(args, "--http-address") {
		full = append(full, "--http-address", "127.0.0.1:0")
	}
	s.cmd = exec.Command(CoderBinary(t), append(full, args...)...)
	s.cmd.Env = append(append(CleanEnv(), "CODER_STOP_LOCAL_AGENTS_ON_EXIT=true"), env...)
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := dashboardRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urlCh <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server output:\n%s", s.Logs())
		}
	})
	select {
	case s.URL = <-urlCh:
	case <-s.done:
		t.Fatalf("coder server exited before it was ready:\n%s", s.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("coder server not ready after 60 s:\n%s", s.Logs())
	}
	return s
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// Logs returns what the server printed so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop sends SIGINT (Ctrl+C) and waits for a clean exit: a server that
// does not stop within 30 s, or exits non-zero, fails the test.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("coder server did not stop within 30 s of Ctrl+C")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("coder server exited with %d after Ctrl+C", code)
	}
}

// Kill sends sig (SIGTERM, SIGKILL: a restart or a crash) and waits up
// to 30 s for the server to exit, whatever its exit code.
func (s *Server) Kill(sig syscall.Signal) {
	s.t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("coder server did not exit within 30 s of %v", sig)
	}
}

// CleanEnv is the process's environment without any CODER_* variable.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CODER_") {
			env = append(env, kv)
		}
	}
	return env
}

// Eventually polls cond every 25 ms until it returns true, and fails the
// test when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
