package handlers_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
)

// TestBrowserOnlyWebTerminal: in browser-only mode the CLI tunnels are
// refused (cmd/coder's TestBrowserOnly), while in Chromium the workspace
// page offers no SSH instructions, and the web terminal and a web app still
// work, through the server's own tailnet node.
func TestBrowserOnlyWebTerminal(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true; o.browserOnly = true })
	app := newAppBackend(t)
	ts.pushTemplate(t, "base", appTemplate(app.port))
	w := createWorkspace(t, ts.Owner, "dev", "base")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	base := ts.URL.String()
	ctx := browsertest.New(t, 90*time.Second)
	p := termPage{t: t, ctx: ctx}
	p.login(base, "owner", "owner-password")

	p.do("open the workspace page", chromedp.Navigate(base+"/@owner/dev"),
		chromedp.WaitVisible(chromedp.CSS(`[data-agent=main] [data-testid=open-terminal]`)))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("[data-testid=ssh-instructions]").length`)); err != nil || n != 0 {
		t.Fatalf("browser-only workspace page shows SSH instructions (%d, %v)", n, err)
	}

	p.openTerminal(base)
	p.input("echo browser-only-$((6*7))\r")
	p.waitLine("browser-only-42")

	p.do("open a web app", chromedp.Navigate(base+"/@owner/dev.main/apps/mine/"), chromedp.WaitVisible(chromedp.CSS(`#app`)))
	if got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#app`))); err != nil || got != "hello from the app at /" {
		t.Fatalf("web app in browser-only mode shows %q (%v)", got, err)
	}
}
