package apps_test

import (
	"strings"
	"testing"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
)

func TestParsePath(t *testing.T) {
	for path, want := range map[string]*apps.Path{
		"/@alice/dev":                      {User: "alice", Workspace: "dev"},
		"/@alice/dev/events":               {User: "alice", Workspace: "dev", Rest: "events"},
		"/@alice/dev.main/terminal":        {User: "alice", Workspace: "dev", Agent: "main", Rest: "terminal"},
		"/@alice/dev.main/apps/code/a/b?x": {User: "alice", Workspace: "dev", Agent: "main", Rest: "apps/code/a/b?x"},
		"/@alice":                          nil,
		"/@/dev":                           nil,
		"/@alice/":                         nil,
		"/@alice/.main/terminal":           nil,
		"/@alice/dev./terminal":            nil,
		"/alice/dev":                       nil,
	} {
		got, ok := apps.ParsePath(path)
		if want == nil {
			if ok {
				t.Errorf("ParsePath(%q) = %+v, want no match", path, got)
			}
			continue
		}
		if !ok || got != *want {
			t.Errorf("ParsePath(%q) = %+v %v, want %+v", path, got, ok, *want)
		}
	}
}

// FuzzAppPath: whatever the path, a match names a user, a workspace and
// (maybe) an agent without slashes, the parts put back together give the
// path again, and an app slug is a valid name: a path can never smuggle a
// different target than the one it spells.
func FuzzAppPath(f *testing.F) {
	for _, s := range []string{"/@alice/dev.main/apps/code/", "/@a/b/c", "/@a/b.c.d/apps/../x", "/@a/b.c/apps/x%2f..%2f/y", "/@a//b", "/@../..", "/@a/b.c/apps/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		p, ok := apps.ParsePath(path)
		if !ok {
			return
		}
		if p.User == "" || p.Workspace == "" || strings.ContainsAny(p.User+p.Workspace+p.Agent, "/") {
			t.Fatalf("ParsePath(%q) = %+v", path, p)
		}
		back := "/@" + p.User + "/" + p.Workspace
		if p.Agent != "" {
			back += "." + p.Agent
		}
		if p.Rest != "" || strings.HasSuffix(path, "/") && strings.Count(path, "/") > 2 {
			back += "/" + p.Rest
		}
		if back != path {
			t.Fatalf("ParsePath(%q) = %+v, which spells %q", path, p, back)
		}
		if slug, ok := apps.AppSlug(p.Rest); ok && sdk.ValidateName(slug) != nil {
			t.Fatalf("AppSlug(%q) accepted %q", p.Rest, slug)
		}
	})
}
