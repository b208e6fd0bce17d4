package tailnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
)

// startDERP creates the embedded DERP server with admission control.
//
// derpserver v1.102.5 has no function hook for admission, only
// SetVerifyClientURL (an HTTP POST through http.DefaultClient). The server
// therefore answers admission requests on its own loopback listener: one
// loopback round trip per DERP connection, never per packet, and no
// admission endpoint is exposed on the public mux.
func (s *Server) startDERP() error {
	ds := derpserver.New(s.opts.DERPKey, logfFromSlog(s.logger.With("component", "derp")))
	s.derp = ds
	s.derpWS = derpserver.AddWebSocketSupport(ds, derpserver.Handler(ds))
	s.metrics.derpVars = ds.ExpVar(false)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("tailnet: listen for derp admission: %w", err)
	}
	s.admit = &http.Server{
		Handler:  http.HandlerFunc(s.serveDERPAdmit),
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	ds.SetVerifyClientURL("http://" + ln.Addr().String() + "/derp/admit")
	ds.SetVerifyClientURLFailOpen(false)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.admit.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("derp admission listener", "err", err)
		}
	}()
	return nil
}

// serveDERPAdmit answers derpserver's admission requests: only nodes that
// are registered (in memory or in the store) may relay, and in browser-only
// mode no client node may, whether it is known in memory or only from the
// store (a client that registered before a restart into browser-only mode).
func (s *Server) serveDERPAdmit(w http.ResponseWriter, r *http.Request) {
	var req tailcfg.DERPAdmitClientRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil {
		http.Error(w, "bad admission request", http.StatusBadRequest)
		return
	}
	sn, err := s.lookupStored(r.Context(), req.NodePublic)
	allow := err == nil
	if allow && sn.Identity.Kind == KindClient {
		s.mu.RLock()
		allow = !s.browserOnly
		s.mu.RUnlock()
	}
	if !allow {
		s.metrics.derpRefused.Add(1)
		s.logger.Debug("derp client refused", "node_key", req.NodePublic.ShortString(), "source", req.Source)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
}

// STUNServer answers STUN binding requests on one or more UDP sockets so
// nodes learn their public endpoints without a public STUN server. It is
// written on tailscale.com/net/stun rather than net/stunserver so it owns
// its goroutines, counts requests per server and logs through slog.
type STUNServer struct {
	logger   *slog.Logger
	conns    []*net.UDPConn
	wg       sync.WaitGroup
	requests atomic.Int64
	once     sync.Once
}

// ListenSTUN binds a STUN server on every address in addrs (for example
// "0.0.0.0:3478", or "127.0.0.1:0" in tests) and serves them until Close.
func ListenSTUN(addrs []string, logger *slog.Logger) (*STUNServer, error) {
	st := &STUNServer{logger: discardLogger(logger).With("component", "stun")}
	for _, a := range addrs {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("stun listen %s: %w", a, err)
		}
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("stun listen %s: %w", a, err)
		}
		st.conns = append(st.conns, c)
	}
	for _, c := range st.conns {
		st.wg.Add(1)
		go st.serve(c)
	}
	return st, nil
}

// Addrs returns the bound addresses.
func (st *STUNServer) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(st.conns))
	for _, c := range st.conns {
		out = append(out, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// Requests returns how many valid binding requests arrived (each is
// answered).
func (st *STUNServer) Requests() int64 { return st.requests.Load() }

// Close closes the sockets and waits for the serving goroutines. It is
// idempotent.
func (st *STUNServer) Close() error {
	st.once.Do(func() {
		for _, c := range st.conns {
			c.Close()
		}
		st.wg.Wait()
	})
	return nil
}

func (st *STUNServer) serve(c *net.UDPConn) {
	defer st.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			st.logger.Debug("stun read", "err", err)
			continue
		}
		pkt := buf[:n]
		if !stun.Is(pkt) {
			continue
		}
		txid, err := stun.ParseBindingRequest(pkt)
		if err != nil {
			continue
		}
		// Counted before the reply goes out, so that a client holding its
		// answer finds it counted.
		st.requests.Add(1)
		res := stun.Response(txid, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if _, err := c.WriteToUDPAddrPort(res, from); err != nil {
			st.logger.Debug("stun write", "err", err)
		}
	}
}
