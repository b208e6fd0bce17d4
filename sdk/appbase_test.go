package sdk_test

import (
	"testing"

	"github.com/gatewaydev/coder/sdk"
)

// TestAppBasePath: an app's url that begins its path with
// ${CODER_APP_BASE_PATH} is accepted, and expands to "/" for an app on a
// host of its own and to its path-app prefix otherwise, the same path the
// startup script gets in $CODER_APP_BASE_PATH_<SLUG>.
func TestAppBasePath(t *testing.T) {
	t.Parallel()
	tpl, err := sdk.ParseTemplate([]byte(`agents:
  - name: main
    apps:
      - slug: my-ide
        url: http://localhost:8888${CODER_APP_BASE_PATH}
        subdomain: true
`))
	if err != nil {
		t.Fatal(err)
	}
	raw := tpl.Agents[0].Apps[0].URL
	for _, tc := range []struct {
		ownHost   bool
		base, url string
	}{
		{true, "/", "http://localhost:8888/"},
		{false, "/@alice/dev.main/apps/my-ide/", "http://localhost:8888/@alice/dev.main/apps/my-ide/"},
	} {
		base := sdk.AppBasePath("alice", "dev", "main", "my-ide", tc.ownHost)
		if base != tc.base {
			t.Errorf("ownHost %v: base path %q, want %q", tc.ownHost, base, tc.base)
		}
		if got := sdk.ExpandAppURLAt(raw, "alice", "dev", "main", base); got != tc.url {
			t.Errorf("ownHost %v: url %q, want %q", tc.ownHost, got, tc.url)
		}
	}
	if got := sdk.AppBasePathEnv("my-ide"); got != "CODER_APP_BASE_PATH_MY_IDE" {
		t.Errorf("env %q", got)
	}
	if got := sdk.AppOriginEnv("my-ide"); got != "CODER_APP_ORIGIN_MY_IDE" {
		t.Errorf("env %q", got)
	}
	// Names are escaped, so a name cannot change the path's shape.
	if got := sdk.AppBasePath("a/../b", "w", "m", "s", false); got != "/@a%2F..%2Fb/w.m/apps/s/" {
		t.Errorf("escaped base path %q", got)
	}
}
