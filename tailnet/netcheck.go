package tailnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"tailscale.com/net/netcheck"
	"tailscale.com/net/netmon"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/logger"
)

// Report is the outcome of [Netcheck], shaped for JSON output of
// `coder netcheck`.
type Report struct {
	// UDP is true when a STUN round trip completed.
	UDP bool `json:"udp"`
	// IPv4 and IPv6 are true when a STUN round trip over that family
	// completed.
	IPv4 bool `json:"ipv4"`
	IPv6 bool `json:"ipv6"`
	// GlobalV4 and GlobalV6 are the public endpoints STUN observed.
	GlobalV4 string `json:"global_v4,omitempty"`
	GlobalV6 string `json:"global_v6,omitempty"`
	// MappingVariesByDestIP is "true"/"false" when measured, "" otherwise
	// (a hard NAT when true).
	MappingVariesByDestIP string `json:"mapping_varies_by_dest_ip,omitempty"`
	// PreferredDERP is the region with the lowest latency (0: none).
	PreferredDERP     int    `json:"preferred_derp"`
	PreferredDERPCode string `json:"preferred_derp_code,omitempty"`
	// Regions are the reachable regions, fastest first.
	Regions []RegionLatency `json:"regions"`
}

// RegionLatency is the measured latency to one DERP region.
type RegionLatency struct {
	RegionID   int           `json:"region_id"`
	RegionCode string        `json:"region_code"`
	Latency    time.Duration `json:"latency_ns"`
	LatencyMS  float64       `json:"latency_ms"`
}

// Netcheck measures UDP connectivity, the public endpoints and the latency
// to every region of dm, like `tailscale netcheck`, with STUN to the
// regions' STUN ports (and HTTP latency checks where STUN is disabled). It
// contacts only the hosts in dm and never probes the LAN gateway (no port
// mapping). It blocks until the report is done (at most about 5 s) or ctx
// ends.
func Netcheck(ctx context.Context, dm *tailcfg.DERPMap) (Report, error) {
	if dm == nil || len(dm.Regions) == 0 {
		return Report{}, errors.New("netcheck: empty DERP map")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &netcheck.Client{
		NetMon: netmon.NewStatic(),
		Logf:   logger.Discard,
	}
	var (
		wg     sync.WaitGroup
		socks  []*net.UDPConn
		u4, u6 *net.UDPConn
	)
	defer func() {
		for _, s := range socks {
			s.Close()
		}
		wg.Wait()
	}()
	if s, err := net.ListenUDP("udp4", &net.UDPAddr{}); err == nil {
		u4 = s
		socks = append(socks, s)
	}
	if s, err := net.ListenUDP("udp6", &net.UDPAddr{}); err == nil {
		u6 = s
		socks = append(socks, s)
	}
	if len(socks) == 0 {
		return Report{}, errors.New("netcheck: cannot open a UDP socket")
	}
	for _, s := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readSTUNReplies(s, c.ReceiveSTUNPacket)
		}()
	}
	c.SendPacket = func(pkt []byte, dst netip.AddrPort) (int, error) {
		s := u4
		if dst.Addr().Is6() {
			s = u6
		}
		if s == nil {
			return 0, errors.New("no UDP socket for this address family")
		}
		return s.WriteToUDPAddrPort(pkt, dst)
	}
	r, err := c.GetReport(ctx, dm, nil)
	if err != nil {
		return Report{}, fmt.Errorf("netcheck: %w", err)
	}
	out := Report{
		UDP:               r.UDP,
		IPv4:              r.IPv4,
		IPv6:              r.IPv6,
		PreferredDERP:     r.PreferredDERP,
		PreferredDERPCode: regionCodeOf(dm, r.PreferredDERP),
		Regions:           []RegionLatency{},
	}
	if r.GlobalV4.IsValid() {
		out.GlobalV4 = r.GlobalV4.String()
	}
	if r.GlobalV6.IsValid() {
		out.GlobalV6 = r.GlobalV6.String()
	}
	if v, ok := r.MappingVariesByDestIP.Get(); ok {
		out.MappingVariesByDestIP = fmt.Sprint(v)
	}
	for id, d := range r.RegionLatency {
		out.Regions = append(out.Regions, RegionLatency{
			RegionID:   id,
			RegionCode: regionCodeOf(dm, id),
			Latency:    d,
			LatencyMS:  float64(d) / float64(time.Millisecond),
		})
	}
	slices.SortFunc(out.Regions, func(a, b RegionLatency) int {
		if a.Latency != b.Latency {
			return int(a.Latency - b.Latency)
		}
		return a.RegionID - b.RegionID
	})
	return out, nil
}

// readSTUNReplies feeds STUN packets from s to recv until s is closed.
func readSTUNReplies(s *net.UDPConn, recv func([]byte, netip.AddrPort)) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if stun.Is(buf[:n]) {
			recv(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		}
	}
}
