package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// TestAgentTokenFile: `coder agent` reads its token from
// CODER_AGENT_TOKEN_FILE (so that it is in neither its environment nor its
// command line) and connects with it; a missing or empty file, or both
// ways at once, is a clear error.
func TestAgentTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"missing file", []string{"CODER_AGENT_TOKEN_FILE=" + filepath.Join(dir, "nope")}, "no such file"},
		{"empty file", []string{"CODER_AGENT_TOKEN_FILE=" + empty}, "is empty"},
		{"both", []string{"CODER_AGENT_TOKEN_FILE=" + empty, "CODER_AGENT_TOKEN=x"}, "give one"},
		{"neither", nil, "--agent-token-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := coderEnv(t, dir, append([]string{"CODER_AGENT_URL=http://127.0.0.1:1"}, c.env...), "", "agent")
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %q; want a failure that says %q", code, errOut, c.want)
			}
		})
	}

	// The real thing: a manual workspace's agent started with its token in
	// a file connects.
	srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t)}, "--config-dir", filepath.Join(dir, "server"))
	cfg := filepath.Join(dir, "cli")
	mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-email", "admin@example.com", "--first-user-password", "admin-password")
	tpl := filepath.Join(dir, "manual.yaml")
	if err := os.WriteFile(tpl, []byte("provisioner: manual\nagents:\n  - name: main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCoder(t, cfg, "templates", "push", "manual", "-f", tpl)
	var w sdk.Workspace
	if err := json.Unmarshal([]byte(mustCoder(t, cfg, "create", "dev", "-t", "manual", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(w.Agents[0].Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agent := exec.CommandContext(ctx, testutil.CoderBinary(t), "agent")
	agent.Env = append(testutil.CleanEnv(), "CODER_AGENT_URL="+srv.URL, "CODER_AGENT_TOKEN_FILE="+tokenFile)
	agent.Dir = dir
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); agent.Wait() })
	testutil.Eventually(t, 30*time.Second, "the agent to connect", func() bool {
		ws := listWorkspaces(t, cfg)
		return len(ws) == 1 && ws[0].Agents[0].Status == sdk.AgentConnected
	})
}
