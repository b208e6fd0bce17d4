package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/gatewaydev/coder/internal/userproc"
	"github.com/gatewaydev/coder/sdk"
)

// SSHHostKeyFromTokenHash derives the agent's SSH host key from the
// SHA-256 of its token, which the server stores: the server can tell a CLI
// which key to pin without the agent reporting it, and the key stays the
// same across agent restarts (and changes when the token is regenerated).
func SSHHostKeyFromTokenHash(tokenHash []byte) ed25519.PrivateKey {
	return sdk.AgentSSHHostKey(tokenHash)
}

// SSHHostKey is the SSH host key of the agent with token.
func SSHHostKey(token string) ed25519.PrivateKey {
	h := sha256.Sum256([]byte(token))
	return SSHHostKeyFromTokenHash(h[:])
}

// SSHOptions configure [NewSSHServer].
type SSHOptions struct {
	// HostKey is the server's host key. Required.
	HostKey ed25519.PrivateKey
	// Processes builds the shells and commands of sessions; the agent
	// passes the builder its web terminal uses, so both start the same
	// shell. Nil means userproc.New with Dir and Env.
	Processes *userproc.Builder
	// Dir is where shells, commands and SFTP start; empty means the
	// user's home, else the process's working directory.
	Dir string
	// Env is the base environment of sessions; nil means the agent's own,
	// without its CODER_AGENT_* variables (the token stays secret).
	Env []string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// SSHServer is the agent's SSH server: shells with or without a PTY,
// commands, the SFTP subsystem, local and remote port forwarding and agent
// forwarding. It does no client authentication: only the tailnet reaches
// it, and the coordination server lets only the workspace's owner (and the
// server) see the agent.
type SSHServer struct {
	cfg    *ssh.ServerConfig
	procs  *userproc.Builder
	logger *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
}

// NewSSHServer builds a server; serve it with [SSHServer.Serve] and stop it
// with [SSHServer.Close].
func NewSSHServer(o SSHOptions) (*SSHServer, error) {
	if o.HostKey == nil {
		return nil, errors.New("agent: ssh server: a host key is required")
	}
	signer, err := ssh.NewSignerFromKey(o.HostKey)
	if err != nil {
		return nil, fmt.Errorf("agent: ssh host key: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Processes == nil {
		o.Processes = userproc.New(userproc.Options{Dir: o.Dir, Env: o.Env})
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: "SSH-2.0-Coder"}
	cfg.AddHostKey(signer)
	ctx, cancel := context.WithCancel(context.Background())
	return &SSHServer{
		cfg: cfg, procs: o.Processes, logger: o.Logger.With("component", "agent_ssh"),
		ctx: ctx, cancel: cancel, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{},
	}, nil
}

// Serve accepts SSH connections on ln until ln or the server is closed. It
// returns net.ErrClosed after Close.
func (s *SSHServer) Serve(ln net.Listener) error {
	if !s.track(ln, nil) {
		ln.Close()
		return net.ErrClosed
	}
	defer s.untrack(ln, nil)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return net.ErrClosed
			}
			return err
		}
		if !s.track(nil, c) {
			c.Close()
			return net.ErrClosed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(nil, c)
			s.serveConn(c)
		}()
	}
}

func (s *SSHServer) track(ln net.Listener, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if ln != nil {
		s.listeners[ln] = struct{}{}
	}
	if c != nil {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *SSHServer) untrack(ln net.Listener, c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, ln)
	delete(s.conns, c)
}

// Close stops accepting, closes every connection (ending their sessions)
// and waits for the server's goroutines. It is idempotent.
func (s *SSHServer) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.cancel()
		for ln := range s.listeners {
			ln.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// serveConn runs one SSH connection until it ends.
func (s *SSHServer) serveConn(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		s.logger.Debug("ssh handshake", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	defer conn.Close()
	c := &sshConn{srv: s, conn: conn, logger: s.logger.With("remote", nc.RemoteAddr().String()), forwards: map[string]net.Listener{}}
	defer c.closeForwards()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.globalRequests(reqs)
	}()
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.session(nch)
			}()
		case "direct-tcpip":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.directTCPIP(nch)
			}()
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	c.closeForwards()
}

// sshConn is the state of one SSH connection.
type sshConn struct {
	srv    *SSHServer
	conn   *ssh.ServerConn
	logger *slog.Logger
	wg     sync.WaitGroup // forwarded-tcpip goroutines

	mu       sync.Mutex
	forwards map[string]net.Listener // remote forwards by "addr:port"
}

