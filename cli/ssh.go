package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"

	"github.com/gatewaydev/coder/sdk"
)

// stringsValue is a repeatable flag; each use (or a comma-separated list)
// adds values.
type stringsValue []string

func (s *stringsValue) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
func (s *stringsValue) String() string { return "[" + strings.Join(*s, ",") + "]" }
func (s *stringsValue) Type() string   { return "strings" }

type sshOptions struct {
	Stdio        BoolValue
	ForwardAgent BoolValue
	Remote       stringsValue
	Local        stringsValue
	Verbose      BoolValue
}

func newSSHCmd() *cobra.Command {
	var o sshOptions
	cmd := apiCmd(&cobra.Command{
		Use:   "ssh <workspace>[.<agent>] [-- command...]",
		Short: "Start a shell or run a command in a workspace over the tailnet",
		Long: "Connects to the workspace's agent over the tailnet (no open port 22, no SSH keys: your session token\n" +
			"authenticates you) and opens a shell, or runs the command given after the workspace name.\n" +
			"The exit code of the command is the exit code of coder ssh.",
		Args: cobra.MinimumNArgs(1),
	}, false, func(ctx context.Context, c *sdk.Client, _ *clientOptions, args []string) error {
		command := args[1:]
		if len(command) > 0 && command[0] == "--" {
			command = command[1:] // flags stop at the workspace name, so "--" arrives here
		}
		return tunnelError(runSSH(ctx, c, &o, args[0], command))
	})
	cmd.Flags().SetInterspersed(false)
	OptionSet{
		{Flag: "stdio", Env: "CODER_SSH_STDIO", Value: &o.Stdio, Description: "Pipe the SSH connection to stdin and stdout (for ssh's ProxyCommand); prints nothing else on stdout."},
		{Flag: "forward-agent", Short: "A", Env: "CODER_SSH_FORWARD_AGENT", Value: &o.ForwardAgent, Description: "Forward your SSH agent ($SSH_AUTH_SOCK) to the workspace."},
		{Flag: "remote-forward", Short: "R", Env: "CODER_SSH_REMOTE_FORWARD", Value: &o.Remote, Description: "Forward a port of the workspace to your machine: [bind:]REMOTE_PORT:HOST:LOCAL_PORT (repeatable)."},
		{Flag: "local-forward", Short: "L", Env: "CODER_SSH_LOCAL_FORWARD", Value: &o.Local, Description: "Forward a port of your machine to the workspace: [bind:]LOCAL_PORT:HOST:REMOTE_PORT (repeatable)."},
		{Flag: "verbose", Short: "v", Env: "CODER_SSH_VERBOSE", Value: &o.Verbose, Description: "Log the tailnet connection to stderr."},
	}.Register(cmd)
	return cmd
}

func runSSH(ctx context.Context, c *sdk.Client, o *sshOptions, target string, command []string) error {
	ac, _, err := dialAgent(ctx, c, target, cliLogger(bool(o.Verbose)))
	if err != nil {
		return err
	}
	defer ac.Close()
	if o.Stdio {
		conn, err := ac.dial(ctx, ac.info.SSHPort)
		if err != nil {
			return err
		}
		return pipeStdio(ctx, conn)
	}
	client, err := ac.sshClient(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	for _, spec := range o.Local {
		if err := localForward(client, spec); err != nil {
			return err
		}
	}
	for _, spec := range o.Remote {
		if err := remoteForward(client, spec); err != nil {
			return err
		}
	}
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	if o.ForwardAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			fmt.Fprintln(os.Stderr, "coder ssh: -A: SSH_AUTH_SOCK is not set; no agent to forward")
		} else if err := sshagent.ForwardToRemote(client, sock); err != nil {
			return fmt.Errorf("forward agent: %w", err)
		} else if err := sshagent.RequestAgentForwarding(sess); err != nil {
			return fmt.Errorf("forward agent: %w", err)
		}
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LC_") {
			k, v, _ := strings.Cut(kv, "=")
			sess.Setenv(k, v) // best effort, like OpenSSH's SendEnv
		}
	}
	stdinFd, stdoutFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	tty := term.IsTerminal(stdinFd) && term.IsTerminal(stdoutFd)
	if tty {
		w, h, err := term.GetSize(stdoutFd)
		if err != nil {
			w, h = 80, 24
		}
		termName := os.Getenv("TERM")
		if termName == "" {
			termName = "xterm-256color"
		}
		if err := sess.RequestPty(termName, h, w, ssh.TerminalModes{}); err != nil {
			return fmt.Errorf("request a terminal: %w", err)
		}
		state, err := term.MakeRaw(stdinFd)
		if err != nil {
			return err
		}
		defer term.Restore(stdinFd, state)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, h, err := term.GetSize(stdoutFd); err == nil {
					sess.WindowChange(h, w)
				}
			}
		}()
	}
	// Copy stdin ourselves: the session's own copy would keep Wait
	// waiting for stdin after the remote command exited.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return err
	}
	go func() {
		io.Copy(stdin, os.Stdin)
		stdin.Close()
	}()
	sess.Stdout, sess.Stderr = os.Stdout, os.Stderr
	if len(command) > 0 {
		err = sess.Start(strings.Join(command, " "))
	} else {
		err = sess.Shell()
	}
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		return &ExitError{Code: 130}
	}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &ExitError{Code: ee.ExitStatus()}
	case errors.As(err, &missing):
		return errors.New("the connection to the workspace closed without an exit status")
	}
	return err
}

