package handlers_test

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// TestServerNodeDownSaysWhy: when the server's own tailnet node does not
// come up, the deployment page says why (what tailscale reported), the
// workspace API and page say the agent cannot be reached although it is
// connected, and the server keeps trying: once the node starts, all of it
// clears.
func TestServerNodeDownSaysWhy(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet, o.noServerNode = true, true })
	ts.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "base")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	agentOf := func() sdk.WorkspaceAgent {
		got, err := ts.Owner.Workspace(testContext(t), "dev")
		if err != nil {
			t.Fatal(err)
		}
		return got.Agents[0]
	}
	testutil.Eventually(t, 30*time.Second, "the agent to connect", func() bool { return agentOf().Status == sdk.AgentConnected })
	if e := agentOf().TailnetError; e != "" {
		t.Fatalf("tailnet error before the node's first attempt: %q", e)
	}

	// The first attempt fails (its time is up at once); the retry comes
	// serverNodeRetryMin (5 s) later.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.API.StartServerNode(ctx, t.TempDir()); err == nil {
		t.Fatal("the server's node started with a cancelled context")
	}
	if e := agentOf().TailnetError; !strings.Contains(e, "The server's tailnet node is not running") || !strings.Contains(e, "deployment page says why") {
		t.Fatalf("tailnet error of a connected agent = %q", e)
	}
	owner := loggedIn(t, ts, "owner", "owner-password")
	page := html.UnescapeString(readBody(t, owner.do("GET", "/deployment", nil, nil)))
	for _, want := range []string{"This server's node", "The server's tailnet node is not running", "It did not come up: ", "tailscale's state: ", "Check that the server can reach its own access URL (" + ts.URL.String() + ")"} {
		if !strings.Contains(page, want) {
			t.Fatalf("deployment page lacks %q:\n%s", want, page)
		}
	}
	if ws := html.UnescapeString(readBody(t, owner.do("GET", "/@owner/dev", nil, nil))); !strings.Contains(ws, "The server's tailnet node is not running") {
		t.Fatalf("workspace page does not say the server's node is down:\n%s", ws)
	}

	testutil.Eventually(t, 60*time.Second, "the server's node to start on a retry", func() bool { return agentOf().TailnetError == "" })
	page = html.UnescapeString(readBody(t, owner.do("GET", "/deployment", nil, nil)))
	if strings.Contains(page, "is not running") || !strings.Contains(page, "running") {
		t.Fatalf("deployment page after the node started:\n%s", page)
	}
}
