package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dialer reaches agents. handlers implements it over the server's tailnet
// node; a workspace proxy over its own; tests over loopback TCP.
type Dialer interface {
	// DialAgent opens a TCP connection to port on the agent agentID. It
	// returns when the connection is open or ctx ends. The caller closes
	// the returned conn.
	DialAgent(ctx context.Context, agentID string, port uint16) (net.Conn, error)
}

// DialerFunc adapts a function to [Dialer].
type DialerFunc func(ctx context.Context, agentID string, port uint16) (net.Conn, error)

// DialAgent calls f.
func (f DialerFunc) DialAgent(ctx context.Context, agentID string, port uint16) (net.Conn, error) {
	return f(ctx, agentID, port)
}

// Target is one app to proxy to.
type Target struct {
	// URL is the app's URL on the agent, like http://localhost:8080/base.
	URL *url.URL
	// Prefix is the path the app is served under here, like
	// /@alice/dev.main/apps/code; it is removed before the request goes on.
	Prefix string
	// AgentID names the agent that serves the app; the proxy reaches it
	// with [Options.Dialer] and keeps its connections to it for the next
	// request.
	AgentID string
	// Slug names the app, for the error page ([BadGateway]); empty for a
	// port.
	Slug string
	// Host: the app has a host of its own (a subdomain app or port URL),
	// so the request's path goes on whole (Prefix is ignored), and the
	// app's cookies keep their Path (only their Domain is dropped).
	Host bool
	// Headers are set on the request to the app (identity headers), after
	// every request header named Coder-* is removed.
	Headers http.Header
}

// Port is the TCP port of an app URL (its explicit port, or 80/443).
func Port(u *url.URL) (uint16, error) {
	p := u.Port()
	if p == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("app port %q is not a TCP port", p)
	}
	return uint16(n), nil
}

