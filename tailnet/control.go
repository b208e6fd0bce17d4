package tailnet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"tailscale.com/control/controlhttp/controlhttpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/util/zstdframe"
)

// maxRequestBody bounds register and map request bodies.
const maxRequestBody = 1 << 20

// node is a registered node. Fields are guarded by Server.mu.
type node struct {
	key      key.NodePublic
	machine  key.MachinePublic
	ident    Identity
	id       tailcfg.NodeID
	addr     netip.Addr
	hostname string
	created  time.Time

	disco     key.DiscoPublic
	endpoints []netip.AddrPort
	homeDERP  int
	hostinfo  *tailcfg.Hostinfo
	capVer    tailcfg.CapabilityVersion
	lastSeen  time.Time

	sess    *session // current map stream, nil when offline
	version uint64   // bumped on every change peers can see
}

func (n *node) online() bool { return n.sess != nil }

// session is one streaming map request.
type session struct {
	n    *node
	wake chan struct{} // capacity 1: a pending update
	done chan struct{} // closed when replaced or removed
}

func (ss *session) notify() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// sessionState is what a stream has sent so far; owned by its goroutine.
type sessionState struct {
	first         bool
	selfVersion   uint64
	configVersion uint64
	peers         map[tailcfg.NodeID]uint64
	filter        string
}

type peerKeyContextKey struct{}

func (s *Server) serveKey(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "GET required", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&tailcfg.OverTLSPublicKeyResponse{
		PublicKey: s.opts.ControlKey.Public(),
	})
}

