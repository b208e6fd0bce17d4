package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"
	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/tailcfg"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/static"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/web"
)

// Options configure the primary server's HTTP surface. DB, Logger and
// AccessURL are required; the rest have usable zero values.
type Options struct {
	DB        *store.DB
	Logger    *slog.Logger
	AccessURL *url.URL
	// WildcardAccessURL is the wildcard host for subdomain apps, like
	// "*.apps.example.com"; empty disables subdomain apps.
	WildcardAccessURL string
	// TLS tells whether users reach the server over TLS: cookies are then
	// marked Secure.
	TLS bool
	// BrowserOnly refuses SSH and CLI tunnels (shown on the deployment page).
	BrowserOnly bool
	// BuiltinDB tells whether the database is the built-in PostgreSQL.
	BuiltinDB bool
	// Version is the server's version string.
	Version string
	// Registerer receives the server's Prometheus metrics; nil means none.
	Registerer prometheus.Registerer
	// Provisioner starts and stops agents of "local" templates; nil means
	// local templates cannot start (their workspaces say so).
	Provisioner Provisioner
	// StatusPollInterval is how often open workspace pages re-read agent
	// status besides being woken by changes (to notice agents that went
	// silent); zero means one second.
	StatusPollInterval time.Duration
	// Tailnet configures coordination, DERP and STUN.
	Tailnet TailnetOptions
	// DisablePathApps turns path-based apps off: their URLs answer with a
	// page that says so, and the workspace page offers no links to them.
	DisablePathApps bool
	// DangerousAllowPathAppSharing applies each path app's share level
	// from its template (authenticated, public). Off (the default), a path
	// app opens for its workspace's owner only: it runs on the dashboard's
	// origin, so its scripts act as whoever opens it.
	DangerousAllowPathAppSharing bool
	// DangerousAllowPathAppSiteOwnerAccess lets users with the owner role
	// open other users' path apps. Off (the default), they are refused.
	DangerousAllowPathAppSiteOwnerAccess bool
	// AppTokenLifetime is how long an app token (subdomain apps) opens
	// its app before a page load renews it; zero means one hour.
	AppTokenLifetime time.Duration
}

