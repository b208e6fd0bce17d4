package tailnet

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/net/tsaddr"
	"tailscale.com/types/key"
)

// Kind is the kind of a tailnet node. It decides what the node may see and
// reach; see [Server] for the visibility rules.
type Kind string

// The node kinds. Every node is authenticated as exactly one of them at
// registration.
const (
	// KindAgent is a workspace agent, authenticated by its agent token.
	KindAgent Kind = "agent"
	// KindClient is the CLI of a user, authenticated by a user's API key.
	KindClient Kind = "client"
	// KindServer is the in-process node of a coder server replica.
	KindServer Kind = "server"
	// KindProxy is the node of a workspace proxy.
	KindProxy Kind = "proxy"
)

// Valid reports whether k is one of the four node kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindAgent, KindClient, KindServer, KindProxy:
		return true
	}
	return false
}

// Identity is who a node is, as decided by the [Authenticator] from the
// node's auth key.
type Identity struct {
	// Kind is the node kind.
	Kind Kind
	// ID is the agent id, user-API-key id, server (replica) id or proxy id.
	// Agent, server and proxy addresses are derived from Kind and ID, so two
	// nodes with the same agent/server/proxy identity replace each other.
	ID string
	// OwnerID is the user that owns the agent's workspace, or the client's
	// user. Empty for server and proxy nodes.
	OwnerID string
	// Name is a display name (agent name, user name, replica host name).
	// Empty means the hostname the node reports.
	Name string
}

// Authenticator maps the auth key a node presents at registration to its
// identity. Implementations are called concurrently.
type Authenticator interface {
	// Authenticate returns the identity of authKey. Any error refuses the
	// registration: an error wrapping [ErrBrowserOnly] is shown to the node
	// as that sentinel's message, every other error as "invalid auth key"
	// (the error itself is logged, not sent).
	Authenticate(ctx context.Context, authKey string) (Identity, error)
}

// ErrBrowserOnly refuses a client registration while the deployment only
// allows browser connections. The Authenticator may return an error
// wrapping it; [Server.SetBrowserOnly] makes the server refuse clients with
// it by itself. Its text travels in the control protocol's
// RegisterResponse.Error (tailscale's wire format has no code), and
// [NewNode] turns that text back into an error wrapping it.
var ErrBrowserOnly = errors.New("Non-browser connections are disabled for your deployment.")

// ErrNodeNotFound is returned by [NodeStore.GetNode] when the key is unknown.
var ErrNodeNotFound = errors.New("tailnet: node not found")

// StoredNode is the node state that survives a control server restart: a
// node that reconnects its map stream with a known node key is recognised
// without registering again.
type StoredNode struct {
	// Identity is the identity the node authenticated as.
	Identity Identity
	// MachineKey is the Noise machine key the node registered with; a map
	// request for this node key from another machine key is refused.
	MachineKey key.MachinePublic
	// Hostname is the hostname the node reported at registration.
	Hostname string
	// Created is when the node registered.
	Created time.Time
}

// NodeStore persists registered nodes by node public key. The assembly
// implements it with PostgreSQL; [NewMemNodeStore] is an in-memory version.
// Implementations are called concurrently, and never while the server holds
// its lock.
type NodeStore interface {
	// PutNode inserts or replaces the node stored under k.
	PutNode(ctx context.Context, k key.NodePublic, n StoredNode) error
	// GetNode returns the node stored under k, or an error wrapping
	// [ErrNodeNotFound].
	GetNode(ctx context.Context, k key.NodePublic) (StoredNode, error)
	// DeleteNode removes the node stored under k; deleting an unknown key is
	// not an error.
	DeleteNode(ctx context.Context, k key.NodePublic) error
	// DeleteKind removes every node whose Identity.Kind is kind and returns
	// how many it removed.
	DeleteKind(ctx context.Context, kind Kind) (int, error)
}

// MemNodeStore is an in-memory [NodeStore], for tests and single-process
// use. The zero value is not usable; call [NewMemNodeStore].
type MemNodeStore struct {
	mu    sync.Mutex
	nodes map[key.NodePublic]StoredNode
}

// NewMemNodeStore returns an empty in-memory node store.
func NewMemNodeStore() *MemNodeStore {
	return &MemNodeStore{nodes: make(map[key.NodePublic]StoredNode)}
}

// PutNode implements [NodeStore].
func (m *MemNodeStore) PutNode(_ context.Context, k key.NodePublic, n StoredNode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[k] = n
	return nil
}

// GetNode implements [NodeStore].
func (m *MemNodeStore) GetNode(_ context.Context, k key.NodePublic) (StoredNode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[k]
	if !ok {
		return StoredNode{}, ErrNodeNotFound
	}
	return n, nil
}

// DeleteNode implements [NodeStore].
func (m *MemNodeStore) DeleteNode(_ context.Context, k key.NodePublic) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, k)
	return nil
}

// DeleteKind implements [NodeStore].
func (m *MemNodeStore) DeleteKind(_ context.Context, kind Kind) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, sn := range m.nodes {
		if sn.Identity.Kind == kind {
			delete(m.nodes, k)
			n++
		}
	}
	return n, nil
}

// Len returns the number of stored nodes.
func (m *MemNodeStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.nodes)
}

// AddrOf returns the tailnet address of the node with the given kind and id:
// an IPv6 address in Tailscale's ULA range fd7a:115c:a1e0::/48 whose low 80
// bits are a SHA-256 hash of kind and id. Every replica computes the same
// address without shared allocation state, and others can compute an agent's
// address from its id.
//
// Client nodes do not use AddrOf(KindClient, apiKeyID): several CLI processes
// may share one API key, so a client's address also hashes its node key.
//
// There are no IPv4 addresses: hashing into 100.64.0.0/10 (22 bits) would
// collide after a few thousand nodes.
func AddrOf(kind Kind, id string) netip.Addr {
	return addrFromHash("coder-tailnet\x00" + string(kind) + "\x00" + id)
}

// clientAddr is the address of a client node: the user-API-key id and the
// node key, so several CLIs of one key do not collide.
func clientAddr(id string, nk key.NodePublic) netip.Addr {
	return AddrOf(KindClient, id+"\x00"+nk.String())
}

func addrFromHash(s string) netip.Addr {
	sum := sha256.Sum256([]byte(s))
	ula := tsaddr.TailscaleULARange().Addr().As16()
	var a [16]byte
	copy(a[:6], ula[:6])
	copy(a[6:], sum[:10])
	addr := netip.AddrFrom16(a)
	// Stay out of Tailscale's own sub-ranges (4to6 and ephemeral) so the
	// address is never mistaken for a translated IPv4 address.
	if tsaddr.Tailscale4To6Range().Contains(addr) || tsaddr.TailscaleEphemeral6Range().Contains(addr) {
		a[6] ^= 0x80
		addr = netip.AddrFrom16(a)
	}
	return addr
}
