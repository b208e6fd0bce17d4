package handlers_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/provision"
	"github.com/gatewaydev/coder/sdk"
)

// urlRecorder is the real local provisioner that also records the URL
// each agent was started with.
type urlRecorder struct {
	*provision.Process
	mu   sync.Mutex
	urls []string
}

func (r *urlRecorder) StartAgent(ctx context.Context, a handlers.LocalAgent) error {
	r.mu.Lock()
	r.urls = append(r.urls, a.URL)
	r.mu.Unlock()
	return r.Process.StartAgent(ctx, provision.Agent(a))
}

// localProvisioner is the real local provisioner wired to the API as the
// server wires it.
type localProvisioner struct{ *provision.Process }

func (p localProvisioner) StartAgent(ctx context.Context, a handlers.LocalAgent) error {
	return p.Process.StartAgent(ctx, provision.Agent(a))
}

// forwarder accepts TCP connections and copies them to target, counting
// them: the "internal address" of a template's agent_url.
func forwarder(t *testing.T, target string) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestTemplateAgentURL: a local template's agent_url is the address its
// agents dial instead of the access URL (an internal address in front of
// the same server), and the agent connects through it.
func TestTemplateAgentURL(t *testing.T) {
	t.Parallel()
	rec := &urlRecorder{Process: &provision.Process{Binary: testutil.CoderBinary(t), Dir: testutil.ProvisionerDir(t), Logger: testLogger(t)}}
	t.Cleanup(func() { rec.Close() })
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = rec; o.tailnet = true })
	addr, conns := forwarder(t, ts.URL.Host)
	agentURL := "http://" + addr
	ts.pushTemplate(t, "internal", "provisioner: local\nagent_url: "+agentURL+"\nagents:\n  - name: main\n")
	ts.pushTemplate(t, "plain", "provisioner: local\nagents:\n  - name: main\n")
	createWorkspace(t, ts.Owner, "viaurl", "internal")
	createWorkspace(t, ts.Owner, "direct", "plain")
	for _, name := range []string{"viaurl", "direct"} {
		testutil.Eventually(t, 60*time.Second, name+"'s agent to connect", func() bool {
			w, err := ts.Owner.Workspace(testContext(t), name)
			return err == nil && w.Agents[0].Status == sdk.AgentConnected
		})
	}
	rec.mu.Lock()
	urls := append([]string(nil), rec.urls...)
	rec.mu.Unlock()
	want := map[string]bool{agentURL: false, ts.URL.String(): false}
	for _, u := range urls {
		if _, ok := want[u]; !ok {
			t.Errorf("an agent was started with URL %q; want %q (agent_url) or %q (access URL)", u, agentURL, ts.URL.String())
		}
		want[u] = true
	}
	for u, seen := range want {
		if !seen {
			t.Errorf("no agent was started with %q (started with %q)", u, urls)
		}
	}
	if conns.Load() == 0 {
		t.Fatalf("the agent of the agent_url template connected without going through %s", addr)
	}
}
