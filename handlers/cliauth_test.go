package handlers_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/sdk"
)

// apiKeyCount counts the API keys in the database.
func apiKeyCount(t *testing.T, ts *testServer) int {
	t.Helper()
	var n int
	if err := ts.DB.Pool.QueryRow(testContext(t), `SELECT count(*) FROM api_keys`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// navigation is what a browser sends with a page opened in its address
// bar.
var navigation = http.Header{"Sec-Fetch-Dest": {"document"}, "Sec-Fetch-Mode": {"navigate"}}

var csrfInput = regexp.MustCompile(`name="csrf" value="([A-Za-z0-9]+)"`)

// cliAuthForm opens /cli-auth as a page and returns the form's token.
func cliAuthForm(t *testing.T, b *browser) string {
	t.Helper()
	resp := b.do("GET", "/cli-auth", nil, navigation)
	body := readBody(t, resp)
	m := csrfInput.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET /cli-auth: %d, no form:\n%s", resp.StatusCode, body)
	}
	if tok := byTestID(t, body, "cli-token"); len(tok) != 0 {
		t.Fatalf("GET /cli-auth shows a token: %q", tok)
	}
	return m[1]
}

// TestCLIAuthForm (issue 12): opening /cli-auth makes no API key; the key
// is made by the page's form, whose token is bound to the session and used
// once, and neither the page nor the form answers a script's fetch or a
// frame, which a path app on the dashboard's origin could read.
func TestCLIAuthForm(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	owner := loggedIn(t, ts, "owner", "owner-password")
	before := apiKeyCount(t, ts)
	csrf := cliAuthForm(t, owner)
	if n := apiKeyCount(t, ts); n != before {
		t.Fatalf("GET /cli-auth made %d API keys", n-before)
	}

	// Not a top-level navigation: refused, whatever the form's token.
	for _, h := range []http.Header{
		{"Sec-Fetch-Dest": {"empty"}, "Sec-Fetch-Mode": {"cors"}},
		{"Sec-Fetch-Dest": {"empty"}, "Sec-Fetch-Mode": {"same-origin"}},
		{"Sec-Fetch-Dest": {"iframe"}, "Sec-Fetch-Mode": {"navigate"}},
		{"Sec-Fetch-Dest": {"object"}, "Sec-Fetch-Mode": {"navigate"}},
		{"Sec-Fetch-Dest": {"document"}, "Sec-Fetch-Mode": {"cors"}},
	} {
		for _, method := range []string{"GET", "POST"} {
			resp := owner.do(method, "/cli-auth", url.Values{"csrf": {csrf}}, h)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "address bar") || csrfInput.MatchString(body) {
				t.Errorf("%s /cli-auth with %v: %d\n%s", method, h, resp.StatusCode, body)
			}
		}
	}
	// A wrong or missing form token, or another session's: refused.
	other := loggedIn(t, ts, "owner", "owner-password")
	otherCSRF := cliAuthForm(t, other)
	for _, form := range []url.Values{{"csrf": {otherCSRF}}, {"csrf": {"x"}}, {}} {
		if resp := owner.do("POST", "/cli-auth", form, navigation); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST /cli-auth with %v: %d", form, resp.StatusCode)
		}
	}
	if n := apiKeyCount(t, ts); n != before {
		t.Fatalf("refused requests made %d API keys", n-before)
	}

	// The form made by the page works once, and its token logs the CLI in.
	csrf = cliAuthForm(t, owner)
	resp := owner.do("POST", "/cli-auth", url.Values{"csrf": {csrf}}, navigation)
	body := readBody(t, resp)
	tok := byTestID(t, body, "cli-token")
	if resp.StatusCode != http.StatusOK || len(tok) != 1 {
		t.Fatalf("POST /cli-auth: %d\n%s", resp.StatusCode, body)
	}
	var me sdk.User
	if err := ts.client(tok[0]).Request(testContext(t), http.MethodGet, "/api/v2/users/me", nil, &me); err != nil || me.Username != "owner" {
		t.Fatalf("the token from /cli-auth: %+v %v", me, err)
	}
	if resp := owner.do("POST", "/cli-auth", url.Values{"csrf": {csrf}}, navigation); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the form's token used twice: %d", resp.StatusCode)
	}
	if n := apiKeyCount(t, ts); n != before+1 {
		t.Fatalf("%d API keys made, want 1", n-before)
	}

	// Dashboard pages may be framed by the dashboard only, and a window
	// that a path app opens on one is not the app's to script.
	h := readHeader(t, owner, "/workspaces")
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") ||
		h.Get("X-Frame-Options") != "SAMEORIGIN" || h.Get("Cross-Origin-Opener-Policy") != "same-origin" {
		t.Errorf("dashboard headers: %v", h)
	}
}

func readHeader(t *testing.T, b *browser, path string) http.Header {
	t.Helper()
	resp := b.do("GET", path, nil, nil)
	readBody(t, resp)
	return resp.Header
}

// TestCreateWorkspaceFormTopLevelOnly (issue 12): the page that the
// dashboard's create form answers with shows a manual workspace's agent
// token, so it answers a top-level navigation only, not a script's fetch
// or a frame; a refused request creates nothing.
func TestCreateWorkspaceFormTopLevelOnly(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	owner := loggedIn(t, ts, "owner", "owner-password")
	for _, h := range []http.Header{
		{"Sec-Fetch-Dest": {"empty"}, "Sec-Fetch-Mode": {"cors"}},
		{"Sec-Fetch-Dest": {"iframe"}, "Sec-Fetch-Mode": {"navigate"}},
	} {
		resp := owner.do("POST", "/workspaces", url.Values{"name": {"dev"}, "template": {"base"}}, h)
		if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "CODER_AGENT_TOKEN") {
			t.Errorf("POST /workspaces with %v: %d\n%s", h, resp.StatusCode, body)
		}
	}
	var ws []sdk.Workspace
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/workspaces", nil, &ws); err != nil || len(ws) != 0 {
		t.Fatalf("refused forms created workspaces: %v %v", ws, err)
	}
	resp := owner.do("POST", "/workspaces", url.Values{"name": {"dev"}, "template": {"base"}}, navigation)
	if body := readBody(t, resp); resp.StatusCode != http.StatusCreated || !strings.Contains(body, "CODER_AGENT_TOKEN=") || strings.Contains(body, "CODER_AGENT_TOKEN=&lt;token&gt;") {
		t.Fatalf("POST /workspaces as a page: %d\n%s", resp.StatusCode, body)
	}
}
