package terminal

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gatewaydev/coder/internal/userproc"
)

// ServerOptions configure a [Server]. The zero value is usable.
type ServerOptions struct {
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Processes builds each session's command: the user's shell as a
	// login shell (argv[0] "-name") when the client gives no command, else
	// with -c and the command, with the user's environment and
	// TERM=xterm-256color, in a session of its own. The agent passes the
	// builder its SSH server uses, so both start the same shell. Nil means
	// userproc.New with Shell, Dir and Env.
	Processes *userproc.Builder
	// Shell, Dir and Env are [userproc.Options] of the builder made when
	// Processes is nil: empty Shell means the user's ($SHELL, else
	// /etc/passwd by uid, else /bin/sh), empty Dir the user's home, nil
	// Env the agent's own without its CODER_AGENT_* variables.
	Shell string
	Dir   string
	Env   []string
	// IdleTimeout ends a session after it has had no attach for this long.
	// Zero means 5 minutes.
	IdleTimeout time.Duration
	// Scrollback is the number of scrollback lines passed to NewScreen.
	// Zero means 10,000.
	Scrollback int
	// NewScreen makes each session's [Screen] at its initial size. Nil
	// means [NewRawTailScreen].
	NewScreen func(cols, rows, scrollback int) Screen
	// QueueBytes bounds each attach's queue of unsent output; an attach
	// whose queue would exceed it is resynced with a fresh screen. Zero
	// means 256 KiB.
	QueueBytes int
	// Window bounds, for a client that acknowledges what it drew, the
	// output queued or sent and not yet acknowledged: the session stops
	// reading the PTY while the fastest such attach is this far behind, so
	// that output in flight (what Ctrl+C cannot stop) is bounded by what
	// the browser has drawn. Zero means 128 KiB.
	Window int
	// Metrics, if not nil, records sessions and attaches.
	Metrics *Metrics
	// MaxSessions caps the live sessions (`coder agent
	// --max-terminal-sessions`): an attach that would start one more is
	// refused with a [FrameError] whose message is [TooManySessionsMessage]
	// (the relay turns it into a close reason the page shows). Attaching
	// to an existing session never counts. Zero means [DefaultMaxSessions].
	MaxSessions int
}

// DefaultMaxSessions is [ServerOptions.MaxSessions]'s default.
const DefaultMaxSessions = 32

// TooManySessionsMessage is the payload of the [FrameError] that refuses a
// new session beyond [ServerOptions.MaxSessions].
const TooManySessionsMessage = "too many terminal sessions"

// errTooManySessions refuses a new session beyond MaxSessions.
var errTooManySessions = errors.New(TooManySessionsMessage)

// Defaults of ServerOptions.
const (
	defaultIdleTimeout = 5 * time.Minute
	defaultScrollback  = 10000
	defaultQueueBytes  = 256 << 10
	defaultWindow      = 128 << 10
)

// ErrServerClosed is returned by [Server.Serve] after [Server.Close].
var ErrServerClosed = errors.New("terminal server closed")

// Server is the agent side of the reconnecting PTY: it serves the wire
// protocol described at [Conn] on the listeners given to Serve, keeps
// sessions keyed by reconnect id, and restores each session's screen on
// attach. Create it with [NewServer]; it owns every goroutine it starts and
// Close waits for them.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	metrics *Metrics

	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	sessions  map[string]*session
}

// NewServer returns a Server with opts; it starts nothing until Serve.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Processes == nil {
		opts.Processes = userproc.New(userproc.Options{Shell: opts.Shell, Dir: opts.Dir, Env: opts.Env})
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.Scrollback <= 0 {
		opts.Scrollback = defaultScrollback
	}
	if opts.NewScreen == nil {
		opts.NewScreen = NewRawTailScreen
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = defaultQueueBytes
	}
	if opts.Window <= 0 {
		opts.Window = defaultWindow
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	return &Server{
		opts:      opts,
		log:       opts.Logger.With("component", "terminal_server"),
		metrics:   opts.Metrics,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		sessions:  make(map[string]*session),
	}
}

