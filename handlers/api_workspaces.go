package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

// agentStaleAfter is how long after its last heartbeat an agent that did
// not say goodbye counts as disconnected.
const agentStaleAfter = 6 * time.Second

func agentStatus(ag store.Agent, now time.Time) string {
	switch {
	case ag.FirstConnectedAt == nil:
		return sdk.AgentConnecting
	case ag.DisconnectedAt == nil && ag.LastConnectedAt != nil && now.Sub(*ag.LastConnectedAt) < agentStaleAfter:
		return sdk.AgentConnected
	default:
		return sdk.AgentDisconnected
	}
}

func agentSpec(ag store.Agent) sdk.TemplateAgent {
	var spec sdk.TemplateAgent
	_ = json.Unmarshal(ag.Spec, &spec) // written by us; a bad row shows no apps
	return spec
}

func templateSpec(t store.Template) sdk.Template {
	var spec sdk.Template
	_ = json.Unmarshal(t.Spec, &spec)
	return spec
}

// workspaceView loads a workspace's agents and template into its API shape.
func (a *API) workspaceView(ctx context.Context, w store.Workspace) (sdk.Workspace, error) {
	ags, err := a.db.AgentsByWorkspace(ctx, w.ID)
	if err != nil {
		return sdk.Workspace{}, err
	}
	t, err := a.db.TemplateByID(ctx, w.TemplateID)
	if err != nil {
		return sdk.Workspace{}, err
	}
	now := time.Now()
	out := sdk.Workspace{
		ID: w.ID, Name: w.Name, OwnerName: w.OwnerName, TemplateName: w.TemplateName,
		Provisioner: templateSpec(t).Provisioner, DesiredState: w.DesiredState,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, Agents: []sdk.WorkspaceAgent{},
	}
	allConnected := true
	nodeDown := ""
	if a.tailnet != nil {
		nodeDown = a.serverNodeDown(false)
	}
	for _, ag := range ags {
		st := agentStatus(ag, now)
		if st != sdk.AgentConnected {
			allConnected = false
		}
		spec := agentSpec(ag)
		apps := spec.Apps
		if apps == nil {
			apps = []sdk.App{}
		}
		va := sdk.WorkspaceAgent{
			ID: ag.ID, Name: ag.Name, Status: st, OS: ag.OS, Arch: ag.Arch, Version: ag.Version,
			Hostname: ag.Hostname, Directory: ag.Directory, LastConnected: ag.LastConnectedAt, Apps: apps,
		}
		if va.StartupState, va.StartupExitCode, err = a.agentStartupState(ctx, ag.ID, spec); err != nil {
			return sdk.Workspace{}, err
		}
		if st == sdk.AgentConnected {
			va.TailnetError = nodeDown
		}
		out.Agents = append(out.Agents, va)
	}
	switch {
	case w.DesiredState == "stopped":
		out.Status = "stopped"
	case allConnected:
		out.Status = "running"
	default:
		out.Status = "starting"
	}
	return out, nil
}

