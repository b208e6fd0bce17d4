package cli

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewaydev/coder/agent"
	"github.com/gatewaydev/coder/sdk"
)

type portForwardOptions struct {
	TCP     stringsValue
	UDP     stringsValue
	Verbose BoolValue
}

func newPortForwardCmd() *cobra.Command {
	var o portForwardOptions
	cmd := apiCmd(&cobra.Command{
		Use:     "port-forward <workspace>[.<agent>] --tcp LOCAL:REMOTE --udp LOCAL:REMOTE",
		Aliases: []string{"tunnel"},
		Short:   "Forward ports of your machine to ports of a workspace over the tailnet",
		Long: "Each --tcp or --udp is PORT, LOCAL:REMOTE or ADDR:LOCAL:REMOTE (ADDR is the local address to listen on,\n" +
			"127.0.0.1 by default; [::1] for IPv6). Repeat the flags, or separate specs with commas.\n" +
			"Examples: coder port-forward dev --tcp 8080:3000 --tcp 9090 --udp 5353:53",
		Args: cobra.ExactArgs(1),
	}, false, func(ctx context.Context, c *sdk.Client, _ *clientOptions, args []string) error {
		return tunnelError(runPortForward(ctx, c, &o, args[0]))
	})
	OptionSet{
		{Flag: "tcp", Short: "p", Env: "CODER_PORT_FORWARD_TCP", Value: &o.TCP, Description: "Forward a TCP port: [ADDR:]LOCAL:REMOTE or PORT (repeatable)."},
		{Flag: "udp", Env: "CODER_PORT_FORWARD_UDP", Value: &o.UDP, Description: "Forward a UDP port: [ADDR:]LOCAL:REMOTE or PORT (repeatable)."},
		{Flag: "verbose", Short: "v", Env: "CODER_PORT_FORWARD_VERBOSE", Value: &o.Verbose, Description: "Log the tailnet connection to stderr."},
	}.Register(cmd)
	return cmd
}

// portSpec is one forward: listen on Local, forward to Remote in the
// workspace.
type portSpec struct {
	Network string
	Local   netip.AddrPort
	Remote  uint16
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(p), nil
}

// parsePortSpec parses PORT, LOCAL:REMOTE or ADDR:LOCAL:REMOTE.
func parsePortSpec(network, spec string) (portSpec, error) {
	ps := portSpec{Network: network}
	addr := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	rest := spec
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]")
		if end < 0 || end+1 >= len(spec) || spec[end+1] != ':' {
			return ps, fmt.Errorf("--%s %s: want [ADDR:]LOCAL:REMOTE", network, spec)
		}
		a, err := netip.ParseAddr(spec[1:end])
		if err != nil {
			return ps, fmt.Errorf("--%s %s: %q is not an IP address", network, spec, spec[1:end])
		}
		addr, rest = a, spec[end+2:]
	} else if parts := strings.Split(spec, ":"); len(parts) == 3 {
		a, err := netip.ParseAddr(parts[0])
		if err != nil {
			return ps, fmt.Errorf("--%s %s: %q is not an IP address", network, spec, parts[0])
		}
		addr, rest = a, parts[1]+":"+parts[2]
	}
	parts := strings.Split(rest, ":")
	var local, remote uint16
	var err error
	switch len(parts) {
	case 1:
		if local, err = parsePort(parts[0]); err != nil {
			return ps, fmt.Errorf("--%s %s: %w", network, spec, err)
		}
		remote = local
	case 2:
		if local, err = parsePort(parts[0]); err != nil {
			return ps, fmt.Errorf("--%s %s: %w", network, spec, err)
		}
		if remote, err = parsePort(parts[1]); err != nil {
			return ps, fmt.Errorf("--%s %s: %w", network, spec, err)
		}
	default:
		return ps, fmt.Errorf("--%s %s: want [ADDR:]LOCAL:REMOTE", network, spec)
	}
	if network == "tcp" && agent.ReservedPort(remote) {
		return ps, fmt.Errorf("--tcp %s: port %d is reserved for the agent's own services on the tailnet", spec, remote)
	}
	ps.Local, ps.Remote = netip.AddrPortFrom(addr, local), remote
	return ps, nil
}

