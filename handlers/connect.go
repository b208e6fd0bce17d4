package handlers

import (
	"net/http"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

// errBrowserOnly is the API's answer to a CLI tunnel in browser-only mode,
// with Coder's wording and the code the CLI branches on.
var errBrowserOnly = &HTTPError{Code: http.StatusConflict, Msg: sdk.BrowserOnlyMessage, APICode: sdk.CodeBrowserOnly}

// agentSSHHostKey is the public half of the agent's host key, which is
// derived from the token hash (sdk.AgentSSHHostKey), so the server knows it
// without the agent reporting it.
func agentSSHHostKey(tokenHash []byte) (ssh.PublicKey, error) {
	return ssh.NewPublicKey(sdk.AgentSSHHostKey(tokenHash).Public())
}

// serveAgentConnection tells the workspace's owner how to reach an agent
// from the CLI. In browser-only mode it answers 409.
func (a *API) serveAgentConnection(w http.ResponseWriter, r *http.Request) error {
	ag, _, err := a.agentForUser(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if a.opts.BrowserOnly {
		return errBrowserOnly
	}
	if a.tailnet == nil {
		return &HTTPError{Code: http.StatusServiceUnavailable, Msg: "The tailnet is off on this server, so the CLI cannot reach agents."}
	}
	pub, err := agentSSHHostKey(ag.TokenHash)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sdk.AgentConnection{
		AgentID:    ag.ID,
		Address:    tailnet.AddrOf(tailnet.KindAgent, ag.ID).String(),
		SSHPort:    sdk.AgentSSHPort,
		SSHHostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
	})
	return nil
}
