package tailnet

import (
	"context"
	"errors"
	"fmt"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"tailscale.com/wgengine/netstack"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/ipn"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
)

// ProcessOptions are the process-wide tailscale settings of
// [ConfigureProcess].
type ProcessOptions struct {
	// ControlURL is the control server the process's nodes use. With an
	// http:// URL the DERP clients speak plain HTTP too
	// (TS_DEBUG_USE_DERP_HTTP), because derphttp always dials https://
	// otherwise.
	ControlURL string
	// DERPForceWebsockets makes DERP clients connect over websockets
	// (--derp-force-websockets, TS_DEBUG_DERP_WS_CLIENT). Upstream only
	// compiles the websocket DERP client with the build tag
	// ts_debug_websockets; without it ConfigureProcess returns
	// [ErrNoWebsocketDERP].
	DERPForceWebsockets bool
}

// ErrNoWebsocketDERP is returned by [ConfigureProcess] when websocket DERP
// is asked for in a binary built without the ts_debug_websockets tag.
var ErrNoWebsocketDERP = errors.New("tailnet: websocket DERP needs a binary built with -tags ts_debug_websockets")

// ConfigureProcess sets tailscale's process-wide knobs. Call it once from
// main (cmd/coder), before the first node starts. They are global because
// tailscale reads them through envknob, mostly into package variables
// registered at init, so they cannot differ between nodes of one process:
//
//   - TS_NO_LOGS_NO_SUPPORT=true: tsnet would otherwise upload its logs to
//     log.tailscale.com; with it the logtail transport is a no-op.
//   - TS_DISABLE_PORTMAPPER=1: tsnet links net/portmapper, which probes the
//     LAN gateway with NAT-PMP, PCP and UPnP.
//   - TS_DEBUG_USE_DERP_HTTP=1, only for an http:// control URL: DERP over
//     plain HTTP on the same port as the control server.
//   - TS_DEBUG_DERP_WS_CLIENT=1, only with DERPForceWebsockets.
//   - TS_ASSUME_NETWORK_UP_FOR_TEST=1: tailscale counts the network as
//     down when no interface has an address other than loopback or
//     link-local (an air-gapped host with no default route, or one whose
//     only network is 127.0.0.1 or 169.254.0.0/16), and then pauses the
//     node's control client for ever: the node never comes up although
//     the control server is right there. Our nodes only ever talk to the
//     access URL, so they do not need tailscale's idea of "online". (The
//     knob's name says "test", but it is the one tailscale reads for
//     this; TestAirgapped runs the binary in such namespaces to catch a
//     tailscale upgrade that changes it.)
//
// It is not safe to call concurrently with running nodes.
func ConfigureProcess(o ProcessOptions) error {
	if o.DERPForceWebsockets && !websocketDERPCompiled {
		return ErrNoWebsocketDERP
	}
	envknob.Setenv("TS_NO_LOGS_NO_SUPPORT", "true")
	envknob.Setenv("TS_DISABLE_PORTMAPPER", "1")
	envknob.Setenv("TS_ASSUME_NETWORK_UP_FOR_TEST", "1")
	if o.ControlURL != "" {
		u, err := url.Parse(o.ControlURL)
		if err != nil {
			return fmt.Errorf("tailnet: configure process: parse control URL: %w", err)
		}
		envknob.Setenv("TS_DEBUG_USE_DERP_HTTP", strconv.FormatBool(u.Scheme == "http"))
	}
	envknob.Setenv("TS_DEBUG_DERP_WS_CLIENT", strconv.FormatBool(o.DERPForceWebsockets))
	return nil
}

