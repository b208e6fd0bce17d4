package terminal

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// FrameKind identifies an agent→client frame, as returned by [Conn.ReadFrame].
type FrameKind byte

// The frame kinds a client receives.
const (
	// FrameScreen starts a serialised screen (it begins with ESC c): the
	// client discards what it shows. Continuation chunks are FrameOutput.
	FrameScreen FrameKind = 's'
	// FrameOutput is raw terminal output.
	FrameOutput FrameKind = 'o'
	// FrameExit reports that the process exited; [Frame.ExitCode] holds the
	// code (128+n for a process killed by signal n). It is the last frame.
	FrameExit FrameKind = 'x'
	// FrameError reports that the session could not be started; [Frame.Data]
	// holds a message. It is the last frame.
	FrameError FrameKind = 'e'
	// FrameNewSession comes before the first screen of an attach that
	// started its session (no session existed under the reconnect id: the
	// first attach, or one after the session ended or the agent restarted).
	// It has no payload.
	FrameNewSession FrameKind = 'n'
	// FrameSize reports the session's size ([Frame.Width], [Frame.Height])
	// and whether this attach is the active one, whose size the session
	// follows ([Frame.Active]). It comes before the first screen and,
	// in order with the output, after every change. Only agents that
	// announced [featureSize] send it.
	FrameSize FrameKind = 'w'
)

const (
	frameHello  byte = 'h'
	frameInput  byte = 'i'
	frameResize byte = 'r'
	// frameAck (client→agent): the client's renderer has drawn uint32
	// more bytes of screen and output. The first one turns flow control
	// on for the attach.
	frameAck byte = 'a'
	// frameClaim (client→agent, no payload): make this attach the active
	// one; the session takes its size.
	frameClaim byte = 'c'
	// frameVisible (client→agent, featureAck): 1 byte, 0 when the client
	// is hidden (it then holds nobody back and gets no output; a fresh
	// screen when it is visible again, 1).
	frameVisible byte = 'v'
	// frameFeatures (agent→client): the first frame when the hello asked
	// for features; JSON {"features":[...],"window":N}. [Conn] consumes it.
	frameFeatures byte = 'f'
)

// Protocol features negotiated by the hello and [frameFeatures]. An agent
// that predates them ignores the hello's field and sends no features
// frame, and the client then sends none of their frames.
const (
	// featureAck: the agent stops reading the PTY while every
	// flow-controlled attach has Window bytes unacknowledged.
	featureAck = "ack"
	// featureSize: each attach has its own size; the session follows the
	// active attach and reports its size with FrameSize.
	featureSize = "size"
)

// MaxFramePayload is the largest payload of one wire frame. Larger input is
// split by [Conn.WriteInput]; the agent splits output and screens.
const MaxFramePayload = 64 << 10

// protocolVersion is the hello's version; the agent rejects other versions.
const protocolVersion = 1

const frameHeaderLen = 5

// hello is the first frame of a connection.
type hello struct {
	Version   int    `json:"version"`
	Reconnect string `json:"reconnect"`
	Width     uint16 `json:"width"`
	Height    uint16 `json:"height"`
	Command   string `json:"command,omitempty"`
	// Features the client supports; the agent answers with the ones it
	// supports in a features frame. Absent: none (an older client).
	Features []string `json:"features,omitempty"`
}

// features is the payload of frameFeatures.
type features struct {
	Features []string `json:"features"`
	// Window is the flow-control window in bytes (with featureAck).
	Window int `json:"window,omitempty"`
}

func hasFeature(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// errFrameTooLarge is returned when a peer announces a frame above
// MaxFramePayload.
var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one frame into buf (grown as needed) and returns its kind
// and payload, which aliases buf.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, buf, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFramePayload {
		return 0, buf, fmt.Errorf("read frame %q: %w (%d bytes)", h[0], errFrameTooLarge, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, buf, fmt.Errorf("read frame %q: %w", h[0], noEOF(err))
	}
	return h[0], buf, nil
}

// noEOF turns io.EOF in the middle of a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends one frame of kind k to dst.
func appendFrame(dst []byte, k byte, payload []byte) []byte {
	if len(payload) > MaxFramePayload {
		panic("terminal: frame payload too large")
	}
	dst = append(dst, k, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(payload)))
	return append(dst, payload...)
}