func (s *Server) serveNoiseUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		http.Error(w, "POST required", http.StatusMethodNotAllowed)
		return
	}
	conn, err := controlhttpserver.AcceptHTTP(r.Context(), w, r, s.opts.ControlKey, nil)
	if err != nil {
		s.logger.Debug("noise upgrade", "remote_addr", r.RemoteAddr, "err", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	ctx := context.WithValue(s.ctx, peerKeyContextKey{}, conn.Peer())
	mux := http.HandlerFunc(s.serveMachine)
	new(http2.Server).ServeConn(conn, &http2.ServeConnOpts{
		Context:    ctx,
		BaseConfig: &http.Server{Handler: mux},
	})
}

func (s *Server) serveMachine(w http.ResponseWriter, r *http.Request) {
	mkey, ok := r.Context().Value(peerKeyContextKey{}).(key.MachinePublic)
	if !ok {
		http.Error(w, "no machine key", http.StatusInternalServerError)
		return
	}
	switch r.URL.Path {
	case "/machine/register":
		s.serveRegister(w, r, mkey)
	case "/machine/map":
		s.serveMap(w, r, mkey)
	default:
		io.Copy(io.Discard, io.LimitReader(r.Body, maxRequestBody))
		w.WriteHeader(http.StatusNoContent)
	}
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRequestBody {
		return nil, errors.New("request body too large")
	}
	return b, nil
}

func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, "bad register request", http.StatusBadRequest)
		return
	}
	res, code := s.register(r.Context(), mkey, body)
	if code != http.StatusOK {
		http.Error(w, http.StatusText(code), code)
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		http.Error(w, "encode register response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// register handles a RegisterRequest body from machine mkey. It returns the
// response to send, or a non-200 status for malformed requests.
func (s *Server) register(ctx context.Context, mkey key.MachinePublic, body []byte) (*tailcfg.RegisterResponse, int) {
	var req tailcfg.RegisterRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, http.StatusBadRequest
	}
	if req.NodeKey.IsZero() || mkey.IsZero() {
		return nil, http.StatusBadRequest
	}
	log := s.logger.With("node_key", req.NodeKey.ShortString())

	// Logout: an ephemeral tsnet node sends an expiry in the past on Close.
	if !req.Expiry.IsZero() && req.Expiry.Before(time.Now()) {
		s.mu.Lock()
		n := s.nodes[req.NodeKey]
		if n != nil && n.machine == mkey {
			s.removeNodeLocked(n)
		}
		s.mu.Unlock()
		if n != nil && n.machine == mkey {
			if err := s.store.DeleteNode(ctx, req.NodeKey); err != nil {
				log.Error("delete node from store", "err", err)
			}
			log.Debug("node logged out", "kind", n.ident.Kind, "id", n.ident.ID)
		}
		return &tailcfg.RegisterResponse{}, http.StatusOK
	}

	authKey := ""
	if req.Auth != nil {
		authKey = req.Auth.AuthKey
	}
	if authKey == "" {
		// A known node re-registering without a key (after a restart of
		// the node's control client) keeps its identity.
		if sn, err := s.lookupStored(ctx, req.NodeKey); err == nil && sn.MachineKey == mkey {
			return s.admitNode(ctx, mkey, &req, sn.Identity, sn.Created)
		}
		return &tailcfg.RegisterResponse{Error: "An auth key is required to join this tailnet."}, http.StatusOK
	}
	ident, err := s.opts.Authenticator.Authenticate(ctx, authKey)
	if errors.Is(err, ErrBrowserOnly) {
		return &tailcfg.RegisterResponse{Error: ErrBrowserOnly.Error()}, http.StatusOK
	}
	if err != nil {
		log.Info("registration refused", "err", err)
		return &tailcfg.RegisterResponse{Error: "The auth key was refused: check that it is valid and not expired."}, http.StatusOK
	}
	if !ident.Kind.Valid() || ident.ID == "" {
		log.Error("authenticator returned an invalid identity", "kind", ident.Kind, "id", ident.ID)
		return &tailcfg.RegisterResponse{Error: "The auth key was refused: check that it is valid and not expired."}, http.StatusOK
	}
	return s.admitNode(ctx, mkey, &req, ident, time.Now())
}

// lookupStored finds a node in memory or in the store.
func (s *Server) lookupStored(ctx context.Context, nk key.NodePublic) (StoredNode, error) {
	s.mu.RLock()
	n := s.nodes[nk]
	s.mu.RUnlock()
	if n != nil {
		return StoredNode{Identity: n.ident, MachineKey: n.machine, Hostname: n.hostname, Created: n.created}, nil
	}
	return s.store.GetNode(ctx, nk)
}

func (s *Server) admitNode(ctx context.Context, mkey key.MachinePublic, req *tailcfg.RegisterRequest, ident Identity, created time.Time) (*tailcfg.RegisterResponse, int) {
	s.mu.RLock()
	browserOnly := s.browserOnly
	existing := s.nodes[req.NodeKey]
	s.mu.RUnlock()
	if browserOnly && ident.Kind == KindClient {
		return &tailcfg.RegisterResponse{Error: ErrBrowserOnly.Error()}, http.StatusOK
	}
	if existing != nil && existing.machine != mkey {
		return &tailcfg.RegisterResponse{Error: "This node key is registered to another machine."}, http.StatusOK
	}
	hostname := ident.Name
	if hostname == "" && req.Hostinfo != nil {
		hostname = req.Hostinfo.Hostname
	}
	hostname = sanitizeHostname(hostname, ident)
	sn := StoredNode{Identity: ident, MachineKey: mkey, Hostname: hostname, Created: created}
	if err := s.store.PutNode(ctx, req.NodeKey, sn); err != nil {
		if ctx.Err() != nil {
			// The node hung up (or the server is stopping) mid-registration.
			s.logger.Debug("store node: registration abandoned", "node_key", req.NodeKey.ShortString(), "err", err)
		} else {
			s.logger.Error("store node", "node_key", req.NodeKey.ShortString(), "err", err)
		}
		return &tailcfg.RegisterResponse{Error: "The server could not register this node; try again."}, http.StatusOK
	}
	var evicted []key.NodePublic
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, http.StatusServiceUnavailable
	}
	n := s.upsertNodeLocked(req.NodeKey, sn, &evicted)
	if req.Hostinfo != nil {
		n.hostinfo = req.Hostinfo.Clone()
	}
	if !req.OldNodeKey.IsZero() && req.OldNodeKey != req.NodeKey {
		if old := s.nodes[req.OldNodeKey]; old != nil && old.machine == mkey {
			s.removeNodeLocked(old)
			evicted = append(evicted, old.key)
		}
	}
	// Wake every stream: a peer must know the newcomer before the
	// newcomer's first WireGuard handshake arrives.
	s.wakeAllLocked()
	s.mu.Unlock()
	if len(evicted) > 0 {
		// The replaced nodes are gone from memory already: finish their
		// removal from the store even if this request is abandoned now.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		for _, k := range evicted {
			if err := s.store.DeleteNode(dctx, k); err != nil {
				s.logger.Error("delete replaced node from store", "node_key", k.ShortString(), "err", err)
			}
		}
		cancel()
	}
	s.logger.Debug("node registered", "node_key", req.NodeKey.ShortString(), "kind", ident.Kind, "id", ident.ID, "addr", n.addr)
	uid := userIDOf(ident)
	return &tailcfg.RegisterResponse{
		User:              tailcfg.User{ID: uid, DisplayName: userName(ident)},
		Login:             tailcfg.Login{ID: tailcfg.LoginID(uid), LoginName: userName(ident), DisplayName: userName(ident)},
		MachineAuthorized: true,
	}, http.StatusOK
}

