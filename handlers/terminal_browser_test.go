package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// termPage drives a terminal page (or any dashboard page) in one tab.
type termPage struct {
	t   *testing.T
	ctx context.Context
	// wait bounds each wait; zero means 30 s.
	wait time.Duration
}

func (p termPage) deadline() time.Time {
	if p.wait == 0 {
		return time.Now().Add(30 * time.Second)
	}
	return time.Now().Add(p.wait)
}

func (p termPage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

func (p termPage) eval(expr string) (string, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
}

// waitFor polls expr until cond holds; evaluation errors (the page is
// loading) count as not yet.
func (p termPage) waitFor(what, expr string, cond func(string) bool) string {
	p.t.Helper()
	deadline := p.deadline()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last string
	var lastErr error
	for {
		s, err := p.eval(expr)
		if err == nil && cond(s) {
			return s
		}
		last, lastErr = s, err
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; last value %q (error %v)", what, strings.TrimRight(last, "\n"), lastErr)
		}
		<-tick.C
	}
}

const jsStatus = `document.querySelector("[data-testid=terminal-status] span").textContent`

// openTerminal opens the terminal page of the owner's workspace dev (agent
// main) on base and waits until it is connected.
func (p termPage) openTerminal(base string) {
	p.t.Helper()
	p.do("open the terminal", chromedp.Navigate(base+"/@owner/dev.main/terminal"), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	p.status("connected")
}

// status waits until the status pill says want (a prefix) and returns it.
func (p termPage) status(want string) string {
	p.t.Helper()
	return p.waitFor("status "+want, jsStatus, func(s string) bool { return strings.HasPrefix(s, want) })
}

// input types s as the user would (xterm.js's onData), without synthetic
// key events, which xterm.js would see twice.
func (p termPage) input(s string) {
	p.t.Helper()
	q, _ := json.Marshal(s)
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[chromedp.Void](`window.term.input(`+string(q)+`, true)`)); err != nil {
		p.t.Fatalf("type %q: %v", s, err)
	}
}

// jsScreen is what a user sees and what typing depends on: the active
// buffer's text (scrollback included), its kind, the cursor and modes.
const jsScreen = `(() => {
  const t = window.term, b = t.buffer.active, lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return JSON.stringify({buffer: b.type, cursorX: b.cursorX, cursorY: b.cursorY, baseY: b.baseY,
    cols: t.cols, rows: t.rows, modes: t.modes, lines});
})()`

type screen struct {
	Buffer  string          `json:"buffer"`
	CursorX int             `json:"cursorX"`
	CursorY int             `json:"cursorY"`
	BaseY   int             `json:"baseY"`
	Cols    int             `json:"cols"`
	Rows    int             `json:"rows"`
	Modes   json.RawMessage `json:"modes"`
	Lines   []string        `json:"lines"`
}

func parseScreen(s string) screen {
	var sc screen
	_ = json.Unmarshal([]byte(s), &sc)
	return sc
}

// hasLine tells whether a line of the screen, trailing blanks trimmed,
// equals want.
func hasLine(s, want string) bool {
	for _, l := range parseScreen(s).Lines {
		if strings.TrimRight(l, " ") == want {
			return true
		}
	}
	return false
}

// waitLine waits until a line of the terminal reads want.
func (p termPage) waitLine(want string) string {
	p.t.Helper()
	return p.waitFor("a line "+want, jsScreen, func(s string) bool { return hasLine(s, want) })
}

// stableScreen waits until cond holds on the screen and the screen stays
// the same over a few polls (the renderer and the program are done).
func (p termPage) stableScreen(what string, cond func(screen) bool) string {
	p.t.Helper()
	var prev string
	same := 0
	return p.waitFor(what, jsScreen, func(s string) bool {
		if s == prev && cond(parseScreen(s)) {
			same++
		} else {
			same = 0
		}
		prev = s
		return same >= 4
	})
}

// sameScreen waits until the screen equals want exactly; on timeout it
// reports the differences.
func (p termPage) sameScreen(what, want string) {
	p.t.Helper()
	deadline := p.deadline()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := p.eval(jsScreen)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: the screen differs:\n%s", what, screenDiff(parseScreen(want), parseScreen(got)))
		}
		<-tick.C
	}
}

