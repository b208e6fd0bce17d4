package handlers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/web"
)

// Defaults of the app tokens' lifetimes.
const (
	// defaultAppTokenLifetime is how long an app token opens its app; then
	// the app's next page load renews it by a redirect through the
	// primary.
	defaultAppTokenLifetime = time.Hour
	// appTokenKeyRotation is how long a key of the ring encrypts new
	// tokens; it decrypts them until the last of them expires.
	appTokenKeyRotation = 7 * 24 * time.Hour
	// maxAppRedirects bounds the sign-in redirects to one app host within
	// appRedirectWindow: a browser that keeps no cookie for the app's host
	// would otherwise bounce between it and the primary for ever.
	maxAppRedirects   = 5
	appRedirectWindow = time.Minute
)

// appTokenKeys is the app tokens' key ring (apps.TokenKeys), stored in the
// database so that every replica encrypts and decrypts with the same keys.
// A key encrypts for rotation, then decrypts only, until expiry (rotation
// plus the tokens' lifetime); expired keys are refused and deleted by the
// janitor. Keys are kept in memory once read: they never change.
type appTokenKeys struct {
	db       *store.DB
	rotation time.Duration
	lifetime time.Duration

	mu      sync.Mutex
	current store.AppTokenKey
	byID    map[string]store.AppTokenKey
}

func newAppTokenKeys(db *store.DB, rotation, lifetime time.Duration) *appTokenKeys {
	return &appTokenKeys{db: db, rotation: rotation, lifetime: lifetime, byID: map[string]store.AppTokenKey{}}
}

// EncryptionKey returns the newest key created within the rotation period,
// creating one when there is none.
func (k *appTokenKeys) EncryptionKey(ctx context.Context) (apps.TokenKey, error) {
	now := time.Now()
	k.mu.Lock()
	cur := k.current
	k.mu.Unlock()
	if cur.ID != "" && now.Before(cur.CreatedAt.Add(k.rotation)) {
		return apps.TokenKey{ID: cur.ID, Secret: cur.Secret}, nil
	}
	key, err := k.db.NewestAppTokenKey(ctx, now.Add(-k.rotation))
	if errors.Is(err, store.ErrNotFound) {
		secret := make([]byte, 32)
		rand.Read(secret)
		err = k.db.CreateAppTokenKey(ctx, store.AppTokenKey{ID: randomAlnum(16), Secret: secret, ExpiresAt: now.Add(k.rotation + k.lifetime)})
		if err != nil {
			return apps.TokenKey{}, fmt.Errorf("create app token key: %w", err)
		}
		// Another replica may have made one at the same time: both stay
		// valid, and from now on every replica picks the newest.
		key, err = k.db.NewestAppTokenKey(ctx, now.Add(-k.rotation))
	}
	if err != nil {
		return apps.TokenKey{}, fmt.Errorf("read app token key: %w", err)
	}
	k.mu.Lock()
	k.current = key
	k.byID[key.ID] = key
	k.mu.Unlock()
	return apps.TokenKey{ID: key.ID, Secret: key.Secret}, nil
}

// DecryptionKey returns the key id unless it is unknown or expired.
func (k *appTokenKeys) DecryptionKey(ctx context.Context, id string) (apps.TokenKey, error) {
	if id == "" || len(id) > 64 {
		return apps.TokenKey{}, errors.New("no key id")
	}
	k.mu.Lock()
	key, ok := k.byID[id]
	k.mu.Unlock()
	if !ok {
		var err error
		key, err = k.db.AppTokenKeyByID(ctx, id)
		if err != nil {
			return apps.TokenKey{}, err
		}
		k.mu.Lock()
		if len(k.byID) > 1024 {
			clear(k.byID)
		}
		k.byID[id] = key
		k.mu.Unlock()
	}
	if !time.Now().Before(key.ExpiresAt) {
		return apps.TokenKey{}, fmt.Errorf("key expired at %v", key.ExpiresAt)
	}
	return apps.TokenKey{ID: key.ID, Secret: key.Secret}, nil
}