// appendChunked appends payload as frames of at most MaxFramePayload bytes:
// the first of kind first, the rest of kind rest. An empty payload with
// first != rest still yields one (empty) frame of kind first.
func appendChunked(dst []byte, first, rest byte, payload []byte) []byte {
	k := first
	for {
		n := min(len(payload), MaxFramePayload)
		if n > 0 || k != rest {
			dst = appendFrame(dst, k, payload[:n])
		}
		payload = payload[n:]
		k = rest
		if len(payload) == 0 {
			return dst
		}
	}
}

// DialFunc opens a stream connection to the agent's PTY service, the
// listener given to [Server.Serve]. The caller of Attach owns the
// returned conn.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Frame is one frame received from the agent.
type Frame struct {
	// Kind is the frame kind.
	Kind FrameKind
	// Data is the payload of screen, output and error frames. It is valid
	// only until the next call to ReadFrame.
	Data []byte
	// ExitCode is set for FrameExit.
	ExitCode int
	// Width, Height and Active are set for FrameSize.
	Width, Height uint16
	Active        bool
}

// Conn is a client connection to one session on the agent, made by
// [Attach]. One goroutine may call ReadFrame while others call WriteInput,
// Resize and Close.
//
// The wire protocol between a Conn (the relay, or any client) and the
// agent's [Server] uses one stream connection per attach:
//
//	frame = kind:uint8 | length:uint32 big-endian | payload[length]
//
// with length at most [MaxFramePayload]. The client sends one hello frame
// first and then input and resize frames; the agent answers with screen,
// output, exit and error frames:
//
//	'h' hello   client→agent  JSON {"version":1,"reconnect":"<uuid>","width":80,"height":24,"command":"",
//	                          "features":["ack","size"]}
//	'i' input   client→agent  raw bytes for the PTY
//	'r' resize  client→agent  width:uint16 | height:uint16, big-endian: this
//	                          attach's size (with "size": the session takes it
//	                          while this attach is active; without: at once)
//	'a' ack     client→agent  bytes:uint32 big-endian of screen and output
//	                          drawn ("ack"); the first turns flow control on
//	'c' claim   client→agent  no payload: this attach becomes the active one
//	                          ("size"), as on a user's keystroke or focus
//	'v' visible client→agent  1 byte ("ack"): 0 hidden (the attach gets no
//	                          output and does not hold the session back), 1
//	                          shown again (a fresh screen if it missed output)
//	'f' features agent→client JSON {"features":["ack","size"],"window":N}: the
//	                          first frame, only when the hello asked; [Conn]
//	                          consumes it and sends acks and claims only then
//	'w' size    agent→client  width:uint16 | height:uint16 | active:uint8 ("size"):
//	                          before the first screen and, in order with the
//	                          output, after each change of the session's size
//	                          or of which attach is active
//	's' screen  agent→client  first chunk of a serialised screen: it starts
//	                          with a full reset (ESC c), so the client
//	                          replaces what it shows; further chunks follow
//	                          as output frames
//	'o' output  agent→client  raw terminal output
//	'x' exit    agent→client  exit code:int32 big-endian; the process ended
//	                          and the agent closes the connection
//	'e' error   agent→client  UTF-8 text; the session could not be started
//	                          and the agent closes the connection
//
// Every attach starts with a screen frame (then possibly more output frames
// completing it) and continues with live output, with no gap and no
// duplication between the two. An attach that falls behind gets another
// screen frame instead of the output it missed (a resync).
//
// Flow control ("ack"): the agent counts, per attach that has acked, the
// bytes queued or sent and not yet acknowledged, and reads the PTY only
// while the fastest such attach is below the window; the program then
// blocks on a full PTY, as under a real terminal, and output in flight is
// bounded by what the client has drawn. Attaches that never ack (older
// clients) do not hold the session back; a slower attach falls behind and
// is resynced. After the process exits the rest is read at once.
//
// Sizes ("size"): each attach has its own size (hello, resize); the
// session follows the active attach: the first one, then the last to
// claim; when the active attach leaves, the most recently active of the
// others (or else the most recently attached) takes over.
type Conn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
	// more holds output coalesced by ReadFrameCoalesced.
	more []byte

	// wmu serialises writes and guards the feature state.
	wmu  sync.Mutex
	wbuf []byte
	// feat is featUnknown until the first frame: a features frame (newer
	// agent) or any other (older agent, featNone).
	feat featState
	// agentFeatures are the features the agent announced.
	agentFeatures []string
	// pendingAck, pendingClaim and pendingVisible hold Ack, Claim and
	// SetVisible calls made before the agent's features are known.
	pendingAck     int
	pendingClaim   bool
	pendingVisible int // -1 none, else 0 or 1
}

type featState int

const (
	featUnknown featState = iota
	featKnown
	featNone
)