// Serve accepts connections on l and serves each in its own goroutine. It
// blocks until l fails or the server is closed, and always returns a
// non-nil error: ErrServerClosed after Close. Close closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return fmt.Errorf("accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops the listeners, closes every connection, ends every session
// (SIGHUP to its process group, SIGKILL after a grace period) and waits for
// all of the server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for l := range s.listeners {
			l.Close()
		}
		for c := range s.conns {
			c.Close()
		}
		for _, sess := range s.sessions {
			sess.requestClose("server closed")
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// serveConn serves one attach until the client goes away or the session
// ends.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	log := s.log.With("remote_addr", c.RemoteAddr().String())

	br := bufio.NewReaderSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(helloTimeout))
	h, err := readHello(br)
	if err != nil {
		log.Debug("bad hello", "err", err)
		_, _ = c.Write(appendFrame(nil, byte(FrameError), []byte("bad hello")))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	log = log.With("session_id", h.Reconnect)

	sess, a, err := s.attach(h, log)
	if errors.Is(err, errTooManySessions) {
		log.Warn("session refused", "err", err, "max_sessions", s.opts.MaxSessions)
		_, _ = c.Write(appendFrame(nil, byte(FrameError), []byte(TooManySessionsMessage)))
		return
	}
	if err != nil {
		log.Error("start session", "err", err)
		_, _ = c.Write(appendFrame(nil, byte(FrameError), []byte("cannot start the terminal session")))
		return
	}
	s.metrics.addAttaches(1)
	defer s.metrics.addAttaches(-1)
	log.Debug("attached")
	if len(h.Features) > 0 {
		// The first frame: before writeLoop starts.
		if _, err := c.Write(s.featuresFrame(h)); err != nil {
			close(a.stop)
			sess.detach(a)
			return
		}
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sess.writeLoop(c, a)
	}()
	err = sess.readLoop(br, a)
	close(a.stop)
	sess.detach(a)
	c.Close()
	wg.Wait()
	log.Debug("detached", "err", err)
}

// featuresFrame answers the hello's features with those the agent
// supports.
func (s *Server) featuresFrame(h hello) []byte {
	f := features{Features: []string{}}
	for _, x := range []string{featureAck, featureSize} {
		if hasFeature(h.Features, x) {
			f.Features = append(f.Features, x)
		}
	}
	if hasFeature(f.Features, featureAck) {
		f.Window = s.opts.Window
	}
	b, _ := json.Marshal(f) // cannot fail
	return appendFrame(nil, frameFeatures, b)
}

// readHello reads and validates the first frame.
func readHello(br *bufio.Reader) (hello, error) {
	k, p, err := readFrame(br, nil)
	if err != nil {
		return hello{}, err
	}
	if k != frameHello {
		return hello{}, fmt.Errorf("first frame is %q, want hello", k)
	}
	var h hello
	if err := json.Unmarshal(p, &h); err != nil {
		return hello{}, fmt.Errorf("decode hello: %w", err)
	}
	if h.Version != protocolVersion {
		return hello{}, fmt.Errorf("protocol version %d, want %d", h.Version, protocolVersion)
	}
	if !validUUID(h.Reconnect) {
		return hello{}, fmt.Errorf("reconnect id %q is not a UUID", truncate(h.Reconnect, 64))
	}
	if err := validCommand(h.Command); err != nil {
		return hello{}, err
	}
	return h, nil
}

// attach registers a new attach on the session h.Reconnect, starting the
// session if there is none (or only one that is ending). Concurrent first
// attaches create one session: the server lock is held throughout.
func (s *Server) attach(h hello, log *slog.Logger) (*session, *attach, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrServerClosed
	}
	a := newAttach(h)
	live := len(s.sessions)
	if sess := s.sessions[h.Reconnect]; sess != nil {
		sess.mu.Lock()
		ok := sess.addLocked(a)
		sess.mu.Unlock()
		if ok {
			return sess, a, nil
		}
		live-- // the ending session is replaced under its id
	}
	if live >= s.opts.MaxSessions {
		return nil, nil, fmt.Errorf("start session %s: %w (%d live)", h.Reconnect, errTooManySessions, live)
	}
	sess, err := s.startSession(h, log)
	if err != nil {
		return nil, nil, fmt.Errorf("start session %s: %w", h.Reconnect, err)
	}
	s.sessions[h.Reconnect] = sess
	s.metrics.addSessions(1)
	a.fresh = true
	sess.mu.Lock()
	sess.addLocked(a)
	sess.mu.Unlock()
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		sess.readPTY()
	}()
	go func() {
		defer s.wg.Done()
		sess.wait()
		s.mu.Lock()
		if s.sessions[sess.id] == sess {
			delete(s.sessions, sess.id)
		}
		s.mu.Unlock()
		s.metrics.addSessions(-1)
		close(sess.done)
	}()
	go func() {
		defer s.wg.Done()
		sess.watch()
	}()
	return sess, a, nil
}

// decodeResize decodes a resize payload.
func decodeResize(p []byte) (w, h uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes", len(p))
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), nil
}
