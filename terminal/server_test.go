package terminal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// testPrompt is the prompt of the test shells.
const testPrompt = "tprompt$ "

// shellCmd runs an interactive bash with the test rc file.
const shellCmd = "exec bash --noprofile --rcfile ./.testrc"

// newServer starts a Server with a bash test environment.
func newServer(t *testing.T, opts terminal.ServerOptions) (*terminal.Server, terminal.DialFunc) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testutil.Logger(t, slog.LevelDebug)
	}
	if opts.NewScreen == nil {
		// Tests compare raw bytes, which the raw-tail screen replays as
		// they were; keep it when the default becomes the emulator.
		opts.NewScreen = terminal.NewRawTailScreen
	}
	opts.Shell = "/bin/bash"
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	rc := "PS1='" + testPrompt + "'\nbind 'set enable-bracketed-paste off'\n"
	if err := os.WriteFile(filepath.Join(opts.Dir, ".testrc"), []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + opts.Dir, "PS1=" + testPrompt, "LANG=C.UTF-8"}
	srv := terminal.NewServer(opts)
	return srv, terminaltest.StartServer(t, srv)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func params(id, command string) terminal.Params {
	return terminal.Params{Reconnect: id, Width: 80, Height: 24, Command: command}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	c := terminaltest.Attach(t, dial, params(newID(), shellCmd), terminaltest.ClientOptions{})
	c.WaitText(testPrompt)
	c.Type("echo hi\r")
	c.WaitText("\r\nhi\r\n")
}

func TestLoginShellAndTerm(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	c := terminaltest.Attach(t, dial, params(newID(), ""), terminaltest.ClientOptions{})
	c.Type("shopt -q login_shell && echo LOGIN$((1+1)); echo T=$TERM.\r")
	c.WaitText("LOGIN2")
	c.WaitText("T=xterm-256color.")
}

func TestReconnectRestoresScreen(t *testing.T) {
	t.Parallel()
	srv, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	c := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	c.Type("echo $((1234+1))marker\r")
	c.WaitText("1235marker\r\n" + testPrompt)
	c.Close()
	testutil.Eventually(t, terminaltest.WaitLong, "detach", func() bool {
		n, _, _, _ := srv.AttachStatsForTest(id)
		return n == 0
	})

	c2 := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	c2.WaitText("1235marker\r\n" + testPrompt)
	if _, screens := c2.Stats(); screens != 1 {
		t.Errorf("got %d screen frames, want 1", screens)
	}
	c2.Type("echo $((1000+1))again\r")
	c2.WaitText("1001again\r\n" + testPrompt)
	text := c2.Text()
	for _, s := range []string{"1235marker\r\n", "1001again\r\n"} {
		if n := strings.Count(text, s); n != 1 {
			t.Errorf("%q appears %d times after reconnect, want once (no gap, no duplicate):\n%q", s, n, text)
		}
	}
	if n := srv.SessionsForTest(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

func TestConcurrentFirstAttachesShareOneSession(t *testing.T) {
	t.Parallel()
	srv, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	const n = 8
	conns := make([]*terminal.Conn, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			conns[i], errs[i] = terminal.Attach(t.Context(), dial, params(id, shellCmd))
		})
	}
	close(start)
	wg.Wait()
	clients := make([]*terminaltest.Client, n)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("attach %d: %v", i, errs[i])
		}
		clients[i] = terminaltest.NewClient(t, conns[i], terminaltest.ClientOptions{})
	}
	testutil.Eventually(t, terminaltest.WaitLong, "all attached", func() bool {
		a, _, _, _ := srv.AttachStatsForTest(id)
		return a == n
	})
	if got := srv.SessionsForTest(); got != 1 {
		t.Fatalf("%d sessions after %d concurrent first attaches, want 1", got, n)
	}
	clients[0].Type("echo pid=$$.\r")
	pid := waitPID(clients[0])
	for _, c := range clients {
		c.WaitText("\r\npid=" + pid + ".\r\n")
	}
}

var pidRE = regexp.MustCompile(`\r\npid=([0-9]+)\.\r\n`)

// waitPID waits for the output of "echo pid=$$." and returns the pid.
func waitPID(c *terminaltest.Client) string {
	c.WaitFor(terminaltest.WaitLong, "pid", pidRE.Match)
	return string(pidRE.FindSubmatch([]byte(c.Text()))[1])
}

