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
	ptyClosed    chan struct{} // closed by closePTY: readPTY stops waiting
	room         chan struct{} // buffered 1: an ack or detach may let readPTY read

	mu         sync.Mutex
	screen     Screen
	cols, rows uint16
	attaches   map[*attach]struct{}
	active     *attach // the attach whose size the session follows
	seq        uint64  // orders attaches and claims
	closing    bool    // idle or server close: new attaches start a new session
	exited     bool    // the process exited and all output was read
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

	// Flow control (featureAck).
	flow     bool // the client has acked: it gates readPTY
	hidden   bool // the client is hidden: no output, no gating
	unacked  int  // bytes sent to the client and not acknowledged
	maxAhead int  // the most bytes ever queued or unacknowledged, for tests

	// Sizes (featureSize).
	sizes      bool       // the client speaks featureSize
	cols, rows uint16     // the client's own size
	attachSeq  uint64     // when it attached
	claimSeq   uint64     // when it last claimed; 0: never
	marks      []sizeMark // size frames to send at offsets of out
	last       sizeMark   // the size last queued for the client
}

// sizeMark is a size frame due before out[at:].
type sizeMark struct {
	at         int
	cols, rows uint16
	active     bool
}

func newAttach(h hello) *attach {
	return &attach{
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		resync: true, // every attach starts with the screen
		sizes:  hasFeature(h.Features, featureSize),
		cols:   clampSize(h.Width, DefaultWidth, MaxWidth),
		rows:   clampSize(h.Height, DefaultHeight, MaxHeight),
	}
}

// ahead is how far the client is behind the PTY: queued plus unacknowledged
// bytes.
func (a *attach) ahead() int {
	return len(a.out) + a.unacked
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
		srv:       s,
		id:        h.Reconnect,
		log:       log,
		cmd:       cmd,
		ptmx:      ptmx,
		readDone:  make(chan struct{}),
		waited:    make(chan struct{}),
		done:      make(chan struct{}),
		closeReq:  make(chan struct{}),
		idle:      time.NewTimer(s.opts.IdleTimeout),
		ptyClosed: make(chan struct{}),
		room:      make(chan struct{}, 1),
		screen:    s.opts.NewScreen(int(cols), int(rows), s.opts.Scrollback),
		cols:      cols,
		rows:      rows,
		attaches:  make(map[*attach]struct{}),
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

// addLocked registers a on the session. An attach without featureSize
// resizes the session to its size and becomes the active one, as before
// sizes were per attach; one with it becomes active only if none is. It
// reports false if the session is ending.
func (sess *session) addLocked(a *attach) bool {
	if sess.closing || sess.exited {
		return false
	}
	sess.seq++
	a.attachSeq = sess.seq
	sess.attaches[a] = struct{}{}
	if !a.sizes || sess.active == nil {
		sess.activateLocked(a)
	}
	sess.idle.Stop()
	a.wake()
	sess.wakeReader()
	return true
}

// detach unregisters a and starts the idle timer if it was the last one.
// If a was the active attach, the most recently active of the others (or
// else the most recently attached) takes over, with its size.
func (sess *session) detach(a *attach) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	delete(sess.attaches, a)
	if sess.active == a {
		sess.active = nil
		var next *attach
		for b := range sess.attaches {
			if next == nil || b.claimSeq > next.claimSeq ||
				b.claimSeq == next.claimSeq && b.attachSeq > next.attachSeq {
				next = b
			}
		}
		if next != nil {
			sess.activateLocked(next)
		}
	}
	if len(sess.attaches) == 0 && !sess.exited {
		sess.idle.Reset(sess.srv.opts.IdleTimeout)
	}
	sess.wakeReader()
}

// claimLocked makes a the active attach (a keystroke or focus in its
// client).
func (sess *session) claimLocked(a *attach) {
	sess.seq++
	a.claimSeq = sess.seq
	sess.activateLocked(a)
}

// activateLocked makes a the active attach and gives the session its size.
func (sess *session) activateLocked(a *attach) {
	sess.active = a
	sess.resizeLocked(a.cols, a.rows)
	sess.markSizesLocked()
}

// setSizeLocked records a's own size (a resize frame) and resizes the
// session if a is active. A client without featureSize resizes the
// session at once and becomes active.
func (sess *session) setSizeLocked(a *attach, w, h uint16) {
	a.cols, a.rows = min(w, MaxWidth), min(h, MaxHeight)
	if !a.sizes || sess.active == a {
		sess.activateLocked(a)
	}
}

// markSizesLocked queues a size frame, in order with the output, for
// every attach with featureSize whose view of the size or of being active
// changed. An attach awaiting a screen gets the size with it.
func (sess *session) markSizesLocked() {
	for a := range sess.attaches {
		if !a.sizes || a.resync {
			continue
		}
		m := sizeMark{at: len(a.out), cols: sess.cols, rows: sess.rows, active: sess.active == a}
		if m.cols == a.last.cols && m.rows == a.last.rows && m.active == a.last.active {
			continue
		}
		a.marks = append(a.marks, m)
		a.last = m
		a.wake()
	}
}

