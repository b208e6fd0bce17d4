package apps_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/apps"
)

// backend records what reached the app.
type backend struct {
	srv  *httptest.Server
	last *http.Request
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	up := websocket.Upgrader{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.last = r.Clone(context.Background())
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			typ, msg, err := c.ReadMessage()
			if err == nil {
				c.WriteMessage(typ, append([]byte("echo:"), msg...))
			}
			return
		}
		io.WriteString(w, "app saw "+r.URL.RequestURI())
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// front serves the proxy the way the server does, with the app under
// /@alice/dev.main/apps/code and its dial going to the backend over
// loopback TCP whatever the port.
func front(t *testing.T, b *backend, appURL string) *httptest.Server {
	addr := b.srv.Listener.Addr().String()
	p := apps.NewProxy(apps.Options{StripCookies: []string{"coder_session"}, StripHeaders: []string{"Coder-Session-Token"},
		Dialer: apps.DialerFunc(func(ctx context.Context, _ string, port uint16) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		})})
	t.Cleanup(func() { p.Close() })
	u, _ := url.Parse(appURL)
	f := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Serve(w, r, apps.Target{URL: u, Prefix: "/@alice/dev.main/apps/code", AgentID: "agent-1"})
	}))
	t.Cleanup(f.Close)
	return f
}

func TestProxyStripsPrefixAndSecrets(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	f := front(t, b, "http://localhost:8080")
	req, _ := http.NewRequest("GET", f.URL+"/@alice/dev.main/apps/code/some/page?x=1", nil)
	req.Header.Set("Cookie", "coder_session=secret; app_pref=dark")
	req.Header.Set("Coder-Session-Token", "abc-def")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "app saw /some/page?x=1" {
		t.Fatalf("body %q", body)
	}
	if c := b.last.Header.Get("Cookie"); strings.Contains(c, "coder_session") || !strings.Contains(c, "app_pref=dark") {
		t.Fatalf("cookies that reached the app: %q", c)
	}
	if b.last.Header.Get("Coder-Session-Token") != "" {
		t.Fatal("the API token reached the app")
	}
	if b.last.Host != "localhost:8080" || b.last.Header.Get("X-Forwarded-Prefix") != "/@alice/dev.main/apps/code" {
		t.Fatalf("host %q, prefix %q", b.last.Host, b.last.Header.Get("X-Forwarded-Prefix"))
	}
}

func TestProxyBasePathAndWebsocket(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	f := front(t, b, "http://localhost:8080/base")
	resp, err := http.Get(f.URL + "/@alice/dev.main/apps/code/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "app saw /base/x" {
		t.Fatalf("body %q", body)
	}

	f2 := front(t, b, "http://localhost:8080")
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(f2.URL, "http")+"/@alice/dev.main/apps/code/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte("hi"))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "echo:hi" {
		t.Fatalf("websocket through the proxy: %q %v", msg, err)
	}
}

func TestProxyUnreachable(t *testing.T) {
	t.Parallel()
	p := apps.NewProxy(apps.Options{Dialer: apps.DialerFunc(func(ctx context.Context, _ string, port uint16) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: io.EOF}
	})})
	defer p.Close()
	u, _ := url.Parse("http://localhost:9")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/@alice/dev.main/apps/code/", nil)
	p.Serve(rec, req, apps.Target{URL: u, Prefix: "/@alice/dev.main/apps/code", AgentID: "agent-1"})
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "is the app listening on localhost:9") {
		t.Fatalf("unreachable app: %d %q", rec.Code, rec.Body.String())
	}
}

func TestPort(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]uint16{"http://localhost": 80, "https://x": 443, "http://localhost:8080": 8080} {
		u, _ := url.Parse(raw)
		if got, err := apps.Port(u); err != nil || got != want {
			t.Errorf("Port(%s) = %d, %v; want %d", raw, got, err, want)
		}
	}
	u, _ := url.Parse("http://localhost:0")
	if _, err := apps.Port(u); err == nil {
		t.Error("port 0 accepted")
	}
}

func TestRewriteSetCookie(t *testing.T) {
	t.Parallel()
	const prefix = "/@alice/dev.main/apps/code"
	drop := []string{"coder_session"}
	for in, want := range map[string]string{
		"a=1":                         "a=1; Path=" + prefix,
		"b=2; Path=/":                 "b=2; Path=" + prefix,
		"c=3; Path=/api/v2; HttpOnly": "c=3; Path=" + prefix + "; HttpOnly",
		"d=4; Domain=example.com; Path=" + prefix + "/sub": "d=4; Path=" + prefix + "/sub",
		"e=5; Path=" + prefix:                              "e=5; Path=" + prefix,
		"f=6; Path=" + prefix + "x":                        "f=6; Path=" + prefix,
		"g=7; Path=" + prefix + "/../../../api":            "g=7; Path=" + prefix,
		"h=8; Path=" + prefix + "/%2e%2e/x":                "h=8; Path=" + prefix,
		"coder_session=evil; Path=/api/v2":                 "",
		"Coder_Session=evil":                               "",
		"=nameless":                                        "",
	} {
		got, ok := apps.RewriteSetCookie(in, prefix, drop)
		if want == "" {
			if ok {
				t.Errorf("RewriteSetCookie(%q) = %q, want it dropped", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("RewriteSetCookie(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// FuzzRewriteSetCookie: whatever an app sends, a cookie that passes is a
// valid Set-Cookie line with no Domain, a Path under the app's prefix and a
// name that is not the dashboard's.
func FuzzRewriteSetCookie(f *testing.F) {
	for _, s := range []string{"a=1", "coder_session=x; Path=/", "c=3; Domain=.example.com; Path=/@alice/dev.main/apps/code/sub",
		"x=1; Path=/@alice/dev.main/apps/codex", "y=2; path=/@alice/dev.main/apps/code/../..", "z=\"q\"; Max-Age=5; Secure; SameSite=None; Partitioned"} {
		f.Add(s)
	}
	const prefix = "/@alice/dev.main/apps/code"
	f.Fuzz(func(t *testing.T, line string) {
		out, ok := apps.RewriteSetCookie(line, prefix, []string{"coder_session"})
		if !ok {
			return
		}
		c, err := http.ParseSetCookie(out)
		if err != nil {
			t.Fatalf("RewriteSetCookie(%q) = %q, which does not parse: %v", line, out, err)
		}
		if strings.EqualFold(c.Name, "coder_session") {
			t.Fatalf("RewriteSetCookie(%q) = %q kept the dashboard's cookie", line, out)
		}
		if c.Domain != "" || (c.Path != prefix && !strings.HasPrefix(c.Path, prefix+"/")) || strings.Contains(c.Path, "/..") {
			t.Fatalf("RewriteSetCookie(%q) = %q: domain %q path %q", line, out, c.Domain, c.Path)
		}
	})
}