// upsertNodeLocked creates or updates the in-memory node for nk, replacing
// any other node with the same address (an agent, server or proxy that
// restarted with a new node key).
func (s *Server) upsertNodeLocked(nk key.NodePublic, sn StoredNode, evicted *[]key.NodePublic) *node {
	addr := AddrOf(sn.Identity.Kind, sn.Identity.ID)
	if sn.Identity.Kind == KindClient {
		addr = clientAddr(sn.Identity.ID, nk)
	}
	if other := s.byAddr[addr]; other != nil && other.key != nk {
		s.removeNodeLocked(other)
		*evicted = append(*evicted, other.key)
	}
	n := s.nodes[nk]
	if n == nil {
		n = &node{key: nk, id: nodeIDOf(nk), created: sn.Created, lastSeen: time.Now()}
		s.nodes[nk] = n
	} else {
		s.index.del(n)
		if n.addr != addr {
			delete(s.byAddr, n.addr)
		}
	}
	n.machine = sn.MachineKey
	n.ident = sn.Identity
	n.hostname = sn.Hostname
	n.addr = addr
	n.version++
	s.byAddr[addr] = n
	s.index.add(n)
	return n
}

// removeNodeLocked forgets n and tells its peers.
func (s *Server) removeNodeLocked(n *node) {
	if s.nodes[n.key] != n {
		return
	}
	delete(s.nodes, n.key)
	s.index.del(n)
	if s.byAddr[n.addr] == n {
		delete(s.byAddr, n.addr)
	}
	if n.sess != nil {
		close(n.sess.done)
		n.sess = nil
	}
	s.wakePeersLocked(n)
}

// wakePeersLocked wakes the streams of every node that may see n.
func (s *Server) wakePeersLocked(n *node) {
	// Visibility is symmetric: the nodes that may see n are those n sees.
	s.index.forVisible(n, s.browserOnly, func(m *node) {
		if m.sess != nil {
			m.sess.notify()
		}
	})
}

func (s *Server) wakeAllLocked() {
	for _, m := range s.nodes {
		if m.sess != nil {
			m.sess.notify()
		}
	}
}

