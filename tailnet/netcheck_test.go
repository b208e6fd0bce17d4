package tailnet_test

import (
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/tailnet/tailnettest"
)

func TestNetcheck(t *testing.T) {
	t.Parallel()
	h := tailnettest.New(t, tailnettest.Options{})
	ctx := ctxT(t, 20*time.Second)
	before := h.Server().Stats().STUNRequests
	r, err := tailnet.Netcheck(ctx, h.DERPMap())
	if err != nil {
		t.Fatal(err)
	}
	if !r.UDP || !r.IPv4 || r.PreferredDERP != tailnet.DefaultRegionID || r.PreferredDERPCode != "coder" {
		t.Errorf("report %+v: want UDP, IPv4 and preferred region 999 (coder)", r)
	}
	if len(r.Regions) != 1 || r.Regions[0].RegionID != tailnet.DefaultRegionID || r.Regions[0].Latency <= 0 {
		t.Errorf("regions %+v", r.Regions)
	}
	if h.Server().Stats().STUNRequests <= before {
		t.Errorf("netcheck sent no STUN request to the embedded server")
	}
}
