package sdk

import (
	"fmt"
	"time"
)

// SessionTokenHeader carries an API key (users) or an agent token (agents).
const SessionTokenHeader = "Coder-Session-Token"

// Response is the body of every API error (and of some successes).
type Response struct {
	// Code, when set, says in a machine-readable way why the request was
	// refused (for example [CodeBrowserOnly]); clients branch on it, never
	// on Message.
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
	// Validations name the fields that are wrong, when there are any.
	Validations []ValidationError `json:"validations,omitempty"`
}

// ValidationError is a problem with one field of a request.
type ValidationError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// BuildInfo is what GET /api/v2/buildinfo returns.
type BuildInfo struct {
	Version     string `json:"version"`
	BrowserOnly bool   `json:"browser_only"`
	// BlockDirect tells clients that every connection is relayed by the
	// deployment's choice (--block-direct-connections).
	BlockDirect bool `json:"block_direct,omitempty"`
	// DERPForceWebsockets tells agents and CLIs to reach DERP over
	// websockets (--derp-force-websockets).
	DERPForceWebsockets bool `json:"derp_force_websockets,omitempty"`
}

// CreateFirstUserRequest creates the owner on a fresh deployment.
type CreateFirstUserRequest struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CreateUserRequest creates a member (owner only).
type CreateUserRequest struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Role     string `json:"role,omitempty"`
}

// LoginRequest logs in with a username or email and a password.
type LoginRequest struct {
	Login    string `json:"login"`
	Password string `json:"password"`
}

// LoginResponse carries a new API key.
type LoginResponse struct {
	SessionToken string `json:"session_token"`
}

// User as the API shows it.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// PushTemplateRequest creates or replaces a template from its file.
type PushTemplateRequest struct {
	Source string `json:"source"`
}

// TemplateInfo as the API shows it.
type TemplateInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name"`
	Description string    `json:"description"`
	Provisioner string    `json:"provisioner"`
	Workspaces  int       `json:"workspace_count"`
	Agents      int       `json:"agent_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Created     bool      `json:"created,omitempty"`
}

// CreateWorkspaceRequest creates a workspace for the caller.
type CreateWorkspaceRequest struct {
	Name     string `json:"name"`
	Template string `json:"template"`
}

// Agent statuses.
const (
	AgentConnecting   = "connecting"
	AgentConnected    = "connected"
	AgentDisconnected = "disconnected"
)

// Workspace as the API shows it.
type Workspace struct {
	ID           string           `json:"id"`
	Name         string           `json:"name"`
	OwnerName    string           `json:"owner_name"`
	TemplateName string           `json:"template_name"`
	Provisioner  string           `json:"provisioner"`
	DesiredState string           `json:"desired_state"`
	Status       string           `json:"status"`
	Agents       []WorkspaceAgent `json:"agents"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
}

// WorkspaceAgent as the API shows it. Token is set only in the response
// that created it (manual provisioner).
type WorkspaceAgent struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	OS            string     `json:"operating_system"`
	Arch          string     `json:"architecture"`
	Version       string     `json:"version"`
	Hostname      string     `json:"hostname"`
	Directory     string     `json:"directory"`
	LastConnected *time.Time `json:"last_connected_at,omitempty"`
	Apps          []App      `json:"apps"`
	Token         string     `json:"token,omitempty"`
	// StartupState is the state of the agent's startup script (pending,
	// running, ready or error, with StartupExitCode); empty when its
	// template gives it none.
	StartupState    string `json:"startup_state,omitempty"`
	StartupExitCode int    `json:"startup_exit_code,omitempty"`
	// TailnetError, set only while the agent is connected, says why the
	// server cannot reach it over the tailnet (its own tailnet node is
	// not running); empty when it can.
	TailnetError string `json:"tailnet_error,omitempty"`
}

// AgentHello is the first message an agent sends on its connection.
type AgentHello struct {
	Version   string `json:"version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Hostname  string `json:"hostname"`
	Directory string `json:"directory"`
}

// AgentManifest is what the server answers an agent's hello with.
type AgentManifest struct {
	AgentID       string `json:"agent_id"`
	AgentName     string `json:"agent_name"`
	WorkspaceID   string `json:"workspace_id"`
	WorkspaceName string `json:"workspace_name"`
	OwnerName     string `json:"owner_name"`
	Directory     string `json:"directory"`
	Apps          []App  `json:"apps"`
	// StartupScript is the agent's startup script from the template; the
	// agent runs it once per start (see TemplateAgent.StartupScript).
	StartupScript string `json:"startup_script,omitempty"`
	// AccessURL is the dashboard's origin (scheme://host[:port]), which
	// the startup script gets as $CODER_ACCESS_URL (an app may have to
	// allow it as the Origin of its requests).
	AccessURL string `json:"access_url,omitempty"`
	// AppBasePaths maps each app's slug to the path the dashboard opens
	// it at (AppBasePath), which the startup script gets as
	// $CODER_APP_BASE_PATH_<SLUG> (AppBasePathEnv).
	AppBasePaths map[string]string `json:"app_base_paths,omitempty"`
	// AppOrigins maps each app's slug to the origin the dashboard opens it
	// on (its own host for a subdomain app, else the access URL's), which
	// the startup script gets as $CODER_APP_ORIGIN_<SLUG> (AppOriginEnv).
	AppOrigins map[string]string `json:"app_origins,omitempty"`
}

// AgentHeartbeatInterval is how often an agent sends a heartbeat on its
// connection; the server marks an agent disconnected after about two and a
// half intervals of silence.
const AgentHeartbeatInterval = 2 * time.Second

// AgentConnectPath is the agent's control connection (a websocket).
const AgentConnectPath = "/api/v2/workspaceagents/me/connect"

// Tailnet ports of an agent, as Coder numbers them. Any other port is
// forwarded to the agent's localhost.
const (
	AgentSSHPort             = 1
	AgentReconnectingPTYPort = 2
	AgentSpeedtestPort       = 3
)

// AgentServicePort tells whether port is one the agent itself serves as
// soon as it has joined the tailnet (SSH, terminal, speedtest), as opposed
// to a workspace port that may simply have nothing listening.
func AgentServicePort(port uint16) bool {
	return port == AgentSSHPort || port == AgentReconnectingPTYPort || port == AgentSpeedtestPort
}

// BrowserOnlyMessage is what every non-browser tunnel gets in browser-only
// mode (Coder's wording).
const BrowserOnlyMessage = "Non-browser connections are disabled for your deployment."

// CodeBrowserOnly is the [Response.Code] of an API refusal because the
// deployment is browser-only (--browser-only): the CLI cannot tunnel to
// agents. Test for it with [IsBrowserOnly].
const CodeBrowserOnly = "browser_only"

// FormatLatency renders a round-trip time as `coder ping` and the
// dashboard show it: 0.31ms below 10 ms, whole milliseconds above.
func FormatLatency(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