// NodeOptions configure [NewNode].
type NodeOptions struct {
	// Dir is the node's state directory; tsnet writes small files there even
	// with an in-memory state store. Each node needs its own. Empty means a
	// temporary directory removed by Close.
	Dir string
	// Hostname is the node's name; empty means the control server picks one.
	Hostname string
	// ControlURL is the control server's URL (the access URL). Required.
	ControlURL string
	// AuthKey authenticates the node: the agent token, the user's API key,
	// or the server/proxy token, as the control server's Authenticator
	// expects. Required.
	AuthKey string
	// Port is the UDP port for WireGuard; 0 picks a free one.
	Port uint16
	// Persistent keeps the node registered after Close. The default
	// (false) is an ephemeral node that logs out on Close.
	Persistent bool
	// Logger receives tsnet's logs at Debug. Nil discards them.
	Logger *slog.Logger
	// TCPBufferMax caps the receive and send buffers of each TCP
	// connection of the node's userspace network stack, in bytes: the
	// memory budget of a connection at full speed. Zero keeps tailscale's
	// defaults (up to 8 MiB receive and 6 MiB send per connection).
	TCPBufferMax int
}

// minTCPBuffer is the smallest TCPBufferMax that still moves data well on a
// LAN.
const minTCPBuffer = 64 << 10

// Node is a tsnet node on the tailnet: an agent, the server's in-process
// node, a CLI client or a proxy. Its state lives in memory.
type Node struct {
	ts      *tsnet.Server
	lc      *local.Client
	addr    netip.Addr
	tempDir string
	once    sync.Once
	err     error
	// stop ends keepNetworkUp; done is closed when it has returned.
	stop chan struct{}
	done chan struct{}
	// localConns are the local API connections Close ends.
	localConns localConns
}

// NewNode starts a node and brings it up with ctx: it returns once the
// control server accepted the node, or with the control server's refusal
// (an error wrapping [ErrBrowserOnly] in browser-only mode). The caller
// must Close the node.
// Up does not prove DERP or peer connectivity; use [Node.WaitForPeer].
func NewNode(ctx context.Context, o NodeOptions) (*Node, error) {
	if o.ControlURL == "" {
		return nil, errors.New("tailnet: new node: ControlURL is required")
	}
	if o.AuthKey == "" {
		return nil, errors.New("tailnet: new node: AuthKey is required")
	}
	n := &Node{}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "coder-tailnet-")
		if err != nil {
			return nil, fmt.Errorf("tailnet: new node: %w", err)
		}
		dir, n.tempDir = d, d
	}
	logf := logfFromSlog(discardLogger(o.Logger).With("component", "tsnet"))
	n.ts = &tsnet.Server{
		Dir:        dir,
		Store:      new(mem.Store),
		Hostname:   o.Hostname,
		UserLogf:   logf,
		Logf:       logf,
		Ephemeral:  !o.Persistent,
		AuthKey:    o.AuthKey,
		ControlURL: o.ControlURL,
		Port:       o.Port,
		// ClientSecret, ClientID, IDToken, Audience, AdvertiseTags, Tun
		// and RunWebClient stay zero: OAuth, workload identity, tags, a
		// TUN device and the web client are not used.
	}
	st, err := n.ts.Up(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = n.notUpError(err)
		}
		n.Close()
		return nil, fmt.Errorf("tailnet: new node: %w", registrationError(err))
	}
	n.stop, n.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(n.done)
		n.keepNetworkUp(n.stop)
	}()
	for _, a := range st.TailscaleIPs {
		if a.Is6() {
			n.addr = a
		}
	}
	if !n.addr.IsValid() && len(st.TailscaleIPs) > 0 {
		n.addr = st.TailscaleIPs[0]
	}
	n.lc, err = n.localClient()
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("tailnet: new node: %w", err)
	}
	if o.TCPBufferMax > 0 {
		if err := n.capTCPBuffers(max(o.TCPBufferMax, minTCPBuffer)); err != nil {
			n.Close()
			return nil, fmt.Errorf("tailnet: new node: %w", err)
		}
	}
	return n, nil
}

// registrationError maps the control server's refusal, which tsnet
// reports as text, back to [ErrBrowserOnly]: the one place that matches
// the RegisterResponse.Error the server writes from that sentinel.
func registrationError(err error) error {
	if strings.Contains(err.Error(), ErrBrowserOnly.Error()) {
		return ErrBrowserOnly
	}
	return err
}

