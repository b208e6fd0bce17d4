package apps

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatewaydev/coder/sdk"
)

// SubdomainApp is what a subdomain app's or port URL's host resolves to.
type SubdomainApp struct {
	AgentID     string
	WorkspaceID string
	// OwnerID is the workspace's owner.
	OwnerID string
	// URL is the app's URL on the agent, like http://localhost:8080; for a
	// port URL, http(s)://localhost:{port}.
	URL string
	// Share is the sharing level: sdk.ShareOwner, ShareAuthenticated or
	// SharePublic.
	Share string
	// IdentityHeaders: the template asks that the app receive its visitor's
	// identity ([IdentityHeaders]); never for a public app.
	IdentityHeaders bool
}

// Identity is who a token's visitor is, for the identity headers.
type Identity struct {
	UserID, Username, Email string
}

// Identity headers set on requests to an app whose template asks for them
// (sdk.App.IdentityHeaders) and that is not public. Every request header
// whose name starts with "Coder-" is removed before they are set, so that
// a visitor cannot send them to any app.
const (
	HeaderUserID   = "Coder-User-Id"
	HeaderUsername = "Coder-Username"
	HeaderEmail    = "Coder-User-Email"
)

// SubdomainAuthorizer resolves subdomain app and port hosts and checks
// their tokens; handlers implements it from the store, a workspace proxy
// will from calls to the primary.
type SubdomainAuthorizer interface {
	// LookupSubdomain resolves h. For a port URL the Share it returns is
	// ignored: the Server asks PortShareLevel. A host that names nothing
	// is an error; the Server answers it like an app that needs a token,
	// so that anonymous visitors cannot tell which apps exist.
	LookupSubdomain(ctx context.Context, h AppHost) (SubdomainApp, error)
	// PortShareLevel is the sharing level of port on agentID
	// (sdk.ShareOwner unless its owner shared it).
	PortShareLevel(ctx context.Context, agentID string, port uint16) (string, error)
	// AuthorizeToken says whether the visitor of t may still open app:
	// the token has not been revoked (logout), the user exists, and the
	// app's sharing level lets them in. It returns who they are.
	AuthorizeToken(ctx context.Context, t Token, app SubdomainApp) (Identity, error)
}

// SubdomainOptions turn on subdomain apps and port URLs.
type SubdomainOptions struct {
	Wildcard   Wildcard
	Authorizer SubdomainAuthorizer
	Keys       TokenKeys
	// AuthRedirectURL is the primary's endpoint that checks the dashboard
	// session and sends the visitor back with a token: [AuthRedirectPath]
	// on the access URL.
	AuthRedirectURL *url.URL
}

// AuthRedirectPath is the primary's route that issues app tokens:
// ?redirect_uri= the app URL to return to.
const AuthRedirectPath = "/api/v2/applications/auth-redirect"

// errBadHost is the 400 of a host under the wildcard that names no app.
func errBadHost(err error) error {
	return &Error{Code: http.StatusBadRequest, Msg: err.Error() + " Open apps from the workspace page.", Err: err}
}

// errTokenInURL refuses a token in the URL that does not open this app.
var errTokenInURL = &Error{Code: http.StatusBadRequest, Msg: "The sign-in link of this app is not valid, or has expired. Open the app again from the workspace page."}

// errAppSignIn refuses a request that needs a token and cannot be
// redirected to get one (a websocket, a POST, a script's fetch).
var errAppSignIn = &Error{Code: http.StatusUnauthorized, Msg: "Your sign-in to this app is missing or has expired. Reload the app's page to sign in again."}

