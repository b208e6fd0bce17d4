package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ListeningPort is a TCP port listening in a workspace, as its agent
// reported it.
type ListeningPort struct {
	Port        int    `json:"port"`
	Network     string `json:"network"`
	ProcessName string `json:"process_name"`
}

// SetAgentListeningPorts replaces the agent's listening ports.
func (db *DB) SetAgentListeningPorts(ctx context.Context, agentID string, ports []ListeningPort) error {
	if ports == nil {
		ports = []ListeningPort{}
	}
	b, err := json.Marshal(ports)
	if err != nil {
		return fmt.Errorf("set listening ports: %w", err)
	}
	_, err = db.Pool.Exec(ctx, `UPDATE workspace_agents SET listening_ports = $2 WHERE id = $1`, agentID, b)
	return err
}

// AgentListeningPorts returns the agent's listening ports as it last
// reported them (none while it is disconnected).
func (db *DB) AgentListeningPorts(ctx context.Context, agentID string) ([]ListeningPort, error) {
	var b []byte
	if err := db.Pool.QueryRow(ctx, `SELECT listening_ports FROM workspace_agents WHERE id = $1`, agentID).Scan(&b); err != nil {
		return nil, notFound(err)
	}
	var ports []ListeningPort
	if err := json.Unmarshal(b, &ports); err != nil {
		return nil, fmt.Errorf("listening ports of agent %s: %w", agentID, err)
	}
	return ports, nil
}

// SetAgentAppHealth replaces the health of the agent's apps, by slug.
func (db *DB) SetAgentAppHealth(ctx context.Context, agentID string, health map[string]string) error {
	if health == nil {
		health = map[string]string{}
	}
	b, err := json.Marshal(health)
	if err != nil {
		return fmt.Errorf("set app health: %w", err)
	}
	_, err = db.Pool.Exec(ctx, `UPDATE workspace_agents SET app_health = $2 WHERE id = $1`, agentID, b)
	return err
}

// AgentReports is what the agents of a workspace last reported besides
// their connection: listening ports and app health, by agent id.
type AgentReports struct {
	Ports  []ListeningPort
	Health map[string]string
}

// AgentReportsByWorkspace returns the reports of every agent of the
// workspace, by agent id.
func (db *DB) AgentReportsByWorkspace(ctx context.Context, workspaceID string) (map[string]AgentReports, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, listening_ports, app_health FROM workspace_agents WHERE workspace_id = $1`, workspaceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]AgentReports{}
	for rows.Next() {
		var id string
		var pb, hb []byte
		if err := rows.Scan(&id, &pb, &hb); err != nil {
			return nil, err
		}
		var r AgentReports
		if err := json.Unmarshal(pb, &r.Ports); err != nil {
			return nil, fmt.Errorf("listening ports of agent %s: %w", id, err)
		}
		if err := json.Unmarshal(hb, &r.Health); err != nil {
			return nil, fmt.Errorf("app health of agent %s: %w", id, err)
		}
		out[id] = r
	}
	return out, rows.Err()
}

// Port share levels stored in workspace_agent_port_shares. A port without
// a row is PortShareOwner.
const (
	PortShareOwner         = "owner"
	PortShareAuthenticated = "authenticated"
	PortSharePublic        = "public"
)

// PortShare is a row of workspace_agent_port_shares: a port of a
// workspace's agent that its owner shared.
type PortShare struct {
	WorkspaceID string
	AgentName   string
	Port        int
	ShareLevel  string
	Protocol    string
	CreatedAt   time.Time
}

// UpsertPortShare shares a port at s.ShareLevel (authenticated or public)
// with s.Protocol (http or https), replacing an earlier share of it.
func (db *DB) UpsertPortShare(ctx context.Context, s PortShare) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO workspace_agent_port_shares (workspace_id, agent_name, port, share_level, protocol)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id, agent_name, port) DO UPDATE SET share_level = excluded.share_level, protocol = excluded.protocol`,
		s.WorkspaceID, s.AgentName, s.Port, s.ShareLevel, s.Protocol)
	return notFound(err)
}

// DeletePortShare revokes a port's share: it opens for the workspace's
// owner only again. It returns ErrNotFound when the port was not shared.
func (db *DB) DeletePortShare(ctx context.Context, workspaceID, agentName string, port int) error {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM workspace_agent_port_shares WHERE workspace_id = $1 AND agent_name = $2 AND port = $3`,
		workspaceID, agentName, port)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// ListPortShares returns the shared ports of a workspace by agent and port.
func (db *DB) ListPortShares(ctx context.Context, workspaceID string) ([]PortShare, error) {
	rows, err := db.Pool.Query(ctx, `SELECT workspace_id, agent_name, port, share_level, protocol, created_at
		FROM workspace_agent_port_shares WHERE workspace_id = $1 ORDER BY agent_name, port`, workspaceID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PortShare, error) {
		var s PortShare
		err := r.Scan(&s.WorkspaceID, &s.AgentName, &s.Port, &s.ShareLevel, &s.Protocol, &s.CreatedAt)
		return s, err
	})
}

// PortShareLevel is the share level of a port of a workspace's agent:
// PortShareOwner when it is not shared. App-token and port-URL
// authorisers call it for every port URL.
func (db *DB) PortShareLevel(ctx context.Context, workspaceID, agentName string, port int) (string, error) {
	var level string
	err := db.Pool.QueryRow(ctx, `SELECT share_level FROM workspace_agent_port_shares WHERE workspace_id = $1 AND agent_name = $2 AND port = $3`,
		workspaceID, agentName, port).Scan(&level)
	if errors.Is(err, pgx.ErrNoRows) {
		return PortShareOwner, nil
	}
	return level, err
}
