package web

// AgentPorts is the listening-ports part of an agent on the workspace page.
type AgentPorts struct {
	// Shown is false while the agent is not connected: its ports are
	// unknown.
	Shown bool
	Ports []Port
	// PortURLHelp, when not empty, says why ports have no "open" link (no
	// wildcard access URL) and what to use instead.
	PortURLHelp string
	// ForwardCommand is the `coder port-forward` command to reach a port
	// without a port URL, with PORT where the port number goes.
	ForwardCommand string
	// CanShare: the viewer owns the workspace and may share its ports.
	CanShare bool
	// ShareAction is the URL that share forms post to, with the port
	// appended (…/ports/8080/share).
	ShareAction string
}

// Port is one TCP port of a workspace.
type Port struct {
	Port        int
	ProcessName string
	// Listening is false for a port that is shared while nothing listens
	// on it.
	Listening bool
	// URL is the port's URL under the wildcard access URL; empty without
	// one.
	URL string
	// Share is owner, authenticated or public.
	Share string
}

// AppUnavailablePage is the 502 page of an app whose agent or backend
// does not answer: what is wrong and what to do.
type AppUnavailablePage struct {
	Nav     Nav
	Title   string
	Problem string
	// Steps say what to do, in order.
	Steps []string
	// WorkspaceURL links back to the workspace page; empty when unknown.
	WorkspaceURL string
}
