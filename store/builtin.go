//go:build linux

package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrAlreadyRunning is returned (wrapped) by [StartBuiltin] when another
// process, typically a second coder server, holds the lock of the same
// directory.
var ErrAlreadyRunning = errors.New("built-in postgres is already running")

// Files kept in [BuiltinOptions.Dir].
const (
	builtinLockFile     = "lock"          // flock held while a server uses Dir
	builtinPasswordFile = "password"      // superuser password, 0600, never logged
	builtinLogFile      = "postgres.log"  // postgres stdout and stderr
	builtinDataDir      = "data"          // the cluster, when its user can reach it
	builtinPointerFile  = "data-location" // absolute path of the cluster when it lives elsewhere
)

const (
	// defaultRuntimeRoot holds clusters that the unprivileged user cannot
	// reach inside Dir (see [StartBuiltin]).
	defaultRuntimeRoot = "/var/lib/coder-postgres"
	defaultBinGlob     = "/usr/lib/postgresql/*/bin"
	builtinSuperuser   = "postgres"
	defaultStartLimit  = 2 * time.Minute
	stopGrace          = time.Minute // fast shutdown, before SIGQUIT
	readyPoll          = 20 * time.Millisecond
)

// BuiltinOptions configures [StartBuiltin].
type BuiltinOptions struct {
	// Dir holds the lock, password, log and (usually) the data of the
	// cluster, e.g. <config-dir>/postgres. It is created (mode 0711) when
	// missing. Required.
	Dir string
	// Logger receives progress at info and the server's output at debug.
	// Nil discards.
	Logger *slog.Logger
	// StartTimeout bounds initdb plus the wait for the server to accept
	// connections (crash recovery included). Zero means two minutes.
	StartTimeout time.Duration
	// Ephemeral trades durability for speed (initdb --no-sync, fsync=off,
	// synchronous_commit=off, full_page_writes=off): for tests only, a
	// machine crash can corrupt the cluster. False is durable.
	Ephemeral bool
	// Settings are extra server settings passed as -c name=value at every
	// start (e.g. max_connections). Nil means none. listen_addresses, port
	// and unix_socket_directories are always set by StartBuiltin.
	Settings map[string]string

	// Test hooks; zero values are the real thing.
	binGlob     string                       // where to look first; default defaultBinGlob
	lookPath    func(string) (string, error) // PATH lookup; default exec.LookPath
	runtimeRoot string                       // default defaultRuntimeRoot
}

// Builtin is a PostgreSQL cluster started by [StartBuiltin] and owned by
// this process. Close stops it.
type Builtin struct {
	dir      string
	dataDir  string
	url      string
	logger   *slog.Logger
	lock     *os.File
	logFile  *os.File
	postgres *exec.Cmd
	exited   chan struct{} // closed when postgres has exited
	waitErr  error         // set before exited is closed

	closeOnce sync.Once
	closeErr  error
}

// StartBuiltin starts the built-in PostgreSQL cluster kept in opts.Dir,
// creating it (initdb) on first start, and returns when it accepts
// connections at [Builtin.URL]. The caller must Close the returned Builtin.
// ctx bounds only the start.
//
// The binaries (initdb, postgres) come from the newest
// /usr/lib/postgresql/*/bin, else PATH. The cluster listens on 127.0.0.1
// only, on a free port chosen at each start; unix sockets are disabled;
// every connection needs the superuser password (scram-sha-256), which is
// generated on first start and kept in Dir/password (0600). The server's
// output goes to Dir/postgres.log and to the logger at debug.
//
// One process at a time: a flock on Dir/lock is held until Close, and a
// second StartBuiltin on the same Dir fails with [ErrAlreadyRunning]. If
// the process dies abruptly the kernel sends postgres SIGINT (fast
// shutdown, Pdeathsig), and the next start waits for such an orphan to
// exit before it starts the cluster again.
//
// PostgreSQL refuses to run as root. When this process is root, initdb and
// postgres run as the "postgres" system user (else "nobody"). That user
// must be able to traverse to the data directory: when it can reach Dir
// (checked by starting a process as that user in Dir), the cluster is
// Dir/data; otherwise (Dir under /root, or in a 0700 temporary directory)
// the cluster lives in /var/lib/coder-postgres/<hash of Dir>, owned by that
// user, and Dir/data-location points at it. StartBuiltin never changes the
// mode of a directory it did not create.
func StartBuiltin(ctx context.Context, opts BuiltinOptions) (*Builtin, error) {
	b, err := startBuiltin(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start built-in postgres: %w", err)
	}
	return b, nil
}