// pipeStdio copies between the connection and stdin/stdout until the
// connection ends.
func pipeStdio(ctx context.Context, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go func() {
		io.Copy(conn, os.Stdin)
		closeWrite(conn)
	}()
	_, err := io.Copy(os.Stdout, conn)
	conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// parseForward parses OpenSSH's [bind:]port:host:hostport.
func parseForward(spec string) (bind string, port int, target string, err error) {
	parts := splitForward(spec)
	switch len(parts) {
	case 3:
		bind = "127.0.0.1"
	case 4:
		bind, parts = parts[0], parts[1:]
		if bind == "" || bind == "*" {
			bind = ""
		}
	default:
		return "", 0, "", fmt.Errorf("forward %q: want [bind:]PORT:HOST:HOSTPORT", spec)
	}
	port, err = strconv.Atoi(parts[0])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, "", fmt.Errorf("forward %q: %q is not a port", spec, parts[0])
	}
	hp, err := strconv.Atoi(parts[2])
	if err != nil || hp <= 0 || hp > 65535 {
		return "", 0, "", fmt.Errorf("forward %q: %q is not a port", spec, parts[2])
	}
	return bind, port, net.JoinHostPort(parts[1], parts[2]), nil
}

// splitForward splits on colons outside [brackets] (IPv6 addresses).
func splitForward(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				parts = append(parts, strings.Trim(s[start:i], "[]"))
				start = i + 1
			}
		}
	}
	return append(parts, strings.Trim(s[start:], "[]"))
}

// localForward listens on this machine and forwards each connection to
// HOST:HOSTPORT as seen from the workspace (ssh -L).
func localForward(client *ssh.Client, spec string) error {
	bind, port, target, err := parseForward(spec)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
	if err != nil {
		return busyPortError(err, bind, port, "-L")
	}
	go func() {
		<-closedChan(client)
		ln.Close()
	}()
	go func() {
		for {
			lc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				rc, err := client.Dial("tcp", target)
				if err != nil {
					fmt.Fprintf(os.Stderr, "coder ssh: -L %s: %v\n", spec, err)
					lc.Close()
					return
				}
				pipeConns(lc, rc)
			}()
		}
	}()
	return nil
}

// remoteForward listens in the workspace and forwards each connection to
// HOST:HOSTPORT as seen from this machine (ssh -R).
func remoteForward(client *ssh.Client, spec string) error {
	bind, port, target, err := parseForward(spec)
	if err != nil {
		return err
	}
	if bind == "" {
		bind = "0.0.0.0"
	}
	ln, err := client.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("-R %s: the workspace refused to listen on port %d: %w", spec, port, err)
	}
	go func() {
		for {
			rc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				lc, err := net.Dial("tcp", target)
				if err != nil {
					fmt.Fprintf(os.Stderr, "coder ssh: -R %s: %v\n", spec, err)
					rc.Close()
					return
				}
				pipeConns(rc, lc)
			}()
		}
	}()
	return nil
}

func closedChan(client *ssh.Client) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		client.Wait()
		close(ch)
	}()
	return ch
}

// busyPortError explains a local listen failure.
func busyPortError(err error, bind string, port int, flag string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		if bind == "" {
			bind = "*"
		}
		return fmt.Errorf("%s: local port %d on %s is already in use: pick another local port", flag, port, bind)
	}
	return fmt.Errorf("%s: listen on %s: %w", flag, net.JoinHostPort(bind, strconv.Itoa(port)), err)
}
