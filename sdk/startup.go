package sdk

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Startup script states, as the agent reports them and the workspace page
// shows them.
const (
	// StartupPending: the agent has a startup script and has not reported
	// on it yet (it has not connected since the workspace was created).
	StartupPending = "pending"
	// StartupRunning: the script is running.
	StartupRunning = "running"
	// StartupReady: the script exited 0.
	StartupReady = "ready"
	// StartupError: the script exited non-zero, was killed, or could not
	// start; the exit code says which (-1 when there is none).
	StartupError = "error"
)

// Bounds of a startup script and its log. The agent truncates longer
// lines and sends the log in frames of at most StartupLogFrameBytes; the
// server keeps the newest StartupLogMaxLines lines and StartupLogMaxBytes
// bytes of each agent's log.
const (
	MaxStartupScriptSize   = 32 << 10
	StartupLogMaxLineBytes = 4 << 10
	StartupLogMaxLines     = 10000
	StartupLogMaxBytes     = 1 << 20
	StartupLogFrameBytes   = 32 << 10
)

// Message types an agent sends on its control connection after the
// hello, besides {"type":"heartbeat"}.
const (
	AgentMsgStartupLog   = "startup_log"
	AgentMsgStartupState = "startup_state"
)

// AgentStartupLog carries lines of the startup script's output. Reset
// says that the lines replace every line the server has for this agent
// (the first frame of each agent start, and of each reconnection, which
// resends the whole log the agent kept).
type AgentStartupLog struct {
	Type  string   `json:"type"`
	Reset bool     `json:"reset,omitempty"`
	Lines []string `json:"lines"`
}

// AgentStartupState is the startup script's state: StartupRunning,
// StartupReady or StartupError with the ExitCode.
type AgentStartupState struct {
	Type     string `json:"type"`
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
}

// Variables that an app's url may name as ${NAME}; the startup script gets
// the same names in its environment. They let an app that needs its path
// (like Jupyter's base_url) be served under its path-app URL, which the
// proxy removes before the request reaches the app.
const (
	VarOwnerName     = "CODER_WORKSPACE_OWNER_NAME"
	VarWorkspaceName = "CODER_WORKSPACE_NAME"
	VarAgentName     = "CODER_WORKSPACE_AGENT_NAME"
)

var appURLVarRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// ExpandAppURL replaces the ${...} variables of an app url with the path
// escaped names of the workspace's owner, the workspace and the agent.
// Unknown variables stay as they are (ParseTemplate refuses them).
func ExpandAppURL(raw, owner, workspace, agent string) string {
	if !strings.Contains(raw, "${") {
		return raw
	}
	return appURLVarRE.ReplaceAllStringFunc(raw, func(m string) string {
		switch m[2 : len(m)-1] {
		case VarOwnerName:
			return url.PathEscape(owner)
		case VarWorkspaceName:
			return url.PathEscape(workspace)
		case VarAgentName:
			return url.PathEscape(agent)
		}
		return m
	})
}

// checkAppURLVars refuses ${...} variables an app url may not name.
func checkAppURLVars(raw string) error {
	origin := raw
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			origin = raw[:len(raw)-len(rest)+i]
		}
	}
	if strings.Contains(origin, "${") {
		return fmt.Errorf("${...} variables may only be in the path, not in the scheme, host or port")
	}
	for _, m := range appURLVarRE.FindAllStringSubmatch(raw, -1) {
		switch m[1] {
		case VarOwnerName, VarWorkspaceName, VarAgentName:
		default:
			return fmt.Errorf("${%s} is not one of ${%s}, ${%s}, ${%s}", m[1], VarOwnerName, VarWorkspaceName, VarAgentName)
		}
	}
	return nil
}

// checkStartupScript refuses a startup script that the agent could not run.
func checkStartupScript(s string) error {
	switch {
	case len(s) > MaxStartupScriptSize:
		return fmt.Errorf("startup_script is %d bytes; the limit is %d", len(s), MaxStartupScriptSize)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("startup_script has a NUL byte")
	}
	return nil
}
