package handlers_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
)

// TestAppSocket: an app with a socket is reached on its unix socket in the
// agent's private socket directory, never on the TCP port its url names,
// where another OS user of the machine could listen (here: "the
// attacker", who got there first).
func TestAppSocket(t *testing.T) {
	t.Parallel()
	attacker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	go http.Serve(attacker, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "attacker's page")
	}))
	port := attacker.Addr().(*net.TCPAddr).Port

	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true })
	ts.pushTemplate(t, "sock", fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    startup_script: echo "sockets in $CODER_APP_SOCKET_DIR"
    apps:
      - {slug: web, url: "http://localhost:%d", socket: web.sock}
`, port))
	w := createWorkspace(t, ts.Owner, "dev", "sock")
	startAgentIn(t, ts, w.Agents[0].Token, t.TempDir(), nil)
	dir := filepath.Join(os.TempDir(), "coder-apps-"+w.Agents[0].ID)
	t.Cleanup(func() { os.RemoveAll(dir) })
	testutil.Eventually(t, 30*time.Second, "the app socket directory", func() bool {
		st, err := os.Stat(dir)
		return err == nil && st.Mode().Perm() == 0o700
	})
	owner := loggedIn(t, ts, "owner", "owner-password")
	get := func() (int, string) {
		resp := owner.do("GET", "/@owner/dev.main/apps/web/", nil, nil)
		return resp.StatusCode, readBody(t, resp)
	}
	// Nothing on the socket yet: the request fails; the attacker's port
	// is never tried. (Poll until the agent is on the tailnet.)
	testutil.Eventually(t, 30*time.Second, "a 502 from the agent", func() bool {
		code, body := get()
		if strings.Contains(body, "attacker") {
			t.Fatalf("the app request reached the TCP port: %d %q", code, body)
		}
		return code == http.StatusBadGateway
	})
	ln, err := net.Listen("unix", filepath.Join(dir, "web.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the app on its socket at %s", r.URL.Path)
	}))
	if code, body := get(); code != http.StatusOK || body != "the app on its socket at /" {
		t.Fatalf("app on its socket: %d %q", code, body)
	}
	// The startup script was told where the sockets go.
	testutil.Eventually(t, 30*time.Second, "the script's line", func() bool {
		s, err := ts.DB.StartupOf(testContext(t), w.Agents[0].ID, 10)
		return err == nil && len(s.Lines) == 1 && s.Lines[0] == "sockets in "+dir
	})
}
