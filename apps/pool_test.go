package apps_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/internal/testutil"
)

// countingDialer dials addr over loopback TCP and counts the dials per
// agent.
type countingDialer struct {
	addr  string
	mu    sync.Mutex
	dials map[string]int
}

func (d *countingDialer) DialAgent(ctx context.Context, agentID string, port uint16) (net.Conn, error) {
	d.mu.Lock()
	if d.dials == nil {
		d.dials = map[string]int{}
	}
	d.dials[agentID]++
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, "tcp", d.addr)
}

func (d *countingDialer) count(agentID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[agentID]
}

// TestProxyReusesAgentConnections (issue 13): requests to the apps of one
// agent share one connection pool, so that sequential requests dial the
// agent once; another agent gets its own pool, and CloseAgent drops one.
func TestProxyReusesAgentConnections(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	d := &countingDialer{addr: b.srv.Listener.Addr().String()}
	p := apps.NewProxy(apps.Options{Dialer: d})
	t.Cleanup(func() { p.Close() })
	u, _ := url.Parse("http://localhost:8080")
	f := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		p.Serve(w, r, apps.Target{URL: u, Prefix: "/" + agent, AgentID: agent})
	}))
	t.Cleanup(f.Close)
	get := func(path string) {
		t.Helper()
		resp, err := f.Client().Get(f.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	for i := 0; i < 20; i++ {
		get("/a/asset.js")
	}
	if n := d.count("a"); n != 1 {
		t.Fatalf("20 sequential requests to agent a dialed it %d times, want 1", n)
	}
	get("/b/x")
	if n := d.count("b"); n != 1 {
		t.Fatalf("agent b dialed %d times, want 1", n)
	}
	p.CloseAgent("a")
	get("/a/again")
	if n := d.count("a"); n != 2 {
		t.Fatalf("after CloseAgent, agent a dialed %d times in all, want 2", n)
	}
}

// TestProxyCloseWithRequestsInFlight (issue 13): Close ends requests that
// wait on an app that never answers and websockets that stay open, and
// returns; afterwards the proxy answers 503.
func TestProxyCloseWithRequestsInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var started sync.WaitGroup
	up := websocket.Upgrader{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			started.Done()
			c.ReadMessage() // until the proxy closes it
			return
		}
		started.Done()
		select { // an app that never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(origin.Close)
	t.Cleanup(func() { close(release) })
	d := &countingDialer{addr: origin.Listener.Addr().String()}
	p := apps.NewProxy(apps.Options{Dialer: d})
	u, _ := url.Parse("http://localhost:8080")
	var served atomic.Int32
	f := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Serve(w, r, apps.Target{URL: u, Prefix: "/app", AgentID: "a"})
		served.Add(1)
	}))
	t.Cleanup(f.Close)

	const hanging = 8
	started.Add(hanging + 1)
	errs := make(chan error, hanging)
	for i := 0; i < hanging; i++ {
		go func() {
			resp, err := f.Client().Get(f.URL + "/app/slow")
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(f.URL, "http")+"/app/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	started.Wait() // every request reached the app

	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // a bound for a hang, not a timing
		t.Fatal("Close did not return with requests in flight")
	}
	for i := 0; i < hanging; i++ {
		<-errs
	}
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("the websocket through the proxy stayed open after Close")
	}
	testutil.Eventually(t, 10*time.Second, "every proxied handler returns", func() bool { return served.Load() == hanging+1 })
	resp, err := f.Client().Get(f.URL + "/app/after")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d, want 503", resp.StatusCode)
	}
}
