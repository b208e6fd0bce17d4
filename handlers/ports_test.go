package handlers_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// startControlAgent starts a real in-process agent on its control
// connection only (no tailnet), reading ports every 200 ms.
func startControlAgent(t *testing.T, ts *testServer, token string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{
		URL: ts.URL, Token: token, Logger: testLogger(t).With("side", "agent"), Version: "v-agent",
		StateDir: t.TempDir(), Directory: t.TempDir(), NoTailnet: true, PortScanInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

const noAppsTemplate = "provisioner: manual\nagents:\n  - name: main\n"

// sseReader reads a workspace page's event stream.
type sseReader struct {
	t  *testing.T
	sc *bufio.Scanner
}

func openEvents(t *testing.T, b *browser, path string) *sseReader {
	t.Helper()
	// The test's context bounds every wait on the stream.
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, b.base.String()+path, nil)
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: status %d", resp.StatusCode)
	}
	return &sseReader{t: t, sc: bufio.NewScanner(resp.Body)}
}

// waitFor reads "agents" events until one satisfies ok (the stream sends
// one at once and one on every change; the test's deadline bounds it).
func (s *sseReader) waitFor(what string, ok func(html string) bool) {
	s.t.Helper()
	var data strings.Builder
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data.WriteString(strings.TrimPrefix(line, "data: ") + "\n")
		case line == "":
			if ok(data.String()) {
				return
			}
			data.Reset()
		}
	}
	s.t.Fatalf("event stream ended before %s: %v", what, s.sc.Err())
}

func (ts *testServer) listeningPorts(t *testing.T, c *sdk.Client, agentID string) ([]sdk.ListeningPort, error) {
	var out sdk.AgentListeningPorts
	err := c.Request(testContext(t), http.MethodGet, "/api/v2/workspaceagents/"+agentID+"/listening-ports", nil, &out)
	return out.Ports, err
}

func hasPort(ports []sdk.ListeningPort, port int) (sdk.ListeningPort, bool) {
	for _, p := range ports {
		if int(p.Port) == port {
			return p, true
		}
	}
	return sdk.ListeningPort{}, false
}

// TestListeningPorts: a real agent reports a real listener of the
// workspace; it shows on the API and, live, on the workspace page's event
// stream with its process name, and goes from both when it closes. Only
// the workspace's owner and site owners see them.
func TestListeningPorts(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "plain", noAppsTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "plain")
	owner := loggedIn(t, ts, "owner", "owner-password")
	events := openEvents(t, owner, "/@owner/dev/events")
	startControlAgent(t, ts, w.Agents[0].Token)

	opened := time.Now()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	comm, _ := os.ReadFile("/proc/self/comm")
	process := strings.TrimSpace(string(comm))
	row := fmt.Sprintf(`data-port="%d"`, port)
	events.waitFor("the port on the page", func(html string) bool {
		return strings.Contains(html, row) && strings.Contains(html, process)
	})
	t.Logf("figure: listener opened → on the page's event stream in %v (agent scan every 200 ms)", time.Since(opened))
	ports, err := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := hasPort(ports, port); !ok || p.ProcessName != process || p.Network != "tcp" {
		t.Fatalf("API ports %+v: want %d of %q", ports, port, process)
	}
	for _, p := range ports {
		if p.Port < sdk.MinListeningPort {
			t.Errorf("port %d below %d reported", p.Port, sdk.MinListeningPort)
		}
	}
	// Without a wildcard access URL the page says so and offers
	// port-forward instead of a link.
	resp := owner.do("GET", "/@owner/dev", nil, nil)
	page := readBody(t, resp)
	if !strings.Contains(page, "--wildcard-access-url") || !strings.Contains(page, "coder port-forward dev") || strings.Contains(page, `data-testid="port-open"`) {
		t.Errorf("page without wildcard: no help or a port link:\n%s", page)
	}

	bob := ts.member(t, "bob")
	if _, err := ts.listeningPorts(t, bob, w.Agents[0].ID); sdk.StatusCode(err) != http.StatusNotFound {
		t.Errorf("another member: %v, want 404", err)
	}
	if _, err := ts.listeningPorts(t, bob, "not-a-uuid"); sdk.StatusCode(err) != http.StatusNotFound {
		t.Errorf("bad id: %v, want 404", err)
	}

	closed := time.Now()
	ln.Close()
	events.waitFor("the port gone from the page", func(html string) bool {
		return strings.Contains(html, `data-testid="ports"`) && !strings.Contains(html, row)
	})
	t.Logf("figure: listener closed → gone from the page's event stream in %v", time.Since(closed))
	testutil.Eventually(t, 10*time.Second, "port gone from the API", func() bool {
		ports, err := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
		_, ok := hasPort(ports, port)
		return err == nil && !ok
	})
}

