package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// osAccount is the OS account that runs one coder user's local agents
// when the server is root.
type osAccount struct {
	Name     string
	UID, GID int
	Home     string
}

// accountsMu serialises useradd and userdel in this process: both lock
// /etc/passwd, and a second call from this process would only wait on the
// first. (Other processes are handled by retrying on lock contention.)
var accountsMu sync.Mutex

const (
	accountPrefix = "coder-"
	accountShell  = "/bin/bash"
	// maxAccountName is the longest user name useradd accepts.
	maxAccountName = 32
	// passwdFile is where accounts are looked up.
	passwdFile = "/etc/passwd"
)

// accountComment is the comment (GECOS) field that ties an OS account to
// one coder user: user IDs are random UUIDs, so two deployments on one
// machine never claim the same account.
func accountComment(userID string) string { return "coder user " + userID }

// accountNames lists the names to try for login's account, best first:
// coder-<login>, then names with a hash of the user ID for when that name
// belongs to someone else.
func accountNames(login, userID string) []string {
	var b strings.Builder
	for _, r := range strings.ToLower(login) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	base := b.String()
	if base == "" {
		base = "user"
	}
	sum := sha256.Sum256([]byte(userID))
	h := hex.EncodeToString(sum[:])[:8]
	first := accountPrefix + base
	if len(first) > maxAccountName {
		first = first[:maxAccountName]
	}
	names := []string{first}
	short := base[:min(len(base), maxAccountName-len(accountPrefix)-len(h)-3)]
	names = append(names, accountPrefix+short+"-"+h)
	for i := 2; i <= 9; i++ {
		names = append(names, fmt.Sprintf("%s%s-%s%d", accountPrefix, short, h, i))
	}
	return names
}

// lookupAccount finds the account whose comment names userID.
func lookupAccount(userID string) (osAccount, bool, error) {
	data, err := os.ReadFile(passwdFile)
	if err != nil {
		return osAccount{}, false, fmt.Errorf("read %s: %w", passwdFile, err)
	}
	want := accountComment(userID)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[4] != want {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return osAccount{}, false, fmt.Errorf("account %s: bad uid or gid in %s", f[0], passwdFile)
		}
		if uid == 0 || gid == 0 || f[0] == "root" || f[0] == "postgres" {
			return osAccount{}, false, fmt.Errorf("account %s of coder user %s is privileged (uid %d, gid %d): refusing to run agents as it", f[0], userID, uid, gid)
		}
		return osAccount{Name: f[0], UID: uid, GID: gid, Home: f[5]}, true, nil
	}
	return osAccount{}, false, nil
}

// useradd and userdel exit codes (shadow-utils).
const (
	exitCantUpdatePasswd = 1
	exitNameInUse        = 9
	exitCantUpdateGroup  = 10
	exitUserBusy         = 8
)