// globalRequests serves tcpip-forward and cancel-tcpip-forward.
func (c *sshConn) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			if err := ssh.Unmarshal(req.Payload, &m); err != nil {
				req.Reply(false, nil)
				continue
			}
			port, err := c.remoteForward(m.Addr, m.Port)
			if err != nil {
				c.logger.Debug("remote forward", "addr", m.Addr, "port", m.Port, "err", err)
				req.Reply(false, nil)
				continue
			}
			var reply []byte
			if m.Port == 0 {
				reply = ssh.Marshal(struct{ Port uint32 }{port})
			}
			req.Reply(true, reply)
		case "cancel-tcpip-forward":
			var m struct {
				Addr string
				Port uint32
			}
			if err := ssh.Unmarshal(req.Payload, &m); err != nil {
				req.Reply(false, nil)
				continue
			}
			k := net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
			c.mu.Lock()
			ln := c.forwards[k]
			delete(c.forwards, k)
			c.mu.Unlock()
			if ln != nil {
				ln.Close()
			}
			req.Reply(ln != nil, nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// bindHost maps an SSH bind address to a listen host: empty and
// "localhost" are loopback only, "*" is every address.
func bindHost(addr string) string {
	switch addr {
	case "", "localhost":
		return "127.0.0.1"
	case "*":
		return ""
	}
	return addr
}

// remoteForward listens on addr:port in the workspace and opens a
// forwarded-tcpip channel to the client for each connection.
func (c *sshConn) remoteForward(addr string, port uint32) (uint32, error) {
	if port > 0xffff {
		return 0, fmt.Errorf("port %d out of range", port)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bindHost(addr), strconv.Itoa(int(port))))
	if err != nil {
		return 0, err
	}
	bound := uint32(ln.Addr().(*net.TCPAddr).Port)
	c.mu.Lock()
	c.forwards[net.JoinHostPort(addr, strconv.Itoa(int(port)))] = ln
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			lc, err := ln.Accept()
			if err != nil {
				return
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer lc.Close()
				ra := lc.RemoteAddr().(*net.TCPAddr)
				payload := ssh.Marshal(struct {
					Addr       string
					Port       uint32
					OriginAddr string
					OriginPort uint32
				}{addr, bound, ra.IP.String(), uint32(ra.Port)})
				ch, reqs, err := c.conn.OpenChannel("forwarded-tcpip", payload)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				pipeChannel(ch, lc)
			}()
		}
	}()
	return bound, nil
}

// closeForwards closes every remote forward listener and waits for their
// goroutines.
func (c *sshConn) closeForwards() {
	c.mu.Lock()
	for k, ln := range c.forwards {
		ln.Close()
		delete(c.forwards, k)
	}
	c.mu.Unlock()
	c.conn.Close()
	c.wg.Wait()
}

