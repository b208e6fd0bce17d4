package tailnet_test

import (
	"bufio"
	"context"
	"errors"
	"github.com/gatewaydev/coder/internal/testutil"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
	"go4.org/netipx"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/ipn"
	"tailscale.com/net/netmon"
	"tailscale.com/net/wsconn"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/wgengine/filter"
)

// filterAccepts evaluates n's packet filter, as the node received it, for
// TCP from src to n's port.
func filterAccepts(t *testing.T, ctx context.Context, n *tailnet.Node, src netip.Addr, port uint16) bool {
	t.Helper()
	rules := liveFilterRules(t, ctx, n)
	matches, err := filter.MatchesFromFilterRules(rules)
	if err != nil {
		t.Fatalf("parse filter: %v", err)
	}
	var b netipx.IPSetBuilder
	b.Add(n.Addr())
	local, _ := b.IPSet()
	f := filter.New(matches, nil, local, nil, nil, logger.Discard)
	return f.CheckTCP(src, n.Addr(), port) == filter.Accept
}

// liveFilterRules returns the node's current packet filter rules. The
// local API's debug-packet-filter-rules is stale after a delta filter
// update (it reads the netmap without peers, whose rules are only set on
// full netmaps), so read the IPN bus's initial netmap, which carries the
// live rules.
func liveFilterRules(t *testing.T, ctx context.Context, n *tailnet.Node) []tailcfg.FilterRule {
	t.Helper()
	w, err := n.LocalClient().WatchIPNBus(ctx, ipn.NotifyInitialNetMap)
	if err != nil {
		t.Fatalf("watch ipn bus: %v", err)
	}
	defer w.Close()
	for {
		msg, err := w.Next()
		if err != nil {
			t.Fatalf("ipn bus: %v", err)
		}
		if msg.NetMap != nil {
			return msg.NetMap.PacketFilterRules.AsSlice()
		}
	}
}

func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 30*time.Second)

	agentA := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agentA, echoPort)
	srv := h.StartNode(t, serverIdentity)
	cliB := h.StartNode(t, clientID("bob"))
	agentB := h.StartNode(t, agentID("bob", "dev"))
	serveEcho(t, agentB, echoPort)

	// Bob's client works with Bob's agent...
	eventuallyEcho(t, ctx, cliB, agentB.Addr(), echoPort)
	eventuallyEcho(t, ctx, srv, agentA.Addr(), echoPort)
	// ...but never sees Alice's agent.
	if got := peerAddrs(t, ctx, cliB); !slices.Equal(got, []netip.Addr{agentB.Addr()}) {
		t.Errorf("bob's client peers %v, want only bob's agent %v", got, agentB.Addr())
	}
	_, err := cliB.Dial(ctx, agentA.Addr(), echoPort)
	if !errors.Is(err, tailnet.ErrNotPeer) {
		t.Errorf("dial to alice's agent from bob's client: %v, want ErrNotPeer", err)
	}
	if _, err := cliB.Ping(ctx, agentA.Addr()); !errors.Is(err, tailnet.ErrNotPeer) {
		t.Errorf("ping alice's agent from bob's client: %v, want ErrNotPeer", err)
	}
	// The raw packet filter of Alice's agent drops Bob's client too, and
	// admits the server node.
	if filterAccepts(t, ctx, agentA, cliB.Addr(), echoPort) {
		t.Errorf("alice's agent filter accepts bob's client %s", cliB.Addr())
	}
	if !filterAccepts(t, ctx, agentA, srv.Addr(), echoPort) {
		t.Errorf("alice's agent filter drops the server node %s", srv.Addr())
	}
}

func TestBrowserOnly(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 30*time.Second)

	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	srv := h.StartNode(t, serverIdentity)
	cli := h.StartNode(t, clientID("alice"))
	eventuallyEcho(t, ctx, cli, agent.Addr(), echoPort)
	if !filterAccepts(t, ctx, agent, cli.Addr(), echoPort) {
		t.Fatalf("agent filter drops its owner's client before browser-only")
	}

	h.Server().SetBrowserOnly(true)

	// New clients are refused with the exact message.
	_, err := h.TryStartNode(t, clientID("alice"))
	if err == nil || !strings.Contains(err.Error(), "Non-browser connections are disabled for your deployment.") {
		t.Fatalf("client registration in browser-only mode: %v", err)
	}
	// The registered client loses the agent and cannot dial it.
	waitPeers(t, ctx, cli, "empty", func(a []netip.Addr) bool { return len(a) == 0 })
	if _, err := cli.Dial(ctx, agent.Addr(), echoPort); !errors.Is(err, tailnet.ErrNotPeer) {
		t.Errorf("client dial in browser-only mode: %v, want ErrNotPeer", err)
	}
	// The agent's filter drops the client; the server still reaches it.
	var lastRules string
	testutil.Eventually(t, timeLeft(ctx), "the agent's filter to drop the client "+cli.Addr().String()+" in browser-only mode", func() bool {
		logChange(t, &lastRules, "agent filter: %+v (server %s)", liveFilterRules(t, ctx, agent), srv.Addr())
		return !filterAccepts(t, ctx, agent, cli.Addr(), echoPort)
	})
	eventuallyEcho(t, ctx, srv, agent.Addr(), echoPort)

}

