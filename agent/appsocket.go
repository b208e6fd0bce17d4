package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gatewaydev/coder/sdk"
)

// appSocketDir makes (or checks) the agent's app socket directory: a
// directory in the system's temporary directory, named after the agent so
// that it is the same after a restart (an app the previous agent's script
// started is still found), that only the agent's OS user may enter. One
// that exists and is not the user's own private directory is refused: in a
// shared /tmp another user could have made it to read the sockets.
func appSocketDir(agentID string) (string, error) {
	dir := filepath.Join(os.TempDir(), "coder-apps-"+agentID)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.IsDir() || int(sys.Uid) != os.Getuid() {
		return "", fmt.Errorf("%s exists and is not a directory of the agent's user", dir)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// setupAppSockets prepares the app socket directory when the manifest has
// an app with a socket (or a startup script, which may start one).
func (a *Agent) setupAppSockets(m *sdk.AgentManifest) {
	need := m.StartupScript != ""
	for _, app := range m.Apps {
		need = need || app.Socket != ""
	}
	if !need {
		return
	}
	dir, err := appSocketDir(m.AgentID)
	if err != nil {
		a.logger.Warn("app socket directory", "err", err)
		return
	}
	a.mu.Lock()
	a.appSockDir = dir
	a.mu.Unlock()
}

// appSocket is the unix socket that stands for port (an app with a
// socket whose url names port), or "".
func (a *Agent) appSocket(port uint16) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.manifest == nil {
		return ""
	}
	for _, app := range a.manifest.Apps {
		if sdk.AppSocketPort(app) == port {
			if a.appSockDir == "" {
				return filepath.Join(os.DevNull, "no-socket-dir") // fails to dial, never reaches TCP
			}
			return filepath.Join(a.appSockDir, app.Socket)
		}
	}
	return ""
}

// dialAppSocket dials an app's unix socket.
func (f *forwarder) dialAppSocket(path string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(f.ctx, "unix", path)
}

func (f *forwarder) socketOf(port uint16) string {
	if f.socket == nil {
		return ""
	}
	return f.socket(port)
}
