package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/web"
)

// maxProcessName bounds a reported process name (Linux's comm is 15
// bytes; some kernels allow more).
const maxProcessName = 64

// agentListeningPorts stores the ports of an agent's listening_ports
// message and wakes the workspace's pages. Bad input (ports out of range,
// names that cannot be stored) is dropped, with a warning; the agent stays
// connected.
func (a *API) agentListeningPorts(ctx context.Context, log *slog.Logger, ag store.Agent, workspaceID string, msg []byte) {
	var m sdk.AgentListeningPorts
	if err := json.Unmarshal(msg, &m); err != nil {
		log.Warn("agent listening ports refused", "err", err)
		return
	}
	ports := cleanPorts(m.Ports)
	if len(ports) != len(m.Ports) {
		log.Warn("agent listening ports: dropped bad or duplicate entries", "sent", len(m.Ports), "kept", len(ports))
	}
	if err := a.db.SetAgentListeningPorts(ctx, ag.ID, ports); err != nil {
		log.Warn("record agent listening ports", "err", err)
		return
	}
	a.notifyWorkspace(workspaceID)
}

// cleanPorts keeps the valid ports of a report: each port once, at least
// sdk.MinListeningPort, at most sdk.MaxListeningPorts of them, with a
// process name that is valid UTF-8 without NUL, cut to maxProcessName.
func cleanPorts(in []sdk.ListeningPort) []store.ListeningPort {
	out := []store.ListeningPort{}
	seen := map[uint16]bool{}
	for _, p := range in {
		if p.Port < sdk.MinListeningPort || seen[p.Port] || len(out) == sdk.MaxListeningPorts {
			continue
		}
		seen[p.Port] = true
		name := strings.ToValidUTF8(strings.ReplaceAll(p.ProcessName, "\x00", ""), "")
		if len(name) > maxProcessName {
			name = name[:maxProcessName]
			for !utf8.ValidString(name) {
				name = name[:len(name)-1]
			}
		}
		out = append(out, store.ListeningPort{Port: int(p.Port), Network: "tcp", ProcessName: name})
	}
	slices.SortFunc(out, func(a, b store.ListeningPort) int { return a.Port - b.Port })
	return out
}

// agentAppHealth stores the app health of an agent's app_health message:
// only apps of the agent's template that have a health check, in a state
// the agent may report.
func (a *API) agentAppHealth(ctx context.Context, log *slog.Logger, ag store.Agent, workspaceID string, msg []byte) {
	var m sdk.AgentAppHealth
	if err := json.Unmarshal(msg, &m); err != nil {
		log.Warn("agent app health refused", "err", err)
		return
	}
	checked := map[string]bool{}
	for _, app := range agentSpec(ag).Apps {
		if app.Healthcheck != nil {
			checked[app.Slug] = true
		}
	}
	health := map[string]string{}
	for slug, state := range m.Apps {
		switch state {
		case sdk.AppHealthInitializing, sdk.AppHealthHealthy, sdk.AppHealthUnhealthy:
		default:
			log.Warn("agent app health: unknown state dropped", "app", slug)
			continue
		}
		if !checked[slug] {
			log.Warn("agent app health: not an app with a health check, dropped", "app", slug)
			continue
		}
		health[slug] = state
	}
	if err := a.db.SetAgentAppHealth(ctx, ag.ID, health); err != nil {
		log.Warn("record agent app health", "err", err)
		return
	}
	a.notifyWorkspace(workspaceID)
}

// portURL is the URL of a port of an agent under the wildcard access URL
// (Options.WildcardAccessURL, like "*.apps.example.com" or
// "*--apps.example.com"): {port}--{agent}--{workspace}--{user}.{suffix},
// with the access URL's scheme, and its port unless the wildcard names
// one. It is empty when no wildcard is configured.
func (a *API) portURL(port int, agent, workspace, user string) string {
	return a.appHostURL(apps.AppHost{Port: uint16(port), Agent: agent, Workspace: workspace, User: strings.ToLower(user)})
}