// URL returns the connection URL of the cluster's "postgres" database,
// password included: treat it as a secret.
func (b *Builtin) URL() string { return b.url }

// Close stops the cluster with a fast shutdown (clients are disconnected,
// a checkpoint is written) and returns when postgres has exited and the
// directory lock is released. It escalates to SIGQUIT and then SIGKILL if
// postgres does not stop within a minute. Close is idempotent.
func (b *Builtin) Close() error {
	b.closeOnce.Do(func() {
		b.closeErr = b.stop()
		if b.closeErr != nil {
			b.closeErr = fmt.Errorf("stop built-in postgres: %w", b.closeErr)
		}
	})
	return b.closeErr
}

func (b *Builtin) stop() error {
	stopped := false
	select {
	case <-b.exited:
	default:
		stopped = true
		b.logger.Info("stopping built-in postgres")
		_ = b.postgres.Process.Signal(syscall.SIGINT)
		timer := time.NewTimer(stopGrace)
		select {
		case <-b.exited:
		case <-timer.C:
			b.logger.Warn("built-in postgres did not stop in time: sending SIGQUIT")
			_ = b.postgres.Process.Signal(syscall.SIGQUIT)
			timer.Reset(10 * time.Second)
			select {
			case <-b.exited:
			case <-timer.C:
				_ = b.postgres.Process.Kill()
				<-b.exited
			}
		}
		timer.Stop()
	}
	err := b.waitErr
	if stopped && err == nil {
		b.logger.Info("built-in postgres stopped")
	} else if !stopped && err == nil {
		err = errors.New("postgres had exited on its own")
	}
	_ = b.logFile.Close()
	_ = b.lock.Close() // releases the flock
	return err
}

// pgUser is the unprivileged user postgres runs as when we are root.
type pgUser struct {
	name     string
	uid, gid uint32
}

func (u *pgUser) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		// Own process group: a terminal's Ctrl-C reaches coder, which
		// then stops postgres in order, not postgres directly.
		Setpgid: true,
		// Fast shutdown if we die: unlike SIGTERM (smart shutdown) it
		// does not wait for clients, and unlike SIGQUIT it leaves a
		// clean cluster that needs no recovery.
		Pdeathsig: syscall.SIGINT,
	}
	if u != nil {
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
	}
	return attr
}

func (u *pgUser) chown(path string) error {
	if u == nil {
		return nil
	}
	return os.Chown(path, int(u.uid), int(u.gid))
}

