package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
)

// TestMakeRun runs scripts/dev.sh, what `make run` runs after building, in
// a copy of the checkout's layout (the script, the default template, the
// binary): it prints the dashboard's address and the admin's login, the
// workspace dev comes up with its agent connected and its startup script
// (Jupyter) ready, and Ctrl+C leaves no process behind: no server, no
// PostgreSQL, no agent, nothing the startup script started.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	bin := testutil.CoderBinary(t)
	root := testutil.ProvisionerDir(t) // traversable: the workspace's OS account lives in it as root
	for src, dst := range map[string]string{"../../scripts/dev.sh": "scripts/dev.sh", "../../templates/default.yaml": "templates/default.yaml"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(root, "bin", "coder")); err != nil {
		t.Fatal(err)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "dev.sh"))
	cmd.Env = append(testutil.CleanEnv(), "CODER_HTTP_ADDRESS="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	output := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		// Whatever happened, nothing of this run outlives the test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for _, pid := range processesUnder(root) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	testutil.Eventually(t, 3*time.Minute, "make run's banner", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("dev.sh exited early (%v):\n%s", err, output())
		default:
		}
		return strings.Contains(output(), "password  ")
	})
	banner := output()
	password, err := os.ReadFile(filepath.Join(root, ".coder-dev", "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Open http://" + addr, "username  admin", "password  " + strings.TrimSpace(string(password)), "http://" + addr + "/@admin/dev", "*.localhost:"} {
		if !strings.Contains(banner, strings.TrimPrefix(want, "*")) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	// The workspace comes up: agent connected, startup script ready.
	list := func() string {
		out, _ := exec.Command(bin, "list", "--global-config", filepath.Join(root, ".coder-dev", "cli"), "-o", "json").CombinedOutput()
		return string(out)
	}
	testutil.Eventually(t, 3*time.Minute, "dev's agent connected with its startup script ready", func() bool {
		l := list()
		return strings.Contains(l, `"status": "connected"`) && strings.Contains(l, `"startup_state": "ready"`)
	})
	if len(processesUnder(root)) < 3 { // server, PostgreSQL, agent at least
		t.Fatalf("expected the server, PostgreSQL and the agent under %s, found pids %v", root, processesUnder(root))
	}

	// Ctrl+C (the terminal sends SIGINT to the foreground process group).
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev.sh still running 2 minutes after Ctrl+C:\n%s", output())
	}
	testutil.Eventually(t, 15*time.Second, "no process of make run left", func() bool {
		return len(processesUnder(root)) == 0
	})
}

// processesUnder lists the processes whose command line, working
// directory or executable lies under dir.
func processesUnder(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p := filepath.Join("/proc", e.Name())
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		if bytes.Contains(cmdline, []byte(dir)) || strings.HasPrefix(cwd, dir) || strings.HasPrefix(exe, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
