package apps

import (
	"net/url"
	"strings"

	"github.com/gatewaydev/coder/sdk"
)

// Path is a parsed workspace URL: /@{user}/{workspace}[.{agent}]/{rest}.
// The dashboard serves the workspace's pages under it, and this package
// the agent's apps (/@{user}/{workspace}.{agent}/apps/{slug}/...).
type Path struct {
	User, Workspace, Agent, Rest string
}

// ParsePath parses a workspace URL path. ok is false for any other path.
func ParsePath(path string) (p Path, ok bool) {
	if !strings.HasPrefix(path, "/@") {
		return Path{}, false
	}
	parts := strings.SplitN(path[2:], "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return Path{}, false
	}
	p = Path{User: parts[0], Workspace: parts[1]}
	if ws, agent, ok := strings.Cut(p.Workspace, "."); ok {
		if ws == "" || agent == "" {
			return Path{}, false
		}
		p.Workspace, p.Agent = ws, agent
	}
	if len(parts) == 3 {
		p.Rest = parts[2]
	}
	return p, true
}

// AppSlug returns the slug of an app path's rest ("apps/{slug}[/...]"); ok
// is false unless the slug is a valid name.
func AppSlug(rest string) (slug string, ok bool) {
	r, ok := strings.CutPrefix(rest, "apps/")
	if !ok {
		return "", false
	}
	slug, _, _ = strings.Cut(r, "/")
	return slug, sdk.ValidateName(slug) == nil
}

// AppPrefix is the path under which the app slug of p's agent is served,
// without a trailing slash: /@{user}/{workspace}.{agent}/apps/{slug}.
func AppPrefix(p Path, slug string) string {
	return "/@" + p.User + "/" + p.Workspace + "." + p.Agent + "/apps/" + slug
}

// AppLink is the link to a path app of an agent whose page is agentPath
// (/@{user}/{workspace}.{agent}).
func AppLink(agentPath, slug string) string {
	return agentPath + "/apps/" + url.PathEscape(slug) + "/"
}
