package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ProvisionerDir returns a new directory for a local provisioner's state
// that other OS users can traverse (mode 0711 down from /), so that the
// OS accounts a root server creates for its users find their homes in it.
// Cleanup, which runs after every cleanup registered later (the server's,
// the provisioner's), removes every OS account whose home lies in it and
// then the directory.
func ProvisionerDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "coder-prov-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		RemoveAccountsUnder(t, dir)
		os.RemoveAll(dir)
	})
	return dir
}

// RemoveAccountsUnder removes (userdel) every OS account whose home lies
// under dir.
func RemoveAccountsUnder(t testing.TB, dir string) {
	t.Helper()
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Errorf("remove test accounts: %v", err)
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || !strings.HasPrefix(f[5], dir+string(filepath.Separator)) {
			continue
		}
		// Another process may hold the /etc/passwd lock: try again.
		Eventually(t, 30*time.Second, "userdel "+f[0], func() bool {
			out, err := exec.Command("userdel", "--force", f[0]).CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 6 { // no such user: the test removed it
				return true
			}
			if err != nil {
				t.Logf("userdel %s: %v: %s", f[0], err, out)
			}
			return err == nil
		})
	}
}
