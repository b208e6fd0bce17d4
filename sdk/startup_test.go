package sdk_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/sdk"
)

func TestTemplateStartupScript(t *testing.T) {
	t.Parallel()
	tpl, err := sdk.ParseTemplate([]byte(`agents:
  - name: main
    startup_script: |
      echo hello
      nohup sleep 100 >/dev/null 2>&1 &
    apps:
      - slug: jupyter
        url: http://127.0.0.1:8888/@${CODER_WORKSPACE_OWNER_NAME}/${CODER_WORKSPACE_NAME}.${CODER_WORKSPACE_AGENT_NAME}/apps/jupyter
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := tpl.Agents[0].StartupScript; got != "echo hello\nnohup sleep 100 >/dev/null 2>&1 &\n" {
		t.Errorf("startup_script = %q", got)
	}
	got := sdk.ExpandAppURL(tpl.Agents[0].Apps[0].URL, "alice", "dev", "main")
	if want := "http://127.0.0.1:8888/@alice/dev.main/apps/jupyter"; got != want {
		t.Errorf("expanded url = %q, want %q", got, want)
	}
}

func TestTemplateStartupScriptErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"nul byte", "agents:\n  - name: a\n    startup_script: \"echo \\0\"\n", 3, "NUL"},
		{"too long", "agents:\n  - name: a\n    startup_script: " + strings.Repeat("x", sdk.MaxStartupScriptSize+1) + "\n", 3, "limit"},
		{"not a string", "agents:\n  - name: a\n    startup_script: [a]\n", 3, "cannot unmarshal"},
		{"unknown url variable", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:80/${HOME}\n", 5, "${HOME} is not one of"},
		{"variable in the host", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://${CODER_WORKSPACE_NAME}:80/\n", 5, "only be in the path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.ParseTemplate([]byte(tc.src))
			var te *sdk.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TemplateError", err)
			}
			if te.Line != tc.line || !strings.Contains(te.Msg, tc.msg) {
				t.Errorf("err = line %d %q, want line %d containing %q", te.Line, te.Msg, tc.line, tc.msg)
			}
		})
	}
}

func TestExpandAppURLEscapes(t *testing.T) {
	t.Parallel()
	// Names are DNS-safe today; escaping keeps a future name from
	// changing the path's shape.
	got := sdk.ExpandAppURL("http://localhost:1/@${CODER_WORKSPACE_OWNER_NAME}/x${UNKNOWN}", "a/../b", "w", "m")
	if want := "http://localhost:1/@a%2F..%2Fb/x${UNKNOWN}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTemplateAppSocket(t *testing.T) {
	t.Parallel()
	tpl, err := sdk.ParseTemplate([]byte(`agents:
  - name: main
    apps:
      - {slug: jupyter, url: "http://localhost:8888/x", socket: jupyter.sock}
      - {slug: web, url: "http://localhost:8080"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p := sdk.AppSocketPort(tpl.Agents[0].Apps[0]); p != 8888 {
		t.Errorf("socket port %d", p)
	}
	if p := sdk.AppSocketPort(tpl.Agents[0].Apps[1]); p != 0 {
		t.Errorf("an app without a socket has socket port %d", p)
	}
	for _, tc := range []struct{ name, apps, msg string }{
		{"path", `{slug: a, url: "http://localhost:1", socket: ../x.sock}`, "must be a file name"},
		{"absolute", `{slug: a, url: "http://localhost:1", socket: /tmp/x.sock}`, "must be a file name"},
		{"no port", `{slug: a, url: "http://localhost", socket: a.sock}`, "needs a port"},
		{"socket app's port taken after", "{slug: a, url: \"http://localhost:1\", socket: a.sock}\n      - {slug: b, url: \"http://localhost:1\"}", `port 1 is app "a"'s too`},
		{"shared port", "{slug: a, url: \"http://localhost:1\"}\n      - {slug: b, url: \"http://localhost:1\", socket: b.sock}", `port 1 is app "a"'s too`},
	} {
		_, err := sdk.ParseTemplate([]byte("agents:\n  - name: main\n    apps:\n      - " + tc.apps + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.msg)
		}
	}
}
