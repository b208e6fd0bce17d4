package terminal_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatewaydev/coder/internal/testutil"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
)

// startRelay serves relay on an httptest server the way handlers/web
// does, and returns the websocket URL prefix (append "?reconnect=...").
func startRelay(t *testing.T, dial terminal.DialFunc, opts terminal.RelayOptions) (*terminal.Relay, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testutil.Logger(t, slog.LevelDebug)
	}
	relay := terminal.NewRelay(opts)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := terminal.ParseParams(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		// ServeBrowser logs why it ended; nothing to add here.
		_ = relay.ServeBrowser(context.WithoutCancel(r.Context()), ws, dial, p)
	}))
	t.Cleanup(func() {
		relay.Close()
		srv.Close()
	})
	return relay, "ws" + strings.TrimPrefix(srv.URL, "http") + "/pty"
}

func ptyURL(base, id, command string) string {
	q := url.Values{"reconnect": {id}, "width": {"80"}, "height": {"24"}}
	if command != "" {
		q.Set("command", command)
	}
	return base + "?" + q.Encode()
}

func TestRelayEchoResizeAndMetrics(t *testing.T) {
	t.Parallel()
	m := terminal.NewMetrics()
	_, dial := newServer(t, terminal.ServerOptions{})
	_, base := startRelay(t, dial, terminal.RelayOptions{Metrics: m})
	b := terminaltest.DialBrowser(t, ptyURL(base, newID(), shellCmd), terminaltest.BrowserOptions{})
	b.WaitText(testPrompt)
	b.Type("echo hi\r")
	b.WaitText("\r\nhi\r\n")
	b.Send(map[string]int{"height": 30, "width": 100})
	b.Type("stty size\r")
	b.WaitText("\r\n30 100\r\n")
	// A zero size is ignored, a huge one clamped.
	b.Send(map[string]int{"height": 0, "width": 0})
	b.Send(map[string]int{"height": 65535, "width": 65535})
	b.Type("stty size\r")
	b.WaitText(fmt.Sprintf("\r\n%d %d\r\n", terminal.MaxHeight, terminal.MaxWidth))

	if got := gauge(t, m.Terminals); got != 1 {
		t.Errorf("open terminals %v, want 1", got)
	}
	in, out := counter(t, m, "in"), counter(t, m, "out")
	if want := float64(len("echo hi\r") + 2*len("stty size\r")); in != want {
		t.Errorf("bytes in %v, want %v", in, want)
	}
	if out < float64(b.Total()) || out == 0 {
		t.Errorf("bytes out %v, want at least %d", out, b.Total())
	}
	b.Close()
	testutil.Eventually(t, terminaltest.WaitLong, "terminal gauge to drop", func() bool { return gauge(t, m.Terminals) == 0 })
}