// capTCPBuffers sets the range of the userspace stack's TCP buffers, so
// that a fast stream holds at most max bytes each way (tailscale's
// auto-tuning grows them up to 8 MiB otherwise).
func (n *Node) capTCPBuffers(max int) error {
	impl, ok := n.ts.Sys().Netstack.Get().(*netstack.Impl)
	if !ok {
		return errors.New("cap tcp buffers: the node has no userspace network stack")
	}
	def := min(max, 128<<10)
	if err := impl.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: def, Max: max}); err != nil {
		return fmt.Errorf("cap tcp receive buffers: %v", err)
	}
	if err := impl.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: def, Max: max}); err != nil {
		return fmt.Errorf("cap tcp send buffers: %v", err)
	}
	return nil
}

// Addr returns the node's tailnet address.
func (n *Node) Addr() netip.Addr { return n.addr }

// ErrNotPeer is returned by [Node.Dial] and [Node.Ping] for an address that
// is not a peer in the node's network map.
var ErrNotPeer = errors.New("tailnet: address is not a peer of this node")

// checkPeer refuses addresses that are not peers. This matters for
// security: tsnet dials an address that is not in the netmap on the host
// network instead.
func (n *Node) checkPeer(ctx context.Context, addr netip.Addr) error {
	if addr == n.addr {
		return nil
	}
	if _, err := n.lc.WhoIs(ctx, addr.String()); err != nil {
		if errors.Is(err, local.ErrPeerNotFound) {
			return fmt.Errorf("%s: %w", addr, ErrNotPeer)
		}
		return err
	}
	return nil
}

