package handlers_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/provision"
	"github.com/gatewaydev/coder/sdk"
)

// TestBrowserFirstRun walks a new deployment in headless Chromium: set up
// the first user, log out and in, create a workspace from the default
// template, and see its agent (a real `coder agent` process started by the
// local provisioner) turn connected without reloading the page.
func TestBrowserFirstRun(t *testing.T) {
	t.Parallel()
	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: testutil.ProvisionerDir(t), Logger: testLogger(t)}
	t.Cleanup(func() { prov.Close() })
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov}; o.noFirstUser = true })
	ctx := browsertest.New(t, 90*time.Second)
	base := ts.URL.String()

	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	location := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// A new deployment sends everyone to the setup page.
	do("open dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=setup-username]`)))
	if !strings.HasSuffix(location(), "/setup") {
		t.Fatalf("new deployment opened %s, want /setup", location())
	}
	do("fill setup",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=setup-username]`), "ada"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=setup-email]`), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=setup-password]`), "correct-horse"),
		chromedp.Click(chromedp.CSS(`[data-testid=setup-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=no-workspaces]`)),
	)
	if got := text(`[data-testid=username]`); got != "ada" {
		t.Fatalf("logged in as %q, want ada", got)
	}

	// Log out, then a wrong password, then the right one.
	do("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-username]`)))
	do("wrong password",
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), "ada"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "wrong-horse"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=form-error]`)),
	)
	if got := text(`[data-testid=form-error]`); !strings.Contains(got, "Incorrect") {
		t.Fatalf("wrong password shows %q", got)
	}
	do("log in",
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-username]`), "ada"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "correct-horse"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=no-workspaces]`)),
	)

	// The owner pushes the default template (as `make run` does); the
	// page then offers it.
	src, err := os.ReadFile(filepath.Join("..", "templates", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	owner := ts.client(ts.login(t, "ada", "correct-horse"))
	if err := owner.Request(testContext(t), http.MethodPut, "/api/v2/templates/default", sdk.PushTemplateRequest{Source: string(src)}, nil); err != nil {
		t.Fatal(err)
	}
	do("create workspace",
		chromedp.Navigate(base+"/workspaces"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=workspace-name]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=workspace-name]`), "dev"),
		chromedp.Click(chromedp.CSS(`[data-testid=workspace-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=workspace-title]`)),
	)
	if !strings.HasSuffix(location(), "/@ada/dev") {
		t.Fatalf("after create: at %s, want /@ada/dev", location())
	}
	// Mark this document: a reload would lose the mark.
	do("mark page", chromedp.Evaluate[chromedp.Void](`window.__noReload = true`))
	do("agent connects", chromedp.WaitVisible(chromedp.CSS(`[data-agent=main] .badge-connected`)))
	if got := text(`[data-agent=main] [data-testid=agent-status]`); got != "connected" {
		t.Fatalf("agent status %q, want connected", got)
	}
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload === true`))
	if err != nil || !same {
		t.Fatalf("the page reloaded to show the status (err %v)", err)
	}
	if got := text(`[data-agent=main] [data-testid=agent-last-seen]`); got == "never" {
		t.Fatalf("last seen %q after connecting", got)
	}

	// Stopping the workspace stops the agent; the page shows it.
	do("stop workspace", chromedp.Click(chromedp.CSS(`[data-testid=workspace-stop]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=workspace-start]`)))
	do("agent disconnects", chromedp.WaitVisible(chromedp.CSS(`[data-agent=main] .badge-disconnected`)))
}