func screenDiff(want, got screen) string {
	var b strings.Builder
	fmt.Fprintf(&b, "want buffer %s cursor %d,%d base %d size %dx%d modes %s\n", want.Buffer, want.CursorX, want.CursorY, want.BaseY, want.Cols, want.Rows, want.Modes)
	fmt.Fprintf(&b, "got  buffer %s cursor %d,%d base %d size %dx%d modes %s\n", got.Buffer, got.CursorX, got.CursorY, got.BaseY, got.Cols, got.Rows, got.Modes)
	for i := 0; i < max(len(want.Lines), len(got.Lines)); i++ {
		var w, g string
		if i < len(want.Lines) {
			w = want.Lines[i]
		}
		if i < len(got.Lines) {
			g = got.Lines[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i, w, g)
		}
	}
	return b.String()
}

// wipe resets xterm.js while the page is disconnected, so that only the
// agent's restore can bring the screen back.
func (p termPage) wipe() {
	p.t.Helper()
	p.do("wipe the screen", chromedp.Evaluate[chromedp.Void](`window.term.reset()`))
	p.waitFor("an empty screen", jsScreen, func(s string) bool {
		return !strings.Contains(s, "notes") && parseScreen(s).Buffer == "normal"
	})
}

func (p termPage) reconnectID() string {
	p.t.Helper()
	s, err := p.eval(`location.href`)
	if err != nil {
		p.t.Fatal(err)
	}
	u, err := url.Parse(s)
	if err != nil {
		p.t.Fatal(err)
	}
	return u.Query().Get("reconnect")
}

// login logs the browser in through the login form.
func (p termPage) login(base, user, password string) {
	p.t.Helper()
	p.do("log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-username]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), user),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), password),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=username]`)),
	)
}

// openVim opens file in vim in the shell of the page, adds a line, moves
// the cursor, and returns the settled screen.
func (p termPage) openVim(file string) string {
	p.t.Helper()
	p.input("vim -Nu NONE -c 'set number ruler showmode' +120 " + file + "\r")
	p.waitFor("vim in the alternate buffer", jsScreen, func(s string) bool {
		sc := parseScreen(s)
		return sc.Buffer == "alternate" && strings.Contains(strings.Join(sc.Lines, "\n"), "line 120 of the notes")
	})
	p.input("o")
	p.waitFor("insert mode", jsScreen, func(s string) bool { return strings.Contains(s, "-- INSERT --") })
	p.input("fresh line typed in vim")
	p.waitFor("the typed line", jsScreen, func(s string) bool { return strings.Contains(s, "fresh line typed in vim") })
	p.input("\x1b")
	p.waitFor("normal mode", jsScreen, func(s string) bool { return !strings.Contains(s, "-- INSERT --") })
	p.input("3k05l")
	return p.stableScreen("vim's cursor at 118,6", func(sc screen) bool {
		return strings.Contains(strings.Join(sc.Lines, "\n"), "118,6")
	})
}

func writeNotes(t *testing.T, dir string) {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&b, "line %d of the notes\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cutListener remembers the connections that carry terminal websockets, so
// that a test can cut them as a network blip would.
type cutListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*sniffConn]struct{}
}

func (l *cutListener) wrap(ln net.Listener) net.Listener {
	l.Listener, l.conns = ln, map[*sniffConn]struct{}{}
	return l
}

func (l *cutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &sniffConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	return sc, nil
}

// cutTerminals resets every connection that carries a terminal websocket
// and returns how many it cut.
func (l *cutListener) cutTerminals() int {
	l.mu.Lock()
	var cut []*sniffConn
	for c := range l.conns {
		if c.pty.Load() {
			cut = append(cut, c)
		}
	}
	l.mu.Unlock()
	for _, c := range cut {
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not a clean close
		}
		c.Close()
	}
	return len(cut)
}

// sniffConn marks itself when its first request is a terminal websocket.
type sniffConn struct {
	net.Conn
	l    *cutListener
	once sync.Once
	pty  atomic.Bool
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.once.Do(func() {
		first, _, _ := bytes.Cut(b[:n], []byte("\r\n"))
		c.pty.Store(bytes.HasPrefix(first, []byte("GET /api/v2/workspaceagents/")) && bytes.Contains(first, []byte("/pty?")))
	})
	return n, err
}

