package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
)

// clientFrom is an API client whose connections come from the loopback
// address ip (127.0.0.2, ...), as if from another host.
func (ts *testServer) clientFrom(t *testing.T, ip string) *sdk.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &sdk.Client{URL: ts.URL, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}}
}

// TestLoginLimiterPerAddress: bad passwords from one address lock that
// address out of the account, not every address; the account is one
// bucket however it is named; and one address cannot spray many accounts.
func TestLoginLimiterPerAddress(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := testContext(t)
	login := func(c *sdk.Client, name, pw string) int {
		t.Helper()
		err := c.Request(ctx, http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: name, Password: pw}, nil)
		if err == nil {
			return http.StatusCreated
		}
		return sdk.StatusCode(err)
	}
	attacker := ts.clientFrom(t, "127.0.0.2")
	// Exact counts are TestLoginLimiterBounded's, on a fake clock: here
	// buckets refill while a slow machine works through the attempts.
	n := 0
	for ; n < 300; n++ {
		if code := login(attacker, "owner", "wrong-password"); code == http.StatusTooManyRequests {
			break
		} else if code != http.StatusUnauthorized {
			t.Fatalf("bad login %d: status %d, want 401", n, code)
		}
	}
	if n < 10 || n == 300 {
		t.Fatalf("the attacker was stopped after %d bad passwords, want 10 (and a few more if slow)", n)
	}
	// The same account by email, in another case: the same bucket.
	if code := login(attacker, "OWNER@example.com", "owner-password"); code != http.StatusTooManyRequests {
		t.Errorf("login by email in capitals from the limited address: %d, want 429", code)
	}
	// The owner, from another address, still logs in.
	if code := login(ts.clientFrom(t, "127.0.0.3"), "owner", "owner-password"); code != http.StatusCreated {
		t.Fatalf("owner from another address after the attack: %d, want 201", code)
	}
	// Spraying distinct accounts from one address meets the address limit.
	sprayer := ts.clientFrom(t, "127.0.0.4")
	n = 0
	for ; n < 300; n++ {
		if code := login(sprayer, fmt.Sprintf("user%d", n), "wrong-password"); code == http.StatusTooManyRequests {
			break
		}
	}
	if n < 30 || n == 300 {
		t.Fatalf("the sprayer was stopped after %d attempts, want 30 (and a few more if slow)", n)
	}
}

// TestBadInputNUL: a NUL byte anywhere a user can put text is a 400 that
// names the field, never a 500 from PostgreSQL, and nothing is stored.
func TestBadInputNUL(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.Owner.Token
	for _, tc := range []struct {
		name, method, path, body, field string
	}{
		{"workspace name", "POST", "/api/v2/workspaces", `{"name":"a\u0000b","template":"base"}`, "name"},
		{"user email", "POST", "/api/v2/users", `{"username":"bob","email":"bob\u0000@example.com","password":"long-enough"}`, "email"},
		{"login", "POST", "/api/v2/users/login", `{"login":"owner\u0000","password":"x"}`, "login"},
		{"template source", "PUT", "/api/v2/templates/t", `{"source":"agents: [{name: main}]\n# \u0000"}`, "source"},
		{"path", "GET", "/api/v2/users/a%00b/workspace/x", ``, ""},
		{"user delete path", "DELETE", "/api/v2/users/x%00", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := rawRequest(t, ts, tc.method, tc.path, tok, []byte(tc.body))
			if code != http.StatusBadRequest {
				t.Fatalf("status = %d (%q), want 400", code, resp.Message)
			}
			if !strings.Contains(resp.Message, "NUL") {
				t.Errorf("message %q does not say NUL", resp.Message)
			}
			if tc.field != "" && (len(resp.Validations) != 1 || resp.Validations[0].Field != tc.field) {
				t.Errorf("validations = %+v, want field %q", resp.Validations, tc.field)
			}
		})
	}
	// Dashboard forms too.
	owner := loggedIn(t, ts, "owner", "owner-password")
	resp := owner.do("POST", "/users", url.Values{"username": {"eve"}, "email": {"eve@example.com"}, "password": {"pass\x00word1"}}, nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "password") || !strings.Contains(body, "NUL") {
		t.Errorf("create user form with NUL: %d %q, want 400 naming password", resp.StatusCode, body)
	}
	anon := newBrowser(t, ts.URL)
	resp = anon.do("POST", "/login", url.Values{"login": {"own\x00er"}, "password": {"x"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login form with NUL: %d, want 400", resp.StatusCode)
	}
	var users []sdk.User
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/users", nil, &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 {
		t.Fatalf("users after bad input: %+v, want only the owner", users)
	}
}

// TestDeleteUserWithWorkspaces: a user who owns workspaces is not deleted
// (the answer names them), and is once they are gone.
func TestDeleteUserWithWorkspaces(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	bob := ts.member(t, "bob")
	createWorkspace(t, bob, "one", "base")
	createWorkspace(t, bob, "two", "base")
	ctx := testContext(t)

	err := ts.Owner.Request(ctx, http.MethodDelete, "/api/v2/users/bob", nil, nil)
	if sdk.StatusCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "one, two") {
		t.Fatalf("delete bob with workspaces: %v, want 409 naming one, two", err)
	}
	if _, err := bob.Me(ctx); err != nil {
		t.Fatalf("bob's session after the refused delete: %v", err)
	}
	// The dashboard says the same.
	owner := loggedIn(t, ts, "owner", "owner-password")
	var bobID string
	var users []sdk.User
	if err := ts.Owner.Request(ctx, http.MethodGet, "/api/v2/users", nil, &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Username == "bob" {
			bobID = u.ID
		}
	}
	resp := owner.do("POST", "/users/"+bobID+"/delete", url.Values{}, nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "one, two") {
		t.Fatalf("delete form: %d %q, want 409 naming the workspaces", resp.StatusCode, body)
	}

	var ws []sdk.Workspace
	if err := bob.Request(ctx, http.MethodGet, "/api/v2/workspaces", nil, &ws); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if err := bob.Request(ctx, http.MethodDelete, "/api/v2/workspaces/"+w.ID, nil, nil); err != nil {
			t.Fatalf("delete workspace %s: %v", w.Name, err)
		}
	}
	if err := ts.Owner.Request(ctx, http.MethodDelete, "/api/v2/users/bob", nil, nil); err != nil {
		t.Fatalf("delete bob without workspaces: %v", err)
	}
	if _, err := bob.Me(ctx); sdk.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("deleted bob's key: %v, want 401", err)
	}
}

// TestAgentHelloNUL: an agent hello with a NUL byte is refused with a
// close reason naming the field, logged as bad input (not as a server
// error: the test logger fails on error logs), and nothing is recorded.
func TestAgentHelloNUL(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "base")
	u := "ws" + strings.TrimPrefix(ts.URL.String(), "http") + "/api/v2/workspaceagents/me/connect"
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{sdk.SessionTokenHeader: {w.Agents[0].Token}})
	if err != nil {
		t.Fatalf("dial agent connection: %v", err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(sdk.AgentHello{Version: "v1", OS: "linux", Arch: "amd64", Hostname: "host\x00name"}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "hostname") {
		t.Fatalf("hello with NUL: %v, want a policy-violation close naming hostname", err)
	}
	var got sdk.Workspace
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/users/owner/workspace/dev", nil, &got); err != nil {
		t.Fatal(err)
	}
	if a := got.Agents[0]; a.Status == sdk.AgentConnected || a.Hostname != "" {
		t.Fatalf("agent after a refused hello: %+v, want nothing recorded", a)
	}
}
