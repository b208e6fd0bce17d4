package tailnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Paths are the HTTP paths [Server.ServeHTTP] answers. The assembly mounts
// the server on each of them (exact paths, no subtrees).
var Paths = []string{"/key", "/ts2021", "/derp", "/derp/probe", "/derp/latency-check", "/generate_204"}

// Options configure a [Server]. The zero value of every optional field is
// usable.
type Options struct {
	// ControlKey is the Noise private key of the control protocol: the trust
	// root of every node. Required. The caller persists it
	// (key.MachinePrivate has MarshalText/UnmarshalText): running nodes never
	// fetch a new one and fail every handshake after it changes.
	ControlKey key.MachinePrivate
	// DERPKey is the private key of the embedded DERP server. The caller
	// persists it. Zero disables the embedded DERP server: /derp answers 404.
	DERPKey key.NodePrivate
	// Authenticator decides who a registering node is. Required.
	Authenticator Authenticator
	// Store persists node key → identity across restarts. Nil means an
	// in-memory store that does not survive a restart.
	Store NodeStore
	// DERPMap is sent to every node. It can be replaced with
	// [Server.SetDERPMap] (for example once the STUN port is known).
	DERPMap *tailcfg.DERPMap
	// BlockDirect forces every connection through DERP by giving every node
	// the tailcfg.NodeAttrOnlyTCP443 capability
	// (--block-direct-connections).
	BlockDirect bool
	// BrowserOnly starts the server in browser-only mode (--browser-only),
	// as [Server.SetBrowserOnly] would, and first deletes every client node
	// from the Store: clients that registered before a restart into this
	// mode are forgotten, so neither the control protocol nor DERP
	// admission knows them.
	BrowserOnly bool
	// STUNAddrs are UDP addresses the embedded STUN server listens on
	// (production: "0.0.0.0:3478"; tests: "127.0.0.1:0"). Empty means no
	// STUN server. See [Server.STUNAddrs] for the bound addresses.
	STUNAddrs []string
	// Domain is the DNS suffix of node names. Empty means "coder".
	Domain string
	// KeepAlive is the interval of keep-alive messages on map streams.
	// Zero means 50 s (the client's watchdog fires after 120 s).
	KeepAlive time.Duration
	// OfflineTimeout is how long a node may stay without a map stream
	// before it is forgotten (removed from peers and from the Store). Zero
	// means one hour.
	OfflineTimeout time.Duration
	// Logger receives the server's logs; DERP and STUN internals log at
	// Debug. Nil discards.
	Logger *slog.Logger
}

// Server is a Tailscale-protocol control server with embedded DERP relay
// and STUN server for stock tsnet nodes. It implements least-privilege
// visibility between node kinds:
//
//   - a client sees the agents whose OwnerID equals its own OwnerID;
//   - an agent sees server and proxy nodes, and the clients of its owner;
//   - server and proxy nodes see every agent;
//   - nobody else sees anybody (servers do not see each other, users never
//     see other users' nodes).
//
// Packet filters back the visibility: agents accept inbound TCP and ICMP
// from the peers they see; clients, servers and proxies accept no inbound
// connections (replies to their own connections still flow).
//
// A Server owns its goroutines; [Server.Close] stops them and the streams
// and DERP connections it serves.
type Server struct {
	opts    Options
	logger  *slog.Logger
	store   NodeStore
	derp    *derpserver.Server // nil when DERP is disabled
	derpWS  http.Handler
	admit   *http.Server
	stun    *STUNServer
	metrics *metrics

	ctx    context.Context // canceled by Close; ends streams and loops
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops
	hwg    sync.WaitGroup // HTTP handlers in flight

	closeOnce sync.Once

	// mu guards the fields below it.
	mu            sync.RWMutex
	closed        bool
	nodes         map[key.NodePublic]*node
	byAddr        map[netip.Addr]*node
	index         nodeIndex
	conns         map[net.Conn]struct{} // hijacked Noise connections
	browserOnly   bool
	blockDirect   bool
	derpMap       *tailcfg.DERPMap
	configVersion uint64 // bumped when DERP map or capabilities change
}

