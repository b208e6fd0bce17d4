package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

// The agent's tailnet node reaches its control server (the coder server)
// through a relay on the agent's loopback when the server's URL is plain
// http to a private or loopback host: tailscale's control dialer (v1.102.5,
// controlhttp.Dialer.dialHostOpt) has no HTTPS fallback for such a URL, and
// when its one dial fails, it waits out its whole 10 s context instead of
// returning. A server that restarts while the node redials is thus seen 10 s
// late. The relay accepts the node's connection at once and keeps dialling
// the server every relayRetry for up to relayWait, then splices the two: the
// node's dial completes as soon as the server answers again.
const (
	relayRetry = 100 * time.Millisecond
	relayWait  = 9 * time.Second // below the dialer's 10 s, so it sees the failure
)

// controlRelay forwards TCP connections from a loopback port to the server.
type controlRelay struct {
	ln       net.Listener
	upstream string
	logger   *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// needsControlRelay reports whether tailscale's control dialer would wait
// out its context on a failed dial to u (see above).
func needsControlRelay(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(u.Hostname())
	return err == nil && (a.IsPrivate() || a.IsLoopback())
}

// startControlRelay returns the control URL the node should use: u itself,
// or the URL of a relay to u's host, which stop closes (with every
// connection through it).
func startControlRelay(u *url.URL, logger *slog.Logger) (controlURL string, stop func()) {
	if !needsControlRelay(u) {
		return u.String(), func() {}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Warn("no relay for the tailnet's control connection: a restarted server is reached up to 10 s late", "err", err)
		return u.String(), func() {}
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "80")
	}
	r := &controlRelay{ln: ln, upstream: upstream, logger: logger}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.serve()
	relayed := *u
	relayed.Host = ln.Addr().String()
	return relayed.String(), r.stop
}

func (r *controlRelay) stop() {
	r.cancel()
	r.ln.Close()
	r.wg.Wait()
}

func (r *controlRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.relay(c)
		}()
	}
}

// relay dials the server until it answers (or relayWait passes), then
// copies both ways until either side closes.
func (r *controlRelay) relay(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(r.ctx, func() { c.Close() })
	defer stop()
	ctx, cancel := context.WithTimeout(r.ctx, relayWait)
	defer cancel()
	var up net.Conn
	for {
		var d net.Dialer
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		u, err := d.DialContext(dctx, "tcp", r.upstream)
		dcancel()
		if err == nil {
			up = u
			break
		}
		t := time.NewTimer(relayRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	defer up.Close()
	stopUp := context.AfterFunc(r.ctx, func() { up.Close() })
	defer stopUp()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(c, up)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	// One side is done: end the other too (a half-open control connection
	// is of no use to either).
	c.Close()
	up.Close()
	<-done
}
