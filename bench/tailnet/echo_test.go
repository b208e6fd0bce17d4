package tailnetbench

import (
	"bytes"
	"context"
	"flag"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/terminal"
)

var echoKeys = flag.Int("echo-keys", 400, "keys typed per BenchmarkTerminalEcho run")

// BenchmarkTerminalEcho types -echo-keys keys, -rtt-think apart (a typist
// lets every goroutine park; 30ms is a fair pace), into bash through the
// terminal protocol: a terminal.Conn attached to a terminal.Server on a
// real PTY, as the server's relay attaches to the agent. It runs the same
// thing twice, over loopback TCP and over the tailnet (a client node
// dialling an agent node in this process, direct UDP), and reports each
// path's echo p50 and p99. The difference is what the tailnet crossing
// costs every keystroke of the web terminal.
//
//	go test -tags=ts_debug_websockets -run=^$ -bench=TerminalEcho -benchtime=1x -rtt-think=30ms ./bench/tailnet
func BenchmarkTerminalEcho(b *testing.B) {
	for _, path := range []string{"loopback", "tailnet"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				runTerminalEcho(b, path)
			}
		})
	}
}

func runTerminalEcho(b *testing.B, path string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := terminal.NewServer(terminal.ServerOptions{Shell: "/bin/bash", Dir: b.TempDir()})
	defer srv.Close()

	var ln net.Listener
	var dial terminal.DialFunc
	var err error
	switch path {
	case "loopback":
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		var d net.Dialer
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", ln.Addr().String()) }
	case "tailnet":
		cli, agent := startPair(ctx, b, false)
		ln, err = agent.Listen(9000)
		dial = func(ctx context.Context) (net.Conn, error) { return dialUntil(ctx, cli, agent, 9000) }
	}
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)

	c, err := terminal.Attach(ctx, dial, terminal.Params{Reconnect: uuid.NewString(), Width: 120, Height: 40,
		Command: "exec bash --noprofile --norc"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var got []byte
	// wait reads output until want has appeared in it since the last call.
	wait := func(want string) {
		for !bytes.Contains(got, []byte(want)) {
			f, err := c.ReadFrame()
			if err != nil {
				b.Fatalf("%s: waiting for %q: %v", path, want, err)
			}
			if f.Kind == terminal.FrameScreen {
				got = got[:0]
			}
			got = append(got, f.Data...)
		}
		got = got[:0]
	}
	typ := func(s string) {
		if err := c.WriteInput([]byte(s)); err != nil {
			b.Fatal(err)
		}
	}
	// A prompt no echo can contain.
	typ("PS1='RD''Y> '\r")
	wait("RDY> ")

	lat := make([]time.Duration, 0, *echoKeys)
	for i := range *echoKeys {
		if i%40 == 39 {
			// Keep the line short: run it (command not found) and wait
			// for the prompt, off the clock.
			typ("\r")
			wait("RDY> ")
		}
		time.Sleep(*rttThink)
		k := string(rune('a' + i%26))
		t0 := time.Now()
		typ(k)
		wait(k)
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.Logf("%s: %d keys %v apart, echo p50 %.3f ms, p99 %.3f ms", path, len(lat), *rttThink, pct(0.5), pct(0.99))
}