// Dial opens a TCP connection to port on addr over the tailnet. It first
// checks that addr is a peer in the node's netmap and returns an error
// wrapping [ErrNotPeer] otherwise. The caller must close the connection.
func (n *Node) Dial(ctx context.Context, addr netip.Addr, port uint16) (net.Conn, error) {
	if err := n.checkPeer(ctx, addr); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c, err := n.ts.Dial(ctx, "tcp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

// DialService is Dial for a port the peer serves as soon as it has joined
// the tailnet (an agent's SSH, terminal or speedtest port). A peer that
// joined a moment ago answers pings before it listens, so while it refuses
// the connection, DialService tries again every 50 ms, for up to
// serviceStartWait or until ctx ends.
func (n *Node) DialService(ctx context.Context, addr netip.Addr, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, serviceStartWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var refused error
	for {
		c, err := n.Dial(ctx, addr, port)
		switch {
		case err == nil:
			return c, nil
		case IsRefused(err):
			refused = err
		case ctx.Err() != nil && refused != nil:
			return nil, refused // time ran out mid-attempt: the refusal says why
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, refused
		case <-tick.C:
		}
	}
}

// serviceStartWait bounds how long DialService waits for a refused port.
const serviceStartWait = 15 * time.Second

// Listen listens for TCP connections on port of the node's tailnet
// address. The caller must close the listener.
func (n *Node) Listen(port uint16) (net.Listener, error) {
	ln, err := n.ts.Listen("tcp", ":"+strconv.Itoa(int(port)))
	if err != nil {
		return nil, fmt.Errorf("tailnet: listen %d: %w", port, err)
	}
	return ln, nil
}

// PingResult is the outcome of a disco ping.
type PingResult struct {
	// Latency is the round-trip time.
	Latency time.Duration `json:"latency"`
	// Direct is true when the pong came over a direct UDP path.
	Direct bool `json:"direct"`
	// Endpoint is the peer's ip:port for a direct path.
	Endpoint string `json:"endpoint,omitempty"`
	// DERPRegionID and DERPRegionCode name the relay for a DERP path.
	DERPRegionID   int    `json:"derp_region_id,omitempty"`
	DERPRegionCode string `json:"derp_region_code,omitempty"`
}

// Ping sends one disco ping to addr (which must be a peer) and reports the
// path it took. Repeated pings let the path upgrade to direct.
func (n *Node) Ping(ctx context.Context, addr netip.Addr) (PingResult, error) {
	if err := n.checkPeer(ctx, addr); err != nil {
		return PingResult{}, fmt.Errorf("ping %s: %w", addr, err)
	}
	r, err := n.lc.Ping(ctx, addr, tailcfg.PingDisco)
	if err != nil {
		return PingResult{}, fmt.Errorf("ping %s: %w", addr, err)
	}
	if r.Err != "" {
		return PingResult{}, fmt.Errorf("ping %s: %s", addr, r.Err)
	}
	return PingResult{
		Latency:        time.Duration(r.LatencySeconds * float64(time.Second)),
		Direct:         r.Endpoint != "" && r.DERPRegionID == 0,
		Endpoint:       r.Endpoint,
		DERPRegionID:   r.DERPRegionID,
		DERPRegionCode: r.DERPRegionCode,
	}, nil
}

// AwaitReachable waits until addr answers a disco ping, or ctx ends. Call
// it before the first dial to a peer that may have just joined: a WireGuard
// handshake that reaches a node which does not know the sender yet is
// dropped, and WireGuard sends the next one only 5 s later. Disco pings
// need no handshake and are answered only once both sides know each other,
// so the handshake that follows succeeds at once.
//
// A ping sent before the peer knows us is dropped too. Rather than wait
// out each ping's timeout before the next (which cost a quarter second on
// loopback whenever the first ping was early), it starts a new ping every
// awaitPingEvery while earlier ones are still waiting, up to
// awaitPingsInFlight at once, each allowed awaitPingTimeout: a slow path
// still gets its answer, a fresh peer is found within a few milliseconds
// of knowing us.
func (n *Node) AwaitReachable(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, awaitPingsInFlight)
	inFlight := 0
	ping := func() {
		inFlight++
		go func() {
			pctx, cancel := context.WithTimeout(ctx, awaitPingTimeout)
			defer cancel()
			_, err := n.Ping(pctx, addr)
			results <- err
		}()
	}
	t := time.NewTicker(awaitPingEvery)
	defer t.Stop()
	ping()
	var last error
	for {
		select {
		case err := <-results:
			inFlight--
			if err == nil {
				return nil
			}
			last = err
		case <-t.C:
			if inFlight < awaitPingsInFlight {
				ping()
			}
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("await %s: %w", addr, last)
		}
	}
}

const (
	awaitPingEvery     = 25 * time.Millisecond
	awaitPingTimeout   = 2 * time.Second
	awaitPingsInFlight = 16
)

// IsRefused tells whether err from [Node.Dial] means the peer answered
// with a reset: nobody listens on that port. The userspace network stack
// reports it only as text.
func IsRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), (&tcpip.ErrConnectionRefused{}).String())
}

// Peer is a peer in the node's network map.
type Peer struct {
	Addr     netip.Addr
	Hostname string
	Online   bool
	HomeDERP int
	// Endpoints are the peer's known UDP endpoints.
	Endpoints []netip.AddrPort
}

// Peers returns the node's current peers.
func (n *Node) Peers(ctx context.Context) ([]Peer, error) {
	st, err := n.lc.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("tailnet: peers: %w", err)
	}
	var out []Peer
	for _, p := range st.Peer {
		var addr netip.Addr
		if len(p.TailscaleIPs) > 0 {
			addr = p.TailscaleIPs[0]
		}
		pr := Peer{Addr: addr, Hostname: p.HostName, Online: p.Online}
		out = append(out, pr)
	}
	nm, err := n.netmapPeers(ctx)
	if err == nil {
		for i := range out {
			if d, ok := nm[out[i].Addr]; ok {
				out[i].HomeDERP = d.HomeDERP
				out[i].Endpoints = d.Endpoints
			}
		}
	}
	return out, nil
}

