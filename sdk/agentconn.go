package sdk

import (
	"crypto/ed25519"
	"crypto/sha256"
)

// Tailnet auth keys name the kind of node before the secret, so that the
// server never has to guess which kind registers.
const (
	AuthKeyPrefixAgent  = "agent:"
	AuthKeyPrefixClient = "client:"
	AuthKeyPrefixServer = "server:"
)

// AgentAuthKey is the tailnet auth key of an agent with the given token.
func AgentAuthKey(token string) string { return AuthKeyPrefixAgent + token }

// ClientAuthKey is the tailnet auth key of a CLI with the given API key.
func ClientAuthKey(apiKey string) string { return AuthKeyPrefixClient + apiKey }

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

// sshHostKeyLabel separates the host key derivation from other uses of
// the token hash.
const sshHostKeyLabel = "coder agent ssh host key v1\x00"

// AgentSSHHostKey derives an agent's SSH host key from the SHA-256 of its
// token, which the server stores: the server can tell a CLI which key to
// pin without the agent reporting it, and the key stays the same across
// agent restarts (and changes when the token is regenerated). Whoever can
// read the server's database can derive it too.
func AgentSSHHostKey(tokenHash []byte) ed25519.PrivateKey {
	seed := sha256.Sum256(append([]byte(sshHostKeyLabel), tokenHash...))
	return ed25519.NewKeyFromSeed(seed[:])
}
