package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/web"
)

// appRefusal says why a path app does not open for a visitor; the zero
// value, appOpens, means it opens.
type appRefusal int

const (
	appOpens appRefusal = iota
	// appPrivate: the app is not shared with the visitor even by its
	// template; the visitor gets a 404, as for a workspace they cannot see.
	appPrivate
	// appSharingOff: the template shares the app, the deployment does not
	// allow path-app sharing.
	appSharingOff
	// appSiteOwnerOff: a site owner opens another user's app without
	// --dangerous-allow-path-app-site-owner-access.
	appSiteOwnerOff
	// appsDisabled: the deployment serves no path apps
	// (--disable-path-apps).
	appsDisabled
)

// pathAppAccess decides whether u (nil: anonymous) may open a path app of
// workspace wk shared at level share. A path app is served on the
// dashboard's origin, so its scripts act as its visitor: by default it
// opens for the workspace's owner only. Options.DangerousAllowPathAppSharing
// applies the template's share level; DangerousAllowPathAppSiteOwnerAccess
// lets site owners in.
func (a *API) pathAppAccess(share string, u *store.User, wk store.Workspace) appRefusal {
	if u != nil && u.ID == wk.OwnerID {
		return appOpens
	}
	shared := share == sdk.SharePublic || share == sdk.ShareAuthenticated && u != nil
	if shared && a.opts.DangerousAllowPathAppSharing {
		return appOpens
	}
	if u == nil {
		return appPrivate
	}
	if u.Role == store.RoleOwner {
		if a.opts.DangerousAllowPathAppSiteOwnerAccess {
			return appOpens
		}
		return appSiteOwnerOff
	}
	if shared {
		return appSharingOff
	}
	return appPrivate
}

// dashboardCookies names every cookie the dashboard sets. None of them
// reaches an app, and an app cannot set one (apps.RewriteSetCookie). Add a
// cookie here when the dashboard starts to set one.
//
// What else a browser sends with a request to a path app, and why it
// passes: the app's own cookies (those with a Path under the app, and any
// other cookie of the origin that is not the dashboard's: the dashboard
// sets none); Authorization, which the dashboard never uses (browsers send
// it only after the app itself asked for HTTP authentication); Referer,
// whose dashboard URLs carry no secret (no token is ever put in a URL);
// Origin and Sec-Fetch-*, which apps need for their own CSRF checks. The
// Coder-Session-Token header, which only the CLI sends, is stripped
// (apps.Options.StripHeaders).
func (a *API) dashboardCookies() []string {
	return []string{apps.TokenCookie, a.sessions.Cookie.Name}
}

// appResponseHeaders are response headers of a path app that never reach
// the browser, because on the dashboard's origin they reach beyond the app:
// Service-Worker-Allowed would let the app install a service worker over
// every dashboard page, Clear-Site-Data would wipe the dashboard's session,
// and the app's own Cross-Origin-Opener-Policy could keep a window that it
// opens on a dashboard page (which sends "same-origin") scriptable.
var appResponseHeaders = []string{"Service-Worker-Allowed", "Clear-Site-Data", "Cross-Origin-Opener-Policy"}

// refuseApp renders the page that says why a path app did not open.
func (a *API) refuseApp(w http.ResponseWriter, r *http.Request, why appRefusal) error {
	p := web.AppRefusedPage{Nav: a.nav(r, ""), Title: "This app does not open here",
		Help: "Subdomain apps, each on an address of its own, are the safe way to share an app."}
	const risk = " An administrator can allow this, at the risk described above, with "
	switch why {
	case appSharingOff:
		p.Reason = "Its template shares it, but sharing path apps is off on this deployment: a path app runs on the dashboard's own address, so its pages could act as you. Only the workspace's owner can open it."
		p.Help += risk + "--dangerous-allow-path-app-sharing."
	case appSiteOwnerOff:
		p.Reason = "It belongs to another user's workspace. A path app runs on the dashboard's own address, so its pages could act as you, with your owner rights; site owners do not open other users' path apps on this deployment."
		p.Help += risk + "--dangerous-allow-path-app-site-owner-access."
	case appsDisabled:
		p.Title = "Path apps are off"
		p.Reason = "This deployment does not serve path-based apps (--disable-path-apps)."
	default:
		return fmt.Errorf("refuse app: unexpected reason %d", why)
	}
	return render(w, r, http.StatusForbidden, web.AppRefused(p))
}

// appAuthorizer is the front door's apps.Authorizer: it reads users,
// workspaces and agents from the store and applies pathAppAccess.
type appAuthorizer struct {
	a *API
	// targets keeps the workspaces that path apps resolved to, briefly.
	targets appTargetCache
	// users keeps the users and app-session generations of app tokens,
	// briefly.
	users tokenUsers
}

