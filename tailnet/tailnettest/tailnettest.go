// Package tailnettest runs the tailnet control server, DERP relay and STUN
// server on loopback for tests, with a test authenticator and helpers that
// start real tsnet nodes of each kind.
//
// Everything listens on 127.0.0.1 and nodes are configured to use only the
// in-process DERP region, so tests never reach an outside address. The
// harness owns its servers and nodes and closes them in t.Cleanup.
package tailnettest

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Auth is a test [tailnet.Authenticator]: auth keys map to identities.
type Auth struct {
	mu   sync.Mutex
	keys map[string]Identity
	n    int
}

// Identity is an alias for readability in tests.
type Identity = tailnet.Identity

// NewAuth returns an empty authenticator.
func NewAuth() *Auth { return &Auth{keys: map[string]Identity{}} }

// Add registers a new auth key for id and returns it.
func (a *Auth) Add(id Identity) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	k := fmt.Sprintf("test-%s-%d-%s", id.Kind, a.n, id.ID)
	a.keys[k] = id
	return k
}

// Remove deletes an auth key.
func (a *Auth) Remove(authKey string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.keys, authKey)
}

// Authenticate implements [tailnet.Authenticator].
func (a *Auth) Authenticate(_ context.Context, authKey string) (Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.keys[authKey]
	if !ok {
		return Identity{}, errors.New("unknown auth key")
	}
	return id, nil
}

// ConfigureProcess sets process-wide knobs that running nodes read, so it
// runs once per test binary (every harness uses plain HTTP on loopback).
var (
	configureOnce sync.Once
	configureErr  error
)

// Options configure [New].
type Options struct {
	// BlockDirect forces every connection through DERP.
	BlockDirect bool
	// NoSTUN leaves the STUN server out.
	NoSTUN bool
	// TCPBufferMax is every node's tailnet.NodeOptions.TCPBufferMax
	// (zero keeps tailscale's).
	TCPBufferMax int
}

// Harness is a running control server with DERP and STUN on loopback.
type Harness struct {
	t          testing.TB
	opts       Options
	Auth       *Auth
	Store      *tailnet.MemNodeStore
	ControlKey key.MachinePrivate
	DERPKey    key.NodePrivate
	// URL is the control URL (http://127.0.0.1:port).
	URL string

	mu       sync.Mutex
	server   *tailnet.Server
	http     *httptest.Server
	addr     string
	stunAddr string
}

// New starts a harness; it is closed in t.Cleanup.
func New(t testing.TB, opts Options) *Harness {
	t.Helper()
	h := &Harness{
		t:          t,
		opts:       opts,
		Auth:       NewAuth(),
		Store:      tailnet.NewMemNodeStore(),
		ControlKey: key.NewMachine(),
		DERPKey:    key.NewNode(),
		addr:       "127.0.0.1:0",
		stunAddr:   "127.0.0.1:0",
	}
	h.start(t)
	h.URL = "http://" + h.addr
	configureOnce.Do(func() {
		configureErr = tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: h.URL})
	})
	if configureErr != nil {
		t.Fatalf("configure process: %v", configureErr)
	}
	t.Cleanup(h.stop)
	return h
}

// Server returns the current control server (it changes on Restart).
func (h *Harness) Server() *tailnet.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.server
}

func (h *Harness) start(t testing.TB) {
	t.Helper()
	var stun []string
	if !h.opts.NoSTUN {
		stun = []string{h.stunAddr}
	}
	srv, err := tailnet.New(tailnet.Options{
		ControlKey:    h.ControlKey,
		DERPKey:       h.DERPKey,
		Authenticator: h.Auth,
		Store:         h.Store,
		BlockDirect:   h.opts.BlockDirect,
		STUNAddrs:     stun,
		Logger:        testutil.Logger(t, slog.LevelInfo), // tsnet's Debug logs are noise here
	})
	if err != nil {
		t.Fatalf("start tailnet server: %v", err)
	}
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		srv.Close()
		t.Fatalf("listen %s: %v", h.addr, err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener = ln
	hs.Start()
	h.addr = ln.Addr().String()
	stunPort := -1
	if addrs := srv.STUNAddrs(); len(addrs) > 0 {
		stunPort = int(addrs[0].Port())
		h.stunAddr = addrs[0].String()
	}
	dm, err := tailnet.BuildDERPMap(context.Background(), tailnet.DERPMapOptions{
		AccessURL: "http://" + h.addr,
		STUNPort:  stunPort,
	})
	if err != nil {
		t.Fatalf("build derp map: %v", err)
	}
	srv.SetDERPMap(dm)
	h.mu.Lock()
	h.server, h.http = srv, hs
	h.mu.Unlock()
}

func (h *Harness) stop() {
	h.mu.Lock()
	srv, hs := h.server, h.http
	h.mu.Unlock()
	srv.Close()
	hs.Close()
}

// Restart closes the control server and starts a new one on the same
// address (and STUN port) with the same keys and node store, like a
// restart of coder server.
func (h *Harness) Restart(t testing.TB) {
	t.Helper()
	h.stop()
	h.start(t)
}

// DERPMap returns the DERP map the server sends.
func (h *Harness) DERPMap() *tailcfg.DERPMap {
	dm, err := tailnet.BuildDERPMap(context.Background(), tailnet.DERPMapOptions{AccessURL: h.URL, STUNPort: h.stunPort()})
	if err != nil {
		h.t.Fatalf("build derp map: %v", err)
	}
	return dm
}

func (h *Harness) stunPort() int {
	if h.opts.NoSTUN {
		return -1
	}
	_, p, _ := net.SplitHostPort(h.stunAddr)
	var port int
	fmt.Sscan(p, &port)
	return port
}

// StartNode registers an auth key for id and starts a tsnet node with it.
// The node is closed in t.Cleanup.
func (h *Harness) StartNode(t testing.TB, id Identity) *tailnet.Node {
	t.Helper()
	n, err := h.TryStartNode(t, id)
	if err != nil {
		t.Fatalf("start %s node %s: %v", id.Kind, id.ID, err)
	}
	return n
}

// TryStartNode is StartNode that returns the error of NewNode.
func (h *Harness) TryStartNode(t testing.TB, id Identity) (*tailnet.Node, error) {
	t.Helper()
	return h.StartNodeWithKey(t, h.Auth.Add(id), id.Name)
}

// StartNodeWithKey starts a node with a raw auth key.
func (h *Harness) StartNodeWithKey(t testing.TB, authKey, hostname string) (*tailnet.Node, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := tailnet.NewNode(ctx, tailnet.NodeOptions{
		Dir:          t.TempDir(),
		Hostname:     hostname,
		ControlURL:   h.URL,
		AuthKey:      authKey,
		Logger:       testutil.Logger(t, slog.LevelInfo), // tsnet's Debug logs are noise here
		TCPBufferMax: h.opts.TCPBufferMax,
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return n, nil
}
