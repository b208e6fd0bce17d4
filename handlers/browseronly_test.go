package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// derpFirstMessage connects to ts's embedded DERP relay as k and returns
// the first message (ServerInfoMessage when admitted), or the error that
// ended the connection (refused).
func derpFirstMessage(ctx context.Context, t *testing.T, ts *testServer, k key.NodePrivate) (derp.ReceivedMessage, error) {
	t.Helper()
	c, err := derphttp.NewClient(k, ts.URL.String()+"/derp", logger.Discard, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c.Recv()
}

// storedNodes counts the tailnet_nodes rows of kind.
func storedNodes(t *testing.T, ts *testServer, kind tailnet.Kind) int {
	t.Helper()
	var n int
	err := ts.DB.Pool.QueryRow(testContext(t), `SELECT count(*) FROM tailnet_nodes WHERE identity->'Identity'->>'Kind' = $1`, string(kind)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDERPBrowserOnlyAfterRestart (issue 12): a CLI node registers while
// browser-only mode is off; the server restarts on the same database with
// --browser-only. The restarted server deletes the stored client rows at
// start and its DERP relay refuses the client's key, while the agent's key
// and the server's own node still relay.
func TestDERPBrowserOnlyAfterRestart(t *testing.T) {
	ts1 := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	ts1.pushTemplate(t, "base", testTemplate)
	ws := createWorkspace(t, ts1.Owner, "dev", "base")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cli, err := tailnettest.NewLiteNode(ctx, ts1.URL.String(), sdk.ClientAuthKey(ts1.Owner.Token), tailnet.Identity{Kind: tailnet.KindClient, Name: "cli"}, nil)
	if err != nil {
		t.Fatalf("register the CLI node before browser-only: %v", err)
	}
	ag, err := tailnettest.NewLiteNode(ctx, ts1.URL.String(), sdk.AgentAuthKey(ws.Agents[0].Token), tailnet.Identity{Kind: tailnet.KindAgent, Name: "dev"}, nil)
	if err != nil {
		t.Fatalf("register the agent node: %v", err)
	}
	if msg, err := derpFirstMessage(ctx, t, ts1, cli.NodeKey); err != nil {
		t.Fatalf("DERP refused the CLI node before browser-only: %v", err)
	} else if _, ok := msg.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first DERP message %T, want ServerInfoMessage", msg)
	}
	cli.Close()
	ag.Close()
	ts1.API.Close()
	if n := storedNodes(t, ts1, tailnet.KindClient); n != 1 {
		t.Fatalf("%d client rows stored before the restart, want 1", n)
	}

	ts2 := newTestServer(t, func(o *testOptions) {
		o.tailnet, o.browserOnly, o.db, o.noFirstUser = true, true, ts1.DB, true
	})
	if n := storedNodes(t, ts2, tailnet.KindClient); n != 0 {
		t.Errorf("%d client rows left after a start in browser-only mode, want 0", n)
	}
	if n := storedNodes(t, ts2, tailnet.KindAgent); n != 1 {
		t.Errorf("%d agent rows after a start in browser-only mode, want the agent's 1", n)
	}
	// The server's own node joined (StartServerNode) and keeps its home
	// DERP connection.
	testutil.Eventually(t, 30*time.Second, "the server's own node on DERP", func() bool {
		return ts2.API.Tailnet().Stats().DERPClients >= 1 && ts2.API.Tailnet().Stats().DERPRefused == 0
	})

	if msg, err := derpFirstMessage(ctx, t, ts2, cli.NodeKey); err == nil {
		t.Fatalf("DERP admitted the pre-restart CLI node in browser-only mode: %T %+v", msg, msg)
	}
	if got := ts2.API.Tailnet().Stats().DERPRefused; got != 1 {
		t.Errorf("DERP refusals %d, want 1 (the CLI node)", got)
	}
	msg, err := derpFirstMessage(ctx, t, ts2, ag.NodeKey)
	if err != nil {
		t.Fatalf("DERP refused the agent in browser-only mode: %v", err)
	}
	if _, ok := msg.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first DERP message to the agent %T, want ServerInfoMessage", msg)
	}
}

// sessionCookie logs the owner in through the login form, as the dashboard
// does, and returns the session cookie as a Cookie header value.
func sessionCookie(t *testing.T, ts *testServer) string {
	t.Helper()
	b := newBrowser(t, ts.URL)
	resp := b.do("POST", "/login", url.Values{"login": {"owner"}, "password": {"owner-password"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login form: status %d", resp.StatusCode)
	}
	for _, c := range b.hc.Jar.Cookies(ts.URL) {
		if c.Name == "coder_session" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatal("the login form set no coder_session cookie")
	return ""
}

// TestPTYBrowserOnly (issue 12): in browser-only mode the terminal
// websocket opens only with the browser session cookie and the dashboard's
// Origin. An API token is refused with or without an Origin, and a cookie
// without an Origin or with a foreign one is refused, each with a 403 that
// says what to do; the cookie with the right Origin gets a working shell.
func TestPTYBrowserOnly(t *testing.T) {
	e := newTermEnv(t, func(o *testOptions) { o.browserOnly = true })
	cookie := sessionCookie(t, e.ts)
	origin := e.ts.URL.Scheme + "://" + e.ts.URL.Host
	u := e.ptyURL(e.ws.Agents[0].ID, url.Values{"reconnect": {uuid.NewString()}, "width": {"80"}, "height": {"24"}})
	const tokenMsg = "This deployment is browser-only: open the terminal and apps from the dashboard in a browser. API tokens are not accepted here."
	const originMsg = "This deployment is browser-only: open the terminal and apps from the dashboard in a browser, at its own address."

	for _, tc := range []struct {
		name   string
		header http.Header
		msg    string
	}{
		{"token without Origin", http.Header{sdk.SessionTokenHeader: {e.ts.Owner.Token}}, tokenMsg},
		{"token with the dashboard's Origin", http.Header{sdk.SessionTokenHeader: {e.ts.Owner.Token}, "Origin": {origin}}, tokenMsg},
		{"token and cookie with the dashboard's Origin", http.Header{sdk.SessionTokenHeader: {e.ts.Owner.Token}, "Cookie": {cookie}, "Origin": {origin}}, tokenMsg},
		{"cookie without Origin", http.Header{"Cookie": {cookie}}, originMsg},
		{"cookie with a foreign Origin", http.Header{"Cookie": {cookie}, "Origin": {"http://evil.example"}}, originMsg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := dialRefused(t, u, tc.header)
			if code != http.StatusForbidden || msg != tc.msg {
				t.Fatalf("status %d %q, want 403 %q", code, msg, tc.msg)
			}
		})
	}

	b := terminaltest.DialBrowser(t, u, terminaltest.BrowserOptions{Header: http.Header{"Cookie": {cookie}, "Origin": {origin}}})
	b.Type("echo web-$((40+2))\r")
	b.WaitText("web-42")
}
