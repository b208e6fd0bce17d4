package handlers_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/handlers"
	itestutil "github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/store"
)

// subApp is an app on the agent's localhost for subdomain tests: it
// records every request's headers and URL, echoes websockets at /ws and
// streams server-sent events at /sse (the second event waits for
// release).
type subApp struct {
	port    int
	mu      sync.Mutex
	reqs    []*http.Request
	release chan struct{}
}

func newSubApp(t *testing.T, tlsOn bool) *subApp {
	a := &subApp{release: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.reqs = append(a.reqs, r.Clone(context.Background()))
		a.mu.Unlock()
		switch r.URL.Path {
		case "/ws":
			up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				c.WriteMessage(mt, msg)
			}
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-a.release:
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "data: two\n\n")
		case "/set-cookie":
			http.SetCookie(w, &http.Cookie{Name: "app_own", Value: "1", Path: "/", Domain: "apps.test"})
			http.SetCookie(w, &http.Cookie{Name: "coder_app_token", Value: "planted", Path: "/"})
			fmt.Fprint(w, "cookies set")
		default:
			fmt.Fprintf(w, "hello from the app at %s (user %q)", r.URL.Path, r.Header.Get(apps.HeaderUsername))
		}
	})
	var srv *httptest.Server
	if tlsOn {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-a.release:
		default:
			close(a.release)
		}
	})
	a.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

func (a *subApp) requests() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.reqs...)
}

func (a *subApp) last() *http.Request {
	r := a.requests()
	return r[len(r)-1]
}

// appBrowser is a browser with one cookie jar for every host: each host
// resolves to the test server (as *.localhost or a wildcard DNS record
// would), and redirects are followed by hand.
type appBrowser struct {
	t   *testing.T
	ts  *testServer
	jar *cookiejar.Jar
	hc  *http.Client
}

