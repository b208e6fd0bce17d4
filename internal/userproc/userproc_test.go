package userproc_test

import (
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/internal/userproc"
)

func TestBuilderShellDirAndEnv(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := userproc.New(userproc.Options{Dir: dir, Env: []string{"SHELL=/bin/sh", "FOO=base", "HOME=/elsewhere"}})
	if b.Shell() != "/bin/sh" {
		t.Errorf("shell %q, want $SHELL's /bin/sh", b.Shell())
	}
	c := b.Command("", "FOO=extra")
	if c.Path != "/bin/sh" || !slices.Equal(c.Args, []string{"-sh"}) {
		t.Errorf("login shell %s %q, want /bin/sh as -sh", c.Path, c.Args)
	}
	if c.Dir != dir {
		t.Errorf("dir %q, want %q", c.Dir, dir)
	}
	if c.SysProcAttr == nil || !c.SysProcAttr.Setsid {
		t.Error("the command does not start a session of its own")
	}
	want := []string{"SHELL=/bin/sh", "FOO=extra", "HOME=" + u.HomeDir, "PATH=" + userproc.DefaultPath, "USER=" + u.Username, "LOGNAME=" + u.Username}
	for _, kv := range want {
		if !slices.Contains(c.Env, kv) {
			t.Errorf("environment %q lacks %s", c.Env, kv)
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(c.Env), func(kv string) bool { return !strings.HasPrefix(kv, "FOO=") })); n != 1 {
		t.Errorf("FOO appears %d times in %q, want once", n, c.Env)
	}
	c = b.Command("echo hi")
	if !slices.Equal(c.Args, []string{"/bin/sh", "-c", "echo hi"}) {
		t.Errorf("command args %q", c.Args)
	}
}

func TestBuilderDefaults(t *testing.T) {
	t.Setenv("SHELL", "")
	t.Setenv("CODER_AGENT_TOKEN", "secret")
	b := userproc.New(userproc.Options{})
	want := "/bin/sh"
	if pw, err := os.ReadFile("/etc/passwd"); err == nil {
		for line := range strings.SplitSeq(string(pw), "\n") {
			if f := strings.Split(line, ":"); len(f) == 7 && f[2] == strconv.Itoa(os.Getuid()) && f[6] != "" {
				want = f[6]
			}
		}
	}
	if b.Shell() != want {
		t.Errorf("without $SHELL the shell is %q, want the passwd one %q", b.Shell(), want)
	}
	for _, kv := range b.Environ() {
		if strings.HasPrefix(kv, "CODER_AGENT_") {
			t.Errorf("the agent's %s reaches sessions", kv)
		}
	}
	home, _ := os.UserHomeDir()
	if st, err := os.Stat(home); err == nil && st.IsDir() && b.Dir() != home {
		t.Errorf("dir %q, want the home %q", b.Dir(), home)
	}
}

// start runs script in a session of its own and returns its pid and a
// channel closed once it has been waited for.
func start(t *testing.T, script string) (int, <-chan struct{}) {
	t.Helper()
	b := userproc.New(userproc.Options{Shell: "/bin/sh", Dir: t.TempDir()})
	c := b.Command(script)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		c.Wait()
		close(waited)
	}()
	return c.Process.Pid, waited
}

func TestHangupEndsOnSIGHUP(t *testing.T) {
	pid, waited := start(t, "sleep 600")
	if !userproc.Hangup(pid, time.Minute, waited) {
		t.Fatal("a shell that dies of SIGHUP needed SIGKILL")
	}
	<-waited
}

// TestHangupKillsWhatIgnoresSIGHUP: a group that ignores SIGHUP, a
// background child included, is killed after the grace.
func TestHangupKillsWhatIgnoresSIGHUP(t *testing.T) {
	pidFile := t.TempDir() + "/child"
	pid, waited := start(t, "trap '' HUP; sleep 600 & echo $! > "+pidFile+"; echo ready >> "+pidFile+"; wait")
	var child int
	testutil.Eventually(t, 10*time.Second, "the script's child", func() bool {
		b, _ := os.ReadFile(pidFile)
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return false
		}
		child = atoi(t, f[0])
		return true
	})
	if userproc.Hangup(pid, 50*time.Millisecond, waited) {
		t.Fatal("a group that ignores SIGHUP ended on it")
	}
	<-waited
	// The child is not ours: once killed it may linger as a zombie until
	// whoever inherited it reaps it.
	testutil.Eventually(t, 10*time.Second, "the background child to die", func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil {
			return true
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		return strings.HasPrefix(rest, "Z")
	})
}

func TestTerminateRefusesBadGroups(t *testing.T) {
	for _, pgid := range []int{0, -1} {
		if userproc.Terminate(pgid, syscall.SIGTERM, time.Millisecond, nil) {
			t.Errorf("Terminate(%d) reported a clean end", pgid)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a pid: %q", s)
	}
	return n
}