// ack records that a's client drew n more bytes; the first ack turns flow
// control on for a.
func (sess *session) ack(a *attach, n int) {
	sess.mu.Lock()
	a.flow = true
	a.unacked = max(a.unacked-n, 0)
	sess.mu.Unlock()
	a.wake()
	sess.wakeReader()
}

func (sess *session) wakeReader() {
	select {
	case sess.room <- struct{}{}:
	default:
	}
}

// budgetLocked is how many bytes readPTY may read now, at most n: n if
// no attach is flow-controlled (or one is not), else what the fastest
// flow-controlled attach has left of its window and queue.
func (sess *session) budgetLocked(n int) int {
	window, queue := sess.srv.opts.Window, sess.srv.opts.QueueBytes
	gated, best := false, 0
	for a := range sess.attaches {
		if a.hidden {
			continue
		}
		if !a.flow {
			return n
		}
		gated = true
		best = max(best, min(window-a.ahead(), queue-len(a.out)))
	}
	if !gated {
		return n
	}
	return min(best, n)
}

// readBudget waits until readPTY may read and returns how many bytes, at
// most n. After the process exited, or once the PTY is closed, it does
// not wait: the rest of the output is read at once (a slow attach is
// resynced).
func (sess *session) readBudget(n int) int {
	for {
		sess.mu.Lock()
		b := sess.budgetLocked(n)
		sess.mu.Unlock()
		if b > 0 {
			return b
		}
		select {
		case <-sess.room:
		case <-sess.waited:
			return n
		case <-sess.ptyClosed:
			return n
		}
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
// attaches' queues. With flow control it reads only what the fastest
// flow-controlled attach has room for (see readBudget), so a fast
// producer blocks on the full PTY, as under a real terminal, and is held
// back by the fastest client, never by a slower one.
func (sess *session) readPTY() {
	defer close(sess.readDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := sess.ptmx.Read(buf[:sess.readBudget(len(buf))])
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
			a.marks = a.marks[:0]
			a.resync = true
			a.drops++
		default:
			a.out = append(a.out, p...)
			a.maxAhead = max(a.maxAhead, a.ahead())
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
	sess.closePTYOnce.Do(func() {
		sess.ptmx.Close()
		close(sess.ptyClosed)
	})
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
			sess.setSizeLocked(a, w, h)
			sess.mu.Unlock()
		case frameAck:
			if len(p) != 4 {
				return fmt.Errorf("ack frame of %d bytes", len(p))
			}
			sess.ack(a, int(binary.BigEndian.Uint32(p)))
		case frameVisible:
			if len(p) != 1 {
				return fmt.Errorf("visible frame of %d bytes", len(p))
			}
			sess.mu.Lock()
			a.hidden = p[0] == 0
			sess.mu.Unlock()
			a.wake()
			sess.wakeReader()
		case frameClaim:
			sess.mu.Lock()
			sess.claimLocked(a)
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
		if (a.hidden || a.flow && a.unacked >= sess.srv.opts.Window) && !sess.exited {
			// The client is a window behind: hold the output here, where
			// the queue's bound resyncs it, not in socket buffers. An ack
			// wakes us.
			sess.mu.Unlock()
			continue
		}
		var snap []byte
		var size *sizeMark
		if a.resync {
			// The screen and the queue change together under mu, so the
			// screen plus the output queued after it has no gap and no
			// duplicate.
			snap = sess.screen.Serialize()
			a.out = a.out[:0]
			a.marks = a.marks[:0]
			a.resync = false
			if a.sizes {
				a.last = sizeMark{cols: sess.cols, rows: sess.rows, active: sess.active == a}
				size = &a.last
			}
		}
		out := a.out
		marks := append([]sizeMark(nil), a.marks...)
		a.marks = a.marks[:0]
		a.out, a.spare = a.spare[:0], nil
		// Count before writing: the ack may arrive before Write returns.
		a.unacked += len(snap) + len(out)
		a.maxAhead = max(a.maxAhead, a.unacked)
		fresh := a.fresh
		a.fresh = false
		exited, code := sess.exited, sess.exitCode
		sess.mu.Unlock()

		wbuf = wbuf[:0]
		if fresh {
			wbuf = appendFrame(wbuf, byte(FrameNewSession), nil)
		}
		if size != nil {
			wbuf = appendSize(wbuf, *size)
		}
		if snap != nil {
			wbuf = appendChunked(wbuf, byte(FrameScreen), byte(FrameOutput), snap)
		}
		at := 0
		for _, m := range marks {
			wbuf = appendChunked(wbuf, byte(FrameOutput), byte(FrameOutput), out[at:m.at])
			wbuf = appendSize(wbuf, m)
			at = m.at
		}
		wbuf = appendChunked(wbuf, byte(FrameOutput), byte(FrameOutput), out[at:])
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

// appendSize appends a size frame.
func appendSize(dst []byte, m sizeMark) []byte {
	var p [5]byte
	binary.BigEndian.PutUint16(p[:2], m.cols)
	binary.BigEndian.PutUint16(p[2:4], m.rows)
	if m.active {
		p[4] = 1
	}
	return appendFrame(dst, byte(FrameSize), p[:])
}
