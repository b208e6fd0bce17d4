-- What each agent last reported: the TCP ports listening in its workspace
-- and the health of its apps, kept in the database so that every replica
-- shows them. Both are cleared when the agent disconnects.
ALTER TABLE workspace_agents
	ADD COLUMN listening_ports jsonb NOT NULL DEFAULT '[]',
	ADD COLUMN app_health jsonb NOT NULL DEFAULT '{}';

-- Ports of a workspace that its owner shared. A port without a row opens
-- for the workspace's owner only. Rows name the agent, not its id, so that
-- they would survive the agent being recreated under the same name.
CREATE TABLE workspace_agent_port_shares (
	workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
	agent_name text NOT NULL,
	port integer NOT NULL CHECK (port >= 9 AND port <= 65535),
	share_level text NOT NULL CHECK (share_level IN ('authenticated', 'public')),
	protocol text NOT NULL DEFAULT 'http' CHECK (protocol IN ('http', 'https')),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workspace_id, agent_name, port)
);