// New starts a control server: it binds the STUN listeners and the local
// DERP admission endpoint. The caller mounts the server on [Paths] and must
// call [Server.Close].
func New(opts Options) (*Server, error) {
	if opts.ControlKey.IsZero() {
		return nil, errors.New("tailnet: new server: Options.ControlKey is required")
	}
	if opts.Authenticator == nil {
		return nil, errors.New("tailnet: new server: Options.Authenticator is required")
	}
	if opts.Domain == "" {
		opts.Domain = "coder"
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 50 * time.Second
	}
	if opts.OfflineTimeout <= 0 {
		opts.OfflineTimeout = time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:        opts,
		logger:      discardLogger(opts.Logger).With("component", "tailnet"),
		store:       opts.Store,
		ctx:         ctx,
		cancel:      cancel,
		nodes:       make(map[key.NodePublic]*node),
		byAddr:      make(map[netip.Addr]*node),
		index:       newNodeIndex(),
		conns:       make(map[net.Conn]struct{}),
		blockDirect: opts.BlockDirect,
		browserOnly: opts.BrowserOnly,
		derpMap:     opts.DERPMap,
	}
	if s.store == nil {
		s.store = NewMemNodeStore()
	}
	if opts.BrowserOnly {
		if err := s.forgetClients(); err != nil {
			cancel()
			return nil, err
		}
	}
	s.metrics = newMetrics(s)
	if !opts.DERPKey.IsZero() {
		if err := s.startDERP(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if len(opts.STUNAddrs) > 0 {
		st, err := ListenSTUN(opts.STUNAddrs, s.logger)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("tailnet: new server: %w", err)
		}
		s.stun = st
	}
	s.wg.Add(1)
	go s.expireLoop()
	return s, nil
}

// Close stops the server: it ends every map stream, Noise connection and
// DERP connection, stops STUN, and waits for its goroutines and for the
// handlers it is serving to return. Close is idempotent. It does not close
// the NodeStore.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.cancel()
		for _, c := range conns {
			c.Close()
		}
		if s.derp != nil {
			s.derp.Close()
		}
		if s.admit != nil {
			s.admit.Close()
		}
		if s.stun != nil {
			s.stun.Close()
		}
		s.wg.Wait()
		s.hwg.Wait()
	})
	return nil
}

// STUNAddrs returns the addresses the embedded STUN server is bound to, or
// nil without STUN. Use the port in the DERP map ([DERPMapOptions.STUNPort]).
func (s *Server) STUNAddrs() []netip.AddrPort {
	if s.stun == nil {
		return nil
	}
	return s.stun.Addrs()
}

// SetDERPMap replaces the DERP map sent to nodes; open streams receive it
// at once.
func (s *Server) SetDERPMap(dm *tailcfg.DERPMap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.derpMap = dm
	s.configVersion++
	s.wakeAllLocked()
}

// SetBlockDirect turns --block-direct-connections on or off at run time.
func (s *Server) SetBlockDirect(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blockDirect == on {
		return
	}
	s.blockDirect = on
	s.configVersion++
	s.wakeAllLocked()
}

// forgetClients deletes every client node from the store, at the start of
// a server in browser-only mode.
func (s *Server) forgetClients() error {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	n, err := s.store.DeleteKind(ctx, KindClient)
	if err != nil {
		return fmt.Errorf("tailnet: new server: forget client nodes in browser-only mode: %w", err)
	}
	if n > 0 {
		s.logger.Info("browser-only mode: forgot client nodes", "count", n)
	}
	return nil
}

// SetBrowserOnly turns browser-only mode on or off. While on, client nodes
// are refused at registration with [ErrBrowserOnly], removed from every
// peer list, and agents' packet filters drop their addresses. Registered
// clients stay known and come back when it is turned off.
func (s *Server) SetBrowserOnly(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.browserOnly == on {
		return
	}
	s.browserOnly = on
	s.wakeAllLocked()
}

