//go:build linux

package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperDirEnv makes the test binary a helper process (see TestMain) that
// starts the built-in postgres in the named directory, prints its URL and
// waits to be killed.
const helperDirEnv = "CODER_STORE_TEST_BUILTIN_HELPER_DIR"

// testBuiltinOptions returns options for a cluster in a fresh directory.
// When the test runs as root, the runtime location (see StartBuiltin) is a
// temporary directory too, so nothing is left in /var/lib.
func testBuiltinOptions(t *testing.T) BuiltinOptions {
	t.Helper()
	opts := BuiltinOptions{
		Dir:       filepath.Join(fastTempDir(t, "coder-store-test-"), "postgres"),
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ephemeral: true,
	}
	if os.Geteuid() == 0 {
		root := fastTempDir(t, "coder-pgruntime-")
		// Ours: make it traversable for the postgres user.
		if err := os.Chmod(root, 0o755); err != nil {
			t.Fatal(err)
		}
		opts.runtimeRoot = root
	}
	return opts
}

// fastTempDir returns a new 0700 directory removed at cleanup, on
// /dev/shm when it has room (initdb and CREATE DATABASE are several times
// faster on tmpfs), else in the usual temporary directory.
func fastTempDir(t *testing.T, prefix string) string {
	t.Helper()
	root := ""
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) == nil && st.Bavail*uint64(st.Bsize) >= 1<<30 && syscall.Access("/dev/shm", 0o3) == nil {
		root = "/dev/shm"
	}
	dir, err := os.MkdirTemp(root, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startTestBuiltin(t *testing.T, opts BuiltinOptions) *Builtin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := StartBuiltin(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestBuiltinKeepsData: a row written survives Close and a second start on
// the same directory; the cluster listens on loopback only and trusts
// nobody; the password is in a 0600 file and never logged.
func TestBuiltinKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs lockedBuffer
	opts := testBuiltinOptions(t)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	b := startTestBuiltin(t, opts)
	conn := connect(t, b.URL())
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')`); err != nil {
		t.Fatal(err)
	}
	var listen, sockets string
	if err := conn.QueryRow(ctx, `SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories')`).Scan(&listen, &sockets); err != nil {
		t.Fatal(err)
	}
	if listen != "127.0.0.1" || sockets != "" {
		t.Errorf("listen_addresses=%q unix_socket_directories=%q, want 127.0.0.1 and none", listen, sockets)
	}
	var weak int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_hba_file_rules WHERE auth_method NOT IN ('scram-sha-256', 'md5') OR type <> 'host'`).Scan(&weak); err != nil {
		t.Fatal(err)
	}
	if weak != 0 {
		t.Errorf("pg_hba.conf has %d rules other than password logins over TCP", weak)
	}
	conn.Close(ctx)
	firstURL := b.URL()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	b2 := startTestBuiltin(t, opts)
	var v string
	if err := connect(t, b2.URL()).QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "hello" {
		t.Errorf("kept row = %q, want hello", v)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(opts.Dir, builtinPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode = %v, want 0600", fi.Mode().Perm())
	}
	password, err := readPassword(opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(firstURL, password) {
		t.Errorf("URL %q does not carry the password", firstURL)
	}
	out := logs.String()
	for _, want := range []string{"initialising built-in postgres (first start)", "starting built-in postgres", "postgres output"} {
		if strings.Count(out, want) == 0 {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Count(out, "initialising built-in postgres") != 1 {
		t.Errorf("initdb ran %d times, want once", strings.Count(out, "initialising built-in postgres"))
	}
	if strings.Contains(out, password) {
		t.Error("the password appears in the logs")
	}
	logFile, err := os.ReadFile(filepath.Join(opts.Dir, builtinLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logFile, []byte("database system is ready to accept connections")) {
		t.Errorf("postgres.log lacks the server's output:\n%s", logFile)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBuiltinAlreadyRunning: a second start on the same directory fails
// with ErrAlreadyRunning and leaves the first cluster working; once the
// first is closed the directory can be used again.
func TestBuiltinAlreadyRunning(t *testing.T) {
	t.Parallel()
	opts := testBuiltinOptions(t)
	b := startTestBuiltin(t, opts)

	_, err := StartBuiltin(context.Background(), opts)
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second start: err = %v, want ErrAlreadyRunning", err)
	}
	if want := "another coder server is already using " + opts.Dir; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	var one int
	if err := connect(t, b.URL()).QueryRow(context.Background(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("first cluster after the refused start: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	startTestBuiltin(t, opts)
}

// TestBuiltinMissingBinaries: without initdb and postgres the error says
// how to install them or how to use an external database.
func TestBuiltinMissingBinaries(t *testing.T) {
	t.Parallel()
	opts := testBuiltinOptions(t)
	opts.binGlob = filepath.Join(t.TempDir(), "*", "bin")
	opts.lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	_, err := StartBuiltin(context.Background(), opts)
	if err == nil {
		t.Fatal("StartBuiltin succeeded without binaries")
	}
	for _, want := range []string{"start built-in postgres: ", "apt-get install postgresql", "--postgres-url", "CODER_PG_CONNECTION_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(opts.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory was created before the binaries were found: %v", err)
	}
}

// TestFindPostgresNewest: the newest version under the glob wins, by
// number (16 > 15 > 9.6), and PATH is the fallback.
func TestFindPostgresNewest(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "16", "17"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		names := []string{"initdb", "postgres"}
		if v == "17" {
			names = names[:1] // incomplete: skipped
		}
		for _, name := range names {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	noPath := func(string) (string, error) { return "", exec.ErrNotFound }
	got, err := findPostgres(filepath.Join(root, "*", "bin"), noPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "16", "bin", "postgres"); got.postgres != want {
		t.Errorf("postgres = %s, want %s", got.postgres, want)
	}
	if want := filepath.Join(root, "16", "bin", "initdb"); got.initdb != want {
		t.Errorf("initdb = %s, want %s", got.initdb, want)
	}

	onPath := func(name string) (string, error) { return "/opt/pg/bin/" + name, nil }
	got, err = findPostgres(filepath.Join(t.TempDir(), "*", "bin"), onPath)
	if err != nil {
		t.Fatal(err)
	}
	if got.postgres != "/opt/pg/bin/postgres" || got.initdb != "/opt/pg/bin/initdb" {
		t.Errorf("PATH fallback = %+v", got)
	}
}

// TestBuiltinOpenMigrates: store.Open against the built-in cluster's URL
// (what an external database looks like to the server) applies the
// migrations, and applying them again is a no-op.
func TestBuiltinOpenMigrates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := startTestBuiltin(t, testBuiltinOptions(t))
	for i := range 2 {
		db, err := Open(ctx, b.URL())
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		if err := Migrate(ctx, db.Pool); err != nil {
			t.Fatalf("migrate again #%d: %v", i+1, err)
		}
		ms, err := migrations()
		if err != nil {
			t.Fatal(err)
		}
		var applied, max int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&applied, &max); err != nil {
			t.Fatal(err)
		}
		if applied != len(ms) || max != len(ms) {
			t.Errorf("open #%d: %d migrations recorded up to version %d, want %d", i+1, applied, max, len(ms))
		}
		if _, err := db.Pool.Exec(ctx, `SELECT id, username FROM users LIMIT 1`); err != nil {
			t.Errorf("users table: %v", err)
		}
		db.Close()
	}
}

// TestBuiltinSurvivesKill: after the owning process is killed with
// SIGKILL, its postgres exits by itself (Pdeathsig), and the next start on
// the same directory works, despite a stale postmaster.pid, and has the
// data.
func TestBuiltinSurvivesKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testBuiltinOptions(t)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+opts.Dir)
	if opts.runtimeRoot != "" {
		cmd.Env = append(cmd.Env, helperRuntimeEnv+"="+opts.runtimeRoot)
	}
	cmd.Stderr = testWriter{t}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	url := strings.TrimSpace(line)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the crash')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	dataDir := opts.Dir + "/" + builtinDataDir
	if p, err := os.ReadFile(filepath.Join(opts.Dir, builtinPointerFile)); err == nil {
		dataDir = strings.TrimSpace(string(p))
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(pidFile), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatal(err)
	}

	helperPid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Pdeathsig: the postmaster stops by itself.
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for isPostgres(pid) {
		select {
		case <-deadline.C:
			t.Fatalf("the killed owner's postmaster (pid %d) is still running", pid)
		case <-tick.C:
		}
	}
	// As if the postmaster had been killed with SIGKILL too: a stale
	// postmaster.pid naming a dead process.
	pidPath := filepath.Join(dataDir, "postmaster.pid")
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(helperPid)+"\n"+dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(pidPath, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}

	b := startTestBuiltin(t, opts)
	var v string
	if err := connect(t, b.URL()).QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "before the crash" {
		t.Errorf("kept row = %q", v)
	}
}

// helperRuntimeEnv passes the runtime location to the helper process.
const helperRuntimeEnv = "CODER_STORE_TEST_BUILTIN_HELPER_RUNTIME"

// BuiltinHelperForTest runs the helper process of TestBuiltinSurvivesKill
// when the environment asks for it, never returning then; it is called from
// TestMain (in package store_test, hence exported) and reports false when
// this is a normal test run.
func BuiltinHelperForTest() bool {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		return false
	}
	opts := BuiltinOptions{Dir: dir, Ephemeral: true, runtimeRoot: os.Getenv(helperRuntimeEnv)}
	b, err := StartBuiltin(context.Background(), opts)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString(b.URL() + "\n")
	select {} // until killed
}
