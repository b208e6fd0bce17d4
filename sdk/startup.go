package sdk

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
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
	AgentMessageStartupLog   = "startup_log"
	AgentMessageStartupState = "startup_state"
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
// ${CODER_APP_BASE_PATH} becomes "/" (ExpandAppURLAt sets it). Unknown
// variables stay as they are (ParseTemplate refuses them).
func ExpandAppURL(raw, owner, workspace, agent string) string {
	raw = strings.ReplaceAll(raw, "${"+VarAppBasePath+"}", "/")
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
	raw = strings.ReplaceAll(raw, "${"+VarAppBasePath+"}", "/")
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
			return fmt.Errorf("${%s} is not one of ${%s}, ${%s}, ${%s}, ${%s}", m[1], VarAppBasePath, VarOwnerName, VarWorkspaceName, VarAgentName)
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

// AccessURLEnv names the dashboard's origin in the startup script's
// environment.
const AccessURLEnv = "CODER_ACCESS_URL"

// AppSocketDirEnv names the agent's app socket directory in the startup
// script's environment.
const AppSocketDirEnv = "CODER_APP_SOCKET_DIR"

var socketNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)

// checkSocket checks app's socket name, and that no earlier app of the
// agent (before) uses its port with another socket or without one.
func checkSocket(before []App, app *App, u *url.URL) error {
	port := u.Port()
	for _, o := range before {
		ou, err := url.Parse(ExpandAppURL(o.URL, "owner", "workspace", "agent"))
		if err == nil && port != "" && ou.Port() == port && o.Socket != app.Socket {
			return fmt.Errorf("port %s is app %q's too, with another socket or none: give each socket a port of its own", port, o.Slug)
		}
	}
	if app.Socket == "" {
		return nil
	}
	if !socketNameRE.MatchString(app.Socket) {
		return fmt.Errorf("socket %q must be a file name: letters, digits, '.', '_' and '-', at most 64", app.Socket)
	}
	if port == "" {
		return fmt.Errorf("an app with a socket needs a port in its url, like http://localhost:8888: the agent forwards that port to the socket")
	}
	return nil
}

// AppSocketPort is the TCP port that stands for app's socket (url's port),
// or 0 when app has no socket.
func AppSocketPort(app App) uint16 {
	if app.Socket == "" {
		return 0
	}
	u, err := url.Parse(ExpandAppURL(app.URL, "owner", "workspace", "agent"))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}
