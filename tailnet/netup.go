package tailnet

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/client/local"
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

// NotUpError is a node that did not come up before its context ended:
// tsnet itself only says "context deadline exceeded". It carries what
// tailscale reported at that moment, so that logs, the dashboard and the
// CLI can say why.
type NotUpError struct {
	// NoRoutableAddress is true when tailscale saw no interface with an
	// address other than loopback or link-local.
	NoRoutableAddress bool
	// State is tailscale's backend state ("NeedsLogin", "Starting", ...).
	State string
	// Health are tailscale's health warnings, as sentences.
	Health []string
	// Err is tsnet's error.
	Err error
}

// Why says in words why the node did not come up, from what tailscale
// reported (no raw error text).
func (e *NotUpError) Why() string {
	var why []string
	if e.NoRoutableAddress {
		why = append(why, "tailscale sees no network interface with an address other than loopback or link-local")
	}
	why = append(why, e.Health...)
	if len(why) == 0 {
		why = append(why, "it did not hear back from the coordination server at the access URL in time")
	}
	if e.State != "" {
		why = append(why, "tailscale's state: "+e.State)
	}
	return strings.Join(why, "; ")
}

func (e *NotUpError) Error() string {
	return "the node did not come up (" + e.Why() + "): " + e.Err.Error()
}

func (e *NotUpError) Unwrap() error { return e.Err }

// notUpError gathers a [NotUpError] for a node whose Up failed with upErr
// after its context ended.
func (n *Node) notUpError(upErr error) error {
	e := &NotUpError{Err: upErr}
	if nm, ok := n.ts.Sys().NetMon.GetOK(); ok {
		if st := nm.InterfaceState(); st != nil && !st.AnyInterfaceUp() {
			e.NoRoutableAddress = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if lc, err := n.localClient(); err == nil {
		if st, err := lc.Status(ctx); err == nil {
			e.State = st.BackendState
			for _, h := range st.Health {
				if h = strings.TrimSpace(h); h != "" {
					e.Health = append(e.Health, h)
				}
			}
		}
	}
	return e
}

// localClient is a client of the node's in-memory local API whose
// connections the node closes in Close, after tsnet has shut down: tsnet's
// Shutdown of that API gives up on a request still running after 5 s, and
// the connection it leaves open, once idle, would block both of its ends
// on the in-memory pipe for ever.
func (n *Node) localClient() (*local.Client, error) {
	shared, err := n.ts.LocalClient()
	if err != nil || shared.Dial == nil {
		return shared, err
	}
	return &local.Client{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := shared.Dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return n.localConns.add(c), nil
	}}, nil
}

// localConns are the open connections of [Node.localClient]'s clients.
type localConns struct {
	mu sync.Mutex
	m  map[*localConn]struct{}
}

func (lc *localConns) add(c net.Conn) net.Conn {
	t := &localConn{Conn: c, of: lc}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.m == nil {
		lc.m = map[*localConn]struct{}{}
	}
	lc.m[t] = struct{}{}
	return t
}

// closeAll closes every connection still open.
func (lc *localConns) closeAll() {
	lc.mu.Lock()
	open := lc.m
	lc.m = nil
	lc.mu.Unlock()
	for c := range open {
		c.Conn.Close()
	}
}

type localConn struct {
	net.Conn
	of *localConns
}

func (c *localConn) Close() error {
	c.of.mu.Lock()
	delete(c.of.m, c)
	c.of.mu.Unlock()
	return c.Conn.Close()
}
