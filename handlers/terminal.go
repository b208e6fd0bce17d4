package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/static"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/web"
)

// checkOrigin allows websocket upgrades from the dashboard's own origin
// only (and from programs, which send no Origin).
func (a *API) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, a.opts.AccessURL.Scheme) && strings.EqualFold(u.Host, a.opts.AccessURL.Host)
}

// agentForUser loads an agent whose workspace the caller owns. Anyone else
// gets 404.
func (a *API) agentForUser(r *http.Request, id string) (store.Agent, store.Workspace, error) {
	if _, err := uuid.Parse(id); err != nil {
		return store.Agent{}, store.Workspace{}, notFoundErr("The agent")
	}
	ag, err := a.db.AgentByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return ag, store.Workspace{}, notFoundErr("The agent")
	}
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

// servePTY bridges the browser's terminal websocket to the agent's
// reconnecting PTY over the tailnet. In browser-only mode only the
// dashboard in a browser may open it (see browserRequestOK).
func (a *API) servePTY(w http.ResponseWriter, r *http.Request) error {
	if err := a.browserRequestOK(r); err != nil {
		return err
	}
	ag, _, err := a.agentForUser(r, r.PathValue("agent"))
	if err != nil {
		return err
	}
	params, err := terminal.ParseParams(r.URL.Query())
	if err != nil {
		return badRequest("The terminal URL is not valid: " + err.Error() + ".")
	}
	if !a.checkOrigin(r) {
		return &HTTPError{Code: http.StatusForbidden, Msg: "This websocket may only be opened from the dashboard's own origin."}
	}
	if a.tailnet == nil {
		return &HTTPError{Code: http.StatusServiceUnavailable, Msg: "The tailnet is off on this server, so it cannot reach agents."}
	}
	if !a.track() {
		return &HTTPError{Code: http.StatusServiceUnavailable, Msg: "The server is shutting down; the terminal reconnects by itself."}
	}
	defer a.wg.Done()
	up := websocket.Upgrader{
		ReadBufferSize: 16 << 10, WriteBufferSize: 64 << 10, EnableCompression: false,
		CheckOrigin: a.checkOrigin,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader answered
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	stop := context.AfterFunc(a.ctx, cancel) // server shutdown closes terminals
	defer stop()
	dial := func(ctx context.Context) (net.Conn, error) {
		return a.DialAgent(ctx, ag.ID, sdk.AgentReconnectingPTYPort)
	}
	// An agent that no replica hears from cannot answer: say so at once
	// (close 1011, which the page shows and retries) rather than after
	// DialAgent's 15 s wait for a peer that is not there.
	if st := agentStatus(ag, time.Now()); st != sdk.AgentConnected {
		dial = func(context.Context) (net.Conn, error) {
			return nil, fmt.Errorf("dial agent %s: the agent is %s", ag.ID, st)
		}
	}
	err = a.relay.ServeBrowser(ctx, ws, dial, params)
	if err != nil && ctx.Err() == nil {
		a.logger.Debug("terminal ended", "agent_id", ag.ID, "err", err)
	}
	return nil
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
			Title:      wk.Name + "." + ag.Name,
			WSPath:     "/api/v2/workspaceagents/" + ag.ID + "/pty",
			AgentID:    ag.ID,
			AgentName:  ag.Name,
			BackURL:    workspacePath(wk.OwnerName, wk.Name),
			StylePath:  static.Path("terminal-style.css"),
			ScriptPath: static.Path("terminal.js"),
		}))
	}
	return notFoundErr("The agent")
}
