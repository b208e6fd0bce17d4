package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/internal/backoff"
	"github.com/gatewaydev/coder/internal/userproc"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/terminal"
)

// Options configure an agent. URL and Token are required.
type Options struct {
	// URL is the coder server the agent dials (CODER_AGENT_URL).
	URL *url.URL
	// Token authenticates the agent (CODER_AGENT_TOKEN).
	Token  string
	Logger *slog.Logger
	// Version is reported to the server.
	Version string
	// Directory is the agent's working directory, reported to the server;
	// empty means the process's.
	Directory string
	// HTTPClient dials the server; nil means http.DefaultClient's transport.
	HTTPClient *http.Client
	// StateDir holds the agent's tailnet state; empty means a temporary
	// directory.
	StateDir string
	// TerminalIdleTimeout ends a web terminal session nobody is attached to
	// after this long; zero means 5 minutes.
	TerminalIdleTimeout time.Duration
	// MaxTerminalSessions caps the agent's live web terminal sessions
	// (terminal.ServerOptions.MaxSessions); zero means 32.
	MaxTerminalSessions int
	// TerminalMetrics, if not nil, records terminal sessions.
	TerminalMetrics *terminal.Metrics
	// TCPBufferMax caps each tailnet TCP connection's buffers
	// (tailnet.NodeOptions.TCPBufferMax); zero keeps tailscale's.
	TCPBufferMax int
	// LogDir holds the startup script's log, coder-startup-script-<agent
	// id>.log; empty means os.TempDir().
	LogDir string
	// NoTailnet keeps the agent off the tailnet (tests of the control
	// connection alone).
	NoTailnet bool
	// PortScanInterval is how often the agent reads the workspace's
	// listening TCP ports and reports changes; zero means
	// DefaultPortScanInterval.
	PortScanInterval time.Duration
}

// Agent is a running workspace agent. Create it with New; Close stops it.
type Agent struct {
	opts   Options
	logger *slog.Logger
	// procs builds the processes of web terminal and SSH sessions alike.
	procs *userproc.Builder

	mu        sync.Mutex
	manifest  *sdk.AgentManifest
	connected bool
	// reports (listening ports, app health) and the health checks that
	// feed it; changed wakes the control connection to send them.
	reports reports
	health  healthChecks
	changed chan struct{}
	// startup is the startup script's state and log (startup.go).
	startup *startupLog
	// appSockDir holds apps' unix sockets (appsocket.go); "" until made.
	appSockDir string

	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New starts an agent: it dials the server in the background and keeps
// reconnecting with backoff until Close.
func New(opts Options) (*Agent, error) {
	if opts.URL == nil || opts.URL.Host == "" {
		return nil, errors.New("agent: the server URL is required (CODER_AGENT_URL)")
	}
	if opts.Token == "" {
		return nil, errors.New("agent: the agent token is required (CODER_AGENT_TOKEN)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Directory == "" {
		opts.Directory, _ = os.Getwd()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{opts: opts, logger: opts.Logger.With("component", "agent"), ctx: ctx, cancel: cancel,
		procs:   userproc.New(userproc.Options{Dir: opts.Directory}),
		startup: newStartupLog(),
		changed: make(chan struct{}, 1)}
	if opts.PortScanInterval <= 0 {
		opts.PortScanInterval = DefaultPortScanInterval
	}
	a.wg.Add(2)
	go a.portLoop(opts.PortScanInterval)
	go a.connectLoop()
	if !opts.NoTailnet {
		a.wg.Add(1)
		go a.tailnetLoop()
	}
	return a, nil
}

// Close stops the agent and waits for its goroutines. It is idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
	})
	return nil
}

// Manifest returns what the server told the agent on its last connection,
// or nil before the first.
func (a *Agent) Manifest() *sdk.AgentManifest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.manifest
}

// connectLoop keeps the control connection up: see [reconnectBackoff].
func (a *Agent) connectLoop() {
	defer a.wg.Done()
	reconnectBackoff().LoopReset(a.ctx, a.connectOnce, func(err error, in time.Duration) {
		var perm *permanentError
		level := slog.LevelWarn
		if errors.As(err, &perm) {
			level = slog.LevelError
		}
		a.logger.Log(a.ctx, level, "connection to server lost; reconnecting", "err", err, "in", in)
	})
}

