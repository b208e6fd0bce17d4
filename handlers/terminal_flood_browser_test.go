package handlers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
)

// TestBrowserTerminalFlood: `yes` floods the terminal in Chromium; the tab
// keeps answering, Ctrl+C stops the flood, and the shell takes the next
// command (flow control end to end: the agent resyncs the screen instead
// of queueing output without bound).
func TestBrowserTerminalFlood(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	ts.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "base")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	base := ts.URL.String()
	ctx := browsertest.New(t, 90*time.Second)
	p := termPage{t: t, ctx: ctx}
	p.login(base, "owner", "owner-password")
	p.openTerminal(base)

	p.input("yes flood-line\r")
	p.waitFor("the flood on screen", jsScreen, func(s string) bool {
		return strings.Count(strings.Join(parseScreen(s).Lines, "\n"), "flood-line") > 20
	})
	// The page still runs scripts during the flood (the tab is not frozen).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1 + 1`)); err != nil {
		t.Fatalf("the tab does not answer during the flood: %v", err)
	}
	p.input("\x03")
	p.input("echo after-flood-$((40+2))\r")
	p.waitLine("after-flood-42")
}
