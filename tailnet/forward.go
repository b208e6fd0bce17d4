package tailnet

import (
	"net"
	"net/netip"
)

// TCPFallback decides what to do with an inbound TCP flow to a port of the
// node that no [Node.Listen] listener serves. It returns the function that
// serves the accepted connection (and must close it), or nil to refuse the
// flow.
type TCPFallback func(src, dst netip.AddrPort) func(net.Conn)

// HandleTCPFallback registers f for inbound TCP flows to this node's own
// tailnet addresses on ports without a listener (agents forward them to
// their localhost). Flows to other destinations are refused. The returned
// function unregisters f; listeners always take precedence over f.
func (n *Node) HandleTCPFallback(f TCPFallback) (unregister func()) {
	return n.ts.RegisterFallbackTCPHandler(func(src, dst netip.AddrPort) (func(net.Conn), bool) {
		if !n.isSelf(dst.Addr()) {
			return nil, false
		}
		h := f(src, dst)
		return h, h != nil
	})
}

// isSelf tells whether a is one of the node's own tailnet addresses.
func (n *Node) isSelf(a netip.Addr) bool {
	a = a.Unmap()
	if a == n.addr {
		return true
	}
	ip4, ip6 := n.ts.TailscaleIPs()
	return a == ip4 || a == ip6
}
