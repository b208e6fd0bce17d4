package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// RelayOptions configure a [Relay]. The zero value is usable.
type RelayOptions struct {
	// Logger receives the relay's logs. Nil discards them.
	Logger *slog.Logger
	// Metrics, if not nil, records open terminals and bytes.
	Metrics *Metrics
	// PingInterval is the websocket heartbeat: a ping every interval, and
	// the browser is gone when nothing (pong or message) arrives for two
	// intervals. Zero means 15 s.
	PingInterval time.Duration
	// Window is how many output bytes may be unacknowledged once the
	// browser sends acks; the relay stops reading from the agent beyond it,
	// so the agent resyncs the browser instead of buffering. Zero means
	// 256 KiB.
	Window int
	// DialTimeout bounds dialling the agent and sending the hello. Zero
	// means 15 s.
	DialTimeout time.Duration
}

// Close codes the relay ends a websocket with. A close after an exit
// message uses 1000; the browser reconnects after any other.
const (
	closeNormal      = websocket.CloseNormalClosure           // 1000 session ended
	closeGoingAway   = websocket.CloseGoingAway               // 1001 server shutting down
	closeUnsupported = websocket.CloseUnsupportedData         // 1003 binary frame from the browser
	closeInvalid     = websocket.CloseInvalidFramePayloadData // 1007 frame is not valid input
	closeTooBig      = websocket.CloseMessageTooBig           // 1009 frame above MaxInputFrame
	closeInternal    = websocket.CloseInternalServerErr       // 1011 agent unreachable or lost
	closeTryLater    = websocket.CloseTryAgainLater           // 1013 the agent's session limit is reached
)

// ReasonTooManySessions is the close reason (code 1013) of a terminal the
// agent refused because it has [ServerOptions.MaxSessions] live sessions
// already. The page shows it while it retries.
const ReasonTooManySessions = "the workspace agent has too many terminal sessions open: close one to open this one"

// Relay bridges browser websockets to sessions on agents (the server and
// the workspace proxies each have one). Create it with [NewRelay].
type Relay struct {
	opts    RelayOptions
	log     *slog.Logger
	metrics *Metrics

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	active map[*relayConn]struct{}
	// maxUnacked is the most bytes unacknowledged by a browser that acks
	// (for tests).
	maxUnacked int
}

// NewRelay returns a Relay with opts.
func NewRelay(opts RelayOptions) *Relay {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 15 * time.Second
	}
	if opts.Window <= 0 {
		opts.Window = 256 << 10
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 15 * time.Second
	}
	return &Relay{
		opts:    opts,
		log:     opts.Logger.With("component", "terminal_relay"),
		metrics: opts.Metrics,
		active:  make(map[*relayConn]struct{}),
	}
}

// Close ends every websocket being served with 1001 (going away) and waits
// until the ServeBrowser calls have returned; later calls are refused. The
// sessions on the agents live on. It is idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for rc := range r.active {
		rc.finish(closeGoingAway, "server shutting down", nil)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// relayConn is one browser websocket being served.
type relayConn struct {
	r      *Relay
	ws     *websocket.Conn
	agent  *Conn
	cancel context.CancelFunc

	endOnce   sync.Once
	endCode   int
	endReason string
	endErr    error

	// Flow control, guarded by mu.
	mu      sync.Mutex
	acking  bool // the browser sends acks
	unacked int
	acked   chan struct{} // buffered 1: an ack arrived
}

// finish records why the websocket ends (the first call wins) and stops
// the relay.
func (rc *relayConn) finish(code int, reason string, err error) {
	rc.endOnce.Do(func() {
		rc.endCode, rc.endReason, rc.endErr = code, reason, err
		rc.cancel()
	})
}

