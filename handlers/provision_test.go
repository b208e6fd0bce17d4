package handlers_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/provision"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

const localTemplate = "provisioner: local\nagents:\n  - name: main\n"

// requireRoot fails a test that needs root to create OS accounts: CI runs
// the tests as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates OS accounts (useradd) and must run as root: run it with sudo, or in CI as root")
	}
}

// isolatingProvisioner is the real local provisioner, as a root server
// runs it, with its state in a directory other OS users can traverse;
// cleanup removes the OS accounts it created.
func isolatingProvisioner(t *testing.T) *provision.Process {
	t.Helper()
	requireRoot(t)
	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: testutil.ProvisionerDir(t), Logger: testLogger(t)}
	t.Cleanup(func() { prov.Close() })
	return prov
}

// agentProcess is a local agent process as seen from /proc.
type agentProcess struct {
	pid     int
	uid     int
	account string
	dir     string // its directory (cwd)
	token   string // contents of its token file
}

// findAgent waits for wk's agent to connect and finds its process (by its
// working directory under the provisioner's state root).
func findAgent(t *testing.T, c *sdk.Client, root, name string) (sdk.Workspace, agentProcess) {
	t.Helper()
	var wk sdk.Workspace
	testutil.Eventually(t, 60*time.Second, name+"'s agent to connect", func() bool {
		w, err := c.Workspace(testContext(t), name)
		wk = w
		return err == nil && w.Agents[0].Status == sdk.AgentConnected
	})
	dir := filepath.Join(root, "workspaces", wk.ID, "main")
	ap := agentProcess{dir: dir}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != dir {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
				ap.pid = pid
				ap.uid, _ = strconv.Atoi(f[2]) // effective
			}
		}
	}
	if ap.pid == 0 {
		t.Fatalf("no agent process runs in %s", dir)
	}
	u, err := user.LookupId(strconv.Itoa(ap.uid))
	if err != nil {
		t.Fatalf("agent of %s runs as uid %d, which has no account: %v", name, ap.uid, err)
	}
	ap.account = u.Username
	tok, err := os.ReadFile(filepath.Join(dir, "agent-token"))
	if err != nil {
		t.Fatalf("agent token file: %v", err)
	}
	ap.token = strings.TrimSpace(string(tok))
	return wk, ap
}

