package tailnettest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"tailscale.com/control/tsp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// LiteNode is a lightweight node that speaks only the control protocol
// (register, streaming map, lite endpoint updates) over ts2021, with no
// WireGuard or DERP: thousands fit in one test process. It keeps the peer
// list the stream describes.
type LiteNode struct {
	ID      Identity
	NodeKey key.NodePrivate
	Disco   key.DiscoPrivate

	client *tsp.Client
	sess   *tsp.MapSession
	cancel context.CancelFunc // ends the map stream
	wg     sync.WaitGroup

	mu      sync.Mutex
	self    *tailcfg.Node
	peers   map[tailcfg.NodeID]*tailcfg.Node
	changed chan struct{} // closed and replaced on every map message
	err     error
	// OnMessage, if set before Start, is called for every map message
	// with the time it was decoded.
	onMessage func(*tailcfg.MapResponse, time.Time)
}

// NewLiteNode registers a lite node for id (adding an auth key) and starts
// its map stream. It is closed in t.Cleanup only if the caller does so; use
// Close. onMessage may be nil.
func NewLiteNode(ctx context.Context, controlURL, authKey string, id Identity, onMessage func(*tailcfg.MapResponse, time.Time)) (*LiteNode, error) {
	c, err := tsp.NewClient(tsp.ClientOpts{ServerURL: controlURL, MachineKey: key.NewMachine()})
	if err != nil {
		return nil, err
	}
	l := &LiteNode{
		ID:        id,
		NodeKey:   key.NewNode(),
		Disco:     key.NewDisco(),
		client:    c,
		peers:     map[tailcfg.NodeID]*tailcfg.Node{},
		changed:   make(chan struct{}),
		onMessage: onMessage,
	}
	hi := &tailcfg.Hostinfo{Hostname: id.Name, OS: "linux"}
	res, err := c.Register(ctx, tsp.RegisterOpts{NodeKey: l.NodeKey, AuthKey: authKey, Hostinfo: hi, Ephemeral: true})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("register: %w", err)
	}
	if res.Error != "" {
		c.Close()
		return nil, fmt.Errorf("register refused: %s", res.Error)
	}
	// The stream outlives ctx (which only bounds the setup): it has its own
	// context, canceled by Close.
	sctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	stop := context.AfterFunc(ctx, cancel)
	l.sess, err = c.Map(sctx, tsp.MapOpts{NodeKey: l.NodeKey, Stream: true, Hostinfo: hi})
	stop()
	if err != nil {
		cancel()
		c.Close()
		return nil, fmt.Errorf("map: %w", err)
	}
	l.wg.Add(1)
	go l.readLoop()
	return l, nil
}

func (l *LiteNode) readLoop() {
	defer l.wg.Done()
	for {
		res, err := l.sess.Next()
		now := time.Now()
		if err != nil {
			l.mu.Lock()
			l.err = err
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
			return
		}
		if res.KeepAlive && res.Node == nil && res.Peers == nil && res.PeersChanged == nil && res.PeersRemoved == nil {
			continue
		}
		l.mu.Lock()
		if res.Node != nil {
			l.self = res.Node
		}
		if res.Peers != nil {
			clear(l.peers)
			for _, p := range res.Peers {
				l.peers[p.ID] = p
			}
		}
		for _, p := range res.PeersChanged {
			l.peers[p.ID] = p
		}
		for _, id := range res.PeersRemoved {
			delete(l.peers, id)
		}
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
		if l.onMessage != nil {
			l.onMessage(res, now)
		}
	}
}

// Self returns the node as the control server describes it (nil before the
// first map message).
func (l *LiteNode) Self() *tailcfg.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.self
}

// Peers returns a copy of the current peer list.
func (l *LiteNode) Peers() []*tailcfg.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*tailcfg.Node, 0, len(l.peers))
	for _, p := range l.peers {
		out = append(out, p)
	}
	return out
}

// WaitFor blocks until cond(peers) holds or ctx ends.
func (l *LiteNode) WaitFor(ctx context.Context, cond func(self *tailcfg.Node, peers []*tailcfg.Node) bool) error {
	for {
		l.mu.Lock()
		ch := l.changed
		err := l.err
		l.mu.Unlock()
		if cond(l.Self(), l.Peers()) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("map stream ended: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// SetEndpoints sends a lite map update (Stream false, OmitPeers true) with
// the given endpoints and the node's disco key.
func (l *LiteNode) SetEndpoints(ctx context.Context, eps []netip.AddrPort, homeDERP int) error {
	req := tailcfg.MapRequest{
		Version:   tailcfg.CurrentCapabilityVersion,
		NodeKey:   l.NodeKey.Public(),
		DiscoKey:  l.Disco.Public(),
		Endpoints: eps,
		Hostinfo:  &tailcfg.Hostinfo{Hostname: l.ID.Name, OS: "linux", NetInfo: &tailcfg.NetInfo{PreferredDERP: homeDERP}},
		Compress:  "zstd",
		OmitPeers: true,
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", "https://control/machine/map", bytes.NewReader(body))
	if err != nil {
		return err
	}
	res, err := l.sess.NoiseRoundTrip(hr)
	if err != nil {
		return fmt.Errorf("lite update: %w", err)
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("lite update: %s: %s", res.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Close ends the map stream and the Noise connection and waits for the
// reading goroutine.
func (l *LiteNode) Close() error {
	l.cancel()
	l.sess.Close()
	l.client.Close()
	l.wg.Wait()
	return nil
}

// LiteNode starts a lite node for id on h, closed in t.Cleanup.
func (h *Harness) LiteNode(t interface {
	Helper()
	Fatalf(string, ...any)
	Cleanup(func())
}, id Identity) *LiteNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := NewLiteNode(ctx, h.URL, h.Auth.Add(id), id, nil)
	if err != nil {
		t.Fatalf("lite node %s/%s: %v", id.Kind, id.ID, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
