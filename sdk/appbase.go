package sdk

import (
	"net/url"
	"strings"
)

// VarAppBasePath may begin an app url's path as ${CODER_APP_BASE_PATH}:
// the path the dashboard opens the app at, with slashes at both ends
// (AppBasePath). An app that must know its path (like Jupyter's base_url)
// then works both on a host of its own and as a path app.
const VarAppBasePath = "CODER_APP_BASE_PATH"

// AppBasePath is the path at which the dashboard opens an app: "/" when it
// opens on a host of its own (ownHost: the template says subdomain: true
// and the deployment has a wildcard access URL), else its path-app prefix
// "/@owner/workspace.agent/apps/slug/".
func AppBasePath(owner, workspace, agent, slug string, ownHost bool) string {
	if ownHost {
		return "/"
	}
	return "/@" + url.PathEscape(owner) + "/" + url.PathEscape(workspace) + "." + url.PathEscape(agent) + "/apps/" + url.PathEscape(slug) + "/"
}

// AppBasePathEnv is the startup script's variable that holds app slug's
// base path: CODER_APP_BASE_PATH_ and the slug in upper case with '-' as
// '_' (CODER_APP_BASE_PATH_JUPYTER).
func AppBasePathEnv(slug string) string {
	return VarAppBasePath + "_" + strings.ToUpper(strings.ReplaceAll(slug, "-", "_"))
}

// ExpandAppURLAt is ExpandAppURL that also replaces ${CODER_APP_BASE_PATH}
// with base (an AppBasePath).
func ExpandAppURLAt(raw, owner, workspace, agent, base string) string {
	return ExpandAppURL(strings.ReplaceAll(raw, "${"+VarAppBasePath+"}", base), owner, workspace, agent)
}

// AppOriginEnv is the startup script's variable that holds app slug's
// origin (AgentManifest.AppOrigins): CODER_APP_ORIGIN_ and the slug as in
// AppBasePathEnv.
func AppOriginEnv(slug string) string {
	return "CODER_APP_ORIGIN_" + strings.ToUpper(strings.ReplaceAll(slug, "-", "_"))
}
