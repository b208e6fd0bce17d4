package provision

import (
	"regexp"
	"testing"
)

// TestAccountNames: every candidate is a user name useradd takes (at most
// 32 characters, Debian's NAME_REGEX), starts with coder-, and the
// candidates are distinct.
func TestAccountNames(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[a-z][-a-z0-9_]*$`)
	for _, c := range []struct{ login, first string }{
		{"alice", "coder-alice"},
		{"Bob.Smith", "coder-bob-smith"},
		{"a-very-long-username-of-32-chars", "coder-a-very-long-username-of-32"},
		{"", "coder-user"},
	} {
		names := accountNames(c.login, "5f0c7a4e-0000-4000-8000-000000000001")
		if names[0] != c.first {
			t.Errorf("%q: first name %q, want %q", c.login, names[0], c.first)
		}
		seen := map[string]bool{}
		for _, n := range names {
			if len(n) > maxAccountName || !valid.MatchString(n) || seen[n] {
				t.Errorf("%q: bad or repeated candidate %q (of %q)", c.login, n, names)
			}
			seen[n] = true
		}
	}
}
