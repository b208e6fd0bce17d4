package store

import (
	"context"
	"time"
)

// AppTokenKey is a row of app_token_keys: one key of the app tokens' key
// ring.
type AppTokenKey struct {
	ID        string
	Secret    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// NewestAppTokenKey returns the most recently created key that was created
// after since and has not expired, or ErrNotFound.
func (db *DB) NewestAppTokenKey(ctx context.Context, since time.Time) (AppTokenKey, error) {
	var k AppTokenKey
	err := db.Pool.QueryRow(ctx, `SELECT id, secret, created_at, expires_at FROM app_token_keys
		WHERE created_at > $1 AND expires_at > now() ORDER BY created_at DESC LIMIT 1`, since).
		Scan(&k.ID, &k.Secret, &k.CreatedAt, &k.ExpiresAt)
	return k, notFound(err)
}

// AppTokenKeyByID returns the key id whether or not it has expired (the
// caller checks), or ErrNotFound.
func (db *DB) AppTokenKeyByID(ctx context.Context, id string) (AppTokenKey, error) {
	var k AppTokenKey
	err := db.Pool.QueryRow(ctx, `SELECT id, secret, created_at, expires_at FROM app_token_keys WHERE id = $1`, id).
		Scan(&k.ID, &k.Secret, &k.CreatedAt, &k.ExpiresAt)
	return k, notFound(err)
}

// CreateAppTokenKey inserts k; created_at is the database's now().
func (db *DB) CreateAppTokenKey(ctx context.Context, k AppTokenKey) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO app_token_keys (id, secret, expires_at) VALUES ($1, $2, $3)`, k.ID, k.Secret, k.ExpiresAt)
	return err
}

// DeleteExpiredAppTokenKeys deletes keys past their expiry.
func (db *DB) DeleteExpiredAppTokenKeys(ctx context.Context) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM app_token_keys WHERE expires_at < now()`)
	return err
}

// AppSessionGeneration returns userID's app-session generation (0 until
// the first logout).
func (db *DB) AppSessionGeneration(ctx context.Context, userID string) (int64, error) {
	var g int64
	err := db.Pool.QueryRow(ctx, `SELECT COALESCE((SELECT generation FROM user_app_sessions WHERE user_id = $1), 0)`, userID).Scan(&g)
	return g, err
}

// BumpAppSessionGeneration ends every app token of userID issued so far.
func (db *DB) BumpAppSessionGeneration(ctx context.Context, userID string) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO user_app_sessions (user_id, generation) VALUES ($1, 1)
		ON CONFLICT (user_id) DO UPDATE SET generation = user_app_sessions.generation + 1`, userID)
	return err
}
