package storetest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaydev/coder/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestNewIsMigratedAndIsolated: each database is migrated, private to its
// test, and dropped when the test ends.
func TestNewIsMigratedAndIsolated(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			start := time.Now()
			db := storetest.New(t)
			t.Logf("storetest.New took %v", time.Since(start))
			var name string
			var rows int
			if err := db.Pool.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM users)`).Scan(&name, &rows); err != nil {
				t.Fatal(err)
			}
			if rows != 0 {
				t.Errorf("users has %d rows, want a fresh database", rows)
			}
			if _, err := db.Pool.Exec(ctx, `INSERT INTO site_config (key, value) VALUES ('k', 'v')`); err != nil {
				t.Fatal(err)
			}
			var applied int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&applied); err != nil || applied == 0 {
				t.Errorf("schema_migrations: %d rows, %v", applied, err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 2 || names[0] == names[1] || !strings.HasPrefix(names[0], "test_") {
		t.Fatalf("databases = %q, want two distinct test_ databases", names)
	}
	// Both are gone: look from a third database of the same cluster.
	admin := storetest.New(t)
	var left int
	if err := admin.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of the subtests' databases were not dropped", left)
	}
}

// TestURLDropsWithClientsConnected: URL gives a database that other code
// connects to by URL; it is dropped even while a client is connected.
func TestURLDropsWithClientsConnected(t *testing.T) {
	ctx := context.Background()
	var dbName string
	t.Run("use", func(t *testing.T) {
		u := storetest.URL(t)
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		dbName = strings.TrimPrefix(parsed.Path, "/")
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		// Left connected on purpose: the drop must force it out.
		t.Cleanup(func() { conn.Close(ctx) })
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM workspaces`).Scan(&n); err != nil {
			t.Fatal(err)
		}
	})
	db := storetest.New(t)
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, dbName).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("database %s was not dropped", dbName)
	}
}

// TestParallel: many parallel tests each get their own database.
func TestParallel(t *testing.T) {
	for i := range 16 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.New(t)
			if _, err := db.Pool.Exec(ctx, `INSERT INTO site_config (key, value) VALUES ('only', $1)`, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM site_config`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("site_config has %d rows, want only this test's", n)
			}
		})
	}
}
