package apps_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
)

type subAuthz struct{}

func (subAuthz) LookupSubdomain(context.Context, apps.AppHost) (apps.SubdomainApp, error) {
	return apps.SubdomainApp{AgentID: "a1", WorkspaceID: "w1", OwnerID: "u1", URL: "http://localhost:8080", Share: sdk.ShareOwner}, nil
}

func (subAuthz) PortShareLevel(context.Context, string, uint16) (string, error) {
	return sdk.ShareOwner, nil
}

func (subAuthz) AuthorizeToken(context.Context, apps.Token, apps.SubdomainApp) (apps.Identity, error) {
	return apps.Identity{UserID: "u1"}, nil
}

// TestSubdomainTokenCookie: behind a TLS access URL, the app's host keeps
// a token from the primary in a cookie that is Secure, HttpOnly, SameSite
// Lax and host-only, and redirects to the same URL without it; the
// dashboard's own host goes to the next handler even when the wildcard
// covers it.
func TestSubdomainTokenCookie(t *testing.T) {
	t.Parallel()
	access, _ := url.Parse("https://coder.example.com")
	wc, _ := apps.ParseWildcard("*.example.com") // the dashboard's host is under it too
	keys := newKey("k1")
	srv := apps.NewServer(apps.ServerOptions{
		AccessURL:  access,
		Authorizer: testAuthorizer{},
		Subdomain: &apps.SubdomainOptions{Wildcard: wc, Authorizer: subAuthz{}, Keys: keys,
			AuthRedirectURL: access.JoinPath(apps.AuthRedirectPath)},
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) { http.Error(w, err.Error(), 500) },
	})
	t.Cleanup(func() { srv.Close() })
	h := srv.HandleSubdomain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	host := "code--main--dev--alice"
	tok, err := apps.SealToken(context.Background(), keys, apps.Token{UserID: "u1", Host: host, AgentID: "a1", WorkspaceID: "w1",
		Method: apps.AccessSubdomain, ExpiresAt: time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "https://"+host+".example.com/a?b=c&"+apps.TokenQueryParam+"="+tok, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	sc := rec.Header().Get("Set-Cookie")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/a?b=c" {
		t.Fatalf("token step: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	for _, want := range []string{apps.TokenCookie + "=", "Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(strings.ToLower(sc), "domain") {
		t.Errorf("Set-Cookie %q is not host-only", sc)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "https://coder.example.com/workspaces", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("the dashboard's host: %d", rec.Code)
	}
}
