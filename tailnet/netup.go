package tailnet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"tailscale.com/net/netmon"
)

// networkUpEvery is how often a node tells its magicsock that the network
// is up (see [Node.keepNetworkUp]).
const networkUpEvery = 2 * time.Second

// keepNetworkUp undoes what tailscale does when a link change leaves no
// interface with an address other than loopback or link-local (the last
// routable address of a host removed, say): it marks magicsock's network
// down, which closes every DERP connection, and nothing opens them again
// until a routable address comes back. Our peers and DERP are reached
// through the access URL, which may still work over loopback or a
// link-local network, so once the node has seen the network up, every
// networkUpEvery until stop closes it tells magicsock the network is up
// (a no-op when it is), which reopens DERP. TS_ASSUME_NETWORK_UP_FOR_TEST
// (set by [ConfigureProcess]) keeps direct sends and the control client
// going; it does not reopen DERP.
//
// A node that never saw a routable address is left alone: its magicsock
// starts "down" and stays so, and DERP works regardless. Forcing it "up"
// would make every later link change close DERP for up to networkUpEvery.
func (n *Node) keepNetworkUp(stop <-chan struct{}) {
	ms, ok := n.ts.Sys().MagicSock.GetOK()
	if !ok {
		return
	}
	nm, ok := n.ts.Sys().NetMon.GetOK()
	if !ok {
		return
	}
	var sawUp atomic.Bool
	unregister := nm.RegisterChangeCallback(func(d *netmon.ChangeDelta) {
		if d.AnyInterfaceUp() {
			sawUp.Store(true)
		}
	})
	defer unregister()
	if st := nm.InterfaceState(); st != nil && st.AnyInterfaceUp() {
		sawUp.Store(true)
	}
	t := time.NewTicker(networkUpEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if sawUp.Load() {
				ms.SetNetworkUp(true)
			}
		}
	}
}

// notUpError explains a node that did not come up before its context
// ended: tsnet only says "context deadline exceeded". It adds what
// tailscale itself reports (its health warnings: no network, the control
// server unreachable, ...) and whether tailscale sees a usable network,
// so that the logs, the dashboard and the CLI can say why.
func (n *Node) notUpError(upErr error) error {
	var why []string
	if nm, ok := n.ts.Sys().NetMon.GetOK(); ok {
		if st := nm.InterfaceState(); st != nil && !st.AnyInterfaceUp() {
			why = append(why, "tailscale sees no network interface with an address other than loopback or link-local")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if lc, err := n.ts.LocalClient(); err == nil {
		if st, err := lc.Status(ctx); err == nil {
			why = append(why, "state "+st.BackendState)
			for _, h := range st.Health {
				why = append(why, strings.TrimSpace(h))
			}
		}
	}
	msg := "the node did not come up"
	if errors.Is(upErr, context.DeadlineExceeded) {
		msg = "the node did not come up in time"
	}
	if len(why) > 0 {
		msg += " (tailscale reports: " + strings.Join(why, "; ") + ")"
	}
	return fmt.Errorf("%s: %w", msg, upErr)
}