func counter(t *testing.T, m *terminal.Metrics, dir string) float64 {
	t.Helper()
	var d dtoMetric
	if err := m.Bytes.WithLabelValues(dir).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func TestRelayExitCode(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	_, base := startRelay(t, dial, terminal.RelayOptions{})
	b := terminaltest.DialBrowser(t, ptyURL(base, newID(), "echo bye; exit 7"), terminaltest.BrowserOptions{})
	exit, code, reason := b.WaitClosed()
	if exit == nil || *exit != 7 {
		t.Errorf("exit code message %v, want 7", exit)
	}
	if code != websocket.CloseNormalClosure || reason != "session ended" {
		t.Errorf("close %d %q, want 1000 \"session ended\"", code, reason)
	}
	if out := string(b.Output()); !strings.Contains(out, "bye\r\n") {
		t.Errorf("output %q lacks the last line", out)
	}
}

func TestRelayRejectsBadFrames(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	_, base := startRelay(t, dial, terminal.RelayOptions{})
	for _, tc := range []struct {
		name   string
		typ    int
		msg    string
		code   int
		reason string
	}{
		{"not JSON", websocket.TextMessage, "ls\r", websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"JSON array", websocket.TextMessage, `["data"]`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"width without height", websocket.TextMessage, `{"width":80}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"negative size", websocket.TextMessage, `{"width":-1,"height":24}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"size too large", websocket.TextMessage, `{"width":65536,"height":24}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"data not a string", websocket.TextMessage, `{"data":42}`, websocket.CloseInvalidFramePayloadData, "invalid message"},
		{"binary", websocket.BinaryMessage, `{"data":"ls"}`, websocket.CloseUnsupportedData, "send JSON text messages"},
		{"oversized", websocket.TextMessage, `{"data":"` + strings.Repeat("x", terminal.MaxInputFrame) + `"}`, websocket.CloseMessageTooBig, "message larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := terminaltest.DialBrowser(t, ptyURL(base, newID(), shellCmd), terminaltest.BrowserOptions{})
			b.WaitText(testPrompt)
			b.SendRaw(tc.typ, []byte(tc.msg))
			exit, code, reason := b.WaitClosed()
			if exit != nil {
				t.Errorf("got an exit message %d", *exit)
			}
			if code != tc.code || !strings.HasPrefix(reason, tc.reason) {
				t.Errorf("close %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
		})
	}
}

func TestRelayAgentUnreachable(t *testing.T) {
	t.Parallel()
	dial := func(ctx context.Context) (net.Conn, error) { return nil, errors.New("no route to agent") }
	_, base := startRelay(t, dial, terminal.RelayOptions{})
	b := terminaltest.DialBrowser(t, ptyURL(base, newID(), ""), terminaltest.BrowserOptions{})
	_, code, reason := b.WaitClosed()
	if code != websocket.CloseInternalServerErr || reason != "cannot reach the workspace agent" {
		t.Errorf("close %d %q, want 1011 \"cannot reach the workspace agent\"", code, reason)
	}
}

func TestRelayBadParamsRejectedBeforeUpgrade(t *testing.T) {
	t.Parallel()
	_, base := startRelay(t, nil, terminal.RelayOptions{})
	_, resp, err := websocket.DefaultDialer.Dial(base+"?reconnect=nope", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dial with a bad reconnect id: %v, %v; want 400", err, resp)
	}
}

// TestRelayHeartbeat is not parallel: its 100 ms heartbeat would time out
// under the load of the other tests.
func TestRelayHeartbeat(t *testing.T) {
	_, dial := newServer(t, terminal.ServerOptions{})
	_, base := startRelay(t, dial, terminal.RelayOptions{PingInterval: 100 * time.Millisecond})

	live := terminaltest.DialBrowser(t, ptyURL(base, newID(), shellCmd), terminaltest.BrowserOptions{})
	testutil.Eventually(t, terminaltest.WaitLong, "pings", func() bool { return live.Pings() >= 3 })
	live.Type("echo alive-$((1+1))\r")
	live.WaitText("\r\nalive-2\r\n")

	dead := terminaltest.DialBrowser(t, ptyURL(base, newID(), shellCmd), terminaltest.BrowserOptions{IgnorePings: true})
	_, code, reason := dead.WaitClosed()
	if code != websocket.CloseGoingAway || reason != "heartbeat timeout" {
		t.Errorf("close %d %q, want 1001 \"heartbeat timeout\"", code, reason)
	}
}

func TestRelayCloseKeepsSession(t *testing.T) {
	t.Parallel()
	_, dial := newServer(t, terminal.ServerOptions{})
	relay, base := startRelay(t, dial, terminal.RelayOptions{})
	id := newID()
	b := terminaltest.DialBrowser(t, ptyURL(base, id, shellCmd), terminaltest.BrowserOptions{})
	b.Type("echo before-$((3*3))\r")
	b.WaitText("\r\nbefore-9\r\n")
	relay.Close()
	if _, code, reason := b.WaitClosed(); code != websocket.CloseGoingAway || reason != "server shutting down" {
		t.Errorf("close %d %q, want 1001 \"server shutting down\"", code, reason)
	}

	// Another relay (a restarted server) re-attaches to the same session.
	_, base2 := startRelay(t, dial, terminal.RelayOptions{})
	b2 := terminaltest.DialBrowser(t, ptyURL(base2, id, shellCmd), terminaltest.BrowserOptions{})
	b2.WaitText("\r\nbefore-9\r\n" + testPrompt)
	// The first websocket started the session and was told so; the
	// re-attach was not (the page says "new session" only when its old one
	// is gone).
	if n1, n2 := b.NewSessions(), b2.NewSessions(); n1 != 1 || n2 != 0 {
		t.Errorf("new-session notices: first attach %d, re-attach %d; want 1 and 0", n1, n2)
	}
}

// TestRelayStress runs 200 sessions through the relay at once, each
// printing a known pseudo-random stream, and checks every byte in order.
// Each stream is smaller than the agent's per-attach queue, so no resync
// can happen: the output is the stream exactly.
func TestRelayStress(t *testing.T) {
	t.Parallel()
	const sessions = 200
	const lines = 1500 // ~16 KB per session
	_, dial := newServer(t, terminal.ServerOptions{Logger: quietLogger(t), MaxSessions: sessions})
	_, base := startRelay(t, dial, terminal.RelayOptions{Logger: quietLogger(t), Window: 4 << 10})
	start := time.Now()
	browsers := make([]*terminaltest.Browser, sessions)
	for i := range browsers {
		seed := 1000 + i
		cmd := fmt.Sprintf(`awk 'BEGIN{x=%d;for(i=0;i<%d;i++){x=(x*69069+1)%%2147483648;printf "%%d\n", x}}'`, seed, lines)
		browsers[i] = terminaltest.DialBrowser(t, ptyURL(base, newID(), cmd), terminaltest.BrowserOptions{AutoAck: i%2 == 0})
	}
	var total int
	for i, b := range browsers {
		exit, code, reason := b.WaitClosed()
		if exit == nil || *exit != 0 || code != websocket.CloseNormalClosure {
			t.Fatalf("session %d: exit %v, close %d %q", i, exit, code, reason)
		}
		want := "\x1bc" + lcgStream(1000+i, lines)
		if got := string(b.Output()); got != want {
			t.Fatalf("session %d: output differs (got %d bytes, want %d) at byte %d", i, len(got), len(want), firstDiff(got, want))
		}
		if b.Resets() != 1 {
			t.Errorf("session %d: %d screens, want 1", i, b.Resets())
		}
		total += len(want)
	}
	t.Logf("%d sessions, %d bytes in %v", sessions, total, time.Since(start))
}

func lcgStream(seed, lines int) string {
	var sb strings.Builder
	x := uint64(seed)
	for range lines {
		x = (x*69069 + 1) % 2147483648
		sb.WriteString(strconv.FormatUint(x, 10))
		sb.WriteString("\r\n")
	}
	return sb.String()
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
