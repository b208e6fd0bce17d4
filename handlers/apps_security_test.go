package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// pathAppEnv is a server with its tailnet, the owner's workspace "dev" and
// member bob's workspace "bobs", both from appTemplate (apps mine: owner,
// team: authenticated, open: public) on one app backend.
type pathAppEnv struct {
	ts         *testServer
	app        *appBackend
	owner, bob *browser
	anon       *browser
	dev, bobs  sdk.Workspace
}

func newPathAppEnv(t *testing.T, configure func(*handlers.Options)) *pathAppEnv {
	t.Helper()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true; o.configure = configure })
	e := &pathAppEnv{ts: ts, app: newAppBackend(t)}
	ts.pushTemplate(t, "apps", appTemplate(e.app.port))
	bobClient := ts.member(t, "bob")
	e.dev = createWorkspace(t, ts.Owner, "dev", "apps")
	e.bobs = createWorkspace(t, bobClient, "bobs", "apps")
	e.owner = loggedIn(t, ts, "owner", "owner-password")
	e.bob = loggedIn(t, ts, "bob", "bob-password")
	e.anon = newBrowser(t, ts.URL)
	return e
}

// waitApp starts the agent of w and waits until b opens the app at path
// (the agent takes a moment to join the tailnet).
func (e *pathAppEnv) waitApp(t *testing.T, w sdk.Workspace, b *browser, path string) {
	t.Helper()
	startAgentIn(t, e.ts, w.Agents[0].Token, t.TempDir(), nil)
	testutil.Eventually(t, 30*time.Second, "the app at "+path, func() bool {
		resp := b.do("GET", path, nil, nil)
		return resp.StatusCode == http.StatusOK && strings.Contains(readBody(t, resp), "hello from the app")
	})
}

// visit is one request of the access matrix and what it must get: a
// status, and for 403 the refusal page's reason (a substring), for 303 the
// login page with the path to come back to.
type visit struct {
	who    string
	b      *browser
	path   string
	status int
	reason string
}

func (e *pathAppEnv) check(t *testing.T, visits []visit) {
	t.Helper()
	for _, v := range visits {
		resp := v.b.do("GET", v.path, nil, nil)
		body := readBody(t, resp)
		if resp.StatusCode != v.status {
			t.Errorf("%s GET %s: status %d, want %d\n%s", v.who, v.path, resp.StatusCode, v.status, body)
			continue
		}
		switch v.status {
		case http.StatusOK:
			if !strings.Contains(body, "hello from the app") {
				t.Errorf("%s GET %s: not the app: %q", v.who, v.path, body)
			}
		case http.StatusForbidden:
			if got := byTestID(t, body, "app-refused-reason"); len(got) != 1 || !strings.Contains(got[0], v.reason) {
				t.Errorf("%s GET %s: refusal %q, want one that says %q", v.who, v.path, got, v.reason)
			}
			if !strings.Contains(body, "Subdomain apps") {
				t.Errorf("%s GET %s: the refusal does not point to subdomain apps", v.who, v.path)
			}
		case http.StatusSeeOther:
			if loc, want := resp.Header.Get("Location"), "/login?redirect="+url.QueryEscape(v.path); loc != want {
				t.Errorf("%s GET %s: Location %q, want %q", v.who, v.path, loc, want)
			}
		}
	}
}

