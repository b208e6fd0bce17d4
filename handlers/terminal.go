package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/static"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/web"
)

// agentForUser loads an agent whose workspace the caller owns. Anyone else
// gets 404.
func (a *API) agentForUser(r *http.Request, id string) (store.Agent, store.Workspace, error) {
	ag, err := a.agentByID(r, id)
	if err != nil {
		return ag, store.Workspace{}, err
	}
	wk, err := a.db.WorkspaceByID(r.Context(), ag.WorkspaceID)
	if err != nil {
		return ag, wk, err
	}
	if wk.OwnerID != userFrom(r).ID {
		return ag, wk, notFoundErr("The agent")
	}
	return ag, wk, nil
}

// agentByID loads the agent id names (a path value): an id that is not a
// UUID, or names no agent, is the agent's 404. It checks no access: the
// caller does, through the agent's workspace.
func (a *API) agentByID(r *http.Request, id string) (store.Agent, error) {
	if _, err := uuid.Parse(id); err != nil {
		return store.Agent{}, notFoundErr("The agent")
	}
	ag, err := a.db.AgentByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return ag, notFoundErr("The agent")
	}
	return ag, err
}

// terminalCSP lets xterm.js's DOM renderer add its own style elements.
const terminalCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// serveTerminalPage is the full-window web terminal of an agent.
func (a *API) serveTerminalPage(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByOwnerAndName(r, r.PathValue("user"), r.PathValue("workspace"))
	if err != nil {
		return err
	}
	if wk.OwnerID != userFrom(r).ID {
		return notFoundErr("The workspace")
	}
	ags, err := a.db.AgentsByWorkspace(r.Context(), wk.ID)
	if err != nil {
		return err
	}
	for _, ag := range ags {
		if ag.Name != r.PathValue("agent") {
			continue
		}
		if missing := static.Missing("terminal.js", "terminal-style.css"); len(missing) > 0 {
			return &HTTPError{Code: http.StatusInternalServerError, Msg: "This build has no web terminal assets (" + strings.Join(missing, ", ") + "): build it with `make build`."}
		}
		w.Header().Set("Content-Security-Policy", terminalCSP)
		return render(w, r, http.StatusOK, web.TerminalPage(web.Terminal{
			Title:       wk.Name + "." + ag.Name,
			WSPath:      "/api/v2/workspaceagents/" + ag.ID + "/pty",
			AgentID:     ag.ID,
			AgentName:   ag.Name,
			BackURL:     workspacePath(wk.OwnerName, wk.Name),
			StylePath:   static.Path("terminal-style.css"),
			ScriptPath:  static.Path("terminal.js"),
			Owner:       wk.OwnerName,
			Workspace:   wk.Name,
			WorkspaceID: wk.ID,
			// The owner may start it (so may a site owner, who cannot
			// open this page).
			CanStart:     true,
			AccessOrigin: accessOrigin(a.opts.AccessURL),
		}))
	}
	return notFoundErr("The agent")
}

// accessOrigin is u's origin, scheme://host, or "" without u.
func accessOrigin(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
