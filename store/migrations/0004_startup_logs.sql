-- The startup script of each agent: its state, and the newest lines of its
-- output (bounded by the server: see store.AppendStartupLog).
CREATE TABLE workspace_agent_startup (
	agent_id uuid PRIMARY KEY REFERENCES workspace_agents (id) ON DELETE CASCADE,
	state text NOT NULL CHECK (state IN ('running', 'ready', 'error')),
	exit_code integer NOT NULL DEFAULT 0,
	lines_dropped bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace_agent_startup_logs (
	id bigserial PRIMARY KEY,
	agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
	line text NOT NULL
);
CREATE INDEX workspace_agent_startup_logs_agent_idx ON workspace_agent_startup_logs (agent_id, id);
