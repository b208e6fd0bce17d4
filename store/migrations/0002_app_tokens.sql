-- The key ring of app tokens (JWE, AES-256-GCM): every replica encrypts
-- with the newest key and decrypts with any key that has not expired.
CREATE TABLE app_token_keys (
	id text PRIMARY KEY,
	secret bytea NOT NULL CHECK (length(secret) = 32),
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);
CREATE INDEX app_token_keys_created_idx ON app_token_keys (created_at);

-- Each user's app-session generation: app tokens carry the generation they
-- were issued under, and logging out bumps it, which ends them all.
CREATE TABLE user_app_sessions (
	user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	generation bigint NOT NULL DEFAULT 0
);
