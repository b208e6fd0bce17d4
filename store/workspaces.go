package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Template is a row of templates. Spec is the parsed template as JSON; Source
// the file it was pushed from.
type Template struct {
	ID          string
	Name        string
	DisplayName string
	Description string
	Source      string
	Spec        []byte
	CreatedBy   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const templateColumns = `id, name, display_name, description, source, spec, coalesce(created_by::text, ''), created_at, updated_at`

func scanTemplate(row pgx.Row) (Template, error) {
	var t Template
	err := row.Scan(&t.ID, &t.Name, &t.DisplayName, &t.Description, &t.Source, &t.Spec, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt)
	return t, notFound(err)
}

// UpsertTemplate creates the template named t.Name or replaces its source
// and spec. Workspaces created earlier keep the agents they were made with.
func (db *DB) UpsertTemplate(ctx context.Context, t Template) (Template, bool, error) {
	var created bool
	row := db.Pool.QueryRow(ctx, `INSERT INTO templates (id, name, display_name, description, source, spec, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, nullif($7, '')::uuid)
		ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name, description = excluded.description,
			source = excluded.source, spec = excluded.spec, updated_at = now()
		RETURNING `+templateColumns+`, (xmax = 0)`,
		t.ID, t.Name, t.DisplayName, t.Description, t.Source, t.Spec, t.CreatedBy)
	var out Template
	err := row.Scan(&out.ID, &out.Name, &out.DisplayName, &out.Description, &out.Source, &out.Spec, &out.CreatedBy, &out.CreatedAt, &out.UpdatedAt, &created)
	return out, created, notFound(err)
}

// TemplateByName returns the template called name.
func (db *DB) TemplateByName(ctx context.Context, name string) (Template, error) {
	return scanTemplate(db.Pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = $1`, name))
}

// TemplateByID returns the template with id.
func (db *DB) TemplateByID(ctx context.Context, id string) (Template, error) {
	return scanTemplate(db.Pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM templates WHERE id = $1`, id))
}

// ListTemplates returns every template by name, with its workspace count.
func (db *DB) ListTemplates(ctx context.Context) ([]Template, []int, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+templateColumns+`,
		(SELECT count(*) FROM workspaces w WHERE w.template_id = templates.id) FROM templates ORDER BY name`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ts []Template
	var counts []int
	for rows.Next() {
		var t Template
		var n int
		if err := rows.Scan(&t.ID, &t.Name, &t.DisplayName, &t.Description, &t.Source, &t.Spec, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt, &n); err != nil {
			return nil, nil, err
		}
		ts = append(ts, t)
		counts = append(counts, n)
	}
	return ts, counts, rows.Err()
}

// Workspace is a row of workspaces, with its owner's and template's names.
type Workspace struct {
	ID           string
	OwnerID      string
	OwnerName    string
	TemplateID   string
	TemplateName string
	Name         string
	DesiredState string // "running" or "stopped"
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

const workspaceSelect = `SELECT w.id, w.owner_id, u.username, w.template_id, t.name, w.name, w.desired_state, w.created_at, w.updated_at
	FROM workspaces w JOIN users u ON u.id = w.owner_id JOIN templates t ON t.id = w.template_id`

func scanWorkspace(row pgx.Row) (Workspace, error) {
	var w Workspace
	err := row.Scan(&w.ID, &w.OwnerID, &w.OwnerName, &w.TemplateID, &w.TemplateName, &w.Name, &w.DesiredState, &w.CreatedAt, &w.UpdatedAt)
	return w, notFound(err)
}

// Agent is a row of workspace_agents. Spec is the agent's part of the
// template, as JSON, copied when the workspace was created.
type Agent struct {
	ID               string
	WorkspaceID      string
	Name             string
	TokenHash        []byte
	Spec             []byte
	CreatedAt        time.Time
	FirstConnectedAt *time.Time
	LastConnectedAt  *time.Time
	DisconnectedAt   *time.Time
	Version          string
	OS               string
	Arch             string
	Hostname         string
	Directory        string
}

const agentColumns = `id, workspace_id, name, token_hash, spec, created_at, first_connected_at, last_connected_at,
	disconnected_at, version, os, arch, hostname, directory`

func scanAgent(row pgx.Row) (Agent, error) {
	var a Agent
	err := row.Scan(&a.ID, &a.WorkspaceID, &a.Name, &a.TokenHash, &a.Spec, &a.CreatedAt, &a.FirstConnectedAt,
		&a.LastConnectedAt, &a.DisconnectedAt, &a.Version, &a.OS, &a.Arch, &a.Hostname, &a.Directory)
	return a, notFound(err)
}

// CreateWorkspace inserts w and its agents in one transaction. It returns
// ErrConflict when the owner already has a workspace of that name.
func (db *DB) CreateWorkspace(ctx context.Context, w Workspace, agents []Agent) (Workspace, error) {
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		// The owner must exist and stay until the insert commits (DeleteUser
		// locks the row FOR UPDATE while it checks for workspaces).
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 AND NOT deleted FOR SHARE`, w.OwnerID).Scan(&one); err != nil {
			return notFound(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO workspaces (id, owner_id, template_id, name, desired_state)
			VALUES ($1, $2, $3, $4, $5)`, w.ID, w.OwnerID, w.TemplateID, w.Name, w.DesiredState); err != nil {
			return notFound(err)
		}
		for _, a := range agents {
			if _, err := tx.Exec(ctx, `INSERT INTO workspace_agents (id, workspace_id, name, token_hash, spec)
				VALUES ($1, $2, $3, $4, $5)`, a.ID, w.ID, a.Name, a.TokenHash, a.Spec); err != nil {
				return notFound(err)
			}
		}
		return nil
	})
	if err != nil {
		return Workspace{}, err
	}
	return db.WorkspaceByID(ctx, w.ID)
}