// TestListeningPortsReplica: the agent reports to replica A; a page open
// on replica B, which never polls, lists the port live (the ports are in
// the database, the wake goes through LISTEN/NOTIFY).
func TestListeningPortsReplica(t *testing.T) {
	t.Parallel()
	a := newTestServer(t)
	b := newTestServer(t, func(o *testOptions) { o.db = a.DB; o.noFirstUser = true; o.pollInterval = time.Hour })
	a.pushTemplate(t, "plain", noAppsTemplate)
	w := createWorkspace(t, a.Owner, "dev", "plain")
	onB := loggedIn(t, b, "owner", "owner-password")
	events := openEvents(t, onB, "/@owner/dev/events")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	row := fmt.Sprintf(`data-port="%d"`, ln.Addr().(*net.TCPAddr).Port)
	startControlAgent(t, a, w.Agents[0].Token)
	events.waitFor("the port on replica b", func(html string) bool { return strings.Contains(html, row) })
}

// TestListeningPortsSiteOwner: a site owner sees a member's ports.
func TestListeningPortsSiteOwner(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "plain", noAppsTemplate)
	bob := ts.member(t, "bob")
	w := createWorkspace(t, bob, "dev", "plain")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	startControlAgent(t, ts, w.Agents[0].Token)
	testutil.Eventually(t, 15*time.Second, "the port for the site owner", func() bool {
		ports, err := ts.listeningPorts(t, ts.Owner, w.Agents[0].ID)
		_, ok := hasPort(ports, port)
		return err == nil && ok
	})
}

// TestListeningPortsWildcard: with a wildcard access URL each port links
// to its port URL.
func TestListeningPortsWildcard(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) {
		o.configure = func(opts *handlers.Options) { opts.WildcardAccessURL = "*.apps.localhost" }
	})
	ts.pushTemplate(t, "plain", noAppsTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "plain")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	startControlAgent(t, ts, w.Agents[0].Token)
	owner := loggedIn(t, ts, "owner", "owner-password")
	want := fmt.Sprintf(`href="http://%d--main--dev--owner.apps.localhost:%s/"`, port, ts.URL.Port())
	testutil.Eventually(t, 15*time.Second, "a port URL link", func() bool {
		resp := owner.do("GET", "/@owner/dev", nil, nil)
		page := readBody(t, resp)
		return strings.Contains(page, want) && !strings.Contains(page, "--wildcard-access-url")
	})
}

func (ts *testServer) portShares(t *testing.T, c *sdk.Client, workspaceID string) map[string]string {
	t.Helper()
	var out sdk.WorkspaceAgentPortShares
	if err := c.Request(testContext(t), http.MethodGet, "/api/v2/workspaces/"+workspaceID+"/port-share", nil, &out); err != nil {
		t.Fatalf("list port shares: %v", err)
	}
	m := map[string]string{}
	for _, s := range out.Shares {
		m[fmt.Sprintf("%s:%d", s.AgentName, s.Port)] = s.ShareLevel + "/" + s.Protocol
	}
	return m
}

