package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

// UDPForwardPort is the agent's tailnet port that carries UDP datagrams
// over a TCP stream to a UDP port of the workspace's localhost (the
// coordination server lets clients reach agents over TCP only). The client
// opens one stream per local UDP peer, sends the remote port as 2 bytes
// big-endian, then datagrams framed by [WriteDatagram] both ways.
const UDPForwardPort = 4

// reservedPort tells whether p is one of the agent's own tailnet ports,
// which are never forwarded to localhost.
func reservedPort(p uint16) bool {
	return sdk.AgentServicePort(p) || p == UDPForwardPort
}

// ReservedPort tells whether port is one of the agent's own tailnet ports
// (SSH, PTY, speedtest, UDP forwarding), which cannot be forwarded.
func ReservedPort(port uint16) bool { return reservedPort(port) }

// WriteDatagram writes one datagram to a UDP forwarding stream: a 2-byte
// big-endian length and the payload.
func WriteDatagram(w io.Writer, p []byte) error {
	if len(p) > 0xffff {
		return fmt.Errorf("write datagram: %d bytes is too large", len(p))
	}
	buf := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	_, err := w.Write(buf)
	return err
}

// ReadDatagram reads one datagram written by [WriteDatagram] into buf
// (which must hold 65535 bytes) and returns its length.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("read datagram: %d bytes do not fit in %d", n, len(buf))
	}
	return io.ReadFull(r, buf[:n])
}

// forwarder serves tailnet connections to ports without a listener by
// dialling the same port on the workspace's localhost, and UDP forwarding
// streams. Its goroutines are tracked by wg.
type forwarder struct {
	ctx    context.Context
	logger *slog.Logger
	wg     sync.WaitGroup
	// socket, if set, names the unix socket an app listens on instead of
	// the port (appsocket.go), or "" for localhost's port.
	socket func(port uint16) string
}

// handleTCP returns the handler of a flow to dst, or nil for a reserved
// port with no listener.
func (f *forwarder) handleTCP(src, dst netip.AddrPort) func(net.Conn) {
	if reservedPort(dst.Port()) {
		return nil
	}
	return func(c net.Conn) {
		f.wg.Add(1)
		defer f.wg.Done()
		f.forwardLocal(c, dst.Port())
	}
}

// forwardLocal copies between c and port on localhost until either side
// closes. It closes c.
func (f *forwarder) forwardLocal(c net.Conn, port uint16) {
	defer c.Close()
	if path := f.socketOf(port); path != "" {
		local, err := f.dialAppSocket(path)
		if err != nil {
			f.logger.Debug("forward to app socket", "port", port, "err", err)
			return
		}
		defer local.Close()
		stop := context.AfterFunc(f.ctx, func() { c.Close(); local.Close() })
		defer stop()
		pipe(c, local)
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	local, err := d.DialContext(f.ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		var err6 error
		local, err6 = d.DialContext(f.ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(int(port))))
		if err6 != nil {
			f.logger.Debug("forward to localhost", "port", port, "err", err)
			return
		}
	}
	defer local.Close()
	stop := context.AfterFunc(f.ctx, func() { c.Close(); local.Close() })
	defer stop()
	pipe(c, local)
}

// pipe copies both ways between a and b and returns when both directions
// have ended; each direction half-closes its writer when its reader ends.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// serveUDP accepts UDP forwarding streams on ln until it is closed.
func (f *forwarder) serveUDP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := f.forwardUDP(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				f.logger.Debug("udp forward ended", "err", err)
			}
		}()
	}
}

// udpIdleTimeout ends a UDP forwarding stream with no datagram either way.
const udpIdleTimeout = 2 * time.Minute

// forwardUDP relays one stream: datagrams from the stream go to the
// requested port on localhost, replies come back framed.
func (f *forwarder) forwardUDP(c net.Conn) error {
	defer c.Close()
	var hdr [2]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	c.SetReadDeadline(time.Time{})
	port := binary.BigEndian.Uint16(hdr[:])
	u, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)))
	if err != nil {
		return fmt.Errorf("dial udp %d: %w", port, err)
	}
	defer u.Close()
	stop := context.AfterFunc(f.ctx, func() { c.Close(); u.Close() })
	defer stop()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 65535)
		for {
			u.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := u.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout()) {
					c.Close()
					done <- err
					return
				}
				continue // ICMP port unreachable and the like
			}
			if err := WriteDatagram(c, buf[:n]); err != nil {
				done <- err
				return
			}
		}
	}()
	buf := make([]byte, 65535)
	for {
		n, err := ReadDatagram(c, buf)
		if err != nil {
			u.Close()
			<-done
			return err
		}
		if _, err := u.Write(buf[:n]); err != nil {
			f.logger.Debug("udp write", "port", port, "err", err)
		}
	}
}

// serveSSH serves the SSH server, UDP forwarding and the forwarding of
// other ports to localhost on node. The returned function stops them and
// waits for their goroutines.
func (a *Agent) serveSSH(node *tailnet.Node) (func(), error) {
	srv, err := NewSSHServer(SSHOptions{HostKey: SSHHostKey(a.opts.Token), Processes: a.procs, Logger: a.logger})
	if err != nil {
		return nil, err
	}
	sshLn, err := node.Listen(sdk.AgentSSHPort)
	if err != nil {
		return nil, err
	}
	udpLn, err := node.Listen(UDPForwardPort)
	if err != nil {
		sshLn.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(a.ctx)
	fwd := &forwarder{ctx: ctx, logger: a.logger.With("component", "agent_forward"), socket: a.appSocket}
	unregister := node.HandleTCPFallback(fwd.handleTCP)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(sshLn); err != nil && !errors.Is(err, net.ErrClosed) {
			a.logger.Warn("ssh server stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		fwd.serveUDP(udpLn)
	}()
	return func() {
		unregister()
		cancel()
		srv.Close()
		udpLn.Close()
		wg.Wait()
		fwd.wg.Wait()
	}, nil
}
