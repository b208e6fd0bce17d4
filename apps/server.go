package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/terminal"
)

// Error is an error with a status and a sentence for the user (what to
// do), split from its cause, which is for the log only. The assembly
// renders it ([ServerOptions.WriteError]).
type Error struct {
	Code int
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrLoginRequired is what an [Authorizer] returns when an anonymous
// visitor asks for an app that does not open for them, whatever the
// reason (no such user, workspace, agent or app, or an app that is not
// public). The Server answers every such request with the same redirect to
// the login page, so that anonymous visitors cannot tell which apps exist.
var ErrLoginRequired = errors.New("log in to open this app")

// ErrPathAppsDisabled is what the Server hands to [ServerOptions.WriteError]
// for a path app when [ServerOptions.DisablePathApps] is set; the assembly
// renders the page that says so.
var ErrPathAppsDisabled = errors.New("path apps are disabled")

// Visitor is who a request comes from, as [Authorizer.Authenticate] found.
type Visitor struct {
	// UserID is the visitor's user; empty for an anonymous visitor.
	UserID string
	// Token is true when an API token, not the browser session,
	// authenticated the request (browser-only mode refuses it).
	Token bool
}

// AppRequest names a path app: the agent of Path and the app Slug.
type AppRequest struct {
	Path Path
	Slug string
}

// App is a path app that a visitor may open.
type App struct {
	// AgentID is the agent that serves it.
	AgentID string
	// URL is the app's URL on the agent, as its template wrote it, like
	// http://localhost:8080.
	URL string
	// Offline: the agent is not connected. The app answers a
	// [BadGateway] at once instead of waiting for a dial to time out.
	Offline bool
}

// Agent is an agent whose terminal a visitor may open.
type Agent struct {
	ID string
	// Status is the agent's connection status (sdk.AgentConnected, ...).
	// An agent that is not connected cannot answer: the terminal says so
	// at once instead of waiting for the dial to time out.
	Status string
}

// Authorizer says who a request comes from and what it may open. handlers
// implements it from the store; a workspace proxy will, from calls to the
// primary. Its errors go to [ServerOptions.WriteError], except
// [ErrLoginRequired].
type Authorizer interface {
	// Authenticate says who r comes from. It returns r with the visitor
	// attached in the assembly's own way (its context), for the
	// Authorizer's other calls and for WriteError. An anonymous visitor is
	// not an error.
	Authenticate(r *http.Request) (*http.Request, Visitor, error)
	// AuthorizeApp resolves the path app req for v (anonymous included),
	// at most once per request. When it does not open for an anonymous
	// visitor, it returns ErrLoginRequired.
	AuthorizeApp(r *http.Request, v Visitor, req AppRequest) (App, error)
	// AuthorizeAgent returns the agent agentID when v (never anonymous)
	// may open its terminal.
	AuthorizeAgent(r *http.Request, v Visitor, agentID string) (Agent, error)
}

// ServerOptions configure a Server.
type ServerOptions struct {
	Logger *slog.Logger
	// AccessURL is the dashboard's URL: the only origin from which the
	// terminal's websocket opens, and in browser-only mode the only one
	// from which apps do.
	AccessURL *url.URL
	// Authorizer is required.
	Authorizer Authorizer
	// Dialer reaches the agents; nil means agents cannot be reached (the
	// server runs without a tailnet).
	Dialer Dialer
	// Relay bridges the browser's terminal to the agent's; the caller owns
	// it and closes it. Required for the terminal.
	Relay *terminal.Relay
	// BrowserOnly: the terminal and apps take the session cookie of a page
	// of the dashboard only, never an API token.
	BrowserOnly bool
	// DisablePathApps: no path app opens (ErrPathAppsDisabled).
	DisablePathApps bool
	// LoginPath is where anonymous visitors go to log in, with ?redirect=
	// back; empty means /login.
	LoginPath string
	// Proxy configures the app proxy; its Logger and Dialer default to the
	// Server's.
	Proxy Options
	// Subdomain turns on subdomain apps and port URLs; nil leaves them off
	// (HandleSubdomain then hands every request on).
	Subdomain *SubdomainOptions
	// Metrics counts app requests and tokens; nil counts nothing.
	Metrics *Metrics
	// WriteError writes the response for an error: an *[Error], an error of
	// the Authorizer, or ErrPathAppsDisabled. It is required.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Server is the browser front door of workspaces: path apps, subdomain apps
// and the web terminal's websocket. The primary server mounts it, and so
// will every workspace proxy; it never knows which one it runs in. It is
// safe for concurrent use; [Server.Close] ends it.
type Server struct {
	opts  ServerOptions
	proxy *Proxy

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// NewServer returns a Server. The caller must call [Server.Close].
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LoginPath == "" {
		opts.LoginPath = "/login"
	}
	po := opts.Proxy
	if po.Logger == nil {
		po.Logger = opts.Logger
	}
	if po.Dialer == nil {
		po.Dialer = opts.Dialer
	}
	if po.WriteError == nil {
		po.WriteError = opts.WriteError
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{opts: opts, proxy: NewProxy(po), ctx: ctx, cancel: cancel}
}

// PTYRoute is the route of the web terminal's websocket; {agent} is the
// agent's ID.
const PTYRoute = "GET /api/v2/workspaceagents/{agent}/pty"

// Attach mounts the Server's fixed routes on mux: the terminal's websocket
// at [PTYRoute]. Path apps live under the workspace URLs, which a ServeMux
// pattern cannot match: the assembly's catch-all route hands them to
// [Server.PathAppHandler].
func (s *Server) Attach(mux *http.ServeMux) {
	mux.HandleFunc(PTYRoute, s.servePTY)
}

// HandleSubdomain returns a handler that serves subdomain apps and port
// URLs, whose host under [SubdomainOptions.Wildcard] names the app, and
// hands every other request to next. A host under the wildcard that names
// no app gets a 400 from WriteError, never next (the dashboard).
func (s *Server) HandleSubdomain(next http.Handler) http.Handler {
	so := s.opts.Subdomain
	if so == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		label, ok := so.Wildcard.Label(r.Host)
		// The dashboard's own host may sit under a broad wildcard
		// (*.example.com for coder.example.com): it stays the dashboard.
		if !ok || s.opts.AccessURL != nil && strings.EqualFold(r.Host, s.opts.AccessURL.Host) {
			next.ServeHTTP(w, r)
			return
		}
		kind := "subdomain"
		if h, err := ParseAppHost(label); err == nil && h.Port != 0 {
			kind = "port"
		}
		s.opts.Metrics.instrument(kind, w, r, func(w http.ResponseWriter, r *http.Request) {
			if err := s.serveSubdomain(w, r, label); err != nil {
				s.opts.WriteError(w, r, err)
			}
		})
	})
}

// PathAppHandler returns the handler of the path app that p names
// (/@{user}/{workspace}.{agent}/apps/{slug}/...), or nil when p names no
// app.
func (s *Server) PathAppHandler(p Path) http.Handler {
	if p.Agent == "" {
		return nil
	}
	slug, ok := AppSlug(p.Rest)
	if !ok {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.opts.Metrics.instrument("path", w, r, func(w http.ResponseWriter, r *http.Request) {
			if r, err := s.servePathApp(w, r, p, slug); err != nil {
				s.opts.WriteError(w, r, err)
			}
		})
	})
}

