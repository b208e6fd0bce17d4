package handlers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
)

// TestSubdomainAppBrowser: in real Chromium, with the wildcard that `make
// run` sets (*.localhost:PORT, which browsers resolve to loopback without
// DNS), log in, open a subdomain app from the workspace page's link, and
// the sign-in redirects end on the app, its URL clean, with the app token
// in a cookie of the app's host only (HttpOnly, SameSite=Lax), none on
// the dashboard or on another app.
func TestSubdomainAppBrowser(t *testing.T) {
	t.Parallel()
	app := newSubApp(t, false)
	var wildcard string
	ts := newTestServer(t, func(o *testOptions) {
		o.tailnet = true
		o.configure = func(opts *handlers.Options) {
			wildcard = ".localhost:" + opts.AccessURL.Port()
			opts.WildcardAccessURL = "*" + wildcard
		}
	})
	ts.pushTemplate(t, "sub", subdomainTemplate(app.port))
	w := createWorkspace(t, ts.Owner, "dev", "sub")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	testutil.Eventually(t, 30*time.Second, "agent connected", func() bool {
		ws, err := ts.Owner.Workspace(testContext(t), "dev")
		return err == nil && ws.Agents[0].Status == "connected"
	})
	ctx := browsertest.New(t, 90*time.Second)
	base := ts.URL.String()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("log in", chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), "owner"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "owner-password"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=username]`)),
		chromedp.Navigate(base+"/@owner/dev"),
		chromedp.WaitVisible(chromedp.CSS(`a.app`)),
	)
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("a.app")].map(a => a.href).find(h => h.includes("mine--")) ?? ""`))
	if err != nil {
		t.Fatal(err)
	}
	want := "http://mine--main--dev--owner" + wildcard + "/"
	if href != want {
		t.Fatalf("the workspace page links the app to %q, want %q", href, want)
	}
	// The agent may still be joining the server's tailnet: reload until the
	// app answers.
	testutil.Eventually(t, 30*time.Second, "the app opens", func() bool {
		if err := chromedp.Do(ctx, chromedp.Navigate(href)); err != nil {
			return false
		}
		body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		return err == nil && strings.Contains(body, "hello from the app at /")
	})
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != want {
		t.Fatalf("the app opened at %q (%v), want %q without a token", loc, err, want)
	}
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{want}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range res.Cookies {
		if c.Name == apps.TokenCookie {
			found = true
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Domain != "mine--main--dev--owner.localhost" {
				t.Errorf("app token cookie %+v", c)
			}
		}
	}
	if !found {
		t.Fatalf("no app token cookie on the app's host: %+v", res.Cookies)
	}
	res, err = chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/", "http://team--main--dev--owner" + wildcard + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == apps.TokenCookie {
			t.Errorf("the app token cookie also goes to %s", c.Domain)
		}
	}
	for _, r := range app.requests() {
		if c := r.Header.Get("Cookie"); c != "" {
			t.Errorf("the app received cookies %q", c)
		}
	}
}