// directTCPIP serves a local forward (ssh -L): it dials the requested
// address from the workspace.
func (c *sshConn) directTCPIP(nch ssh.NewChannel) {
	var m struct {
		Host       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &m); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	tc, err := d.DialContext(c.srv.ctx, "tcp", net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer tc.Close()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	pipeChannel(ch, tc)
}

// pipeChannel copies both ways between an SSH channel and a TCP
// connection, half-closing each side when the other ends, and closes both.
func pipeChannel(ch ssh.Channel, tc net.Conn) {
	defer ch.Close()
	defer tc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(tc, ch)
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	io.Copy(ch, tc)
	ch.CloseWrite()
	<-done
}

// session is one "session" channel: a shell, a command or a subsystem.
type session struct {
	c      *sshConn
	ch     ssh.Channel
	env    []string
	term   string
	cols   uint32
	rows   uint32
	hasPTY bool

	agentFwd bool

	mu      sync.Mutex
	started bool
	ptmx    *os.File
	proc    *os.Process
	waited  chan struct{} // closed when proc has been waited for
	pending []os.Signal   // signals that arrived before proc was set
}

func (c *sshConn) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	s := &session{c: c, ch: ch}
	var wg sync.WaitGroup
	defer wg.Wait()
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			var m struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				s.mu.Lock()
				s.env = append(s.env, m.Name+"="+m.Value)
				s.mu.Unlock()
				ok = true
			}
		case "pty-req":
			var m struct {
				Term             string
				Cols, Rows, W, H uint32
				Modes            string
			}
			if ssh.Unmarshal(req.Payload, &m) == nil {
				s.mu.Lock()
				s.term, s.cols, s.rows, s.hasPTY = m.Term, m.Cols, m.Rows, true
				s.mu.Unlock()
				ok = true
			}
		case "window-change":
			var m struct{ Cols, Rows, W, H uint32 }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				s.resize(m.Cols, m.Rows)
				ok = true
			}
		case "auth-agent-req@openssh.com":
			s.mu.Lock()
			s.agentFwd = true
			s.mu.Unlock()
			ok = true
		case "signal":
			var m struct{ Name string }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				ok = s.signal(m.Name)
			}
		case "shell", "exec", "subsystem":
			s.mu.Lock()
			already := s.started
			s.started = true
			s.mu.Unlock()
			if already {
				break
			}
			var cmd, subsystem string
			switch req.Type {
			case "exec":
				var m struct{ Command string }
				if ssh.Unmarshal(req.Payload, &m) != nil {
					break
				}
				cmd = m.Command
			case "subsystem":
				var m struct{ Name string }
				if ssh.Unmarshal(req.Payload, &m) != nil || m.Name != "sftp" {
					break
				}
				subsystem = m.Name
			}
			if req.Type != "shell" && cmd == "" && subsystem == "" {
				break
			}
			ok = true
			req.Reply(true, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ch.Close()
				var status exitStatus
				if subsystem != "" {
					status = s.sftp()
				} else {
					status = s.run(cmd)
				}
				status.send(ch)
			}()
			continue
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
	// The channel is gone while its process may still run (the client
	// left, or the server is closing): hang it up as sshd does, so that
	// nothing waits on it.
	s.hangup()
}

// hangupGrace is how long a hung-up session's processes get before they
// are killed.
const hangupGrace = 2 * time.Second

// hangup ends the session's process group with [userproc.Hangup]: SIGHUP,
// and SIGKILL after hangupGrace if it still runs.
func (s *session) hangup() {
	s.mu.Lock()
	proc, waited := s.proc, s.waited
	s.mu.Unlock()
	if proc == nil {
		return
	}
	userproc.Hangup(proc.Pid, hangupGrace, waited)
}

// exitStatus is how a session's process ended: a code, or a signal.
type exitStatus struct {
	code   int
	signal string
}

func (e exitStatus) send(ch ssh.Channel) {
	if e.signal != "" {
		ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Msg, Lang  string
		}{e.signal, false, "", ""}))
	} else {
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(e.code)}))
	}
	ch.CloseWrite()
}