func startBuiltin(ctx context.Context, opts BuiltinOptions) (_ *Builtin, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("no directory given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	limit := opts.StartTimeout
	if limit <= 0 {
		limit = defaultStartLimit
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	bins, err := findPostgres(opts.binGlob, opts.lookPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()

	var runAs *pgUser
	if os.Geteuid() == 0 {
		if runAs, err = lookupPGUser(); err != nil {
			return nil, err
		}
	}
	dataDir, err := chooseDataDir(dir, opts.runtimeRoot, bins.postgres, runAs, logger)
	if err != nil {
		return nil, err
	}
	logger = logger.With("data_dir", dataDir)

	logFile, err := os.OpenFile(filepath.Join(dir, builtinLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			logFile.Close()
		}
	}()
	out := &outputWriter{file: logFile, logger: logger}

	password, err := readPassword(dir)
	initialised := fileExists(filepath.Join(dataDir, "PG_VERSION"))
	switch {
	case initialised && err != nil:
		return nil, fmt.Errorf("cluster %s exists but its password is unreadable (%w): remove %s to start afresh", dataDir, err, dir)
	case !initialised:
		logger.Info("initialising built-in postgres (first start)", "postgres", bins.postgres)
		if password, err = initCluster(ctx, dir, dataDir, bins, runAs, opts.Ephemeral, out); err != nil {
			return nil, err
		}
	}
	if err := waitForOrphan(ctx, dataDir, logger); err != nil {
		return nil, err
	}

	b := &Builtin{dir: dir, dataDir: dataDir, logger: logger, lock: lock, logFile: logFile}
	logger.Info("starting built-in postgres", "postgres", bins.postgres)
	// A free port can be taken between our probe and postgres binding it:
	// try a few.
	for attempt := 0; ; attempt++ {
		port, perr := freePort()
		if perr != nil {
			return nil, perr
		}
		err = b.start(ctx, bins, runAs, port, password, opts, out)
		if err == nil {
			break
		}
		if attempt >= 2 || !strings.Contains(out.tail(), "Address already in use") {
			return nil, err
		}
		logger.Debug("port taken, retrying", "port", port)
	}
	logger.Info("built-in postgres is ready", "port", b.port())
	return b, nil
}

func (b *Builtin) port() string {
	u, err := url.Parse(b.url)
	if err != nil {
		return ""
	}
	return u.Port()
}

// start runs postgres on port and waits until it accepts connections. On
// error postgres has exited.
func (b *Builtin) start(ctx context.Context, bins postgresBinaries, runAs *pgUser, port int, password string, opts BuiltinOptions, out *outputWriter) error {
	args := []string{
		"-D", b.dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
	}
	settings := map[string]string{}
	if opts.Ephemeral {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	delete(settings, "listen_addresses")
	delete(settings, "port")
	delete(settings, "unix_socket_directories")
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}

	out.resetTail()
	cmd := exec.Command(bins.postgres, args...)
	cmd.Dir = b.dataDir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = runAs.sysProcAttr()
	// Backends that outlive the postmaster must not hold Wait forever.
	cmd.WaitDelay = 5 * time.Second
	b.postgres = cmd
	b.exited = make(chan struct{})
	started := make(chan error, 1)
	// Pdeathsig fires when the thread that started the child exits, not
	// only the process: start and wait on a locked thread that lives as
	// long as postgres does (golang/go#27505).
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			b.waitErr = err
			started <- err
			close(b.exited)
			return
		}
		started <- nil
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	if err := <-started; err != nil {
		return err
	}

	u := &url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(builtinSuperuser, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	b.url = u.String()
	if err := waitReady(ctx, b.url, b.exited); err != nil {
		select {
		case <-b.exited:
			err = fmt.Errorf("postgres exited (%v) while starting: %w\n%s", b.waitErr, err, out.tail())
		default:
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-b.exited
			err = fmt.Errorf("postgres did not accept connections: %w\n%s", err, out.tail())
		}
		return err
	}
	return nil
}

// waitReady polls a connection to url until it succeeds, ctx ends or
// exited is closed.
func waitReady(ctx context.Context, connURL string, exited <-chan struct{}) error {
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		return err
	}
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	var last error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.ConnectConfig(attemptCtx, cfg)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-exited:
			return last
		case <-ticker.C:
		}
	}
}

type postgresBinaries struct {
	initdb, postgres string
}

// findPostgres finds initdb and postgres in the newest directory matching
// glob, else on PATH.
func findPostgres(glob string, lookPath func(string) (string, error)) (postgresBinaries, error) {
	if glob == "" {
		glob = defaultBinGlob
	}
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	dirs, _ := filepath.Glob(glob)
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[j], dirs[i]) })
	for _, d := range dirs {
		b := postgresBinaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	initdb, err1 := lookPath("initdb")
	postgres, err2 := lookPath("postgres")
	if err1 == nil && err2 == nil {
		return postgresBinaries{initdb: initdb, postgres: postgres}, nil
	}
	return postgresBinaries{}, fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found in %s or PATH: "+
		"install them with `apt-get install postgresql`, or point --postgres-url / CODER_PG_CONNECTION_URL at an external database", glob)
}

