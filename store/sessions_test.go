package store_test

import (
	"context"
	"testing"

	"github.com/gatewaydev/coder/store/storetest"
)

// TestDeleteExpiredSessions: the janitor's query removes expired browser
// sessions and keeps live ones.
func TestDeleteExpiredSessions(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO sessions (token, data, expiry) VALUES
		('old', '\x00', now() - interval '1 minute'), ('live', '\x00', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteExpiredSessions(ctx); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	rows, err := db.Pool.Query(ctx, `SELECT token FROM sessions ORDER BY token`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || tokens[0] != "live" {
		t.Fatalf("sessions left %v, want [live]", tokens)
	}
}