// restoreNode brings a node known to the store (registered before a restart)
// back into memory.
func (s *Server) restoreNode(ctx context.Context, nk key.NodePublic, mkey key.MachinePublic) (*node, error) {
	sn, err := s.store.GetNode(ctx, nk)
	if err != nil {
		return nil, err
	}
	if sn.MachineKey != mkey {
		return nil, errors.New("machine key mismatch")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[nk]; n != nil {
		return n, nil
	}
	var evicted []key.NodePublic
	n := s.upsertNodeLocked(nk, sn, &evicted)
	s.wakeAllLocked()
	// evicted nodes are left in the store: they were replaced by a node
	// that registered earlier and may come back.
	return n, nil
}

func (s *Server) serveMap(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	ctx := r.Context()
	body, err := readBody(r)
	if err != nil {
		http.Error(w, "bad map request", http.StatusBadRequest)
		return
	}
	var req tailcfg.MapRequest
	if err := json.Unmarshal(body, &req); err != nil || req.NodeKey.IsZero() {
		http.Error(w, "bad map request", http.StatusBadRequest)
		return
	}
	s.mu.RLock()
	n := s.nodes[req.NodeKey]
	browserOnly := s.browserOnly
	s.mu.RUnlock()
	if n == nil {
		n, err = s.restoreNode(ctx, req.NodeKey, mkey)
		if err != nil {
			http.Error(w, "node not registered", http.StatusUnauthorized)
			return
		}
		s.logger.Debug("node restored from store", "node_key", req.NodeKey.ShortString(), "kind", n.ident.Kind)
	}
	if n.machine != mkey {
		http.Error(w, "node key belongs to another machine", http.StatusUnauthorized)
		return
	}
	if browserOnly && n.ident.Kind == KindClient {
		http.Error(w, ErrBrowserOnly.Error(), http.StatusForbidden)
		return
	}

	s.applyMapRequest(n, &req)

	if !req.Stream {
		if req.OmitPeers {
			// Lite endpoint update.
			w.WriteHeader(http.StatusOK)
			return
		}
		st := &sessionState{first: true, peers: map[tailcfg.NodeID]uint64{}}
		res := s.buildMapResponse(n, st)
		w.WriteHeader(http.StatusOK)
		if res != nil {
			s.sendFrame(w, res, "full")
		}
		return
	}
	if req.Compress != "zstd" {
		http.Error(w, "map streams require zstd compression", http.StatusBadRequest)
		return
	}
	s.streamMap(ctx, w, n)
}

// applyMapRequest records endpoints, disco key and home DERP from req. For
// capability version >= 68 a streaming request is read-only; its fields are
// still used to fill a node that is empty after a restart.
func (s *Server) applyMapRequest(n *node, req *tailcfg.MapRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes[n.key] != n {
		return
	}
	if req.Version > 0 {
		n.capVer = req.Version
	}
	readOnly := req.ReadOnly || (req.Stream && req.Version >= 68)
	if readOnly && !(n.disco.IsZero() && len(n.endpoints) == 0) {
		return
	}
	changed := false
	if !req.DiscoKey.IsZero() && req.DiscoKey != n.disco {
		n.disco = req.DiscoKey
		changed = true
	}
	if req.Endpoints != nil || !readOnly {
		eps := filterEndpoints(req.Endpoints)
		if !slices.Equal(eps, n.endpoints) {
			n.endpoints = eps
			changed = true
		}
	}
	if req.Hostinfo != nil {
		n.hostinfo = req.Hostinfo.Clone()
		if ni := req.Hostinfo.NetInfo; ni != nil && ni.PreferredDERP != 0 && ni.PreferredDERP != n.homeDERP {
			n.homeDERP = ni.PreferredDERP
			changed = true
		}
	}
	if changed {
		n.version++
		s.wakePeersLocked(n)
	}
}

// filterEndpoints drops endpoints peers cannot use (zoned or link-local).
func filterEndpoints(eps []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		a := ep.Addr()
		if a.Zone() != "" || (a.Is6() && a.IsLinkLocalUnicast()) {
			continue
		}
		out = append(out, ep)
	}
	return out
}