// TestPortShares: the owner shares a port by the API and by the page's
// form, sees it, and revokes it; the level is what the port-URL
// authoriser reads (PortShareLevel). Other users cannot share it (404 for
// a member who cannot see the workspace, 403 for a site owner), a
// cross-site form post is refused, and bad input is a 400 that changes
// nothing.
func TestPortShares(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "plain", noAppsTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "plain")
	ctx := testContext(t)
	level := func(port int) string {
		t.Helper()
		l, err := ts.DB.PortShareLevel(ctx, w.ID, "main", port)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := level(8080); l != "owner" {
		t.Fatalf("unshared port: %q, want owner", l)
	}
	share := func(c *sdk.Client, method string, body any) error {
		return c.Request(ctx, method, "/api/v2/workspaces/"+w.ID+"/port-share", body, nil)
	}
	if err := share(ts.Owner, http.MethodPost, sdk.UpsertWorkspaceAgentPortShareRequest{AgentName: "main", Port: 8080, ShareLevel: "authenticated"}); err != nil {
		t.Fatal(err)
	}
	if got := ts.portShares(t, ts.Owner, w.ID); got["main:8080"] != "authenticated/http" || len(got) != 1 {
		t.Fatalf("shares: %v", got)
	}
	if l := level(8080); l != "authenticated" {
		t.Fatalf("shared port: %q", l)
	}

	// The page shows it (shared, nothing listening) with a share form.
	owner := loggedIn(t, ts, "owner", "owner-password")
	startControlAgent(t, ts, w.Agents[0].Token)
	testutil.Eventually(t, 15*time.Second, "shared port on the page", func() bool {
		page := readBody(t, owner.do("GET", "/@owner/dev", nil, nil))
		return strings.Contains(page, `data-port="8080"`) && strings.Contains(page, `data-testid="port-share-form"`) &&
			strings.Contains(page, "badge-share-authenticated")
	})

	// The page's form, same-origin: public.
	resp := owner.do("POST", "/@owner/dev.main/ports/8080/share", url.Values{"share_level": {"public"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/@owner/dev" {
		t.Fatalf("share form: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if l := level(8080); l != "public" {
		t.Fatalf("after the form: %q, want public", l)
	}
	// A cross-site post of the same form is refused and changes nothing.
	resp = owner.do("POST", "/@owner/dev.main/ports/8080/share", url.Values{"share_level": {"owner"}},
		http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site form: %d, want 403", resp.StatusCode)
	}
	if l := level(8080); l != "public" {
		t.Fatalf("after a cross-site form: %q, want public", l)
	}

	// Other users.
	bob := ts.member(t, "bob")
	if err := share(bob, http.MethodPost, sdk.UpsertWorkspaceAgentPortShareRequest{AgentName: "main", Port: 8080, ShareLevel: "owner"}); sdk.StatusCode(err) != http.StatusNotFound {
		t.Errorf("member sharing another's port: %v, want 404", err)
	}
	if err := share(bob, http.MethodDelete, sdk.DeleteWorkspaceAgentPortShareRequest{AgentName: "main", Port: 8080}); sdk.StatusCode(err) != http.StatusNotFound {
		t.Errorf("member revoking another's port: %v, want 404", err)
	}
	bobBrowser := loggedIn(t, ts, "bob", "bob-password")
	if resp := bobBrowser.do("POST", "/@owner/dev.main/ports/8080/share", url.Values{"share_level": {"owner"}}, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("member's form on another's workspace: %d, want 404", resp.StatusCode)
	}
	bw := createWorkspace(t, bob, "box", "plain")
	err := ts.Owner.Request(ctx, http.MethodPost, "/api/v2/workspaces/"+bw.ID+"/port-share", sdk.UpsertWorkspaceAgentPortShareRequest{AgentName: "main", Port: 3000, ShareLevel: "public"}, nil)
	if sdk.StatusCode(err) != http.StatusForbidden {
		t.Errorf("site owner sharing a member's port: %v, want 403", err)
	}
	if resp := owner.do("POST", "/@bob/box.main/ports/3000/share", url.Values{"share_level": {"public"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("site owner's form on a member's workspace: %d, want 403", resp.StatusCode)
	}
	if got := ts.portShares(t, ts.Owner, bw.ID); len(got) != 0 {
		t.Errorf("member's shares after refusals: %v", got)
	}
	if l := level(8080); l != "public" {
		t.Fatalf("after refusals: %q, want public", l)
	}

	// Bad input.
	for _, req := range []sdk.UpsertWorkspaceAgentPortShareRequest{
		{AgentName: "main", Port: 8, ShareLevel: "public"},
		{AgentName: "main", Port: 65536, ShareLevel: "public"},
		{AgentName: "main", Port: 8080, ShareLevel: "everyone"},
		{AgentName: "main", Port: 8080, ShareLevel: "public", Protocol: "ftp"},
		{AgentName: "nope", Port: 8080, ShareLevel: "public"},
	} {
		if err := share(ts.Owner, http.MethodPost, req); sdk.StatusCode(err) != http.StatusBadRequest {
			t.Errorf("%+v: %v, want 400", req, err)
		}
	}
	if resp := owner.do("POST", "/@owner/dev.main/ports/abc/share", url.Values{"share_level": {"public"}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("form with a bad port: %d, want 400", resp.StatusCode)
	}
	if got := ts.portShares(t, ts.Owner, w.ID); got["main:8080"] != "public/http" || len(got) != 1 {
		t.Fatalf("shares after bad input: %v", got)
	}

	// Revoke: by the API's DELETE, then by the form's "owner".
	if err := share(ts.Owner, http.MethodDelete, sdk.DeleteWorkspaceAgentPortShareRequest{AgentName: "main", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	if l := level(8080); l != "owner" {
		t.Fatalf("after revoke: %q", l)
	}
	if err := share(ts.Owner, http.MethodDelete, sdk.DeleteWorkspaceAgentPortShareRequest{AgentName: "main", Port: 8080}); sdk.StatusCode(err) != http.StatusNotFound {
		t.Errorf("revoking twice: %v, want 404", err)
	}
	owner.do("POST", "/@owner/dev.main/ports/9090/share", url.Values{"share_level": {"authenticated"}}, nil)
	if l := level(9090); l != "authenticated" {
		t.Fatalf("form share 9090: %q", l)
	}
	owner.do("POST", "/@owner/dev.main/ports/9090/share", url.Values{"share_level": {"owner"}}, nil)
	if l := level(9090); l != "owner" {
		t.Fatalf("form revoke 9090: %q", l)
	}
}

// healthBackend is an app whose health endpoint fails while failing is set.
func healthBackend(t *testing.T) (port int, failing *atomic.Bool) {
	failing = &atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port, failing
}

// appEntry returns the HTML of the app's entry on the page.
func appEntry(page, slug string) string {
	i := strings.Index(page, `data-app="`+slug+`"`)
	if i < 0 {
		return ""
	}
	rest := page[i:]
	if j := strings.Index(rest, "</span>\n"); j >= 0 {
		rest = rest[:j]
	}
	if j := strings.Index(rest, `data-testid="app"`); j > 0 {
		rest = rest[:j]
	}
	return rest
}

// TestAppHealthOnPage: a real agent probes a real backend; the page shows
// healthy, then unhealthy with the app's button greyed out (and why) when
// the backend starts failing, healthy again when it recovers; an app
// without a check shows no state; an offline agent and a stopped workspace
// grey out every app.
func TestAppHealthOnPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	port, failing := healthBackend(t)
	ts.pushTemplate(t, "health", fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    apps:
      - slug: web
        url: http://localhost:%[1]d
        healthcheck: {url: "http://localhost:%[1]d/healthz", interval: 1, threshold: 2}
      - slug: plain
        url: http://localhost:%[1]d
`, port))
	w := createWorkspace(t, ts.Owner, "dev", "health")
	owner := loggedIn(t, ts, "owner", "owner-password")
	events := openEvents(t, owner, "/@owner/dev/events")
	ag := startControlAgent(t, ts, w.Agents[0].Token)
	events.waitFor("web healthy", func(html string) bool {
		web, plain := appEntry(html, "web"), appEntry(html, "plain")
		return strings.Contains(web, "health-healthy") && !strings.Contains(web, "app-off") &&
			plain != "" && !strings.Contains(plain, "app-health") && !strings.Contains(plain, "app-off")
	})
	failing.Store(true)
	events.waitFor("web unhealthy and greyed out", func(html string) bool {
		web := appEntry(html, "web")
		return strings.Contains(web, "health-unhealthy") && strings.Contains(web, `data-testid="app-off"`) &&
			strings.Contains(web, "health check fails") && !strings.Contains(web, "href=")
	})
	failing.Store(false)
	events.waitFor("web healthy again", func(html string) bool {
		return strings.Contains(appEntry(html, "web"), "health-healthy")
	})
	ag.Close()
	events.waitFor("apps greyed out while the agent is offline", func(html string) bool {
		web, plain := appEntry(html, "web"), appEntry(html, "plain")
		return strings.Contains(web, "agent is not connected") && strings.Contains(plain, "agent is not connected") &&
			!strings.Contains(web, "app-health")
	})
	if err := ts.Owner.Request(testContext(t), http.MethodPost, "/api/v2/workspaces/"+w.ID+"/stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	page := readBody(t, owner.do("GET", "/@owner/dev", nil, nil))
	for _, slug := range []string{"web", "plain"} {
		if e := appEntry(page, slug); !strings.Contains(e, `data-testid="app-off"`) || !strings.Contains(e, "workspace is stopped") {
			t.Errorf("stopped workspace: app %s not greyed out: %s", slug, e)
		}
	}
}

// TestAppBadGatewayPage: an app that nothing serves, and an app whose
// agent is offline, answer a styled 502 page (the dashboard's layout)
// that says what is wrong and what to do, never a bare line of text.
func TestAppBadGatewayPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	live := newAppBackend(t)
	ts.pushTemplate(t, "apps", fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    apps:
      - {slug: dead, url: "http://localhost:%d"}
      - {slug: live, url: "http://localhost:%d"}
`, deadPort, live.port))
	w := createWorkspace(t, ts.Owner, "dev", "apps")
	stop := startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	owner := loggedIn(t, ts, "owner", "owner-password")
	// The agent may take a moment to join the tailnet.
	testutil.Eventually(t, 30*time.Second, "live app answers", func() bool {
		return owner.do("GET", "/@owner/dev.main/apps/live/", nil, nil).StatusCode == http.StatusOK
	})
	check := func(what string, resp *http.Response, want ...string) {
		t.Helper()
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %q, want a 502 page:\n%s", what, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
			t.Errorf("%s: the page lacks the dashboard's headers (CSP %q)", what, csp)
		}
		for _, s := range append([]string{`data-testid="app-unavailable"`, "What to do", `href="/@owner/dev"`, "<nav"}, want...) {
			if !strings.Contains(body, s) {
				t.Errorf("%s: the page lacks %q:\n%s", what, s, body)
			}
		}
	}
	check("dead port", owner.do("GET", "/@owner/dev.main/apps/dead/", nil, nil),
		fmt.Sprintf("Nothing is listening on port %d", deadPort), "Start the app in the workspace")

	stop()
	testutil.Eventually(t, 30*time.Second, "agent disconnected", func() bool {
		w, err := ts.Owner.Workspace(testContext(t), "dev")
		return err == nil && w.Agents[0].Status == sdk.AgentDisconnected
	})
	// A request may still dial the agent for a moment (the app's target is
	// cached for appTargetTTL); the page says offline once it is known.
	testutil.Eventually(t, 60*time.Second, "offline page", func() bool {
		resp := owner.do("GET", "/@owner/dev.main/apps/live/", nil, nil)
		body := readBody(t, resp)
		return resp.StatusCode == http.StatusBadGateway && strings.Contains(body, "agent is offline")
	})
	check("agent offline", owner.do("GET", "/@owner/dev.main/apps/live/", nil, nil),
		"The workspace&#39;s agent is offline", "start the workspace")
}
