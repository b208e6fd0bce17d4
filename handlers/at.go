package handlers

import (
	"net/http"

	"github.com/gatewaydev/coder/apps"
)

// serveAt routes workspace URLs, and answers 404 for every other path that
// no route matched.
func (a *API) serveAt(w http.ResponseWriter, r *http.Request) error {
	p, ok := apps.ParsePath(r.URL.Path)
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
			h.ServeHTTP(w, r)
			return nil
		}
		return &HTTPError{Code: http.StatusNotFound, Msg: "There is no page at " + r.URL.Path + "."}
	}
	return nil
}

// agentRoute returns the handler of an agent URL, like the terminal, or nil.
func (a *API) agentRoute(p apps.Path, r *http.Request) http.Handler {
	if p.Agent == "" {
		return nil
	}
	switch {
	case p.Rest == "terminal" && r.Method == http.MethodGet:
		return a.withUser(a.serveTerminalPage)
	case r.Method == http.MethodPost && portShareRoute(r, p.Rest):
		return a.withUser(a.servePortShareForm)
	}
	// Path apps: the front door.
	return a.front.PathAppHandler(p)
}