func runPortForward(ctx context.Context, c *sdk.Client, o *portForwardOptions, target string) error {
	var specs []portSpec
	for _, s := range o.TCP {
		ps, err := parsePortSpec("tcp", s)
		if err != nil {
			return err
		}
		specs = append(specs, ps)
	}
	for _, s := range o.UDP {
		ps, err := parsePortSpec("udp", s)
		if err != nil {
			return err
		}
		specs = append(specs, ps)
	}
	if len(specs) == 0 {
		return errors.New("give at least one --tcp or --udp, like --tcp 8080:3000")
	}
	// Bind every local port first, so that a busy port fails before the
	// tailnet connection.
	var closers []func()
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	tcpLns := map[int]net.Listener{}
	udpConns := map[int]*net.UDPConn{}
	for i, ps := range specs {
		if ps.Network == "tcp" {
			ln, err := net.Listen("tcp", ps.Local.String())
			if err != nil {
				return busyLocalPort(err, ps)
			}
			tcpLns[i] = ln
			closers = append(closers, func() { ln.Close() })
		} else {
			uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ps.Local))
			if err != nil {
				return busyLocalPort(err, ps)
			}
			udpConns[i] = uc
			closers = append(closers, func() { uc.Close() })
		}
	}
	ac, ws, err := dialAgent(ctx, c, target, cliLogger(bool(o.Verbose)))
	if err != nil {
		return err
	}
	defer ac.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, ps := range specs {
		fmt.Fprintf(os.Stderr, "Forwarding %s %s to port %d in workspace %q\n", ps.Network, ps.Local, ps.Remote, ws.Name)
		wg.Add(1)
		if ps.Network == "tcp" {
			go func() {
				defer wg.Done()
				forwardTCP(ctx, ac, tcpLns[i], ps.Remote)
			}()
		} else {
			go func() {
				defer wg.Done()
				forwardUDP(ctx, ac, udpConns[i], ps.Remote)
			}()
		}
	}
	fmt.Fprintln(os.Stderr, "Ready. Press Ctrl+C to stop.")
	<-ctx.Done()
	for _, f := range closers {
		f()
	}
	closers = nil
	return nil
}

func busyLocalPort(err error, ps portSpec) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("local %s port %d on %s is already in use: pick another local port, like --%s %d:%d",
			ps.Network, ps.Local.Port(), ps.Local.Addr(), ps.Network, int(ps.Local.Port())+1, ps.Remote)
	}
	return fmt.Errorf("listen on %s %s: %w", ps.Network, ps.Local, err)
}

// forwardTCP accepts on ln until ctx ends, piping each connection to port
// on the agent.
func forwardTCP(ctx context.Context, ac *agentConn, ln net.Listener, port uint16) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		lc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := ac.dial(ctx, port)
			if err != nil {
				fmt.Fprintf(os.Stderr, "forward tcp to port %d: %v\n", port, err)
				lc.Close()
				return
			}
			pipeConns(lc, rc)
		}()
	}
}

// forwardUDP relays datagrams from each local peer over its own stream to
// the agent's UDP forwarding port, and replies back to that peer.
func forwardUDP(ctx context.Context, ac *agentConn, uc *net.UDPConn, port uint16) {
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	var mu sync.Mutex
	streams := map[netip.AddrPort]net.Conn{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, s := range streams {
			s.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, 65535)
	for {
		n, peer, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		mu.Lock()
		s := streams[peer]
		mu.Unlock()
		if s == nil {
			s, err = ac.dial(ctx, agent.UDPForwardPort)
			if err != nil {
				fmt.Fprintf(os.Stderr, "forward udp to port %d: %v\n", port, err)
				continue
			}
			var hdr [2]byte
			binary.BigEndian.PutUint16(hdr[:], port)
			if _, err := s.Write(hdr[:]); err != nil {
				s.Close()
				continue
			}
			mu.Lock()
			streams[peer] = s
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					if streams[peer] == s {
						delete(streams, peer)
					}
					mu.Unlock()
					s.Close()
				}()
				rb := make([]byte, 65535)
				for {
					s.SetReadDeadline(time.Now().Add(5 * time.Minute))
					n, err := agent.ReadDatagram(s, rb)
					if err != nil {
						return
					}
					uc.WriteToUDPAddrPort(rb[:n], peer)
				}
			}()
		}
		if err := agent.WriteDatagram(s, buf[:n]); err != nil {
			s.Close()
		}
	}
}
