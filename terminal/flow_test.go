package terminal_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// TestRelayFlowControl checks that output in flight is bounded by what the
// browser has acknowledged: a browser that stops acknowledging stops the
// agent reading the PTY (the program blocks, nothing is dropped, no
// resync), the relay never counts more than the agent's window
// unacknowledged, and acknowledging again lets the program finish.
func TestRelayFlowControl(t *testing.T) {
	t.Parallel()
	const window = 16 << 10
	srv, dial := newServer(t, terminal.ServerOptions{Window: window})
	relay, base := startRelay(t, dial, terminal.RelayOptions{})
	id := newID()
	b := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{AutoAck: true})
	b.WaitText(testPrompt)
	b.SetAutoAck(false) // flow control stays on; nothing more is acknowledged
	b.Type("seq 1 1000000; echo $((40+2))done\r")
	testutil.Eventually(t, terminaltest.WaitLong, "the window to fill", func() bool {
		return b.Total() >= window/2
	})
	// seq is blocked on the full PTY: what the browser got stays within
	// the window (plus the prompt screen it had acknowledged).
	total := b.Total()
	if got := relay.MaxUnackedForTest(); got > window {
		t.Errorf("relay counted %d bytes unacknowledged, want at most the agent's window %d", got, window)
	}
	if maxAhead, drops := srv.FlowStatsForTest(id); maxAhead > window || drops != 0 {
		t.Errorf("agent: %d bytes queued or unacknowledged (window %d), %d queue drops; want neither", maxAhead, window, drops)
	}
	b.SetAutoAck(true)
	b.WaitText("\r\n42done\r\n")
	if b.Resets() != 1 {
		t.Errorf("browser saw %d screens, want only the first: nothing was dropped", b.Resets())
	}
	if !contiguous(b.Output(), 1, 1000000) {
		t.Errorf("output of seq has a gap")
	}
	if got := relay.MaxUnackedForTest(); got > window {
		t.Errorf("relay counted %d bytes unacknowledged, want at most %d", got, window)
	}
	if total > window+4096 {
		t.Errorf("browser received %d bytes before acknowledging, want at most the window %d (+ the prompt)", total, window)
	}
}

// contiguous reports whether out holds the lines from..to of seq in order.
func contiguous(out []byte, from, to int) bool {
	next := from
	start := 0
	for i, c := range out {
		if c != '\n' {
			continue
		}
		line := out[start:i]
		start = i + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		n, ok := atoi(line)
		if !ok || n != next {
			if next > from && next <= to {
				return false // a number out of order inside the run
			}
			continue
		}
		next++
	}
	return next == to+1
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// TestFlowSlowTabDoesNotStallOthers: of two tabs on one session, one stops
// acknowledging (a hidden or stuck tab). The other still gets all the
// output at its own pace; the stuck one falls behind, is resynced, and
// gets the current screen once it acknowledges again. A third websocket
// that never turns flow control on (an older page) holds nobody back.
func TestFlowSlowTabDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	const window = 16 << 10
	srv, dial := newServer(t, terminal.ServerOptions{Window: window, QueueBytes: 64 << 10})
	_, base := startRelay(t, dial, terminal.RelayOptions{})
	id := newID()
	fast := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{AutoAck: true})
	fast.WaitText(testPrompt)
	stuck := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{AutoAck: true})
	stuck.WaitText(testPrompt)
	stuck.SetAutoAck(false)
	fast.Type("seq 1 300000; echo $((40+2))done\r")
	fast.WaitText("\r\n42done\r\n")
	if !contiguous(fast.Output(), 1, 300000) {
		t.Errorf("the acknowledging tab's output of seq has a gap")
	}
	if got := stuck.Total(); got > 2*window+(64<<10) {
		t.Errorf("the stuck tab received %d bytes, want about a window", got)
	}
	if _, drops := srv.FlowStatsForTest(id); drops == 0 {
		t.Errorf("the stuck tab's queue never overflowed, want it resynced")
	}
	stuck.SetAutoAck(true)
	stuck.WaitText("42done\r\n" + testPrompt)
	if stuck.Resets() < 2 {
		t.Errorf("the stuck tab saw %d screens, want a resync", stuck.Resets())
	}

	// A websocket without acks does not hold the session back while the
	// acking tab is stuck.
	fast.SetAutoAck(false)
	stuck.SetAutoAck(false)
	old := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{})
	old.WaitText(testPrompt)
	old.Type("seq 1 200000; echo $((40+3))done\r")
	old.WaitText("\r\n43done\r\n")
}

// TestFlowHiddenTabHoldsNobodyBack: a tab that says it is hidden (a
// background browser tab, whose timers run once a second) gets no output
// and does not hold the program back, even as the only tab; shown again,
// it gets the current screen.
func TestFlowHiddenTabHoldsNobodyBack(t *testing.T) {
	t.Parallel()
	const window = 16 << 10
	dir := t.TempDir()
	srv, dial := newServer(t, terminal.ServerOptions{Window: window, QueueBytes: 64 << 10, Dir: dir})
	_, base := startRelay(t, dial, terminal.RelayOptions{})
	id := newID()
	b := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{AutoAck: true})
	b.WaitText(testPrompt)
	b.SetAutoAck(false)
	b.Send(map[string]bool{"visible": false})
	b.Type("seq 1 300000 > /dev/tty; echo done >> notes\r")
	// The program finishes although nothing is acknowledged.
	testutil.Eventually(t, terminaltest.WaitLong, "seq to finish in a hidden tab", func() bool {
		_, drops := srv.FlowStatsForTest(id)
		out, err := os.ReadFile(filepath.Join(dir, "notes"))
		return err == nil && string(out) == "done\n" && drops > 0
	})
	if got := b.Total(); got > window+(64<<10) {
		t.Errorf("the hidden tab received %d bytes, want at most a window and a queue", got)
	}
	b.SetAutoAck(true)
	b.Send(map[string]bool{"visible": true})
	b.Type("echo $((40+2))shown\r")
	b.WaitText("\r\n42shown\r\n")
	if b.Resets() < 2 {
		t.Errorf("the tab saw %d screens, want a fresh one when shown", b.Resets())
	}
}