// helloTimeout bounds writing and reading the hello.
const helloTimeout = 10 * time.Second

// Attach dials the agent with dial and attaches to the session p.Reconnect,
// creating it if needed with p's size and command. It returns once the hello
// is written; the first frame read is then a screen frame (or an error
// frame). The caller must close the returned Conn.
func Attach(ctx context.Context, dial DialFunc, p Params) (*Conn, error) {
	if !validUUID(p.Reconnect) {
		return nil, fmt.Errorf("attach session %q: reconnect id is not a UUID", p.Reconnect)
	}
	nc, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("attach session %s: dial agent: %w", p.Reconnect, err)
	}
	h := hello{
		Version:   protocolVersion,
		Reconnect: p.Reconnect,
		Width:     p.Width,
		Height:    p.Height,
		Command:   p.Command,
		Features:  []string{featureAck, featureSize},
	}
	b, err := json.Marshal(h)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("attach session %s: %w", p.Reconnect, err)
	}
	if len(b) > MaxFramePayload {
		nc.Close()
		return nil, fmt.Errorf("attach session %s: command too long", p.Reconnect)
	}
	deadline := time.Now().Add(helloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetWriteDeadline(deadline)
	if _, err := nc.Write(appendFrame(nil, frameHello, b)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("attach session %s: write hello: %w", p.Reconnect, err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return &Conn{c: nc, br: bufio.NewReaderSize(nc, 64<<10), pendingAck: -1, pendingVisible: -1}, nil
}

// ReadFrame blocks until the agent sends a frame or the connection fails.
// After FrameExit or FrameError the next call returns io.EOF.
func (c *Conn) ReadFrame() (Frame, error) {
	k, p, err := readFrame(c.br, c.buf)
	c.buf = p[:0]
	if err != nil {
		return Frame{}, err
	}
	if k == frameFeatures {
		if err := c.gotFeatures(p); err != nil {
			return Frame{}, err
		}
		return c.ReadFrame()
	}
	c.noFeatures()
	f := Frame{Kind: FrameKind(k), Data: p}
	switch f.Kind {
	case FrameSize:
		if len(p) != 5 {
			return Frame{}, fmt.Errorf("read frame: size frame of %d bytes", len(p))
		}
		f.Width, f.Height = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
		f.Active = p[4] != 0
		f.Data = nil
	case FrameScreen, FrameOutput, FrameError, FrameNewSession:
	case FrameExit:
		if len(p) != 4 {
			return Frame{}, fmt.Errorf("read frame: exit frame of %d bytes", len(p))
		}
		f.ExitCode = int(int32(binary.BigEndian.Uint32(p)))
		f.Data = nil
	default:
		return Frame{}, fmt.Errorf("read frame: unknown kind %q", k)
	}
	return f, nil
}

// ReadFrameCoalesced is ReadFrame, except that an output frame comes back
// joined with the output frames that follow it and are already buffered,
// up to max bytes: it never waits for more. The relay sends fewer, larger
// websocket messages under bulk output, and the browser renders them in
// fewer passes. The returned Data is valid until the next read.
func (c *Conn) ReadFrameCoalesced(max int) (Frame, error) {
	f, err := c.ReadFrame()
	if err != nil || f.Kind != FrameOutput {
		return f, err
	}
	out := append(c.more[:0], f.Data...)
	for len(out) < max && c.br.Buffered() >= frameHeaderLen {
		h, err := c.br.Peek(frameHeaderLen)
		if err != nil || FrameKind(h[0]) != FrameOutput {
			break
		}
		n := int(binary.BigEndian.Uint32(h[1:]))
		if c.br.Buffered() < frameHeaderLen+n || len(out)+n > max {
			break
		}
		g, err := c.ReadFrame()
		if err != nil {
			return Frame{}, err
		}
		out = append(out, g.Data...)
	}
	c.more = out
	f.Data = out
	return f, nil
}

// WriteInput sends keystrokes (or pasted text) to the PTY. It blocks until
// they are written to the connection.
func (c *Conn) WriteInput(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(p) > 0 {
		n := min(len(p), MaxFramePayload)
		c.wbuf = appendFrame(c.wbuf[:0], frameInput, p[:n])
		if _, err := c.c.Write(c.wbuf); err != nil {
			return fmt.Errorf("write input: %w", err)
		}
		p = p[n:]
	}
	return nil
}

// Resize asks the agent to resize the PTY (and the screen) to width columns
// and height rows. Sizes are clamped to [MaxWidth] and [MaxHeight]; a zero
// size is ignored by the agent.
func (c *Conn) Resize(width, height uint16) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var p [4]byte
	binary.BigEndian.PutUint16(p[:2], width)
	binary.BigEndian.PutUint16(p[2:], height)
	c.wbuf = appendFrame(c.wbuf[:0], frameResize, p[:])
	if _, err := c.c.Write(c.wbuf); err != nil {
		return fmt.Errorf("write resize: %w", err)
	}
	return nil
}

// gotFeatures records the agent's features frame and sends what Ack and
// Claim held back.
func (c *Conn) gotFeatures(p []byte) error {
	var f features
	if err := json.Unmarshal(p, &f); err != nil {
		return fmt.Errorf("read frame: features: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.feat != featUnknown {
		return errors.New("read frame: features frame after the first frame")
	}
	c.feat, c.agentFeatures = featKnown, f.Features
	if c.pendingClaim && hasFeature(f.Features, featureSize) {
		if err := c.writeLocked(frameClaim, nil); err != nil {
			return err
		}
	}
	if c.pendingAck >= 0 && hasFeature(f.Features, featureAck) {
		if err := c.writeAckLocked(c.pendingAck); err != nil {
			return err
		}
	}
	if c.pendingVisible >= 0 && hasFeature(f.Features, featureAck) {
		if err := c.writeLocked(frameVisible, []byte{byte(c.pendingVisible)}); err != nil {
			return err
		}
	}
	c.pendingAck, c.pendingClaim, c.pendingVisible = -1, false, -1
	return nil
}

// SetVisible tells the agent whether the client is visible. A hidden
// client gets no output and does not hold the session back (its
// acknowledgements would come slowly, if at all); shown again, it gets a
// fresh screen if it missed output. It does nothing if the agent does not
// support flow control.
func (c *Conn) SetVisible(visible bool) error {
	var v byte
	if visible {
		v = 1
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch c.feat {
	case featUnknown:
		c.pendingVisible = int(v)
		return nil
	case featNone:
		return nil
	}
	if !hasFeature(c.agentFeatures, featureAck) {
		return nil
	}
	return c.writeLocked(frameVisible, []byte{v})
}

// noFeatures notes, at the first frame, that the agent announced none.
func (c *Conn) noFeatures() {
	c.wmu.Lock()
	if c.feat == featUnknown {
		c.feat = featNone
		c.pendingAck, c.pendingClaim, c.pendingVisible = -1, false, -1
	}
	c.wmu.Unlock()
}

// Ack tells the agent that the client has drawn n more bytes of screen
// and output frames. The first call turns flow control on for this attach:
// the agent then stops reading the PTY while n falls [ServerOptions.Window]
// bytes behind (for the fastest of the session's flow-controlled
// attaches). It does nothing if the agent does not support flow control.
func (c *Conn) Ack(n int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch c.feat {
	case featUnknown:
		if c.pendingAck < 0 {
			c.pendingAck = 0
		}
		c.pendingAck += n
		return nil
	case featNone:
		return nil
	}
	if !hasFeature(c.agentFeatures, featureAck) {
		return nil
	}
	return c.writeAckLocked(n)
}

func (c *Conn) writeAckLocked(n int) error {
	for {
		m := min(n, maxAck)
		var p [4]byte
		binary.BigEndian.PutUint32(p[:], uint32(m))
		if err := c.writeLocked(frameAck, p[:]); err != nil {
			return err
		}
		n -= m
		if n <= 0 {
			return nil
		}
	}
}

// Claim makes this attach the session's active one: the session takes
// this attach's size (its hello's, or its latest Resize) and every attach
// gets a FrameSize. A user's keystroke or focus should claim. It does
// nothing if the agent does not support it.
func (c *Conn) Claim() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch c.feat {
	case featUnknown:
		c.pendingClaim = true
		return nil
	case featNone:
		return nil
	}
	if !hasFeature(c.agentFeatures, featureSize) {
		return nil
	}
	return c.writeLocked(frameClaim, nil)
}

func (c *Conn) writeLocked(k byte, p []byte) error {
	c.wbuf = appendFrame(c.wbuf[:0], k, p)
	if _, err := c.c.Write(c.wbuf); err != nil {
		return fmt.Errorf("write frame %q: %w", k, err)
	}
	return nil
}

// Close closes the connection; the session on the agent lives on. It
// unblocks ReadFrame and pending writes.
func (c *Conn) Close() error {
	return c.c.Close()
}

// NetConn returns the underlying connection, for deadlines and tests.
func (c *Conn) NetConn() net.Conn {
	return c.c
}
