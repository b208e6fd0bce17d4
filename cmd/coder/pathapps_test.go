package main_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// TestServerPathAppFlags: the path-app flags and their CODER_* variables
// reach the server (handlers' TestPathAppAccess has what they do).
func TestServerPathAppFlags(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set(sdk.SessionTokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Run("dangerous", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cfg := filepath.Join(dir, "cli")
		srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t), "CODER_DANGEROUS_ALLOW_PATH_APP_SITE_OWNER_ACCESS=true"},
			"--config-dir", filepath.Join(dir, "server"), "--dangerous-allow-path-app-sharing")
		mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")
		tok, err := os.ReadFile(filepath.Join(cfg, "session"))
		if err != nil {
			t.Fatal(err)
		}
		code, body := get(t, srv.URL+"/deployment", strings.TrimSpace(string(tok)))
		if code != http.StatusOK || !strings.Contains(body, `data-setting="Path apps">shared as each template says (dangerous)<`) ||
			!strings.Contains(body, `data-setting="Path apps of other users for site owners">on<`) {
			t.Fatalf("deployment page: %d\n%s", code, body)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t), "CODER_DISABLE_PATH_APPS=true"},
			"--config-dir", filepath.Join(dir, "server"))
		code, body := get(t, srv.URL+"/@admin/dev.main/apps/code/", "")
		if code != http.StatusForbidden || !strings.Contains(body, "Path apps are off") {
			t.Fatalf("path app with CODER_DISABLE_PATH_APPS: %d\n%s", code, body)
		}
	})
}