// LookupSubdomain resolves a subdomain app's or port URL's host from the
// store (through the path apps' short cache).
func (z *appAuthorizer) LookupSubdomain(ctx context.Context, h apps.AppHost) (apps.SubdomainApp, error) {
	wk, ags, err := z.targets.lookup(ctx, z.a.db, h.User, h.Workspace)
	if err != nil {
		return apps.SubdomainApp{}, err
	}
	for _, ag := range ags {
		if ag.Name != h.Agent {
			continue
		}
		out := apps.SubdomainApp{AgentID: ag.ID, WorkspaceID: wk.ID, OwnerID: wk.OwnerID}
		if h.Port != 0 {
			return out, nil
		}
		for _, app := range agentSpec(ag).Apps {
			if app.Slug == h.Slug {
				out.URL, out.Share, out.IdentityHeaders = sdk.ExpandAppURLAt(app.URL, wk.OwnerName, wk.Name, ag.Name, z.a.appBasePath(wk.OwnerName, wk.Name, ag.Name, app)), app.Share, app.IdentityHeaders
				return out, nil
			}
		}
	}
	return apps.SubdomainApp{}, store.ErrNotFound
}

// PortShareLevel is the sharing level of a port URL: what the owner set
// on the workspace page (workspace_agent_port_shares), owner when unshared.
// It is read on every request, so a revoked share closes at once.
func (z *appAuthorizer) PortShareLevel(ctx context.Context, agentID string, port uint16) (string, error) {
	ag, err := z.a.db.AgentByID(ctx, agentID)
	if err != nil {
		return "", err
	}
	return z.a.db.PortShareLevel(ctx, ag.WorkspaceID, ag.Name, int(port))
}

// errAppTokenRefused is every reason a token's visitor may no longer open
// an app (the front door logs it and signs the visitor in again).
var errAppTokenRefused = errors.New("app token refused")

// AuthorizeToken checks a token that decrypted for its host: the user
// still exists and has not logged out since, and the app's sharing level
// lets them in.
func (z *appAuthorizer) AuthorizeToken(ctx context.Context, t apps.Token, app apps.SubdomainApp) (apps.Identity, error) {
	u, gen, err := z.tokenUser(ctx, t.UserID)
	if err != nil {
		return apps.Identity{}, fmt.Errorf("%w: user: %w", errAppTokenRefused, err)
	}
	if gen != t.Generation {
		return apps.Identity{}, fmt.Errorf("%w: the user logged out", errAppTokenRefused)
	}
	if !subdomainAccess(app.Share, u.ID, app.OwnerID) {
		return apps.Identity{}, fmt.Errorf("%w: share level %s", errAppTokenRefused, app.Share)
	}
	return apps.Identity{UserID: u.ID, Username: u.Username, Email: u.Email}, nil
}

// subdomainAccess is the sharing rule of subdomain apps and port URLs,
// each on an origin of its own: owner opens for the workspace's owner,
// authenticated for every user, public for anyone (no token at all).
func subdomainAccess(share, userID, ownerID string) bool {
	switch share {
	case sdk.SharePublic, sdk.ShareAuthenticated:
		return true
	default:
		return userID == ownerID
	}
}

// onAppHost tells whether r came to a host under the wildcard (an app's
// error page is rendered there).
func (a *API) onAppHost(r *http.Request) bool {
	if a.wildcard == nil || strings.EqualFold(r.Host, a.opts.AccessURL.Host) {
		return false
	}
	_, ok := a.wildcard.Label(r.Host)
	return ok
}

// appRedirectKey is the session key that counts sign-in redirects to
// one app host: "{host} {count} {since}".
const appRedirectKey = "app_redirects"

// serveAppAuthRedirect is the primary's end of an app's sign-in: the app's
// host sent the visitor here with ?redirect_uri= the app URL. It checks the
// dashboard session (login first if needed, then back here), that the URL
// names an app under the wildcard, and that the user may open it, and sends
// the visitor back with a fresh app token in the URL, which the app's host
// moves into its own cookie. Its errors are pages: a browser navigated
// here.
func (a *API) serveAppAuthRedirect(w http.ResponseWriter, r *http.Request) {
	if err := a.appAuthRedirect(w, r); err != nil {
		var he *HTTPError
		if !errors.As(err, &he) {
			a.serveError(w, r, err)
			return
		}
		if he.Code < 500 {
			a.front.Metrics().TokenRefused("issue")
		}
		if he.Err != nil {
			a.logger.Debug("app sign-in refused", "status", he.Code, "err", he.Err)
		}
		a.renderErrorPage(w, r, he)
	}
}

