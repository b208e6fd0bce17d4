package apps

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/terminal"
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
			on := &Server{opts: ServerOptions{BrowserOnly: true, AccessURL: access}}
			if got := on.browserRequestOK(r, tc.keyID != ""); got != tc.want {
				t.Errorf("browser-only: got %v, want %v", got, tc.want)
			}
			off := &Server{opts: ServerOptions{AccessURL: access}}
			if got := off.browserRequestOK(r, tc.keyID != ""); got != nil {
				t.Errorf("not browser-only: got %v, want nil", got)
			}
		})
	}
}

// TestPTYParamsMsg (issue 13): a terminal URL that terminal.ParseParams
// refuses gets a sentence that names the wrong parameter and never
// repeats the input.
func TestPTYParamsMsg(t *testing.T) {
	const id = "0b5c6a3e-8f4e-4a57-9d2a-6e1f2c3b4d5e"
	for q, want := range map[string]string{
		"":                                  "has no reconnect ID",
		"reconnect=<script>":                "reconnect ID is not a UUID",
		"reconnect=" + id + "&width=<b>":    "width is not a whole number",
		"reconnect=" + id + "&height=-1":    "height is not a whole number",
		"reconnect=" + id + "&command=a%00": "without NUL bytes",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := terminal.ParseParams(v); err == nil {
			t.Fatalf("ParseParams(%q) accepted it", q)
		}
		got := ptyParamsMsg(v)
		if !strings.Contains(got, want) || strings.Contains(got, "<") || strings.Contains(got, "-1") {
			t.Errorf("ptyParamsMsg(%q) = %q, want a sentence with %q and none of the input", q, got, want)
		}
	}
}