// TestLocalWorkspaceIsolation is issue 12's report: a member's local
// workspace ran as the server's (root) user and read the server's secrets
// and every other agent's token. Now each user's agent runs as an OS
// account of their own, with a clean environment and its token in a file
// only it can read; from a member's web terminal, every secret of the
// report is out of reach.
func TestLocalWorkspaceIsolation(t *testing.T) {
	t.Parallel()
	prov := isolatingProvisioner(t)
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov}; o.tailnet = true })
	ts.pushTemplate(t, "local", localTemplate)
	alice := ts.member(t, "alice")
	bob := ts.member(t, "bob")
	createWorkspace(t, alice, "dev", "local")
	createWorkspace(t, bob, "dev", "local")
	aw, a := findAgent(t, alice, prov.Dir, "dev")
	_, b := findAgent(t, bob, prov.Dir, "dev")

	// Each runs as an unprivileged account of its user alone, named after
	// them, with a home in the provisioner's dir.
	for _, c := range []struct {
		login string
		ap    agentProcess
	}{{"alice", a}, {"bob", b}} {
		if c.ap.uid == 0 || c.ap.account == "postgres" || !strings.HasPrefix(c.ap.account, "coder-"+c.login) {
			t.Errorf("%s's agent runs as %s (uid %d), want an account coder-%s…", c.login, c.ap.account, c.ap.uid, c.login)
		}
		u, _ := user.LookupId(strconv.Itoa(c.ap.uid))
		home := filepath.Join(prov.Dir, "homes", c.ap.account)
		if u == nil || u.HomeDir != home {
			t.Errorf("%s's account home %v, want %s", c.login, u, home)
		}
		for path, mode := range map[string]os.FileMode{home: 0o700, c.ap.dir: 0o700, filepath.Join(c.ap.dir, "agent-token"): 0o600} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Error(err)
				continue
			}
			st := int(fi.Sys().(*syscall.Stat_t).Uid)
			if fi.Mode().Perm() != mode || st != c.ap.uid {
				t.Errorf("%s: mode %v owner %d, want %v owned by %s", path, fi.Mode().Perm(), st, mode, c.ap.account)
			}
		}
		// It runs the copy of the binary that every account may run.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.ap.pid)); err != nil || exe != filepath.Join(prov.Dir, "bin", "coder") {
			t.Errorf("%s's agent runs %q (%v), want %s", c.login, exe, err, filepath.Join(prov.Dir, "bin", "coder"))
		}
		// The token is in neither the environment nor the command line.
		for _, f := range []string{"environ", "cmdline"} {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", c.ap.pid, f))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(c.ap.token)) {
				t.Errorf("%s's agent token is in /proc/%d/%s", c.login, c.ap.pid, f)
			}
			if f != "environ" {
				continue
			}
			// A minimal environment, none of the server's.
			allowed := map[string]bool{"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true, "LANG": true,
				"CODER_AGENT_URL": true, "CODER_AGENT_TOKEN_FILE": true, "CODER_AGENT_DIRECTORY": true}
			for _, kv := range bytes.Split(bytes.TrimRight(data, "\x00"), []byte{0}) {
				if k, _, _ := strings.Cut(string(kv), "="); !allowed[k] {
					t.Errorf("%s's agent has %s in its environment, want only %v", c.login, k, allowed)
				}
			}
		}
	}
	if a.uid == b.uid {
		t.Errorf("alice's and bob's agents share uid %d", a.uid)
	}

	// The built-in PostgreSQL: its password file and a superuser login
	// without the password.
	pgURL, err := url.Parse(storetest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	pgPassword, _ := pgURL.User.Password()
	pgPasswordFile := ""
	var files []string
	for _, root := range []string{"/dev/shm", os.TempDir()} { // where storetest keeps its cluster
		f, _ := filepath.Glob(filepath.Join(root, "coder-storetest-*", "postgres", "password"))
		files = append(files, f...)
	}
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(data)) == pgPassword {
			pgPasswordFile = f
		}
	}
	if pgPasswordFile == "" {
		t.Fatalf("no password file of the test's built-in PostgreSQL among %q", files)
	}
	// The owner's password file, as scripts/dev.sh writes it: umask 077 in
	// a traversable state dir.
	devState := filepath.Join(testutil.ProvisionerDir(t), ".coder-dev")
	if err := os.Mkdir(devState, 0o711); err != nil {
		t.Fatal(err)
	}
	adminPassword := filepath.Join(devState, "admin-password")
	if err := os.WriteFile(adminPassword, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	term := terminaltest.DialBrowser(t, "ws://"+ts.URL.Host+"/api/v2/workspaceagents/"+aw.Agents[0].ID+"/pty?"+url.Values{"reconnect": {uuid.NewString()}}.Encode(),
		terminaltest.BrowserOptions{Header: tokenHeader(alice.Token)})
	// The shell works, as alice's account, and reads alice's own token.
	term.Type("echo who=$(id -un); echo own=$(cat " + filepath.Join(a.dir, "agent-token") + " | wc -c)\r")
	term.WaitText("who=" + a.account + "\r")
	term.WaitText(fmt.Sprintf("own=%d", len(a.token)+1))
	denied := map[string]string{
		"the built-in PostgreSQL's password":     "cat " + pgPasswordFile,
		"bob's home":                             "ls " + filepath.Join(prov.Dir, "homes", b.account),
		"bob's agent's environment":              fmt.Sprintf("cat /proc/%d/environ", b.pid),
		"bob's agent's token file":               "cat " + filepath.Join(b.dir, "agent-token"),
		"bob's agent's directory":                "ls " + b.dir,
		"the owner's password file (dev.sh)":     "cat " + adminPassword,
		"the agent logs (written by the server)": "cat " + filepath.Join(filepath.Dir(a.dir), "main.log"),
	}
	i := 0
	for what, cmd := range denied {
		i++
		// Count the lines that say so: the typed command's echo has none.
		term.Type(fmt.Sprintf("echo check%d=$(%s 2>&1 | grep -c 'Permission denied')\r", i, cmd))
		term.WaitFor(15*time.Second, what, func(out []byte) bool {
			return bytes.Contains(out, []byte(fmt.Sprintf("check%d=1\r", i))) || bytes.Contains(out, []byte(fmt.Sprintf("check%d=0\r", i)))
		})
		if bytes.Contains(term.Output(), []byte(fmt.Sprintf("check%d=0\r", i))) {
			t.Errorf("alice's terminal could read %s (%s)", what, cmd)
		}
	}
	// The database as superuser without the password: refused.
	term.Type(fmt.Sprintf("PGCONNECT_TIMEOUT=5 psql -w -h %s -p %s -U postgres -c 'select 42*1000' postgres; echo psql=$?\r", pgURL.Hostname(), pgURL.Port()))
	term.WaitFor(30*time.Second, "psql", func(out []byte) bool {
		return bytes.Contains(out, []byte("psql=")) && !bytes.HasSuffix(out, []byte("psql=$?"))
	})
	testutil.Eventually(t, 30*time.Second, "psql to finish", func() bool {
		return bytes.Contains(term.Output(), []byte("psql=2\r")) || bytes.Contains(term.Output(), []byte("psql=0\r")) || bytes.Contains(term.Output(), []byte("psql=1\r"))
	})
	if out := term.Output(); bytes.Contains(out, []byte("42000")) || !bytes.Contains(out, []byte("psql=2\r")) {
		t.Errorf("psql as superuser without the password did not fail to connect:\n%s", out)
	}
}