// serveSubdomain serves a request whose host is under the wildcard.
func (s *Server) serveSubdomain(w http.ResponseWriter, r *http.Request, label string) error {
	so := s.opts.Subdomain
	h, err := ParseAppHost(label)
	if err != nil {
		return errBadHost(err)
	}
	if r.Header.Get(sdk.SessionTokenHeader) != "" && s.opts.BrowserOnly {
		return errBrowserOnlyToken
	}
	host := h.String()
	ctx := r.Context()
	// A token fresh from the primary: into this host's cookie, out of the
	// URL. The app never sees it.
	if q := r.URL.Query(); q.Has(TokenQueryParam) {
		raw := q.Get(TokenQueryParam)
		t, err := OpenToken(ctx, so.Keys, raw, time.Now(), AccessSubdomain, host)
		if err != nil {
			s.opts.Metrics.TokenRefused("query")
			return &Error{Code: errTokenInURL.Code, Msg: errTokenInURL.Msg, Err: err}
		}
		http.SetCookie(w, &http.Cookie{
			Name: TokenCookie, Value: raw, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
			Secure:  r.TLS != nil || s.opts.AccessURL != nil && s.opts.AccessURL.Scheme == "https",
			Expires: time.Unix(t.ExpiresAt, 0),
		})
		q.Del(TokenQueryParam)
		u := *r.URL
		u.RawQuery = q.Encode()
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return nil
	}
	app, lookupErr := so.Authorizer.LookupSubdomain(ctx, h)
	if lookupErr == nil && h.Port != 0 {
		scheme := "http"
		if h.HTTPS {
			scheme = "https"
		}
		app.URL = scheme + "://localhost:" + strconv.Itoa(int(h.Port))
		app.Share, err = so.Authorizer.PortShareLevel(ctx, app.AgentID, h.Port)
		if err != nil {
			return err
		}
	}
	if lookupErr == nil && app.Share == sdk.SharePublic {
		return s.serveSubdomainApp(w, r, app, nil)
	}
	var tokErr error
	if c, err := r.Cookie(TokenCookie); err == nil {
		t, err := OpenToken(ctx, so.Keys, c.Value, time.Now(), AccessSubdomain, host)
		if err == nil && lookupErr == nil && t.AgentID == app.AgentID && t.WorkspaceID == app.WorkspaceID {
			id, err := so.Authorizer.AuthorizeToken(ctx, t, app)
			if err == nil {
				return s.serveSubdomainApp(w, r, app, &id)
			}
			tokErr = err
		} else {
			tokErr = errors.Join(err, lookupErr)
		}
		s.opts.Metrics.TokenRefused("cookie")
		s.opts.Logger.Debug("app token refused", "host", host, "err", tokErr)
	}
	// No token that opens: only a page load can be sent to sign in.
	upgrade := r.Header.Get("Upgrade") != ""
	if upgrade || r.Method != http.MethodGet && r.Method != http.MethodHead || r.Header.Get("Sec-Fetch-Mode") == "cors" {
		return &Error{Code: errAppSignIn.Code, Msg: errAppSignIn.Msg, Err: tokErr}
	}
	back := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if r.TLS != nil || s.opts.AccessURL != nil && s.opts.AccessURL.Scheme == "https" {
		back.Scheme = "https"
	}
	to := *so.AuthRedirectURL
	to.RawQuery = url.Values{"redirect_uri": {back.String()}}.Encode()
	http.Redirect(w, r, to.String(), http.StatusSeeOther)
	return nil
}

// serveSubdomainApp proxies r to app; id, when the app asks for it and is
// not public, goes along in the identity headers.
func (s *Server) serveSubdomainApp(w http.ResponseWriter, r *http.Request, app SubdomainApp, id *Identity) error {
	target, err := url.Parse(app.URL)
	if err != nil {
		return &Error{Code: http.StatusBadGateway, Msg: "The app's URL in the template is not valid.", Err: err}
	}
	t := Target{URL: target, AgentID: app.AgentID, Host: true}
	if id != nil && app.IdentityHeaders && app.Share != sdk.SharePublic {
		t.Headers = http.Header{}
		t.Headers.Set(HeaderUserID, id.UserID)
		t.Headers.Set(HeaderUsername, id.Username)
		t.Headers.Set(HeaderEmail, id.Email)
	}
	for _, h := range dashboardHeaders {
		w.Header().Del(h)
	}
	s.proxy.Serve(w, r, t)
	return nil
}

// isWebsocket tells whether r asks for a websocket.
func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
