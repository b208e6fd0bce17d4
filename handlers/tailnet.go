package handlers

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

// Tailnet auth keys (sdk.AgentAuthKey and friends) name the kind of node
// before the secret, so that the authenticator never has to guess.
const (
	authPrefixAgent  = sdk.AuthKeyPrefixAgent
	authPrefixClient = sdk.AuthKeyPrefixClient
	authPrefixServer = sdk.AuthKeyPrefixServer
)

// TailnetOptions configure the coordination server inside the API.
type TailnetOptions struct {
	// Enabled turns coordination on; off leaves the dashboard alone (tests
	// of pages and the API).
	Enabled bool
	// DERP describes the DERP map: the embedded region (unless
	// DERP.DisableEmbedded) and regions from a file or URL. Its AccessURL
	// and STUNPort are filled in by the API.
	DERP tailnet.DERPMapOptions
	// BlockDirect forces every connection through DERP.
	BlockDirect bool
	// STUNAddrs are the UDP addresses of the embedded STUN server; empty
	// means none.
	STUNAddrs []string
	// ForceWebsockets tells agents and CLIs (through the build info) to
	// reach DERP over websockets.
	ForceWebsockets bool
	// TCPBufferMax caps each TCP connection's buffers on the server's own
	// node (tailnet.NodeOptions.TCPBufferMax); zero keeps tailscale's.
	TCPBufferMax int
}

// tailnetKeys loads the control and DERP private keys from the database,
// creating them on first start. Every replica shares them.
func tailnetKeys(ctx context.Context, db *store.DB) (key.MachinePrivate, key.NodePrivate, error) {
	var ck key.MachinePrivate
	var dk key.NodePrivate
	cs, err := db.SiteConfigOrInit(ctx, "tailnet_control_key", func() (string, error) {
		b, err := key.NewMachine().MarshalText()
		return string(b), err
	})
	if err != nil {
		return ck, dk, fmt.Errorf("load tailnet control key: %w", err)
	}
	if err := ck.UnmarshalText([]byte(cs)); err != nil {
		return ck, dk, fmt.Errorf("load tailnet control key: %w", err)
	}
	ds, err := db.SiteConfigOrInit(ctx, "tailnet_derp_key", func() (string, error) {
		b, err := key.NewNode().MarshalText()
		return string(b), err
	})
	if err != nil {
		return ck, dk, fmt.Errorf("load derp key: %w", err)
	}
	if err := dk.UnmarshalText([]byte(ds)); err != nil {
		return ck, dk, fmt.Errorf("load derp key: %w", err)
	}
	return ck, dk, nil
}

// newTailnet builds the coordination server, then the DERP map with the
// port the embedded STUN server bound.
func (a *API) newTailnet(ctx context.Context) error {
	o := a.opts.Tailnet
	ck, dk, err := tailnetKeys(ctx, a.db)
	if err != nil {
		return err
	}
	if o.DERP.DisableEmbedded {
		dk = key.NodePrivate{}
	}
	dopts := o.DERP
	dopts.AccessURL = a.opts.AccessURL.String()
	dopts.STUNPort = -1
	dm, err := tailnet.BuildDERPMap(ctx, dopts)
	if err != nil {
		return err
	}
	a.serverSecret = randomString(32)
	a.replicaID = uuid.NewString()
	srv, err := tailnet.New(tailnet.Options{
		ControlKey: ck, DERPKey: dk, Authenticator: tailnetAuth{a}, Store: nodeStore{a.db},
		DERPMap: dm, BlockDirect: o.BlockDirect, BrowserOnly: a.opts.BrowserOnly, STUNAddrs: o.STUNAddrs,
		Logger: a.logger.With("component", "tailnet"),
	})
	if err != nil {
		return err
	}
	if addrs := srv.STUNAddrs(); len(addrs) > 0 && !o.DERP.DisableEmbedded {
		dopts.STUNPort = int(addrs[0].Port())
		if dm, err = tailnet.BuildDERPMap(ctx, dopts); err != nil {
			srv.Close()
			return err
		}
		srv.SetDERPMap(dm)
	}
	a.derpMap = dm
	a.tailnet = srv
	if a.opts.Registerer != nil {
		a.opts.Registerer.MustRegister(srv.Collectors()...)
	}
	return nil
}

// DERPMap returns the DERP map sent to nodes (nil without a tailnet).
func (a *API) DERPMap() *tailcfg.DERPMap { return a.derpMap }

// Tailnet returns the coordination server (for the dashboard and tests).
func (a *API) Tailnet() *tailnet.Server { return a.tailnet }

// tailnetAuth authenticates registering nodes.
type tailnetAuth struct{ a *API }

