package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// coder runs the CLI with its own config dir and returns stdout, stderr
// and the exit code.
func coder(t *testing.T, cfg, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return coderEnv(t, cfg, nil, stdin, args...)
}

// coderEnv is coder with extra environment variables.
func coderEnv(t *testing.T, cfg string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.CoderBinary(t), args...)
	cmd.Env = append(append(testutil.CleanEnv(), "CODER_CONFIG_DIR="+cfg), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errorsAs(err, &ee) {
			t.Fatalf("run coder %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func errorsAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

func mustCoder(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	return mustCoderEnv(t, cfg, nil, args...)
}

// mustCoderEnv is mustCoder with extra environment variables.
func mustCoderEnv(t *testing.T, cfg string, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := coderEnv(t, cfg, env, "", args...)
	if code != 0 {
		t.Fatalf("coder %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func listWorkspaces(t *testing.T, cfg string) []sdk.Workspace {
	t.Helper()
	var ws []sdk.Workspace
	if err := json.Unmarshal([]byte(mustCoder(t, cfg, "list", "-o", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestServerBuiltinPostgres is `make run` by hand: a server on the built-in
// PostgreSQL, the first user, the default template, a workspace whose agent
// the server runs; Ctrl+C; the next start finds it all again.
func TestServerBuiltinPostgres(t *testing.T) {
	t.Parallel()
	dir := testutil.ProvisionerDir(t) // as root, admin's agent runs as an OS account with its home in here
	cfg := filepath.Join(dir, "cli")
	srv := testutil.StartServer(t, nil, "--config-dir", filepath.Join(dir, "server"))

	// A second server on the same config dir refuses to start.
	second := exec.Command(testutil.CoderBinary(t), "server", "--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "127.0.0.1:0", "--config-dir", filepath.Join(dir, "server"))
	second.Env = testutil.CleanEnv()
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already") {
		t.Fatalf("second server on the same config dir: err %v, output:\n%s", err, out)
	}

	mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-email", "admin@example.com", "--first-user-password", "admin-password")
	info, err := os.Stat(filepath.Join(cfg, "session"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("session file mode %v, want 0600", info.Mode().Perm())
	}
	if out := mustCoder(t, cfg, "whoami"); !strings.Contains(out, "admin") {
		t.Fatalf("whoami: %q", out)
	}
	out2 := mustCoder(t, cfg, "templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	if !strings.Contains(out2, `Created template "default"`) {
		t.Fatalf("templates push: %q", out2)
	}
	if out := mustCoder(t, cfg, "templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml")); !strings.Contains(out, "Updated") {
		t.Fatalf("second push: %q", out)
	}
	mustCoder(t, cfg, "create", "dev", "-t", "default")
	testutil.Eventually(t, 30*time.Second, "the local agent to connect", func() bool {
		ws := listWorkspaces(t, cfg)
		return len(ws) == 1 && ws[0].Status == "running" && ws[0].Agents[0].Status == sdk.AgentConnected
	})
	table := mustCoder(t, cfg, "list")
	if !strings.HasPrefix(table, "WORKSPACE") || !strings.Contains(table, "admin/dev") || !strings.Contains(table, "1/1") {
		t.Fatalf("list table:\n%s", table)
	}

	// Stop and start: the agent goes away and comes back.
	mustCoder(t, cfg, "stop", "dev")
	testutil.Eventually(t, 15*time.Second, "the agent to disconnect", func() bool {
		return listWorkspaces(t, cfg)[0].Agents[0].Status == sdk.AgentDisconnected
	})
	mustCoder(t, cfg, "start", "dev")
	testutil.Eventually(t, 30*time.Second, "the agent to reconnect", func() bool {
		return listWorkspaces(t, cfg)[0].Agents[0].Status == sdk.AgentConnected
	})

	// Ctrl+C stops the server and its agents; a restart finds the same
	// users and workspaces, and starts the agent again.
	srv.Stop()
	if pids := agentPIDs(t, dir); len(pids) > 0 {
		t.Fatalf("agents still running after the server stopped: %v", pids)
	}
	srv2 := testutil.StartServer(t, nil, "--config-dir", filepath.Join(dir, "server"))
	if out := mustCoder(t, cfg, "whoami", "--url", srv2.URL); !strings.Contains(out, "admin") {
		t.Fatalf("whoami after restart: %q", out)
	}
	mustCoder(t, cfg, "login", srv2.URL, "--username", "admin", "--password", "admin-password")
	testutil.Eventually(t, 30*time.Second, "the agent to reconnect after a restart", func() bool {
		ws := listWorkspaces(t, cfg)
		return len(ws) == 1 && ws[0].Name == "dev" && ws[0].Agents[0].Status == sdk.AgentConnected
	})
	out3, _, code := coder(t, cfg, "", "delete", "dev", "--yes")
	if code != 0 || !strings.Contains(out3, "deleted") {
		t.Fatalf("delete: %d %q", code, out3)
	}
	if ws := listWorkspaces(t, cfg); len(ws) != 0 {
		t.Fatalf("workspaces after delete: %+v", ws)
	}
}

// agentPIDs lists `coder agent` processes whose working directory is under
// dir.
func agentPIDs(t *testing.T, dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, dir) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("agent")) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestServerExternalPostgres(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cli")
	srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t)}, "--config-dir", filepath.Join(dir, "server"))
	if strings.Contains(srv.Logs(), "built-in") {
		t.Fatalf("external database, but the server started the built-in one:\n%s", srv.Logs())
	}
	mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")

	// Password prompt: username and password from stdin.
	cfg2 := filepath.Join(dir, "cli2")
	out, errOut, code := coder(t, cfg2, "admin\nadmin-password\n", "login", srv.URL)
	if code != 0 || !strings.Contains(out, "Welcome to Coder, admin") {
		t.Fatalf("login with prompts: %d %q %q", code, out, errOut)
	}
	// Browser flow: a token pasted at the prompt.
	tok, err := os.ReadFile(filepath.Join(cfg2, "session"))
	if err != nil {
		t.Fatal(err)
	}
	cfg3 := filepath.Join(dir, "cli3")
	out, errOut, code = coder(t, cfg3, string(tok), "login", srv.URL)
	if code != 0 || !strings.Contains(out, "Welcome to Coder, admin") || !strings.Contains(errOut, "/cli-auth") {
		t.Fatalf("login with a pasted token: %d %q %q", code, out, errOut)
	}
	// Users.
	mustCoder(t, cfg, "users", "create", "--username", "bob", "--email", "bob@example.com", "--password", "bob-password")
	var us []sdk.User
	if err := json.Unmarshal([]byte(mustCoder(t, cfg, "users", "list", "-o", "json")), &us); err != nil || len(us) != 2 {
		t.Fatalf("users list: %v %+v", err, us)
	}
	_, errOut, code = coder(t, cfg, "", "users", "create", "--username", "bob", "--email", "bob2@example.com", "--password", "bob-password")
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("duplicate user: %d %q", code, errOut)
	}
	// A template with an error names the line, and nothing is stored.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("agents:\n  - name: main\n    apps:\n      - slug: Web\n        url: http://localhost\n"), 0o644)
	_, errOut, code = coder(t, cfg, "", "templates", "push", "bad", "-f", bad)
	if code == 0 || !strings.Contains(errOut, "line 4") {
		t.Fatalf("bad template: %d %q", code, errOut)
	}
	if out := mustCoder(t, cfg, "templates", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("templates after a bad push: %s", out)
	}
	// Logout forgets the session, and the key stops working.
	mustCoder(t, cfg2, "logout")
	c := &sdk.Client{URL: mustParseURL(t, srv.URL), Token: strings.TrimSpace(string(tok))}
	if _, err := c.Me(context.Background()); sdk.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("key after logout: %v", err)
	}
	if _, errOut, code := coder(t, cfg2, "", "whoami"); code == 0 || !strings.Contains(errOut, "not logged in") {
		t.Fatalf("whoami after logout: %d %q", code, errOut)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"bad flag value", nil, []string{"server", "--http-address", "nope"}, []string{"--http-address", "CODER_HTTP_ADDRESS"}},
		{"bad env value", []string{"CODER_HTTP_ADDRESS=nope"}, []string{"server"}, []string{"--http-address", "CODER_HTTP_ADDRESS"}},
		{"bad bool env", []string{"CODER_BROWSER_ONLY=maybe"}, []string{"server"}, []string{"--browser-only", "CODER_BROWSER_ONLY"}},
		{"bad bool flag", nil, []string{"server", "--tls-enable=maybe"}, []string{"--tls-enable", "CODER_TLS_ENABLE"}},
		{"bad url", nil, []string{"server", "--access-url", "ftp://x"}, []string{"--access-url", "CODER_ACCESS_URL"}},
		{"tls without cert", nil, []string{"server", "--tls-enable"}, []string{"--tls-cert-file", "CODER_TLS_CERT_FILE"}},
		{"agent without url", nil, []string{"agent"}, []string{"--agent-url", "CODER_AGENT_URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(testutil.CoderBinary(t), tc.args...)
			cmd.Env = append(testutil.CleanEnv(), tc.env...)
			cmd.Env = append(cmd.Env, "CODER_CONFIG_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0, want an error; output:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 {
				t.Errorf("want a one-line error, got:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("error %q does not name %s", out, w)
				}
			}
		})
	}
}

// TestEveryFlagHasEnv walks every command's --help: each flag shows its
// CODER_* environment variable.
func TestEveryFlagHasEnv(t *testing.T) {
	t.Parallel()
	cmds := [][]string{{"server"}, {"agent"}, {"login"}, {"logout"}, {"whoami"}, {"users", "create"}, {"users", "list"},
		{"templates", "push"}, {"templates", "list"}, {"create"}, {"list"}, {"start"}, {"stop"}, {"delete"}}
	flagRE := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)
	for _, c := range cmds {
		out, _, code := coder(t, t.TempDir(), "", append(c, "--help")...)
		if code != 0 {
			t.Fatalf("%v --help: exit %d", c, code)
		}
		n := 0
		for _, line := range strings.Split(out, "\n") {
			m := flagRE.FindStringSubmatch(line)
			if m == nil || m[1] == "help" {
				continue
			}
			n++
			if !strings.Contains(line, "[$CODER_") {
				t.Errorf("coder %s --%s has no CODER_* variable in --help: %q", strings.Join(c, " "), m[1], line)
			}
		}
		if n == 0 && c[0] != "logout" {
			t.Errorf("coder %s --help lists no flags:\n%s", strings.Join(c, " "), out)
		}
	}
}
