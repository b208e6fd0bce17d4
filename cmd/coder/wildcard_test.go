package main_test

import (
	"strings"
	"testing"
)

// TestServerWildcardAccessURL: `coder server` takes Coder's two wildcard
// forms, with or without a port, and refuses anything else at once with a
// message that names the flag and its variable.
func TestServerWildcardAccessURL(t *testing.T) {
	t.Parallel()
	for value, ok := range map[string]bool{
		"*.apps.example.com":    true,
		"*--apps.example.com":   true,
		"*.localhost:3000":      true,
		"apps.example.com":      false,
		"*apps.example.com":     false,
		"*.apps.example.com:":   false,
		"https://*.example.com": false,
	} {
		t.Run(value, func(t *testing.T) {
			t.Parallel()
			// An empty --config-dir is refused after the wildcard is
			// checked: a valid wildcard gets that error instead.
			args := []string{"server", "--wildcard-access-url", value, "--config-dir", ""}
			_, errOut, code := coderEnv(t, t.TempDir(), nil, "", args...)
			wildcardErr := strings.Contains(errOut, "--wildcard-access-url / $CODER_WILDCARD_ACCESS_URL")
			if code == 0 || wildcardErr == ok || ok && !strings.Contains(errOut, "--config-dir") {
				t.Fatalf("coder %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
			}
		})
	}
}