// streamMap serves a streaming map request until the client goes away, the
// node is replaced or removed, or the server closes.
func (s *Server) streamMap(ctx context.Context, w http.ResponseWriter, n *node) {
	ss := &session{n: n, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	if s.nodes[n.key] != n {
		s.mu.Unlock()
		http.Error(w, "node removed", http.StatusUnauthorized)
		return
	}
	if n.sess != nil {
		close(n.sess.done) // a newer stream replaces the old one
	}
	n.sess = ss
	n.version++
	s.wakePeersLocked(n)
	s.mu.Unlock()
	s.metrics.streams.Add(1)
	defer func() {
		s.metrics.streams.Add(-1)
		s.mu.Lock()
		if n.sess == ss {
			n.sess = nil
			n.lastSeen = time.Now()
			n.version++
			s.wakePeersLocked(n)
		}
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	st := &sessionState{first: true, peers: map[tailcfg.NodeID]uint64{}}
	keepAlive := time.NewTimer(s.opts.KeepAlive)
	defer keepAlive.Stop()
	ss.notify()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-ss.done:
			return
		case <-keepAlive.C:
			if err := s.sendFrame(w, keepAliveMsg, "keepalive"); err != nil {
				return
			}
			keepAlive.Reset(s.opts.KeepAlive)
		case <-ss.wake:
			res := s.buildMapResponse(n, st)
			if res == nil {
				continue
			}
			typ := "delta"
			if st.first {
				typ = "full"
			}
			st.first = false
			if err := s.sendFrame(w, res, typ); err != nil {
				s.logger.Debug("send map response", "node_key", n.key.ShortString(), "err", err)
				return
			}
			keepAlive.Reset(s.opts.KeepAlive)
		}
	}
}

var keepAliveMsg = &tailcfg.MapResponse{KeepAlive: true}

// sendFrame writes one zstd-compressed, length-prefixed map message.
func (s *Server) sendFrame(w http.ResponseWriter, msg *tailcfg.MapResponse, typ string) error {
	j, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode map response: %w", err)
	}
	payload := zstdframe.AppendEncode(make([]byte, 4, 4+len(j)/2), j, zstdframe.FastestCompression)
	binary.LittleEndian.PutUint32(payload[:4], uint32(len(payload)-4))
	if _, err := w.Write(payload); err != nil {
		return err
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.metrics.mapSent(typ)
	return nil
}

// buildMapResponse returns what st has not seen yet: the full map the first
// time, deltas (PeersChanged, PeersRemoved, changed self node, filter or
// DERP map) later, or nil when nothing changed.
func (s *Server) buildMapResponse(n *node, st *sessionState) *tailcfg.MapResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.nodes[n.key] != n {
		return nil
	}
	res := &tailcfg.MapResponse{}
	changed := false
	if st.first || st.selfVersion != n.version || st.configVersion != s.configVersion {
		res.Node = s.selfNodeLocked(n)
		st.selfVersion = n.version
		changed = true
	}
	if st.first || st.configVersion != s.configVersion {
		res.DERPMap = s.derpMap
		st.configVersion = s.configVersion
		changed = true
	}
	if st.first {
		res.Domain = s.opts.Domain
		res.Debug = &tailcfg.Debug{DisableLogTail: true}
		now := time.Now()
		res.ControlTime = &now
	}

	var visible []*node
	s.index.forVisible(n, s.browserOnly, func(p *node) { visible = append(visible, p) })
	slices.SortFunc(visible, func(a, b *node) int { return cmp.Compare(a.id, b.id) })
	seen := make(map[tailcfg.NodeID]bool, len(visible))
	var peers []*tailcfg.Node
	for _, p := range visible {
		seen[p.id] = true
		if v, ok := st.peers[p.id]; ok && v == p.version && !st.first {
			continue
		}
		st.peers[p.id] = p.version
		peers = append(peers, s.peerNodeLocked(p))
	}
	var removed []tailcfg.NodeID
	for id := range st.peers {
		if !seen[id] {
			removed = append(removed, id)
			delete(st.peers, id)
		}
	}
	slices.Sort(removed)
	if st.first {
		res.Peers = peers
	} else if len(peers) > 0 || len(removed) > 0 {
		res.PeersChanged = peers
		res.PeersRemoved = removed
		changed = true
	}
	if len(peers) > 0 || st.first {
		res.UserProfiles = s.userProfilesLocked(n, visible)
	}

	rules, fkey := s.packetFilterLocked(n, visible)
	if st.first || fkey != st.filter {
		res.PacketFilters = map[string][]tailcfg.FilterRule{"base": rules}
		st.filter = fkey
		changed = true
	}
	if !changed && !st.first {
		return nil
	}
	return res
}