func (s *session) resize(cols, rows uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cols, s.rows = cols, rows
	if s.ptmx != nil {
		pty.Setsize(s.ptmx, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
	}
}

// sshSignals maps SSH signal names (RFC 4254 6.10) to signals.
var sshSignals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

func signalName(sig syscall.Signal) string {
	for n, s := range sshSignals {
		if s == sig {
			return n
		}
	}
	return "TERM"
}

func (s *session) signal(name string) bool {
	sig, ok := sshSignals[name]
	if !ok {
		return false
	}
	s.mu.Lock()
	p := s.proc
	if p == nil && s.started {
		// The process is starting: its output may already have reached
		// the client, which may signal it at once. Deliver it on start.
		s.pending = append(s.pending, sig)
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	if p == nil {
		return false
	}
	return p.Signal(sig) == nil
}

// setProcLocked records the session's process and delivers the signals
// that arrived while it started.
func (s *session) setProcLocked(p *os.Process) {
	s.proc, s.waited = p, make(chan struct{})
	for _, sig := range s.pending {
		p.Signal(sig)
	}
	s.pending = nil
}

// environ is what the session adds to the user's environment: SSH_*,
// TERM with a PTY, and the client's env requests (which win).
func (s *session) environ() []string {
	ra, la := s.c.conn.RemoteAddr(), s.c.conn.LocalAddr()
	rh, rp, _ := net.SplitHostPort(ra.String())
	lh, lp, _ := net.SplitHostPort(la.String())
	env := []string{fmt.Sprintf("SSH_CLIENT=%s %s %s", rh, rp, lp), fmt.Sprintf("SSH_CONNECTION=%s %s %s %s", rh, rp, lh, lp)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hasPTY {
		env = append(env, "TERM="+s.term)
	}
	return append(env, s.env...)
}

// run runs a shell (cmd empty) or a command and returns how it ended.
func (s *session) run(command string) exitStatus {
	env := s.environ()
	s.mu.Lock()
	fwd := s.agentFwd
	s.mu.Unlock()
	if fwd {
		sock, stop, err := s.c.forwardAgent()
		if err != nil {
			s.c.logger.Debug("agent forwarding", "err", err)
		} else {
			defer stop()
			env = append(env, "SSH_AUTH_SOCK="+sock)
		}
	}
	c := s.c.srv.procs.Command(command, env...)
	s.mu.Lock()
	hasPTY, cols, rows := s.hasPTY, s.cols, s.rows
	s.mu.Unlock()
	if hasPTY {
		return s.runPTY(c, cols, rows)
	}
	return s.runPipes(c)
}

func (s *session) runPTY(c *exec.Cmd, cols, rows uint32) exitStatus {
	ptmx, err := userproc.StartPTY(c, uint16(cols), uint16(rows))
	if err != nil {
		fmt.Fprintf(s.ch.Stderr(), "start %s: %v\r\n", c.Path, err)
		return exitStatus{code: 127}
	}
	defer ptmx.Close()
	s.mu.Lock()
	s.ptmx = ptmx
	s.setProcLocked(c.Process)
	// A window change may have arrived while the process started.
	if s.cols != cols || s.rows != rows {
		pty.Setsize(ptmx, &pty.Winsize{Cols: uint16(s.cols), Rows: uint16(s.rows)})
	}
	s.mu.Unlock()
	go io.Copy(ptmx, s.ch) // ends when the channel or the pty closes
	out := make(chan struct{})
	go func() {
		defer close(out)
		io.Copy(s.ch, ptmx) // ends with EIO once the last holder of the tty exits
	}()
	err = c.Wait()
	s.mu.Lock()
	close(s.waited)
	s.mu.Unlock()
	// Let the output drain; a background process that keeps the tty open
	// must not keep the session alive.
	select {
	case <-out:
	case <-time.After(time.Second):
	}
	s.mu.Lock()
	s.ptmx, s.proc = nil, nil
	s.mu.Unlock()
	return statusOf(c, err)
}

func (s *session) runPipes(c *exec.Cmd) exitStatus {
	stdin, err := c.StdinPipe()
	if err != nil {
		return exitStatus{code: 127}
	}
	c.Stdout = s.ch
	c.Stderr = s.ch.Stderr()
	if err := c.Start(); err != nil {
		fmt.Fprintf(s.ch.Stderr(), "start %s: %v\n", c.Path, err)
		return exitStatus{code: 127}
	}
	s.mu.Lock()
	s.setProcLocked(c.Process)
	s.mu.Unlock()
	go func() {
		io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	err = c.Wait()
	s.mu.Lock()
	close(s.waited)
	s.proc = nil
	s.mu.Unlock()
	return statusOf(c, err)
}

func statusOf(c *exec.Cmd, err error) exitStatus {
	if c.ProcessState == nil {
		return exitStatus{code: 255}
	}
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitStatus{signal: signalName(ws.Signal())}
	}
	return exitStatus{code: c.ProcessState.ExitCode()}
}

// sftp serves the SFTP subsystem on the channel.
func (s *session) sftp() exitStatus {
	// The SFTP server closes its stream when done; the channel must stay
	// open for the exit status.
	srv, err := sftp.NewServer(noCloseChannel{s.ch}, sftp.WithServerWorkingDirectory(s.c.srv.procs.Dir()))
	if err != nil {
		return exitStatus{code: 1}
	}
	defer srv.Close()
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		s.c.logger.Debug("sftp", "err", err)
		return exitStatus{code: 1}
	}
	return exitStatus{}
}

// noCloseChannel is a channel whose Close does nothing (the session closes
// it after the exit status).
type noCloseChannel struct{ ssh.Channel }

func (noCloseChannel) Close() error { return nil }

// forwardAgent makes a unix socket whose connections are relayed to the
// client's SSH agent over auth-agent@openssh.com channels. stop closes it.
func (c *sshConn) forwardAgent() (string, func(), error) {
	dir, err := os.MkdirTemp("", "coder-ssh-agent-")
	if err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			uc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer uc.Close()
				ch, reqs, err := c.conn.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				pipeChannel(ch, uc)
			}()
		}
	}()
	return sock, func() {
		ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
	}, nil
}
