package tailnetbench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
	"golang.org/x/sync/errgroup"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

var (
	fanoutNodes   = flag.Int("fanout-nodes", 1000, "lite nodes in BenchmarkFanout")
	fanoutChanges = flag.Int("fanout-changes", 20, "endpoint changes measured in BenchmarkFanout")
	throughputMiB = flag.Int("throughput-mib", 1024, "MiB sent per throughput run (smaller runs mostly measure the TCP ramp)")
	derpMiB       = flag.Int("throughput-derp-mib", 256, "MiB sent per throughput run through DERP")
	tcpBuffer     = flag.Int("tcp-buffer", 2<<20, "each node's TCP buffer cap in bytes, as coder's --tailnet-tcp-buffer (0: tailscale's own)")
)

// fanoutProbe records when each watcher first saw the current target
// endpoint of the changing node.
type fanoutProbe struct {
	target key.NodePublic
	mu     sync.Mutex
	want   netip.AddrPort
	seen   map[int]time.Time
	all    chan struct{}
	n      int
}

func (p *fanoutProbe) observer(i int) func(*tailcfg.MapResponse, time.Time) {
	return func(res *tailcfg.MapResponse, at time.Time) {
		for _, n := range append(res.Peers, res.PeersChanged...) {
			if n.Key != p.target || len(n.Endpoints) == 0 {
				continue
			}
			p.mu.Lock()
			if n.Endpoints[0] == p.want {
				if _, ok := p.seen[i]; !ok {
					p.seen[i] = at
					if len(p.seen) == p.n {
						close(p.all)
					}
				}
			}
			p.mu.Unlock()
		}
	}
}

// BenchmarkFanout registers -fanout-nodes lite nodes (agents of many users
// plus one server node that sees them all), then changes the server
// node's endpoints -fanout-changes times and measures how long each agent
// takes to receive the change: p50, p99 and max (time until all peers got
// it), and heap per node (control server and lite client together, both
// in this process).
func BenchmarkFanout(b *testing.B) {
	for b.Loop() {
		runFanout(b)
	}
}

func runFanout(b *testing.B) {
	h := tailnettest.New(b, tailnettest.Options{NoSTUN: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()

	srvID := tailnet.Identity{Kind: tailnet.KindServer, ID: "replica-1", Name: "coderd"}
	srv, err := tailnettest.NewLiteNode(ctx, h.URL, h.Auth.Add(srvID), srvID, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	probe := &fanoutProbe{target: srv.NodeKey.Public(), n: *fanoutNodes - 1}

	agents := make([]*tailnettest.LiteNode, *fanoutNodes-1)
	start := time.Now()
	var eg errgroup.Group
	eg.SetLimit(32)
	for i := range agents {
		eg.Go(func() error {
			id := tailnet.Identity{Kind: tailnet.KindAgent, ID: fmt.Sprintf("agent-%d", i), OwnerID: fmt.Sprintf("user-%d", i%100), Name: fmt.Sprintf("a%d", i)}
			l, err := tailnettest.NewLiteNode(ctx, h.URL, h.Auth.Add(id), id, probe.observer(i))
			agents[i] = l
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, a := range agents {
			if a != nil {
				a.Close()
			}
		}
	}()
	if err := srv.WaitFor(ctx, func(_ *tailcfg.Node, p []*tailcfg.Node) bool { return len(p) == len(agents) }); err != nil {
		b.Fatal(err)
	}
	b.Logf("registered %d nodes in %v", *fanoutNodes, time.Since(start))
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	perNode := float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(*fanoutNodes)
	goroutines := float64(runtime.NumGoroutine()-g0) / float64(*fanoutNodes)

	var lat []time.Duration
	var worst []time.Duration
	for c := 0; c < *fanoutChanges; c++ {
		ep := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+c))
		probe.mu.Lock()
		probe.want = ep
		probe.seen = make(map[int]time.Time, probe.n)
		probe.all = make(chan struct{})
		all := probe.all
		probe.mu.Unlock()
		t0 := time.Now()
		if err := srv.SetEndpoints(ctx, []netip.AddrPort{ep}, 999); err != nil {
			b.Fatal(err)
		}
		select {
		case <-all:
		case <-ctx.Done():
			b.Fatalf("change %d: only %d of %d peers got it", c, len(probe.seen), probe.n)
		}
		probe.mu.Lock()
		var max time.Duration
		for _, at := range probe.seen {
			d := at.Sub(t0)
			lat = append(lat, d)
			max = (max + d + (max - d).Abs()) / 2
		}
		probe.mu.Unlock()
		worst = append(worst, max)
	}
	slices.Sort(lat)
	slices.Sort(worst)
	pct := func(s []time.Duration, p float64) float64 {
		return float64(s[int(float64(len(s)-1)*p)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(worst, 0.99), "p99-all-peers-ms")
	b.ReportMetric(perNode/1024, "heap-KiB/node")
	b.ReportMetric(goroutines, "goroutines/node")
	st := h.Server().Stats()
	b.Logf("nodes=%d changes=%d per-peer p50=%.2fms p99=%.2fms; time until all %d peers: p50=%.2fms p99=%.2fms max=%.2fms; heap %.0f KiB/node (server+client); %.1f goroutines/node; map messages %v",
		*fanoutNodes, *fanoutChanges, pct(lat, 0.5), pct(lat, 0.99), probe.n, pct(worst, 0.5), pct(worst, 0.99), pct(worst, 1), perNode/1024, goroutines, st.MapResponses)
}

// BenchmarkThroughput sends -throughput-mib MiB from a client node to an
// agent node over tailnet TCP, direct and with DERP forced, and reports
// MB/s (until the receiver got everything) and the CPU time the process
// spent per GB: both ends run here, so that is the whole cost of moving a
// byte (WireGuard both ways, two userspace TCP stacks, UDP or DERP), and it
// varies less than MB/s on a shared machine.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name        string
		blockDirect bool
	}{{"direct", false}, {"derp", true}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				runThroughput(b, tc.blockDirect)
			}
		})
	}
}

