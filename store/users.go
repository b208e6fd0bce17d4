package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is returned when a row does not exist (or is deleted).
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique name is already taken.
var ErrConflict = errors.New("already exists")

// Roles of a user.
const (
	RoleOwner  = "owner"
	RoleMember = "member"
)

// User is a row of users.
type User struct {
	ID           string
	Username     string
	Email        string
	Name         string
	PasswordHash string
	Role         string
	CreatedAt    time.Time
}

const userColumns = `id, username, email, name, password_hash, role, created_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.Name, &u.PasswordHash, &u.Role, &u.CreatedAt)
	return u, notFound(err)
}

// notFound maps pgx.ErrNoRows to ErrNotFound and unique violations to
// ErrConflict.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
	}
	return err
}

// CountUsers returns the number of users that are not deleted.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE NOT deleted`).Scan(&n)
	return n, err
}

// CreateUser inserts u. It returns ErrConflict when the username or email
// is taken.
func (db *DB) CreateUser(ctx context.Context, u User) (User, error) {
	row := db.Pool.QueryRow(ctx, `INSERT INTO users (id, username, email, name, password_hash, role)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+userColumns,
		u.ID, u.Username, u.Email, u.Name, u.PasswordHash, u.Role)
	return scanUser(row)
}

// CreateFirstUser inserts u as the owner only when no user exists yet, in
// one transaction, so two concurrent setups cannot both win.
func (db *DB) CreateFirstUser(ctx context.Context, u User) (User, error) {
	var out User
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE users IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE NOT deleted`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: the first user", ErrConflict)
		}
		var err error
		out, err = scanUser(tx.QueryRow(ctx, `INSERT INTO users (id, username, email, name, password_hash, role)
			VALUES ($1, $2, $3, $4, $5, 'owner') RETURNING `+userColumns,
			u.ID, u.Username, u.Email, u.Name, u.PasswordHash))
		return err
	})
	return out, err
}

// UserByID returns the user with id, unless deleted.
func (db *DB) UserByID(ctx context.Context, id string) (User, error) {
	return scanUser(db.Pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 AND NOT deleted`, id))
}

// UserByLogin returns the user whose username or email is login, unless
// deleted.
func (db *DB) UserByLogin(ctx context.Context, login string) (User, error) {
	return scanUser(db.Pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users
		WHERE (lower(username) = lower($1) OR lower(email) = lower($1)) AND NOT deleted`, login))
}

// ListUsers returns users that are not deleted, by username.
func (db *DB) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE NOT deleted ORDER BY lower(username)`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
}

// UserHasWorkspacesError is what DeleteUser returns for a user who still
// owns workspaces: they must be deleted first, so that nothing of the user
// keeps running (or is started again at the next server start).
type UserHasWorkspacesError struct {
	// Workspaces are the names of the user's workspaces, sorted.
	Workspaces []string
}

func (e *UserHasWorkspacesError) Error() string {
	return fmt.Sprintf("user owns %d workspaces: %s", len(e.Workspaces), strings.Join(e.Workspaces, ", "))
}

// DeleteUser marks the user deleted and deletes its API keys in one
// transaction. A user who owns workspaces is not deleted: the error is a
// *UserHasWorkspacesError naming them. The user's row is locked for the
// check, so a workspace created at the same moment waits for the delete
// (and then fails, see CreateWorkspace).
func (db *DB) DeleteUser(ctx context.Context, id string) error {
	return db.InTx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 AND NOT deleted FOR UPDATE`, id).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM workspaces WHERE owner_id = $1 ORDER BY name`, id)
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return &UserHasWorkspacesError{Workspaces: names}
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET deleted = true WHERE id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM api_keys WHERE user_id = $1`, id)
		return err
	})
}

// UpdatePassword sets the password hash of a user.
func (db *DB) UpdatePassword(ctx context.Context, id, hash string) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1 AND NOT deleted`, id, hash)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}
