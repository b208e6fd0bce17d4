package coder_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/gatewaydev/coder"

// importRule says that pkg (and everything it links, transitively) must
// never reach the forbidden packages of this module.
type importRule struct {
	pkg       string
	forbidden []string
	why       string
}

// importRules are the import rules of DESIGN.md: a package (and everything it
// links, transitively) must never reach the listed packages of this module.
var importRules = []importRule{
	{"wsproxy", []string{"store"}, "proxies make no database connections"},
	{"cli", []string{"store", "handlers", "web", "static", "provision"}, "the CLI talks to the server through sdk only"},
	{"agent", []string{"store", "handlers", "web", "static"}, "the agent stays small"},
	{"provision", []string{"store", "handlers", "web", "static"}, "provision runs processes; the server wires it to the API"},
	{"apps", []string{"store", "web", "static", "handlers", "cmd"}, "capabilities declare interfaces instead"},
	{"terminal", []string{"store", "web", "static", "handlers", "cmd", "tailnet"}, "capabilities declare interfaces instead; terminal takes a dial function"},
	{"tailnet", []string{"store", "web", "static", "handlers", "cmd", "apps", "terminal"}, "capabilities declare interfaces instead"},
	{"sdk", []string{"store", "web", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy", "cli", "provision"}, "leaves import nothing of ours"},
	{"store", []string{"web", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
	{"internal/userproc", []string{"store", "web", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy", "cli", "provision", "sdk"}, "helpers of the agent and provision import nothing of ours"},
	{"internal/backoff", []string{"store", "web", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy", "cli", "provision", "sdk"}, "helpers of the agent and provision import nothing of ours"},
	{"web", []string{"store", "static", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
	{"static", []string{"store", "web", "handlers", "cmd", "apps", "terminal", "tailnet", "agent", "wsproxy"}, "leaves import nothing of ours"},
}

// TestImportRules checks the import direction of DESIGN.md with go list -deps.
// A rule that names a package which no longer exists fails the test, so
// that a rename cannot silently disable a rule.
func TestImportRules(t *testing.T) {
	t.Parallel()
	for _, name := range missingPackages(importRules, modulePackages(t)) {
		t.Errorf("an import rule names %s, which is not a package of this module: update importRules", name)
	}
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

// TestImportRulesNameMissingPackages: the existence check of
// TestImportRules notices a rule for, or against, a package that is gone.
func TestImportRulesNameMissingPackages(t *testing.T) {
	t.Parallel()
	pkgs := []string{module + "/cli", module + "/cmd/coder", module + "/store"}
	rules := []importRule{
		{"cli", []string{"store", "cmd"}, ""},
		{"gone", []string{"store"}, ""},
		{"cli", []string{"renamed"}, ""},
	}
	got := missingPackages(rules, pkgs)
	if len(got) != 2 || got[0] != "gone" || got[1] != "renamed" {
		t.Fatalf("missing packages %v, want [gone renamed]", got)
	}
}

// missingPackages lists the packages that rules name (as the subject or
// as forbidden) and that match none of pkgs, the module's packages: a
// name matches itself and the packages under it.
func missingPackages(rules []importRule, pkgs []string) []string {
	exists := func(name string) bool {
		p := module + "/" + name
		for _, q := range pkgs {
			if q == p || strings.HasPrefix(q, p+"/") {
				return true
			}
		}
		return false
	}
	var missing []string
	seen := map[string]bool{}
	for _, rule := range rules {
		for _, name := range append([]string{rule.pkg}, rule.forbidden...) {
			if !seen[name] && !exists(name) {
				missing = append(missing, name)
			}
			seen[name] = true
		}
	}
	return missing
}

// modulePackages lists every package of this module.
func modulePackages(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", module, err, out)
	}
	return strings.Fields(string(out))
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
