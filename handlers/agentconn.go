package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
)

// Agent connection timing: the agent sends a heartbeat every
// sdk.AgentHeartbeatInterval; a connection silent for agentReadTimeout is
// closed and the agent marked disconnected.
const (
	agentReadTimeout   = 5 * time.Second
	agentHelloTimeout  = 10 * time.Second
	agentDBWriteEvery  = 2 * time.Second
	agentMaxFrameBytes = 64 << 10
)

var agentUpgrader = websocket.Upgrader{
	ReadBufferSize:    4096,
	WriteBufferSize:   4096,
	EnableCompression: false,
	// Agents are programs, not browsers: a request that carries an Origin
	// header came from a page and is refused.
	CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
}

// agentConns tracks this server's open agent connections, so that a newer
// connection of the same agent replaces the older one, and tokens can be
// revoked.
type agentConns struct {
	mu    sync.Mutex
	conns map[string]*websocket.Conn
}

func (c *agentConns) swap(id string, conn *websocket.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]*websocket.Conn{}
	}
	if old := c.conns[id]; old != nil {
		old.Close()
	}
	c.conns[id] = conn
}

// remove forgets conn, unless a newer connection replaced it. It reports
// whether conn was still the agent's current connection.
func (c *agentConns) remove(id string, conn *websocket.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns[id] != conn {
		return false
	}
	delete(c.conns, id)
	return true
}

// closeAll closes every connection (at shutdown).
func (c *agentConns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
}

func (c *agentConns) close(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn := c.conns[id]; conn != nil {
		conn.Close()
	}
}

func (a *API) disconnectAgent(id string) { a.agents.close(id) }

// agentFromToken authenticates an agent by its token.
func (a *API) agentFromToken(ctx context.Context, token string) (store.Agent, error) {
	if token == "" {
		return store.Agent{}, &HTTPError{Code: http.StatusUnauthorized, Msg: "Send the agent token in the Coder-Session-Token header (CODER_AGENT_TOKEN)."}
	}
	ag, err := a.db.AgentByTokenHash(ctx, hashSecret(token))
	if errors.Is(err, store.ErrNotFound) {
		return ag, &HTTPError{Code: http.StatusUnauthorized, Msg: "The agent token is not valid. It may have been regenerated, or its workspace deleted."}
	}
	return ag, err
}

// serveAgentConnect is the agent's control connection: a websocket on which
// the agent says hello, gets its manifest, and sends heartbeats.
func (a *API) serveAgentConnect(w http.ResponseWriter, r *http.Request) error {
	ag, err := a.agentFromToken(r.Context(), r.Header.Get(sdk.SessionTokenHeader))
	if err != nil {
		return err
	}
	wk, err := a.db.WorkspaceByID(r.Context(), ag.WorkspaceID)
	if err != nil {
		return err
	}
	if !a.track() {
		return &HTTPError{Code: http.StatusServiceUnavailable, Msg: "The server is shutting down; reconnect shortly."}
	}
	defer a.wg.Done()
	conn, err := agentUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader wrote the error response
	}
	defer conn.Close()
	// The app proxy's idle connections to the agent go with it.
	defer a.front.Proxy().CloseAgent(ag.ID)
	conn.SetReadLimit(agentMaxFrameBytes)
	log := a.logger.With("agent_id", ag.ID, "workspace_id", wk.ID)

	var hello sdk.AgentHello
	conn.SetReadDeadline(time.Now().Add(agentHelloTimeout))
	if err := conn.ReadJSON(&hello); err != nil {
		log.Debug("agent hello", "err", err)
		return nil
	}
	if field, ok := badHello(hello); ok {
		// Bad input from an agent, not a server fault: refuse it with a
		// reason the agent logs, and record nothing.
		log.Warn("agent hello refused", "field", field)
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation,
			"hello field "+field+" has a NUL byte or is too long"), time.Now().Add(time.Second))
		return nil
	}
	// The manifest goes out before the agent counts as connected, so that
	// "connected" means the agent has what it needs to serve.
	spec := agentSpec(ag)
	manifest := sdk.AgentManifest{
		AgentID: ag.ID, AgentName: ag.Name, WorkspaceID: wk.ID, WorkspaceName: wk.Name, OwnerName: wk.OwnerName,
		Directory: spec.Directory, Apps: spec.Apps, StartupScript: spec.StartupScript,
		AccessURL:    (&url.URL{Scheme: a.opts.AccessURL.Scheme, Host: a.opts.AccessURL.Host}).String(),
		AppBasePaths: a.appBasePaths(wk.OwnerName, wk.Name, ag.Name, spec),
		AppOrigins:   a.appOrigins(wk.OwnerName, wk.Name, ag.Name, spec),
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteJSON(manifest); err != nil {
		log.Debug("agent manifest", "err", err)
		return nil
	}
	ctx := context.WithoutCancel(r.Context())
	ag.Version, ag.OS, ag.Arch, ag.Hostname, ag.Directory = hello.Version, hello.OS, hello.Arch, hello.Hostname, hello.Directory
	if err := a.db.AgentConnected(ctx, ag); err != nil {
		log.Error("record agent connection", "err", err)
		return nil
	}
	a.agents.swap(ag.ID, conn)
	if a.ctx.Err() != nil {
		// Close began before swap: closeAll may have missed this conn.
		return nil
	}
	a.metrics.agentsConnected.Inc()
	a.notifyWorkspace(wk.ID)
	log.Info("agent connected", "version", hello.Version, "os", hello.OS, "arch", hello.Arch)
	defer func() {
		a.metrics.agentsConnected.Dec()
		if a.agents.remove(ag.ID, conn) {
			if err := a.db.AgentDisconnected(ctx, ag.ID); err != nil {
				log.Warn("record agent disconnection", "err", err)
			}
			log.Info("agent disconnected")
		}
		a.notifyWorkspace(wk.ID)
	}()

	lastWrite := time.Now()
	for {
		conn.SetReadDeadline(time.Now().Add(agentReadTimeout))
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return nil
		}
		// Every message counts as a heartbeat; some carry more.
		var env sdk.AgentMessage
		if err := json.Unmarshal(msg, &env); err != nil {
			log.Debug("agent message is not JSON", "err", err)
		}
		switch env.Type {
		case sdk.AgentMessageHeartbeat:
		case sdk.AgentMessageListeningPorts:
			a.agentListeningPorts(ctx, log, ag, wk.ID, msg)
		case sdk.AgentMessageAppHealth:
			a.agentAppHealth(ctx, log, ag, wk.ID, msg)
		case sdk.AgentMessageStartupLog, sdk.AgentMessageStartupState:
			a.handleStartupMessage(ctx, log, ag.ID, wk.ID, env.Type, msg)
		default:
			log.Debug("agent message of unknown type", "type", env.Type)
		}
		if time.Since(lastWrite) >= agentDBWriteEvery {
			lastWrite = time.Now()
			if err := a.db.AgentHeartbeat(ctx, ag.ID); err != nil {
				log.Warn("record agent heartbeat", "err", err)
			}
		}
	}
}

// badHello names a field of an agent's hello that cannot be stored: one
// with a NUL byte (PostgreSQL refuses it) or longer than a path.
func badHello(h sdk.AgentHello) (string, bool) {
	if f, ok := nulField(&h); ok {
		return f, true
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"version", h.Version, 256}, {"os", h.OS, 64}, {"arch", h.Arch, 64}, {"hostname", h.Hostname, 255}, {"directory", h.Directory, 4096}} {
		if len(f.v) > f.max {
			return f.name, true
		}
	}
	return "", false
}