// netmapPeers reads home DERP and endpoints of peers from the node's
// current network map.
func (n *Node) netmapPeers(ctx context.Context) (map[netip.Addr]Peer, error) {
	w, err := n.lc.WatchIPNBus(ctx, ipn.NotifyInitialNetMap)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for {
		msg, err := w.Next()
		if err != nil {
			return nil, err
		}
		if msg.NetMap == nil {
			continue
		}
		out := map[netip.Addr]Peer{}
		for _, p := range msg.NetMap.Peers {
			if p.Addresses().Len() == 0 {
				continue
			}
			eps := make([]netip.AddrPort, 0, p.Endpoints().Len())
			for _, e := range p.Endpoints().All() {
				eps = append(eps, e)
			}
			out[p.Addresses().At(0).Addr()] = Peer{HomeDERP: p.HomeDERP(), Endpoints: eps}
		}
		return out, nil
	}
}

// DialAgent is the one way to reach a port of an agent (or any peer) over
// the tailnet, for the server's node and the CLI's alike. It waits up to
// [ReachTimeout] (or until ctx ends) for addr to be reachable, as
// [Node.Reach] does, then dials port with [Node.Dial], which refuses an
// address that is not a peer in the node's netmap (tsnet would dial it on
// the host network). With service set, port is one the peer serves as
// soon as it has joined (an agent's SSH, terminal or speedtest port) and
// a refusal is retried as [Node.DialService] does; a workspace port that
// nothing listens on is refused at once. The caller must close the
// connection.
func (n *Node) DialAgent(ctx context.Context, addr netip.Addr, port uint16, service bool) (net.Conn, error) {
	rctx, cancel := context.WithTimeout(ctx, ReachTimeout)
	err := n.Reach(rctx, addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dial agent %s: %w", addr, err)
	}
	if service {
		return n.DialService(ctx, addr, port)
	}
	return n.Dial(ctx, addr, port)
}

// ReachTimeout bounds how long [Node.DialAgent] waits for a peer to be
// reachable.
const ReachTimeout = 15 * time.Second

// Reach waits until addr is an online peer in the node's netmap
// ([Node.WaitForPeer]) and answers a disco ping ([Node.AwaitReachable]),
// or ctx ends. When ctx ends first and addr is not a peer at all, the
// error wraps [ErrNotPeer].
func (n *Node) Reach(ctx context.Context, addr netip.Addr) error {
	err := n.WaitForPeer(ctx, addr)
	if err == nil {
		err = n.AwaitReachable(ctx, addr)
	}
	if err == nil {
		return nil
	}
	// Say whether the peer is offline or not ours to see at all.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if perr := n.checkPeer(cctx, addr); errors.Is(perr, ErrNotPeer) {
		return fmt.Errorf("reach: %w", perr)
	}
	return err
}

// WaitForPeer polls until addr is an online peer in the node's netmap, or
// ctx ends.
func (n *Node) WaitForPeer(ctx context.Context, addr netip.Addr) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := n.lc.Status(ctx)
		if err == nil {
			for _, p := range st.Peer {
				for _, a := range p.TailscaleIPs {
					if a == addr && p.Online {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tailnet: wait for peer %s: %w", addr, ctx.Err())
		case <-t.C:
		}
	}
}

// LocalClient returns the node's tsnet local API client, for status and
// debugging.
func (n *Node) LocalClient() *local.Client { return n.lc }

// Close stops the node; an ephemeral node logs out first. It is
// idempotent and returns when tsnet has shut down.
func (n *Node) Close() error {
	n.once.Do(func() {
		if n.stop != nil {
			close(n.stop)
			<-n.done
		}
		if n.ts != nil {
			if err := n.ts.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				n.err = err
			}
		}
		n.localConns.closeAll()
		if n.tempDir != "" {
			os.RemoveAll(n.tempDir)
		}
	})
	return n.err
}
