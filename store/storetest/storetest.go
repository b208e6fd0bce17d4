// Package storetest gives each test a fresh, migrated PostgreSQL database:
// [New] returns a *store.DB and [URL] a connection URL.
//
// The first call in a test binary starts the built-in PostgreSQL
// ([store.StartBuiltin], ephemeral: no fsync) in a temporary directory, on
// /dev/shm when it has room, and migrates a template
// database named by [store.MigrationsHash]; each test then gets a
// CREATE DATABASE ... TEMPLATE clone, dropped when the test ends. The
// cluster is shared by all tests of the binary and is stopped by [Main],
// which every package using storetest must call from its TestMain; if the
// binary dies, the kernel stops postgres (Pdeathsig).
//
// Missing PostgreSQL binaries fail the test with install instructions;
// there is no silent skip. Import it only from tests. Costs: about a second
// to start the cluster, 15-50 ms per database.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"go.uber.org/goleak"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaydev/coder/store"
)

// cluster is the built-in PostgreSQL shared by the tests of this binary.
type cluster struct {
	dir      string
	builtin  *store.Builtin
	admin    *pgxpool.Pool // on the "postgres" database, for CREATE/DROP
	base     *url.URL      // URL of the "postgres" database
	template string
}

// The cluster is per test binary, hence package state: started once by the
// first test that needs it, stopped by Main.
var (
	inMain    atomic.Bool
	startOnce sync.Once
	shared    *cluster
	startErr  error
)

// Main runs the tests of m, stops the shared cluster and removes its
// directory, and then fails the test binary if goroutines that the tests
// started are still running (goleak). Call it from TestMain:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// It returns after m.Run; the testing package then exits with m.Run's
// result.
func Main(m *testing.M) {
	inMain.Store(true)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
	}
	if code == 0 {
		// scs.New starts a memory store's cleanup goroutine before the
		// server swaps in its PostgreSQL store, and memstore.StopCleanup
		// cannot stop it reliably (it races with the goroutine's start):
		// one idle ticker per API, not ours to fix.
		if err := testutil.FindLeaks(goleak.IgnoreTopFunction("github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup")); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// New returns a handle on a fresh, migrated database for this test, closed
// and dropped when the test ends. Safe to call from parallel tests.
func New(t testing.TB) *store.DB {
	t.Helper()
	u := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, u)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// URL creates a fresh, migrated database for this test and returns its
// connection URL (password included), for code that takes a URL, such as a
// coder server process. The database is dropped, disconnecting its
// clients, when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	c := get(t)
	name := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+c.template); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	u := *c.base
	u.Path = "/" + name
	return u.String()
}

func get(t testing.TB) *cluster {
	t.Helper()
	if !inMain.Load() {
		t.Fatal("storetest: call storetest.Main(m) from this package's TestMain, so that the shared PostgreSQL is stopped after the tests:\n\n\tfunc TestMain(m *testing.M) { storetest.Main(m) }")
	}
	startOnce.Do(func() { shared, startErr = start() })
	if startErr != nil {
		t.Fatalf("storetest: %v", startErr)
	}
	return shared
}

func start() (_ *cluster, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := tempRoot()
	sweep(root)
	dir, err := os.MkdirTemp(root, "coder-storetest-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// Ours, so we may open it up: when tests run as root, postgres runs as
	// an unprivileged user that must traverse to the cluster inside it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := store.StartBuiltin(ctx, store.BuiltinOptions{
		Dir:       dir + "/postgres",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Ephemeral: true,
		Settings:  map[string]string{"max_connections": "300"},
	})
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, builtin: b}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.base, err = url.Parse(b.URL()); err != nil {
		return nil, err
	}
	if c.admin, err = pgxpool.New(ctx, b.URL()); err != nil {
		return nil, err
	}
	c.template = "tmpl_" + store.MigrationsHash()
	if err := c.migrateTemplate(ctx); err != nil {
		return nil, fmt.Errorf("migrate template database: %w", err)
	}
	return c, nil
}

// migrateTemplate creates the template database and applies the
// migrations to it; connections to it are then refused, as CREATE DATABASE
// needs a template nobody is connected to.
func (c *cluster) migrateTemplate(ctx context.Context) error {
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{c.template}.Sanitize()); err != nil {
		return err
	}
	u := *c.base
	u.Path = "/" + c.template
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return err
	}
	err = store.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return err
	}
	_, err = c.admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{c.template}.Sanitize()+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	return err
}

func (c *cluster) close() error {
	if c.admin != nil {
		c.admin.Close()
	}
	err := c.builtin.Close()
	if rerr := os.RemoveAll(c.dir); err == nil {
		err = rerr
	}
	return err
}

// stop stops the shared cluster if it was started.
func stop() error {
	// Make a later get (there should be none) fail instead of starting a
	// cluster nobody stops.
	startOnce.Do(func() { startErr = fmt.Errorf("storetest: the tests are over") })
	if shared == nil {
		return nil
	}
	return shared.close()
}

// tempRoot is where the cluster goes: a roomy tmpfs when there is one
// (CREATE DATABASE from a template takes ~15 ms there against ~300 ms on a
// disk, even with fsync off), else the usual temporary directory. Docker's
// default 64 MiB /dev/shm is too small and is not used.
func tempRoot() string {
	const shm, minFree = "/dev/shm", 1 << 30
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil || st.Bavail*uint64(st.Bsize) < minFree {
		return ""
	}
	if err := syscall.Access(shm, 0o2|0o1); err != nil { // W_OK|X_OK
		return ""
	}
	return shm
}

// sweep removes the directories of test binaries that were killed before
// Main could remove theirs (a test timeout, ^C): their postgres is gone
// (Pdeathsig), so their lock is free. Directories younger than a minute
// are left alone, as their binary may not have taken the lock yet.
func sweep(root string) {
	if root == "" {
		root = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "coder-storetest-*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		lock, err := os.Open(filepath.Join(dir, "postgres", "lock"))
		if err != nil {
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(dir)
		}
		lock.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