func TestTwoClientsSeeSameOutput(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	a := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	b := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	a.Type("echo from-$((1+1))-a\r")
	a.WaitText("\r\nfrom-2-a\r\n")
	b.WaitText("\r\nfrom-2-a\r\n")
	b.Type("echo from-$((2+2))-b\r")
	a.WaitText("\r\nfrom-4-b\r\n")
	b.WaitText("\r\nfrom-4-b\r\n")
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	srv, dial := newServer(t, terminal.ServerOptions{})
	for _, tc := range []struct {
		name, command string
		want          int
	}{
		{"exit 3", "echo bye; exit 3", 3},
		{"exit 0", "true", 0},
		{"signal", "kill -TERM $$", 128 + int(syscall.SIGTERM)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newID()
			c := terminaltest.Attach(t, dial, params(id, tc.command), terminaltest.ClientOptions{})
			if got := c.WaitExit(); got != tc.want {
				t.Errorf("exit code %d, want %d", got, tc.want)
			}
			testutil.Eventually(t, terminaltest.WaitLong, "session removed", func() bool {
				_, _, _, _ = srv.AttachStatsForTest(id)
				return srv.SessionsForTest() == 0
			})
		})
	}
}

func TestExitedShellReportsToEveryAttach(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	a := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	b := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	a.WaitText(testPrompt)
	a.Type("echo last-$((5*5)); exit 5\r")
	for _, c := range []*terminaltest.Client{a, b} {
		if got := c.WaitExit(); got != 5 {
			t.Errorf("exit code %d, want 5", got)
		}
		if !strings.Contains(c.Text(), "\r\nlast-25\r\n") {
			t.Errorf("output before exit missing: %q", c.Text())
		}
	}
}

func TestIdleTimeoutEndsDetachedSession(t *testing.T) {
	t.Parallel()
	m := terminal.NewMetrics()
	srv, dial := newServer(t, terminal.ServerOptions{IdleTimeout: 200 * time.Millisecond, Metrics: m})
	id := newID()
	c := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	c.Type("echo pid=$$.\r")
	pid, _ := strconv.Atoi(waitPID(c))
	if got := gauge(t, m.Sessions); got != 1 {
		t.Errorf("sessions gauge %v, want 1", got)
	}
	if got := gauge(t, m.Attaches); got != 1 {
		t.Errorf("attaches gauge %v, want 1", got)
	}
	c.Close()
	testutil.Eventually(t, terminaltest.WaitLong, "idle session to end", func() bool {
		return srv.SessionsForTest() == 0 && syscall.Kill(pid, 0) == syscall.ESRCH
	})
	if got := gauge(t, m.Sessions); got != 0 {
		t.Errorf("sessions gauge %v, want 0", got)
	}
	if got := gauge(t, m.Attaches); got != 0 {
		t.Errorf("attaches gauge %v, want 0", got)
	}
	// The same id starts a fresh session.
	c2 := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	c2.Type("echo pid=$$.\r")
	if pid2 := waitPID(c2); pid2 == strconv.Itoa(pid) {
		t.Errorf("reattach after idle timeout found the old session (pid %s)", pid2)
	}
}

func TestAttachedSessionOutlivesIdleTimeout(t *testing.T) {
	t.Parallel()
	srv, dial := newServer(t, terminal.ServerOptions{IdleTimeout: 50 * time.Millisecond})
	id := newID()
	c := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{})
	// A command that outlasts several idle timeouts, measured by the shell.
	c.Type("sleep 0.5; echo still-$((2*3))\r")
	c.WaitText("\r\nstill-6\r\n")
	if srv.SessionsForTest() != 1 {
		t.Errorf("attached session ended")
	}
}