// portsView builds the ports part of an agent on the workspace page: its
// listening ports and the workspace's shared ports of that agent.
func (a *API) portsView(viewer store.User, v sdk.Workspace, ag sdk.WorkspaceAgent, rep store.AgentReports, shares []store.PortShare, agentPath string) web.AgentPorts {
	p := web.AgentPorts{
		Shown:       ag.Status == sdk.AgentConnected,
		CanShare:    viewer.Username == v.OwnerName,
		ShareAction: agentPath + "/ports/",
	}
	level := map[int]string{}
	for _, s := range shares {
		if s.AgentName == ag.Name {
			level[s.Port] = s.ShareLevel
		}
	}
	listening := map[int]bool{}
	add := func(port int, process string, on bool) {
		share := level[port]
		if share == "" {
			share = sdk.ShareOwner
		}
		p.Ports = append(p.Ports, web.Port{Port: port, ProcessName: process, Listening: on, Share: share,
			URL: a.portURL(port, ag.Name, v.Name, v.OwnerName)})
	}
	for _, lp := range rep.Ports {
		listening[lp.Port] = true
		add(lp.Port, lp.ProcessName, true)
	}
	for _, s := range shares {
		if s.AgentName == ag.Name && !listening[s.Port] {
			add(s.Port, "", false)
		}
	}
	slices.SortFunc(p.Ports, func(a, b web.Port) int { return a.Port - b.Port })
	if a.opts.WildcardAccessURL == "" {
		p.PortURLHelp = "Port URLs need a wildcard access URL (--wildcard-access-url on the server). Until then, forward a port to your machine:"
		target := v.Name
		if viewer.Username != v.OwnerName {
			target = v.OwnerName + "/" + target
		}
		p.ForwardCommand = fmt.Sprintf("coder port-forward %s --tcp PORT:PORT", target)
	}
	return p
}

// appOff says why an app cannot open now, or "" when it can: the
// workspace is stopped, its agent is not connected, or its health check
// fails.
func appOff(desired string, agentStatus string, health string) string {
	switch {
	case desired == "stopped":
		return "The workspace is stopped: start it to open this app."
	case agentStatus != sdk.AgentConnected:
		return "The workspace's agent is not connected: wait for it, or start it."
	case health == sdk.AppHealthUnhealthy:
		return "The app's health check fails: start the app in the workspace, or check its URL in the template."
	}
	return ""
}