func newAppBrowser(t *testing.T, ts *testServer) *appBrowser {
	jar, _ := cookiejar.New(nil)
	addr := ts.URL.Host
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &appBrowser{t: t, ts: ts, jar: jar, hc: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get requests u as a top-level navigation.
func (b *appBrowser) get(u string, h http.Header) *http.Response {
	b.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// follow navigates to u and follows redirects; it returns the last
// response, its body and the URLs visited.
func (b *appBrowser) follow(u string, h http.Header) (*http.Response, string, []string) {
	b.t.Helper()
	var chain []string
	for range 12 {
		chain = append(chain, u)
		resp := b.get(u, h)
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" {
			return resp, readBody(b.t, resp), chain
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			b.t.Fatal(err)
		}
		u = next.String()
	}
	b.t.Fatalf("more than 12 redirects: %v", chain)
	return nil, "", nil
}

func (b *appBrowser) login(user, password string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.ts.URL.String()+"/login", strings.NewReader(url.Values{"login": {user}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.ts.URL.String())
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("log in %s: %d", user, resp.StatusCode)
	}
}

type subEnv struct {
	ts       *testServer
	app      *subApp
	tlsApp   *subApp
	wildcard string // like .apps.test:PORT
	ws       string
}

// appURL is the URL of label under the wildcard.
func (e *subEnv) appURL(label, path string) string {
	return "http://" + label + e.wildcard + path
}

func subdomainTemplate(port int) string {
	return fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    apps:
      - {slug: mine, url: "http://localhost:%[1]d", subdomain: true, share: owner}
      - {slug: team, url: "http://localhost:%[1]d", subdomain: true, share: authenticated, identity_headers: true}
      - {slug: quiet, url: "http://localhost:%[1]d", subdomain: true, share: authenticated}
      - {slug: open, url: "http://localhost:%[1]d", subdomain: true, share: public}
`, port)
}

// newSubEnv is a server with a wildcard, a workspace "dev" of the owner
// with a real agent on the tailnet, the apps of subdomainTemplate, and a
// member bob.
func newSubEnv(t *testing.T, configure func(*handlers.Options)) *subEnv {
	e := &subEnv{}
	e.ts = newTestServer(t, func(o *testOptions) {
		o.tailnet = true
		o.configure = func(opts *handlers.Options) {
			e.wildcard = ".apps.test:" + opts.AccessURL.Port()
			opts.WildcardAccessURL = "*" + e.wildcard
			if configure != nil {
				configure(opts)
			}
		}
	})
	e.app = newSubApp(t, false)
	e.tlsApp = newSubApp(t, true)
	e.ts.pushTemplate(t, "sub", subdomainTemplate(e.app.port))
	w := createWorkspace(t, e.ts.Owner, "dev", "sub")
	startAgentIn(t, e.ts, w.Agents[0].Token, t.TempDir(), nil)
	e.ts.member(t, "bob")
	// The agent takes a moment to join the tailnet: the public app answers
	// once it has.
	anon := newAppBrowser(t, e.ts)
	itestutil.Eventually(t, 30*time.Second, "the public app answers", func() bool {
		return anon.get(e.appURL("open--main--dev--owner", "/"), nil).StatusCode == http.StatusOK
	})
	return e
}

// TestSubdomainApps: subdomain apps through the server's tailnet node to a
// real agent and app. The first visit signs in through the primary, which
// sends the visitor back with an app token that the app's host moves into
// a host-only cookie; sharing levels apply; identity headers go to the app
// that asks only; the dashboard's cookie and the token never reach an app.
func TestSubdomainApps(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t, nil)
	ts := e.ts
	mine := e.appURL("mine--main--dev--owner", "/x/y?q=1")

	// An anonymous visitor of an owner app is sent to the primary, then
	// to log in.
	anon := newAppBrowser(t, ts)
	resp := anon.get(mine, nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Host != ts.URL.Host || loc.Path != apps.AuthRedirectPath || loc.Query().Get("redirect_uri") != mine {
		t.Fatalf("anonymous visit: %d to %v", resp.StatusCode, loc)
	}
	resp, _, chain := anon.follow(mine, nil)
	if resp.Request.URL.Path != "/login" || resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous visit ends at %s (%d): %v", resp.Request.URL, resp.StatusCode, chain)
	}

	// The owner logs in and is sent back to the app, through the dance.
	owner := newAppBrowser(t, ts)
	owner.login("owner", "owner-password")
	resp, body, chain := owner.follow(mine, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello from the app at /x/y") {
		t.Fatalf("owner's app: %d %q after %v", resp.StatusCode, body, chain)
	}
	if len(chain) != 4 || chain[3] != mine {
		t.Fatalf("the sign-in took %v; want app, primary, app with token, app", chain)
	}
	last := e.app.last()
	if last.URL.RawQuery != "q=1" || last.Header.Get("Cookie") != "" {
		t.Fatalf("the app saw query %q and cookies %q", last.URL.RawQuery, last.Header.Get("Cookie"))
	}
	if got := last.Header.Get("X-Forwarded-Host"); got != "mine--main--dev--owner"+e.wildcard {
		t.Errorf("X-Forwarded-Host %q", got)
	}
	appU, _ := url.Parse(mine)
	var token string
	for _, c := range owner.jar.Cookies(appU) {
		if c.Name == apps.TokenCookie {
			token = c.Value
		}
	}
	if token == "" {
		t.Fatal("no app token cookie on the app's host")
	}
	for _, u := range []string{ts.URL.String(), e.appURL("team--main--dev--owner", "/"), "http://apps.test" + e.wildcard[len(".apps.test"):]} {
		pu, _ := url.Parse(u)
		for _, c := range owner.jar.Cookies(pu) {
			if c.Name == apps.TokenCookie {
				t.Errorf("the app token cookie also goes to %s", u)
			}
		}
	}
	// The cookie's attributes, as the app's host set them.
	withTok := chain[2]
	resp = newAppBrowser(t, ts).get(withTok, nil)
	sc := resp.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") || strings.Contains(strings.ToLower(sc), "domain=") || resp.Header.Get("Location") != "/x/y?q=1" {
		t.Errorf("token step: Set-Cookie %q, Location %q", sc, resp.Header.Get("Location"))
	}

	t.Run("workspace page links", func(t *testing.T) {
		resp := owner.get(ts.URL.String()+"/@owner/dev", nil)
		body := readBody(t, resp)
		if !strings.Contains(body, `href="`+e.appURL("mine--main--dev--owner", "/")+`"`) || strings.Contains(body, "/@owner/dev.main/apps/mine/") {
			t.Errorf("the workspace page does not link the subdomain app: %q", body)
		}
	})

	t.Run("sharing levels and identity", func(t *testing.T) {
		bob := newAppBrowser(t, ts)
		bob.login("bob", "bob-password")
		spoof := http.Header{"Coder-Username": {"owner"}, "Coder-User-Id": {"x"}}
		resp, body, _ := bob.follow(e.appURL("mine--main--dev--owner", "/"), nil)
		if resp.StatusCode != http.StatusNotFound || resp.Request.URL.Host != ts.URL.Host {
			t.Errorf("bob opening an owner app: %d at %s: %q", resp.StatusCode, resp.Request.URL, body)
		}
		resp, body, _ = bob.follow(e.appURL("team--main--dev--owner", "/"), spoof)
		if resp.StatusCode != http.StatusOK || e.app.last().Header.Get(apps.HeaderUsername) != "bob" || e.app.last().Header.Get(apps.HeaderEmail) != "bob@example.com" {
			t.Errorf("bob opening an authenticated app with identity headers: %d %q, headers %v", resp.StatusCode, body, e.app.last().Header)
		}
		resp, _, _ = bob.follow(e.appURL("quiet--main--dev--owner", "/"), spoof)
		if resp.StatusCode != http.StatusOK || e.app.last().Header.Get(apps.HeaderUsername) != "" || e.app.last().Header.Get(apps.HeaderUserID) != "" {
			t.Errorf("an app without identity_headers: %d, headers %v", resp.StatusCode, e.app.last().Header)
		}
		resp, _, chain := bob.follow(e.appURL("open--main--dev--owner", "/"), spoof)
		if resp.StatusCode != http.StatusOK || len(chain) != 1 {
			t.Errorf("a public app: %d after %v", resp.StatusCode, chain)
		}
		for k := range e.app.last().Header {
			if strings.HasPrefix(k, "Coder-") {
				t.Errorf("the public app received %s", k)
			}
		}
	})

	t.Run("forged, expired and replayed tokens", func(t *testing.T) {
		ctx := testContext(t)
		keys := dbKeys{ts.DB}
		ws, err := ts.Owner.Workspace(ctx, "dev")
		if err != nil {
			t.Fatal(err)
		}
		owner, _ := ts.DB.UserByLogin(ctx, "owner")
		now := time.Now()
		valid := apps.Token{UserID: owner.ID, Host: "mine--main--dev--owner", WorkspaceID: ws.ID, AgentID: ws.Agents[0].ID,
			Method: apps.AccessSubdomain, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()}
		seal := func(f func(*apps.Token)) string {
			tok := valid
			f(&tok)
			s, err := apps.SealToken(ctx, keys, tok)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		try := func(name, host, cookie string, want int) {
			t.Helper()
			c := newAppBrowser(t, ts)
			u, _ := url.Parse(e.appURL(host, "/"))
			c.jar.SetCookies(u, []*http.Cookie{{Name: apps.TokenCookie, Value: cookie}})
			if resp := c.get(u.String(), nil); resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", name, resp.StatusCode, want)
			}
		}
		try("a token sealed here", "mine--main--dev--owner", seal(func(*apps.Token) {}), 200)
		try("forged", "mine--main--dev--owner", "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoieCJ9..AAAA.AAAA.AAAA", 303)
		try("the owner's cookie from the browser", "mine--main--dev--owner", token, 200)
		try("expired", "mine--main--dev--owner", seal(func(t *apps.Token) { t.ExpiresAt = now.Add(-time.Second).Unix() }), 303)
		try("another app's token replayed", "team--main--dev--owner", token, 303)
		try("another user's workspace claimed", "mine--main--dev--owner", seal(func(t *apps.Token) { t.WorkspaceID = t.AgentID }), 303)
		try("another method", "mine--main--dev--owner", seal(func(t *apps.Token) { t.Method = "path" }), 303)
		bob, _ := ts.DB.UserByLogin(ctx, "bob")
		try("bob's token for an owner app", "mine--main--dev--owner", seal(func(t *apps.Token) { t.UserID = bob.ID }), 303)
		// A token in the URL that is not for this host is refused with a
		// page, never a redirect (no loop).
		c := newAppBrowser(t, ts)
		if resp := c.get(e.appURL("team--main--dev--owner", "/?"+apps.TokenQueryParam+"="+url.QueryEscape(token)), nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("another app's token in the URL: %d", resp.StatusCode)
		}
		if resp := c.get(e.appURL("mine--main--dev--owner", "/?"+apps.TokenQueryParam+"="+url.QueryEscape(seal(func(t *apps.Token) { t.ExpiresAt = now.Unix() - 1 }))), nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("an expired token in the URL: %d", resp.StatusCode)
		}
		// A websocket or a script's fetch without a token gets a 401, not
		// a redirect it cannot follow.
		if resp := c.get(e.appURL("mine--main--dev--owner", "/"), http.Header{"Sec-Fetch-Mode": {"cors"}}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a fetch without a token: %d", resp.StatusCode)
		}
	})

	t.Run("bad hosts and redirect targets", func(t *testing.T) {
		c := newAppBrowser(t, ts)
		for _, label := range []string{"nope", "8--main--dev--owner", "70000--main--dev--owner", "mine--main--dev--@me", "mine--dev--owner", "a.b"} {
			resp := c.get(e.appURL(label, "/"), nil)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `data-testid="error-message"`) || !strings.Contains(body, ts.URL.String()+"/static/") || strings.Contains(body, "Workspaces</a>") {
				t.Errorf("host %s: %d %q", label, resp.StatusCode, body)
			}
		}
		// Hosts that are not under the wildcard go to the dashboard.
		if resp := c.get("http://apps.test"+e.wildcard[len(".apps.test"):]+"/healthz", nil); resp.StatusCode != 200 || readBody(t, resp) != "OK" {
			t.Errorf("the wildcard's parent host did not reach the dashboard: %d", resp.StatusCode)
		}
		owner := newAppBrowser(t, ts)
		owner.login("owner", "owner-password")
		base := ts.URL.String() + apps.AuthRedirectPath + "?redirect_uri="
		port := ts.URL.Port()
		for _, target := range []string{
			"http://evil.example/",
			ts.URL.String() + "/workspaces",
			"https://mine--main--dev--owner.apps.test:" + port + "/",
			"http://x@mine--main--dev--owner.apps.test:" + port + "/",
			"http://mine--main--dev--owner.apps.test:" + port + ".evil.example/",
			"http://mine--main--dev--owner.apps.test:" + (port + "1") + "/",
			"//mine--main--dev--owner.apps.test:" + port + "/",
			"/mine",
			"javascript:alert(1)",
			"http://nope.apps.test:" + port + "/",
			"",
		} {
			resp := owner.get(base+url.QueryEscape(target), nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("redirect_uri %q: %d to %q", target, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		// Cross-site: a frame or a script's fetch of the token endpoint.
		for _, h := range []http.Header{
			{"Sec-Fetch-Dest": {"iframe"}, "Sec-Fetch-Site": {"cross-site"}},
			{"Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Dest": {"empty"}, "Sec-Fetch-Site": {"cross-site"}},
			{"Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}, "Sec-Fetch-Site": {"cross-site"}},
		} {
			resp := owner.get(base+url.QueryEscape(mine), h)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("token endpoint with %v: %d", h, resp.StatusCode)
			}
		}
		// A browser that keeps no cookie for the app's host is stopped
		// after a few round trips.
		var last int
		for range 8 {
			last = owner.get(base+url.QueryEscape(mine), nil).StatusCode
		}
		if last != http.StatusBadRequest {
			t.Errorf("the sixth sign-in within a minute: %d, want 400", last)
		}
	})

	t.Run("paths and streams", func(t *testing.T) {
		for _, p := range []string{"/../../etc/passwd", "/%2e%2e/%2e%2e/x", "/a%2fb/..%2f..%2fc", "/@me/x", "//evil.example/x", "/api/v2/users/me"} {
			resp := owner.get(e.appURL("mine--main--dev--owner", p), nil)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello from the app at") {
				t.Errorf("path %s: %d %q: did not stay in the app", p, resp.StatusCode, body)
			}
		}
		// Hop-by-hop headers stop at the proxy; X-Forwarded-* are set.
		owner.get(mine, http.Header{"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Te": {"trailers"}, "X-Forwarded-For": {"203.0.113.9"}})
		if h := e.app.last().Header; h.Get("X-Hop") != "" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("the app received headers %v", h)
		}
		// Websocket echo, with the cookie.
		u, _ := url.Parse(mine)
		d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", ts.URL.Host)
		}, Jar: owner.jar}
		c, _, err := d.Dial("ws://"+u.Host+"/ws", nil)
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte("ping"))
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "ping" {
			t.Fatalf("websocket echo: %q %v", msg, err)
		}
		if g := metricValue(t, ts, "coderd_apps_websockets_open"); g != 1 {
			t.Errorf("open app websockets: %v", g)
		}
		// Server-sent events arrive as they are sent.
		resp := owner.get("http://"+u.Host+"/sse", nil)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "data: one\n" {
			t.Fatalf("first event: %q %v", line, err)
		}
		close(e.app.release)
		// An app cannot set a cookie for every app's parent domain, nor
		// plant a token.
		resp = owner.get("http://"+u.Host+"/set-cookie", nil)
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if strings.Contains(strings.ToLower(sc), "domain") || strings.Contains(sc, apps.TokenCookie) {
				t.Errorf("the app set %q", sc)
			}
		}
	})

	t.Run("port URLs", func(t *testing.T) {
		resp, body, _ := owner.follow(e.appURL(fmt.Sprintf("%d--main--dev--owner", e.app.port), "/p"), nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "hello from the app at /p") {
			t.Errorf("port URL: %d %q", resp.StatusCode, body)
		}
		resp, body, _ = owner.follow(e.appURL(fmt.Sprintf("%ds--main--dev--owner", e.tlsApp.port), "/tls"), nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "hello from the app at /tls") || e.tlsApp.last().TLS == nil {
			t.Errorf("HTTPS port URL: %d %q", resp.StatusCode, body)
		}
		bob := newAppBrowser(t, ts)
		bob.login("bob", "bob-password")
		if resp, _, _ := bob.follow(e.appURL(fmt.Sprintf("%d--main--dev--owner", e.app.port), "/"), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob opening the owner's port: %d", resp.StatusCode)
		}
	})

	t.Run("logout ends app sessions", func(t *testing.T) {
		b := newAppBrowser(t, ts)
		b.login("owner", "owner-password")
		u := e.appURL("mine--main--dev--owner", "/")
		if resp, _, _ := b.follow(u, nil); resp.StatusCode != 200 {
			t.Fatalf("before logout: %d", resp.StatusCode)
		}
		req, _ := http.NewRequest("POST", ts.URL.String()+"/logout", nil)
		req.Header.Set("Origin", ts.URL.String())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if resp, err := b.hc.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %v %v", resp, err)
		}
		if resp := b.get(u, nil); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after logout the app answered %d, want a redirect to sign in", resp.StatusCode)
		}
	})

	// The dashboard's cookie and the app token never reached an app.
	for _, r := range append(e.app.requests(), e.tlsApp.requests()...) {
		if c := r.Header.Get("Cookie"); strings.Contains(c, "coder_session") || strings.Contains(c, apps.TokenCookie) {
			t.Errorf("the app received cookies %q", c)
		}
		if strings.Contains(r.URL.RawQuery, apps.TokenQueryParam) {
			t.Errorf("the app received the token in %q", r.URL.RawQuery)
		}
	}
	for name, min := range map[string]float64{
		`coderd_apps_tokens_issued_total`:                         5,
		`coderd_apps_tokens_refused_total{from="cookie"}`:         5,
		`coderd_apps_requests_total{code="200",kind="subdomain"}`: 5,
		`coderd_apps_requests_total{code="200",kind="port"}`:      2,
		`coderd_apps_response_bytes_total{kind="subdomain"}`:      100,
	} {
		if v := metricValue(t, ts, name); v < min {
			t.Errorf("%s = %v, want at least %v", name, v, min)
		}
	}
}

// dbKeys reads the key ring from the store, as a replica would, to seal
// tokens in tests.
type dbKeys struct{ db *store.DB }

func (k dbKeys) EncryptionKey(ctx context.Context) (apps.TokenKey, error) {
	key, err := k.db.NewestAppTokenKey(ctx, time.Now().Add(-24*time.Hour))
	return apps.TokenKey{ID: key.ID, Secret: key.Secret}, err
}

func (k dbKeys) DecryptionKey(ctx context.Context, id string) (apps.TokenKey, error) {
	key, err := k.db.AppTokenKeyByID(ctx, id)
	return apps.TokenKey{ID: key.ID, Secret: key.Secret}, err
}

// metricValue sums the samples of a metric whose name and labels (as
// written in the text format, labels sorted) match name.
func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	mfs, err := ts.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	base, labels, _ := strings.Cut(name, "{")
	labels = strings.TrimSuffix(labels, "}")
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != base {
			continue
		}
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if labels != "" && strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// TestSubdomainAppLinkFallback: without a wildcard, the workspace page
// links a subdomain app by its path URL and says why; with path apps off
// too, it offers no link and says so.
func TestSubdomainAppLinkFallback(t *testing.T) {
	t.Parallel()
	for _, off := range []bool{false, true} {
		ts := newTestServer(t, func(o *testOptions) {
			o.tailnet = true
			o.configure = func(opts *handlers.Options) { opts.DisablePathApps = off }
		})
		ts.pushTemplate(t, "sub", subdomainTemplate(8080))
		w := createWorkspace(t, ts.Owner, "dev", "sub")
		// Links show only while the agent is connected (else the buttons
		// are greyed out).
		startAgent(t, ts, w.Agents[0].Token, nil)
		b := loggedIn(t, ts, "owner", "owner-password")
		var body string
		itestutil.Eventually(t, 30*time.Second, "the agent connected on the workspace page", func() bool {
			body = readBody(t, b.do("GET", "/@owner/dev", nil, nil))
			return !strings.Contains(body, `data-testid="app-off"`)
		})
		link := strings.Contains(body, `href="/@owner/dev.main/apps/mine/"`)
		note := strings.Contains(body, "no wildcard access URL (--wildcard-access-url)")
		if !note || link == off || off && !strings.Contains(body, "path apps are off: it cannot be opened here") {
			t.Errorf("path apps off=%v: link %v, note %v: %q", off, link, note, body)
		}
	}
}
