package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"tailscale.com/net/speedtest"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/vt"
)

// vtScreen adapts our emulator to terminal.Screen. Replies to terminal
// queries are dropped: the browser's xterm.js answers them itself.
type vtScreen struct{ t *vt.Terminal }

// newVTScreen makes a session's emulator, its memory bounded by
// terminal.MaxScreenCells whatever size the browser asks for.
func newVTScreen(cols, rows, scrollback int) terminal.Screen {
	return vtScreen{vt.New(cols, rows, vt.Options{Scrollback: scrollback, MaxCells: terminal.MaxScreenCells})}
}

func (s vtScreen) Write(p []byte) {
	s.t.Write(p)
	s.t.TakeReplies()
}
func (s vtScreen) Resize(cols, rows int) { s.t.Resize(cols, rows) }
func (s vtScreen) Serialize() []byte     { return s.t.Serialize() }

// startTailnet joins the agent to the tailnet and serves its ports. It runs
// until the agent closes.
func (a *Agent) startTailnet() error {
	dir := a.opts.StateDir
	if dir == "" {
		d, err := os.MkdirTemp("", "coder-agent-tailnet-")
		if err != nil {
			return err
		}
		dir = d
		defer os.RemoveAll(d)
	}
	controlURL, stopRelay := startControlRelay(a.opts.URL, a.logger)
	defer stopRelay() // after the node closes
	node, err := a.newNode(a.ctx, filepath.Join(dir, "tailnet"), controlURL)
	if err != nil {
		return fmt.Errorf("join tailnet: %w", err)
	}
	defer node.Close()
	a.logger.Info("joined tailnet", "addr", node.Addr())

	ptyLn, err := node.Listen(sdk.AgentReconnectingPTYPort)
	if err != nil {
		return err
	}
	speedLn, err := node.Listen(sdk.AgentSpeedtestPort)
	if err != nil {
		return err
	}
	pty := terminal.NewServer(terminal.ServerOptions{
		Logger: a.logger, IdleTimeout: a.opts.TerminalIdleTimeout, NewScreen: newVTScreen,
		Processes: a.procs, Metrics: a.opts.TerminalMetrics, MaxSessions: a.opts.MaxTerminalSessions,
	})
	stopSSH, err := a.serveSSH(node)
	if err != nil {
		return err
	}
	defer stopSSH()
	done := make(chan error, 2)
	go func() { done <- pty.Serve(ptyLn) }()
	go func() { done <- speedtest.Serve(speedLn) }()
	<-a.ctx.Done()
	pty.Close()
	speedLn.Close()
	ptyLn.Close()
	for range 2 {
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, terminal.ErrServerClosed) && a.ctx.Err() == nil {
			a.logger.Warn("tailnet service stopped", "err", err)
		}
	}
	return nil
}

func (a *Agent) newNode(ctx context.Context, dir, controlURL string) (*tailnet.Node, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return tailnet.NewNode(ctx, tailnet.NodeOptions{
		Dir: dir, Hostname: host, ControlURL: controlURL,
		AuthKey: sdk.AgentAuthKey(a.opts.Token), Logger: a.logger.With("component", "agent_node"),
		TCPBufferMax: a.opts.TCPBufferMax,
	})
}

// tailnetLoop keeps the agent on the tailnet: a failed join (the server is
// down, say) is retried with the reconnect backoff until the agent
// closes. Once joined, the node itself follows the server across restarts.
func (a *Agent) tailnetLoop() {
	defer a.wg.Done()
	reconnectBackoff().Loop(a.ctx, 0, a.startTailnet, func(err error, in time.Duration) {
		a.logger.Warn("tailnet: retrying", "err", err, "in", in)
	})
}
