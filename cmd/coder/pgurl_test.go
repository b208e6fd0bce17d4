package main_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/store/storetest"
)

// TestPostgresURLFlagWarns: a database URL given as a flag is in the
// server's world-readable command line, where local workspace accounts
// could read its password: the server says so and what to use instead;
// given in the environment, it says nothing.
func TestPostgresURLFlagWarns(t *testing.T) {
	t.Parallel()
	const warning = "--postgres-url on the command line is visible to every user of this machine"
	dir := t.TempDir()
	srv := testutil.StartServer(t, nil, "--config-dir", filepath.Join(dir, "flag"), "--postgres-url", storetest.URL(t))
	if logs := srv.Logs(); !strings.Contains(logs, warning) || !strings.Contains(logs, "CODER_PG_CONNECTION_URL") {
		t.Errorf("server started with --postgres-url did not warn:\n%s", logs)
	}
	srv = testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t)}, "--config-dir", filepath.Join(dir, "env"))
	if logs := srv.Logs(); strings.Contains(logs, warning) {
		t.Errorf("server started with CODER_PG_CONNECTION_URL warned:\n%s", logs)
	}
}