func (c *sniffConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// TestBrowserTerminal is issue 6 in headless Chromium against the real
// server and a real agent over the tailnet: the page of an offline agent
// says so and connects by itself once the agent is up; the workspace
// page's Terminal button opens the terminal; a command's output shows;
// a reload in the middle of vim restores the exact buffer, cursor and
// modes; a cut websocket comes back by itself to the same screen, and
// typing goes on.
func TestBrowserTerminal(t *testing.T) {
	t.Parallel()
	var cut gateListener
	ts := newTestServer(t, func(o *testOptions) { o.tailnet = true; o.wrapListener = cut.wrap })
	ts.pushTemplate(t, "base", testTemplate)
	w := createWorkspace(t, ts.Owner, "dev", "base")
	base := ts.URL.String()
	ctx := browsertest.New(t, 120*time.Second)
	p := termPage{t: t, ctx: ctx}
	p.login(base, "owner", "owner-password")

	// The agent is not running: the page says so, and waits for it.
	p.do("open the terminal of an offline agent", chromedp.Navigate(base+"/@owner/dev.main/terminal"), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	p.status("The workspace agent main has not connected yet: run it on the workspace's machine")
	dir := t.TempDir()
	writeNotes(t, dir)
	startAgentIn(t, ts, w.Agents[0].Token, dir, nil)
	p.status("connected")

	// The workspace page's Terminal button opens the terminal in a new tab.
	p.do("open the workspace page", chromedp.Navigate(base+"/@owner/dev"), chromedp.WaitVisible(chromedp.CSS(`[data-agent=main] [data-testid=open-terminal]`)))
	// Outside browser-only mode the page offers the SSH commands.
	if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("[data-agent=main] [data-testid=ssh-instructions] code").textContent`)); err != nil || got != "coder ssh dev" {
		t.Fatalf("SSH instructions show %q (%v), want coder ssh dev", got, err)
	}
	// Find the new tab by polling the browser's page list (chromedp's
	// WaitNewTarget skips a tab attached before its URL was known). The
	// workspace page redraws the agent's card when its status changes, and
	// a click that lands while it does opens nothing: click again after 3 s
	// without a tab.
	terminalTab := func() target.ID {
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			t.Fatalf("list tabs: %v", err)
		}
		for _, i := range infos {
			if i.Type == "page" && strings.Contains(i.URL, "/@owner/dev.main/terminal") {
				return i.TargetID
			}
		}
		return ""
	}
	var id target.ID
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); id == ""; {
		if time.Now().After(deadline) {
			infos, _ := chromedp.Targets(ctx)
			for _, i := range infos {
				t.Logf("tab %s %s", i.Type, i.URL)
			}
			t.Fatal("the Terminal button opened no tab in 30 s")
		}
		// A click that meets the card mid-redraw fails ("could not find
		// node"): that is the case retried here, not a test failure.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-agent=main] [data-testid=open-terminal]`))); err != nil {
			t.Logf("click Terminal: %v (trying again)", err)
		}
		for again := time.Now().Add(3 * time.Second); id == "" && time.Now().Before(again); <-tick.C {
			id = terminalTab()
		}
	}
	tctx, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(id))
	t.Cleanup(cancel)
	p = termPage{t: t, ctx: tctx}
	p.do("terminal tab", chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	if err := chromedp.Listen(tctx, browsertest.LogEvents(t)); err != nil {
		t.Fatal(err)
	}
	p.status("connected")
	reconnect := p.reconnectID()
	if reconnect == "" {
		t.Fatal("the terminal page has no reconnect id in its URL")
	}

	// Type a command and see its output.
	p.input("echo $((6*7))-browser\r")
	p.waitLine("42-browser")

	// vim, then a reload: the same buffer, cursor and modes.
	before := p.openVim("notes.txt")
	p.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	if got := p.reconnectID(); got != reconnect {
		t.Fatalf("the reload changed the reconnect id from %s to %s", reconnect, got)
	}
	p.status("connected")
	p.sameScreen("after a reload", before)

	// The websocket is cut (and stays down while the test wipes the
	// screen): the page says so, comes back by itself, and shows the same
	// screen.
	cut.down.Store(true)
	if n := cut.cut(); n != 1 {
		t.Fatalf("cut %d terminal connections, want 1", n)
	}
	p.waitFor("the page to notice the cut", jsStatus, func(s string) bool { return strings.HasPrefix(s, "reconnecting in") })
	p.wipe()
	cut.down.Store(false)
	p.status("connected")
	p.sameScreen("after the websocket was cut", before)

	// Typing goes on where it was: save in vim, and the shell sees it.
	p.input(":wq\r")
	p.waitFor("the shell after vim", jsScreen, func(s string) bool { return parseScreen(s).Buffer == "normal" })
	p.input("echo $(grep -c '^fresh line typed in vim$' notes.txt)-saved\r")
	p.waitLine("1-saved")
}

