package sdk

import "time"

// Workspace proxies: the wire contract between the primary, `coder wsproxy
// server`, the CLI and the dashboard's picker. The spec page on workspace
// proxies names the commands and statuses; the routes follow Coder's.
//
// Owner routes (session token):
//
//	POST   /api/v2/workspaceproxies                  CreateWorkspaceProxyRequest → CreateWorkspaceProxyResponse (201)
//	GET    /api/v2/workspaceproxies                  → []WorkspaceProxy (the primary first)
//	GET    /api/v2/workspaceproxies/{name}           → WorkspaceProxy
//	PATCH  /api/v2/workspaceproxies/{name}           PatchWorkspaceProxyRequest → PatchWorkspaceProxyResponse
//	DELETE /api/v2/workspaceproxies/{name}           → Response
//
// Any signed-in user:
//
//	GET    /api/v2/regions                           → RegionsResponse
//	POST   /api/v2/applications/reconnecting-pty-signed-token
//	                                                 IssueReconnectingPTYSignedTokenRequest → IssueReconnectingPTYSignedTokenResponse
//
// Proxy routes (the proxy's token in [WorkspaceProxyTokenHeader]):
//
//	POST   /api/v2/workspaceproxies/me/register      RegisterWorkspaceProxyRequest → RegisterWorkspaceProxyResponse
//	POST   /api/v2/workspaceproxies/me/deregister    DeregisterWorkspaceProxyRequest → Response
//	GET    /api/v2/workspaceproxies/me/app-token-keys → AppTokenKeysResponse
//	POST   /api/v2/workspaceproxies/me/authorize     ProxyAuthorizeRequest → ProxyAuthorizeResponse
//
// The proxy itself serves:
//
//	GET    /latency-check   204, Timing-Allow-Origin: the primary's access URL origin
//	GET    /healthz         200 "OK", or 503 with what is wrong (the primary unreachable, ...)
//	GET    /healthz-report  ProxyHealthReport (what the primary probes)
//	/derp                   its own DERP region, when enabled
//	and the apps front door: /api/v2/workspaceagents/{id}/pty, path apps, subdomain apps, port URLs.
const (
	// WorkspaceProxyTokenHeader carries a proxy's token ("<id>:<secret>").
	WorkspaceProxyTokenHeader = "Coder-Workspace-Proxy-Token"
	// AuthKeyPrefixProxy is the tailnet auth key prefix of a proxy node:
	// "proxy:<id>:<secret>".
	AuthKeyPrefixProxy = "proxy:"
	// PrimaryProxyName is the reserved name of the primary in the region
	// list; no proxy may take it.
	PrimaryProxyName = "primary"
	// PrimaryRegionID is the primary's region id.
	PrimaryRegionID = "00000000-0000-0000-0000-000000000000"
	// SignedTokenQueryParam carries a signed app token on the proxy's PTY
	// websocket URL (the browser has no cookie on the proxy's origin).
	SignedTokenQueryParam = "coder_signed_app_token"
)

// ProxyAuthKey is the tailnet auth key of a workspace proxy node.
func ProxyAuthKey(proxyToken string) string { return AuthKeyPrefixProxy + proxyToken }

// Proxy statuses, as `coder wsproxy ls` prints them.
const (
	ProxyStatusOK           = "ok"
	ProxyStatusUnregistered = "unregistered"
	ProxyStatusUnreachable  = "unreachable"
	ProxyStatusUnhealthy    = "unhealthy"
)

// WorkspaceProxy is one region as the owner sees it: the primary (Name
// "primary") or a proxy.
type WorkspaceProxy struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	IconURL     string `json:"icon_url"`
	// URL is the proxy's access URL; empty until it registers.
	URL string `json:"url"`
	// WildcardHostname is like "*.east.example.com"; may be empty.
	WildcardHostname string `json:"wildcard_hostname"`
	DerpEnabled      bool   `json:"derp_enabled"`
	// DERPRegionID is the DERP region the proxy runs, 0 when none.
	DERPRegionID int                  `json:"derp_region_id"`
	Version      string               `json:"version"`
	CreatedAt    time.Time            `json:"created_at"`
	UpdatedAt    time.Time            `json:"updated_at"`
	Deleted      bool                 `json:"deleted"`
	Status       WorkspaceProxyStatus `json:"status"`
}

// WorkspaceProxyStatus is the primary's last probe of a proxy.
type WorkspaceProxyStatus struct {
	// Status is one of the ProxyStatus constants.
	Status string `json:"status"`
	// Report holds the errors and warnings of the last probe.
	Report    ProxyHealthReport `json:"report"`
	CheckedAt time.Time         `json:"checked_at"`
	// LastContact is the proxy's last registration or call.
	LastContact time.Time `json:"last_contact"`
}

type CreateWorkspaceProxyRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Icon        string `json:"icon"`
}

type CreateWorkspaceProxyResponse struct {
	Proxy WorkspaceProxy `json:"proxy"`
	// ProxyToken is "<id>:<secret>"; only a hash of the secret is stored.
	ProxyToken string `json:"proxy_token"`
}

// PatchWorkspaceProxyRequest edits a proxy; empty fields are kept.
type PatchWorkspaceProxyRequest struct {
	Name            string `json:"name,omitempty"`
	DisplayName     string `json:"display_name,omitempty"`
	Icon            string `json:"icon,omitempty"`
	RegenerateToken bool   `json:"regenerate_token,omitempty"`
}

type PatchWorkspaceProxyResponse struct {
	Proxy WorkspaceProxy `json:"proxy"`
	// ProxyToken is set when the token was regenerated.
	ProxyToken string `json:"proxy_token,omitempty"`
}

// RegisterWorkspaceProxyRequest is what a proxy sends at start and then
// every RegisterInterval.
type RegisterWorkspaceProxyRequest struct {
	AccessURL        string `json:"access_url"`
	WildcardHostname string `json:"wildcard_hostname"`
	DerpEnabled      bool   `json:"derp_enabled"`
	// ReplicaID is random per proxy process: a second process with the
	// same token while the first is alive is refused (409).
	ReplicaID string `json:"replica_id"`
	Hostname  string `json:"hostname"`
	Version   string `json:"version"`
}

type RegisterWorkspaceProxyResponse struct {
	ProxyID string `json:"proxy_id"`
	// DERPRegionID is the region the proxy's DERP server serves.
	DERPRegionID int `json:"derp_region_id"`
	// PrimaryAccessURL is the dashboard's URL: the origin of the terminal
	// websocket and the Timing-Allow-Origin of /latency-check.
	PrimaryAccessURL string `json:"primary_access_url"`
	// RegisterInterval is how often to register again.
	RegisterInterval time.Duration `json:"register_interval"`
	// BrowserOnly mirrors the deployment's browser-only mode.
	BrowserOnly bool `json:"browser_only"`
}

type DeregisterWorkspaceProxyRequest struct {
	ReplicaID string `json:"replica_id"`
}

// AppTokenKey is one key of the primary's app-token key ring.
type AppTokenKey struct {
	ID string `json:"id"`
	// Secret is base64 (standard encoding).
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expires_at"`
}

type AppTokenKeysResponse struct {
	Keys []AppTokenKey `json:"keys"`
}

// ProxyAuthorizeRequest asks the primary what an app or terminal request
// at the proxy may open: exactly one of AppHost (a subdomain label), Path
// (/@user/workspace[.agent]/apps/slug) or AgentID (the terminal) is set,
// with the visitor's user from a token the primary issued.
type ProxyAuthorizeRequest struct {
	UserID  string `json:"user_id"`
	AppHost string `json:"app_host,omitempty"`
	Path    string `json:"path,omitempty"`
	AgentID string `json:"agent_id,omitempty"`
}

type ProxyAuthorizeResponse struct {
	AgentID string `json:"agent_id"`
	// AppURL is the app's URL on the agent; empty for a terminal.
	AppURL      string `json:"app_url,omitempty"`
	AgentStatus string `json:"agent_status"`
	// IdentityHeaders, Share and the rest the apps front door needs are
	// added by whoever builds the route; keep this type the one contract.
}

// RegionsResponse lists the regions every signed-in user may pick.
type RegionsResponse struct {
	Regions []Region `json:"regions"`
}

// Region is one entry of the picker.
type Region struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	IconURL     string `json:"icon_url"`
	Healthy     bool   `json:"healthy"`
	// PathAppURL is the region's access URL: probe PathAppURL +
	// "/latency-check", open terminals and path apps under it.
	PathAppURL string `json:"path_app_url"`
	// WildcardHostname is where its subdomain apps live, may be empty.
	WildcardHostname string `json:"wildcard_hostname"`
	DERPRegionID     int    `json:"derp_region_id"`
}

type IssueReconnectingPTYSignedTokenRequest struct {
	// URL is the PTY websocket URL at the region, ws(s)://.../pty?...
	URL     string `json:"url"`
	AgentID string `json:"agent_id"`
}

type IssueReconnectingPTYSignedTokenResponse struct {
	SignedToken string `json:"signed_token"`
}

// ProxyHealthReport is what /healthz-report at a proxy returns and what
// the primary keeps as the proxy's status.
type ProxyHealthReport struct {
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}
