package handlers_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
)

// TestBrowserPortShare in headless Chromium: a port that starts listening
// in the workspace appears on the open workspace page without a reload;
// the owner picks "public" in its row and shares it, and the page shows
// the new level; the port leaves the list when its listener closes.
func TestBrowserPortShare(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "plain", noAppsTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "plain")
	startControlAgent(t, ts, w.Agents[0].Token)
	ctx := browsertest.New(t, 90*time.Second)
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("log in",
		chromedp.Navigate(ts.URL.String()+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-username]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), "owner"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "owner-password"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=workspaces]`)),
		chromedp.Navigate(ts.URL.String()+"/@owner/dev"),
		chromedp.WaitVisible(chromedp.CSS(`[data-agent=main] [data-testid=ports]`)),
		chromedp.Evaluate[chromedp.Void](`window.__noReload = true`),
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	row := fmt.Sprintf(`[data-testid=port][data-port="%d"]`, port)
	do("port appears live", chromedp.WaitVisible(chromedp.CSS(row)))
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload === true`))
	if err != nil || !same {
		t.Fatalf("the page reloaded to show the port (err %v)", err)
	}
	// While the user is in a share form, updates wait: a second port
	// appears only once focus leaves the form, and the choice is kept.
	do("focus the form",
		chromedp.Focus(chromedp.CSS(row+` select[name=share_level]`)),
		chromedp.SetValue(chromedp.CSS(row+` select[name=share_level]`), "authenticated"),
	)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	row2 := fmt.Sprintf(`[data-testid=port][data-port="%d"]`, ln2.Addr().(*net.TCPAddr).Port)
	do("update deferred", chromedp.WaitVisible(chromedp.CSS(`#agents[data-pending]`)))
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`document.querySelector(%q) === null && document.querySelector(%q).value === "authenticated"`, row2, row+` select`)))
	if err != nil || !kept {
		t.Fatalf("the form was replaced while in use (err %v)", err)
	}
	do("blur", chromedp.Blur(chromedp.CSS(row+` select[name=share_level]`)), chromedp.WaitVisible(chromedp.CSS(row2)))
	// Focus first, as a user does: the live updates then leave the form be.
	do("share it",
		chromedp.Focus(chromedp.CSS(row+` select[name=share_level]`)),
		chromedp.SetValue(chromedp.CSS(row+` select[name=share_level]`), "public"),
		chromedp.Click(chromedp.CSS(row+` button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` .badge-share-public`)),
	)
	testutil.Eventually(t, 10*time.Second, "share stored", func() bool {
		l, err := ts.DB.PortShareLevel(testContext(t), w.ID, "main", port)
		return err == nil && l == "public"
	})
	ln.Close()
	// Shared and closed: the row stays, marked as not listening.
	do("port stops listening", chromedp.WaitVisible(chromedp.CSS(row)))
	testutil.Eventually(t, 15*time.Second, "row marked not listening", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row)))
		return err == nil && strings.Contains(s, "not listening")
	})
}