// appNotes returns the apps on b's view of the workspace page at path:
// for each app's slug, whether it is a link and its note.
func appNotes(t *testing.T, b *browser, path string) map[string]string {
	t.Helper()
	resp := b.do("GET", path, nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(n *html.Node, key string) string {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val
			}
		}
		return ""
	}
	out := map[string]string{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && attr(n, "data-testid") == "app" {
			link, note := false, ""
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type != html.ElementNode {
					continue
				}
				if c.Data == "a" && attr(c, "href") != "" {
					link = true
				}
				if attr(c, "data-testid") == "app-note" {
					note = strings.TrimSpace(textOf(c))
				}
			}
			out[attr(n, "data-app")] = fmt.Sprintf("link=%v note=%q", link, note)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

// deploymentSetting returns a setting's value on the deployment page.
func deploymentSetting(t *testing.T, owner *browser, name string) string {
	t.Helper()
	body := readBody(t, owner.do("GET", "/deployment", nil, nil))
	i := strings.Index(body, `data-setting="`+name+`">`)
	if i < 0 {
		t.Fatalf("the deployment page has no setting %q", name)
	}
	v := body[i+len(`data-setting="`+name+`">`):]
	return v[:strings.Index(v, "<")]
}

// TestPathAppAccess is issue 12's access matrix for path apps, on a real
// server, real agents and a real app: a path app runs on the dashboard's
// origin, so it opens for its workspace's owner only unless the deployment
// sets a dangerous flag; anonymous visitors cannot tell which users,
// workspaces, agents and apps exist.
func TestPathAppAccess(t *testing.T) {
	t.Parallel()
	const (
		sharingOff   = "sharing path apps is off"
		siteOwnerOff = "site owners do not open other users' path apps"
		appsOff      = "does not serve path-based apps"
	)
	own := func(slug string) string { return "/@owner/dev.main/apps/" + slug + "/" }
	bobs := func(slug string) string { return "/@bob/bobs.main/apps/" + slug + "/" }

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := newPathAppEnv(t, nil)
		if got, so := deploymentSetting(t, e.owner, "Path apps"), deploymentSetting(t, e.owner, "Path apps of other users for site owners"); got != "workspace owner only" || so != "off" {
			t.Errorf("deployment page: path apps %q, for site owners %q", got, so)
		}
		e.waitApp(t, e.dev, e.owner, own("mine"))
		e.check(t, []visit{
			{"owner", e.owner, own("team"), 200, ""},
			{"owner", e.owner, own("open"), 200, ""},
			{"bob", e.bob, own("team"), 403, sharingOff},
			{"bob", e.bob, own("open"), 403, sharingOff},
			{"bob", e.bob, own("mine"), 404, ""},
			{"site owner", e.owner, bobs("mine"), 403, siteOwnerOff},
			{"site owner", e.owner, bobs("team"), 403, siteOwnerOff},
			{"bob", e.bob, "/@owner/dev.main/apps/nope/", 404, ""},
		})
		// Anonymous: the same answer for an existing app and for every
		// name that does not exist.
		var anon []visit
		for _, p := range []string{own("mine"), own("team"), own("open"), "/@nobody/dev.main/apps/team/",
			"/@owner/nows.main/apps/team/", "/@owner/dev.noagent/apps/team/", own("noslug"), bobs("open")} {
			anon = append(anon, visit{"anonymous", e.anon, p, 303, ""})
		}
		e.check(t, anon)
		notes := appNotes(t, e.owner, "/@owner/dev")
		want := map[string]string{
			"mine": `link=true note=""`,
			"team": `link=true note="shared with authenticated users in the template; path-app sharing is off on this deployment"`,
			"open": `link=true note="shared publicly in the template; path-app sharing is off on this deployment"`,
		}
		if fmt.Sprint(notes) != fmt.Sprint(want) {
			t.Errorf("workspace page apps: %v, want %v", notes, want)
		}
	})

	t.Run("dangerous-allow-path-app-sharing", func(t *testing.T) {
		t.Parallel()
		e := newPathAppEnv(t, func(o *handlers.Options) { o.DangerousAllowPathAppSharing = true })
		if got, so := deploymentSetting(t, e.owner, "Path apps"), deploymentSetting(t, e.owner, "Path apps of other users for site owners"); got != "shared as each template says (dangerous)" || so != "off" {
			t.Errorf("deployment page: path apps %q, for site owners %q", got, so)
		}
		e.waitApp(t, e.dev, e.owner, own("mine"))
		e.check(t, []visit{
			{"bob", e.bob, own("team"), 200, ""},
			{"bob", e.bob, own("open"), 200, ""},
			{"anonymous", e.anon, own("open"), 200, ""},
			{"anonymous", e.anon, own("team"), 303, ""},
			{"anonymous", e.anon, own("mine"), 303, ""},
			{"bob", e.bob, own("mine"), 404, ""},
			{"site owner", e.owner, bobs("mine"), 403, siteOwnerOff},
		})
		notes := appNotes(t, e.owner, "/@owner/dev")
		if len(notes) != 3 {
			t.Errorf("workspace page apps: %v", notes)
		}
		for slug, n := range notes {
			if n != `link=true note=""` {
				t.Errorf("workspace page app %s with sharing on: %s", slug, n)
			}
		}
	})

	t.Run("dangerous-allow-path-app-site-owner-access", func(t *testing.T) {
		t.Parallel()
		e := newPathAppEnv(t, func(o *handlers.Options) { o.DangerousAllowPathAppSiteOwnerAccess = true })
		if got, so := deploymentSetting(t, e.owner, "Path apps"), deploymentSetting(t, e.owner, "Path apps of other users for site owners"); got != "workspace owner only" || so != "on" {
			t.Errorf("deployment page: path apps %q, for site owners %q", got, so)
		}
		e.waitApp(t, e.bobs, e.owner, bobs("mine"))
		e.check(t, []visit{
			{"site owner", e.owner, bobs("team"), 200, ""},
			{"bob", e.bob, own("team"), 403, sharingOff},
			{"anonymous", e.anon, bobs("open"), 303, ""},
		})
	})

	t.Run("disable-path-apps", func(t *testing.T) {
		t.Parallel()
		e := newPathAppEnv(t, func(o *handlers.Options) { o.DisablePathApps = true })
		if got, so := deploymentSetting(t, e.owner, "Path apps"), deploymentSetting(t, e.owner, "Path apps of other users for site owners"); got != "off" || so != "off" {
			t.Errorf("deployment page: path apps %q, for site owners %q", got, so)
		}
		startAgentIn(t, e.ts, e.dev.Agents[0].Token, t.TempDir(), nil)
		e.check(t, []visit{
			{"owner", e.owner, own("mine"), 403, appsOff},
			{"owner", e.owner, own("open"), 403, appsOff},
			{"anonymous", e.anon, own("open"), 403, appsOff},
		})
		notes := appNotes(t, e.owner, "/@owner/dev")
		if len(notes) != 3 {
			t.Errorf("workspace page apps: %v", notes)
		}
		for slug, n := range notes {
			if n != `link=false note="path apps are off on this deployment"` {
				t.Errorf("workspace page app %s with path apps off: %s", slug, n)
			}
		}
	})
}