func (a *API) serveListWorkspaces(w http.ResponseWriter, r *http.Request) error {
	u := userFrom(r)
	owner := u.ID
	if r.URL.Query().Get("all") == "true" && u.Role == store.RoleOwner {
		owner = ""
	}
	ws, err := a.db.ListWorkspaces(r.Context(), owner)
	if err != nil {
		return err
	}
	out := make([]sdk.Workspace, 0, len(ws))
	for _, wk := range ws {
		v, err := a.workspaceView(r.Context(), wk)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createWorkspace creates a workspace for the caller and starts its agents
// when the template's provisioner is local. The returned view carries the
// agents' tokens only for manual templates (shown once).
func (a *API) createWorkspace(r *http.Request, req sdk.CreateWorkspaceRequest) (sdk.Workspace, error) {
	ctx := r.Context()
	u := userFrom(r)
	if err := sdk.ValidateName(req.Name); err != nil {
		return sdk.Workspace{}, badRequest("The workspace name is not valid.", sdk.ValidationError{Field: "name", Detail: err.Error()})
	}
	t, err := a.db.TemplateByName(ctx, req.Template)
	if errors.Is(err, store.ErrNotFound) {
		return sdk.Workspace{}, badRequest(fmt.Sprintf("There is no template called %q. List templates with `coder templates list`.", req.Template),
			sdk.ValidationError{Field: "template", Detail: "no such template"})
	}
	if err != nil {
		return sdk.Workspace{}, err
	}
	spec := templateSpec(t)
	if spec.Provisioner == sdk.ProvisionerLocal {
		if err := a.checkLocalAllowed(u); err != nil {
			return sdk.Workspace{}, err
		}
	}
	tokens := map[string]string{}
	var agents []store.Agent
	for _, ta := range spec.Agents {
		b, err := json.Marshal(ta)
		if err != nil {
			return sdk.Workspace{}, err
		}
		tok := randomString(32)
		ag := store.Agent{ID: uuid.NewString(), Name: ta.Name, TokenHash: hashSecret(tok), Spec: b}
		tokens[ag.ID] = tok
		agents = append(agents, ag)
	}
	wk, err := a.db.CreateWorkspace(ctx, store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, TemplateID: t.ID, Name: req.Name, DesiredState: "running"}, agents)
	if errors.Is(err, store.ErrConflict) {
		return sdk.Workspace{}, &HTTPError{Code: http.StatusConflict, Msg: fmt.Sprintf("You already have a workspace called %q.", req.Name), Err: err}
	}
	if err != nil {
		return sdk.Workspace{}, err
	}
	a.startAgents(ctx, wk)
	view, err := a.workspaceView(ctx, wk)
	if err != nil {
		return sdk.Workspace{}, err
	}
	if spec.Provisioner == sdk.ProvisionerManual {
		for i := range view.Agents {
			view.Agents[i].Token = tokens[view.Agents[i].ID]
		}
	}
	return view, nil
}

func (a *API) serveCreateWorkspace(w http.ResponseWriter, r *http.Request) error {
	var req sdk.CreateWorkspaceRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	v, err := a.createWorkspace(r, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// workspaceForUser loads a workspace the caller may act on: their own, or
// any for the owner role. Everyone else gets 404, not 403, so that names
// do not leak.
func (a *API) workspaceForUser(r *http.Request, wk store.Workspace, err error) (store.Workspace, error) {
	if errors.Is(err, store.ErrNotFound) {
		return wk, notFoundErr("The workspace")
	}
	if err != nil {
		return wk, err
	}
	u := userFrom(r)
	if wk.OwnerID != u.ID && u.Role != store.RoleOwner {
		return wk, notFoundErr("The workspace")
	}
	return wk, nil
}

func (a *API) workspaceByOwnerAndName(r *http.Request, user, name string) (store.Workspace, error) {
	owner, err := a.userByParam(r, user)
	if err != nil {
		if he := (*HTTPError)(nil); errors.As(err, &he) && he.Code == http.StatusNotFound {
			return store.Workspace{}, notFoundErr("The workspace")
		}
		return store.Workspace{}, err
	}
	wk, err := a.db.WorkspaceByOwnerAndName(r.Context(), owner.ID, name)
	return a.workspaceForUser(r, wk, err)
}

func (a *API) workspaceByID(r *http.Request, id string) (store.Workspace, error) {
	if _, err := uuid.Parse(id); err != nil {
		return store.Workspace{}, notFoundErr("The workspace")
	}
	wk, err := a.db.WorkspaceByID(r.Context(), id)
	return a.workspaceForUser(r, wk, err)
}

func (a *API) serveGetWorkspace(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByOwnerAndName(r, r.PathValue("user"), r.PathValue("workspace"))
	if err != nil {
		return err
	}
	v, err := a.workspaceView(r.Context(), wk)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// transition starts, stops or deletes a workspace.
func (a *API) transition(ctx context.Context, wk store.Workspace, action string) error {
	switch action {
	case "start":
		if err := a.checkLocalStart(ctx, wk); err != nil {
			return err
		}
		if err := a.db.SetWorkspaceDesiredState(ctx, wk.ID, "running"); err != nil {
			return err
		}
		wk.DesiredState = "running"
		a.startAgents(ctx, wk)
	case "stop":
		if err := a.db.SetWorkspaceDesiredState(ctx, wk.ID, "stopped"); err != nil {
			return err
		}
		a.stopAgents(ctx, wk)
	case "delete":
		a.stopAgents(ctx, wk)
		if err := a.db.DeleteWorkspace(ctx, wk.ID); err != nil {
			return err
		}
	default:
		return &HTTPError{Code: http.StatusNotFound, Msg: fmt.Sprintf("Unknown workspace action %q: use start, stop or delete.", action)}
	}
	a.notifyWorkspace(wk.ID)
	return nil
}

func (a *API) serveWorkspaceTransition(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByID(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	action := r.PathValue("action")
	if action == "delete" {
		return &HTTPError{Code: http.StatusMethodNotAllowed, Msg: "Delete a workspace with DELETE /api/v2/workspaces/{id}."}
	}
	if err := a.transition(r.Context(), wk, action); err != nil {
		return err
	}
	wk, err = a.db.WorkspaceByID(r.Context(), wk.ID)
	if err != nil {
		return err
	}
	v, err := a.workspaceView(r.Context(), wk)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) serveDeleteWorkspace(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByID(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.transition(r.Context(), wk, "delete"); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sdk.Response{Message: "Workspace deleted."})
	return nil
}

// serveRegenerateAgentToken replaces a manual agent's token and returns the
// new one (shown once).
func (a *API) serveRegenerateAgentToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	ag, err := a.agentByID(r, id)
	if err != nil {
		return err
	}
	if _, err := a.workspaceByID(r, ag.WorkspaceID); err != nil {
		return err
	}
	tok := randomString(32)
	if err := a.db.SetAgentToken(r.Context(), ag.ID, hashSecret(tok)); err != nil {
		return err
	}
	a.disconnectAgent(ag.ID)
	if a.tailnet != nil {
		a.tailnet.Disconnect(r.Context(), tailnet.Identity{Kind: tailnet.KindAgent, ID: ag.ID})
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
	return nil
}