func (t tailnetAuth) Authenticate(ctx context.Context, authKey string) (tailnet.Identity, error) {
	a := t.a
	switch {
	case strings.HasPrefix(authKey, authPrefixAgent):
		ag, err := a.db.AgentByTokenHash(ctx, hashSecret(strings.TrimPrefix(authKey, authPrefixAgent)))
		if err != nil {
			return tailnet.Identity{}, fmt.Errorf("agent token: %w", err)
		}
		wk, err := a.db.WorkspaceByID(ctx, ag.WorkspaceID)
		if err != nil {
			return tailnet.Identity{}, fmt.Errorf("agent workspace: %w", err)
		}
		return tailnet.Identity{Kind: tailnet.KindAgent, ID: ag.ID, OwnerID: wk.OwnerID, Name: wk.Name + "." + ag.Name}, nil
	case strings.HasPrefix(authKey, authPrefixClient):
		if a.opts.BrowserOnly {
			return tailnet.Identity{}, tailnet.ErrBrowserOnly
		}
		u, k, err := a.userFromAPIKey(ctx, strings.TrimPrefix(authKey, authPrefixClient))
		if err != nil {
			return tailnet.Identity{}, fmt.Errorf("client api key: %w", err)
		}
		return tailnet.Identity{Kind: tailnet.KindClient, ID: k.ID, OwnerID: u.ID, Name: u.Username}, nil
	case strings.HasPrefix(authKey, authPrefixServer):
		rest := strings.TrimPrefix(authKey, authPrefixServer)
		id, secret, ok := strings.Cut(rest, ":")
		if !ok || id != a.replicaID || !constantTimeEqual(secret, a.serverSecret) {
			return tailnet.Identity{}, errors.New("bad server key")
		}
		host, _ := os.Hostname()
		return tailnet.Identity{Kind: tailnet.KindServer, ID: id, Name: "coder-server-" + host}, nil
	}
	return tailnet.Identity{}, errors.New("unknown auth key kind")
}

// nodeStore keeps tailnet node identities in PostgreSQL, so that nodes
// survive a restart of the server.
type nodeStore struct{ db *store.DB }

func (s nodeStore) PutNode(ctx context.Context, k key.NodePublic, n tailnet.StoredNode) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return s.db.PutTailnetNode(ctx, k.String(), b)
}

func (s nodeStore) GetNode(ctx context.Context, k key.NodePublic) (tailnet.StoredNode, error) {
	b, err := s.db.TailnetNode(ctx, k.String())
	if errors.Is(err, store.ErrNotFound) {
		return tailnet.StoredNode{}, fmt.Errorf("node %s: %w", k.ShortString(), tailnet.ErrNodeNotFound)
	}
	if err != nil {
		return tailnet.StoredNode{}, err
	}
	var n tailnet.StoredNode
	if err := json.Unmarshal(b, &n); err != nil {
		return n, fmt.Errorf("decode stored node: %w", err)
	}
	return n, nil
}

func (s nodeStore) DeleteNode(ctx context.Context, k key.NodePublic) error {
	return s.db.DeleteTailnetNode(ctx, k.String())
}

func (s nodeStore) DeleteKind(ctx context.Context, kind tailnet.Kind) (int, error) {
	return s.db.DeleteTailnetNodesOfKind(ctx, string(kind))
}

// serverNode is the server's own tailnet node, which reaches agents for the
// web terminal and apps.
type serverNode struct {
	mu   sync.Mutex
	node *tailnet.Node
	// err is why the last attempt to start it failed; retrying is set
	// once a retry loop runs (servernode.go).
	err      error
	retrying bool
}

// StartServerNode joins the server's own node to its tailnet through the
// access URL. Call it once the HTTP listeners serve. It blocks until the
// node is up or ctx ends. When it fails, the dashboard says why and the
// server keeps trying in the background.
func (a *API) StartServerNode(ctx context.Context, dir string) error {
	err := a.startServerNode(ctx, dir)
	if err != nil {
		a.serverNodeFailed(dir, err)
	}
	return err
}

func (a *API) startServerNode(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	n, err := tailnet.NewNode(ctx, tailnet.NodeOptions{
		Dir: dir, Hostname: "coder-server", ControlURL: a.opts.AccessURL.String(),
		AuthKey: authPrefixServer + a.replicaID + ":" + a.serverSecret,
		Logger:  a.logger.With("component", "server_node"), TCPBufferMax: a.opts.Tailnet.TCPBufferMax,
	})
	if err != nil {
		return fmt.Errorf("start the server's tailnet node: %w", err)
	}
	a.node.mu.Lock()
	a.node.node, a.node.err = n, nil
	a.node.mu.Unlock()
	return nil
}

// DialAgent dials a TCP port of an agent over the tailnet with
// [tailnet.Node.DialAgent], which waits for the agent to be reachable
// first.
func (a *API) DialAgent(ctx context.Context, agentID string, port uint16) (net.Conn, error) {
	a.node.mu.Lock()
	n := a.node.node
	a.node.mu.Unlock()
	if n == nil {
		return nil, errors.New("dial agent: the server's tailnet node is not running")
	}
	c, err := n.DialAgent(ctx, tailnet.AddrOf(tailnet.KindAgent, agentID), port, sdk.AgentServicePort(port))
	if err != nil {
		return nil, fmt.Errorf("dial agent %s: %w", agentID, err)
	}
	return c, nil
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
