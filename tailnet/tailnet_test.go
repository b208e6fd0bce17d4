package tailnet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
)

const echoPort = 7000

// timeLeft is how long ctx has left (a minute without a deadline), to
// bound a wait by the test's context.
func timeLeft(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return time.Minute
}

// logChange logs a polled state when it differs from the last one logged,
// so that a wait that times out shows how far it got without a line per
// poll.
func logChange(t *testing.T, last *string, format string, args ...any) {
	t.Helper()
	if s := fmt.Sprintf(format, args...); s != *last {
		t.Log(s)
		*last = s
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// serveEcho echoes lines on port of n until the test ends.
func serveEcho(t *testing.T, n *tailnet.Node, port uint16) {
	t.Helper()
	ln, err := n.Listen(port)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// echo dials addr:port from n, sends a line and checks the echo.
func echo(ctx context.Context, n *tailnet.Node, addr netip.Addr, port uint16) error {
	c, err := n.Dial(ctx, addr, port)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := io.WriteString(c, "hello tailnet\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "hello tailnet\n" {
		return errors.New("bad echo: " + line)
	}
	return nil
}

// eventuallyEcho retries echo until it works or ctx ends.
func eventuallyEcho(t *testing.T, ctx context.Context, n *tailnet.Node, addr netip.Addr, port uint16) {
	t.Helper()
	var last string
	testutil.Eventually(t, timeLeft(ctx), fmt.Sprintf("an echo from %s:%d", addr, port), func() bool {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := echo(dctx, n, addr, port)
		logChange(t, &last, "echo %s:%d: %v", addr, port, err)
		return err == nil
	})
}

func peerAddrs(t *testing.T, ctx context.Context, n *tailnet.Node) []netip.Addr {
	t.Helper()
	ps, err := n.Peers(ctx)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	var out []netip.Addr
	for _, p := range ps {
		out = append(out, p.Addr)
	}
	return out
}

// waitPeers polls until n's peer set satisfies cond.
func waitPeers(t *testing.T, ctx context.Context, n *tailnet.Node, what string, cond func([]netip.Addr) bool) {
	t.Helper()
	var last string
	testutil.Eventually(t, timeLeft(ctx), "peers "+what, func() bool {
		ps, err := n.Peers(ctx)
		var addrs []netip.Addr
		for _, p := range ps {
			addrs = append(addrs, p.Addr)
		}
		logChange(t, &last, "peers: %v (err %v)", addrs, err)
		return err == nil && cond(addrs)
	})
}

func agentID(owner, name string) tailnet.Identity {
	return tailnet.Identity{Kind: tailnet.KindAgent, ID: "agent-" + owner + "-" + name, OwnerID: owner, Name: name}
}

func clientID(owner string) tailnet.Identity {
	return tailnet.Identity{Kind: tailnet.KindClient, ID: "key-" + owner, OwnerID: owner, Name: "cli-" + owner}
}

var serverIdentity = tailnet.Identity{Kind: tailnet.KindServer, ID: "replica-1", Name: "coderd"}

func TestAgentReachable(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 30*time.Second)

	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	if want := tailnet.AddrOf(tailnet.KindAgent, "agent-alice-dev"); agent.Addr() != want {
		t.Fatalf("agent addr %s, want AddrOf %s", agent.Addr(), want)
	}
	if !agent.Addr().Is6() {
		t.Fatalf("agent addr %s is not IPv6", agent.Addr())
	}
	srv := h.StartNode(t, serverIdentity)
	cli := h.StartNode(t, clientID("alice"))

	for name, n := range map[string]*tailnet.Node{"server": srv, "client": cli} {
		t.Run(name, func(t *testing.T) {
			eventuallyEcho(t, ctx, n, agent.Addr(), echoPort)
			// Direct path on loopback: disco pings upgrade to direct.
			var last tailnet.PingResult
			var logged string
			testutil.Eventually(t, timeLeft(ctx), "a direct ping", func() bool {
				r, err := n.Ping(ctx, agent.Addr())
				last = r
				logChange(t, &logged, "ping: %+v (err %v)", r, err)
				return err == nil && r.Direct
			})
			// The endpoint is one the agent advertised (its own interface
			// addresses on this host).
			var advertised []string
			for _, ni := range h.Server().Nodes() {
				if ni.Addr == agent.Addr() {
					for _, ep := range ni.Endpoints {
						advertised = append(advertised, ep.String())
					}
				}
			}
			if !slices.Contains(advertised, last.Endpoint) {
				t.Errorf("direct endpoint %q is not one of the agent's endpoints %v", last.Endpoint, advertised)
			}
		})
	}

	// The server node sees only agents; the agent sees server and client.
	if got := peerAddrs(t, ctx, srv); !slices.Equal(got, []netip.Addr{agent.Addr()}) {
		t.Errorf("server peers %v, want only the agent %v", got, agent.Addr())
	}
	waitPeers(t, ctx, agent, "server and client", func(a []netip.Addr) bool {
		return len(a) == 2 && slices.Contains(a, srv.Addr()) && slices.Contains(a, cli.Addr())
	})

	// Clients and servers accept no inbound connections.
	serveEcho(t, cli, echoPort)
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if err := echo(dctx, agent, cli.Addr(), echoPort); err == nil {
		t.Errorf("agent reached a listener on the client: packet filter must deny inbound to clients")
	}

	st := h.Server().Stats()
	if st.Online[tailnet.KindAgent] != 1 || st.Online[tailnet.KindClient] != 1 || st.Online[tailnet.KindServer] != 1 {
		t.Errorf("online stats %v", st.Online)
	}
	if st.MapResponses["full"] < 3 || st.MapResponses["delta"] == 0 {
		t.Errorf("map responses %v", st.MapResponses)
	}
	if st.STUNRequests == 0 {
		t.Errorf("no STUN requests counted")
	}
	nodes := h.Server().Nodes()
	if len(nodes) != 3 {
		t.Fatalf("Nodes() = %d entries, want 3", len(nodes))
	}
	for _, n := range nodes {
		if !n.Online || n.HomeDERP != tailnet.DefaultRegionID || len(n.Endpoints) == 0 {
			t.Errorf("node %+v: want online with home DERP %d and endpoints", n, tailnet.DefaultRegionID)
		}
	}
}

// TestAwaitReachable: a node that just joined answers AwaitReachable, and
// the first dial after it works; a node the caller may not see never does,
// and the error says why once ctx ends.
func TestAwaitReachable(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 30*time.Second)
	srv := h.StartNode(t, serverIdentity)
	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	if err := srv.WaitForPeer(ctx, agent.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := srv.AwaitReachable(ctx, agent.Addr()); err != nil {
		t.Fatalf("await a new agent from the server's node: %v", err)
	}
	if err := echo(ctx, srv, agent.Addr(), echoPort); err != nil {
		t.Fatalf("first dial after AwaitReachable: %v", err)
	}
	// A port nobody listens on is refused, and IsRefused says so.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	if c, err := srv.Dial(dctx, agent.Addr(), echoPort+1); err == nil {
		c.Close()
		t.Fatal("dial to a port nobody listens on succeeded")
	} else if !tailnet.IsRefused(err) {
		t.Fatalf("dial to a port nobody listens on: %v, want a refusal", err)
	}
	// DialService waits for a refused port to start listening...
	got := make(chan error, 1)
	go func() {
		c, err := srv.DialService(dctx, agent.Addr(), echoPort+1)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	serveEcho(t, agent, echoPort+1)
	if err := <-got; err != nil {
		t.Fatalf("DialService to a port that starts listening: %v", err)
	}
	// ...and gives up with the refusal when ctx ends first.
	sctx0, cancel0 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel0()
	if _, err := srv.DialService(sctx0, agent.Addr(), echoPort+2); !tailnet.IsRefused(err) {
		t.Fatalf("DialService to a port that never listens: %v, want a refusal", err)
	}

	bob := h.StartNode(t, clientID("bob"))
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := bob.AwaitReachable(sctx, agent.Addr()); !errors.Is(err, tailnet.ErrNotPeer) {
		t.Fatalf("await alice's agent from bob's client: %v, want ErrNotPeer", err)
	}
}

// TestDialAgent: the one call that reaches an agent dials a node that has
// just joined at the first try, and never dials an address that is not a
// peer: not another user's agent, and not the host network (tsnet would
// dial an address outside the netmap there).
func TestDialAgent(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 30*time.Second)
	srv := h.StartNode(t, serverIdentity)
	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	c, err := srv.DialAgent(ctx, agent.Addr(), echoPort, false)
	if err != nil {
		t.Fatalf("dial a new agent from the server's node: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello tailnet\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello tailnet\n" {
		t.Fatalf("echo over DialAgent: %q, %v", line, err)
	}
	c.Close()

	// A refused workspace port fails at once rather than being retried.
	if c, err := srv.DialAgent(ctx, agent.Addr(), echoPort+1, false); !tailnet.IsRefused(err) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial a port nobody listens on: %v, want a refusal", err)
	}

	bob := h.StartNode(t, clientID("bob"))
	bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := bob.DialAgent(bctx, agent.Addr(), echoPort, false); !errors.Is(err, tailnet.ErrNotPeer) {
		t.Fatalf("dial alice's agent from bob's client: %v, want ErrNotPeer", err)
	}

	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	hp := host.Addr().(*net.TCPAddr)
	if _, err := srv.DialAgent(hctx, netip.MustParseAddr("127.0.0.1"), uint16(hp.Port), false); !errors.Is(err, tailnet.ErrNotPeer) {
		t.Fatalf("dial a host address: %v, want ErrNotPeer", err)
	}
	// Nothing reached the host listener: a connection would be waiting in
	// its backlog.
	host.(*net.TCPListener).SetDeadline(time.Now())
	if hc, err := host.Accept(); err == nil {
		hc.Close()
		t.Fatal("DialAgent reached the host network")
	}
}
