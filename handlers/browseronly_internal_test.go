package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gatewaydev/coder/sdk"
)

// TestBrowserRequestOK (issue 12): in browser-only mode the terminal and
// apps take only a browser's request: never an API token, and only from
// the dashboard's origin (its Origin header, or for a GET navigation that
// sends none, Sec-Fetch-Site). Outside browser-only mode every request
// passes.
func TestBrowserRequestOK(t *testing.T) {
	access, _ := url.Parse("https://coder.example.com")
	const origin = "https://coder.example.com"
	ws := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
	with := func(h http.Header, kv ...string) http.Header {
		out := h.Clone()
		if out == nil {
			out = http.Header{}
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		keyID  string // the API key that authenticated the request
		want   error
	}{
		{"websocket, cookie, dashboard Origin", "GET", with(ws, "Origin", origin), "", nil},
		{"websocket, cookie, no Origin", "GET", ws, "", errBrowserOnlyOrigin},
		{"websocket, cookie, no Origin, Sec-Fetch-Site same-origin", "GET", with(ws, "Sec-Fetch-Site", "same-origin"), "", errBrowserOnlyOrigin},
		{"websocket, cookie, foreign Origin", "GET", with(ws, "Origin", "https://evil.example"), "", errBrowserOnlyOrigin},
		{"websocket, cookie, Origin of another scheme", "GET", with(ws, "Origin", "http://coder.example.com"), "", errBrowserOnlyOrigin},
		{"websocket, token, no Origin", "GET", with(ws, sdk.SessionTokenHeader, "x"), "key", errBrowserOnlyToken},
		{"websocket, token, dashboard Origin", "GET", with(ws, sdk.SessionTokenHeader, "x", "Origin", origin), "key", errBrowserOnlyToken},
		{"app navigation typed in", "GET", http.Header{"Sec-Fetch-Site": {"none"}}, "", nil},
		{"app page from the dashboard", "GET", http.Header{"Sec-Fetch-Site": {"same-origin"}}, "", nil},
		{"app subresource from another site", "GET", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}}, "", errBrowserOnlyOrigin},
		{"app link followed from another site", "GET", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}}, "", nil},
		{"app GET over plain HTTP (no Fetch Metadata)", "GET", nil, "", nil},
		{"app POST without Origin", "POST", http.Header{"Sec-Fetch-Site": {"same-origin"}}, "", errBrowserOnlyOrigin},
		{"app POST from the dashboard", "POST", http.Header{"Origin": {origin}}, "", nil},
		{"app GET with a token", "GET", http.Header{"Sec-Fetch-Site": {"none"}, sdk.SessionTokenHeader: {"x"}}, "key", errBrowserOnlyToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "https://coder.example.com/api/v2/workspaceagents/x/pty", nil)
			r.Header = tc.header
			if r.Header == nil {
				r.Header = http.Header{}
			}
			r = r.WithContext(context.WithValue(r.Context(), apiKeyIDKey, tc.keyID))
			on := &API{opts: Options{BrowserOnly: true, AccessURL: access}}
			if got := on.browserRequestOK(r); got != tc.want {
				t.Errorf("browser-only: got %v, want %v", got, tc.want)
			}
			off := &API{opts: Options{AccessURL: access}}
			if got := off.browserRequestOK(r); got != nil {
				t.Errorf("not browser-only: got %v, want nil", got)
			}
		})
	}
}