// runAccountTool runs useradd or userdel, retrying for a while when another
// process holds the /etc/passwd or /etc/group lock. It returns the exit
// code (0 on success) and the combined output.
func runAccountTool(ctx context.Context, name string, args ...string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		var ee *exec.ExitError
		if err == nil {
			return 0, out, nil
		}
		if !errors.As(err, &ee) {
			if errors.Is(err, exec.ErrNotFound) {
				return -1, out, fmt.Errorf("%s is missing: install Debian's passwd package (apt-get install passwd), or run the server as a non-root user", name)
			}
			return -1, out, fmt.Errorf("%s: %w", name, err)
		}
		code := ee.ExitCode()
		busy := code == exitUserBusy && name == "userdel"
		locked := (code == exitCantUpdatePasswd || code == exitCantUpdateGroup) &&
			bytes.Contains(bytes.ToLower(out), []byte("lock"))
		if !busy && !locked {
			return code, out, nil
		}
		select {
		case <-ctx.Done():
			return code, out, nil
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// ensureAccount returns userID's OS account, creating it (and its home
// <homes>/<name>, mode 0700, owned by it) on first use: locked password,
// bash as shell, a group of its own, no supplementary groups.
func ensureAccount(ctx context.Context, userID, login, homes string) (osAccount, error) {
	accountsMu.Lock()
	defer accountsMu.Unlock()
	acct, ok, err := lookupAccount(userID)
	if err != nil {
		return osAccount{}, err
	}
	if !ok {
		acct, err = createAccountLocked(ctx, userID, login, homes)
		if err != nil {
			return osAccount{}, err
		}
	}
	if err := makeHome(acct); err != nil {
		return osAccount{}, err
	}
	return acct, nil
}

func createAccountLocked(ctx context.Context, userID, login, homes string) (osAccount, error) {
	for _, name := range accountNames(login, userID) {
		home := filepath.Join(homes, name)
		code, out, err := runAccountTool(ctx, "useradd",
			"--comment", accountComment(userID), "--home-dir", home, "--no-create-home",
			"--shell", accountShell, "--user-group", "--password", "!", name)
		if err != nil {
			return osAccount{}, fmt.Errorf("create OS account for %s: %w", login, err)
		}
		switch code {
		case 0:
		case exitNameInUse:
			continue // another user's (or another deployment's) account
		default:
			return osAccount{}, fmt.Errorf("create OS account %s for %s: useradd exited %d: %s", name, login, code, bytes.TrimSpace(out))
		}
		acct, ok, err := lookupAccount(userID)
		if err != nil {
			return osAccount{}, err
		}
		if !ok {
			return osAccount{}, fmt.Errorf("create OS account %s for %s: not in %s after useradd", name, login, passwdFile)
		}
		return acct, nil
	}
	return osAccount{}, fmt.Errorf("create OS account for %s: every name we tried is taken (%s…)", login, accountNames(login, userID)[0])
}

// makeHome creates the account's home (and its parent, 0711) when missing
// and makes it the account's, mode 0700.
func makeHome(acct osAccount) error {
	if err := os.MkdirAll(filepath.Dir(acct.Home), 0o711); err != nil {
		return fmt.Errorf("create homes dir: %w", err)
	}
	if err := os.Mkdir(acct.Home, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create home of %s: %w", acct.Name, err)
	}
	fi, err := os.Lstat(acct.Home)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("home of %s: %s is not a directory", acct.Name, acct.Home)
	}
	if err := os.Lchown(acct.Home, acct.UID, acct.GID); err != nil {
		return fmt.Errorf("home of %s: %w", acct.Name, err)
	}
	return os.Chmod(acct.Home, 0o700)
}

// removeAccount deletes userID's OS account, if any: its processes are
// killed, the account and its group removed, and its home removed when it
// lies under homes. It is a no-op for a user without an account.
func removeAccount(ctx context.Context, userID, homes string) error {
	accountsMu.Lock()
	defer accountsMu.Unlock()
	acct, ok, err := lookupAccount(userID)
	if err != nil || !ok {
		return err
	}
	killAccountProcesses(acct.UID)
	code, out, err := runAccountTool(ctx, "userdel", acct.Name)
	if err != nil {
		return fmt.Errorf("remove OS account %s: %w", acct.Name, err)
	}
	if code != 0 {
		return fmt.Errorf("remove OS account %s: userdel exited %d: %s", acct.Name, code, bytes.TrimSpace(out))
	}
	rel, err := filepath.Rel(homes, acct.Home)
	if err != nil || rel != acct.Name {
		return fmt.Errorf("remove OS account %s: kept its home %s, which is not in %s", acct.Name, acct.Home, homes)
	}
	if err := os.RemoveAll(acct.Home); err != nil {
		return fmt.Errorf("remove home of %s: %w", acct.Name, err)
	}
	return nil
}

// killAccountProcesses sends SIGKILL to every process whose real uid is
// uid, a few rounds (a dying shell's children).
func killAccountProcesses(uid int) {
	for range 5 {
		entries, _ := os.ReadDir("/proc")
		found := false
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
			if err != nil {
				continue
			}
			if procUID(status) == uid {
				found = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if !found {
			return
		}
	}
}

// procUID returns the real uid of a /proc/<pid>/status, or -1.
func procUID(status []byte) int {
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			if err != nil {
				return -1
			}
			return uid
		}
	}
	return -1
}
