package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

const browserOnlyMsg = "Non-browser connections are disabled for your deployment."

// TestAgentConnection: the owner gets the agent's address and host key, a
// CLI node dials SSH with that key pinned and runs a command; another user
// gets 404.
func TestAgentConnection(t *testing.T) {
	e := newTermEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ag := e.ws.Agents[0]
	var info sdk.AgentConnection
	if err := e.ts.Owner.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/"+ag.ID+"/connection", nil, &info); err != nil {
		t.Fatal(err)
	}
	want, _ := ssh.NewPublicKey(agent.SSHHostKey(ag.Token).Public())
	if info.SSHHostKey != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(want))) {
		t.Fatalf("host key %q is not the agent's %q", info.SSHHostKey, ssh.MarshalAuthorizedKey(want))
	}
	if info.Address != tailnet.AddrOf(tailnet.KindAgent, ag.ID).String() || info.SSHPort != sdk.AgentSSHPort || info.AgentID != ag.ID {
		t.Fatalf("connection info %+v", info)
	}

	other := e.ts.member(t, "mallory")
	if err := other.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/"+ag.ID+"/connection", nil, nil); sdk.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("another user's request: %v, want 404", err)
	}

	node, err := tailnet.NewNode(ctx, tailnet.NodeOptions{Dir: t.TempDir(), Hostname: "cli", ControlURL: e.ts.URL.String(), AuthKey: sdk.ClientAuthKey(e.ts.Owner.Token), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	addr := netip.MustParseAddr(info.Address)
	if err := node.WaitForPeer(ctx, addr); err != nil {
		t.Fatal(err)
	}
	conn, err := node.Dial(ctx, addr, info.SSHPort)
	if err != nil {
		t.Fatal(err)
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(info.SSHHostKey))
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, "coder", &ssh.ClientConfig{User: "coder", HostKeyCallback: ssh.FixedHostKey(pinned)})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo over-tailnet")
	if err != nil || !bytes.Equal(out, []byte("over-tailnet\n")) {
		t.Fatalf("ssh over the tailnet: %q %v", out, err)
	}
}

// TestAgentConnectionBrowserOnly: in browser-only mode the API answers 409
// with Coder's message and the code sdk.CodeBrowserOnly, and a client
// node's registration with a valid API key is refused with the same
// message, which NewNode reports as tailnet.ErrBrowserOnly.
func TestAgentConnectionBrowserOnly(t *testing.T) {
	e := newTermEnv(t, func(o *testOptions) { o.browserOnly = true })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := e.ts.Owner.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/"+e.ws.Agents[0].ID+"/connection", nil, nil)
	var apiErr *sdk.Error
	if sdk.StatusCode(err) != http.StatusConflict || !errors.As(err, &apiErr) || apiErr.Message != browserOnlyMsg {
		t.Fatalf("connection in browser-only mode: %v, want 409 %q", err, browserOnlyMsg)
	}
	if apiErr.Code != sdk.CodeBrowserOnly || !sdk.IsBrowserOnly(err) {
		t.Fatalf("connection in browser-only mode: code %q, want %q", apiErr.Code, sdk.CodeBrowserOnly)
	}
	if _, err := e.ts.Owner.Workspace(ctx, e.ws.Name); err != nil || sdk.IsBrowserOnly(err) {
		t.Fatalf("workspace API in browser-only mode: %v", err)
	}
	_, err = tailnet.NewNode(ctx, tailnet.NodeOptions{Dir: t.TempDir(), ControlURL: e.ts.URL.String(), AuthKey: sdk.ClientAuthKey(e.ts.Owner.Token), Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), browserOnlyMsg) || !errors.Is(err, tailnet.ErrBrowserOnly) {
		t.Fatalf("client node registration in browser-only mode: %v, want tailnet.ErrBrowserOnly", err)
	}
}