// WorkspaceByID returns the workspace with id.
func (db *DB) WorkspaceByID(ctx context.Context, id string) (Workspace, error) {
	return scanWorkspace(db.Pool.QueryRow(ctx, workspaceSelect+` WHERE w.id = $1`, id))
}

// WorkspaceByOwnerAndName returns the owner's workspace called name.
func (db *DB) WorkspaceByOwnerAndName(ctx context.Context, ownerID, name string) (Workspace, error) {
	return scanWorkspace(db.Pool.QueryRow(ctx, workspaceSelect+` WHERE w.owner_id = $1 AND lower(w.name) = lower($2)`, ownerID, name))
}

// ListWorkspaces returns the workspaces of ownerID, or of everyone when
// ownerID is empty, by owner and name.
func (db *DB) ListWorkspaces(ctx context.Context, ownerID string) ([]Workspace, error) {
	rows, err := db.Pool.Query(ctx, workspaceSelect+` WHERE ($1 = '' OR w.owner_id::text = $1) ORDER BY u.username, w.name`, ownerID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Workspace, error) { return scanWorkspace(r) })
}

// SetWorkspaceDesiredState records whether the workspace should run.
func (db *DB) SetWorkspaceDesiredState(ctx context.Context, id, state string) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE workspaces SET desired_state = $2, updated_at = now() WHERE id = $1`, id, state)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// DeleteWorkspace deletes the workspace and its agents.
func (db *DB) DeleteWorkspace(ctx context.Context, id string) error {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM workspaces WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// AgentsByWorkspace returns the agents of a workspace by name.
func (db *DB) AgentsByWorkspace(ctx context.Context, workspaceID string) ([]Agent, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+agentColumns+` FROM workspace_agents WHERE workspace_id = $1 ORDER BY name`, workspaceID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Agent, error) { return scanAgent(r) })
}

// AgentByID returns the agent with id.
func (db *DB) AgentByID(ctx context.Context, id string) (Agent, error) {
	return scanAgent(db.Pool.QueryRow(ctx, `SELECT `+agentColumns+` FROM workspace_agents WHERE id = $1`, id))
}

// AgentByTokenHash returns the agent whose token hashes to hash.
func (db *DB) AgentByTokenHash(ctx context.Context, hash []byte) (Agent, error) {
	return scanAgent(db.Pool.QueryRow(ctx, `SELECT `+agentColumns+` FROM workspace_agents WHERE token_hash = $1`, hash))
}

// SetAgentToken replaces the agent's token hash (the old token stops
// working).
func (db *DB) SetAgentToken(ctx context.Context, id string, hash []byte) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE workspace_agents SET token_hash = $2 WHERE id = $1`, id, hash)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// AgentConnected records a connection of the agent and what it reported.
func (db *DB) AgentConnected(ctx context.Context, a Agent) error {
	_, err := db.Pool.Exec(ctx, `UPDATE workspace_agents SET
		first_connected_at = coalesce(first_connected_at, now()), last_connected_at = now(), disconnected_at = NULL,
		version = $2, os = $3, arch = $4, hostname = $5, directory = $6 WHERE id = $1`,
		a.ID, a.Version, a.OS, a.Arch, a.Hostname, a.Directory)
	return err
}

// AgentHeartbeat records that the agent is still connected.
func (db *DB) AgentHeartbeat(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE workspace_agents SET last_connected_at = now(), disconnected_at = NULL WHERE id = $1`, id)
	return err
}

// AgentDisconnected records that the agent's connection ended.
func (db *DB) AgentDisconnected(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE workspace_agents SET disconnected_at = now(),
		listening_ports = '[]', app_health = '{}' WHERE id = $1`, id)
	return err
}
