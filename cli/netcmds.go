package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"
	"tailscale.com/net/speedtest"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

func newPingCmd() *cobra.Command {
	var num IntValue
	var timeout, wait DurationValue
	cmd := apiCmd(&cobra.Command{
		Use:   "ping <workspace>",
		Short: "Ping a workspace's agent over the tailnet, and tell whether the connection is direct (p2p) or relayed",
		Args:  cobra.ExactArgs(1),
	}, false, func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ac, w, err := dialAgent(nctx, c, args[0], cliLogger(false))
		if err != nil {
			return tunnelError(err)
		}
		defer ac.Close()
		bi, err := c.BuildInfo(ctx)
		if err != nil {
			return err
		}
		n, addr := ac.node, ac.addr
		name := w.Name + "." + agentName(w, ac.addr)
		var last tailnet.PingResult
		var got int
		for i := 0; i < int(num); i++ {
			if i > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(wait)):
				}
			}
			pctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
			res, err := n.Ping(pctx, addr)
			cancel()
			if err != nil {
				fmt.Printf("ping to %s timed out after %s\n", name, time.Duration(timeout))
				continue
			}
			got++
			last = res
			if res.Direct {
				fmt.Printf("pong from %s p2p via %s in %s\n", name, res.Endpoint, sdk.FormatLatency(res.Latency))
			} else {
				fmt.Printf("pong from %s proxied via DERP(%s) in %s\n", name, res.DERPRegionCode, sdk.FormatLatency(res.Latency))
			}
		}
		fmt.Println()
		switch {
		case got == 0:
			fmt.Println("✘ No pongs: the agent is on the tailnet but does not answer. Check the agent's logs.")
			return &ExitError{Code: 1}
		case last.Direct:
			fmt.Println("✔ You are connected directly (p2p)")
		default:
			fmt.Println("❗ You are connected via a DERP relay, not directly (p2p)")
			if bi.BlockDirect {
				fmt.Println("   Reason: the deployment relays every connection (--block-direct-connections).")
			} else {
				fmt.Println("   Reason: no direct UDP path was found between you and the workspace (UDP may be blocked by a firewall or a hard NAT).")
				fmt.Println("   Run `coder netcheck` to see what your network allows.")
			}
		}
		return nil
	})
	OptionSet{
		{Flag: "num", Short: "n", Default: "5", Value: &num, Description: "Number of pings."},
		{Flag: "timeout", Short: "t", Default: "5s", Value: &timeout, Description: "Time to wait for each pong."},
		{Flag: "wait", Default: "1s", Value: &wait, Description: "Time between pings."},
	}.Register(cmd)
	return cmd
}

// speedtestResult is one row of `coder speedtest -o json`.
type speedtestResult struct {
	IntervalStart float64 `json:"interval_start_seconds"`
	IntervalEnd   float64 `json:"interval_end_seconds"`
	Bytes         int     `json:"transferred_bytes"`
	MbitsPerSec   float64 `json:"throughput_mbits"`
	Total         bool    `json:"total,omitempty"`
}

func newSpeedtestCmd() *cobra.Command {
	var duration DurationValue
	direction := EnumValue{choices: []string{"down", "up"}}
	cmd := apiCmd(&cobra.Command{
		Use:   "speedtest <workspace>",
		Short: "Measure throughput between you and a workspace over the tailnet",
		Args:  cobra.ExactArgs(1),
	}, true, func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
		d := time.Duration(duration)
		if d < speedtest.MinDuration || d > speedtest.MaxDuration {
			return fmt.Errorf("--time (-t) must be between %s and %s", speedtest.MinDuration, speedtest.MaxDuration)
		}
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ac, _, err := dialAgent(nctx, c, args[0], cliLogger(false))
		if err != nil {
			return tunnelError(err)
		}
		defer ac.Close()
		dir := speedtest.Download
		if direction.v == "up" {
			dir = speedtest.Upload
		}
		results, err := runSpeedtest(ctx, ac, dir, d, o.Output.v != "json")
		if err != nil {
			return err
		}
		var t0 time.Time
		if len(results) > 0 {
			t0 = results[0].IntervalStart
		}
		since := func(t time.Time) float64 { return t.Sub(t0).Seconds() }
		if o.Output.v == "json" {
			var out []speedtestResult
			for _, r := range results {
				out = append(out, speedtestResult{since(r.IntervalStart), since(r.IntervalEnd), r.Bytes, r.MBitsPerSecond(), r.Total})
			}
			return printJSON(os.Stdout, out)
		}
		var rows [][]string
		for _, r := range results {
			rows = append(rows, []string{
				fmt.Sprintf("%.2f-%.2f sec", since(r.IntervalStart), since(r.IntervalEnd)),
				fmt.Sprintf("%.4f MBits", r.MegaBits()),
				fmt.Sprintf("%.4f Mbits/sec", r.MBitsPerSecond()),
			})
		}
		printTable(os.Stdout, []string{"interval", "transfer", "bandwidth"}, rows)
		return nil
	})
	OptionSet{
		{Flag: "time", Short: "t", Default: "5s", Value: &duration, Description: "How long the test runs (5s to 30s)."},
		{Flag: "direction", Short: "d", Default: "down", Value: &direction, Description: "down (workspace to you) or up."},
	}.Register(cmd)
	return cmd
}

// runSpeedtest runs tailscale's speedtest client against the agent. The
// client dials a host:port, so it is given a loopback listener that pipes
// its one connection to the agent over the tailnet.
func runSpeedtest(ctx context.Context, ac *agentConn, dir speedtest.Direction, d time.Duration, progress bool) ([]speedtest.Result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	pipeDone := make(chan struct{})
	go func() {
		defer close(pipeDone)
		local, err := ln.Accept()
		if err != nil {
			return
		}
		remote, err := ac.dial(ctx, sdk.AgentSpeedtestPort)
		if err != nil {
			return
		}
		pipeConns(local, remote)
	}()
	if progress {
		fmt.Fprintf(os.Stderr, "Starting a %s %s test...\n", d, map[speedtest.Direction]string{speedtest.Download: "download", speedtest.Upload: "upload"}[dir])
	}
	results, err := speedtest.RunClient(dir, d, ln.Addr().String())
	ln.Close()
	<-pipeDone
	if err != nil {
		return nil, fmt.Errorf("speedtest: %w", err)
	}
	return results, nil
}

func newNetcheckCmd() *cobra.Command {
	return apiCmd(&cobra.Command{
		Use:   "netcheck",
		Short: "Check what your network allows: UDP, IPv4/IPv6, and the latency to each DERP region (JSON)",
		Args:  cobra.NoArgs,
	}, false, func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
		dm, err := c.DERPMap(ctx)
		if err != nil {
			return err
		}
		if err := tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: c.URL.String()}); err != nil {
			return err
		}
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, err := tailnet.Netcheck(nctx, dm)
		if err != nil {
			return fmt.Errorf("netcheck: %w", err)
		}
		return printJSON(os.Stdout, rep)
	})
}

// agentName names the agent of w at addr.
func agentName(w sdk.Workspace, addr netip.Addr) string {
	for _, ag := range w.Agents {
		if tailnet.AddrOf(tailnet.KindAgent, ag.ID) == addr {
			return ag.Name
		}
	}
	return "agent"
}