// TestFloodCtrlC runs yes with a fast and a stalled client: the agent's
// memory stays bounded and Ctrl+C brings the prompt back.
func TestFloodCtrlC(t *testing.T) {
	t.Parallel()
	const queue = 64 << 10
	srv, dial := newServer(t, terminal.ServerOptions{QueueBytes: queue})
	id := newID()
	fast := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{Limit: 1 << 20})
	stalled := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{Paused: true})
	fast.WaitText(testPrompt)
	fast.Type("yes\r")
	const flood = 8 << 20 // more than the stalled client's socket buffers
	testutil.Eventually(t, terminaltest.WaitLong, "8 MiB of yes", func() bool {
		n, _ := fast.Stats()
		_, q, _, screen := srv.AttachStatsForTest(id)
		if q > queue || screen > 512<<10 {
			t.Fatalf("memory not bounded: queue %d (limit %d), screen %d bytes", q, queue, screen)
		}
		return n > flood
	})
	_, _, resyncs, _ := srv.AttachStatsForTest(id)
	if resyncs == 0 {
		t.Errorf("the stalled client was never marked for resync")
	}
	start := time.Now()
	fast.Type("\x03")
	fast.WaitFor(terminaltest.WaitLong, "the prompt after Ctrl+C", func(b []byte) bool {
		return bytes.HasSuffix(b, []byte("\r\n"+testPrompt))
	})
	t.Logf("prompt back %v after Ctrl+C", time.Since(start))
	fast.Type("echo $((40+2))done\r")
	fast.WaitText("\r\n42done\r\n")
	stalled.Resume()
	stalled.WaitText("42done")
}

// TestSlowReaderResynced checks that a stalled attach is resynced with a
// fresh screen while another attach receives every byte in order. It is
// not parallel: under the load of the other tests the good attach could
// fall behind too, and be (rightly) resynced.
func TestSlowReaderResynced(t *testing.T) {
	srv, dial := newServer(t, terminal.ServerOptions{QueueBytes: 1 << 20})
	id := newID()
	good := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{Limit: 64 << 20})
	slow := terminaltest.Attach(t, dial, params(id, shellCmd), terminaltest.ClientOptions{Paused: true})
	good.WaitText(testPrompt)
	const n = 2000000 // 15 MB: more than the socket buffers and the queue
	good.Type(fmt.Sprintf("seq 1 %d; echo $((40+2))done\r", n))
	good.WaitText("\r\n42done\r\n")
	testutil.Eventually(t, terminaltest.WaitLong, "slow attach marked for resync", func() bool {
		_, _, resyncs, _ := srv.AttachStatsForTest(id)
		return resyncs > 0
	})

	// The good attach saw every line in order: all of them after its one
	// screen, or, if the machine was so loaded that it fell behind too and
	// was (rightly) resynced, every line after its last screen.
	text := good.Text()
	_, screens := good.Stats()
	first := 1
	if screens > 1 {
		t.Logf("the good attach was resynced %d times (a loaded machine)", screens-1)
		// The screen starts at a line start; its first full line sets
		// where the sequence resumes.
		rest := text[strings.Index(text, "\r\n")+2:]
		resumed, err := strconv.Atoi(rest[:strings.Index(rest, "\r\n")])
		if err != nil {
			t.Fatalf("resynced screen does not start with seq output: %q", tailOf(rest, 200))
		}
		first = resumed
		text = "\r\n" + rest
	} else {
		text = text[strings.Index(text, "\r\n1\r\n"):]
	}
	lines := strings.Split(text[2:], "\r\n")
	for k := first; k <= n; k++ {
		if lines[k-first] != strconv.Itoa(k) {
			t.Fatalf("line %d is %q, want %d", k, lines[k-first], k)
		}
	}
	if lines[n-first+1] != "42done" {
		t.Fatalf("after the last line: %q, want 42done", lines[n-first+1])
	}

	slow.Resume()
	slow.WaitText("42done")
	if _, screens := slow.Stats(); screens < 2 {
		t.Errorf("slow attach got %d screens, want a resync", screens)
	}
}

type dtoMetric = dto.Metric

// quietLogger drops Debug and Info logs (for tests with many sessions) and
// still fails on Error logs.
func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(leveled{testutil.Logger(t, slog.LevelDebug).Handler(), slog.LevelWarn})
}

type leveled struct {
	slog.Handler
	min slog.Level
}

func (l leveled) Enabled(ctx context.Context, lv slog.Level) bool { return lv >= l.min }

func (l leveled) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < l.min {
		return nil
	}
	return l.Handler.Handle(ctx, r)
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatalf("read gauge: %v", err)
	}
	return m.GetGauge().GetValue()
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
