package handlers

import (
	"crypto/ed25519"
	"crypto/sha256"
	"net/http"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

// AgentConnection is what GET /api/v2/workspaceagents/{id}/connection
// gives a CLI: where the agent is on the tailnet and which SSH host key to
// pin.
type AgentConnection struct {
	AgentID string `json:"agent_id"`
	// Address is the agent's tailnet address.
	Address string `json:"address"`
	// SSHPort is the agent's SSH port on the tailnet.
	SSHPort uint16 `json:"ssh_port"`
	// SSHHostKey is the agent's host public key in authorized_keys format
	// ("ssh-ed25519 AAAA...").
	SSHHostKey string `json:"ssh_host_key"`
}

// errBrowserOnly is the API's answer to a CLI tunnel in browser-only mode,
// with Coder's wording.
var errBrowserOnly = &HTTPError{Code: http.StatusConflict, Msg: tailnet.ErrBrowserOnly.Error()}

// sshHostKeyLabel must match agent.SSHHostKeyFromTokenHash: the host key
// is derived from the token hash, so the server knows it without the
// agent reporting it (a test checks both derivations agree).
const sshHostKeyLabel = "coder agent ssh host key v1\x00"

func agentSSHHostKey(tokenHash []byte) (ssh.PublicKey, error) {
	seed := sha256.Sum256(append([]byte(sshHostKeyLabel), tokenHash...))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return ssh.NewPublicKey(priv.Public())
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
	writeJSON(w, http.StatusOK, AgentConnection{
		AgentID:    ag.ID,
		Address:    tailnet.AddrOf(tailnet.KindAgent, ag.ID).String(),
		SSHPort:    sdk.AgentSSHPort,
		SSHHostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
	})
	return nil
}
