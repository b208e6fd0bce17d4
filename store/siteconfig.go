package store

import "context"

// SiteConfig returns the value stored under key, or ErrNotFound.
func (db *DB) SiteConfig(ctx context.Context, key string) (string, error) {
	var v string
	err := db.Pool.QueryRow(ctx, `SELECT value FROM site_config WHERE key = $1`, key).Scan(&v)
	return v, notFound(err)
}

// SiteConfigOrInit returns the value under key, storing init() first when
// there is none. Concurrent callers agree on one value.
func (db *DB) SiteConfigOrInit(ctx context.Context, key string, init func() (string, error)) (string, error) {
	if v, err := db.SiteConfig(ctx, key); err != ErrNotFound {
		return v, err
	}
	v, err := init()
	if err != nil {
		return "", err
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO site_config (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, v); err != nil {
		return "", err
	}
	return db.SiteConfig(ctx, key)
}
