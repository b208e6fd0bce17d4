package apps_test

import (
	"net"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
)

func TestParseWildcard(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]*apps.Wildcard{
		"*.apps.example.com":    {Suffix: ".apps.example.com"},
		"*--apps.example.com":   {Suffix: "--apps.example.com"},
		"*.localhost:3000":      {Suffix: ".localhost", Port: "3000"},
		"*.Apps.Example.COM":    {Suffix: ".apps.example.com"},
		"apps.example.com":      nil,
		"*apps.example.com":     nil,
		"*.":                    nil,
		"*.example.com.":        nil,
		"*.a..b":                nil,
		"*.example.com:0":       nil,
		"*.example.com:70000":   nil,
		"*.example.com:x":       nil,
		"*.exa mple.com":        nil,
		"*.example.com/path":    nil,
		"https://*.example.com": nil,
	} {
		got, err := apps.ParseWildcard(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseWildcard(%q) = %+v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != *want {
			t.Errorf("ParseWildcard(%q) = %+v, %v; want %+v", in, got, err, *want)
		}
	}
}

func TestWildcardLabel(t *testing.T) {
	t.Parallel()
	dot, _ := apps.ParseWildcard("*.apps.example.com")
	dash, _ := apps.ParseWildcard("*--apps.example.com")
	local, _ := apps.ParseWildcard("*.localhost:3000")
	for _, c := range []struct {
		w     apps.Wildcard
		host  string
		label string
		ok    bool
	}{
		{dot, "code--main--dev--alice.apps.example.com", "code--main--dev--alice", true},
		{dot, "CODE--main--dev--alice.apps.example.com:443", "code--main--dev--alice", true},
		{dot, "code--main--dev--alice.apps.example.com.", "code--main--dev--alice", true},
		{dot, "apps.example.com", "", false},
		{dot, "example.com", "", false},
		{dot, "evil.com", "", false},
		{dot, "x.apps.example.com.evil.com", "", false},
		{dot, "a.b.apps.example.com", "a.b", true},
		{dash, "code--main--dev--alice--apps.example.com", "code--main--dev--alice", true},
		{dash, "apps.example.com", "", false},
		{local, "code--main--dev--alice.localhost:3000", "code--main--dev--alice", true},
		{local, "code--main--dev--alice.localhost:3001", "", false},
		{local, "code--main--dev--alice.localhost", "", false},
		{local, "localhost:3000", "", false},
	} {
		label, ok := c.w.Label(c.host)
		if label != c.label || ok != c.ok {
			t.Errorf("%v.Label(%q) = %q, %v; want %q, %v", c.w, c.host, label, ok, c.label, c.ok)
		}
	}
	if h := local.Host("code--main--dev--alice"); h != "code--main--dev--alice.localhost:3000" {
		t.Errorf("Host = %q", h)
	}
}

func TestParseAppHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]*apps.AppHost{
		"code--main--dev--alice":        {Slug: "code", Agent: "main", Workspace: "dev", User: "alice"},
		"my-app--main--dev--alice":      {Slug: "my-app", Agent: "main", Workspace: "dev", User: "alice"},
		"8080--main--dev--alice":        {Port: 8080, Agent: "main", Workspace: "dev", User: "alice"},
		"8443s--main--dev--alice":       {Port: 8443, HTTPS: true, Agent: "main", Workspace: "dev", User: "alice"},
		"9--main--dev--alice":           {Port: 9, Agent: "main", Workspace: "dev", User: "alice"},
		"65535--main--dev--alice":       {Port: 65535, Agent: "main", Workspace: "dev", User: "alice"},
		"8--main--dev--alice":           nil, // below 9
		"0--main--dev--alice":           nil,
		"65536--main--dev--alice":       nil,
		"99999999999--main--dev--alice": nil,
		"080--main--dev--alice":         nil,
		"s--main--dev--alice":           {Slug: "s", Agent: "main", Workspace: "dev", User: "alice"},
		"code--dev--alice":              nil, // the agent is required, as in Coder
		"code--main--dev--alice--x":     nil,
		"code--main--dev--Alice":        nil,
		"code--main--dev--@me":          nil,
		"code--main--..--alice":         nil,
		"code--main--dev--":             nil,
		"--main--dev--alice":            nil,
		"code---main--dev--alice":       nil,
		"co.de--main--dev--alice":       nil,
		"code--main--dev--alice%2e":     nil,
		"":                              nil,
	} {
		got, err := apps.ParseAppHost(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseAppHost(%q) = %+v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != *want {
			t.Errorf("ParseAppHost(%q) = %+v, %v; want %+v", in, got, err, *want)
		}
		if got.String() != in {
			t.Errorf("ParseAppHost(%q).String() = %q", in, got.String())
		}
	}
}

// FuzzParseAppHost: whatever the label, a parse that succeeds names valid
// names (no dots, slashes or "--" to smuggle another target), a port from
// MinPort up, and spells the label back exactly; its errors never repeat
// the input.
func FuzzParseAppHost(f *testing.F) {
	for _, s := range []string{"code--main--dev--alice", "8080--main--dev--alice", "8443s--a--b--c", "8--a--b--c", "a--b--c", "x.y--a--b--c", "----", "65536s--a--b--c", "0x1f--a--b--c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		h, err := apps.ParseAppHost(label)
		if err != nil {
			if len(label) > 40 && strings.Contains(err.Error(), label) {
				t.Fatalf("ParseAppHost(%q): error repeats the input: %v", label, err)
			}
			return
		}
		for _, n := range []string{h.Agent, h.Workspace, h.User} {
			if sdk.ValidateName(n) != nil {
				t.Fatalf("ParseAppHost(%q) = %+v: bad name %q", label, h, n)
			}
		}
		if (h.Port == 0) == (h.Slug == "") || h.Port != 0 && h.Port < apps.MinPort || h.Slug != "" && sdk.ValidateName(h.Slug) != nil {
			t.Fatalf("ParseAppHost(%q) = %+v", label, h)
		}
		if h.String() != label {
			t.Fatalf("ParseAppHost(%q) = %+v, which spells %q", label, h, h.String())
		}
	})
}

// FuzzWildcardLabel: whatever the wildcard and the Host, a host the
// wildcard claims ends with its suffix, and the label it gives back, put
// in front of the suffix, is the host again (so no part of the Host is
// dropped on the way to the app).
func FuzzWildcardLabel(f *testing.F) {
	for _, s := range [][2]string{{"*.apps.example.com", "code--main--dev--alice.apps.example.com"}, {"*--apps.example.com", "a--b--c--d--apps.example.com"}, {"*.localhost:3000", "x.localhost:3000"}, {"*.localhost:3000", "[::1]:3000"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, wildcard, host string) {
		w, err := apps.ParseWildcard(wildcard)
		if err != nil {
			return
		}
		label, ok := w.Label(host)
		if !ok {
			return
		}
		name := strings.ToLower(host)
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		if got, want := w.Host(label), w.Host(strings.TrimSuffix(strings.TrimSuffix(name, "."), w.Suffix)); got != want || !strings.HasSuffix(strings.TrimSuffix(name, "."), w.Suffix) {
			t.Fatalf("%v.Label(%q) = %q, which is not the host's label (%q, %q)", w, host, label, got, want)
		}
	})
}
