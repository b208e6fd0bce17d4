package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

// Provisioner runs the agents of workspaces whose template uses the local
// provisioner.
type Provisioner interface {
	// StartAgent starts (or restarts) the agent. It does not block.
	StartAgent(ctx context.Context, a LocalAgent) error
	// StopAgent stops the agent and waits for it to exit.
	StopAgent(agentID string)
	// Isolates reports whether each user's agents run as an OS account
	// of that user alone. When false, agents run as the server's own OS
	// user, and only owners may run local workspaces.
	Isolates() bool
	// RemoveOwner removes what the provisioner keeps for a deleted user
	// (their OS account and home), after their agents were stopped.
	RemoveOwner(ctx context.Context, userID string) error
}

// AgentAdopter is a [Provisioner] whose agents can outlive the server:
// at start, the server asks it to take over each agent of a running local
// workspace before starting one with a fresh token.
type AgentAdopter interface {
	// AdoptAgent takes over a's agent if a server before this one left it
	// running, and reports whether it did; the agent keeps its token.
	// a.Token is empty.
	AdoptAgent(ctx context.Context, a LocalAgent) bool
}

// LocalAgent is what a provisioner needs to run an agent. It has the
// fields of provision.Agent, so that the server converts one to the other.
type LocalAgent struct {
	ID          string
	WorkspaceID string
	Name        string
	// URL is the server URL the agent dials (the template's agent_url or
	// the access URL).
	URL   string
	Token string
	// OwnerID and OwnerName are the workspace owner's user ID and
	// username: whose OS account the agent runs as.
	OwnerID   string
	OwnerName string
}

// errLocalNeedsIsolation refuses a local workspace to a user who is not an
// owner when the provisioner cannot give them an OS account of their own.
func errLocalNeedsIsolation() error {
	return &HTTPError{Code: http.StatusForbidden,
		Msg: "Local workspaces are for owners on this server: it does not run as root, so it cannot give your workspace an OS account of its own, " +
			"and the workspace would run as the server itself. Use a template with \"provisioner: manual\" and run its agent on a machine of yours, " +
			"or ask an owner to run the server as root."}
}

// checkLocalAllowed refuses (403) a local workspace of owner when the
// provisioner cannot isolate users and owner is not an owner.
func (a *API) checkLocalAllowed(owner store.User) error {
	if a.opts.Provisioner == nil || a.opts.Provisioner.Isolates() || owner.Role == store.RoleOwner {
		return nil
	}
	return errLocalNeedsIsolation()
}

// checkLocalStart is checkLocalAllowed for starting wk: it passes for
// workspaces whose template is not local.
func (a *API) checkLocalStart(ctx context.Context, wk store.Workspace) error {
	t, err := a.db.TemplateByID(ctx, wk.TemplateID)
	if err != nil || templateSpec(t).Provisioner != sdk.ProvisionerLocal {
		return err
	}
	owner, err := a.db.UserByID(ctx, wk.OwnerID)
	if err != nil {
		return err
	}
	return a.checkLocalAllowed(owner)
}

// startAgents starts the agents of a running workspace whose template is
// local, each with a fresh token (the previous one stops working).
func (a *API) startAgents(ctx context.Context, wk store.Workspace) {
	a.startOrAdoptAgents(ctx, wk, false)
}

// startOrAdoptAgents is startAgents; with adopt, an agent that the
// provisioner adopts (see [AgentAdopter]) keeps running with its token.
func (a *API) startOrAdoptAgents(ctx context.Context, wk store.Workspace, adopt bool) {
	if a.opts.Provisioner == nil || wk.DesiredState != "running" {
		return
	}
	// The workspace is already marked running: finish even if the request
	// that asked for it is abandoned now.
	ctx = context.WithoutCancel(ctx)
	t, err := a.db.TemplateByID(ctx, wk.TemplateID)
	if err != nil {
		a.logger.Error("start agents: load template", "workspace_id", wk.ID, "err", err)
		return
	}
	spec := templateSpec(t)
	if spec.Provisioner != sdk.ProvisionerLocal {
		return
	}
	owner, err := a.db.UserByID(ctx, wk.OwnerID)
	if err != nil {
		a.logger.Error("start agents: load owner", "workspace_id", wk.ID, "err", err)
		return
	}
	if err := a.checkLocalAllowed(owner); err != nil {
		a.logger.Warn("not starting a member's local workspace: the server is not root and cannot isolate it", "workspace_id", wk.ID, "owner", owner.Username)
		return
	}
	agentURL := a.opts.AccessURL.String()
	if spec.AgentURL != "" {
		agentURL = spec.AgentURL
	}
	ags, err := a.db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		a.logger.Error("start agents: load agents", "workspace_id", wk.ID, "err", err)
		return
	}
	adopter, _ := a.opts.Provisioner.(AgentAdopter)
	for _, ag := range ags {
		la := LocalAgent{ID: ag.ID, WorkspaceID: wk.ID, Name: ag.Name, URL: agentURL, OwnerID: owner.ID, OwnerName: owner.Username}
		if adopt && adopter != nil && adopter.AdoptAgent(ctx, la) {
			continue
		}
		tok := randomString(32)
		if err := a.db.SetAgentToken(ctx, ag.ID, hashSecret(tok)); err != nil {
			a.logger.Error("start agent: set token", "agent_id", ag.ID, "err", err)
			continue
		}
		la.Token = tok
		err := a.opts.Provisioner.StartAgent(ctx, la)
		if err != nil {
			a.logger.Error("start agent", "agent_id", ag.ID, "err", err)
		}
	}
}

func (a *API) stopAgents(ctx context.Context, wk store.Workspace) {
	ctx = context.WithoutCancel(ctx) // as in startAgents
	ags, err := a.db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		a.logger.Error("stop agents: load agents", "workspace_id", wk.ID, "err", err)
		return
	}
	for _, ag := range ags {
		if a.opts.Provisioner != nil {
			a.opts.Provisioner.StopAgent(ag.ID)
		}
		// A stopped workspace's agent must not reconnect with its old token.
		if err := a.db.SetAgentToken(ctx, ag.ID, hashSecret(randomString(32))); err != nil {
			a.logger.Error("stop agent: revoke token", "agent_id", ag.ID, "err", err)
		}
		a.disconnectAgent(ag.ID)
		if a.tailnet != nil {
			a.tailnet.Disconnect(ctx, tailnet.Identity{Kind: tailnet.KindAgent, ID: ag.ID})
		}
	}
}

// StartWorkspaces starts the agents of every running local workspace, or
// adopts those a server before this one left running (see
// [AgentAdopter]); the server calls it once at start.
func (a *API) StartWorkspaces(ctx context.Context) error {
	ws, err := a.db.ListWorkspaces(ctx, "")
	if err != nil {
		return fmt.Errorf("start workspaces: %w", err)
	}
	for _, wk := range ws {
		if wk.DesiredState != "running" && a.opts.Provisioner != nil {
			// A server that died while stopping the workspace may have
			// left its agent running.
			if ags, err := a.db.AgentsByWorkspace(ctx, wk.ID); err == nil {
				for _, ag := range ags {
					a.opts.Provisioner.StopAgent(ag.ID)
				}
			}
			continue
		}
		a.startOrAdoptAgents(ctx, wk, true)
	}
	return nil
}
