package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

// tunnelError turns the errors of a CLI tunnel into what the user sees:
// browser-only mode (the API's sdk.CodeBrowserOnly or the control
// server's tailnet.ErrBrowserOnly) prints Coder's message alone and exits
// 1.
func tunnelError(err error) error {
	if errors.Is(err, tailnet.ErrBrowserOnly) || sdk.IsBrowserOnly(err) {
		fmt.Fprintln(os.Stderr, sdk.BrowserOnlyMessage)
		return &ExitError{Code: 1}
	}
	return err
}

// resolveAgent finds the workspace and agent that "workspace[.agent]"
// (optionally "owner/workspace[.agent]") names.
func resolveAgent(ctx context.Context, c *sdk.Client, target string) (sdk.Workspace, sdk.WorkspaceAgent, error) {
	name, agentName, _ := strings.Cut(target, ".")
	ws, err := c.Workspace(ctx, name)
	if sdk.StatusCode(err) == http.StatusNotFound {
		return ws, sdk.WorkspaceAgent{}, fmt.Errorf("workspace %q not found: list yours with `coder list`", name)
	}
	if err != nil {
		return ws, sdk.WorkspaceAgent{}, err
	}
	if len(ws.Agents) == 0 {
		return ws, sdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has no agents", ws.Name)
	}
	if agentName == "" {
		if len(ws.Agents) > 1 {
			var names []string
			for _, a := range ws.Agents {
				names = append(names, ws.Name+"."+a.Name)
			}
			return ws, sdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has several agents: name one of %s", ws.Name, strings.Join(names, ", "))
		}
		return ws, ws.Agents[0], nil
	}
	for _, a := range ws.Agents {
		if a.Name == agentName {
			return ws, a, nil
		}
	}
	return ws, sdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has no agent %q", ws.Name, agentName)
}

// agentConn is the CLI's own tailnet node, connected to one agent.
type agentConn struct {
	node *tailnet.Node
	addr netip.Addr
	info sdk.AgentConnection
}

// agentOffline is the message for an agent that is not connected.
func agentOffline(ws sdk.Workspace, ag sdk.WorkspaceAgent) error {
	return fmt.Errorf("the agent %q of workspace %q is %s: start the workspace with `coder start %s`, or check the agent's logs", ag.Name, ws.Name, ag.Status, ws.Name)
}

// dialAgent resolves target, checks the agent is connected, and joins the
// tailnet as a client node that sees it. The caller must Close the result.
func dialAgent(ctx context.Context, c *sdk.Client, target string, logger *slog.Logger) (*agentConn, sdk.Workspace, error) {
	ws, ag, err := resolveAgent(ctx, c, target)
	if err != nil {
		return nil, ws, err
	}
	info, err := c.AgentConnection(ctx, ag.ID)
	if err != nil {
		return nil, ws, err
	}
	if ag.Status != sdk.AgentConnected {
		return nil, ws, agentOffline(ws, ag)
	}
	addr, err := netip.ParseAddr(info.Address)
	if err != nil {
		return nil, ws, fmt.Errorf("agent address %q: %w", info.Address, err)
	}
	// Process-wide tailscale knobs (no log upload, no port mapping): set
	// before this process's only node starts.
	bi, err := c.BuildInfo(ctx)
	if err != nil {
		return nil, ws, err
	}
	if err := tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: c.URL.String(), DERPForceWebsockets: bi.DERPForceWebsockets}); err != nil {
		return nil, ws, err
	}
	host, _ := os.Hostname()
	node, err := tailnet.NewNode(ctx, tailnet.NodeOptions{
		Hostname: "coder-cli-" + host, ControlURL: c.URL.String(), AuthKey: sdk.ClientAuthKey(c.Token), Logger: logger,
	})
	if err != nil {
		return nil, ws, fmt.Errorf("join the tailnet: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := node.Reach(wctx, addr); err != nil {
		node.Close()
		if ctx.Err() != nil {
			return nil, ws, ctx.Err()
		}
		return nil, ws, fmt.Errorf("the agent %q of workspace %q is not reachable over the tailnet (is it running? try `coder list`): %w", ag.Name, ws.Name, err)
	}
	return &agentConn{node: node, addr: addr, info: info}, ws, nil
}

func (a *agentConn) Close() error { return a.node.Close() }

// dial opens a TCP connection to port of the agent with
// [tailnet.Node.DialAgent] (waiting a moment for the agent's own services
// of an agent that has just joined).
func (a *agentConn) dial(ctx context.Context, port uint16) (net.Conn, error) {
	return a.node.DialAgent(ctx, a.addr, port, sdk.AgentServicePort(port))
}

// sshClient opens an SSH connection to the agent, pinning the host key the
// server gave.
func (a *agentConn) sshClient(ctx context.Context) (*ssh.Client, error) {
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(a.info.SSHHostKey))
	if err != nil {
		return nil, fmt.Errorf("agent host key: %w", err)
	}
	conn, err := a.dial(ctx, a.info.SSHPort)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(conn, a.addr.String(), &ssh.ClientConfig{User: "coder", HostKeyCallback: ssh.FixedHostKey(pinned)})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh to the agent: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// cliLogger is the tunnel commands' logger: tsnet at debug with
// --verbose, else nothing; always on stderr so stdout stays clean.
func cliLogger(verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return NewLogger(os.Stderr, true)
}

// pipeConns copies both ways between a and b until both directions end,
// half-closing where possible, then closes both.
func pipeConns(a, b io.ReadWriteCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(a, b)
		closeWrite(a)
	}()
	io.Copy(b, a)
	closeWrite(b)
	<-done
	a.Close()
	b.Close()
}

func closeWrite(c io.Closer) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