func (s *Server) capsLocked() tailcfg.NodeCapMap {
	caps := tailcfg.NodeCapMap{
		tailcfg.NodeAttrDisableUPnP:                   nil,
		tailcfg.NodeAttrDisableCaptivePortalDetection: nil,
	}
	if s.blockDirect {
		caps[tailcfg.NodeAttrOnlyTCP443] = nil
	}
	return caps
}

func (s *Server) selfNodeLocked(n *node) *tailcfg.Node {
	tn := s.peerNodeLocked(n)
	tn.Online = nil
	tn.LastSeen = nil
	tn.CapMap = s.capsLocked()
	for c := range tn.CapMap {
		tn.Capabilities = append(tn.Capabilities, c)
	}
	slices.Sort(tn.Capabilities)
	return tn
}

func (s *Server) peerNodeLocked(p *node) *tailcfg.Node {
	pfx := []netip.Prefix{netip.PrefixFrom(p.addr, p.addr.BitLen())}
	online := p.online()
	tn := &tailcfg.Node{
		ID:                p.id,
		StableID:          tailcfg.StableNodeID(fmt.Sprintf("n%016x", int64(p.id))),
		Name:              p.hostname + "." + s.opts.Domain + ".",
		User:              userIDOf(p.ident),
		Key:               p.key,
		Machine:           p.machine,
		DiscoKey:          p.disco,
		Addresses:         pfx,
		AllowedIPs:        pfx,
		Endpoints:         slices.Clone(p.endpoints),
		HomeDERP:          p.homeDERP,
		Created:           p.created,
		Cap:               p.capVer,
		MachineAuthorized: true,
		Online:            &online,
	}
	if p.hostinfo != nil {
		hi := p.hostinfo.Clone()
		hi.Hostname = p.hostname
		tn.Hostinfo = hi.View()
	} else {
		tn.Hostinfo = (&tailcfg.Hostinfo{Hostname: p.hostname}).View()
	}
	if !online {
		ls := p.lastSeen
		tn.LastSeen = &ls
	}
	return tn
}

func (s *Server) userProfilesLocked(n *node, peers []*node) []tailcfg.UserProfile {
	seen := map[tailcfg.UserID]bool{}
	var out []tailcfg.UserProfile
	for _, p := range append([]*node{n}, peers...) {
		id := userIDOf(p.ident)
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, tailcfg.UserProfile{ID: id, LoginName: userName(p.ident), DisplayName: userName(p.ident)})
	}
	return out
}

// nodeIndex groups nodes by kind and owner so a node's visible peers are
// found without scanning every node: an agent looks at a handful of server,
// proxy and client nodes, not at every other agent.
type nodeIndex struct {
	agents         map[*node]struct{}
	infra          map[*node]struct{} // server and proxy nodes
	agentsByOwner  map[string]map[*node]struct{}
	clientsByOwner map[string]map[*node]struct{}
}

func newNodeIndex() nodeIndex {
	return nodeIndex{
		agents:         map[*node]struct{}{},
		infra:          map[*node]struct{}{},
		agentsByOwner:  map[string]map[*node]struct{}{},
		clientsByOwner: map[string]map[*node]struct{}{},
	}
}

func addTo(m map[string]map[*node]struct{}, k string, n *node) {
	set := m[k]
	if set == nil {
		set = map[*node]struct{}{}
		m[k] = set
	}
	set[n] = struct{}{}
}

