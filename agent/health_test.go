package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// TestAppHealth probes a real backend: an app turns healthy on its first
// answer, stays healthy through fewer than threshold failures, turns
// unhealthy after threshold consecutive ones, and healthy again when it
// answers; an app without a check has no state.
func TestAppHealth(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer backend.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{logger: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, changed: make(chan struct{}, 1)}
	defer a.Close()
	apps := []sdk.App{
		{Slug: "web", URL: backend.URL, Healthcheck: &sdk.Healthcheck{URL: backend.URL + "/healthz", Interval: 1, Threshold: 2}},
		{Slug: "plain", URL: backend.URL},
	}
	a.startHealth(apps)
	state := func() string { return a.AppHealth()["web"] }
	testutil.Eventually(t, 10*time.Second, "web healthy", func() bool { return state() == sdk.AppHealthHealthy })
	if _, ok := a.AppHealth()["plain"]; ok {
		t.Errorf("an app without a health check has a state: %v", a.AppHealth())
	}
	// The same manifest again keeps the checks (and the state) as they are.
	a.startHealth(apps)
	if state() != sdk.AppHealthHealthy {
		t.Errorf("after the same manifest: %q, want healthy", state())
	}
	failing.Store(true)
	testutil.Eventually(t, 10*time.Second, "web unhealthy", func() bool { return state() == sdk.AppHealthUnhealthy })
	failing.Store(false)
	testutil.Eventually(t, 10*time.Second, "web healthy again", func() bool { return state() == sdk.AppHealthHealthy })
	// A new manifest without the check drops the state.
	a.startHealth(apps[1:])
	if h := a.AppHealth(); len(h) != 0 {
		t.Errorf("after a manifest without checks: %v", h)
	}
}

// TestAppHealthUnreachable: nothing listening is a failure too.
func TestAppHealthUnreachable(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.NotFoundHandler())
	u := backend.URL
	backend.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{logger: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, changed: make(chan struct{}, 1)}
	defer a.Close()
	a.startHealth([]sdk.App{{Slug: "web", URL: u, Healthcheck: &sdk.Healthcheck{URL: u, Interval: 1, Threshold: 1}}})
	testutil.Eventually(t, 10*time.Second, "web unhealthy", func() bool { return a.AppHealth()["web"] == sdk.AppHealthUnhealthy })
}

// TestAppHealthBelow500: any answer below 500 is healthy, as in Coder: a
// 404, and a redirect (not followed, here to a port nothing serves).
func TestAppHealthBelow500(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, closedURL, http.StatusFound)
			return
		}
		http.NotFound(w, r)
	}))
	defer backend.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{logger: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, changed: make(chan struct{}, 1)}
	defer a.Close()
	a.startHealth([]sdk.App{
		{Slug: "missing", URL: backend.URL, Healthcheck: &sdk.Healthcheck{URL: backend.URL + "/nope", Interval: 1, Threshold: 1}},
		{Slug: "moved", URL: backend.URL, Healthcheck: &sdk.Healthcheck{URL: backend.URL + "/redirect", Interval: 1, Threshold: 1}},
	})
	testutil.Eventually(t, 10*time.Second, "both healthy", func() bool {
		h := a.AppHealth()
		return h["missing"] == sdk.AppHealthHealthy && h["moved"] == sdk.AppHealthHealthy
	})
}

// TestAppHealthSocket: an app with a socket is probed on its socket, never
// on the TCP port that stands for it (which another OS account could
// serve).
func TestAppHealthSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound) // below 500: healthy
	})}
	go srv.Serve(l)
	defer srv.Close()
	// Something else on a TCP port: the check must not be answered by it.
	impostor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the health check reached the TCP port")
	}))
	defer impostor.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{logger: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, changed: make(chan struct{}, 1), appSockDir: dir}
	defer a.Close()
	apps := []sdk.App{{Slug: "ide", URL: impostor.URL, Socket: "app.sock", Healthcheck: &sdk.Healthcheck{URL: impostor.URL + "/", Interval: 1, Threshold: 1}}}
	a.manifest = &sdk.AgentManifest{Apps: apps}
	a.startHealth(apps)
	testutil.Eventually(t, 10*time.Second, "ide healthy", func() bool { return a.AppHealth()["ide"] == sdk.AppHealthHealthy })
	if hits.Load() == 0 {
		t.Error("the socket was never probed")
	}
}
