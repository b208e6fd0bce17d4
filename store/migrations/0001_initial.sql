-- Users of the deployment. The first user is the owner.
CREATE TABLE users (
	id uuid PRIMARY KEY,
	username text NOT NULL,
	email text NOT NULL,
	name text NOT NULL DEFAULT '',
	password_hash text NOT NULL,
	role text NOT NULL CHECK (role IN ('owner', 'member')),
	created_at timestamptz NOT NULL DEFAULT now(),
	deleted boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX users_username_idx ON users (lower(username)) WHERE NOT deleted;
CREATE UNIQUE INDEX users_email_idx ON users (lower(email)) WHERE NOT deleted;

-- API keys: "<id>-<secret>", only sha256(secret) is stored.
CREATE TABLE api_keys (
	id text PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hashed_secret bytea NOT NULL,
	kind text NOT NULL CHECK (kind IN ('cli', 'token', 'browser')),
	name text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

-- Browser sessions (scs pgxstore schema).
CREATE TABLE sessions (
	token text PRIMARY KEY,
	data bytea NOT NULL,
	expiry timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry);

CREATE TABLE templates (
	id uuid PRIMARY KEY,
	name text NOT NULL UNIQUE,
	display_name text NOT NULL DEFAULT '',
	description text NOT NULL DEFAULT '',
	source text NOT NULL,
	spec jsonb NOT NULL,
	created_by uuid REFERENCES users (id),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
	id uuid PRIMARY KEY,
	owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	template_id uuid NOT NULL REFERENCES templates (id),
	name text NOT NULL,
	desired_state text NOT NULL CHECK (desired_state IN ('running', 'stopped')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX workspaces_owner_name_idx ON workspaces (owner_id, lower(name));

CREATE TABLE workspace_agents (
	id uuid PRIMARY KEY,
	workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
	name text NOT NULL,
	token_hash bytea NOT NULL,
	spec jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	first_connected_at timestamptz,
	last_connected_at timestamptz,
	disconnected_at timestamptz,
	version text NOT NULL DEFAULT '',
	os text NOT NULL DEFAULT '',
	arch text NOT NULL DEFAULT '',
	hostname text NOT NULL DEFAULT '',
	directory text NOT NULL DEFAULT '',
	UNIQUE (workspace_id, name)
);
CREATE INDEX workspace_agents_token_idx ON workspace_agents (token_hash);

-- Key/value settings of the deployment (control-plane keys and the like).
CREATE TABLE site_config (
	key text PRIMARY KEY,
	value text NOT NULL
);

-- Tailnet node identities, so nodes survive a server restart.
CREATE TABLE tailnet_nodes (
	node_key text PRIMARY KEY,
	identity jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
