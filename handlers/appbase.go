package handlers

import (
	"net/url"
	"strings"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
)

// appBasePath is the path the dashboard opens app at: "/" when it opens
// on a host of its own (subdomain: true with a wildcard access URL), else
// its path-app prefix. It fills ${CODER_APP_BASE_PATH} in the app's url
// for both proxies and $CODER_APP_BASE_PATH_<SLUG> in the startup script,
// so the app and the proxy agree on it.
func (a *API) appBasePath(owner, workspace, agent string, app sdk.App) string {
	return sdk.AppBasePath(owner, workspace, agent, app.Slug, app.Subdomain && a.wildcard != nil)
}

// appBasePaths is appBasePath for every app of spec, by slug.
func (a *API) appBasePaths(owner, workspace, agent string, spec sdk.TemplateAgent) map[string]string {
	if len(spec.Apps) == 0 {
		return nil
	}
	m := make(map[string]string, len(spec.Apps))
	for _, app := range spec.Apps {
		m[app.Slug] = a.appBasePath(owner, workspace, agent, app)
	}
	return m
}

// appOrigins is, for every app of spec, the origin (scheme://host[:port])
// that the dashboard opens it on: its own host for a subdomain app with a
// wildcard, else the access URL's. An app that checks the Origin of its
// requests (Jupyter's allow_origin) allows it.
func (a *API) appOrigins(owner, workspace, agent string, spec sdk.TemplateAgent) map[string]string {
	if len(spec.Apps) == 0 || a.opts.AccessURL == nil {
		return nil
	}
	dash := (&url.URL{Scheme: a.opts.AccessURL.Scheme, Host: a.opts.AccessURL.Host}).String()
	m := make(map[string]string, len(spec.Apps))
	for _, app := range spec.Apps {
		m[app.Slug] = dash
		if app.Subdomain && a.wildcard != nil {
			u, err := url.Parse(a.appHostURL(apps.AppHost{Slug: app.Slug, Agent: agent, Workspace: workspace, User: owner}))
			if err == nil {
				m[app.Slug] = strings.ToLower((&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
			}
		}
	}
	return m
}
