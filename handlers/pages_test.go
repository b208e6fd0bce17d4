package handlers_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/gatewaydev/coder/sdk"
)

// byTestID returns the text of every element with data-testid=id.
func byTestID(t *testing.T, body string, id string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "data-testid" && a.Val == id {
					out = append(out, strings.TrimSpace(textOf(n)))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

func textOf(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(textOf(c))
	}
	return b.String()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loggedIn(t *testing.T, ts *testServer, login, password string) *browser {
	t.Helper()
	b := newBrowser(t, ts.URL)
	resp := b.do("POST", "/login", url.Values{"login": {login}, "password": {password}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("log in %s: status %d", login, resp.StatusCode)
	}
	return b
}

// TestPagesEscapeUserInput: a workspace name can't carry markup (names are
// DNS-safe), but a rejected one is echoed in the form: it must be escaped.
func TestPagesEscapeUserInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.pushTemplate(t, "base", testTemplate)
	b := loggedIn(t, ts, "owner", "owner-password")
	evil := `<script>alert(1)</script>`
	resp := b.do("POST", "/workspaces", url.Values{"name": {evil}, "template": {"base"}}, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad name: status %d", resp.StatusCode)
	}
	if strings.Contains(body, evil) {
		t.Fatal("the rejected name is echoed unescaped")
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Fatal("the rejected name is not echoed back (escaped) for the user to fix")
	}
	if errs := byTestID(t, body, "form-error"); len(errs) != 1 || !strings.Contains(errs[0], "not valid") {
		t.Fatalf("form errors = %q", errs)
	}
}

func TestPagesRequireLogin(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	b := newBrowser(t, ts.URL)
	for _, path := range []string{"/workspaces", "/users", "/deployment", "/@owner/ws", "/cli-auth"} {
		resp := b.do("GET", path, nil, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?redirect=") {
			t.Errorf("%s: status %d location %q, want a redirect to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// An open redirect through the login form is refused.
	resp := b.do("POST", "/login", url.Values{"login": {"owner"}, "password": {"owner-password"}, "redirect": {"//evil.example/x"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/workspaces" {
		t.Fatalf("redirect to another site: Location %q", loc)
	}
}

func TestOwnerPages(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *testOptions) { o.browserOnly = true })
	ts.member(t, "bob")
	owner := loggedIn(t, ts, "owner", "owner-password")
	body := readBody(t, owner.do("GET", "/deployment", nil, nil))
	if !strings.Contains(body, `data-setting="Browser-only">on<`) {
		t.Fatalf("deployment page does not show browser-only on:\n%s", body)
	}
	bob := loggedIn(t, ts, "bob", "bob-password")
	for _, path := range []string{"/users", "/templates", "/deployment"} {
		if resp := bob.do("GET", path, nil, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("member GET %s: status %d, want 403", path, resp.StatusCode)
		}
	}
	// The owner creates a user from the dashboard.
	resp := owner.do("POST", "/users", url.Values{"username": {"carol"}, "email": {"carol@example.com"}, "password": {"carol-password"}, "role": {"member"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create user form: status %d", resp.StatusCode)
	}
	var us []sdk.User
	if err := ts.Owner.Request(testContext(t), http.MethodGet, "/api/v2/users", nil, &us); err != nil || len(us) != 3 {
		t.Fatalf("users = %+v, %v", us, err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	for i := 0; i < 3; i++ {
		if _, err := ts.Owner.Me(testContext(t)); err != nil {
			t.Fatal(err)
		}
	}
	ts.client("").Request(testContext(t), http.MethodGet, "/api/v2/users/does-not-exist/workspace/x", nil, nil)
	mfs, err := ts.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := mf.GetName()
			for _, l := range m.GetLabel() {
				labels += " " + l.GetName() + "=" + l.GetValue()
			}
			if m.Counter != nil {
				found[labels] = m.Counter.GetValue()
			}
			if m.Gauge != nil {
				found[labels] = m.Gauge.GetValue()
			}
		}
	}
	if got := found["coderd_api_requests_processed_total code=200 method=GET route=GET /api/v2/users/me"]; got != 3 {
		t.Errorf("requests for /users/me = %v, want 3; have %v", got, found)
	}
	if got := found["coderd_api_requests_processed_total code=401 method=GET route=GET /api/v2/users/{user}/workspace/{workspace}"]; got != 1 {
		t.Errorf("401 by route pattern = %v, want 1", got)
	}
	if _, ok := found["coderd_db_pool_max_connections"]; !ok {
		t.Error("no database pool metrics")
	}
	if _, ok := found["coderd_agents_connected"]; !ok {
		t.Error("no agents_connected gauge")
	}
}