// serveListeningPorts is GET /api/v2/workspaceagents/{id}/listening-ports:
// the ports listening in the agent's workspace (none while the agent is
// disconnected), for the workspace's owner and site owners.
func (a *API) serveListeningPorts(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	ag, err := a.agentByID(r, id)
	if err != nil {
		return err
	}
	if _, err := a.workspaceByID(r, ag.WorkspaceID); err != nil {
		return notFoundErr("The agent")
	}
	ports, err := a.db.AgentListeningPorts(r.Context(), id)
	if err != nil {
		return err
	}
	out := sdk.AgentListeningPorts{Ports: []sdk.ListeningPort{}}
	for _, p := range ports {
		out.Ports = append(out.Ports, sdk.ListeningPort{Port: uint16(p.Port), Network: p.Network, ProcessName: p.ProcessName})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// shareableWorkspace loads a workspace whose ports the viewer may share:
// their own. Site owners see other users' shares but do not change them
// (403); everyone else gets 404.
func (a *API) shareableWorkspace(r *http.Request, wk store.Workspace, err error) (store.Workspace, error) {
	wk, err = a.workspaceForUser(r, wk, err)
	if err != nil {
		return wk, err
	}
	if wk.OwnerID != userFrom(r).ID {
		return wk, &HTTPError{Code: http.StatusForbidden, Msg: "Only the workspace's owner can share its ports."}
	}
	return wk, nil
}

// servePortShares is GET /api/v2/workspaces/{id}/port-share.
func (a *API) servePortShares(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByID(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	shares, err := a.db.ListPortShares(r.Context(), wk.ID)
	if err != nil {
		return err
	}
	out := sdk.WorkspaceAgentPortShares{Shares: []sdk.WorkspaceAgentPortShare{}}
	for _, s := range shares {
		out.Shares = append(out.Shares, sdk.WorkspaceAgentPortShare{WorkspaceID: s.WorkspaceID, AgentName: s.AgentName,
			Port: s.Port, ShareLevel: s.ShareLevel, Protocol: s.Protocol})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// shareableWorkspaceByID loads the workspace {id} for a port share change.
func (a *API) shareableWorkspaceByID(r *http.Request) (store.Workspace, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return store.Workspace{}, notFoundErr("The workspace")
	}
	wk, err := a.db.WorkspaceByID(r.Context(), id)
	return a.shareableWorkspace(r, wk, err)
}

// servePortShareUpsert is POST /api/v2/workspaces/{id}/port-share.
func (a *API) servePortShareUpsert(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.shareableWorkspaceByID(r)
	if err != nil {
		return err
	}
	var req sdk.UpsertWorkspaceAgentPortShareRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	s, err := a.sharePort(r.Context(), wk, req)
	if err != nil {
		return err
	}
	if s == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, sdk.WorkspaceAgentPortShare{WorkspaceID: wk.ID, AgentName: s.AgentName, Port: s.Port,
		ShareLevel: s.ShareLevel, Protocol: s.Protocol})
	return nil
}

// servePortShareDelete is DELETE /api/v2/workspaces/{id}/port-share.
func (a *API) servePortShareDelete(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.shareableWorkspaceByID(r)
	if err != nil {
		return err
	}
	var req sdk.DeleteWorkspaceAgentPortShareRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	err = a.db.DeletePortShare(r.Context(), wk.ID, req.AgentName, req.Port)
	if errors.Is(err, store.ErrNotFound) {
		return &HTTPError{Code: http.StatusNotFound, Msg: fmt.Sprintf("Port %d of agent %q is not shared.", req.Port, req.AgentName)}
	}
	if err != nil {
		return err
	}
	a.notifyWorkspace(wk.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sharePort validates and applies a share of a port of wk: share level
// owner revokes it (and returns nil).
func (a *API) sharePort(ctx context.Context, wk store.Workspace, req sdk.UpsertWorkspaceAgentPortShareRequest) (*store.PortShare, error) {
	var bad []sdk.ValidationError
	if req.Port < sdk.MinListeningPort || req.Port > 65535 {
		bad = append(bad, sdk.ValidationError{Field: "port", Detail: fmt.Sprintf("must be a TCP port from %d to 65535", sdk.MinListeningPort)})
	}
	switch req.ShareLevel {
	case sdk.ShareOwner, sdk.ShareAuthenticated, sdk.SharePublic:
	default:
		bad = append(bad, sdk.ValidationError{Field: "share_level", Detail: "must be owner, authenticated or public"})
	}
	switch req.Protocol {
	case "":
		req.Protocol = sdk.PortShareProtocolHTTP
	case sdk.PortShareProtocolHTTP, sdk.PortShareProtocolHTTPS:
	default:
		bad = append(bad, sdk.ValidationError{Field: "protocol", Detail: "must be http or https"})
	}
	ags, err := a.db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(ags, func(ag store.Agent) bool { return ag.Name == req.AgentName }) {
		bad = append(bad, sdk.ValidationError{Field: "agent_name", Detail: "is not an agent of this workspace"})
	}
	if len(bad) > 0 {
		return nil, badRequest("The port share is not valid: fix the fields below.", bad...)
	}
	if req.ShareLevel == sdk.ShareOwner {
		err := a.db.DeletePortShare(ctx, wk.ID, req.AgentName, req.Port)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		a.notifyWorkspace(wk.ID)
		return nil, nil
	}
	s := store.PortShare{WorkspaceID: wk.ID, AgentName: req.AgentName, Port: req.Port, ShareLevel: req.ShareLevel, Protocol: req.Protocol}
	if err := a.db.UpsertPortShare(ctx, s); err != nil {
		return nil, err
	}
	a.notifyWorkspace(wk.ID)
	return &s, nil
}

// servePortShareForm is the workspace page's share form:
// POST /@{user}/{workspace}.{agent}/ports/{port}/share with share_level.
// It redirects back to the workspace page.
func (a *API) servePortShareForm(w http.ResponseWriter, r *http.Request) error {
	owner, err := a.userByParam(r, r.PathValue("user"))
	if err != nil {
		return notFoundErr("The workspace")
	}
	wk, err := a.db.WorkspaceByOwnerAndName(r.Context(), owner.ID, r.PathValue("workspace"))
	wk, err = a.shareableWorkspace(r, wk, err)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		return badRequest("The port must be a number.")
	}
	_, err = a.sharePort(r.Context(), wk, sdk.UpsertWorkspaceAgentPortShareRequest{
		AgentName: r.PathValue("agent"), Port: port, ShareLevel: r.PostFormValue("share_level")})
	if err != nil {
		return err
	}
	http.Redirect(w, r, workspacePath(wk.OwnerName, wk.Name), http.StatusSeeOther)
	return nil
}

// portShareRoute tells whether rest (after /@user/workspace.agent/) is
// ports/{port}/share, and sets the port path value.
func portShareRoute(r *http.Request, rest string) bool {
	port, ok := strings.CutPrefix(rest, "ports/")
	if !ok {
		return false
	}
	port, ok = strings.CutSuffix(port, "/share")
	if !ok || port == "" || strings.Contains(port, "/") {
		return false
	}
	r.SetPathValue("port", port)
	return true
}

// renderAppUnavailable renders the 502 page of an app or port that does
// not answer: what is wrong (agent offline, nothing listening on the
// port, health check failing) and what to do.
func (a *API) renderAppUnavailable(w http.ResponseWriter, r *http.Request, bg *apps.BadGateway) error {
	a.logger.Debug("app unavailable", "err", bg)
	p := web.AppUnavailablePage{Nav: a.nav(r, "")}
	// r may be the request to the app (the proxy's), whose path is the
	// app's: the prefix names the workspace.
	if ap, ok := apps.ParsePath(bg.Prefix); ok {
		p.WorkspaceURL = workspacePath(ap.User, ap.Workspace)
	}
	ag, err := a.db.AgentByID(r.Context(), bg.AgentID)
	if err != nil {
		return err
	}
	// The agent may have gone since the app was resolved.
	offline := bg.Offline || agentStatus(ag, time.Now()) != sdk.AgentConnected
	what := "This app"
	if bg.Slug == "" {
		what = fmt.Sprintf("Port %d", bg.Port)
	}
	if offline {
		p.Title = "The workspace's agent is offline"
		p.Problem = what + " runs in a workspace whose agent is not connected to the server, so nothing can reach it."
		p.Steps = []string{
			"Open the workspace page and start the workspace if it is stopped.",
			"If its agent is started by hand (a manual template), run the agent's command on the workspace's machine.",
			"Wait for the agent to show connected, then reload this page.",
		}
	} else {
		p.Title = fmt.Sprintf("Nothing is listening on port %d", bg.Port)
		p.Problem = fmt.Sprintf("%s does not answer: the workspace's agent is connected, but no program accepts connections on port %d in the workspace.", what, bg.Port)
		if bg.Slug != "" && a.appUnhealthy(r.Context(), ag, bg.Slug) {
			p.Problem += " Its health check fails too."
		}
		p.Steps = []string{
			"Start the app in the workspace (from a terminal, or check the template's startup script).",
			fmt.Sprintf("Check that it listens on port %d, as the app's url in the template says (like http://localhost:%d).", bg.Port, bg.Port),
			"Reload this page.",
		}
	}
	// The app's request went out without the dashboard's headers; this
	// page is the dashboard's.
	setSecurityHeaders(w.Header())
	return render(w, r, http.StatusBadGateway, web.AppUnavailable(p))
}

// appUnhealthy tells whether the agent last reported the app unhealthy.
func (a *API) appUnhealthy(ctx context.Context, ag store.Agent, slug string) bool {
	reps, err := a.db.AgentReportsByWorkspace(ctx, ag.WorkspaceID)
	return err == nil && reps[ag.ID].Health[slug] == sdk.AppHealthUnhealthy
}
