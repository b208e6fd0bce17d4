package apps_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gatewaydev/coder/apps"
)

// visitorKey carries the test authoriser's visitor, as an assembly would.
type visitorKey struct{}

// testAuthorizer knows one user, alice, by the header X-User, and one app,
// /@alice/dev.main/apps/code, that opens for her only; bob gets a refusal.
type testAuthorizer struct{ agentID, appURL string }

var errRefused = errors.New("refused for bob")

func (z testAuthorizer) Authenticate(r *http.Request) (*http.Request, apps.Visitor, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return r, apps.Visitor{}, nil
	}
	return r.WithContext(context.WithValue(r.Context(), visitorKey{}, u)), apps.Visitor{UserID: u}, nil
}

func (z testAuthorizer) AuthorizeApp(r *http.Request, v apps.Visitor, req apps.AppRequest) (apps.App, error) {
	known := req.Path == apps.Path{User: "alice", Workspace: "dev", Agent: "main", Rest: req.Path.Rest} && req.Slug == "code"
	switch {
	case v.UserID == "":
		return apps.App{}, apps.ErrLoginRequired
	case !known:
		return apps.App{}, &apps.Error{Code: http.StatusNotFound, Msg: "The app was not found."}
	case v.UserID == "bob":
		return apps.App{}, errRefused
	}
	return apps.App{AgentID: z.agentID, URL: z.appURL}, nil
}

func (z testAuthorizer) AuthorizeAgent(r *http.Request, v apps.Visitor, agentID string) (apps.Agent, error) {
	return apps.Agent{}, &apps.Error{Code: http.StatusNotFound, Msg: "The agent was not found."}
}

// TestServerPathApps mounts the front door the way an assembly does, with
// an authoriser that knows nothing of the store and a dialer over loopback
// TCP: an anonymous visitor is sent to log in whatever the app, the
// authoriser's refusals reach WriteError with the request it authenticated,
// and an app that opens is proxied under its prefix, with the dashboard's
// own headers removed.
func TestServerPathApps(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	addr := b.srv.Listener.Addr().String()
	var lastErr error
	var lastUser any
	srv := apps.NewServer(apps.ServerOptions{
		Authorizer: testAuthorizer{agentID: "agent-1", appURL: "http://localhost:8080"},
		Dialer: apps.DialerFunc(func(ctx context.Context, agentID string, port uint16) (net.Conn, error) {
			if agentID != "agent-1" || port != 8080 {
				return nil, errors.New("wrong agent or port")
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}),
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) {
			lastErr, lastUser = err, r.Context().Value(visitorKey{})
			code := http.StatusInternalServerError
			var ae *apps.Error
			if errors.As(err, &ae) {
				code = ae.Code
			}
			http.Error(w, "refused", code)
		},
	})
	t.Cleanup(func() { srv.Close() })
	mux := http.NewServeMux()
	srv.Attach(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'") // the dashboard's
		p, ok := apps.ParsePath(r.URL.Path)
		if h := srv.PathAppHandler(p); ok && h != nil {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	f := httptest.NewServer(srv.HandleSubdomain(mux))
	t.Cleanup(f.Close)
	client := f.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(user, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", f.URL+path, nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	for _, path := range []string{"/@alice/dev.main/apps/code/x?y=1", "/@nobody/dev.main/apps/none/"} {
		resp := get("", path)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?redirect="+url.QueryEscape(path) {
			t.Errorf("anonymous %s: %d to %q, want the login redirect", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp := get("bob", "/@alice/dev.main/apps/code/"); resp.StatusCode != http.StatusInternalServerError || !errors.Is(lastErr, errRefused) || lastUser != "bob" {
		t.Errorf("bob: %d, WriteError got %v for %v", resp.StatusCode, lastErr, lastUser)
	}
	if resp := get("alice", "/@alice/dev.main/apps/other/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown app: %d", resp.StatusCode)
	}
	if resp := get("alice", "/@alice/dev.main/apps/code"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/@alice/dev.main/apps/code/" {
		t.Errorf("app without its slash: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp := get("alice", "/@alice/dev.main/apps/code/page?q=1")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "app saw /page?q=1" || resp.Header.Get("Content-Security-Policy") != "" {
		t.Errorf("alice's app: %d %q, CSP %q", resp.StatusCode, body, resp.Header.Get("Content-Security-Policy"))
	}
	if resp := get("alice", "/api/v2/workspaceagents/x/pty?reconnect=y"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("PTY route of an agent the authoriser refuses: %d", resp.StatusCode)
	}
}
