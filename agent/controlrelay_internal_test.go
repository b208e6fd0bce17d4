package agent

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
)

func TestNeedsControlRelay(t *testing.T) {
	for raw, want := range map[string]bool{
		"http://127.0.0.1:3000":       true,
		"http://localhost:3000/coder": true,
		"http://10.1.2.3":             true,
		"http://[::1]:3000":           true,
		"https://127.0.0.1:3443":      false, // tailscale's dial fails fast: no relay
		"http://coder.example.com":    false, // has the port 443 fallback
		"http://192.0.2.10:3000":      false, // a public address (documentation range)
	} {
		u, _ := url.Parse(raw)
		if got := needsControlRelay(u); got != want {
			t.Errorf("%s: relay %v, want %v", raw, got, want)
		}
	}
}

// TestControlRelayWaitsForServer: a connection to the relay while the
// server is down is held, not refused, and goes through once the server
// listens again (as after a restart on the same port); stop ends it.
func TestControlRelayWaitsForServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the server is down
	u, _ := url.Parse("http://" + addr + "/base")
	relayURL, stop := startControlRelay(u, testutil.Logger(t, slog.LevelDebug))
	defer stop()
	ru, err := url.Parse(relayURL)
	if err != nil || ru.Host == u.Host || ru.Path != "/base" || ru.Scheme != "http" {
		t.Fatalf("relay URL %q (%v)", relayURL, err)
	}
	c, err := net.Dial("tcp", ru.Host)
	if err != nil {
		t.Fatalf("dial the relay while the server is down: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The server comes back on its port.
	var srv net.Listener
	testutil.Eventually(t, 10*time.Second, "the server's port to be free", func() bool {
		srv, err = net.Listen("tcp", addr)
		return err == nil
	})
	defer srv.Close()
	sc, err := srv.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("server read %q (%v)", buf, err)
	}
	if _, err := sc.Write([]byte("back!")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "back!" {
		t.Fatalf("node read %q (%v)", buf, err)
	}
	stop()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("the relayed connection outlived stop")
	}
}
