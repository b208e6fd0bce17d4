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
	p := apps.NewProxy(apps.Options{StripCookies: []string{"coder_session"}, StripHeaders: []string{"Coder-Session-Token"}})
	u, _ := url.Parse(appURL)
	addr := b.srv.Listener.Addr().String()
	f := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Serve(w, r, apps.Target{URL: u, Prefix: "/@alice/dev.main/apps/code", Dial: func(ctx context.Context, port uint16) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}})
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
	p := apps.NewProxy(apps.Options{})
	u, _ := url.Parse("http://localhost:9")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/@alice/dev.main/apps/code/", nil)
	p.Serve(rec, req, apps.Target{URL: u, Prefix: "/@alice/dev.main/apps/code", Dial: func(ctx context.Context, port uint16) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: io.EOF}
	}})
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