// Metrics returns the Server's metrics (nil when it has none).
func (s *Server) Metrics() *Metrics { return s.opts.Metrics }

// Proxy returns the Server's app proxy.
func (s *Server) Proxy() *Proxy { return s.proxy }

// Close ends every terminal and proxied request in flight, closes the
// connections to agents and waits for the handlers to return; it never
// waits on an agent or the network. It does not close the Relay. It is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.proxy.Close()
	s.wg.Wait()
	return nil
}

// track adds a long-lived request (a hijacked connection that
// http.Server.Shutdown does not wait for) to those Close waits for. It
// returns false once Close has begun; otherwise the caller must call
// s.wg.Done.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// dashboardHeaders are the dashboard's response headers that a path app's
// response does not carry: the app's own apply.
var dashboardHeaders = []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"}

// servePathApp proxies a path app over the Dialer to its agent, which
// forwards it to the app on its localhost. Until the visitor is logged
// in, every app URL that does not open answers the same redirect to the
// login page. It returns the request as authenticated, for WriteError.
func (s *Server) servePathApp(w http.ResponseWriter, r *http.Request, p Path, slug string) (*http.Request, error) {
	if s.opts.DisablePathApps {
		return r, ErrPathAppsDisabled
	}
	// Browser-only mode: the session cookie from a page, never a token.
	if err := s.browserRequestOK(r, false); err != nil {
		return r, err
	}
	r, v, err := s.opts.Authorizer.Authenticate(r)
	if err != nil {
		return r, err
	}
	app, err := s.opts.Authorizer.AuthorizeApp(r, v, AppRequest{Path: p, Slug: slug})
	if errors.Is(err, ErrLoginRequired) && v.UserID == "" {
		http.Redirect(w, r, s.opts.LoginPath+"?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return r, nil
	}
	if err != nil {
		return r, err
	}
	target, err := url.Parse(app.URL)
	if err != nil {
		return r, &Error{Code: http.StatusBadGateway, Msg: "The app's URL in the template is not valid.", Err: err}
	}
	prefix := AppPrefix(p, slug)
	if r.URL.Path == prefix {
		http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
		return r, nil
	}
	if app.Offline {
		port, _ := Port(target)
		return r, &BadGateway{AgentID: app.AgentID, Slug: slug, Port: port, Prefix: prefix, Offline: true}
	}
	for _, h := range dashboardHeaders {
		w.Header().Del(h)
	}
	s.proxy.Serve(w, r, Target{URL: target, Prefix: prefix, AgentID: app.AgentID, Slug: slug})
	return r, nil
}

// servePTY bridges the browser's terminal websocket to the agent's
// reconnecting PTY over the Dialer. In browser-only mode only the
// dashboard in a browser may open it (see browserRequestOK).
func (s *Server) servePTY(w http.ResponseWriter, r *http.Request) {
	if r, err := s.servePTYErr(w, r); err != nil {
		s.opts.WriteError(w, r, err)
	}
}

func (s *Server) servePTYErr(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	r, v, err := s.opts.Authorizer.Authenticate(r)
	if err != nil {
		return r, err
	}
	if v.UserID == "" {
		return r, errNotLoggedIn
	}
	if err := s.browserRequestOK(r, v.Token); err != nil {
		return r, err
	}
	ag, err := s.opts.Authorizer.AuthorizeAgent(r, v, r.PathValue("agent"))
	if err != nil {
		return r, err
	}
	params, err := terminal.ParseParams(r.URL.Query())
	if err != nil {
		return r, &Error{Code: http.StatusBadRequest, Msg: ptyParamsMsg(r.URL.Query()), Err: err}
	}
	if !s.checkOrigin(r) {
		return r, &Error{Code: http.StatusForbidden, Msg: "This websocket may only be opened from the dashboard's own origin."}
	}
	if s.opts.Dialer == nil {
		return r, &Error{Code: http.StatusServiceUnavailable, Msg: "The tailnet is off on this server, so it cannot reach agents."}
	}
	if !s.track() {
		return r, &Error{Code: http.StatusServiceUnavailable, Msg: "The server is shutting down; the terminal reconnects by itself."}
	}
	defer s.wg.Done()
	up := websocket.Upgrader{
		ReadBufferSize: 16 << 10, WriteBufferSize: 64 << 10, EnableCompression: false,
		CheckOrigin: s.checkOrigin,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return r, nil // the upgrader answered
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends terminals
	defer stop()
	dial := func(ctx context.Context) (net.Conn, error) {
		return s.opts.Dialer.DialAgent(ctx, ag.ID, sdk.AgentReconnectingPTYPort)
	}
	// An agent that no replica hears from cannot answer: say so at once
	// (close 1011, which the page shows and retries) rather than after the
	// dial's wait for a peer that is not there.
	if ag.Status != sdk.AgentConnected {
		dial = func(context.Context) (net.Conn, error) {
			return nil, fmt.Errorf("dial agent %s: the agent is %s", ag.ID, ag.Status)
		}
	}
	err = s.opts.Relay.ServeBrowser(ctx, ws, dial, params)
	if err != nil && ctx.Err() == nil {
		s.opts.Logger.Debug("terminal ended", "agent_id", ag.ID, "err", err)
	}
	return r, nil
}

// errNotLoggedIn answers a terminal websocket without a session or token.
var errNotLoggedIn = &Error{Code: http.StatusUnauthorized, Msg: "You are not logged in. Run `coder login <url>` or send a Coder-Session-Token header."}

// checkOrigin allows websocket upgrades from the dashboard's own origin
// only (and from programs, which send no Origin).
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || s.opts.AccessURL == nil {
		return false
	}
	return strings.EqualFold(u.Scheme, s.opts.AccessURL.Scheme) && strings.EqualFold(u.Host, s.opts.AccessURL.Host)
}

// errBrowserOnlyToken refuses an API token on a browser surface in
// browser-only mode.
var errBrowserOnlyToken = &Error{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser. API tokens are not accepted here."}

// errBrowserOnlyOrigin refuses a browser-only request that does not come
// from a page of the dashboard's origin.
var errBrowserOnlyOrigin = &Error{Code: http.StatusForbidden, Msg: "This deployment is browser-only: open the terminal and apps from the dashboard in a browser, at its own address."}

// browserRequestOK is the gate of the surfaces that browser-only mode keeps
// open: the web terminal's websocket and apps. Outside browser-only mode it
// accepts every request. In browser-only mode it refuses any request that
// carries an API token (token: one authenticated it; or it sends the
// token header), even with a matching Origin, so that only the browser
// session cookie authenticates, and accepts:
//
//   - a request whose Origin is the access URL's (checkOrigin); browsers
//     send Origin on every websocket upgrade and on non-GET requests;
//   - without Origin, only a GET or HEAD that is not a websocket upgrade
//     and whose Sec-Fetch-Site is "same-origin" or "none": the navigations
//     and same-origin loads of an app's pages, for which browsers send no
//     Origin.
func (s *Server) browserRequestOK(r *http.Request, token bool) error {
	if !s.opts.BrowserOnly {
		return nil
	}
	if token || r.Header.Get(sdk.SessionTokenHeader) != "" {
		return errBrowserOnlyToken
	}
	if r.Header.Get("Origin") != "" {
		if s.checkOrigin(r) {
			return nil
		}
		return errBrowserOnlyOrigin
	}
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if !upgrade && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// A GET without Origin is a page load. Browsers send Fetch Metadata
		// only in secure contexts (HTTPS, localhost), so its absence is not
		// refused (a plain-HTTP deployment's apps must load); what is
		// refused is another site's subresource load of an app (an <img>
		// or <script> pointing here), while a link followed from another
		// site (a navigation) opens.
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
			return nil
		}
		if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
			return nil
		}
	}
	return errBrowserOnlyOrigin
}

// ptyParamsMsg says which query parameter of a terminal URL that
// terminal.ParseParams refused is wrong, in a sentence for the user that
// does not repeat the input. It checks the parameters in ParseParams's
// order, each with those before it.
func ptyParamsMsg(q url.Values) string {
	const reopen = ": reopen the terminal from the workspace page."
	if q.Get("reconnect") == "" {
		return "The terminal URL has no reconnect ID" + reopen
	}
	sub := url.Values{}
	for _, c := range []struct{ key, msg string }{
		{"reconnect", "The terminal URL's reconnect ID is not a UUID" + reopen},
		{"width", "The terminal URL's width is not a whole number from 0 to 65535" + reopen},
		{"height", "The terminal URL's height is not a whole number from 0 to 65535" + reopen},
	} {
		sub[c.key] = q[c.key]
		if _, err := terminal.ParseParams(sub); err != nil {
			return c.msg
		}
	}
	return fmt.Sprintf("The terminal's command must be valid UTF-8 of at most %d bytes, without NUL bytes.", terminal.MaxCommandLen)
}
