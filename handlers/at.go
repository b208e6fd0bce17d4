package handlers

import (
	"net/http"
	"strings"
)

// atPath is a parsed workspace URL: /@{user}/{workspace}[.{agent}]/{rest}.
type atPath struct {
	User, Workspace, Agent, Rest string
}

// parseAtPath parses a workspace URL path. ok is false for any other path.
func parseAtPath(path string) (atPath, bool) {
	if !strings.HasPrefix(path, "/@") {
		return atPath{}, false
	}
	parts := strings.SplitN(path[2:], "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return atPath{}, false
	}
	p := atPath{User: parts[0], Workspace: parts[1]}
	if ws, agent, ok := strings.Cut(p.Workspace, "."); ok {
		if ws == "" || agent == "" {
			return atPath{}, false
		}
		p.Workspace, p.Agent = ws, agent
	}
	if len(parts) == 3 {
		p.Rest = parts[2]
	}
	return p, true
}

// serveAt routes workspace URLs, and answers 404 for every other path that
// no route matched.
func (a *API) serveAt(w http.ResponseWriter, r *http.Request) error {
	p, ok := parseAtPath(r.URL.Path)
	if !ok {
		return &HTTPError{Code: http.StatusNotFound, Msg: "There is no page at " + r.URL.Path + "."}
	}
	r.SetPathValue("user", p.User)
	r.SetPathValue("workspace", p.Workspace)
	r.SetPathValue("agent", p.Agent)
	wu := a.withUser
	switch {
	case p.Agent == "" && p.Rest == "" && r.Method == http.MethodGet:
		wu(a.serveWorkspacePage)(w, r)
	case p.Agent == "" && p.Rest == "events" && r.Method == http.MethodGet:
		wu(a.serveWorkspaceEvents)(w, r)
	case p.Agent == "" && (p.Rest == "start" || p.Rest == "stop" || p.Rest == "delete") && r.Method == http.MethodPost:
		r.SetPathValue("action", p.Rest)
		wu(a.serveWorkspaceAction)(w, r)
	default:
		if h := a.agentRoute(p, r); h != nil {
			h(w, r)
			return nil
		}
		return &HTTPError{Code: http.StatusNotFound, Msg: "There is no page at " + r.URL.Path + "."}
	}
	return nil
}

// agentRoute returns the handler of an agent URL, like the terminal, or nil.
func (a *API) agentRoute(p atPath, r *http.Request) http.HandlerFunc {
	if p.Agent == "" {
		return nil
	}
	switch {
	case p.Rest == "terminal" && r.Method == http.MethodGet:
		return a.withUser(a.serveTerminalPage)
	}
	if slug, ok := appSlug(p.Rest); ok {
		return a.handle(a.serveApp(p, slug))
	}
	return nil
}
