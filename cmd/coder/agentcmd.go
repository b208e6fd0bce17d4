package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/cli"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

type agentOptions struct {
	URL         urlValue
	Token       stringValue
	TokenFile   stringValue
	Directory   stringValue
	Verbose     boolValue
	IdleTimeout durationValue
	TCPBuffer   sizeValue
	MaxSessions intValue
	LogDir      stringValue
}

func newAgentCmd() *cobra.Command {
	var o agentOptions
	opts := optionSet{
		{Flag: "agent-url", Env: "CODER_AGENT_URL", Value: &o.URL, Description: "URL of the coder server the agent connects to."},
		{Flag: "agent-token", Env: "CODER_AGENT_TOKEN", Value: &o.Token, Secret: true, Description: "The agent's token, from its workspace."},
		{Flag: "agent-token-file", Env: "CODER_AGENT_TOKEN_FILE", Value: &o.TokenFile,
			Description: "File that holds the agent's token, read at start (instead of --agent-token, which other users may see in the process's environment)."},
		{Flag: "directory", Env: "CODER_AGENT_DIRECTORY", Value: &o.Directory, Description: "The workspace's working directory (default: the current directory)."},
		{Flag: "verbose", Short: "v", Env: "CODER_AGENT_VERBOSE", Value: &o.Verbose, Description: "Log debug messages."},
		{Flag: "terminal-idle-timeout", Env: "CODER_AGENT_TERMINAL_IDLE_TIMEOUT", Default: "5m", Value: &o.IdleTimeout,
			Description: "End a web terminal session after this long with nobody attached."},
		{Flag: "tailnet-tcp-buffer", Env: "CODER_AGENT_TAILNET_TCP_BUFFER", Default: "2MiB", Value: &o.TCPBuffer,
			Description: "Memory budget of each tailnet TCP connection (its receive and send buffers each; 0 keeps tailscale's 8 MiB)."},
		{Flag: "max-terminal-sessions", Env: "CODER_AGENT_MAX_TERMINAL_SESSIONS", Default: "32", Value: &o.MaxSessions,
			Description: "Most web terminal sessions the agent keeps at once; opening one more is refused until one ends (reattaching to a session does not count)."},
		{Flag: "log-dir", Env: "CODER_AGENT_LOG_DIR", Value: &o.LogDir,
			Description: "Directory of the startup script's log, coder-startup-script-<agent id>.log (default: the system's temporary directory)."},
	}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the workspace agent (inside a workspace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.URL.URL() == nil {
				return cli.MissingFlag("agent-url", "CODER_AGENT_URL")
			}
			token, err := agentToken(string(o.Token), string(o.TokenFile))
			if err != nil {
				return err
			}
			if o.MaxSessions < 1 {
				return fmt.Errorf("invalid value %d for --max-terminal-sessions / $CODER_AGENT_MAX_TERMINAL_SESSIONS: must be at least 1 (see coder agent --help)", int(o.MaxSessions))
			}
			logger := newLogger(cmd.ErrOrStderr(), bool(o.Verbose))
			// Tailscale's knobs are process-wide: set before the agent's node
			// starts (no log upload, no port mapping, DERP over plain HTTP for
			// an http:// server).
			if err := tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: o.URL.URL().String(),
				DERPForceWebsockets: serverForcesWebsockets(cmd.Context(), o.URL.URL(), logger)}); err != nil {
				return err
			}
			a, err := agent.New(agent.Options{URL: o.URL.URL(), Token: token, Logger: logger, Version: version, Directory: string(o.Directory),
				TerminalIdleTimeout: time.Duration(o.IdleTimeout), TCPBufferMax: int(o.TCPBuffer), MaxTerminalSessions: int(o.MaxSessions),
				LogDir: string(o.LogDir)})
			if err != nil {
				return err
			}
			logger.Info("agent starting", "url", o.URL.URL().Redacted(), "version", version)
			go tailnet.NewTrimmer(tailnet.TrimOptions{Logger: logger.With("component", "memory")}).Run(cmd.Context())
			<-cmd.Context().Done()
			logger.Info("agent stopping")
			return a.Close()
		},
	}
	opts.Register(cmd)
	return cmd
}

// agentToken returns the token given directly or read from file (trimmed);
// exactly one of the two must be set.
func agentToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", errors.New("both --agent-token ($CODER_AGENT_TOKEN) and --agent-token-file ($CODER_AGENT_TOKEN_FILE) are set: give one")
	case token != "":
		return token, nil
	case file == "":
		return "", errors.New("--agent-token is required: set it or $CODER_AGENT_TOKEN, or name a file that holds it with --agent-token-file ($CODER_AGENT_TOKEN_FILE)")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the agent token from --agent-token-file ($CODER_AGENT_TOKEN_FILE): %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("the agent token file %s ($CODER_AGENT_TOKEN_FILE) is empty: write the workspace agent's token into it", file)
	}
	return t, nil
}

// serverForcesWebsockets asks the server whether DERP must go over
// websockets. Tailscale's knobs are set once per process, so the agent asks
// before its node starts; a server that does not answer within 5 s is taken
// to say no (the agent logs it).
func serverForcesWebsockets(ctx context.Context, u *url.URL, logger *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	bi, err := (&sdk.Client{URL: u}).BuildInfo(ctx)
	if err != nil {
		logger.Warn("could not ask the server whether DERP needs websockets; assuming not", "err", err)
		return false
	}
	return bi.DERPForceWebsockets
}