// Options configure a Proxy.
type Options struct {
	Logger *slog.Logger
	// Dialer reaches the agents. It is required.
	Dialer Dialer
	// StripCookies names the cookies of the dashboard: they never reach an
	// app, and an app's Set-Cookie that names one is dropped (compared
	// without regard to case), so that an app can neither read nor replace
	// the visitor's session.
	StripCookies []string
	// StripHeaders names request headers that must never reach an app
	// (the API token header).
	StripHeaders []string
	// StripResponseHeaders names response headers of an app that never
	// reach the browser, like Service-Worker-Allowed, with which an app on
	// the dashboard's origin could install a service worker over the
	// dashboard's pages.
	StripResponseHeaders []string
	// MaxIdleConnsPerAgent bounds the idle connections kept open to each
	// agent for the next request; zero means 64.
	MaxIdleConnsPerAgent int
	// IdleTimeout is how long an idle connection to an agent stays open,
	// and how long an agent's connection pool outlives its last request;
	// zero means 30 s.
	IdleTimeout time.Duration
	// WriteError, if set, writes the response when the agent or the app
	// does not answer: it gets a *[BadGateway]. Nil means a line of text
	// with status 502. A [Server]'s proxy uses the Server's.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Proxy reverse-proxies requests to workspace apps through [Options.Dialer].
// It keeps one connection pool ([http.Transport]) per agent, so that an
// app's page and its assets reuse the same few connections instead of
// dialing the agent for each request; a pool is dropped when its agent has
// had no request for [Options.IdleTimeout], or at once by [Proxy.CloseAgent].
// It is safe for concurrent use; [Proxy.Close] ends it.
type Proxy struct {
	opts Options
	rp   *httputil.ReverseProxy
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	transports map[string]*agentTransport
	lastSweep  time.Time
}

// agentTransport is the connection pool of one agent.
type agentTransport struct {
	tr       *http.Transport
	lastUsed time.Time
}

// targetKey carries the request's Target through the shared ReverseProxy.
type targetKey struct{}

// NewProxy returns a Proxy. The caller must call [Proxy.Close].
func NewProxy(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxIdleConnsPerAgent <= 0 {
		opts.MaxIdleConnsPerAgent = 64
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Proxy{opts: opts, ctx: ctx, stop: stop, transports: map[string]*agentTransport{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper(p.roundTrip),
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
	}
	return p
}

// ErrBadGateway is what a request gets when the agent or the app cannot be
// reached.
var ErrBadGateway = errors.New("the app is not reachable")

// Serve proxies r to t. Websocket upgrades pass through. The dashboard's
// cookies and token never reach the app, and the app's cookies stay under
// t.Prefix (see [RewriteSetCookie]). It returns when the response is
// written, or the upgraded connection ends; [Proxy.Close] ends it early.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t Target) {
	if _, err := Port(t.URL); err != nil {
		p.opts.Logger.Debug("app proxy", "url", t.URL.Redacted(), "err", err)
		http.Error(w, "The app's URL in the template does not name a valid TCP port: the template's author must fix it.", http.StatusBadGateway)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		http.Error(w, "The server is shutting down: reload the page in a moment.", http.StatusServiceUnavailable)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()
	// Close cancels every request in flight, upgraded ones included (the
	// ReverseProxy closes the agent side of a websocket when its request's
	// context ends), so that shutdown never waits on an agent.
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), targetKey{}, t))
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey{}).(Target)
	pr.SetURL(t.URL)
	rest := pr.In.URL.Path
	if !t.Host {
		rest = strings.TrimPrefix(rest, t.Prefix)
	}
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	pr.Out.URL.Path = singleJoin(t.URL.Path, rest)
	pr.Out.URL.RawPath = ""
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = t.URL.Host
	pr.SetXForwarded()
	if !t.Host {
		pr.Out.Header.Set("X-Forwarded-Prefix", t.Prefix)
	}
	for _, h := range p.opts.StripHeaders {
		pr.Out.Header.Del(h)
	}
	for name := range pr.Out.Header {
		if strings.HasPrefix(name, "Coder-") {
			pr.Out.Header.Del(name)
		}
	}
	for name, v := range t.Headers {
		pr.Out.Header[name] = v
	}
	stripCookies(pr.Out, p.opts.StripCookies)
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	t := resp.Request.Context().Value(targetKey{}).(Target)
	for _, h := range p.opts.StripResponseHeaders {
		resp.Header.Del(h)
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
		resp.Header.Del("Set-Cookie")
		for _, line := range sc {
			rewrite := RewriteSetCookie
			if t.Host {
				rewrite = rewriteHostSetCookie
			}
			if c, ok := rewrite(line, t.Prefix, p.opts.StripCookies); ok {
				resp.Header.Add("Set-Cookie", c)
			}
		}
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(targetKey{}).(Target)
	p.opts.Logger.Debug("app proxy", "url", t.URL.Redacted(), "agent_id", t.AgentID, "err", err)
	if p.opts.WriteError != nil {
		port, _ := Port(t.URL)
		p.opts.WriteError(w, r, &BadGateway{AgentID: t.AgentID, Slug: t.Slug, Port: port, Prefix: t.Prefix, Err: err})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "%s: is the workspace running, and is the app listening on %s?\n", ErrBadGateway, t.URL.Host)
}

// roundTripper adapts a function to http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends r over the pool of its target's agent.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	t := r.Context().Value(targetKey{}).(Target)
	tr, err := p.transport(t.AgentID)
	if err != nil {
		return nil, err
	}
	return tr.RoundTrip(r)
}

// errProxyClosed is what a request gets from a closed Proxy.
var errProxyClosed = errors.New("app proxy closed")

// errNoDialer is what a request gets from a Proxy without a Dialer.
var errNoDialer = errors.New("app proxy: no dialer: agents cannot be reached")

// transport returns the pool of agentID, making it on first use, and drops
// the pools of agents that have had no request for IdleTimeout.
func (p *Proxy) transport(agentID string) (*http.Transport, error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errProxyClosed
	}
	if now.Sub(p.lastSweep) > p.opts.IdleTimeout {
		p.lastSweep = now
		for id, at := range p.transports {
			if now.Sub(at.lastUsed) > p.opts.IdleTimeout {
				at.tr.CloseIdleConnections()
				delete(p.transports, id)
			}
		}
	}
	at := p.transports[agentID]
	if at == nil {
		dialer := p.opts.Dialer
		if dialer == nil {
			return nil, errNoDialer
		}
		at = &agentTransport{tr: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				_, ps, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				port, err := strconv.ParseUint(ps, 10, 16)
				if err != nil || port == 0 {
					return nil, fmt.Errorf("dial app: port %q is not a TCP port", ps)
				}
				return dialer.DialAgent(ctx, agentID, uint16(port))
			},
			// An HTTPS app on the agent's localhost (a port URL's "s"
			// form) has a self-signed certificate at best; the hop to it
			// is already inside the tailnet's encryption.
			TLSClientConfig:       &tls.Config{InsecureSkipVerify: true},
			MaxIdleConns:          p.opts.MaxIdleConnsPerAgent,
			MaxIdleConnsPerHost:   p.opts.MaxIdleConnsPerAgent,
			IdleConnTimeout:       p.opts.IdleTimeout,
			ResponseHeaderTimeout: 60 * time.Second,
		}}
		p.transports[agentID] = at
	}
	at.lastUsed = now
	return at.tr, nil
}

