package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

func TestFirstUserOnlyOnce(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	err := ts.client("").Request(testContext(t), http.MethodPost, "/api/v2/users/first",
		sdk.CreateFirstUserRequest{Username: "second", Email: "second@example.com", Password: "long-enough"}, nil)
	if sdk.StatusCode(err) != http.StatusConflict {
		t.Fatalf("second first user: got %v, want 409", err)
	}
	me, err := ts.Owner.Me(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if me.Username != "owner" || me.Role != "owner" {
		t.Fatalf("me = %+v, want owner/owner", me)
	}
}

// rawRequest sends body as-is and returns the status and decoded response.
func rawRequest(t *testing.T, ts *testServer, method, path, token string, body []byte) (int, sdk.Response) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL.String()+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(sdk.SessionTokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r sdk.Response
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s %s: response is not JSON: %q", method, path, b)
	}
	return resp.StatusCode, r
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	createWorkspace(t, ts.Owner, "keep", "base")
	tok := ts.Owner.Token
	big := append([]byte(`{"name":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	big = append(big, `","template":"base"}`...)

	for _, tc := range []struct {
		name, method, path, token string
		body                      string
		raw                       []byte
		wantCode                  int
		wantMsg                   string
	}{
		{"malformed json", "POST", "/api/v2/workspaces", tok, `{"name":`, nil, 400, "not valid JSON"},
		{"unknown field", "POST", "/api/v2/workspaces", tok, `{"name":"x","template":"base","color":"red"}`, nil, 400, `unknown field "color"`},
		{"wrong type", "POST", "/api/v2/workspaces", tok, `{"name":5,"template":"base"}`, nil, 400, `"name" must be a string`},
		{"trailing data", "POST", "/api/v2/workspaces", tok, `{"name":"x","template":"base"} {}`, nil, 400, "after the JSON object"},
		{"empty body", "POST", "/api/v2/workspaces", tok, ``, nil, 400, "empty"},
		{"oversized body", "POST", "/api/v2/workspaces", tok, "", big, 413, "larger than"},
		{"no token", "GET", "/api/v2/users/me", "", "", nil, 401, "not logged in"},
		{"malformed token", "GET", "/api/v2/users/me", "garbage", "", nil, 401, "invalid or expired"},
		{"wrong secret", "GET", "/api/v2/users/me", tok[:11] + strings.Repeat("x", 22), "", nil, 401, "invalid or expired"},
		{"unknown key id", "GET", "/api/v2/users/me", "abcdefghij-" + strings.Repeat("x", 22), "", nil, 401, "invalid or expired"},
		{"duplicate workspace", "POST", "/api/v2/workspaces", tok, `{"name":"keep","template":"base"}`, nil, 409, "already have a workspace"},
		{"name not dns-safe", "POST", "/api/v2/workspaces", tok, `{"name":"My_WS","template":"base"}`, nil, 400, "name is not valid"},
		{"name with double hyphen", "POST", "/api/v2/workspaces", tok, `{"name":"a--b","template":"base"}`, nil, 400, "name is not valid"},
		{"unknown template", "POST", "/api/v2/workspaces", tok, `{"name":"x","template":"nope"}`, nil, 400, `no template called "nope"`},
		{"template error names line", "PUT", "/api/v2/templates/broken", tok, `{"source":"provisioner: local\nagents:\n  - name: main\n    apps:\n      - slug: web\n        url: ftp://x\n"}`, nil, 400, "line 6"},
		{"template unknown key names line", "PUT", "/api/v2/templates/broken", tok, `{"source":"provisioner: local\nagnets: []\n"}`, nil, 400, "line 2"},
		{"template name not dns-safe", "PUT", "/api/v2/templates/Bad_Name", tok, `{"source":"agents: [{name: main}]"}`, nil, 400, "template name is not valid"},
		{"duplicate user", "POST", "/api/v2/users", tok, `{"username":"owner","email":"other@example.com","password":"long-enough"}`, nil, 409, "already exists"},
		{"short password", "POST", "/api/v2/users", tok, `{"username":"bob","email":"bob@example.com","password":"short"}`, nil, 400, "not valid"},
		{"agent with a bad token", "GET", "/api/v2/workspaceagents/me/connect", "wrong", "", nil, 401, "agent token is not valid"},
		{"agent without a token", "GET", "/api/v2/workspaceagents/me/connect", "", "", nil, 401, "CODER_AGENT_TOKEN"},
		{"unknown route", "GET", "/api/v2/nothing", tok, "", nil, 404, "no API route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			code, resp := rawRequest(t, ts, tc.method, tc.path, tc.token, body)
			if code != tc.wantCode {
				t.Errorf("status = %d, want %d (message %q)", code, tc.wantCode, resp.Message)
			}
			all := resp.Message
			for _, v := range resp.Validations {
				all += " " + v.Field + ": " + v.Detail
			}
			if !strings.Contains(all, tc.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", all, tc.wantMsg)
			}
		})
	}

	// Nothing stored was lost or half-written.
	var ws []sdk.Workspace
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/workspaces", nil, &ws); err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Name != "keep" || len(ws[0].Agents) != 1 {
		t.Fatalf("workspaces after bad input = %+v, want only keep with one agent", ws)
	}
	var tpls []sdk.TemplateInfo
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/templates", nil, &tpls); err != nil {
		t.Fatal(err)
	}
	if len(tpls) != 1 || tpls[0].Name != "base" {
		t.Fatalf("templates after bad input = %+v, want only base", tpls)
	}
}

func TestDeletedUserKeyRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.member(t, "alice")
	if _, err := alice.Me(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := ts.Owner.Request(testContext(t), http.MethodDelete, "/api/v2/users/alice", nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Me(testContext(t))
	if sdk.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("deleted user's key: got %v, want 401", err)
	}
	// The name is free again, and the old key does not come back to life.
	again := ts.member(t, "alice")
	if _, err := again.Me(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Me(testContext(t)); sdk.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("old key after re-creation: got %v, want 401", err)
	}
}

func TestExpiredKeyRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	id, _, _ := strings.Cut(ts.Owner.Token, "-")
	if _, err := ts.DB.Pool.Exec(testContext(t), `UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Owner.Me(testContext(t)); sdk.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("expired key: got %v, want 401", err)
	}
}

func TestSecretsAreHashed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	id, secret, _ := strings.Cut(ts.Owner.Token, "-")
	var stored []byte
	var pw string
	if err := ts.DB.Pool.QueryRow(testContext(t), `SELECT hashed_secret FROM api_keys WHERE id = $1`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte(secret)) || len(stored) != 32 {
		t.Fatalf("api key secret stored as %q: want a 32-byte hash", stored)
	}
	if err := ts.DB.Pool.QueryRow(testContext(t), `SELECT password_hash FROM users WHERE username = 'owner'`).Scan(&pw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pw, "$argon2id$") || strings.Contains(pw, "owner-password") {
		t.Fatalf("password stored as %q: want an argon2id hash", pw)
	}
}

func TestLoginRateLimited(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client("")
	var last error
	for i := 0; i < 15; i++ {
		last = c.Request(testContext(t), http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: "owner", Password: "wrong-password"}, nil)
		if sdk.StatusCode(last) == http.StatusTooManyRequests {
			break
		}
		if sdk.StatusCode(last) != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %v, want 401", i, last)
		}
	}
	if sdk.StatusCode(last) != http.StatusTooManyRequests {
		t.Fatalf("15 bad logins: last got %v, want 429", last)
	}
}

func TestWorkspaceVisibility(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	alice, bob := ts.member(t, "alice"), ts.member(t, "bob")
	w := createWorkspace(t, alice, "ws", "base")
	if w.Agents[0].Token == "" {
		t.Fatal("manual template: the create response must carry the agent token once")
	}
	if _, err := bob.Workspace(testContext(t), "alice/ws"); sdk.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("bob reading alice's workspace: got %v, want 404", err)
	}
	if err := bob.Request(testContext(t), http.MethodPost, "/api/v2/workspaces/"+w.ID+"/stop", nil, nil); sdk.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("bob stopping alice's workspace: got %v, want 404", err)
	}
	if _, err := ts.Owner.Workspace(testContext(t), "alice/ws"); err != nil {
		t.Fatalf("owner reading alice's workspace: %v", err)
	}
	got, err := alice.Workspace(testContext(t), "ws")
	if err != nil {
		t.Fatal(err)
	}
	if got.Agents[0].Token != "" {
		t.Fatal("the agent token must not be shown again")
	}
	if err := bob.Request(testContext(t), http.MethodPut, "/api/v2/templates/x", sdk.PushTemplateRequest{Source: testTemplate}, nil); sdk.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("member pushing a template: got %v, want 403", err)
	}
}

// TestAgentStatus runs a real agent (in process) against the server and
// watches its status go connecting → connected → disconnected.
func TestAgentStatus(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, ts.Owner, "ws", "base")
	if w.Agents[0].Status != sdk.AgentConnecting {
		t.Fatalf("new agent status = %q, want connecting", w.Agents[0].Status)
	}
	status := func() string {
		got, err := ts.Owner.Workspace(testContext(t), "ws")
		if err != nil {
			t.Fatal(err)
		}
		return got.Agents[0].Status + "/" + got.Status
	}

	a, err := agent.New(agent.Options{URL: ts.URL, Token: w.Agents[0].Token, Logger: testLogger(t), Version: "v-agent", NoTailnet: true})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "agent connected", func() bool { return status() == "connected/running" })
	got, _ := ts.Owner.Workspace(testContext(t), "ws")
	if ag := got.Agents[0]; ag.Version != "v-agent" || ag.OS == "" || ag.Arch == "" || ag.LastConnected == nil {
		t.Fatalf("agent report = %+v", ag)
	}
	// The server sends the manifest before it records the connection; the
	// agent reads it on its own goroutine.
	testutil.Eventually(t, 10*time.Second, "the agent to have its manifest", func() bool { return a.Manifest() != nil })
	if m := a.Manifest(); m.WorkspaceName != "ws" || len(m.Apps) != 1 || m.Apps[0].Slug != "web" {
		t.Fatalf("manifest = %+v", m)
	}
	a.Close()
	testutil.Eventually(t, 5*time.Second, "agent disconnected", func() bool { return status() == "disconnected/starting" })
}

func TestCrossSiteFormRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	b := newBrowser(t, ts.URL)
	resp := b.do("POST", "/login", url.Values{"login": {"owner"}, "password": {"owner-password"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login form: status %d", resp.StatusCode)
	}
	// A cross-site POST that carries the session cookie is refused, and
	// creates nothing.
	resp = b.do("POST", "/users", url.Values{"username": {"mallory"}, "email": {"m@example.com"}, "password": {"long-enough"}},
		http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
	us, err := ts.DB.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 {
		t.Fatalf("users after cross-site POST = %d, want 1", len(us))
	}
	// The same form from the dashboard itself works.
	resp = b.do("POST", "/users", url.Values{"username": {"mallory"}, "email": {"m@example.com"}, "password": {"long-enough"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin POST: status %d, want 303", resp.StatusCode)
	}
}
