package agent

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
)

// TestSetPortsOnlyChanges: reading the same ports again wakes nothing and
// sends nothing; a change wakes the control connection once.
func TestSetPortsOnlyChanges(t *testing.T) {
	t.Parallel()
	a := &Agent{changed: make(chan struct{}, 1)}
	woken := func() bool {
		select {
		case <-a.changed:
			return true
		default:
			return false
		}
	}
	p := []sdk.ListeningPort{{Port: 8080, Network: "tcp", ProcessName: "python3"}}
	a.setPorts(p)
	if !woken() {
		t.Fatal("first ports did not wake the connection")
	}
	v := a.reports.portsVer
	a.setPorts(slices.Clone(p))
	if woken() || a.reports.portsVer != v {
		t.Fatal("the same ports again woke the connection")
	}
	a.setPorts(nil)
	if !woken() || a.reports.portsVer == v {
		t.Fatal("a change did not wake the connection")
	}
	// Health likewise.
	a.setHealth("", "", map[string]string{"web": sdk.AppHealthInitializing})
	woken()
	a.setHealth("web", sdk.AppHealthInitializing, nil)
	if woken() {
		t.Fatal("the same health again woke the connection")
	}
}

// TestReportsNewPort runs a real agent against a control endpoint that
// records its messages: it sends its ports on connecting, and the port of
// a listener that opens afterwards. (Other processes of this machine may
// open ports too, so the test does not count messages.)
func TestReportsNewPort(t *testing.T) {
	t.Parallel()
	msgs := make(chan []byte, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		var hello sdk.AgentHello
		if conn.ReadJSON(&hello) != nil || conn.WriteJSON(sdk.AgentManifest{AgentName: "main"}) != nil {
			return
		}
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			select {
			case msgs <- b:
			default:
			}
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	a, err := New(Options{URL: u, Token: "t", NoTailnet: true, PortScanInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	next := func() sdk.AgentListeningPorts {
		t.Helper()
		var b []byte
		select {
		case b = <-msgs:
		case <-time.After(30 * time.Second):
			t.Fatal("no message from the agent in 30 s")
		}
		var m sdk.AgentListeningPorts
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for m := next(); m.Type != sdk.AgentMessageListeningPorts; m = next() {
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	testutil.Eventually(t, 10*time.Second, "the new port reported", func() bool {
		m := next()
		for _, p := range m.Ports {
			if p.Port == port {
				return true
			}
		}
		return false
	})
}
