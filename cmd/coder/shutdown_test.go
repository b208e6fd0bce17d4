package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// TestCtrlCEndsLongRequests: Ctrl+C with a workspace page's event stream
// open and an app request waiting on an app that never answers ends both
// at once, so the graceful shutdown finishes instead of running out its
// 10 s and closing connections by force (which the server logs).
func TestCtrlCEndsLongRequests(t *testing.T) {
	t.Parallel()
	// An app that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	dir := testutil.ProvisionerDir(t)
	cfg := filepath.Join(dir, "cli")
	srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(t)}, "--config-dir", filepath.Join(dir, "server"))
	mustCoder(t, cfg, "login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")
	tpl := filepath.Join(dir, "stuck.yaml")
	src := fmt.Sprintf("provisioner: local\nagents:\n  - name: main\n    apps:\n      - {slug: stuck, url: \"http://localhost:%d\"}\n", ln.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(tpl, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCoder(t, cfg, "templates", "push", "stuck", "-f", tpl)
	mustCoder(t, cfg, "create", "dev", "-t", "stuck")
	tok, err := os.ReadFile(filepath.Join(cfg, "session"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set(sdk.SessionTokenHeader, strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}

	// The event stream is open once its first event has arrived.
	events := get("/@admin/dev/events")
	defer events.Body.Close()
	if events.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %d", events.StatusCode)
	}
	eventsBody := bufio.NewReader(events.Body)
	if _, err := eventsBody.ReadString('\n'); err != nil {
		t.Fatalf("first event: %v", err)
	}
	// The app request is in flight once the app has its connection.
	testutil.Eventually(t, 60*time.Second, "the local agent to connect", func() bool {
		var ws []sdk.Workspace
		return json.Unmarshal([]byte(mustCoder(t, cfg, "list", "-o", "json")), &ws) == nil && len(ws) == 1 && ws[0].Agents[0].Status == sdk.AgentConnected
	})
	appDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/@admin/dev.main/apps/stuck/", nil)
		req.Header.Set(sdk.SessionTokenHeader, strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			appDone <- -1
			return
		}
		resp.Body.Close()
		appDone <- resp.StatusCode
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(60 * time.Second):
		t.Fatal("the app never got the proxied request")
	}

	srv.Stop()
	if _, err := io.ReadAll(eventsBody); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("event stream after Ctrl+C: %v", err)
	}
	<-appDone
	if logs := srv.Logs(); strings.Contains(logs, "requests still open") {
		t.Fatalf("Ctrl+C waited out the shutdown timeout for the open requests:\n%s", logs)
	}
}
