package restartbench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

var (
	restarts = flag.Int("restarts", 5, "restarts measured per outage and mode")
	outages  = flag.String("outages", "2s,30s", "how long the server stays down, comma-separated")
)

func TestMain(m *testing.M) { storetest.Main(m) }

// jsScreen is the active buffer's text, cursor and modes, as the tests'.
const jsScreen = `(() => {
  const t = window.term, b = t.buffer.active, lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return JSON.stringify({buffer: b.type, cursorX: b.cursorX, cursorY: b.cursorY, baseY: b.baseY,
    cols: t.cols, rows: t.rows, modes: t.modes, lines});
})()`

type page struct {
	b   *testing.B
	ctx context.Context
}

func (p page) eval(expr string) (string, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
}

func (p page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.b.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.b.Fatalf("%s: %v", what, err)
	}
}

func (p page) input(s string) {
	p.b.Helper()
	q, _ := json.Marshal(s)
	p.run("type", chromedp.Evaluate[chromedp.Void](`window.term.input(`+string(q)+`, true)`))
}

// waitScreen polls the screen every 10 ms until cond holds.
func (p page) waitScreen(what string, timeout time.Duration, cond func(string) bool) string {
	p.b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := p.eval(jsScreen)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.b.Fatalf("timed out waiting for %s; last screen %.400q", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stable waits until cond holds and the screen stays the same over a few
// polls.
func (p page) stable(what string, cond func(string) bool) string {
	p.b.Helper()
	prev, same := "", 0
	return p.waitScreen(what, 60*time.Second, func(s string) bool {
		if s == prev && cond(s) {
			same++
		} else {
			same = 0
		}
		prev = s
		return same >= 4
	})
}

func BenchmarkRestartScreenBack(b *testing.B) {
	dir := testutil.ProvisionerDir(b)
	cfgDir := filepath.Join(dir, "server")
	env := []string{"CODER_PG_CONNECTION_URL=" + storetest.URL(b), "CODER_STOP_LOCAL_AGENTS_ON_EXIT=false"}
	b.Cleanup(func() { killAgents(cfgDir) })
	srv := testutil.StartServer(b, env, "--config-dir", cfgDir)
	u, _ := url.Parse(srv.URL)
	owner := &sdk.Client{URL: u, HTTP: &http.Client{Timeout: 30 * time.Second}}
	ctx := context.Background()
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(owner.Request(ctx, http.MethodPost, "/api/v2/users/first", sdk.CreateFirstUserRequest{Username: "owner", Email: "owner@example.com", Password: "owner-password"}, nil))
	var login sdk.LoginResponse
	must(owner.Request(ctx, http.MethodPost, "/api/v2/users/login", sdk.LoginRequest{Login: "owner", Password: "owner-password"}, &login))
	owner.Token = login.SessionToken
	must(owner.Request(ctx, http.MethodPut, "/api/v2/templates/local", sdk.PushTemplateRequest{Source: "provisioner: local\nagents:\n  - name: main\n"}, nil))
	must(owner.Request(ctx, http.MethodPost, "/api/v2/workspaces", sdk.CreateWorkspaceRequest{Name: "dev", Template: "local"}, nil))
	testutil.Eventually(b, 90*time.Second, "the agent to connect", func() bool {
		w, err := owner.Workspace(ctx, "dev")
		return err == nil && w.Agents[0].Status == sdk.AgentConnected
	})

	p := page{b: b, ctx: browsertest.New(b, time.Hour)}
	p.run("log in",
		chromedp.Navigate(srv.URL+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-username]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-username]`), "owner"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "owner-password"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=username]`)),
		chromedp.Navigate(srv.URL+"/@owner/dev.main/terminal"),
		chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	p.waitScreen("the shell", 90*time.Second, func(s string) bool { return strings.Contains(s, "$") || strings.Contains(s, "#") })
	p.input("seq -f 'line %g of the notes' 200 > notes.txt; vim -Nu NONE -c 'set number ruler' +100 notes.txt\r")
	before := p.stable("vim at line 100", func(s string) bool {
		return strings.Contains(s, `"buffer":"alternate"`) && strings.Contains(s, "100,1")
	})

	type result struct {
		mode   string
		outage time.Duration
		took   []time.Duration
	}
	var results []result
	for _, mode := range []string{"page as is", "page retrying at once"} {
		for _, o := range strings.Split(*outages, ",") {
			outage, err := time.ParseDuration(strings.TrimSpace(o))
			must(err)
			r := result{mode: mode, outage: outage}
			for i := range *restarts {
				srv.Kill(syscall.SIGTERM)
				// Only the restore can bring the screen back.
				p.run("wipe", chromedp.Evaluate[chromedp.Void](`window.term.reset()`))
				time.Sleep(outage)
				up := make(chan time.Time, 1)
				hctx, cancel := context.WithCancel(ctx)
				go func() { up <- pollHealthz(hctx, srv.URL) }()
				srv = testutil.StartServer(b, env, "--config-dir", cfgDir, "--http-address", u.Host)
				answered := <-up
				cancel()
				if mode == "page retrying at once" {
					p.run("online event", chromedp.Evaluate[chromedp.Void](`window.dispatchEvent(new Event("online"))`))
				}
				// The restored screen, then a key echoed: the cursor moves
				// right (100,2), then back.
				p.waitScreen("the restored screen", 5*time.Minute, func(s string) bool { return s == before })
				p.input("l")
				p.waitScreen("the key's echo", time.Minute, func(s string) bool { return strings.Contains(s, "100,2") })
				took := time.Since(answered)
				p.input("h")
				p.waitScreen("the screen as before", time.Minute, func(s string) bool { return s == before })
				r.took = append(r.took, took)
				fmt.Fprintf(os.Stderr, "  %s, %v outage, restart %d: screen back and typing %v after /healthz\n", mode, outage, i+1, took.Round(10*time.Millisecond))
			}
			results = append(results, r)
		}
	}
	fmt.Println()
	fmt.Println("restart -> screen back (from the new server's first /healthz 200 to vim's screen restored and a key echoed), Chromium, local agent adopted:")
	for _, r := range results {
		slices.Sort(r.took)
		fmt.Printf("  %-22s outage %-4v  p50 %6.2fs  max %6.2fs  (n=%d)\n", r.mode, r.outage, r.took[len(r.took)/2].Seconds(), r.took[len(r.took)-1].Seconds(), len(r.took))
	}
}

// pollHealthz returns when base/healthz first answers 200.
func pollHealthz(ctx context.Context, base string) time.Time {
	c := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		if resp, err := c.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

// killAgents kills every agent process group the provisioner recorded.
func killAgents(cfgDir string) {
	files, _ := filepath.Glob(filepath.Join(cfgDir, "agents", "*.pid"))
	for _, f := range files {
		var rec struct {
			PID int `json:"pid"`
		}
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &rec) == nil && rec.PID > 0 {
			syscall.Kill(-rec.PID, syscall.SIGKILL)
		}
	}
}
