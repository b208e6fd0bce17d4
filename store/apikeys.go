package store

import (
	"context"
	"time"
)

// APIKey is a row of api_keys. Only the hash of the secret is stored.
type APIKey struct {
	ID           string
	UserID       string
	HashedSecret []byte
	Kind         string // "cli", "token" or "browser"
	Name         string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	LastUsedAt   time.Time
}

// CreateAPIKey inserts k.
func (db *DB) CreateAPIKey(ctx context.Context, k APIKey) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO api_keys (id, user_id, hashed_secret, kind, name, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, k.ID, k.UserID, k.HashedSecret, k.Kind, k.Name, k.ExpiresAt)
	return notFound(err)
}

// APIKeyByID returns the key with id whose user is not deleted. Expiry is
// the caller's to check.
func (db *DB) APIKeyByID(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	err := db.Pool.QueryRow(ctx, `SELECT k.id, k.user_id, k.hashed_secret, k.kind, k.name, k.created_at, k.expires_at, k.last_used_at
		FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.id = $1 AND NOT u.deleted`, id).
		Scan(&k.ID, &k.UserID, &k.HashedSecret, &k.Kind, &k.Name, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt)
	return k, notFound(err)
}

// TouchAPIKey records a use of the key, at most once a minute.
func (db *DB) TouchAPIKey(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE api_keys SET last_used_at = now()
		WHERE id = $1 AND last_used_at < now() - interval '1 minute'`, id)
	return err
}

// DeleteAPIKey deletes the key with id.
func (db *DB) DeleteAPIKey(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
	return err
}

// DeleteExpiredAPIKeys deletes keys past their expiry.
func (db *DB) DeleteExpiredAPIKeys(ctx context.Context) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM api_keys WHERE expires_at < now()`)
	return err
}
