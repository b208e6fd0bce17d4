package terminal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatewaydev/coder/internal/userproc"
)

const (
	// drainTimeout bounds how long output is read after the process exits
	// while something else (a background job) keeps the PTY open.
	drainTimeout = time.Second
	// killGrace is how long a closing session's processes get between
	// SIGHUP and SIGKILL.
	killGrace = 2 * time.Second
	// exitLinger bounds how long an attach waits, after sending the exit
	// frame, for the client to close its side.
	exitLinger = 5 * time.Second
)

// session is one PTY and its process, shared by its attaches.
type session struct {
	srv  *Server
	id   string
	log  *slog.Logger
	cmd  *exec.Cmd
	ptmx *os.File // non-blocking: Close unblocks Read

	closePTYOnce sync.Once
	readDone     chan struct{} // closed when readPTY returns
	waited       chan struct{} // closed when the process has been waited for
	done         chan struct{} // closed when the session has ended
	closeReqOnce sync.Once
	closeReq     chan struct{} // closed to end the session (idle, Server.Close)
	idle         *time.Timer   // fires IdleTimeout after the last detach

	mu         sync.Mutex
	screen     Screen
	cols, rows uint16
	attaches   map[*attach]struct{}
	closing    bool // idle or server close: new attaches start a new session
	exited     bool // the process exited and all output was read
	exitCode   int
}

// attach is one connection attached to a session. Its queue fields are
// guarded by the session's mu.
type attach struct {
	notify chan struct{} // wakes writeLoop; buffered 1
	stop   chan struct{} // closed when the attach's reader ends

	out    []byte // queued output, at most QueueBytes
	spare  []byte // writeLoop's previous buffer, reused
	resync bool   // out was dropped: send a fresh screen next
	fresh  bool   // the attach started its session: say so before the screen
	drops  int    // times out was dropped, for tests
}

func newAttach() *attach {
	return &attach{
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		resync: true, // every attach starts with the screen
	}
}

func (a *attach) wake() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// startSession starts the process in a new PTY. The caller holds s.mu.
func (s *Server) startSession(h hello, log *slog.Logger) (*session, error) {
	cols := clampSize(h.Width, DefaultWidth, MaxWidth)
	rows := clampSize(h.Height, DefaultHeight, MaxHeight)
	cmd := s.opts.Processes.Command(h.Command, "TERM=xterm-256color")
	f, err := userproc.StartPTY(cmd, cols, rows)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	ptmx, err := nonblocking(f)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	sess := &session{
		srv:      s,
		id:       h.Reconnect,
		log:      log,
		cmd:      cmd,
		ptmx:     ptmx,
		readDone: make(chan struct{}),
		waited:   make(chan struct{}),
		done:     make(chan struct{}),
		closeReq: make(chan struct{}),
		idle:     time.NewTimer(s.opts.IdleTimeout),
		screen:   s.opts.NewScreen(int(cols), int(rows), s.opts.Scrollback),
		cols:     cols,
		rows:     rows,
		attaches: make(map[*attach]struct{}),
	}
	log.Info("session started", "pid", cmd.Process.Pid, "command", h.Command, "width", cols, "height", rows)
	return sess, nil
}

// nonblocking replaces f (which pty put in blocking mode) with a
// non-blocking duplicate served by the runtime poller, so that Close
// unblocks a pending Read. It closes f.
func nonblocking(f *os.File) (*os.File, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dup pty: %w", derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	return os.NewFile(uintptr(nfd), "/dev/ptmx"), nil
}

// addLocked registers a on the session and resizes it to w×h (zero: keep
// the size). It reports false if the session is ending.
func (sess *session) addLocked(a *attach, w, h uint16) bool {
	if sess.closing || sess.exited {
		return false
	}
	if w != 0 && h != 0 {
		sess.resizeLocked(w, h)
	}
	sess.attaches[a] = struct{}{}
	sess.idle.Stop()
	a.wake()
	return true
}

// detach unregisters a and starts the idle timer if it was the last one.
func (sess *session) detach(a *attach) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	delete(sess.attaches, a)
	if len(sess.attaches) == 0 && !sess.exited {
		sess.idle.Reset(sess.srv.opts.IdleTimeout)
	}
}

// resizeLocked resizes the PTY and the screen, clamping the size.
func (sess *session) resizeLocked(w, h uint16) {
	w = min(w, MaxWidth)
	h = min(h, MaxHeight)
	if w == sess.cols && h == sess.rows {
		return
	}
	if err := setSize(sess.ptmx, w, h); err != nil {
		sess.log.Debug("resize pty", "err", err)
		return
	}
	sess.cols, sess.rows = w, h
	sess.screen.Resize(int(w), int(h))
}

func setSize(f *os.File, cols, rows uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return ierr
}

