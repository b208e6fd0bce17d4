package sdk_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/sdk"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	tpl, err := sdk.ParseTemplate([]byte(`display_name: Dev
agent_url: https://internal.example.com
agents:
  - name: main
    apps:
      - slug: code
        url: http://localhost:13337
        subdomain: true
        share: authenticated
        healthcheck: {url: http://localhost:13337/healthz}
  - name: gpu
`))
	if err != nil {
		t.Fatal(err)
	}
	if tpl.Provisioner != sdk.ProvisionerLocal {
		t.Errorf("provisioner defaults to %q, want local", tpl.Provisioner)
	}
	if len(tpl.Agents) != 2 || tpl.Agents[1].Name != "gpu" {
		t.Fatalf("agents = %+v", tpl.Agents)
	}
	app := tpl.Agents[0].Apps[0]
	if app.DisplayName != "code" || !app.Subdomain || app.Share != sdk.ShareAuthenticated {
		t.Errorf("app = %+v", app)
	}
	if h := app.Healthcheck; h == nil || h.Interval != 5 || h.Threshold != 3 {
		t.Errorf("healthcheck defaults = %+v", h)
	}
	if tpl.AgentURL != "https://internal.example.com" {
		t.Errorf("agent_url = %q", tpl.AgentURL)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"empty", "", 0, "empty"},
		{"bad yaml", "agents:\n  - name: [\n", 2, "expected"},
		{"unknown key", "provisioner: local\nagnets: []\n", 2, "agnets"},
		{"no agents", "provisioner: local\n", 1, "at least one agent"},
		{"bad provisioner", "provisioner: docker\nagents: [{name: main}]\n", 1, `"docker"`},
		{"bad agent name", "agents:\n  - name: Main_1\n", 2, "agent name"},
		{"duplicate agent", "agents:\n  - name: a\n  - name: a\n", 3, "used twice"},
		{"bad app url", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: localhost:80\n", 5, "http URL"},
		{"bad share", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost\n        share: everyone\n", 6, "share"},
		{"duplicate slug", "agents:\n  - name: a\n    apps:\n      - {slug: web, url: 'http://localhost'}\n      - {slug: web, url: 'http://localhost'}\n", 5, "used twice"},
		{"bad agent_url", "agent_url: ftp://x\nagents: [{name: a}]\n", 1, "agent_url"},
		{"app port out of range", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:99999\n", 5, "not a TCP port"},
		{"app port zero", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:0\n", 5, "not a TCP port"},
		{"app port empty", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: 'http://localhost:'\n", 5, "port"},
		{"healthcheck port", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        healthcheck: {url: 'http://localhost:70000/healthz'}\n", 6, "not a TCP port"},
		{"healthcheck not http", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        healthcheck: {url: 'localhost:8080/healthz'}\n", 6, "http URL"},
		{"healthcheck interval", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        healthcheck: {url: 'http://localhost:8080', interval: -1}\n", 6, "interval -1"},
		{"healthcheck threshold", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        healthcheck: {url: 'http://localhost:8080', threshold: 1000}\n", 6, "threshold 1000"},
		{"agent_url port", "agent_url: http://x:65536\nagents: [{name: a}]\n", 1, "not a TCP port"},
		{"identity headers on a public app", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        subdomain: true\n        share: public\n        identity_headers: true\n", 8, "identity_headers"},
		{"identity headers on a path app", "agents:\n  - name: a\n    apps:\n      - slug: web\n        url: http://localhost:8080\n        share: authenticated\n        identity_headers: true\n", 7, "subdomain: true"},
		{"wrong type", "agents: 5\n", 1, ""},
		{"too big", strings.Repeat("#", sdk.MaxTemplateSize+1), 0, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.ParseTemplate([]byte(tc.src))
			var te *sdk.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TemplateError", err)
			}
			if te.Line != tc.line {
				t.Errorf("line = %d, want %d (%v)", te.Line, tc.line, te)
			}
			if !strings.Contains(te.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", te, tc.msg)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"a": true, "dev-1": true, "0abc": true, strings.Repeat("a", 32): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a--b": false, "a.b": false,
		strings.Repeat("a", 33): false, "é": false, "a b": false,
	} {
		if err := sdk.ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// FuzzParseTemplate: any input either parses into a template whose names
// are all valid, or fails with a *TemplateError; it never panics.
func FuzzParseTemplate(f *testing.F) {
	f.Add([]byte("agents:\n  - name: main\n    apps:\n      - slug: web\n        url: http://localhost:8080\n"))
	f.Add([]byte("provisioner: manual\nagent_url: https://x\nagents: [{name: a}]\n"))
	f.Add([]byte("agents: [{name: a, apps: [{slug: b, url: 'http://l', healthcheck: {url: 'http://l'}}]}]"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		tpl, err := sdk.ParseTemplate(src)
		if err != nil {
			var te *sdk.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error is not a *TemplateError: %T %v", err, err)
			}
			return
		}
		for _, a := range tpl.Agents {
			if sdk.ValidateName(a.Name) != nil {
				t.Fatalf("accepted agent name %q", a.Name)
			}
			for _, app := range a.Apps {
				if sdk.ValidateName(app.Slug) != nil {
					t.Fatalf("accepted app slug %q", app.Slug)
				}
			}
		}
	})
}