// versionLess orders .../<version>/bin paths by their numeric version
// (9.6 < 15 < 16), falling back to string order.
func versionLess(a, b string) bool {
	va, vb := dirVersion(a), dirVersion(b)
	for i := 0; i < len(va) && i < len(vb); i++ {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	if len(va) != len(vb) {
		return len(va) < len(vb)
	}
	return a < b
}

func dirVersion(binDir string) []int {
	var v []int
	for _, part := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return v
		}
		v = append(v, n)
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// lockDir takes the flock of dir, held until the returned file is closed.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, builtinLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another coder server is already using %s: %w", dir, ErrAlreadyRunning)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// For humans: who holds it.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func lookupPGUser() (*pgUser, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &pgUser{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, errors.New(`running as root, and neither a "postgres" nor a "nobody" user exists to run PostgreSQL as: create one, run coder as another user, or point --postgres-url / CODER_PG_CONNECTION_URL at an external database`)
}

// chooseDataDir returns where the cluster lives (see StartBuiltin). A
// previous decision, recorded in the pointer file, wins.
func chooseDataDir(dir, runtimeRoot, postgresBin string, runAs *pgUser, logger *slog.Logger) (string, error) {
	pointer := filepath.Join(dir, builtinPointerFile)
	if b, err := os.ReadFile(pointer); err == nil {
		p := strings.TrimSpace(string(b))
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("%s: not an absolute path", pointer)
		}
		if err := ensureDataDir(p, runAs); err != nil {
			return "", err
		}
		return p, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	inside := filepath.Join(dir, builtinDataDir)
	if runAs == nil || fileExists(inside) || canReach(dir, postgresBin, runAs) {
		return inside, ensureDataDir(inside, runAs)
	}
	// runAs cannot traverse to dir: keep the cluster in a runtime location
	// it can reach, named by dir so each config dir has its own.
	if runtimeRoot == "" {
		runtimeRoot = defaultRuntimeRoot
	}
	sum := sha256.Sum256([]byte(dir))
	p := filepath.Join(runtimeRoot, hex.EncodeToString(sum[:8]))
	logger.Info("built-in postgres user cannot reach the directory: keeping the cluster in a runtime location",
		"user", runAs.name, "dir", dir, "location", p)
	if err := os.MkdirAll(runtimeRoot, 0o755); err != nil {
		return "", err
	}
	if !canReach(runtimeRoot, postgresBin, runAs) {
		return "", fmt.Errorf("user %s cannot reach %s: make it traversable (chmod o+x) or run coder as a non-root user", runAs.name, runtimeRoot)
	}
	if err := ensureDataDir(p, runAs); err != nil {
		return "", err
	}
	if err := writeFileAtomic(pointer, []byte(p+"\n"), 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// ensureDataDir creates the (empty) data directory owned by runAs when
// missing. Existing directories are left as they are.
func ensureDataDir(p string, runAs *pgUser) error {
	err := os.Mkdir(p, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return runAs.chown(p)
}

// canReach reports whether runAs can change directory into dir, by running
// "postgres --version" there as that user: exact, whatever the modes, ACLs
// or security modules say.
func canReach(dir, postgresBin string, runAs *pgUser) bool {
	cmd := exec.Command(postgresBin, "--version")
	cmd.Dir = dir
	cmd.SysProcAttr = runAs.sysProcAttr()
	return cmd.Run() == nil
}

func readPassword(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, builtinPasswordFile))
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", errors.New("empty password file")
	}
	return p, nil
}