// API is the primary server's HTTP surface. Create it with New, serve
// Handler, and Close it after the HTTP server has stopped.
type API struct {
	opts     Options
	db       *store.DB
	logger   *slog.Logger
	sessions *scs.SessionManager
	limiter  loginLimiter
	events   *broker
	// pubsub carries workspace changes between replicas.
	pubsub      *store.Pubsub
	unsubscribe func()
	agents      agentConns
	metrics     *metrics
	mux         *http.ServeMux
	// extraSettings are added to the deployment page by the assembly.
	extraSettings []web.Setting
	// tailnet is the coordination server; nil when Options.Tailnet is off.
	tailnet *tailnet.Server
	derpMap *tailcfg.DERPMap
	node    serverNode
	relay   *terminal.Relay
	front   *apps.Server
	// wildcard is the parsed WildcardAccessURL; nil when subdomain apps
	// are off. tokenKeys, appAuthz and appTokenLifetime serve them.
	wildcard         *apps.Wildcard
	tokenKeys        *appTokenKeys
	appAuthz         *appAuthorizer
	appTokenLifetime time.Duration
	net              netStatus
	replicaID        string
	serverSecret     string
	handler          http.Handler

	// draining is closed by BeginShutdown: long-lived responses end.
	draining  chan struct{}
	drainOnce sync.Once
	closeOnce sync.Once
	closeMu   sync.Mutex
	closing   bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New builds the API. It starts no goroutine that outlives Close.
func New(opts Options) (*API, error) {
	if opts.StatusPollInterval == 0 {
		opts.StatusPollInterval = time.Second
	}
	var wildcard *apps.Wildcard
	if opts.WildcardAccessURL != "" {
		w, err := apps.ParseWildcard(opts.WildcardAccessURL)
		if err != nil {
			return nil, fmt.Errorf("wildcard access URL %q: %w", opts.WildcardAccessURL, err)
		}
		wildcard = &w
	}
	if opts.AppTokenLifetime <= 0 {
		opts.AppTokenLifetime = defaultAppTokenLifetime
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &API{
		opts:     opts,
		db:       opts.DB,
		logger:   opts.Logger.With("component", "handlers"),
		events:   newBroker(),
		draining: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,

		wildcard:         wildcard,
		appTokenLifetime: opts.AppTokenLifetime,
	}
	a.appAuthz = &appAuthorizer{a: a}
	a.sessions = scs.New()
	a.sessions.Store = pgxstore.NewWithCleanupInterval(opts.DB.Pool, 0)
	a.sessions.Lifetime = 14 * 24 * time.Hour
	a.sessions.IdleTimeout = 7 * 24 * time.Hour
	a.sessions.Cookie.Name = "coder_session"
	a.sessions.Cookie.HttpOnly = true
	a.sessions.Cookie.SameSite = http.SameSiteLaxMode
	a.sessions.Cookie.Secure = opts.TLS
	a.sessions.Cookie.Path = "/"
	a.sessions.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) { a.serveError(w, r, err) }

	a.metrics = newMetrics(opts.Registerer, opts.DB)
	// Workspace changes travel between replicas over LISTEN/NOTIFY; each
	// replica wakes its own open pages.
	ps, err := store.NewPubsub(ctx, opts.DB.Pool, a.logger)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start pubsub: %w", err)
	}
	a.pubsub = ps
	a.unsubscribe = ps.Subscribe(workspaceChannel, func(payload []byte) {
		if payload == nil {
			a.events.publishAll() // missed events: every page re-reads
			return
		}
		a.events.publish(string(payload))
	})
	if opts.Tailnet.Enabled {
		if err := a.newTailnet(ctx); err != nil {
			ps.Close()
			cancel()
			return nil, err
		}
	}
	termMetrics := terminal.NewMetrics()
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(termMetrics)
	}
	a.relay = terminal.NewRelay(terminal.RelayOptions{Logger: a.logger.With("component", "terminal_relay"), Metrics: termMetrics})
	// The browser front door: path apps and the terminal's websocket.
	var dialer apps.Dialer
	if a.tailnet != nil {
		dialer = a
	}
	appMetrics := apps.NewMetrics()
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(appMetrics)
	}
	var sub *apps.SubdomainOptions
	if wildcard != nil {
		a.tokenKeys = newAppTokenKeys(opts.DB, appTokenKeyRotation, opts.AppTokenLifetime)
		sub = &apps.SubdomainOptions{Wildcard: *wildcard, Authorizer: a.appAuthz, Keys: a.tokenKeys,
			AuthRedirectURL: opts.AccessURL.JoinPath(apps.AuthRedirectPath)}
	}
	a.front = apps.NewServer(apps.ServerOptions{
		Logger:          a.logger.With("component", "apps"),
		AccessURL:       opts.AccessURL,
		Authorizer:      a.appAuthz,
		Subdomain:       sub,
		Metrics:         appMetrics,
		Dialer:          dialer,
		Relay:           a.relay,
		BrowserOnly:     opts.BrowserOnly,
		DisablePathApps: opts.DisablePathApps,
		Proxy: apps.Options{StripCookies: a.dashboardCookies(), StripHeaders: []string{sdk.SessionTokenHeader},
			StripResponseHeaders: appResponseHeaders},
		WriteError: a.writeFrontError,
	})
	a.routes()
	a.wg.Add(1)
	go a.janitor()
	return a, nil
}

// Handler returns the root handler: routes behind request metrics, cross
// origin protection and sessions.
func (a *API) Handler() http.Handler { return a.handler }

// BeginShutdown ends the responses that would otherwise hold a graceful
// http.Server.Shutdown for its whole timeout: workspace event streams and
// requests proxied to apps (new app requests then get 503). Call it just
// before Shutdown; Close must still follow. It is idempotent.
func (a *API) BeginShutdown() {
	a.drainOnce.Do(func() { close(a.draining) })
	a.front.Close()
}