// Disconnect forgets every node with id's Kind and ID (for example when an
// agent token or API key is deleted): peers drop it at once, its map stream
// ends, and it is deleted from the Store so it cannot reconnect without
// registering again (which the Authenticator must then refuse). It returns
// how many nodes were removed.
func (s *Server) Disconnect(ctx context.Context, id Identity) int {
	return s.removeWhere(ctx, func(n *node) bool {
		return n.ident.Kind == id.Kind && n.ident.ID == id.ID
	})
}

// RevokeOwner forgets every agent and client node owned by ownerID (for
// example when the user is deleted or suspended), like [Server.Disconnect].
func (s *Server) RevokeOwner(ctx context.Context, ownerID string) int {
	return s.removeWhere(ctx, func(n *node) bool {
		return ownerID != "" && n.ident.OwnerID == ownerID &&
			(n.ident.Kind == KindAgent || n.ident.Kind == KindClient)
	})
}

func (s *Server) removeWhere(ctx context.Context, match func(*node) bool) int {
	s.mu.Lock()
	var gone []key.NodePublic
	for k, n := range s.nodes {
		if match(n) {
			s.removeNodeLocked(n)
			gone = append(gone, k)
		}
	}
	s.mu.Unlock()
	for _, k := range gone {
		if err := s.store.DeleteNode(ctx, k); err != nil {
			s.logger.Error("delete node from store", "node_key", k.ShortString(), "err", err)
		}
	}
	return len(gone)
}

// NodeInfo is a snapshot of one node for a dashboard.
type NodeInfo struct {
	Identity  Identity
	NodeKey   string
	Addr      netip.Addr
	Hostname  string
	Online    bool
	Endpoints []netip.AddrPort
	HomeDERP  int
	Created   time.Time
	LastSeen  time.Time // zero while online
}

// Nodes returns a snapshot of the nodes known in memory, sorted by kind and
// name. Nodes stored but not reconnected since a restart are not listed.
func (s *Server) Nodes() []NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]NodeInfo, 0, len(s.nodes))
	for _, n := range s.nodes {
		ni := NodeInfo{
			Identity:  n.ident,
			NodeKey:   n.key.String(),
			Addr:      n.addr,
			Hostname:  n.hostname,
			Online:    n.online(),
			Endpoints: slices.Clone(n.endpoints),
			HomeDERP:  n.homeDERP,
			Created:   n.created,
		}
		if !ni.Online {
			ni.LastSeen = n.lastSeen
		}
		out = append(out, ni)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int {
		if a.Identity.Kind != b.Identity.Kind {
			if a.Identity.Kind < b.Identity.Kind {
				return -1
			}
			return 1
		}
		if a.Hostname != b.Hostname {
			if a.Hostname < b.Hostname {
				return -1
			}
			return 1
		}
		return a.Addr.Compare(b.Addr)
	})
	return out
}

// ServeHTTP serves [Paths]: the control protocol (/key, /ts2021) and the
// embedded DERP relay (/derp, also over websockets, /derp/probe,
// /derp/latency-check, /generate_204). Other paths get 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enterHandler() {
		http.Error(w, "tailnet server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.hwg.Done()
	switch r.URL.Path {
	case "/key":
		s.serveKey(w, r)
	case "/ts2021":
		s.serveNoiseUpgrade(w, r)
	case "/derp", "/derp/probe", "/derp/latency-check":
		if s.derp == nil {
			http.NotFound(w, r)
			return
		}
		s.derpWS.ServeHTTP(w, r)
	case "/generate_204":
		derpserver.ServeNoContent(w, r)
	default:
		http.NotFound(w, r)
	}
}

// enterHandler registers an HTTP handler in flight, unless closed.
func (s *Server) enterHandler() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.hwg.Add(1)
	return true
}

// expireLoop forgets nodes that have been offline longer than
// OfflineTimeout.
func (s *Server) expireLoop() {
	defer s.wg.Done()
	interval := min(s.opts.OfflineTimeout/4, time.Minute)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-s.opts.OfflineTimeout)
			s.removeWhere(s.ctx, func(n *node) bool {
				return !n.online() && n.lastSeen.Before(cutoff)
			})
		}
	}
}