// TestLocalWorkspaceNeedsIsolation: a server that cannot give each user
// an OS account (not root) refuses a member's local workspace, in the API
// and in the dashboard form, with what to do instead; an owner's works.
func TestLocalWorkspaceNeedsIsolation(t *testing.T) {
	t.Parallel()
	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: t.TempDir(), Logger: testLogger(t), NoIsolation: true}
	t.Cleanup(func() { prov.Close() })
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov} })
	ts.pushTemplate(t, "local", localTemplate)
	ts.pushTemplate(t, "base", testTemplate)
	alice := ts.member(t, "alice")

	err := alice.Request(testContext(t), http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "local"}, nil)
	var se *sdk.Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || !strings.Contains(se.Message, "provisioner: manual") || !strings.Contains(se.Message, "root") {
		t.Fatalf("member's local workspace: %v, want 403 naming root and a manual template", err)
	}
	var ws []sdk.Workspace
	if err := alice.Request(testContext(t), http.MethodGet, "/api/v2/workspaces", nil, &ws); err != nil || len(ws) != 0 {
		t.Fatalf("the refused create left workspaces: %+v (%v)", ws, err)
	}
	b := loggedIn(t, ts, "alice", "alice-password")
	resp := b.do("POST", "/workspaces", url.Values{"name": {"dev"}, "template": {"local"}}, nil)
	body := readBody(t, resp)
	if errs := byTestID(t, body, "form-error"); resp.StatusCode != http.StatusForbidden || len(errs) != 1 || !strings.Contains(errs[0], "provisioner: manual") {
		t.Fatalf("dashboard form: status %d, errors %q", resp.StatusCode, errs)
	}
	// A manual template still works for the member; a local one for the
	// owner.
	createWorkspace(t, alice, "remote", "base")
	createWorkspace(t, ts.Owner, "dev", "local")
	testutil.Eventually(t, 60*time.Second, "the owner's local agent to connect", func() bool {
		w, err := ts.Owner.Workspace(testContext(t), "dev")
		return err == nil && w.Agents[0].Status == sdk.AgentConnected
	})
}

// TestUserRemovalRemovesAccount: deleting a user (after their workspaces)
// removes their OS account and its home.
func TestUserRemovalRemovesAccount(t *testing.T) {
	t.Parallel()
	prov := isolatingProvisioner(t)
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov}; o.tailnet = true })
	ts.pushTemplate(t, "local", localTemplate)
	carol := ts.member(t, "carol")
	createWorkspace(t, carol, "dev", "local")
	wk, ap := findAgent(t, carol, prov.Dir, "dev")
	home := filepath.Join(prov.Dir, "homes", ap.account)
	if _, err := os.Stat(home); err != nil {
		t.Fatal(err)
	}
	if err := carol.Request(testContext(t), http.MethodDelete, "/api/v2/workspaces/"+wk.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.Owner.Request(testContext(t), http.MethodDelete, "/api/v2/users/carol", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := user.Lookup(ap.account); err == nil {
		t.Errorf("OS account %s still exists after its user was deleted", ap.account)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("home %s after its user was deleted: %v", home, err)
	}
}

// TestStartWorkspacesNeedsIsolation: a member's local workspace made while
// the server could isolate it (root) is not started by a server that
// cannot (StartWorkspaces skips it, and starting it by hand is refused),
// while the owner's still is.
func TestStartWorkspacesNeedsIsolation(t *testing.T) {
	t.Parallel()
	prov := isolatingProvisioner(t)
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov} })
	ts.pushTemplate(t, "local", localTemplate)
	alice := ts.member(t, "alice")
	aliceWS := createWorkspace(t, alice, "dev", "local")
	createWorkspace(t, ts.Owner, "dev", "local")
	prov.Close()

	rec := &urlRecorder{Process: &provision.Process{Binary: testutil.CoderBinary(t), Dir: t.TempDir(), Logger: testLogger(t), NoIsolation: true}}
	t.Cleanup(func() { rec.Close() })
	ts2 := newTestServer(t, func(o *testOptions) { o.provisioner = rec; o.db = ts.DB; o.noFirstUser = true })
	if err := ts2.API.StartWorkspaces(testContext(t)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	started := len(rec.urls)
	rec.mu.Unlock()
	if started != 1 {
		t.Fatalf("a server that cannot isolate started %d agents, want 1 (the owner's)", started)
	}
	alice2 := ts2.client(ts2.login(t, "alice", "alice-password"))
	err := alice2.Request(testContext(t), http.MethodPost, "/api/v2/workspaces/"+aliceWS.ID+"/start", nil, nil)
	var se *sdk.Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || !strings.Contains(se.Message, "provisioner: manual") {
		t.Fatalf("starting the member's local workspace: %v, want 403", err)
	}
	rec.mu.Lock()
	started = len(rec.urls)
	rec.mu.Unlock()
	if started != 1 {
		t.Fatalf("the refused start started an agent (%d started)", started)
	}
}

