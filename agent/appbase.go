package agent

import (
	"sort"

	"github.com/gatewaydev/coder/sdk"
)

// appBasePathEnv is $CODER_APP_BASE_PATH_<SLUG>=<path> and
// $CODER_APP_ORIGIN_<SLUG>=<origin> for each app of m: where the dashboard
// opens the app, for apps (like Jupyter) that must know it.
func appBasePathEnv(m *sdk.AgentManifest) []string {
	env := make([]string, 0, len(m.AppBasePaths)+len(m.AppOrigins))
	for slug, p := range m.AppBasePaths {
		env = append(env, sdk.AppBasePathEnv(slug)+"="+p)
	}
	for slug, o := range m.AppOrigins {
		env = append(env, sdk.AppOriginEnv(slug)+"="+o)
	}
	sort.Strings(env)
	return env
}
