package tailnet_test

import (
	"testing"
	"time"

	"tailscale.com/derp"

	"github.com/gatewaydev/coder/tailnet/tailnettest"
)

// TestDERPAdmissionBrowserOnlyStoredClient (issue 12): in browser-only mode
// DERP refuses a client node that the server knows only from its store (it
// registered before a restart), not just the clients it holds in memory;
// agents known only from the store still relay.
func TestDERPAdmissionBrowserOnlyStoredClient(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{NoSTUN: true})
	ctx := ctxT(t, 30*time.Second)

	cli := h.LiteNode(t, clientID("alice"))
	ag := h.LiteNode(t, agentID("alice", "dev"))
	cli.Close()
	ag.Close()
	h.Restart(t)
	h.Server().SetBrowserOnly(true)
	if n := len(h.Server().Nodes()); n != 0 {
		t.Fatalf("the restarted server holds %d nodes in memory, want them only in the store", n)
	}

	if msg, err := derpConnect(ctx, t, h, cli.NodeKey); err == nil {
		t.Fatalf("DERP admitted a stored client key in browser-only mode: %T %+v", msg, msg)
	}
	msg, err := derpConnect(ctx, t, h, ag.NodeKey)
	if err != nil {
		t.Fatalf("DERP refused a stored agent key in browser-only mode: %v", err)
	}
	if _, ok := msg.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first DERP message to the agent %T, want ServerInfoMessage", msg)
	}
	if h.Server().Stats().DERPRefused != 1 {
		t.Errorf("DERP refusals %d, want 1", h.Server().Stats().DERPRefused)
	}
}