// TestBrowserTerminalServerRestart restarts a real `coder server` process
// under an open terminal page: the agent, a separate `coder agent`
// process of a manual template, keeps the PTY; the page reconnects by
// itself and shows the same screen (vim's), and typing goes on.
func TestBrowserTerminalServerRestart(t *testing.T) {
	t.Parallel()
	bin := testutil.CoderBinary(t)
	cfgDir := t.TempDir()
	pgURL := storetest.URL(t)
	srv := testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + pgURL}, "--config-dir", cfgDir)
	base := srv.URL
	u, _ := url.Parse(base)

	owner := &sdk.Client{URL: u, HTTP: &http.Client{Timeout: 30 * time.Second}}
	ctx := testContext(t)
	if err := owner.Request(ctx, http.MethodPost, "/api/v2/users/first", sdk.CreateFirstUserRequest{Username: "owner", Email: "owner@example.com", Password: "owner-password"}, nil); err != nil {
		t.Fatal(err)
	}
	var login sdk.LoginResponse
	if err := owner.Request(ctx, http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: "owner", Password: "owner-password"}, &login); err != nil {
		t.Fatal(err)
	}
	owner.Token = login.SessionToken
	if err := owner.Request(ctx, http.MethodPut, "/api/v2/templates/manual", sdk.PushTemplateRequest{Source: testTemplate}, nil); err != nil {
		t.Fatal(err)
	}
	var w sdk.Workspace
	if err := owner.Request(ctx, http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "manual"}, &w); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeNotes(t, dir)
	startAgentProcess(t, bin, base, w.Agents[0].Token, dir)
	testutil.Eventually(t, 30*time.Second, "the agent to connect", func() bool {
		got, err := owner.Workspace(testContext(t), "dev")
		return err == nil && got.Agents[0].Status == sdk.AgentConnected
	})

	bctx := browsertest.New(t, 120*time.Second)
	p := termPage{t: t, ctx: bctx}
	p.login(base, "owner", "owner-password")
	p.openTerminal(base)
	p.input("echo $((6*7))-before-restart\r")
	p.waitLine("42-before-restart")
	before := p.openVim("notes.txt")

	srv.Stop()
	p.waitFor("the page to notice the server went away", jsStatus, func(s string) bool { return strings.HasPrefix(s, "reconnecting in") })
	p.wipe()
	testutil.StartServer(t, []string{"CODER_PG_CONNECTION_URL=" + pgURL}, "--config-dir", cfgDir, "--http-address", u.Host)
	// The agent's tailnet node re-registers with the new server by itself;
	// that takes seconds (DialAgent waits up to 15 s, the page backs off).
	p.wait = 90 * time.Second
	p.status("connected")
	p.wait = 0
	p.sameScreen("after a server restart", before)

	p.input(":wq\r")
	p.waitFor("the shell after vim", jsScreen, func(s string) bool { return parseScreen(s).Buffer == "normal" })
	p.input("echo $(grep -c '^fresh line typed in vim$' notes.txt)-saved\r")
	p.waitLine("1-saved")
}

// startAgentProcess runs `coder agent` in dir, as a user of a manual
// template would. Cleanup stops it.
func startAgentProcess(t *testing.T, bin, serverURL, token, dir string) {
	t.Helper()
	cmd := exec.Command(bin, "agent")
	cmd.Dir = dir
	cmd.Env = append(testutil.CleanEnv(), "CODER_AGENT_URL="+serverURL, "CODER_AGENT_TOKEN="+token)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
