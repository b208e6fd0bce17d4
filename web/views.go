package web

import "time"

// Nav is what the layout needs to know about the viewer.
type Nav struct {
	// Username is empty when nobody is logged in.
	Username string
	IsOwner  bool
	// Active names the current section: "workspaces", "users",
	// "templates" or "deployment".
	Active string
	// StylePath and ScriptPath are the URLs of the dashboard's CSS and JS;
	// no script when ScriptPath is empty.
	StylePath  string
	ScriptPath string
	// Base is the dashboard's URL for pages served on another host (an
	// app's error page); empty on the dashboard itself.
	Base string
}

// Field is a form field's value and its error, if any.
type Field struct {
	Value string
	Error string
}

// AuthForm is the setup and login forms.
type AuthForm struct {
	Error    string
	Username Field
	Email    Field
	Password Field
	Redirect string
}

// WorkspaceRow is a workspace in the list.
type WorkspaceRow struct {
	Name      string
	Owner     string
	Template  string
	Status    string
	Agents    int
	Connected int
	URL       string
	Updated   time.Time
}

// WorkspacesPage is the workspaces list with its create form.
type WorkspacesPage struct {
	Nav        Nav
	Workspaces []WorkspaceRow
	Templates  []string
	Form       struct {
		Name     Field
		Template string
		Error    string
	}
}

// App is a workspace app as shown on the workspace page.
type App struct {
	Slug        string
	DisplayName string
	// URL is the app's link; empty when the deployment does not serve it
	// (path apps turned off).
	URL   string
	Share string
	// Note says how the deployment limits the app, like "shared with
	// authenticated users in the template; path-app sharing is off on this
	// deployment"; empty when it does not.
	Note string
	// Health is the app's health check state (initializing, healthy,
	// unhealthy); empty for an app without one.
	Health string
	// Off, when not empty, says why the app cannot open now (workspace
	// stopped, agent offline, unhealthy): the button is greyed out with it
	// as its title.
	Off string
}

// AppRefusedPage says why a path app did not open, and what to do.
type AppRefusedPage struct {
	Nav    Nav
	Title  string
	Reason string
	Help   string
}

// Agent is an agent as shown on the workspace page.
type Agent struct {
	ID          string
	Name        string
	Status      string
	OS          string
	Arch        string
	Version     string
	Hostname    string
	LastSeen    string
	Apps        []App
	TerminalURL string
	// Connection is how the server reaches the agent ("direct (p2p) via
	// ip:port · 0.3ms" or "relayed via DERP(coder) · 2ms"); PreferredDERP
	// the agent's home region.
	Connection    string
	PreferredDERP string
	// SSHCommand is `coder ssh <workspace>[.<agent>]`; empty in
	// browser-only mode.
	SSHCommand string
	// ManualCommand is the command that starts this agent elsewhere, for
	// manual templates; Token is set only right after it was made.
	ManualCommand string
	// Ports are the TCP ports listening in the workspace, and the ports
	// shared while nothing listens on them (see ports.go).
	Ports AgentPorts
	// Startup is the agent's startup script and its log; zero when the
	// template gives the agent none.
	Startup Startup
}

// Startup is an agent's startup script as the workspace page shows it.
type Startup struct {
	// State is pending, running, ready or error; "" means no script.
	State    string
	ExitCode int
	// Lines are the newest lines of the log, oldest first; Dropped counts
	// the older ones not shown.
	Lines   []string
	Dropped int64
}

// WorkspacePage is one workspace.
type WorkspacePage struct {
	Nav          Nav
	Owner        string
	Name         string
	Template     string
	Provisioner  string
	Status       string
	DesiredState string
	BasePath     string
	Agents       []Agent
	// Notice is shown once above the agents (like a new agent token).
	Notice string
	// SSHHost is the host `coder config-ssh` writes for this workspace
	// (coder.<workspace>); empty in browser-only mode.
	SSHHost string
}

// UserRow is a user in the owner's list.
type UserRow struct {
	ID       string
	Username string
	Email    string
	Role     string
	Created  time.Time
	IsSelf   bool
}

// UsersPage is the owner's user list and create form.
type UsersPage struct {
	Nav   Nav
	Users []UserRow
	Form  AuthForm
	Role  string
}

// TemplateRow is a template in the owner's list.
type TemplateRow struct {
	Name        string
	DisplayName string
	Description string
	Provisioner string
	Agents      int
	Workspaces  int
	Updated     time.Time
	Source      string
}

// TemplatesPage lists templates.
type TemplatesPage struct {
	Nav       Nav
	Templates []TemplateRow
}

// DeploymentPage shows how the deployment is configured.
type DeploymentPage struct {
	Nav      Nav
	Settings []Setting
	// DERPRegions and STUN show the relays and whether STUN answers.
	DERPRegions []DERPRegion
	STUN        string
	// Nodes counts tailnet nodes by kind ("agent: 3 online of 4").
	Nodes []Setting
}

// Setting is one row of the deployment page.
type Setting struct {
	Name  string
	Value string
	Help  string
}

// CLIAuthPage shows a new session token to paste into `coder login`, or,
// while Token is empty, the form that asks for one.
type CLIAuthPage struct {
	Nav   Nav
	Token string
	// CSRF is the form's token, bound to the session; used while Token is
	// empty.
	CSRF string
}

// ErrorPage is a friendly error.
type ErrorPage struct {
	Nav     Nav
	Code    int
	Title   string
	Message string
}

// Since renders a time as "12s ago", "5m ago", "3h ago" or a date.
func Since(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return itoa(int(d.Seconds())) + "s ago"
	case d < time.Hour:
		return itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return itoa(int(d.Hours())) + "h ago"
	}
	return t.Format("2 Jan 2006")
}

func itoa(n int) string {
	if n < 0 {
		n = 0
	}
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// Terminal is the full-window web terminal page.
type Terminal struct {
	Title      string
	WSPath     string
	AgentID    string
	AgentName  string
	BackURL    string
	StylePath  string
	ScriptPath string
	// Owner and Workspace name the workspace, whose API the page asks
	// what is true when it cannot attach; WorkspaceID and CanStart are for
	// its Start button.
	Owner       string
	Workspace   string
	WorkspaceID string
	CanStart    bool
	// AccessOrigin is the dashboard's origin (scheme://host): the
	// terminal's websocket opens only from a page there.
	AccessOrigin string
}

// DERPRegion is a row of the deployment page's DERP table.
type DERPRegion struct {
	ID      int
	Code    string
	Name    string
	Nodes   string
	Health  string
	Latency string
}
