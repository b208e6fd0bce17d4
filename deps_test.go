package coder_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/gatewaydev/coder"

// importRules are the import rules of DESIGN.md: a package (and everything it
// links, transitively) must never reach the listed packages of this module.
var importRules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"wsproxy", []string{"store"}, "proxies make no database connections"},
	{"agent", []string{"store", "handlers", "web", "static"}, "the agent stays small"},
	{"provision", []string{"store", "handlers", "web", "static"}, "provision runs processes; the server wires it to the API"},
	{"apps", []string{"store", "web", "static", "handlers", "cmd"}, "capabilities declare interfaces instead"},
	{"terminal", []string{"store", "web", "static", "handlers", "cmd", "tailnet"}, "capabilities declare interfaces instead; terminal takes a dial function"},
	{"tailnet", []string{"store", "web", "static", "handlers", "cmd", "apps", "terminal"}, "capabilities declare interfaces instead"},
	{"store", []string{"web", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
	{"web", []string{"store", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
	{"static", []string{"store", "web", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
}

// TestImportRules checks the import direction of DESIGN.md with go list -deps.
func TestImportRules(t *testing.T) {
	t.Parallel()
	for _, rule := range importRules {
		t.Run(rule.pkg, func(t *testing.T) {
			t.Parallel()
			deps := goListDeps(t, module+"/"+rule.pkg+"/...")
			for _, dep := range deps {
				for _, f := range rule.forbidden {
					bad := module + "/" + f
					if dep == bad || strings.HasPrefix(dep, bad+"/") {
						t.Errorf("%s reaches %s (%s): remove the import", rule.pkg, dep, rule.why)
					}
				}
			}
		})
	}
}

// TestProductionDoesNotLinkTesting checks that no production package links
// the testing package: test helpers live in <pkg>test packages.
func TestProductionDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	for _, dep := range goListDeps(t, module+"/cmd/coder") {
		if dep == "testing" {
			t.Fatalf("cmd/coder links the testing package: a production package imports a test helper")
		}
	}
}

func goListDeps(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pattern).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, out)
	}
	return strings.Fields(string(out))
}
