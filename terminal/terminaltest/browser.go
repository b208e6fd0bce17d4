package terminaltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Browser is a websocket client that speaks the browser side of the relay
// protocol and records what it receives.
type Browser struct {
	t    testing.TB
	ws   *websocket.Conn
	done chan struct{}

	wmu sync.Mutex // serialises writes

	mu        sync.Mutex
	out       []byte // binary output received since the last ESC c
	total     int    // binary bytes received
	resets    int    // ESC c seen at the start of a message
	exitCode  *int
	newSess   int // {"session":"new"} notices received
	closeCode int // 0 until the server closed
	closeText string
	err       error
	updated   chan struct{}
	autoAck   bool
	unacked   int
	pings     int
	size      Size // the last {"size"} message
	sizes     int  // {"size"} messages received
}

// Size is a {"size"} message: the session's size and whether this
// websocket's tab is the active one.
type Size struct {
	Width  int  `json:"width"`
	Height int  `json:"height"`
	Active bool `json:"active"`
}

// BrowserOptions configure DialBrowser.
type BrowserOptions struct {
	// Header is sent with the upgrade request.
	Header http.Header
	// AutoAck sends {"ack":0} first and acknowledges every binary message.
	AutoAck bool
	// IgnorePings leaves pings unanswered (a dead browser).
	IgnorePings bool
}

// DialBrowser connects to the terminal websocket at url (ws://...) and
// starts reading. Cleanup closes it.
func DialBrowser(t testing.TB, url string, opts BrowserOptions) *Browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitLong)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, url, opts.Header)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", url, err, status)
	}
	b := &Browser{t: t, ws: ws, done: make(chan struct{}), updated: make(chan struct{}), autoAck: opts.AutoAck}
	ws.SetPingHandler(func(data string) error {
		b.mu.Lock()
		b.pings++
		b.mu.Unlock()
		if opts.IgnorePings {
			return nil
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	if opts.AutoAck {
		b.Send(map[string]int{"ack": 0})
	}
	go b.read()
	t.Cleanup(b.Close)
	return b
}

func (b *Browser) read() {
	defer close(b.done)
	for {
		typ, p, err := b.ws.ReadMessage()
		b.mu.Lock()
		switch {
		case err != nil:
			b.err = err
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				b.closeCode, b.closeText = ce.Code, ce.Text
			}
		case typ == websocket.BinaryMessage:
			if bytes.HasPrefix(p, []byte("\x1bc")) {
				b.resets++
				b.out = b.out[:0]
			}
			b.out = append(b.out, p...)
			b.total += len(p)
			b.unacked += len(p)
		case typ == websocket.TextMessage:
			var m struct {
				ExitCode *int   `json:"exit_code"`
				Session  string `json:"session"`
				Size     *Size  `json:"size"`
			}
			switch {
			case json.Unmarshal(p, &m) != nil:
				b.err = fmt.Errorf("unexpected text message %q", p)
			case m.ExitCode != nil:
				b.exitCode = m.ExitCode
			case m.Session == "new":
				b.newSess++
			case m.Size != nil:
				b.size = *m.Size
				b.sizes++
			default:
				b.err = fmt.Errorf("unexpected text message %q", p)
			}
		}
		close(b.updated)
		b.updated = make(chan struct{})
		b.mu.Unlock()
		if err != nil {
			return
		}
		if typ == websocket.BinaryMessage {
			b.ackPending()
		}
	}
}

// ackPending acknowledges unacknowledged output if AutoAck is on.
func (b *Browser) ackPending() {
	b.mu.Lock()
	n := b.unacked
	if !b.autoAck || n == 0 {
		b.mu.Unlock()
		return
	}
	b.unacked = 0
	b.mu.Unlock()
	b.wmu.Lock()
	_ = b.ws.WriteJSON(map[string]int{"ack": n})
	b.wmu.Unlock()
}

// SetAutoAck turns acknowledging on or off; turning it on acknowledges
// everything received so far. (Send {"ack":0} to start flow control.)
func (b *Browser) SetAutoAck(on bool) {
	b.mu.Lock()
	b.autoAck = on
	b.mu.Unlock()
	b.ackPending()
}

// Pings returns the pings received.
func (b *Browser) Pings() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pings
}

// Close closes the websocket and waits for the reader.
func (b *Browser) Close() {
	b.wmu.Lock()
	_ = b.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	b.wmu.Unlock()
	b.ws.Close()
	<-b.done
}

// Send writes v as a JSON text message.
func (b *Browser) Send(v any) {
	b.t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		b.t.Fatalf("marshal: %v", err)
	}
	b.SendRaw(websocket.TextMessage, p)
}

// SendRaw writes one message as is. Write errors are ignored: the server
// may already have closed.
func (b *Browser) SendRaw(typ int, p []byte) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.ws.WriteMessage(typ, p)
}

// Type sends {"data": s}.
func (b *Browser) Type(s string) {
	b.t.Helper()
	b.Send(map[string]string{"data": s})
}

// Output returns the binary output since the last full reset (ESC c).
func (b *Browser) Output() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.out)
}

// Resets returns how many messages started with a full reset (ESC c): one
// per screen sent.
func (b *Browser) Resets() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resets
}

// Total returns the binary bytes received.
func (b *Browser) Total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// WaitFor waits until cond holds on the output since the last reset.
func (b *Browser) WaitFor(timeout time.Duration, what string, cond func([]byte) bool) {
	b.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok := cond(b.out)
		ch, err, tail := b.updated, b.err, tailString(b.out, 400)
		b.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			b.t.Fatalf("waiting for %s: websocket ended: %v; output ends with %q", what, err, tail)
		}
		select {
		case <-ch:
		case <-deadline.C:
			b.t.Fatalf("timed out after %v waiting for %s; output ends with %q", timeout, what, tail)
		}
	}
}

// WaitText waits until the output since the last reset contains s.
func (b *Browser) WaitText(s string) {
	b.t.Helper()
	b.WaitFor(WaitLong, fmt.Sprintf("output %q", s), func(p []byte) bool { return bytes.Contains(p, []byte(s)) })
}

// WaitClosed waits until the server closes the websocket and returns the
// exit code message (nil if none came), the close code and its reason.
func (b *Browser) WaitClosed() (exitCode *int, code int, reason string) {
	b.t.Helper()
	deadline := time.NewTimer(WaitLong)
	defer deadline.Stop()
	select {
	case <-b.done:
	case <-deadline.C:
		b.t.Fatalf("timed out waiting for the server to close the websocket")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitCode, b.closeCode, b.closeText
}

// NewSessions returns how many {"session":"new"} notices arrived: one when
// this websocket started its session, none when it re-attached.
func (b *Browser) NewSessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.newSess
}

// Size returns the last {"size"} message and how many arrived.
func (b *Browser) Size() (Size, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size, b.sizes
}

// WaitSize waits until the last {"size"} message is want.
func (b *Browser) WaitSize(want Size) {
	b.t.Helper()
	deadline := time.NewTimer(WaitLong)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		got, ch, err := b.size, b.updated, b.err
		b.mu.Unlock()
		if got == want {
			return
		}
		if err != nil {
			b.t.Fatalf("waiting for size %+v (last %+v): websocket ended: %v", want, got, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			b.t.Fatalf("timed out waiting for size %+v; last %+v", want, got)
		}
	}
}
