package handlers_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// appBackend is an app on the agent's localhost that records the Cookie
// header of every request; each of before (if any) may add to the
// response before the app writes its page.
type appBackend struct {
	port    int
	mu      sync.Mutex
	cookies []string
}

func newAppBackend(t *testing.T, before ...http.HandlerFunc) *appBackend {
	b := &appBackend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.cookies = append(b.cookies, r.Header.Get("Cookie"))
		b.mu.Unlock()
		for _, f := range before {
			f(w, r)
		}
		fmt.Fprintf(w, "<html><body><h1 id=app>hello from the app at %s</h1></body></html>", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	b.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return b
}

// last is the Cookie header of the latest request.
func (b *appBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cookies[len(b.cookies)-1]
}

func appTemplate(port int) string {
	return fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    apps:
      - {slug: mine, url: "http://localhost:%[1]d", share: owner}
      - {slug: team, url: "http://localhost:%[1]d", share: authenticated}
      - {slug: open, url: "http://localhost:%[1]d", share: public}
`, port)
}

// TestPathApps proxies path-based apps through the server's tailnet node to
// a real agent, which forwards to the app on its localhost; by default a
// path app opens for its workspace's owner only, whatever its share level
// (TestPathAppAccess has every case), and the dashboard cookie never
// reaches the app.
func TestPathApps(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	app := newAppBackend(t)
	ts.pushTemplate(t, "apps", appTemplate(app.port))
	w := createWorkspace(t, ts.Owner, "dev", "apps")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	ts.member(t, "bob")

	owner := loggedIn(t, ts, "owner", "owner-password")
	bob := loggedIn(t, ts, "bob", "bob-password")
	anon := newBrowser(t, ts.URL)
	get := func(b *browser, path string) (int, string) {
		t.Helper()
		resp := b.do("GET", path, nil, nil)
		return resp.StatusCode, readBody(t, resp)
	}
	base := "/@owner/dev.main/apps/"
	// The agent may take a moment to join the tailnet.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(owner, base+"mine/x")
		if code == http.StatusOK {
			if !strings.Contains(body, "hello from the app at /x") {
				t.Fatalf("owner's app: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owner's app never answered: %d %q", code, body)
		}
	}
	for _, tc := range []struct {
		who  string
		b    *browser
		slug string
		want int
	}{
		{"owner", owner, "team", 200}, {"owner", owner, "open", 200},
		{"bob", bob, "mine", 404}, {"bob", bob, "team", 403}, {"bob", bob, "open", 403},
		{"anonymous", anon, "mine", 303}, {"anonymous", anon, "team", 303}, {"anonymous", anon, "open", 303},
		{"owner", owner, "nope", 404},
	} {
		if code, body := get(tc.b, base+tc.slug+"/"); code != tc.want {
			t.Errorf("%s opening %s: status %d, want %d (%q)", tc.who, tc.slug, code, tc.want, body)
		}
	}
	if code, _ := get(owner, base+"mine"); code != http.StatusSeeOther {
		t.Errorf("app without trailing slash: %d, want a redirect", code)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	for _, c := range app.cookies {
		if strings.Contains(c, "coder_session") {
			t.Fatalf("the dashboard cookie reached the app: %q", c)
		}
	}
	if len(app.cookies) < 3 {
		t.Fatalf("the app saw %d requests", len(app.cookies))
	}
	if v := metricValue(t, ts, `coderd_apps_requests_total{code="200",kind="path"}`); v < 3 {
		t.Errorf("path app requests counted: %v", v)
	}
}

// TestPathAppsBrowserOnly (issue 12): in browser-only mode an app opens
// for the browser session cookie only, never for an API token, and its
// websocket-style requests need the dashboard's Origin.
func TestPathAppsBrowserOnly(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true; o.browserOnly = true })
	app := newAppBackend(t)
	ts.pushTemplate(t, "apps", appTemplate(app.port))
	w := createWorkspace(t, ts.Owner, "dev", "apps")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	owner := loggedIn(t, ts, "owner", "owner-password")
	path := "/@owner/dev.main/apps/mine/x"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := owner.do("GET", path, nil, http.Header{"Origin": nil, "Sec-Fetch-Site": {"none"}, "Sec-Fetch-Mode": {"navigate"}})
		body := readBody(t, resp)
		if resp.StatusCode == http.StatusOK && strings.Contains(body, "hello from the app at /x") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner's app never opened with the cookie: %d %q", resp.StatusCode, body)
		}
	}
	for _, tc := range []struct {
		name   string
		b      *browser
		method string
		header http.Header
	}{
		{"token, no cookie", newBrowser(t, ts.URL), "GET", http.Header{"Origin": nil, sdk.SessionTokenHeader: {ts.Owner.Token}}},
		{"token beside the cookie", owner, "GET", http.Header{sdk.SessionTokenHeader: {ts.Owner.Token}}},
		{"cookie, POST from another site", owner, "POST", http.Header{"Origin": {"https://evil.example"}}},
		{"cookie, another site's image", owner, "GET", http.Header{"Origin": nil, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}}},
	} {
		resp := tc.b.do(tc.method, path, nil, tc.header)
		if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "browser-only") {
			t.Errorf("%s: %d %q, want 403 saying browser-only", tc.name, resp.StatusCode, body)
		}
	}
}

// TestPathAppsCloseInFlight (issue 13): API.Close returns while path-app
// requests wait on an app that never answers, over the real tailnet, and
// those requests get an answer instead of hanging. (Before, each request
// left its own transport and connection behind, and a server with app
// traffic did not stop.)
func TestPathAppsCloseInFlight(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			arrived <- struct{}{}
			select { // an app that never answers
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(srv.Close)
	ts.pushTemplate(t, "apps", appTemplate(srv.Listener.Addr().(*net.TCPAddr).Port))
	w := createWorkspace(t, ts.Owner, "dev", "apps")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	client := &http.Client{Timeout: 60 * time.Second}
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", ts.URL.String()+path, nil)
		req.Header.Set(sdk.SessionTokenHeader, ts.Owner.Token)
		return client.Do(req)
	}
	const base = "/@owner/dev.main/apps/mine/"
	testutil.Eventually(t, 30*time.Second, "the app answers through the agent", func() bool {
		resp, err := get(base)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	const hanging = 8
	done := make(chan error, hanging)
	for i := 0; i < hanging; i++ {
		go func() {
			resp, err := get(base + "hang")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
	}
	for i := 0; i < hanging; i++ {
		<-arrived
	}
	closed := make(chan struct{})
	go func() { ts.API.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second): // a bound for a hang, not a timing
		t.Fatal("API.Close did not return with path-app requests in flight")
	}
	for i := 0; i < hanging; i++ {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("a path-app request in flight got no answer after API.Close")
		}
	}
}