func delFrom(m map[string]map[*node]struct{}, k string, n *node) {
	if set := m[k]; set != nil {
		delete(set, n)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

func (ix nodeIndex) add(n *node) {
	switch n.ident.Kind {
	case KindAgent:
		ix.agents[n] = struct{}{}
		addTo(ix.agentsByOwner, n.ident.OwnerID, n)
	case KindClient:
		addTo(ix.clientsByOwner, n.ident.OwnerID, n)
	case KindServer, KindProxy:
		ix.infra[n] = struct{}{}
	}
}

func (ix nodeIndex) del(n *node) {
	delete(ix.agents, n)
	delete(ix.infra, n)
	delFrom(ix.agentsByOwner, n.ident.OwnerID, n)
	delFrom(ix.clientsByOwner, n.ident.OwnerID, n)
}

// forVisible calls f for every node n may see, as decided by canSee.
func (ix nodeIndex) forVisible(n *node, browserOnly bool, f func(*node)) {
	visit := func(set map[*node]struct{}) {
		for p := range set {
			if p != n && canSee(n.ident, p.ident, browserOnly) {
				f(p)
			}
		}
	}
	switch n.ident.Kind {
	case KindClient:
		if n.ident.OwnerID != "" {
			visit(ix.agentsByOwner[n.ident.OwnerID])
		}
	case KindAgent:
		visit(ix.infra)
		if n.ident.OwnerID != "" {
			visit(ix.clientsByOwner[n.ident.OwnerID])
		}
	case KindServer, KindProxy:
		visit(ix.agents)
	}
}

// canSee reports whether a node of identity a may have b as a peer. The
// relation is symmetric.
func canSee(a, b Identity, browserOnly bool) bool {
	switch a.Kind {
	case KindClient:
		return !browserOnly && b.Kind == KindAgent && a.OwnerID != "" && b.OwnerID == a.OwnerID
	case KindAgent:
		switch b.Kind {
		case KindServer, KindProxy:
			return true
		case KindClient:
			return !browserOnly && a.OwnerID != "" && b.OwnerID == a.OwnerID
		}
	case KindServer, KindProxy:
		return b.Kind == KindAgent
	}
	return false
}

// packetFilterLocked returns n's inbound filter and a key identifying it:
// agents accept TCP and ICMP from the peers they see; all other kinds
// accept nothing inbound (replies to their own connections still flow).
func (s *Server) packetFilterLocked(n *node, visible []*node) ([]tailcfg.FilterRule, string) {
	rules := []tailcfg.FilterRule{}
	if n.ident.Kind != KindAgent || len(visible) == 0 {
		return rules, ""
	}
	srcs := make([]string, 0, len(visible))
	for _, p := range visible {
		srcs = append(srcs, p.addr.String())
	}
	slices.Sort(srcs)
	rules = append(rules, tailcfg.FilterRule{
		SrcIPs:   srcs,
		DstPorts: []tailcfg.NetPortRange{{IP: "*", Ports: tailcfg.PortRangeAny}},
		IPProto:  []int{6, 1, 58}, // TCP, ICMPv4, ICMPv6
	})
	return rules, strings.Join(srcs, ",")
}

// nodeIDOf derives a node id from the node key, so replicas agree on it.
func nodeIDOf(nk key.NodePublic) tailcfg.NodeID {
	raw := nk.Raw32()
	sum := sha256.Sum256(raw[:])
	return tailcfg.NodeID(binary.BigEndian.Uint64(sum[:8])>>2 + 1)
}

// userIDOf derives the Tailscale user of a node: its owner for agents and
// clients, one synthetic user per kind for servers and proxies.
func userIDOf(id Identity) tailcfg.UserID {
	name := "owner\x00" + id.OwnerID
	if id.OwnerID == "" {
		name = "kind\x00" + string(id.Kind)
	}
	sum := sha256.Sum256([]byte(name))
	return tailcfg.UserID(binary.BigEndian.Uint64(sum[:8])>>2 + 1)
}

func userName(id Identity) string {
	if id.OwnerID != "" {
		return "user-" + shortHash(id.OwnerID)
	}
	return "coder-" + string(id.Kind)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// sanitizeHostname turns name into a DNS label; empty names become
// "<kind>-<hash of id>".
func sanitizeHostname(name string, id Identity) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == '_' || r == '.' || r == ' ':
			b.WriteByte('-')
		}
		if b.Len() >= 63 {
			break
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		out = string(id.Kind) + "-" + shortHash(id.ID)
	}
	return out
}