// initCluster runs initdb into a fresh directory next to dataDir and
// renames it into place, so an interrupted first start leaves nothing
// half-made behind. It returns the new superuser password.
func initCluster(ctx context.Context, dir, dataDir string, bins postgresBinaries, runAs *pgUser, ephemeral bool, out io.Writer) (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	password := hex.EncodeToString(raw)
	if err := writeFileAtomic(filepath.Join(dir, builtinPasswordFile), []byte(password+"\n"), 0o600); err != nil {
		return "", err
	}

	parent := filepath.Dir(dataDir)
	tmp := dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := runAs.chown(tmp); err != nil {
		return "", err
	}
	// initdb reads the password from a file, as the postgres user.
	pwfile, err := os.CreateTemp(parent, ".pwfile-")
	if err != nil {
		return "", err
	}
	defer os.Remove(pwfile.Name())
	_, err = pwfile.WriteString(password + "\n")
	if cerr := pwfile.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = runAs.chown(pwfile.Name())
	}
	if err != nil {
		return "", err
	}

	args := []string{
		"-D", tmp,
		"-U", builtinSuperuser,
		"--pwfile=" + pwfile.Name(),
		"--auth=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
	}
	if ephemeral {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, bins.initdb, args...)
	cmd.Dir = tmp
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(out, &buf)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = runAs.sysProcAttr()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("initdb: %w\n%s", err, buf.String())
	}

	// Only password logins over loopback TCP; unix sockets are disabled.
	hba := "# Written by coder: password logins over loopback TCP only.\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	hbaPath := filepath.Join(tmp, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return "", err
	}
	if err := runAs.chown(hbaPath); err != nil {
		return "", err
	}
	// dataDir exists (empty, owned by runAs); swap it for the new cluster.
	if err := os.Remove(dataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("data directory %s is not empty but holds no cluster: remove it: %w", dataDir, err)
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return "", err
	}
	return password, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// waitForOrphan waits for a postmaster left running on dataDir by a
// previous owner of the lock that died (it received Pdeathsig and is
// shutting down). Postgres itself handles a stale postmaster.pid whose
// process is gone.
func waitForOrphan(ctx context.Context, dataDir string, logger *slog.Logger) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !isPostgres(pid) || !runsIn(pid, dataDir) {
		// Gone, or another program (another cluster, after a reboot) got
		// the pid: postgres overwrites the stale file itself.
		return nil
	}
	logger.Warn("waiting for an orphaned built-in postgres to exit", "pid", pid)
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	deadline := time.NewTimer(stopGrace)
	defer deadline.Stop()
	_ = syscall.Kill(pid, syscall.SIGINT)
	for isPostgres(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("orphaned postgres (pid %d) still running on %s: %w", pid, dataDir, ctx.Err())
		case <-deadline.C:
			logger.Warn("orphaned built-in postgres did not stop in time: sending SIGQUIT", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		case <-ticker.C:
		}
	}
	return nil
}

// runsIn reports whether the working directory of pid is dir, as it is
// for a postmaster of the cluster in dir.
func runsIn(pid int, dir string) bool {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false
	}
	real, err := filepath.EvalSymlinks(dir)
	return err == nil && cwd == real
}

// isPostgres reports whether pid is a live (not zombie) postgres process.
func isPostgres(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return false
	}
	return s[open+1:end] == "postgres" && s[end+2] != 'Z' && s[end+2] != 'X'
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// outputWriter copies postgres output to the log file and, line by line,
// to the logger at debug; it keeps the recent output for error messages.
// exec.Cmd serialises calls to Write.
type outputWriter struct {
	file    io.Writer
	logger  *slog.Logger
	mu      sync.Mutex
	partial []byte
	recent  []byte
}

const outputTail = 4 << 10

func (w *outputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.file.Write(p)
	w.recent = append(w.recent, p...)
	if len(w.recent) > 2*outputTail {
		w.recent = append([]byte(nil), w.recent[len(w.recent)-outputTail:]...)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.logger.Debug("postgres output", "line", string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > outputTail {
		w.logger.Debug("postgres output", "line", string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

func (w *outputWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.recent
	if len(r) > outputTail {
		r = r[len(r)-outputTail:]
	}
	return strings.TrimSpace(string(r))
}

func (w *outputWriter) resetTail() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recent = nil
}
