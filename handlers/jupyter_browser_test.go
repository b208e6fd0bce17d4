package handlers_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/provision"
	"github.com/gatewaydev/coder/sdk"
)

// requireNotebook fails (never skips) when Debian's Jupyter Notebook is
// missing: the default template's web IDE is part of the product.
func requireNotebook(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import notebook").Run(); err != nil {
		t.Fatal("Jupyter Notebook is missing: install it with `apt-get install -y python3-notebook` (scripts/deps.sh does this as root)")
	}
}

// sameTabOpen makes window.open navigate the tab itself, as Jupyter's "New"
// menu opens its notebook or terminal in a new window.
const sameTabOpen = `window.open = () => {
	const w = {};
	Object.defineProperty(w, "location", { set(u) { window.location.href = u; } });
	return w;
}`

// TestBrowserJupyter is what a new user does after `make run`: on the
// workspace page of a workspace made from the default template (a real
// local agent started by the local provisioner), wait for the startup
// script to be ready, open Jupyter Notebook from its button (the owner's
// path app, served from the agent's unix socket), create a notebook, run a
// cell (the kernel talks over websockets through the app proxy).
//
// It runs twice: "subdomain", with a wildcard access URL as `make run` sets
// (*.localhost:PORT), where Jupyter opens on its own host through the app
// token's sign-in redirect; and "path", without one, where it opens as the
// owner's path app.
func TestBrowserJupyter(t *testing.T) {
	t.Parallel()
	requireNotebook(t)
	for _, mode := range []string{"subdomain", "path"} {
		t.Run(mode, func(t *testing.T) { testBrowserJupyter(t, mode == "subdomain") })
	}
}

func testBrowserJupyter(t *testing.T, subdomain bool) {
	prov := &provision.Process{Binary: testutil.CoderBinary(t), Dir: testutil.ProvisionerDir(t), Logger: testLogger(t)}
	t.Cleanup(func() { prov.Close() })
	var wildcard string
	ts := newTestServer(t, func(o *testOptions) {
		o.provisioner = localProvisioner{prov}
		o.tailnet = true
		if subdomain {
			o.configure = func(opts *handlers.Options) {
				wildcard = ".localhost:" + opts.AccessURL.Port()
				opts.WildcardAccessURL = "*" + wildcard
			}
		}
	})
	src, err := os.ReadFile(filepath.Join("..", "templates", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ts.pushTemplate(t, "default", string(src))
	createWorkspace(t, ts.Owner, "dev", "default")

	ctx := browsertest.New(t, 3*time.Minute)
	base := ts.URL.String()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	do("log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-username]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), "owner"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "owner-password"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=username]`)),
	)

	// The workspace page shows the startup script running, then ready,
	// live; its log says what it did.
	do("workspace page", chromedp.Navigate(base+"/@owner/dev"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=startup-log]`)))
	do("startup script ready", chromedp.WaitVisible(chromedp.CSS(`[data-testid=startup-state][data-state=ready]`)))
	do("open the startup log", chromedp.Click(chromedp.CSS(`[data-testid=startup-log] summary`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=startup-lines]`)))
	if log := text(`[data-testid=startup-lines]`); !strings.Contains(log, "Jupyter Notebook is ready.") {
		t.Fatalf("startup log: %q", log)
	}
	if got := text(`[data-app=jupyter] a`); got != "Jupyter Notebook" {
		t.Errorf("app button says %q", got)
	}
	// Its health check turns it healthy, live.
	do("Jupyter healthy", chromedp.WaitVisible(chromedp.CSS(`[data-app=jupyter] [data-testid=app-health].health-healthy`)))

	// The button opens a new tab; here it opens in this one.
	do("open Jupyter from its button",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("[data-app=jupyter] a").removeAttribute("target")`),
		chromedp.Click(chromedp.CSS(`[data-app=jupyter] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#new-dropdown-button`)),
	)
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	want := base + "/@owner/dev.main/apps/jupyter/tree"
	if subdomain {
		want = "http://jupyter--main--dev--owner" + wildcard + "/tree"
	}
	if !strings.HasPrefix(loc, want) {
		t.Fatalf("Jupyter opened at %s, want %s", loc, want)
	}

	// New → Python 3: a notebook; run print(6*7) in its first cell.
	do("new notebook",
		chromedp.Evaluate[chromedp.Void](sameTabOpen),
		chromedp.Click(chromedp.CSS(`#new-dropdown-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#kernel-python3 a`)),
		chromedp.Click(chromedp.CSS(`#kernel-python3 a`)),
		chromedp.WaitVisible(chromedp.CSS(`.CodeMirror`)),
		chromedp.WaitVisible(chromedp.CSS(`#kernel_indicator_icon.kernel_idle_icon`)),
	)
	do("run a cell",
		chromedp.Click(chromedp.CSS(`.cell .CodeMirror`)),
		chromedp.KeyEvent("print(6*7)"),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.WaitVisible(chromedp.CSS(`.output_area .output_text`)),
	)
	if out := text(`.output_area .output_text`); out != "42" {
		t.Fatalf("the cell printed %q, want 42", out)
	}

	// New → Terminal: a shell in the workspace, drawn by xterm.js.
	// (The notebook asks before it is left while its kernel runs.)
	do("back to the file list", chromedp.Evaluate[chromedp.Void](`window.onbeforeunload = null; $(window).off("beforeunload"); 0`), chromedp.Navigate(loc), chromedp.WaitVisible(chromedp.CSS(`#new-dropdown-button`)))
	do("new terminal",
		chromedp.Evaluate[chromedp.Void](sameTabOpen),
		chromedp.Click(chromedp.CSS(`#new-dropdown-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#new-terminal a`)),
		chromedp.Click(chromedp.CSS(`#new-terminal a`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminado-container .xterm-rows`)),
	)
	// The command is pasted (chromedp's key events reach xterm.js twice),
	// then Enter is pressed.
	do("type a command", chromedp.Click(chromedp.CSS(`#terminado-container .xterm-screen`)),
		chromedp.Evaluate[chromedp.Void](`window.terminal.term.paste("echo term-$((6*7))"); 0`),
		chromedp.KeyEvent("\r"))
	var screen string
	defer func() {
		if t.Failed() {
			t.Logf("the terminal's screen: %s", screen)
		}
	}()
	testutil.Eventually(t, 30*time.Second, "the terminal shows term-42", func() bool {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#terminado-container .xterm-rows").textContent + " (websocket state " + window.terminal.socket.readyState + ")"`))
		if err == nil && strings.Contains(got, "term-42") {
			return true
		}
		screen = fmt.Sprintf("%q (%v)", got, err)
		return false
	})

	// The notebook is in the workspace's directory.
	w, err := ts.Owner.Workspace(testContext(t), "dev")
	if err != nil {
		t.Fatal(err)
	}
	dir := w.Agents[0].Directory
	if _, err := os.Stat(filepath.Join(dir, "Untitled.ipynb")); err != nil {
		t.Errorf("the notebook is not in the workspace: %v", err)
	}
	if w.Agents[0].StartupState != sdk.StartupReady {
		t.Errorf("startup state %q", w.Agents[0].StartupState)
	}
}
