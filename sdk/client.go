package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"tailscale.com/tailcfg"
)

// Client calls the JSON API of a coder server. The zero value is not
// usable: set URL. It is safe for concurrent use.
type Client struct {
	// URL is the server's access URL.
	URL *url.URL
	// Token is sent as the Coder-Session-Token header when not empty.
	Token string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

// Error is an API error: the status and the server's message.
type Error struct {
	StatusCode int
	Response
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	for _, v := range e.Validations {
		msg += fmt.Sprintf("\n  %s: %s", v.Field, v.Detail)
	}
	return msg
}

// StatusCode returns the HTTP status of an API error, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsBrowserOnly tells whether err is an API refusal because the deployment
// is browser-only (an *Error whose Code is [CodeBrowserOnly]).
func IsBrowserOnly(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeBrowserOnly
}

// Request sends a JSON request and decodes a JSON response into out (when
// out is not nil). A non-2xx status is returned as *Error.
func (c *Client) Request(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := c.URL.JoinPath(strings.Split(path, "?")[0])
	if _, q, ok := strings.Cut(path, "?"); ok {
		u.RawQuery = q
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set(SessionTokenHeader, c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{StatusCode: resp.StatusCode}
		if err := json.Unmarshal(data, &e.Response); err != nil {
			e.Message = strings.TrimSpace(string(data))
			if len(e.Message) > 200 {
				e.Message = e.Message[:200]
			}
		}
		return e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode response from %s: %w", path, err)
		}
	}
	return nil
}

// BuildInfo returns the server's version and mode.
func (c *Client) BuildInfo(ctx context.Context) (BuildInfo, error) {
	var bi BuildInfo
	err := c.Request(ctx, http.MethodGet, "/api/v2/buildinfo", nil, &bi)
	return bi, err
}

// Me returns the user of the token.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	err := c.Request(ctx, http.MethodGet, "/api/v2/users/me", nil, &u)
	return u, err
}

// Workspace returns the caller's workspace called name ("owner/name" for
// another user's).
func (c *Client) Workspace(ctx context.Context, name string) (Workspace, error) {
	owner := "me"
	if o, n, ok := strings.Cut(name, "/"); ok {
		owner, name = o, n
	}
	var w Workspace
	err := c.Request(ctx, http.MethodGet, "/api/v2/users/"+url.PathEscape(owner)+"/workspace/"+url.PathEscape(name), nil, &w)
	return w, err
}

// CreateFirstUser creates the owner of a deployment that has no users
// yet. A deployment that has one answers with an *Error of status 409.
func (c *Client) CreateFirstUser(ctx context.Context, req CreateFirstUserRequest) error {
	return c.Request(ctx, http.MethodPost, "/api/v2/users/first", req, nil)
}

// Login exchanges a username (or email) and password for a session
// token. It does not set c.Token.
func (c *Client) Login(ctx context.Context, req LoginRequest) (LoginResponse, error) {
	var resp LoginResponse
	err := c.Request(ctx, http.MethodPost, "/api/v2/users/login", req, &resp)
	return resp, err
}

// Logout ends the session of c.Token on the server.
func (c *Client) Logout(ctx context.Context) error {
	return c.Request(ctx, http.MethodPost, "/api/v2/users/logout", nil, nil)
}

// CreateUser creates a user (owner only).
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (User, error) {
	var u User
	err := c.Request(ctx, http.MethodPost, "/api/v2/users", req, &u)
	return u, err
}

// ListUsers returns every user (owner only).
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	var us []User
	err := c.Request(ctx, http.MethodGet, "/api/v2/users", nil, &us)
	return us, err
}

// PushTemplate creates or updates the template called name from its YAML
// source.
func (c *Client) PushTemplate(ctx context.Context, name string, req PushTemplateRequest) (TemplateInfo, error) {
	var info TemplateInfo
	err := c.Request(ctx, http.MethodPut, "/api/v2/templates/"+url.PathEscape(name), req, &info)
	return info, err
}

// ListTemplates returns every template.
func (c *Client) ListTemplates(ctx context.Context) ([]TemplateInfo, error) {
	var ts []TemplateInfo
	err := c.Request(ctx, http.MethodGet, "/api/v2/templates", nil, &ts)
	return ts, err
}

// CreateWorkspace creates a workspace of the caller. The agents of the
// result carry their tokens, which the server shows only this once.
func (c *Client) CreateWorkspace(ctx context.Context, req CreateWorkspaceRequest) (Workspace, error) {
	var w Workspace
	err := c.Request(ctx, http.MethodPost, "/api/v2/workspaces", req, &w)
	return w, err
}

// ListWorkspaces returns the caller's workspaces, or with all every
// user's (owner only).
func (c *Client) ListWorkspaces(ctx context.Context, all bool) ([]Workspace, error) {
	path := "/api/v2/workspaces"
	if all {
		path += "?all=true"
	}
	var ws []Workspace
	err := c.Request(ctx, http.MethodGet, path, nil, &ws)
	return ws, err
}

// StartWorkspace starts the agents of the workspace with the given ID and
// returns the workspace as it is then.
func (c *Client) StartWorkspace(ctx context.Context, id string) (Workspace, error) {
	return c.transitionWorkspace(ctx, id, "start")
}

// StopWorkspace stops the agents of the workspace with the given ID and
// returns the workspace as it is then.
func (c *Client) StopWorkspace(ctx context.Context, id string) (Workspace, error) {
	return c.transitionWorkspace(ctx, id, "stop")
}

func (c *Client) transitionWorkspace(ctx context.Context, id, action string) (Workspace, error) {
	var w Workspace
	err := c.Request(ctx, http.MethodPost, "/api/v2/workspaces/"+url.PathEscape(id)+"/"+action, nil, &w)
	return w, err
}

// DeleteWorkspace deletes the workspace with the given ID.
func (c *Client) DeleteWorkspace(ctx context.Context, id string) error {
	return c.Request(ctx, http.MethodDelete, "/api/v2/workspaces/"+url.PathEscape(id), nil, nil)
}

// DERPMap returns the DERP map the server gives its nodes.
func (c *Client) DERPMap(ctx context.Context) (*tailcfg.DERPMap, error) {
	var dm tailcfg.DERPMap
	if err := c.Request(ctx, http.MethodGet, "/api/v2/derp-map", nil, &dm); err != nil {
		return nil, err
	}
	return &dm, nil
}

// AgentConnection tells a CLI how to reach the agent with the given ID
// over the tailnet. In browser-only mode the server refuses with an *Error
// of status 409 for which [IsBrowserOnly] is true.
func (c *Client) AgentConnection(ctx context.Context, agentID string) (AgentConnection, error) {
	var info AgentConnection
	err := c.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/"+url.PathEscape(agentID)+"/connection", nil, &info)
	return info, err
}