// permanentError is a refusal that retrying will not fix by itself (a bad
// token); the agent still retries, slowly, in case it is fixed server-side.
type permanentError struct{ error }

// reconnectBackoff is the agent's delay between attempts to reach the
// server: 250 ms growing by 1.5 up to 2 s, each ±20 % at random, and back
// to 250 ms once a connection was made. So after an outage of any length
// the agent tries again within 2.4 s of the server answering, and a
// thousand agents do not all dial in the same instant.
func reconnectBackoff() *backoff.Backoff {
	return backoff.New(250*time.Millisecond, 2*time.Second).WithFactor(1.5).WithJitter(0.2)
}

func (a *Agent) connectOnce(connected func()) error {
	u := *a.opts.URL
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + sdk.AgentConnectPath
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	if hc := a.opts.HTTPClient; hc != nil {
		if t, ok := hc.Transport.(*http.Transport); ok {
			dialer.TLSClientConfig = t.TLSClientConfig
		}
	}
	h := http.Header{}
	h.Set(sdk.SessionTokenHeader, a.opts.Token)
	conn, resp, err := dialer.DialContext(a.ctx, u.String(), h)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return &permanentError{fmt.Errorf("server refused the agent token (401): check CODER_AGENT_TOKEN")}
		}
		return fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	defer conn.Close()
	stop := context.AfterFunc(a.ctx, func() { conn.Close() })
	defer stop()

	host, _ := os.Hostname()
	hello := sdk.AgentHello{Version: a.opts.Version, OS: runtime.GOOS, Arch: runtime.GOARCH, Hostname: host, Directory: a.opts.Directory}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteJSON(hello); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	var m sdk.AgentManifest
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.ReadJSON(&m); err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	a.mu.Lock()
	a.manifest, a.connected = &m, true
	a.mu.Unlock()
	connected()
	defer func() {
		a.mu.Lock()
		a.connected = false
		a.mu.Unlock()
	}()
	a.logger.Info("connected to server", "agent", m.AgentName, "workspace", m.WorkspaceName, "owner", m.OwnerName)
	a.startHealth(m.Apps)
	a.setupAppSockets(&m)
	a.maybeStartScript(&m)
	// Each connection resends the whole startup log the agent kept.
	startup := &startupSender{reset: true}
	sendStartup := func() error {
		for _, f := range startup.frames(a.startup) {
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := conn.WriteMessage(websocket.TextMessage, f); err != nil {
				return err
			}
		}
		return nil
	}

	// The server sends nothing after the manifest; a read that fails tells
	// us the connection is gone.
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.NextReader(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	t := time.NewTicker(sdk.AgentHeartbeatInterval)
	defer t.Stop()
	// Listening ports and app health: all of them now, then each change.
	var sent sentVersions
	if err := a.sendReports(conn, &sent); err != nil {
		conn.Close()
		<-readErr
		return err
	}
	// Lines are sent in batches: the first change starts a short wait,
	// and everything that came by then goes together.
	batch := time.NewTimer(0)
	defer batch.Stop()
	batching := true
	var sendErr error
	for sendErr == nil {
		select {
		case <-a.changed:
			if err := a.sendReports(conn, &sent); err != nil {
				sendErr = fmt.Errorf("send ports and app health: %w", err)
			}
		case <-a.startup.changed:
			if !batching {
				batching = true
				batch.Reset(startupBatchDelay)
			}
		case <-batch.C:
			batching = false
			if err := sendStartup(); err != nil {
				sendErr = fmt.Errorf("send startup log: %w", err)
			}
		case err := <-readErr:
			return fmt.Errorf("read: %w", err)
		case <-a.ctx.Done():
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "agent stopping"), time.Now().Add(time.Second))
			<-readErr
			return a.ctx.Err()
		case <-t.C:
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"heartbeat"}`)); err != nil {
				conn.Close()
				<-readErr
				return fmt.Errorf("send heartbeat: %w", err)
			}
		}
	}
	conn.Close()
	<-readErr
	return sendErr
}