// readPTY reads the PTY until it fails (EIO once the process and its
// children have closed it, or closePTY) and feeds the screen and the
// attaches' queues. It never waits for an attach, so a fast producer is
// never blocked by a slow client.
func (sess *session) readPTY() {
	defer close(sess.readDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := sess.ptmx.Read(buf)
		if n > 0 {
			sess.output(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// output records p on the screen and queues it for every attach. An
// attach whose queue would overflow drops it and is marked for a resync.
func (sess *session) output(p []byte) {
	limit := sess.srv.opts.QueueBytes
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.screen.Write(p)
	for a := range sess.attaches {
		switch {
		case a.resync:
			// The next screen covers p.
		case len(a.out)+len(p) > limit:
			a.out = a.out[:0]
			a.resync = true
			a.drops++
		default:
			a.out = append(a.out, p...)
		}
		a.wake()
	}
}

// wait waits for the process, drains its output and marks the session
// exited, which makes every attach send the exit code.
func (sess *session) wait() {
	err := sess.cmd.Wait()
	close(sess.waited)
	code := exitCode(sess.cmd.ProcessState, err)
	t := time.NewTimer(drainTimeout)
	select {
	case <-sess.readDone:
	case <-t.C:
	}
	t.Stop()
	sess.closePTY()
	<-sess.readDone

	sess.mu.Lock()
	sess.exited = true
	sess.exitCode = code
	sess.idle.Stop()
	for a := range sess.attaches {
		a.wake()
	}
	sess.mu.Unlock()
	sess.log.Info("session ended", "exit_code", code)
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ps = ee.ProcessState
		}
	}
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func (sess *session) closePTY() {
	sess.closePTYOnce.Do(func() { sess.ptmx.Close() })
}

// requestClose asks the session to end; watch does the work.
func (sess *session) requestClose(reason string) {
	sess.closeReqOnce.Do(func() {
		sess.mu.Lock()
		sess.closing = true
		sess.mu.Unlock()
		sess.log.Info("closing session", "reason", reason)
		close(sess.closeReq)
	})
}

// watch ends the session after IdleTimeout without attaches or when asked
// to: a PTY hangup and [userproc.Hangup] of its process group (SIGHUP,
// SIGKILL after killGrace). It returns when the session has ended.
func (sess *session) watch() {
	defer sess.idle.Stop()
	closeReq := sess.closeReq
	for {
		select {
		case <-sess.done:
			return
		case <-sess.idle.C:
			sess.mu.Lock()
			idle := len(sess.attaches) == 0 && !sess.exited
			sess.mu.Unlock()
			if idle {
				sess.requestClose("idle timeout")
			}
		case <-closeReq:
			closeReq = nil
			sess.closePTY()
			if !userproc.Hangup(sess.cmd.Process.Pid, killGrace, sess.waited) {
				sess.log.Warn("session did not end on SIGHUP, killed it")
			}
		}
	}
}

// readLoop reads input and resize frames from an attach until the
// connection fails or the client closes it.
func (sess *session) readLoop(br *bufio.Reader, a *attach) error {
	var buf []byte
	for {
		k, p, err := readFrame(br, buf)
		buf = p[:0]
		if err != nil {
			return err
		}
		switch k {
		case frameInput:
			// Input for an exited process fails; nothing to report.
			_, _ = sess.ptmx.Write(p)
		case frameResize:
			w, h, err := decodeResize(p)
			if err != nil {
				return err
			}
			if w == 0 || h == 0 {
				continue
			}
			sess.mu.Lock()
			sess.resizeLocked(w, h)
			sess.mu.Unlock()
		default:
			return fmt.Errorf("unexpected frame %q", k)
		}
	}
}

// writeLoop sends the attach its screen, then its queued output, a fresh
// screen whenever it fell behind, and finally the exit code. It returns
// after the exit frame, on a write error (closing c) or when a.stop closes.
func (sess *session) writeLoop(c net.Conn, a *attach) {
	var wbuf []byte
	for {
		select {
		case <-a.notify:
		case <-a.stop:
			return
		}
		sess.mu.Lock()
		var snap []byte
		if a.resync {
			// The screen and the queue change together under mu, so the
			// screen plus the output queued after it has no gap and no
			// duplicate.
			snap = sess.screen.Serialize()
			a.out = a.out[:0]
			a.resync = false
		}
		out := a.out
		a.out, a.spare = a.spare[:0], nil
		fresh := a.fresh
		a.fresh = false
		exited, code := sess.exited, sess.exitCode
		sess.mu.Unlock()

		wbuf = wbuf[:0]
		if fresh {
			wbuf = appendFrame(wbuf, byte(FrameNewSession), nil)
		}
		if snap != nil {
			wbuf = appendChunked(wbuf, byte(FrameScreen), byte(FrameOutput), snap)
		}
		wbuf = appendChunked(wbuf, byte(FrameOutput), byte(FrameOutput), out)
		if exited {
			var p [4]byte
			binary.BigEndian.PutUint32(p[:], uint32(int32(code)))
			wbuf = appendFrame(wbuf, byte(FrameExit), p[:])
		}
		if len(wbuf) > 0 {
			if _, err := c.Write(wbuf); err != nil {
				c.Close()
				return
			}
		}
		if cap(wbuf) > 2*sess.srv.opts.QueueBytes+MaxFramePayload {
			wbuf = nil // a big screen: do not keep its buffer
		}

		sess.mu.Lock()
		if a.spare == nil {
			a.spare = out[:0]
		}
		sess.mu.Unlock()

		if exited {
			// Let the client read everything and close first; a close with
			// unread input could reset the connection and lose the exit.
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(exitLinger))
			return
		}
	}
}
