package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the database handle: a pgx pool and the queries of this package.
// It is safe for concurrent use. Close releases the pool.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects to the PostgreSQL at url, checks it answers and applies
// every pending migration. The caller must Close the returned DB.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{Pool: pool}, nil
}

// Close closes the pool, waiting for acquired connections to be released.
func (db *DB) Close() { db.Pool.Close() }

// InTx runs f in a transaction, committing when f returns nil and rolling
// back otherwise.
func (db *DB) InTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, f)
}
