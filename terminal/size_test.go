package terminal_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// waitSize waits until c's last size frame is w×h with the given active
// flag.
func waitSize(t *testing.T, c *terminaltest.Client, w, h uint16, active bool) {
	t.Helper()
	testutil.Eventually(t, terminaltest.WaitLong, fmt.Sprintf("size %dx%d active=%v", w, h, active), func() bool {
		gw, gh, ga := c.Size()
		return gw == w && gh == h && ga == active
	})
}

// sttySize asks the shell for the PTY's size through c.
func sttySize(t *testing.T, c *terminaltest.Client, rows, cols int) {
	t.Helper()
	c.Type("stty size\r")
	c.WaitText(fmt.Sprintf("\r\n%d %d\r\n", rows, cols))
}

// TestSizeFollowsActiveAttach: each attach has its own size; the session
// follows the active one (the first, then the last to claim), every attach
// is told the session's size in order with the output, a resize of an
// attach that is not active changes nothing, and when the active attach
// leaves, the most recently active remaining one (not merely the most
// recently attached) gives the size.
func TestSizeFollowsActiveAttach(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	small := terminaltest.Attach(t, dial, terminal.Params{Reconnect: id, Width: 105, Height: 31, Command: shellCmd}, terminaltest.ClientOptions{})
	small.WaitText(testPrompt)
	waitSize(t, small, 105, 31, true)

	big := terminaltest.Attach(t, dial, terminal.Params{Reconnect: id, Width: 150, Height: 50, Command: shellCmd}, terminaltest.ClientOptions{})
	big.WaitText(testPrompt)
	waitSize(t, big, 105, 31, false) // attaching does not take the size
	sttySize(t, small, 31, 105)

	if err := big.Conn().Claim(); err != nil {
		t.Fatal(err)
	}
	waitSize(t, big, 150, 50, true)
	waitSize(t, small, 150, 50, false)
	sttySize(t, big, 50, 150)

	// A resize of the attach that is not active is remembered, not applied.
	if err := small.Conn().Resize(100, 30); err != nil {
		t.Fatal(err)
	}
	sttySize(t, big, 50, 150)
	if err := small.Conn().Claim(); err != nil {
		t.Fatal(err)
	}
	waitSize(t, small, 100, 30, true)
	waitSize(t, big, 100, 30, false)
	sttySize(t, small, 30, 100)

	// The active attach's resize applies at once.
	if err := small.Conn().Resize(90, 28); err != nil {
		t.Fatal(err)
	}
	waitSize(t, big, 90, 28, false)

	// A third attach that never claims; then the big one claims and
	// leaves: the small one (claimed before) gets the size back, not the
	// third (attached later).
	third := terminaltest.Attach(t, dial, terminal.Params{Reconnect: id, Width: 60, Height: 20, Command: shellCmd}, terminaltest.ClientOptions{})
	third.WaitText(testPrompt)
	if err := big.Conn().Claim(); err != nil {
		t.Fatal(err)
	}
	waitSize(t, third, 150, 50, false)
	big.Close()
	waitSize(t, small, 90, 28, true)
	waitSize(t, third, 90, 28, false)
	sttySize(t, third, 28, 90)

	// The small one leaves too: the third takes over with its own size.
	small.Close()
	waitSize(t, third, 60, 20, true)
	sttySize(t, third, 20, 60)
}

