package apps

import (
	"fmt"
	"net/http"
)

// BadGateway is the error [ServerOptions.WriteError] gets when an app or a
// port does not answer: its agent is offline, or nothing accepts the
// connection on the port in the workspace. The assembly renders the page
// that says what is wrong and what to do, with status 502.
type BadGateway struct {
	// AgentID is the agent that serves the app.
	AgentID string
	// Slug names the app; empty for a port URL.
	Slug string
	// Port is the app's port in the workspace.
	Port uint16
	// Prefix is the path the app is served under, like
	// /@alice/dev.main/apps/code (see [ParsePath]); empty for a subdomain.
	Prefix string
	// Offline: the agent is not connected, so nothing was dialled.
	Offline bool
	// Err is the dial or proxy error, for the log.
	Err error
}

func (e *BadGateway) Error() string {
	what := fmt.Sprintf("port %d of agent %s", e.Port, e.AgentID)
	if e.Slug != "" {
		what = fmt.Sprintf("app %q (%s)", e.Slug, what)
	}
	if e.Offline {
		return what + ": the agent is offline"
	}
	return fmt.Sprintf("%s: %v", what, e.Err)
}

func (e *BadGateway) Unwrap() error { return e.Err }

// StatusCode is 502.
func (e *BadGateway) StatusCode() int { return http.StatusBadGateway }
