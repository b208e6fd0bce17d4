package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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
	return []string{a.sessions.Cookie.Name}
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

// serveApp proxies a path-based app: /@{user}/{workspace}.{agent}/apps/{slug}/...
// over the tailnet to the agent, which forwards it to the app on its
// localhost. Access follows pathAppAccess. Until the visitor is logged in,
// every app URL that does not open (unknown user, workspace, agent or
// slug, or an app that is not public) answers the same redirect to the
// login page, so that anonymous visitors cannot tell which exist. The
// dashboard's cookies and token never reach the app.
func (a *API) serveApp(p atPath, slug string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.opts.DisablePathApps {
			return a.refuseApp(w, r, appsDisabled)
		}
		// Browser-only mode: the session cookie from a page, never a token.
		if err := a.browserRequestOK(r); err != nil {
			return err
		}
		var user *store.User
		if u, _, ok, err := a.authenticate(r); err != nil {
			return err
		} else if ok {
			user = &u
			// The refusal page's navigation shows who is logged in.
			r = r.WithContext(context.WithValue(r.Context(), userKey, u))
		}
		notFound := func() error {
			if user == nil {
				http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return nil
			}
			return notFoundErr("The app")
		}
		owner, err := a.db.UserByLogin(r.Context(), p.User)
		if errors.Is(err, store.ErrNotFound) {
			return notFound()
		}
		if err != nil {
			return err
		}
		wk, err := a.db.WorkspaceByOwnerAndName(r.Context(), owner.ID, p.Workspace)
		if errors.Is(err, store.ErrNotFound) {
			return notFound()
		}
		if err != nil {
			return err
		}
		ags, err := a.db.AgentsByWorkspace(r.Context(), wk.ID)
		if err != nil {
			return err
		}
		for _, ag := range ags {
			if ag.Name != p.Agent {
				continue
			}
			for _, app := range agentSpec(ag).Apps {
				if app.Slug != slug {
					continue
				}
				switch why := a.pathAppAccess(app.Share, user, wk); why {
				case appOpens:
				case appPrivate:
					return notFound()
				default:
					return a.refuseApp(w, r, why)
				}
				target, err := url.Parse(app.URL)
				if err != nil {
					return &HTTPError{Code: http.StatusBadGateway, Msg: "The app's URL in the template is not valid.", Err: err}
				}
				prefix := "/@" + p.User + "/" + p.Workspace + "." + p.Agent + "/apps/" + slug
				if r.URL.Path == prefix {
					http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
					return nil
				}
				// The app's own headers apply, not the dashboard's.
				for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"} {
					w.Header().Del(h)
				}
				a.apps.Serve(w, r, apps.Target{URL: target, Prefix: prefix, AgentID: ag.ID})
				return nil
			}
		}
		return notFound()
	}
}

// appView is a path app as the workspace page shows it: its link, and a
// note when the deployment limits it (path apps off, or a share level that
// the deployment does not apply).
func (a *API) appView(agentPath string, app sdk.App) web.App {
	v := web.App{Slug: app.Slug, DisplayName: app.DisplayName, Share: app.Share,
		URL: agentPath + "/apps/" + url.PathEscape(app.Slug) + "/"}
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

// appSlug returns the slug of an app path's rest ("apps/{slug}[/...]").
func appSlug(rest string) (string, bool) {
	r, ok := strings.CutPrefix(rest, "apps/")
	if !ok {
		return "", false
	}
	slug, _, _ := strings.Cut(r, "/")
	return slug, sdk.ValidateName(slug) == nil
}