func (a *API) appAuthRedirect(w http.ResponseWriter, r *http.Request) error {
	if a.wildcard == nil {
		return &HTTPError{Code: http.StatusNotFound, Msg: "Subdomain apps are off on this deployment: its administrator can set --wildcard-access-url to turn them on."}
	}
	// A page may send a visitor here (a link), but not load it as a
	// frame, an image or a script's fetch.
	if err := topLevelOnly(r); err != nil {
		return &HTTPError{Code: http.StatusForbidden, Msg: "App sign-in opens only as a page of its own: open the app from the workspace page."}
	}
	back, h, err := a.parseAppRedirect(r.URL.Query().Get("redirect_uri"))
	if err != nil {
		return err
	}
	u, keyID, ok, err := a.authenticate(r)
	if err != nil {
		return err
	}
	if !ok {
		http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil
	}
	if keyID != "" {
		return &HTTPError{Code: http.StatusForbidden, Msg: "Apps sign in with the dashboard's browser session, not an API token: open the app in a browser."}
	}
	if err := a.countAppRedirect(r, back.Host); err != nil {
		return err
	}
	z := a.appAuthz
	app, err := z.LookupSubdomain(r.Context(), h)
	if errors.Is(err, store.ErrNotFound) {
		return notFoundErr("The app")
	}
	if err != nil {
		return err
	}
	share := app.Share
	if h.Port != 0 {
		if share, err = z.PortShareLevel(r.Context(), app.AgentID, h.Port); err != nil {
			return err
		}
	}
	if !subdomainAccess(share, u.ID, app.OwnerID) {
		return notFoundErr("The app")
	}
	gen, err := a.db.AppSessionGeneration(r.Context(), u.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := apps.SealToken(r.Context(), a.tokenKeys, apps.Token{
		UserID: u.ID, Generation: gen, Host: h.String(), WorkspaceID: app.WorkspaceID, AgentID: app.AgentID,
		Method: apps.AccessSubdomain, IssuedAt: now.Unix(), ExpiresAt: now.Add(a.appTokenLifetime).Unix(),
	})
	if err != nil {
		return err
	}
	a.front.Metrics().TokenIssued()
	q := back.Query()
	q.Set(apps.TokenQueryParam, tok)
	back.RawQuery = q.Encode()
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, back.String(), http.StatusSeeOther)
	return nil
}

// errAppRedirect refuses a redirect_uri that is not an app under the
// wildcard.
func errAppRedirect(err error) error {
	return &HTTPError{Code: http.StatusBadRequest, Msg: "The address to return to is not an app of this deployment (under its wildcard domain). Open the app from the workspace page.", Err: err}
}

