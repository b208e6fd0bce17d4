package cli_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewaydev/coder/cli"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// runCLI runs one client command in this process, with its session in cfg.
func runCLI(t *testing.T, cfg string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	root := &cobra.Command{Use: "coder", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands("test")...)
	root.SetArgs(append(args, "--global-config", cfg))
	return root.ExecuteContext(ctx)
}

// TestCommandsInProcess runs the account, user, template and workspace
// commands in this process against a real server (built-in PostgreSQL)
// and checks what they did through the API.
func TestCommandsInProcess(t *testing.T) {
	dir := testutil.ProvisionerDir(t)
	cfg := filepath.Join(dir, "cli")
	srv := testutil.StartServer(t, nil, "--config-dir", filepath.Join(dir, "server"))

	if err := runCLI(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password"); err != nil {
		t.Fatalf("login: %v", err)
	}
	tok, err := os.ReadFile(filepath.Join(cfg, "session"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &sdk.Client{URL: u, Token: strings.TrimSpace(string(tok))}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if me, err := c.Me(ctx); err != nil || me.Username != "admin" {
		t.Fatalf("the saved session is %+v, %v; want admin's", me, err)
	}

	if err := runCLI(t, cfg, "users", "create", "-u", "bob", "-e", "bob@example.com", "-p", "bob-password"); err != nil {
		t.Fatalf("users create: %v", err)
	}
	if users, err := c.ListUsers(ctx); err != nil || len(users) != 2 {
		t.Fatalf("users after create: %+v, %v", users, err)
	}
	if err := runCLI(t, cfg, "templates", "push", "default", "-f", filepath.Join("..", "templates", "default.yaml")); err != nil {
		t.Fatalf("templates push: %v", err)
	}
	if ts, err := c.ListTemplates(ctx); err != nil || len(ts) != 1 || ts[0].Name != "default" {
		t.Fatalf("templates after push: %+v, %v", ts, err)
	}
	if err := runCLI(t, cfg, "create", "dev", "-t", "default"); err != nil {
		t.Fatalf("create: %v", err)
	}
	if ws, err := c.Workspace(ctx, "dev"); err != nil || ws.TemplateName != "default" {
		t.Fatalf("workspace after create: %+v, %v", ws, err)
	}
	if err := runCLI(t, cfg, "delete", "dev", "--yes"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if ws, err := c.ListWorkspaces(ctx, false); err != nil || len(ws) != 0 {
		t.Fatalf("workspaces after delete: %+v, %v", ws, err)
	}

	// Bad input: an unknown template is refused with the server's words,
	// and nothing is created.
	if err := runCLI(t, cfg, "create", "other", "-t", "nope"); err == nil || sdk.StatusCode(err) == 0 {
		t.Fatalf("create from an unknown template: %v, want an API error", err)
	}
	if ws, err := c.ListWorkspaces(ctx, false); err != nil || len(ws) != 0 {
		t.Fatalf("workspaces after a refused create: %+v, %v", ws, err)
	}

	if err := runCLI(t, cfg, "logout"); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := c.Me(ctx); sdk.StatusCode(err) != 401 {
		t.Fatalf("the old session after logout: %v, want 401", err)
	}
	if err := runCLI(t, cfg, "whoami"); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Fatalf("whoami after logout: %v, want not logged in", err)
	}
}