// TestLocalAccountNames: an account is named coder-<username>, cut to the
// 32 characters useradd takes; when that name is taken by another account,
// the user gets another one.
func TestLocalAccountNames(t *testing.T) {
	t.Parallel()
	prov := isolatingProvisioner(t)
	// Someone else's account with dave's name (its home in the
	// provisioner's dir, so that cleanup removes it).
	out, err := exec.Command("useradd", "--no-create-home", "--home-dir", filepath.Join(prov.Dir, "someone-else"), "coder-dave").CombinedOutput()
	if err != nil {
		t.Fatalf("useradd coder-dave: %v: %s", err, out)
	}
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov} })
	ts.pushTemplate(t, "local", localTemplate)
	long := "a-very-long-username-of-32-chars"
	for _, login := range []string{"dave", long} {
		c := ts.member(t, login)
		createWorkspace(t, c, "dev", "local")
		_, ap := findAgent(t, c, prov.Dir, "dev")
		switch login {
		case "dave":
			if !regexp.MustCompile(`^coder-dave-[0-9a-f]{8}$`).MatchString(ap.account) {
				t.Errorf("dave's agent runs as %q, want coder-dave-<hash> (coder-dave is someone else's)", ap.account)
			}
		default:
			if want := ("coder-" + long)[:32]; ap.account != want {
				t.Errorf("%s's agent runs as %q, want %q", login, ap.account, want)
			}
		}
	}
}

// TestLocalStateOutsideUntraversableDir: when other users cannot reach the
// provisioner's dir (a config dir under /root), homes and agent
// directories live in /var/lib/coder-workspaces/<hash> and the agent
// still runs as its account.
func TestLocalStateOutsideUntraversableDir(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "state") // t.TempDir's parent is 0700
	sum := sha256.Sum256([]byte(dir))
	root := filepath.Join("/var/lib/coder-workspaces", hex.EncodeToString(sum[:8]))
	t.Cleanup(func() {
		testutil.RemoveAccountsUnder(t, root)
		os.RemoveAll(root)
		os.Remove(filepath.Dir(root)) // when empty
	})
	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: dir, Logger: testLogger(t)}
	t.Cleanup(func() { prov.Close() })
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov} })
	ts.pushTemplate(t, "local", localTemplate)
	erin := ts.member(t, "erin")
	createWorkspace(t, erin, "dev", "local")
	_, ap := findAgent(t, erin, root, "dev")
	if ap.uid == 0 || !strings.HasPrefix(ap.account, "coder-erin") {
		t.Fatalf("erin's agent runs as %s (uid %d)", ap.account, ap.uid)
	}
	u, err := user.Lookup(ap.account)
	if err != nil || u.HomeDir != filepath.Join(root, "homes", ap.account) {
		t.Fatalf("erin's account home %v (%v), want it in %s", u, err, root)
	}
}

// TestLocalAgentDirHandedOver: an agent directory from before its owner
// had an account (a server that was not isolating) becomes the account's,
// with what the old shells left in it, when an isolating server starts the
// workspace again.
func TestLocalAgentDirHandedOver(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := testutil.ProvisionerDir(t)
	old := &provision.Process{Binary: testutil.CoderBinary(t), Dir: dir, Logger: testLogger(t), NoIsolation: true}
	t.Cleanup(func() { old.Close() })
	ts := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{old} })
	ts.pushTemplate(t, "local", localTemplate)
	wk := createWorkspace(t, ts.Owner, "dev", "local")
	old.Close()
	notes := filepath.Join(dir, "workspaces", wk.ID, "main", "notes", "todo.txt")
	if err := os.MkdirAll(filepath.Dir(notes), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notes, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: dir, Logger: testLogger(t)}
	t.Cleanup(func() { prov.Close() })
	ts2 := newTestServer(t, func(o *testOptions) { o.provisioner = localProvisioner{prov}; o.db = ts.DB; o.noFirstUser = true })
	if err := ts2.API.StartWorkspaces(testContext(t)); err != nil {
		t.Fatal(err)
	}
	_, ap := findAgent(t, ts2.client(ts2.login(t, "owner", "owner-password")), dir, "dev")
	for _, p := range []string{notes, filepath.Dir(notes), ap.dir} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if owner := int(fi.Sys().(*syscall.Stat_t).Uid); ap.uid == 0 || owner != ap.uid {
			t.Errorf("%s is owned by uid %d, want the agent's account %s (uid %d)", p, owner, ap.account, ap.uid)
		}
	}
}