// Authenticate attaches the user of r's session or API token to its
// context (userKey, apiKeyIDKey), as withUser does; anonymous is not an
// error.
func (z *appAuthorizer) Authenticate(r *http.Request) (*http.Request, apps.Visitor, error) {
	u, keyID, ok, err := z.a.authenticate(r)
	if err != nil || !ok {
		return r, apps.Visitor{}, err
	}
	ctx := context.WithValue(r.Context(), userKey, u)
	ctx = context.WithValue(ctx, apiKeyIDKey, keyID)
	return r.WithContext(ctx), apps.Visitor{UserID: u.ID, Token: keyID != ""}, nil
}

// appRefused is an app that exists and does not open for a logged-in
// visitor, for a reason the refusal page gives (writeFrontError).
type appRefused struct{ why appRefusal }

func (e appRefused) Error() string { return fmt.Sprintf("path app refused (reason %d)", e.why) }

// AuthorizeApp resolves /@{user}/{workspace}.{agent}/apps/{slug} with three
// reads (user, workspace, its agents), which it reuses for appTargetTTL,
// and applies pathAppAccess to the visitor of this request. Until the
// visitor is logged in, every app that does not open (unknown user,
// workspace, agent or slug, or an app that is not public) is
// apps.ErrLoginRequired, so that anonymous visitors cannot tell which
// exist.
func (z *appAuthorizer) AuthorizeApp(r *http.Request, v apps.Visitor, req apps.AppRequest) (apps.App, error) {
	a := z.a
	var user *store.User
	if v.UserID != "" {
		u := userFrom(r)
		user = &u
	}
	notFound := func() (apps.App, error) {
		if user == nil {
			return apps.App{}, apps.ErrLoginRequired
		}
		return apps.App{}, notFoundErr("The app")
	}
	p := req.Path
	wk, ags, err := z.targets.lookup(r.Context(), a.db, p.User, p.Workspace)
	if errors.Is(err, store.ErrNotFound) {
		return notFound()
	}
	if err != nil {
		return apps.App{}, err
	}
	for _, ag := range ags {
		if ag.Name != p.Agent {
			continue
		}
		for _, app := range agentSpec(ag).Apps {
			if app.Slug != req.Slug {
				continue
			}
			switch why := a.pathAppAccess(app.Share, user, wk); why {
			case appOpens:
				return apps.App{AgentID: ag.ID, URL: sdk.ExpandAppURLAt(app.URL, wk.OwnerName, wk.Name, ag.Name, z.a.appBasePath(wk.OwnerName, wk.Name, ag.Name, app)), Offline: agentStatus(ag, time.Now()) != sdk.AgentConnected}, nil
			case appPrivate:
				return notFound()
			default:
				return apps.App{}, appRefused{why}
			}
		}
	}
	return notFound()
}

// AuthorizeAgent loads an agent whose workspace the visitor owns (see
// agentForUser).
func (z *appAuthorizer) AuthorizeAgent(r *http.Request, _ apps.Visitor, agentID string) (apps.Agent, error) {
	ag, _, err := z.a.agentForUser(r, agentID)
	if err != nil {
		return apps.Agent{}, err
	}
	return apps.Agent{ID: ag.ID, Status: agentStatus(ag, time.Now())}, nil
}

// writeFrontError renders the front door's errors: the refusal page for a
// path app that does not open here, else the error page or JSON.
func (a *API) writeFrontError(w http.ResponseWriter, r *http.Request, err error) {
	var ref appRefused
	var bg *apps.BadGateway
	switch {
	case errors.As(err, &bg):
		err = a.renderAppUnavailable(w, r, bg)
	case errors.Is(err, apps.ErrPathAppsDisabled):
		err = a.refuseApp(w, r, appsDisabled)
	case errors.As(err, &ref):
		err = a.refuseApp(w, r, ref.why)
	}
	if err != nil {
		a.serveError(w, r, err)
	}
}

// appView is a path app as the workspace page shows it: its link, and a
// note when the deployment limits it (path apps off, or a share level that
// the deployment does not apply).
func (a *API) appView(agentPath string, app sdk.App) web.App {
	v := web.App{Slug: app.Slug, DisplayName: app.DisplayName, Share: app.Share,
		URL: apps.AppLink(agentPath, app.Slug)}
	switch {
	case a.opts.DisablePathApps:
		v.URL = ""
		v.Note = "path apps are off on this deployment"
	case a.opts.DangerousAllowPathAppSharing:
	case app.Share == sdk.ShareAuthenticated:
		v.Note = "shared with authenticated users in the template; path-app sharing is off on this deployment"
	case app.Share == sdk.SharePublic:
		v.Note = "shared publicly in the template; path-app sharing is off on this deployment"
	}
	return v
}