// CloseAgent drops the connection pool of agentID (its idle connections
// close; requests in flight finish on theirs). Call it when the agent goes
// away; the next request to it dials afresh.
func (p *Proxy) CloseAgent(agentID string) {
	p.mu.Lock()
	at := p.transports[agentID]
	delete(p.transports, agentID)
	p.mu.Unlock()
	if at != nil {
		at.tr.CloseIdleConnections()
	}
}

// Close cancels every request in flight (websockets included), closes
// every connection to the agents and waits for the requests' handlers to
// return. It never waits on an agent or the network. It is idempotent;
// after Close, Serve answers 503.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ts := p.transports
	p.transports = map[string]*agentTransport{}
	p.mu.Unlock()
	p.stop()
	for _, at := range ts {
		at.tr.CloseIdleConnections()
	}
	p.wg.Wait()
	// Connections that were in use when Close began became idle as their
	// requests ended.
	for _, at := range ts {
		at.tr.CloseIdleConnections()
	}
	return nil
}

// singleJoin joins a base path and a request path with one slash.
func singleJoin(base, rest string) string {
	if base == "" || base == "/" {
		return rest
	}
	return strings.TrimSuffix(base, "/") + rest
}

// stripCookies removes the named cookies from r's Cookie headers, keeping
// the app's own.
func stripCookies(r *http.Request, names []string) {
	if len(names) == 0 {
		return
	}
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		drop := false
		for _, n := range names {
			if strings.EqualFold(c.Name, n) {
				drop = true
			}
		}
		if !drop {
			r.AddCookie(c)
		}
	}
}

// RewriteSetCookie confines one Set-Cookie header line of an app served
// under prefix (like /@alice/dev.main/apps/code) to that prefix: a missing
// Path, or one outside the prefix, becomes the prefix, and any Domain is
// dropped (the cookie is then host-only). A cookie that names one of drop
// (the dashboard's cookies, compared without regard to case) or that does
// not parse is refused: ok is false. The returned line is re-serialised by
// net/http, so that no attribute the parser did not understand survives.
//
// This keeps an app's cookies off the dashboard's paths; it cannot stop a
// script of the app from setting document.cookie, which is why path apps
// open for their workspace's owner only unless the deployment says
// otherwise.
func RewriteSetCookie(line, prefix string, drop []string) (string, bool) {
	c, err := http.ParseSetCookie(line)
	if err != nil {
		return "", false
	}
	for _, n := range drop {
		if strings.EqualFold(c.Name, n) {
			return "", false
		}
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" || !strings.HasPrefix(prefix, "/") {
		return "", false
	}
	if c.Path != prefix && !strings.HasPrefix(c.Path, prefix+"/") || strings.Contains(c.Path, "/..") || strings.ContainsAny(c.Path, "%\\") {
		c.Path = prefix
	}
	c.Domain = ""
	out := c.String()
	if out == "" {
		return "", false
	}
	return out, true
}

// rewriteHostSetCookie vets one Set-Cookie line of an app on a host of its
// own: its Path stays, its Domain is dropped (so that an app cannot set a
// cookie on the wildcard's parent domain for every other app to receive),
// and a cookie named like one of drop is refused.
func rewriteHostSetCookie(line, _ string, drop []string) (string, bool) {
	c, err := http.ParseSetCookie(line)
	if err != nil {
		return "", false
	}
	for _, n := range drop {
		if strings.EqualFold(c.Name, n) {
			return "", false
		}
	}
	c.Domain = ""
	out := c.String()
	return out, out != ""
}
