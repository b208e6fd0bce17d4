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
)

const (
	frameHello  byte = 'h'
	frameInput  byte = 'i'
	frameResize byte = 'r'
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
//	'h' hello   client→agent  JSON {"version":1,"reconnect":"<uuid>","width":80,"height":24,"command":""}
//	'i' input   client→agent  raw bytes for the PTY
//	'r' resize  client→agent  width:uint16 | height:uint16, big-endian
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
type Conn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
	// more holds output coalesced by ReadFrameCoalesced.
	more []byte

	// wmu serialises writes.
	wmu  sync.Mutex
	wbuf []byte
}

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
	return &Conn{c: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// ReadFrame blocks until the agent sends a frame or the connection fails.
// After FrameExit or FrameError the next call returns io.EOF.
func (c *Conn) ReadFrame() (Frame, error) {
	k, p, err := readFrame(c.br, c.buf)
	c.buf = p[:0]
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Kind: FrameKind(k), Data: p}
	switch f.Kind {
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

// Close closes the connection; the session on the agent lives on. It
// unblocks ReadFrame and pending writes.
func (c *Conn) Close() error {
	return c.c.Close()
}

// NetConn returns the underlying connection, for deadlines and tests.
func (c *Conn) NetConn() net.Conn {
	return c.c
}