// parseAppRedirect checks that raw is an absolute URL of an app host
// under the wildcard, with the access URL's scheme and no user info.
func (a *API) parseAppRedirect(raw string) (*url.URL, apps.AppHost, error) {
	if raw == "" || len(raw) > 8192 || strings.ContainsAny(raw, "\\\x00\r\n\t ") {
		return nil, apps.AppHost{}, errAppRedirect(errors.New("empty, long or odd characters"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, apps.AppHost{}, errAppRedirect(err)
	}
	if u.Scheme != a.opts.AccessURL.Scheme || u.User != nil || u.Opaque != "" || u.Host == "" {
		return nil, apps.AppHost{}, errAppRedirect(fmt.Errorf("scheme %q, user info or no host", u.Scheme))
	}
	label, ok := a.wildcard.Label(u.Host)
	if !ok {
		return nil, apps.AppHost{}, errAppRedirect(fmt.Errorf("host %q is not under %s", u.Host, a.wildcard))
	}
	h, err := apps.ParseAppHost(label)
	if err != nil {
		return nil, apps.AppHost{}, errAppRedirect(err)
	}
	u.Host = strings.ToLower(u.Host)
	u.Fragment, u.RawFragment = "", ""
	return u, h, nil
}

// countAppRedirect counts a sign-in redirect to host in the session and
// refuses the one past maxAppRedirects within appRedirectWindow.
func (a *API) countAppRedirect(r *http.Request, host string) error {
	ctx := r.Context()
	now := time.Now()
	st, _ := a.sessions.Get(ctx, appRedirectKey).(string)
	h, rest, _ := strings.Cut(st, " ")
	n, since := 0, now.Unix()
	if c, s, ok := strings.Cut(rest, " "); ok && h == host {
		n, _ = strconv.Atoi(c)
		if t, err := strconv.ParseInt(s, 10, 64); err == nil && now.Sub(time.Unix(t, 0)) < appRedirectWindow {
			since = t
		} else {
			n = 0
		}
	}
	n++
	a.sessions.Put(ctx, appRedirectKey, fmt.Sprintf("%s %d %d", host, n, since))
	if n > maxAppRedirects {
		return &HTTPError{Code: http.StatusBadRequest, Msg: "This app asked you to sign in again and again: your browser does not keep the app's sign-in cookie. Allow cookies for " + a.wildcard.String() + ", then open the app again from the workspace page."}
	}
	return nil
}

// appLink is an app as the workspace page shows it. A subdomain app
// (subdomain: true in its template) links to its own host under the
// wildcard, where the template's sharing level applies; without a
// wildcard it falls back to its path URL (when path apps are on) and the
// page says so.
// appHostURL is the URL of a subdomain app or port URL: the wildcard's
// host for h, on the access URL's scheme, and on its port when the
// wildcard names none (the same listener serves both). Empty without a
// wildcard.
func (a *API) appHostURL(h apps.AppHost) string {
	if a.wildcard == nil || a.opts.AccessURL == nil {
		return ""
	}
	host := a.wildcard.Host(h.String())
	if a.wildcard.Port == "" {
		if p := a.opts.AccessURL.Port(); p != "" {
			host += ":" + p
		}
	}
	u := url.URL{Scheme: a.opts.AccessURL.Scheme, Host: host, Path: "/"}
	return u.String()
}

func (a *API) appLink(agentPath string, h apps.AppHost, app sdk.App) web.App {
	v := a.appView(agentPath, app)
	if !app.Subdomain {
		return v
	}
	if a.wildcard != nil {
		v.URL = a.appHostURL(h)
		v.Note = ""
		return v
	}
	note := "a subdomain app, but this deployment has no wildcard access URL (--wildcard-access-url)"
	if v.URL == "" {
		v.Note = note + " and path apps are off: it cannot be opened here"
		return v
	}
	v.Note = note + ": opened by path instead"
	if app.Share != sdk.ShareOwner && !a.opts.DangerousAllowPathAppSharing {
		v.Note += ", for the workspace's owner only"
	}
	return v
}

// tokenUserTTL is how long AuthorizeToken reuses a user and their
// app-session generation, so that an app's page and its assets do not
// each read them. A logout on this replica applies at once (forgetUser);
// on another replica, within this time.
const tokenUserTTL = time.Second

type tokenUserEntry struct {
	u       store.User
	gen     int64
	expires time.Time
}

// tokenUsers caches tokenUser's reads for tokenUserTTL.
type tokenUsers struct {
	mu      sync.Mutex
	entries map[string]tokenUserEntry
}

// tokenUser returns the user id and their app-session generation.
func (z *appAuthorizer) tokenUser(ctx context.Context, id string) (store.User, int64, error) {
	now := time.Now()
	c := &z.users
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.u, e.gen, nil
	}
	gen, err := z.a.db.AppSessionGeneration(ctx, id)
	if err != nil {
		return store.User{}, 0, err
	}
	u, err := z.a.db.UserByID(ctx, id)
	if err != nil {
		return store.User{}, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= appTargetCacheSize {
		c.entries = map[string]tokenUserEntry{}
	}
	c.entries[id] = tokenUserEntry{u: u, gen: gen, expires: now.Add(tokenUserTTL)}
	return u, gen, nil
}

// forgetUser drops id from the cache (after a logout).
func (z *appAuthorizer) forgetUser(id string) {
	z.users.mu.Lock()
	delete(z.users.entries, id)
	z.users.mu.Unlock()
}