// setCookies is what the cookie test's app adds to its answer on /set:
// cookies that try to reach beyond the app, and headers.
func setCookies(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/set" {
		for _, sc := range []string{
			"coder_session=evil; Path=/api/v2",
			"a=1",
			"b=2; Path=/",
			"c=3; Domain=127.0.0.1; Path=/@owner/dev.main/apps/mine/sub",
		} {
			w.Header().Add("Set-Cookie", sc)
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'")
		h.Set("X-App", "kept")
		h.Set("Service-Worker-Allowed", "/")
		h.Set("Clear-Site-Data", `"cookies"`)
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
	}
}

// TestPathAppCookies (issue 12): an app's cookies stay under the app's path
// and cannot name the dashboard's, so an app cannot replace its visitor's
// session; the app gets its own cookies back and none of the dashboard's;
// response headers that would reach beyond the app are dropped.
func TestPathAppCookies(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	app := newAppBackend(t, setCookies)
	ts.pushTemplate(t, "apps", appTemplate(app.port))
	w := createWorkspace(t, ts.Owner, "dev", "apps")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	owner := loggedIn(t, ts, "owner", "owner-password")
	const prefix = "/@owner/dev.main/apps/mine"
	var resp *http.Response
	testutil.Eventually(t, 30*time.Second, "the app sets its cookies", func() bool {
		resp = owner.do("GET", prefix+"/set", nil, nil)
		return resp.StatusCode == http.StatusOK
	})
	var got []string
	for _, sc := range resp.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(sc)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", sc, err)
		}
		if c.Name == "coder_session" {
			// The dashboard may refresh its own session cookie.
			if c.Value == "evil" || c.Path != "/" {
				t.Errorf("the app's coder_session cookie reached the browser: %q", sc)
			}
			continue
		}
		got = append(got, sc)
	}
	want := []string{"a=1; Path=" + prefix, "b=2; Path=" + prefix, "c=3; Path=" + prefix + "/sub"}
	if !slices.Equal(got, want) {
		t.Errorf("the app's Set-Cookie headers reached the browser as\n%q\nwant\n%q", got, want)
	}

	// The app's own headers apply, not the dashboard's, except those that
	// reach beyond the app on the dashboard's origin.
	h := resp.Header
	if h.Get("Content-Security-Policy") != "default-src 'none'" || h.Get("X-App") != "kept" || h.Get("X-Frame-Options") != "" {
		t.Errorf("app response headers: %v", h)
	}
	for _, name := range []string{"Service-Worker-Allowed", "Clear-Site-Data", "Cross-Origin-Opener-Policy"} {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("the app's %s reached the browser: %q", name, v)
		}
	}

	// The visitor's session still works, on the API too.
	if resp := owner.do("GET", "/api/v2/users/me", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the owner's session after the app set its cookies: %d %s", resp.StatusCode, readBody(t, resp))
	}
	// The app gets its own cookies back, and none of the dashboard's.
	for path, want := range map[string][]string{prefix + "/x": {"a=1", "b=2"}, prefix + "/sub/y": {"a=1", "b=2", "c=3"}} {
		if resp := owner.do("GET", path, nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		sent := strings.Split(app.last(), "; ")
		slices.Sort(sent)
		if !slices.Equal(sent, want) {
			t.Errorf("GET %s: the app got cookies %q, want %q", path, sent, want)
		}
	}
}