func runThroughput(b *testing.B, blockDirect bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mib := *throughputMiB
	if blockDirect {
		mib = *derpMiB
	}
	size := int64(mib) << 20
	var got atomic.Int64
	done := make(chan error, 1)
	cli, agent, c := connectPair(ctx, b, blockDirect, func(c net.Conn) {
		n, err := io.Copy(io.Discard, c)
		got.Store(n)
		done <- err
	})
	r, _ := cli.Ping(ctx, agent.Addr())
	buf := make([]byte, 256<<10)
	cpu0 := cpuTime()
	t0 := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	cpu := cpuTime() - cpu0
	if got.Load() != size {
		b.Fatalf("received %d of %d bytes", got.Load(), size)
	}
	mbps := float64(size) / d.Seconds() / 1e6
	cpuPerGB := cpu.Seconds() / (float64(size) / 1e9)
	b.ReportMetric(mbps, "MB/s")
	b.ReportMetric(cpuPerGB, "cpu-s/GB")
	b.SetBytes(size)
	b.Logf("%d MiB in %v: %.1f MB/s, %.2f CPU-s per GB (path: direct=%v derp=%d endpoint=%s; TCP buffer cap %d KiB)",
		mib, d.Round(time.Millisecond), mbps, cpuPerGB, r.Direct, r.DERPRegionID, r.Endpoint, *tcpBuffer>>10)
}

// BenchmarkRoundTrip bounces one byte between a client node and an agent
// node over tailnet TCP (direct) -rtt-n times and reports the round trip's
// p50 and p99: the floor under every keystroke echoed by the web terminal,
// which crosses the tailnet twice (server to agent and back).
func BenchmarkRoundTrip(b *testing.B) {
	for b.Loop() {
		runRoundTrip(b)
	}
}

var (
	rttN     = flag.Int("rtt-n", 2000, "round trips per BenchmarkRoundTrip run")
	rttThink = flag.Duration("rtt-think", 0, "pause between round trips (a typist's think time lets every goroutine on the path park)")
)

func runRoundTrip(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, c := connectPair(ctx, b, false, func(c net.Conn) { io.Copy(c, c) })
	defer c.Close()
	lat := make([]time.Duration, 0, *rttN)
	buf := []byte{0}
	for i := 0; i < *rttN+100; i++ {
		if *rttThink > 0 {
			time.Sleep(*rttThink)
		}
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		if i >= 100 { // the first ones warm up the path
			lat = append(lat, time.Since(t0))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.Logf("%d round trips of 1 byte, %v apart: p50 %.3f ms, p99 %.3f ms, max %.3f ms", len(lat), *rttThink, pct(0.5), pct(0.99), pct(1))
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// connectPair starts a client node and an agent node of one user, serves
// the first connection to the agent's port 9000 with serve (on its own
// goroutine; the connection is closed after), and returns both nodes and
// the client's connection to it.
func connectPair(ctx context.Context, b *testing.B, blockDirect bool, serve func(net.Conn)) (cli, agent *tailnet.Node, c net.Conn) {
	b.Helper()
	cli, agent = startPair(ctx, b, blockDirect)
	ln, err := agent.Listen(9000)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	c, err = dialUntil(ctx, cli, agent, 9000)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return cli, agent, c
}

// startPair starts a client node and an agent node of one user and waits
// until the client knows the agent.
func startPair(ctx context.Context, b *testing.B, blockDirect bool) (cli, agent *tailnet.Node) {
	b.Helper()
	h := tailnettest.New(b, tailnettest.Options{BlockDirect: blockDirect, TCPBufferMax: *tcpBuffer})
	agent = h.StartNode(b, tailnet.Identity{Kind: tailnet.KindAgent, ID: "agent", OwnerID: "alice", Name: "dev"})
	cli = h.StartNode(b, tailnet.Identity{Kind: tailnet.KindClient, ID: "key", OwnerID: "alice", Name: "cli"})
	if err := cli.WaitForPeer(ctx, agent.Addr()); err != nil {
		b.Fatal(err)
	}
	return cli, agent
}

// dialUntil dials the agent's port until it answers or ctx ends (the
// path may still be forming).
func dialUntil(ctx context.Context, cli, agent *tailnet.Node, port uint16) (net.Conn, error) {
	for {
		c, err := cli.Dial(ctx, agent.Addr(), port)
		if err == nil || ctx.Err() != nil {
			return c, err
		}
	}
}