// ServeBrowser relays between the browser websocket ws and the session
// p.Reconnect on the agent reached by dial, until the session ends, either
// side goes away, ctx is done or the relay closes. It takes ownership of
// ws: it sets the read limit and heartbeat, and closes ws (with a close
// code) before returning. The caller upgrades with compression off and its
// Origin check; p comes from [ParseParams]. Pass a ctx that outlives the
// request, such as context.WithoutCancel(r.Context()): net/http may cancel a
// hijacked request's context when the connection fails, which would hide
// the real reason, and [Relay.Close] ends every relay at shutdown.
//
// Browser → server: text messages parsed by [ParseInput] ({"data"},
// {"width","height"} (this tab's size), {"ack"}, {"claim"}). Server →
// browser: binary messages of raw terminal output (every attach starts
// with the serialised screen, which begins with ESC c); text messages
// {"size":{"width":W,"height":H,"active":B}}, in order with the output,
// before the first screen and whenever the session's size changes or this
// tab becomes or stops being the active one (the tab then shows W×H); and
// one text message {"exit_code":N} when the process exits, followed by
// close 1000 "session ended". Other closes:
// 1001 server shutting down, 1003 binary message from the browser, 1007
// invalid input, 1009 message above [MaxInputFrame], 1011 agent
// unreachable, lost or unable to start the session.
//
// Flow control: the relay passes the browser's acks to the agent, which
// stops reading the PTY while the fastest acking tab of the session has
// [ServerOptions.Window] bytes undrawn (see [Conn]). As a backstop (an
// agent without flow control), once the browser has sent an ack at most
// Window bytes of binary output are unacknowledged at the relay; beyond
// that the relay stops reading from the agent, whose per-attach queue then
// overflows and is replaced by a fresh screen.
//
// It returns nil when the session ended or the browser closed, else the
// reason the websocket was closed.
func (r *Relay) ServeBrowser(ctx context.Context, ws *websocket.Conn, dial DialFunc, p Params) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc := &relayConn{r: r, ws: ws, cancel: cancel, acked: make(chan struct{}, 1)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		closeWebsocket(ws, closeGoingAway, "server shutting down")
		ws.Close()
		return ErrServerClosed
	}
	r.active[rc] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.active, rc)
		r.mu.Unlock()
		r.wg.Done()
	}()
	r.metrics.addTerminals(1)
	defer r.metrics.addTerminals(-1)
	log := r.log.With("session_id", p.Reconnect, "remote_addr", ws.RemoteAddr().String())

	ws.EnableWriteCompression(false)
	// ServeBrowser limits messages itself to give a reason; this is a
	// backstop for huge frame headers.
	ws.SetReadLimit(4 * MaxInputFrame)

	dctx, dcancel := context.WithTimeout(ctx, r.opts.DialTimeout)
	agent, err := Attach(dctx, dial, p)
	dcancel()
	if err != nil {
		if ctx.Err() != nil {
			// Relay.Close or the caller ended it while dialling.
			rc.finish(closeGoingAway, "", context.Cause(ctx))
			closeWebsocket(ws, rc.endCode, rc.endReason)
			ws.Close()
			return rc.endErr
		}
		log.Warn("attach to agent", "err", err)
		closeWebsocket(ws, closeInternal, "cannot reach the workspace agent")
		ws.Close()
		return err
	}
	rc.agent = agent
	log.Debug("terminal opened")

	rc.extendReadDeadline()
	ws.SetPongHandler(func(string) error {
		rc.extendReadDeadline()
		return nil
	})
	readerDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		rc.copyAgentToBrowser(ctx)
	}()
	go func() {
		defer wg.Done()
		defer close(readerDone)
		rc.copyBrowserToAgent(ctx)
	}()
	go func() {
		defer wg.Done()
		rc.heartbeat(ctx)
	}()

	<-ctx.Done()
	rc.finish(closeGoingAway, "", context.Cause(ctx)) // the caller's ctx ended
	agent.Close()
	closeWebsocket(ws, rc.endCode, rc.endReason)
	// Give the browser a moment to answer the close, so that it sees a
	// clean close with our code rather than a reset.
	t := time.NewTimer(2 * time.Second)
	select {
	case <-readerDone:
	case <-t.C:
	}
	t.Stop()
	ws.Close()
	wg.Wait()
	log.Debug("terminal closed", "close_code", rc.endCode, "reason", rc.endReason, "err", rc.endErr)
	return rc.endErr
}

// closeWebsocket sends a close message; errors mean the peer is gone.
func closeWebsocket(ws *websocket.Conn, code int, reason string) {
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(5*time.Second))
}

// copyAgentToBrowser forwards agent frames as binary messages, and the
// exit code as a text message, within the flow-control window.
func (rc *relayConn) copyAgentToBrowser(ctx context.Context) {
	for {
		if !rc.waitWindow(ctx) {
			return
		}
		f, err := rc.agent.ReadFrameCoalesced(MaxFramePayload)
		if err != nil {
			rc.finish(closeInternal, "workspace agent connection lost", fmt.Errorf("read from agent: %w", err))
			return
		}
		switch f.Kind {
		case FrameScreen, FrameOutput:
			// Count before writing: the ack may arrive before
			// WriteMessage returns.
			rc.mu.Lock()
			rc.unacked += len(f.Data)
			u, acking := rc.unacked, rc.acking
			rc.mu.Unlock()
			if acking {
				rc.r.noteUnacked(u)
			}
			rc.r.metrics.addOut(len(f.Data))
			if err := rc.ws.WriteMessage(websocket.BinaryMessage, f.Data); err != nil {
				rc.finish(closeGoingAway, "write failed", fmt.Errorf("write to browser: %w", err))
				return
			}
		case FrameSize:
			msg := fmt.Sprintf(`{"size":{"width":%d,"height":%d,"active":%t}}`, f.Width, f.Height, f.Active)
			if err := rc.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				rc.finish(closeGoingAway, "write failed", fmt.Errorf("write to browser: %w", err))
				return
			}
		case FrameNewSession:
			if err := rc.ws.WriteMessage(websocket.TextMessage, []byte(`{"session":"new"}`)); err != nil {
				rc.finish(closeGoingAway, "write failed", fmt.Errorf("write to browser: %w", err))
				return
			}
		case FrameExit:
			msg := `{"exit_code":` + strconv.Itoa(f.ExitCode) + `}`
			if err := rc.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				rc.finish(closeGoingAway, "write failed", fmt.Errorf("write to browser: %w", err))
				return
			}
			rc.finish(closeNormal, "session ended", nil)
			return
		case FrameError:
			if string(f.Data) == TooManySessionsMessage {
				rc.finish(closeTryLater, ReasonTooManySessions, fmt.Errorf("agent: %s", TooManySessionsMessage))
				return
			}
			rc.finish(closeInternal, "cannot start the terminal session", fmt.Errorf("agent: %s", truncate(string(f.Data), 200)))
			return
		}
	}
}

