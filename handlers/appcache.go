package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/gatewaydev/coder/store"
)

// appTargetTTL is how long the app proxy reuses a workspace and its agents
// that it read for a path app, so that an app's page and its assets do not
// each read the same three rows. A change (a deleted workspace, a template
// that no longer shares an app) applies to path apps within this time; the
// visitor is authenticated on every request.
const appTargetTTL = 2 * time.Second

// appTargetCacheSize bounds the cache; when it is full, lookups go to the
// store.
const appTargetCacheSize = 1024

// appTarget is what a path app's URL resolves to: the workspace of
// /@{user}/{workspace} and its agents.
type appTarget struct {
	wk      store.Workspace
	agents  []store.Agent
	expires time.Time
}

// appTargetCache keeps the workspaces that path apps resolved to, for
// appTargetTTL. Only workspaces that exist are kept.
type appTargetCache struct {
	mu      sync.Mutex
	entries map[[2]string]appTarget
}

// lookup returns the workspace owner/name and its agents, from the cache or
// the store. It returns store.ErrNotFound for an unknown user or
// workspace.
func (c *appTargetCache) lookup(ctx context.Context, db *store.DB, owner, name string) (store.Workspace, []store.Agent, error) {
	key := [2]string{owner, name}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.wk, e.agents, nil
	}
	u, err := db.UserByLogin(ctx, owner)
	if err != nil {
		return store.Workspace{}, nil, err
	}
	wk, err := db.WorkspaceByOwnerAndName(ctx, u.ID, name)
	if err != nil {
		return store.Workspace{}, nil, err
	}
	ags, err := db.AgentsByWorkspace(ctx, wk.ID)
	if err != nil {
		return store.Workspace{}, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[[2]string]appTarget{}
	}
	if len(c.entries) >= appTargetCacheSize {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
	}
	if len(c.entries) < appTargetCacheSize {
		c.entries[key] = appTarget{wk: wk, agents: ags, expires: now.Add(appTargetTTL)}
	}
	return wk, ags, nil
}
