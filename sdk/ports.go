package sdk

// Message types an agent sends on its control connection after its hello.
// Every message is a JSON object with a "type" field; the server ignores a
// type it does not know, so that a newer agent can talk to an older server.
const (
	// AgentMessageHeartbeat says the agent is alive; it carries nothing.
	AgentMessageHeartbeat = "heartbeat"
	// AgentMessageListeningPorts carries [AgentListeningPorts]: every TCP
	// port listening in the workspace, sent when the set changes.
	AgentMessageListeningPorts = "listening_ports"
	// AgentMessageAppHealth carries [AgentAppHealth]: the health of every
	// app with a health check, sent when one changes.
	AgentMessageAppHealth = "app_health"
)

// AgentMessage is the envelope of every message an agent sends after its
// hello: the server reads Type, then decodes the same bytes into the type's
// message.
type AgentMessage struct {
	Type string `json:"type"`
}

// MinListeningPort is the lowest port the agent reports and that a port URL
// may name: ports below it are the agent's own services (SSH, terminal,
// speedtest, UDP forwarding) or reserved, as in Coder.
const MinListeningPort = 9

// MaxListeningPorts bounds the ports an agent reports (and the server
// keeps): the first ones by port number.
const MaxListeningPorts = 256

// ListeningPort is a TCP port listening in the workspace (Coder's
// WorkspaceAgentListeningPort).
type ListeningPort struct {
	// ProcessName is the name of the process that listens, when the agent
	// could see it (only its own user's processes); empty otherwise.
	ProcessName string `json:"process_name"`
	// Network is always "tcp".
	Network string `json:"network"`
	Port    uint16 `json:"port"`
}

// AgentListeningPorts is the [AgentMessageListeningPorts] message, and the
// body of GET /api/v2/workspaceagents/{id}/listening-ports.
type AgentListeningPorts struct {
	Type  string          `json:"type,omitempty"`
	Ports []ListeningPort `json:"ports"`
}

// App health states, as Coder names them. An app without a health check
// has none ("" on the wire, AppHealthDisabled in the API).
const (
	AppHealthDisabled     = "disabled"
	AppHealthInitializing = "initializing"
	AppHealthHealthy      = "healthy"
	AppHealthUnhealthy    = "unhealthy"
)

// AgentAppHealth is the [AgentMessageAppHealth] message: the health of every
// app of the agent that has a health check, by slug.
type AgentAppHealth struct {
	Type string            `json:"type"`
	Apps map[string]string `json:"apps"`
}

// Port sharing levels are the apps' ([ShareOwner], [ShareAuthenticated],
// [SharePublic]); protocols of a shared port:
const (
	PortShareProtocolHTTP  = "http"
	PortShareProtocolHTTPS = "https"
)

// WorkspaceAgentPortShare is one shared port of a workspace (Coder's
// shape). A port that is not shared opens for the workspace's owner only.
type WorkspaceAgentPortShare struct {
	WorkspaceID string `json:"workspace_id"`
	AgentName   string `json:"agent_name"`
	Port        int    `json:"port"`
	ShareLevel  string `json:"share_level"`
	Protocol    string `json:"protocol"`
}

// WorkspaceAgentPortShares is the body of
// GET /api/v2/workspaces/{id}/port-share.
type WorkspaceAgentPortShares struct {
	Shares []WorkspaceAgentPortShare `json:"shares"`
}

// UpsertWorkspaceAgentPortShareRequest shares a port (POST
// /api/v2/workspaces/{id}/port-share). ShareLevel "owner" revokes the
// share; Protocol defaults to http.
type UpsertWorkspaceAgentPortShareRequest struct {
	AgentName  string `json:"agent_name"`
	Port       int    `json:"port"`
	ShareLevel string `json:"share_level"`
	Protocol   string `json:"protocol,omitempty"`
}

// DeleteWorkspaceAgentPortShareRequest revokes a port's share (DELETE
// /api/v2/workspaces/{id}/port-share).
type DeleteWorkspaceAgentPortShareRequest struct {
	AgentName string `json:"agent_name"`
	Port      int    `json:"port"`
}