// Close stops the API's background work and waits for it. It does not
// close the DB. It is idempotent.
func (a *API) Close() error {
	a.closeOnce.Do(func() {
		a.closeMu.Lock()
		a.closing = true
		a.closeMu.Unlock()
		a.cancel()
		a.agents.closeAll()
		a.relay.Close()
		a.front.Close()
		a.wg.Wait()
		a.unsubscribe()
		a.pubsub.Close()
		a.node.mu.Lock()
		if a.node.node != nil {
			a.node.node.Close()
		}
		a.node.mu.Unlock()
		if a.tailnet != nil {
			a.tailnet.Close()
		}
	})
	return nil
}

// track adds a long-lived request (a hijacked connection that
// http.Server.Shutdown does not wait for) to the goroutines Close waits for.
// It returns false once Close has begun; otherwise the caller must call
// a.wg.Done when finished.
func (a *API) track() bool {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closing {
		return false
	}
	a.wg.Add(1)
	return true
}

// janitor deletes expired API keys and sessions hourly.
func (a *API) janitor() {
	defer a.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := a.db.DeleteExpiredAPIKeys(a.ctx); err != nil && a.ctx.Err() == nil {
			a.logger.Warn("delete expired api keys", "err", err)
		}
		if err := a.db.DeleteExpiredSessions(a.ctx); err != nil && a.ctx.Err() == nil {
			a.logger.Warn("delete expired sessions", "err", err)
		}
		if err := a.db.DeleteExpiredAppTokenKeys(a.ctx); err != nil && a.ctx.Err() == nil {
			a.logger.Warn("delete expired app token keys", "err", err)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *API) routes() {
	mux := http.NewServeMux()
	a.mux = mux
	h, wu, wo := a.handle, a.withUser, a.withOwner

	// Pages.
	mux.Handle("GET /static/", http.StripPrefix("/static/", static.Handler()))
	mux.HandleFunc("GET /{$}", h(a.serveIndex))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) })
	mux.HandleFunc("GET /setup", h(a.serveSetupPage))
	mux.HandleFunc("POST /setup", h(a.serveSetupForm))
	mux.HandleFunc("GET /login", h(a.serveLoginPage))
	mux.HandleFunc("POST /login", h(a.serveLoginForm))
	mux.HandleFunc("POST /logout", h(a.serveLogoutForm))
	mux.HandleFunc("GET /cli-auth", wu(a.serveCLIAuthPage))
	mux.HandleFunc("POST /cli-auth", wu(a.serveCLIAuthForm))
	mux.HandleFunc("GET /workspaces", wu(a.serveWorkspacesPage))
	mux.HandleFunc("POST /workspaces", wu(a.serveCreateWorkspaceForm))
	// Workspace URLs, /@{user}/{workspace}[.{agent}]/..., are routed by
	// serveAt: the mux cannot match a wildcard after "@".
	mux.HandleFunc("/", h(a.serveAt))
	mux.HandleFunc("GET /users", wo(a.serveUsersPage))
	mux.HandleFunc("POST /users", wo(a.serveCreateUserForm))
	mux.HandleFunc("POST /users/{id}/delete", wo(a.serveDeleteUserForm))
	mux.HandleFunc("GET /templates", wo(a.serveTemplatesPage))
	mux.HandleFunc("GET /deployment", wo(a.serveDeploymentPage))

	// JSON API.
	mux.HandleFunc("GET /api/v2/buildinfo", h(a.serveBuildInfo))
	mux.HandleFunc("POST /api/v2/users/first", h(a.serveCreateFirstUser))
	mux.HandleFunc("POST /api/v2/users/login", h(a.serveLogin))
	mux.HandleFunc("POST /api/v2/users/logout", wu(a.serveLogout))
	mux.HandleFunc("GET /api/v2/users/me", wu(a.serveMe))
	mux.HandleFunc("GET /api/v2/users", wo(a.serveListUsers))
	mux.HandleFunc("POST /api/v2/users", wo(a.serveCreateUser))
	mux.HandleFunc("DELETE /api/v2/users/{user}", wo(a.serveDeleteUser))
	mux.HandleFunc("GET /api/v2/templates", wu(a.serveListTemplates))
	mux.HandleFunc("PUT /api/v2/templates/{name}", wo(a.servePushTemplate))
	mux.HandleFunc("GET /api/v2/workspaces", wu(a.serveListWorkspaces))
	mux.HandleFunc("POST /api/v2/workspaces", wu(a.serveCreateWorkspace))
	mux.HandleFunc("GET /api/v2/users/{user}/workspace/{workspace}", wu(a.serveGetWorkspace))
	mux.HandleFunc("POST /api/v2/workspaces/{id}/{action}", wu(a.serveWorkspaceTransition))
	mux.HandleFunc("DELETE /api/v2/workspaces/{id}", wu(a.serveDeleteWorkspace))
	mux.HandleFunc("POST /api/v2/workspaceagents/{id}/token", wu(a.serveRegenerateAgentToken))
	mux.HandleFunc("GET /api/v2/workspaceagents/me/connect", h(a.serveAgentConnect))
	mux.HandleFunc("GET /api/v2/derp-map", wu(a.serveDERPMap))
	mux.HandleFunc("GET "+apps.AuthRedirectPath, a.serveAppAuthRedirect)
	a.front.Attach(mux) // GET /api/v2/workspaceagents/{agent}/pty
	mux.HandleFunc("GET /api/v2/workspaceagents/{id}/connection", wu(a.serveAgentConnection))
	mux.HandleFunc("GET /api/v2/workspaceagents/{id}/listening-ports", wu(a.serveListeningPorts))
	mux.HandleFunc("GET /api/v2/workspaces/{id}/port-share", wu(a.servePortShares))
	mux.HandleFunc("POST /api/v2/workspaces/{id}/port-share", wu(a.servePortShareUpsert))
	mux.HandleFunc("DELETE /api/v2/workspaces/{id}/port-share", wu(a.servePortShareDelete))
	mux.HandleFunc("/api/", h(func(w http.ResponseWriter, r *http.Request) error {
		return &HTTPError{Code: http.StatusNotFound, Msg: "There is no API route " + r.Method + " " + r.URL.Path + "."}
	}))

	// The control protocol, DERP and STUN probes are not browser routes:
	// they skip sessions and cross-origin checks, and hijack the connection.
	tailnetPaths := map[string]bool{}
	if a.tailnet != nil {
		for _, p := range tailnet.Paths {
			tailnetPaths[p] = true
			mux.Handle(p, a.tailnet) // for the route label of metrics
		}
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.serveError(w, r, &HTTPError{Code: http.StatusForbidden, Msg: "Cross-site request refused. Submit the form from the dashboard itself."})
	}))
	browser := a.refuseNULPath(cop.Handler(a.sessions.LoadAndSave(securityHeaders(mux))))
	// Hosts under the wildcard are apps' own origins: the front door
	// serves them (with metrics of its own), never the dashboard.
	a.handler = a.front.HandleSubdomain(a.metrics.instrument(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tailnetPaths[r.URL.Path] {
			a.tailnet.ServeHTTP(w, r)
			return
		}
		browser.ServeHTTP(w, r)
	})))
}

// securityHeaders sets headers every dashboard response carries. Only
// pages of the dashboard's own origin may frame it. Cross-Origin-Opener-Policy
// puts a dashboard page that a path app opens with window.open (or
// navigates a window to) in a browsing context group of its own, so the
// app's script cannot read it; path app responses go out without it (see
// serveApp).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}

// setSecurityHeaders sets the headers of securityHeaders on h (again, for
// a dashboard page written where an app's response was going: the 502
// page).
func setSecurityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'self'; base-uri 'self'; form-action 'self'")
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// workspaceChannel is the pubsub channel of workspace changes; the payload
// is the workspace id.
const workspaceChannel = "workspace_updates"

// notifyWorkspace tells every replica's open pages of the workspace that it
// changed. The local pages are woken at once, without waiting for the
// round trip.
func (a *API) notifyWorkspace(id string) {
	a.events.publish(id)
	if err := a.pubsub.Publish(context.WithoutCancel(a.ctx), workspaceChannel, []byte(id)); err != nil && a.ctx.Err() == nil {
		a.logger.Warn("publish workspace change", "workspace_id", id, "err", err)
	}
}