// TestSizeFrameInOrder: the size frame comes exactly between the output
// written before the resize and the program's redraw after it.
func TestSizeFrameInOrder(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	conn, err := terminal.Attach(t.Context(), dial, terminal.Params{Reconnect: id, Width: 80, Height: 24, Command: `trap 'echo "winch $(stty size)"' WINCH; echo ready; while :; do sleep 0.05; done`})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var text strings.Builder
	read := func(until string) []terminal.Frame {
		t.Helper()
		var sizes []terminal.Frame
		_ = conn.NetConn().SetReadDeadline(time.Now().Add(terminaltest.WaitLong))
		for !strings.Contains(text.String(), until) {
			f, err := conn.ReadFrame()
			if err != nil {
				t.Fatalf("waiting for %q: %v; got %q", until, err, text.String())
			}
			switch f.Kind {
			case terminal.FrameSize:
				sizes = append(sizes, f)
				fmt.Fprintf(&text, "<size %dx%d %v>", f.Width, f.Height, f.Active)
			case terminal.FrameScreen, terminal.FrameOutput:
				text.Write(f.Data)
			}
		}
		return sizes
	}
	read("ready")
	if !strings.HasPrefix(text.String(), "<size 80x24 true>") {
		t.Errorf("stream starts %q, want the size before the screen", text.String())
	}
	if err := conn.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	read("winch 40 120")
	s := text.String()
	if i, j := strings.Index(s, "<size 120x40 true>"), strings.Index(s, "winch 40 120"); i < 0 || i > j {
		t.Errorf("size frame not before the redraw: %q", s)
	}
}

// TestOldAgentGetsNoNewFrames: against an agent that predates features
// (it sends no features frame and knows only hello, input and resize),
// Ack and Claim send nothing, so the agent never sees a frame it would
// reject. The fake agent is below the seam that TestSizeFollowsActiveAttach
// covers with the real one.
func TestOldAgentGetsNoNewFrames(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	kinds := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var got []string
		// An old agent: the screen first, then read until the client closes.
		_, _ = c.Write([]byte{'s', 0, 0, 0, 2, 0x1b, 'c'})
		for {
			var h [5]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				break
			}
			got = append(got, string(h[0]))
			if _, err := io.CopyN(io.Discard, br, int64(binary.BigEndian.Uint32(h[1:]))); err != nil {
				break
			}
		}
		kinds <- strings.Join(got, ",")
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", l.Addr().String())
	}
	conn, err := terminal.Attach(t.Context(), dial, terminal.Params{Reconnect: newID()})
	if err != nil {
		t.Fatal(err)
	}
	// Before the first frame: held back.
	if err := conn.Ack(0); err != nil {
		t.Fatal(err)
	}
	if err := conn.Claim(); err != nil {
		t.Fatal(err)
	}
	f, err := conn.ReadFrame()
	if err != nil || f.Kind != terminal.FrameScreen {
		t.Fatalf("first frame %q, %v; want the screen", f.Kind, err)
	}
	// After it: known to be unsupported.
	if err := conn.Ack(10); err != nil {
		t.Fatal(err)
	}
	if err := conn.Claim(); err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteInput([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Resize(100, 30); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case got := <-kinds:
		if got != "h,i,r" {
			t.Errorf("old agent received frames %s, want h,i,r", got)
		}
	case <-time.After(terminaltest.WaitLong):
		t.Fatal("fake agent did not finish")
	}
}

// TestBadFlowFramesEndTheAttach: an ack, claim or visible frame of the
// wrong length ends that attach (not the session), and an ack of more than
// was sent only makes the attach count as caught up.
func TestBadFlowFramesEndTheAttach(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	id := newID()
	keep := terminaltest.Attach(t, dial, terminal.Params{Reconnect: id, Command: shellCmd}, terminaltest.ClientOptions{})
	keep.WaitText(testPrompt)
	for _, bad := range [][]byte{
		{'a', 0, 0, 0, 3, 1, 2, 3},
		{'v', 0, 0, 0, 2, 1, 1},
		{'z', 0, 0, 0, 0},
	} {
		c, err := dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		hello := []byte(`{"version":1,"reconnect":"` + id + `","features":["ack","size"]}`)
		frame := append([]byte{'h', 0, 0, 0, byte(len(hello))}, hello...)
		if _, err := c.Write(append(frame, bad...)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(terminaltest.WaitLong))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("frame %q: the agent did not close the attach: %v", bad[0], err)
		}
		c.Close()
	}
	// An ack far beyond what was sent.
	if err := keep.Conn().Ack(1 << 30); err != nil {
		t.Fatal(err)
	}
	keep.Type("echo $((40+2))alive\r")
	keep.WaitText("\r\n42alive\r\n")
}
