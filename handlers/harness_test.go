package handlers_test

import (
	"context"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/store/storetest"
	"github.com/gatewaydev/coder/tailnet"
)

// testServer is a real API on a real database, served on loopback.
type testServer struct {
	URL   *url.URL
	API   *handlers.API
	DB    *store.DB
	Reg   *prometheus.Registry
	Owner *sdk.Client
}

type testOptions struct {
	provisioner handlers.Provisioner
	browserOnly bool
	// noFirstUser leaves the deployment without users (Owner is then a
	// client without a token).
	noFirstUser bool
	// db, when set, is shared with another test server (a replica).
	db *store.DB
	// pollInterval overrides the status poll of event streams.
	pollInterval time.Duration
	// tailnet turns on coordination, DERP and STUN and joins the server's
	// own tailnet node, so that the server reaches agents (web terminal).
	tailnet bool
	// noServerNode, with tailnet, leaves the server's own node unstarted
	// (the test starts it).
	noServerNode bool
	// wrapListener, if set, wraps the server's listener (to cut
	// connections in tests).
	wrapListener func(net.Listener) net.Listener
	// configure, if set, changes the API's options before it starts.
	configure func(*handlers.Options)
}

// configureOnce guards tailnet.ConfigureProcess, which sets process-wide
// knobs.
var (
	configureOnce sync.Once
	configureErr  error
)

func newTestServer(t *testing.T, opts ...func(*testOptions)) *testServer {
	t.Helper()
	var o testOptions
	for _, f := range opts {
		f(&o)
	}
	db := o.db
	if db == nil {
		db = storetest.New(t)
	}
	srv := httptest.NewUnstartedServer(nil)
	if o.wrapListener != nil {
		srv.Listener = o.wrapListener(srv.Listener)
	}
	u, _ := url.Parse("http://" + srv.Listener.Addr().String())
	reg := prometheus.NewRegistry()
	var tn handlers.TailnetOptions
	var nodeDir string
	if o.tailnet {
		// Tailscale's knobs are process-wide and read by running nodes:
		// set them once (every test server here is plain HTTP on loopback).
		configureOnce.Do(func() {
			configureErr = tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: u.String()})
		})
		if configureErr != nil {
			t.Fatalf("configure process: %v", configureErr)
		}
		tn = handlers.TailnetOptions{Enabled: true, STUNAddrs: []string{"127.0.0.1:0"}}
		nodeDir = t.TempDir() // removed after the cleanup below closes the node
	}
	apiOpts := handlers.Options{
		DB: db, Logger: testLogger(t), AccessURL: u, Version: "v-test", Registerer: reg,
		Provisioner: o.provisioner, BrowserOnly: o.browserOnly, StatusPollInterval: o.pollInterval,
		Tailnet: tn,
	}
	if o.configure != nil {
		o.configure(&apiOpts)
	}
	api, err := handlers.New(apiOpts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = api.Handler()
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		api.Close()
	})
	if o.tailnet && !o.noServerNode {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := api.StartServerNode(ctx, nodeDir)
		cancel()
		if err != nil {
			t.Fatalf("start the server's tailnet node: %v", err)
		}
	}
	ts := &testServer{URL: u, API: api, DB: db, Reg: reg}
	ts.Owner = ts.client("")
	if o.noFirstUser {
		return ts
	}
	ctx := testContext(t)
	if err := ts.Owner.Request(ctx, http.MethodPost, "/api/v2/users/first", sdk.CreateFirstUserRequest{Username: "owner", Email: "owner@example.com", Password: "owner-password"}, nil); err != nil {
		t.Fatalf("create first user: %v", err)
	}
	ts.Owner.Token = ts.login(t, "owner", "owner-password")
	return ts
}

func (ts *testServer) client(token string) *sdk.Client {
	return &sdk.Client{URL: ts.URL, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

func (ts *testServer) login(t *testing.T, login, password string) string {
	t.Helper()
	var resp sdk.LoginResponse
	if err := ts.client("").Request(testContext(t), http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: login, Password: password}, &resp); err != nil {
		t.Fatalf("login %s: %v", login, err)
	}
	return resp.SessionToken
}

// member creates a member user and returns a client logged in as them.
func (ts *testServer) member(t *testing.T, name string) *sdk.Client {
	t.Helper()
	err := ts.Owner.Request(testContext(t), http.MethodPost, "/api/v2/users", sdk.CreateUserRequest{Username: name, Email: name + "@example.com", Password: name + "-password"}, nil)
	if err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return ts.client(ts.login(t, name, name+"-password"))
}

const testTemplate = `provisioner: manual
agents:
  - name: main
    apps:
      - slug: web
        display_name: Web
        url: http://localhost:8080
`

func (ts *testServer) pushTemplate(t *testing.T, name, src string) {
	t.Helper()
	if err := ts.Owner.Request(testContext(t), http.MethodPut, "/api/v2/templates/"+name, sdk.PushTemplateRequest{Source: src}, nil); err != nil {
		t.Fatalf("push template: %v", err)
	}
}

func createWorkspace(t *testing.T, c *sdk.Client, name, template string) sdk.Workspace {
	t.Helper()
	var w sdk.Workspace
	if err := c.Request(testContext(t), http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: name, Template: template}, &w); err != nil {
		t.Fatalf("create workspace %s: %v", name, err)
	}
	return w
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, acting like a same-origin page.
type browser struct {
	t    *testing.T
	base *url.URL
	hc   *http.Client
}

func newBrowser(t *testing.T, base *url.URL) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, hc: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(method, path string, form url.Values, header http.Header) *http.Response {
	b.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, b.base.String()+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	// Same-origin, as a browser would say of a dashboard form.
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", b.base.String())
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs through t and fails the test on unexpected error logs.
func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t, slog.LevelDebug) }