func TestRestart(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 60*time.Second)

	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	cli := h.StartNode(t, clientID("alice"))
	srv := h.StartNode(t, serverIdentity)
	eventuallyEcho(t, ctx, cli, agent.Addr(), echoPort)

	h.Restart(t)
	if n := len(h.Server().Nodes()); n != 0 {
		t.Fatalf("new server knows %d nodes before they reconnect", n)
	}
	// The nodes reconnect their map streams with their old node keys and
	// are recognised from the store.
	var lastStats string
	testutil.Eventually(t, timeLeft(ctx), "the nodes to reconnect", func() bool {
		st := h.Server().Stats()
		logChange(t, &lastStats, "stats: %+v", st)
		return st.Online[tailnet.KindAgent] == 1 && st.Online[tailnet.KindClient] == 1 && st.Online[tailnet.KindServer] == 1
	})
	// New connections work through the new server (fresh dials).
	eventuallyEcho(t, ctx, cli, agent.Addr(), echoPort)
	eventuallyEcho(t, ctx, srv, agent.Addr(), echoPort)
	// A node that joins after the restart reaches the old agent too.
	cli2 := h.StartNode(t, clientID("alice"))
	eventuallyEcho(t, ctx, cli2, agent.Addr(), echoPort)
}

func TestBlockDirect(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{BlockDirect: true})
	ctx := ctxT(t, 30*time.Second)

	agent := h.StartNode(t, agentID("alice", "dev"))
	serveEcho(t, agent, echoPort)
	cli := h.StartNode(t, clientID("alice"))
	eventuallyEcho(t, ctx, cli, agent.Addr(), echoPort)
	for i := 0; i < 5; i++ {
		r, err := cli.Ping(ctx, agent.Addr())
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		if r.Direct || r.DERPRegionID != tailnet.DefaultRegionID || r.DERPRegionCode != tailnet.DefaultRegionCode {
			t.Fatalf("ping %d: %+v, want via DERP region %d", i, r, tailnet.DefaultRegionID)
		}
	}
	eventuallyEcho(t, ctx, cli, agent.Addr(), echoPort)
	if st := h.Server().Stats(); st.DERPBytesReceived == 0 || st.DERPClients < 2 {
		t.Errorf("DERP stats %+v: want relayed bytes and 2 clients", st)
	}
}

// derpClient connects to the harness's DERP server with k and returns the
// first message, or the error that ended the connection.
func derpConnect(ctx context.Context, t *testing.T, h *tailnettest.Harness, k key.NodePrivate) (derp.ReceivedMessage, error) {
	t.Helper()
	u, _ := url.Parse(h.URL + "/derp")
	c, err := derphttp.NewClient(k, u.String(), logger.Discard, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c.Recv()
}

func TestDERPAdmission(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 20*time.Second)

	// Unknown key: the relay closes the connection.
	msg, err := derpConnect(ctx, t, h, key.NewNode())
	if err == nil {
		t.Fatalf("unregistered key admitted to DERP: %T %+v", msg, msg)
	}
	if h.Server().Stats().DERPRefused == 0 {
		t.Errorf("refusal not counted")
	}
	// Registered key: admitted (the server greets it with ServerInfo).
	l := h.LiteNode(t, agentID("alice", "derp"))
	msg, err = derpConnect(ctx, t, h, l.NodeKey)
	if err != nil {
		t.Fatalf("registered key refused by DERP: %v", err)
	}
	if _, ok := msg.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first DERP message %T, want ServerInfoMessage", msg)
	}

	// Websockets (--derp-force-websockets, browsers): same admission.
	for _, tc := range []struct {
		name  string
		k     key.NodePrivate
		admit bool
	}{{"websocket registered", l.NodeKey, true}, {"websocket unknown", key.NewNode(), false}} {
		t.Run(tc.name, func(t *testing.T) {
			wsURL := strings.Replace(h.URL, "http://", "ws://", 1) + "/derp"
			wc, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"derp"}})
			if err != nil {
				t.Fatalf("websocket dial: %v", err)
			}
			nc := wsconn.NetConn(ctx, wc, websocket.MessageBinary, wsURL)
			defer nc.Close()
			brw := bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))
			dc, err := derp.NewClient(tc.k, nc, brw, logger.Discard)
			if err != nil {
				t.Fatalf("derp over websocket: %v", err)
			}
			msg, err := dc.Recv()
			_, isInfo := msg.(derp.ServerInfoMessage)
			if tc.admit != (err == nil && isInfo) {
				t.Fatalf("admit=%v, got %T %v", tc.admit, msg, err)
			}
		})
	}
}

func httpGet(t *testing.T, ctx context.Context, u string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestDERPEndpoints(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 10*time.Second)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/derp/probe", 200},
		{"/derp/latency-check", 200},
		{"/generate_204", 204},
		{"/derp", 426}, // upgrade required
		{"/nope", 404},
	} {
		code := httpGet(t, ctx, h.URL+tc.path)
		if code != tc.code {
			t.Errorf("GET %s = %d, want %d", tc.path, code, tc.code)
		}
	}
	_ = tailcfg.DERPMap{}
}
