package handlers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
)

// appAccess says whether the request's user (if any) may open an app.
func appAccess(share string, u *store.User, wk store.Workspace) bool {
	switch share {
	case sdk.SharePublic:
		return true
	case sdk.ShareAuthenticated:
		return u != nil
	default:
		return u != nil && u.ID == wk.OwnerID
	}
}

// serveApp proxies a path-based app: /@{user}/{workspace}.{agent}/apps/{slug}/...
// over the tailnet to the agent, which forwards it to the app on its
// localhost. Access follows the app's share level; the dashboard cookie and
// token never reach the app.
func (a *API) serveApp(p atPath, slug string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var user *store.User
		if u, _, ok, err := a.authenticate(r); err != nil {
			return err
		} else if ok {
			user = &u
		}
		owner, err := a.db.UserByLogin(r.Context(), p.User)
		if errors.Is(err, store.ErrNotFound) {
			return notFoundErr("The app")
		}
		if err != nil {
			return err
		}
		wk, err := a.db.WorkspaceByOwnerAndName(r.Context(), owner.ID, p.Workspace)
		if errors.Is(err, store.ErrNotFound) {
			return notFoundErr("The app")
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
				if !appAccess(app.Share, user, wk) {
					if user == nil {
						http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
						return nil
					}
					return notFoundErr("The app")
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
				for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
					w.Header().Del(h)
				}
				agentID := ag.ID
				a.apps.Serve(w, r, apps.Target{URL: target, Prefix: prefix, Dial: func(ctx context.Context, port uint16) (net.Conn, error) {
					return a.DialAgent(ctx, agentID, port)
				}})
				return nil
			}
		}
		return notFoundErr("The app")
	}
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
