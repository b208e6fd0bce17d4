package store

import "context"

// DeleteExpiredSessions deletes browser sessions past their expiry (the
// sessions table that the scs pgxstore keeps).
func (db *DB) DeleteExpiredSessions(ctx context.Context) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM sessions WHERE expiry < now()`)
	return err
}
