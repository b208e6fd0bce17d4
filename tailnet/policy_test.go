package tailnet_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

func peerKeys(peers []*tailcfg.Node) []key.NodePublic {
	var out []key.NodePublic
	for _, p := range peers {
		out = append(out, p.Key)
	}
	slices.SortFunc(out, func(a, b key.NodePublic) int { return a.Compare(b) })
	return out
}

func keysOf(ls ...*tailnettest.LiteNode) []key.NodePublic {
	var out []key.NodePublic
	for _, l := range ls {
		out = append(out, l.NodeKey.Public())
	}
	slices.SortFunc(out, func(a, b key.NodePublic) int { return a.Compare(b) })
	return out
}

// TestVisibility checks the least-privilege peer lists of every kind with
// lite nodes.
func TestVisibility(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 20*time.Second)

	agentA := h.LiteNode(t, agentID("alice", "a1"))
	agentA2 := h.LiteNode(t, agentID("alice", "a2"))
	agentB := h.LiteNode(t, agentID("bob", "b1"))
	cliA := h.LiteNode(t, clientID("alice"))
	cliB := h.LiteNode(t, clientID("bob"))
	srv := h.LiteNode(t, serverIdentity)
	proxy := h.LiteNode(t, tailnet.Identity{Kind: tailnet.KindProxy, ID: "proxy-eu", Name: "eu"})

	tests := []struct {
		name string
		node *tailnettest.LiteNode
		want []key.NodePublic
	}{
		{"alice agent a1", agentA, keysOf(cliA, srv, proxy)},
		{"alice agent a2", agentA2, keysOf(cliA, srv, proxy)},
		{"bob agent", agentB, keysOf(cliB, srv, proxy)},
		{"alice client", cliA, keysOf(agentA, agentA2)},
		{"bob client", cliB, keysOf(agentB)},
		{"server", srv, keysOf(agentA, agentA2, agentB)},
		{"proxy", proxy, keysOf(agentA, agentA2, agentB)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []key.NodePublic
			err := tc.node.WaitFor(ctx, func(_ *tailcfg.Node, peers []*tailcfg.Node) bool {
				got = peerKeys(peers)
				return slices.Equal(got, tc.want)
			})
			if err != nil {
				t.Fatalf("peers %v, want %v: %v", got, tc.want, err)
			}
		})
	}

	// Addresses: agents, servers and proxies by AddrOf; all IPv6 only.
	self := agentA.Self()
	want := netip.PrefixFrom(tailnet.AddrOf(tailnet.KindAgent, "agent-alice-a1"), 128)
	if len(self.Addresses) != 1 || self.Addresses[0] != want {
		t.Errorf("agent addresses %v, want [%v]", self.Addresses, want)
	}
	if a := cliA.Self().Addresses; len(a) != 1 || !a[0].Addr().Is6() || a[0].Addr() == tailnet.AddrOf(tailnet.KindClient, "key-alice") {
		t.Errorf("client addresses %v: want one IPv6 address that also hashes the node key", a)
	}
}

// TestPacketFilters checks the filters the server sends: agents accept TCP
// from the peers they may see only; other kinds accept nothing.
func TestPacketFilters(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 20*time.Second)
	var filters = map[string][]tailcfg.FilterRule{}
	got := make(chan map[string][]tailcfg.FilterRule, 16)
	onMsg := func(res *tailcfg.MapResponse, _ time.Time) {
		if res.PacketFilters != nil {
			got <- res.PacketFilters
		}
	}
	id := agentID("alice", "pf")
	agent, err := tailnettest.NewLiteNode(ctx, h.URL, h.Auth.Add(id), id, onMsg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	cli := h.LiteNode(t, clientID("alice"))
	h.LiteNode(t, clientID("mallory"))
	want := cli.NodeKey.Public()
	if err := agent.WaitFor(ctx, func(_ *tailcfg.Node, peers []*tailcfg.Node) bool {
		return slices.Equal(peerKeys(peers), []key.NodePublic{want})
	}); err != nil {
		t.Fatal(err)
	}
	cliAddr := cli.Self().Addresses[0].Addr().String()
	for {
		select {
		case filters = <-got:
		case <-ctx.Done():
			t.Fatalf("no filter allowing the client %s; last %+v", cliAddr, filters)
		}
		base, ok := filters["base"]
		if ok && len(base) == 1 && slices.Equal(base[0].SrcIPs, []string{cliAddr}) {
			break
		}
	}
}

