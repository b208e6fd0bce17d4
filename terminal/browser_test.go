package terminal_test

import (
	"context"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// buildClient bundles static/src/terminal.js and its CSS with esbuild, as
// static/build.mjs does, into a temporary directory.
func buildClient(t *testing.T) (dir string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	esbuild := filepath.Join(root, "node_modules", ".bin", "esbuild")
	if _, err := os.Stat(esbuild); err != nil {
		t.Fatalf("esbuild is missing: run `npm ci` (make deps) at the repository root: %v", err)
	}
	dir = t.TempDir()
	cmd := exec.Command(esbuild, "static/src/terminal.js", "static/src/terminal-bundle.css",
		"--bundle", "--format=esm", "--log-level=warning", "--outdir="+dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild: %v\n%s", err, out)
	}
	return dir
}

// terminalPage is what handlers/web renders for the terminal page.
const terminalPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Terminal</title>
<link rel="stylesheet" href="/assets/terminal-bundle.css"></head>
<body><div id="terminal" data-ws-path="/pty" data-agent-id="7d1c" data-agent-name="main"></div>
<script type="module" src="/assets/terminal.js"></script></body></html>`

// browserHarness serves the page, the bundle and the relay; the relay can
// be swapped to simulate a server restart.
type browserHarness struct {
	t    *testing.T
	url  string
	dial terminal.DialFunc

	mu    sync.Mutex
	relay *terminal.Relay
}

func newBrowserHarness(t *testing.T, dial terminal.DialFunc) *browserHarness {
	h := &browserHarness{t: t, dial: dial, relay: terminal.NewRelay(terminal.RelayOptions{Logger: testutil.Logger(t, slog.LevelDebug)})}
	assets := buildClient(t)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/term", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(terminalPage))
	})
	mux.Handle("/assets/", http.StripPrefix("/assets/", http.FileServer(http.Dir(assets))))
	mux.HandleFunc("/pty", func(w http.ResponseWriter, r *http.Request) {
		p, err := terminal.ParseParams(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h.mu.Lock()
		relay := h.relay
		h.mu.Unlock()
		_ = relay.ServeBrowser(context.WithoutCancel(r.Context()), ws, h.dial, p)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.mu.Lock()
		relay := h.relay
		h.mu.Unlock()
		relay.Close()
		srv.Close()
	})
	h.url = srv.URL
	return h
}

// restartRelay closes the relay (the browser sees 1001) and replaces it.
func (h *browserHarness) restartRelay() {
	h.mu.Lock()
	old := h.relay
	h.relay = terminal.NewRelay(terminal.RelayOptions{Logger: testutil.Logger(h.t, slog.LevelDebug)})
	h.mu.Unlock()
	old.Close()
}

// jsBuffer reads the xterm.js buffer (scrollback and screen) as text.
const jsBuffer = `(() => {
  const b = window.term.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out.join("\n");
})()`

func TestBrowserTerminal(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	h := newBrowserHarness(t, dial)
	ctx := browsertest.New(t, 90*time.Second)

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	waitFor := func(what, expr string, cond func(string) bool) string {
		t.Helper()
		var last string
		deadline := time.Now().Add(terminaltest.WaitLong)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			last = eval(expr)
			if cond(last) {
				return last
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; last value %q", what, strings.TrimRight(last, "\n"))
			}
			<-tick.C
		}
	}
	status := func(want string) {
		t.Helper()
		waitFor("status "+want, `document.querySelector("[data-testid=terminal-status]").textContent`, func(s string) bool {
			return strings.HasPrefix(s, want)
		})
	}
	screenHas := func(s string) {
		t.Helper()
		waitFor("screen to show "+s, jsBuffer, func(b string) bool { return strings.Contains(b, s) })
	}
	// typeKeys types text as committed text input (chromedp's synthetic
	// key events make xterm.js see printable keys twice) and "\r" as the
	// Enter key.
	typeKeys := func(s string) {
		t.Helper()
		do("focus", chromedp.Focus(chromedp.CSS(`textarea.xterm-helper-textarea`)))
		for i, part := range strings.Split(s, "\r") {
			if i > 0 {
				do("press Enter", chromedp.KeyEvent("\r"))
			}
			if part != "" {
				do("type "+part, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: part})
					return err
				}))
			}
		}
	}
	reconnectID := func() string {
		t.Helper()
		u, err := url.Parse(eval(`location.href`))
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("reconnect")
	}

	// A first load creates the reconnect id and writes it into the URL.
	do("open terminal", chromedp.Navigate(h.url+"/term"), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	id := reconnectID()
	if _, err := terminal.ParseParams(url.Values{"reconnect": {id}}); err != nil {
		t.Fatalf("reconnect id in the URL: %v", err)
	}
	status("connected")
	typeKeys("echo $((6*7))-browser\r")
	screenHas("\n42-browser")

	// A reload re-attaches to the same session and restores its screen.
	do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	if got := reconnectID(); got != id {
		t.Fatalf("reload changed the reconnect id from %s to %s", id, got)
	}
	status("connected")
	screenHas("\n42-browser")

	// A server restart: the client reconnects by itself.
	// The page retries within a fraction of a second: count its attaches
	// rather than hope to see its "reconnecting in" status.
	attaches := eval(`String(window.terminalAttaches)`)
	h.restartRelay()
	waitFor("a re-attach", `String(window.terminalAttaches)`, func(s string) bool { return s != attaches })
	status("connected")
	typeKeys("echo $((7*7))-again\r")
	screenHas("\n49-again")

	// Resize follows the window, and reaches the PTY.
	wide, _ := strconv.Atoi(eval(`String(window.term.cols)`))
	do("narrow window", chromedp.EmulateViewport(640, 480))
	cols := waitFor("terminal to shrink", `String(window.term.cols)`, func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && n < wide
	})
	rows := eval(`String(window.term.rows)`)
	typeKeys("stty size\r")
	screenHas("\n" + rows + " " + cols + "\n")

	// Font size keys are remembered.
	do("bigger font", chromedp.KeyEvent("=", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	waitFor("font size 15", `String(window.term.options.fontSize) + "/" + localStorage.getItem("coder.terminal.fontSize")`, func(s string) bool { return s == "15/15" })

	// The process exits: the page says so and offers a restart.
	typeKeys("exit 3\r")
	status("The session ended (exit code 3).")
	do("restart", chromedp.Click(chromedp.CSS(`[data-testid=terminal-restart]`)))
	status("You started a new session; the previous one had ended (exit code 3).")
	if got := reconnectID(); got == id || got == "" {
		t.Fatalf("restart kept reconnect id %q", got)
	}
	typeKeys("echo $((8*8))-fresh\r")
	screenHas("\n64-fresh")
	if b := eval(jsBuffer); strings.Contains(b, "42-browser") {
		t.Errorf("restarted session shows the old screen")
	}
}
