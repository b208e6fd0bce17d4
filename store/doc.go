// Package store owns PostgreSQL: the pgx pool, embedded forward-only
// migrations, queries, the built-in PostgreSQL cluster and LISTEN/NOTIFY
// pubsub.
//
// It is a leaf: it imports only pgx and the standard library, never another
// package of this module. Callers own the lifetimes of what it returns.
package store