// TestEndpointPropagation changes an agent's endpoints and checks that the
// peers that may see it receive the change (in about a millisecond on
// loopback; the time is logged, not asserted) and the others do not.
func TestEndpointPropagation(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 20*time.Second)

	agent := h.LiteNode(t, agentID("alice", "ep"))
	srv := h.LiteNode(t, serverIdentity)
	cli := h.LiteNode(t, clientID("alice"))
	other := h.LiteNode(t, clientID("bob"))
	ak := agent.NodeKey.Public()
	for _, l := range []*tailnettest.LiteNode{srv, cli} {
		if err := l.WaitFor(ctx, func(_ *tailcfg.Node, peers []*tailcfg.Node) bool {
			return slices.Contains(peerKeys(peers), ak)
		}); err != nil {
			t.Fatal(err)
		}
	}

	eps := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:41641"), netip.MustParseAddrPort("[::1]:41641")}
	start := time.Now()
	if err := agent.SetEndpoints(ctx, eps, 999); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*tailnettest.LiteNode{"server": srv, "client": cli} {
		err := l.WaitFor(ctx, func(_ *tailcfg.Node, peers []*tailcfg.Node) bool {
			for _, p := range peers {
				if p.Key == ak && slices.Equal(p.Endpoints, eps) && p.HomeDERP == 999 && p.DiscoKey == agent.Disco.Public() {
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Fatalf("%s never saw the new endpoints: %v", name, err)
		}
		t.Logf("%s saw the endpoint change after %v", name, time.Since(start))
	}
	if ps := other.Peers(); len(ps) != 0 {
		t.Errorf("bob's client sees %d peers, want none", len(ps))
	}

	// Going offline reaches peers too.
	agent.Close()
	if err := srv.WaitFor(ctx, func(_ *tailcfg.Node, peers []*tailcfg.Node) bool {
		for _, p := range peers {
			if p.Key == ak && p.Online != nil && !*p.Online {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("server never saw the agent offline: %v", err)
	}
}

// TestDisconnect removes nodes by identity and by owner.
func TestDisconnect(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 20*time.Second)
	aid := agentID("alice", "dc")
	agent := h.LiteNode(t, aid)
	cli := h.LiteNode(t, clientID("alice"))
	srv := h.LiteNode(t, serverIdentity)
	for _, l := range []*tailnettest.LiteNode{cli, srv} {
		if err := l.WaitFor(ctx, func(_ *tailcfg.Node, p []*tailcfg.Node) bool { return len(p) == 1 }); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.Server().Disconnect(ctx, aid); n != 1 {
		t.Fatalf("Disconnect removed %d nodes, want 1", n)
	}
	for _, l := range []*tailnettest.LiteNode{cli, srv} {
		if err := l.WaitFor(ctx, func(_ *tailcfg.Node, p []*tailcfg.Node) bool { return len(p) == 0 }); err != nil {
			t.Fatalf("peer not removed: %v", err)
		}
	}
	if err := agent.WaitFor(ctx, func(*tailcfg.Node, []*tailcfg.Node) bool { return false }); err == nil || ctx.Err() != nil {
		t.Fatalf("agent stream should end after Disconnect, got %v", err)
	}
	if h.Store.Len() != 2 {
		t.Errorf("store has %d nodes, want 2 (client and server)", h.Store.Len())
	}
	if n := h.Server().RevokeOwner(ctx, "alice"); n != 1 {
		t.Errorf("RevokeOwner removed %d nodes, want 1 (the client)", n)
	}
	if nodes := h.Server().Nodes(); len(nodes) != 1 || nodes[0].Identity.Kind != tailnet.KindServer {
		t.Errorf("Nodes() after revoke = %+v, want only the server", nodes)
	}
	_ = context.Background
}