// waitWindow blocks while the browser acks and the window is full. It
// reports false when ctx is done.
func (rc *relayConn) waitWindow(ctx context.Context) bool {
	for {
		rc.mu.Lock()
		ok := !rc.acking || rc.unacked < rc.r.opts.Window
		rc.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-rc.acked:
		case <-ctx.Done():
			return false
		}
	}
}

func (r *Relay) noteUnacked(n int) {
	r.mu.Lock()
	r.maxUnacked = max(r.maxUnacked, n)
	r.mu.Unlock()
}

func (rc *relayConn) ack(n int) {
	rc.mu.Lock()
	rc.acking = true
	rc.unacked = max(rc.unacked-n, 0)
	rc.mu.Unlock()
	select {
	case rc.acked <- struct{}{}:
	default:
	}
}

// copyBrowserToAgent reads browser messages, validates them and forwards
// input and resizes to the agent.
func (rc *relayConn) copyBrowserToAgent(ctx context.Context) {
	ws := rc.ws
	for {
		typ, r, err := ws.NextReader()
		if err != nil {
			rc.finishRead(err)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r, MaxInputFrame+1))
		if err != nil {
			rc.finishRead(err)
			return
		}
		rc.extendReadDeadline()
		switch {
		case len(b) > MaxInputFrame:
			rc.finish(closeTooBig, "message larger than 64 KiB", errors.New("browser message too large"))
			return
		case typ != websocket.TextMessage:
			rc.finish(closeUnsupported, "send JSON text messages, not binary", errors.New("binary message from browser"))
			return
		}
		in, err := ParseInput(b)
		if err != nil {
			rc.finish(closeInvalid, `invalid message: want JSON {"data"}, {"width","height"} or {"ack"}`, err)
			return
		}
		if in.HasAck {
			rc.ack(in.Ack)
			if err := rc.agent.Ack(in.Ack); err != nil {
				rc.finish(closeInternal, "workspace agent connection lost", err)
				return
			}
		}
		if in.HasVisible {
			if err := rc.agent.SetVisible(in.Visible); err != nil {
				rc.finish(closeInternal, "workspace agent connection lost", err)
				return
			}
		}
		if in.Claim {
			if err := rc.agent.Claim(); err != nil {
				rc.finish(closeInternal, "workspace agent connection lost", err)
				return
			}
		}
		if in.Data != "" {
			if err := rc.agent.WriteInput([]byte(in.Data)); err != nil {
				rc.finish(closeInternal, "workspace agent connection lost", err)
				return
			}
			rc.r.metrics.addIn(len(in.Data))
		}
		if in.Resize {
			if err := rc.agent.Resize(in.Width, in.Height); err != nil {
				rc.finish(closeInternal, "workspace agent connection lost", err)
				return
			}
		}
	}
}

// finishRead ends the relay after a websocket read error.
func (rc *relayConn) finishRead(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		rc.finish(closeNormal, "", nil) // the browser closed
	case errors.Is(err, websocket.ErrReadLimit):
		rc.finish(closeTooBig, "message larger than 64 KiB", err)
	case errors.As(err, &ne) && ne.Timeout():
		rc.finish(closeGoingAway, "heartbeat timeout", fmt.Errorf("browser heartbeat: %w", err))
	default:
		rc.finish(closeGoingAway, "", fmt.Errorf("read from browser: %w", err))
	}
}

func (rc *relayConn) extendReadDeadline() {
	_ = rc.ws.SetReadDeadline(time.Now().Add(2 * rc.r.opts.PingInterval))
}

// heartbeat pings the browser every PingInterval; the pong handler set by
// ServeBrowser (run by the reader) extends the read deadline.
func (rc *relayConn) heartbeat(ctx context.Context) {
	t := time.NewTicker(rc.r.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := rc.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(rc.r.opts.PingInterval)); err != nil {
				rc.finish(closeGoingAway, "heartbeat failed", fmt.Errorf("ping browser: %w", err))
				return
			}
		}
	}
}
