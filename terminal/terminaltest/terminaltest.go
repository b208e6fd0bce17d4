// Package terminaltest provides helpers for tests of the reconnecting PTY:
// an agent-side [terminal.Server] on loopback TCP, a wire-protocol client
// that records what it receives, and bounded polling. Import it only from
// tests.
package terminaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatewaydev/coder/terminal"
)

// WaitLong bounds the waits of the helpers.
const WaitLong = 20 * time.Second

// StartServer starts srv on a loopback TCP listener and returns a dial
// function for it. Cleanup closes the server and checks that Serve ended
// with ErrServerClosed.
func StartServer(t testing.TB, srv *terminal.Server) terminal.DialFunc {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, terminal.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	addr := l.Addr().String()
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// Client is a wire-protocol client that reads frames in a goroutine and
// records the output since the last screen frame.
type Client struct {
	t    testing.TB
	conn *terminal.Conn
	done chan struct{}

	resumeOnce sync.Once
	resume     chan struct{}

	mu       sync.Mutex
	text     []byte // output since the last screen frame, including it
	limit    int
	total    int // bytes received
	screens  int // screen frames received
	exited   bool
	exitCode int
	errMsg   string
	size     terminal.Frame // the last FrameSize
	err      error          // read error that ended the client
	updated  chan struct{}  // closed and replaced on every change
}

// ClientOptions configure Attach.
type ClientOptions struct {
	// Paused makes the client read nothing until Resume.
	Paused bool
	// Limit bounds the recorded text (the tail is kept). Zero means 16 MiB.
	Limit int
}

// Attach attaches to p.Reconnect through dial and starts reading. Cleanup
// closes the client.
func Attach(t testing.TB, dial terminal.DialFunc, p terminal.Params, opts ClientOptions) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitLong)
	defer cancel()
	conn, err := terminal.Attach(ctx, dial, p)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	return NewClient(t, conn, opts)
}

// NewClient starts reading conn, made by [terminal.Attach]. Cleanup
// closes the client.
func NewClient(t testing.TB, conn *terminal.Conn, opts ClientOptions) *Client {
	c := &Client{
		t:       t,
		conn:    conn,
		done:    make(chan struct{}),
		resume:  make(chan struct{}),
		limit:   opts.Limit,
		updated: make(chan struct{}),
	}
	if c.limit == 0 {
		c.limit = 16 << 20
	}
	if !opts.Paused {
		c.Resume()
	}
	go c.read()
	t.Cleanup(c.Close)
	return c
}

func (c *Client) read() {
	defer close(c.done)
	<-c.resume
	for {
		f, err := c.conn.ReadFrame()
		c.mu.Lock()
		switch {
		case err != nil:
			c.err = err
		case f.Kind == terminal.FrameScreen:
			c.screens++
			c.text = append(c.text[:0], f.Data...)
			c.total += len(f.Data)
		case f.Kind == terminal.FrameOutput:
			c.text = append(c.text, f.Data...)
			if len(c.text) > c.limit {
				c.text = append(c.text[:0], c.text[len(c.text)-c.limit/2:]...)
			}
			c.total += len(f.Data)
		case f.Kind == terminal.FrameExit:
			c.exited, c.exitCode = true, f.ExitCode
		case f.Kind == terminal.FrameSize:
			c.size = f
		case f.Kind == terminal.FrameError:
			c.errMsg = string(f.Data)
		}
		close(c.updated)
		c.updated = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Resume starts reading after Paused.
func (c *Client) Resume() {
	c.resumeOnce.Do(func() { close(c.resume) })
}

// Close closes the connection and waits for the reader.
func (c *Client) Close() {
	c.conn.Close()
	c.Resume()
	<-c.done
}

// Conn returns the underlying connection.
func (c *Client) Conn() *terminal.Conn { return c.conn }

// Type sends s as input.
func (c *Client) Type(s string) {
	c.t.Helper()
	if err := c.conn.WriteInput([]byte(s)); err != nil {
		c.t.Fatalf("type %q: %v", s, err)
	}
}

// Text returns the output since the last screen frame (with that frame).
func (c *Client) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text)
}

// Size returns the last FrameSize received (zero if none).
func (c *Client) Size() (width, height uint16, active bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size.Width, c.size.Height, c.size.Active
}

// Stats returns the bytes and screen frames received so far.
func (c *Client) Stats() (total, screens int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.screens
}

// WaitFor waits until cond holds for the text since the last screen frame,
// failing the test after timeout (or when the connection ends first).
func (c *Client) WaitFor(timeout time.Duration, what string, cond func(text []byte) bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond(c.text)
		ch, err, tail := c.updated, c.err, tailString(c.text, 400)
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			c.t.Fatalf("waiting for %s: connection ended: %v; output ends with %q", what, err, tail)
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("timed out after %v waiting for %s; output ends with %q", timeout, what, tail)
		}
	}
}

// WaitText waits until the text since the last screen frame contains s.
func (c *Client) WaitText(s string) {
	c.t.Helper()
	c.WaitFor(WaitLong, fmt.Sprintf("output %q", s), func(b []byte) bool { return bytes.Contains(b, []byte(s)) })
}

// WaitExit waits for the exit frame and returns the exit code.
func (c *Client) WaitExit() int {
	c.t.Helper()
	deadline := time.NewTimer(WaitLong)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		exited, code, ch, err := c.exited, c.exitCode, c.updated, c.err
		c.mu.Unlock()
		if exited {
			return code
		}
		if err != nil {
			c.t.Fatalf("waiting for exit: connection ended: %v", err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for the exit frame")
		}
	}
}

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
