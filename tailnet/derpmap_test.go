package tailnet_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewaydev/coder/tailnet"
)

func TestParseDERPMapErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"bad json", "{\n  \"Regions\": {\n    \"900\": {,\n", "line 3, column 14"},
		{"wrong type", `{"Regions": {"900": {"RegionID": "x"}}}`, "line 1, column"},
		{"no regions", `{"Regions": {}}`, "no regions"},
		{"key mismatch", `{"Regions": {"900": {"RegionID": 901, "RegionCode": "x", "Nodes": [{"Name": "a", "RegionID": 901, "HostName": "h"}]}}}`, "region 900: key 900 does not match RegionID 901"},
		{"no nodes", `{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu"}}}`, "region 900 (eu): no nodes"},
		{"missing code", `{"Regions": {"900": {"RegionID": 900, "Nodes": [{"Name": "a", "RegionID": 900, "HostName": "h"}]}}}`, "region 900: missing RegionCode"},
		{"missing hostname", `{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu", "Nodes": [{"Name": "a", "RegionID": 900}]}}}`, `region 900 (eu): node 0 ("a"): missing HostName`},
		{"node region", `{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu", "Nodes": [{"Name": "a", "RegionID": 1, "HostName": "h"}]}}}`, "RegionID 1 does not match its region 900"},
		{"bad port", `{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu", "Nodes": [{"Name": "a", "RegionID": 900, "HostName": "h", "DERPPort": 70000}]}}}`, "DERPPort 70000 out of range"},
		{"trailing", `{"Regions": {}} {}`, "unexpected data after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tailnet.ParseDERPMap([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "parse derp map: ") {
				t.Errorf("error %q lacks the operation prefix", err)
			}
		})
	}
	dm, err := tailnet.ParseDERPMap([]byte(`{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu", "RegionName": "Europe", "Nodes": [{"Name": "900a", "RegionID": 900, "HostName": "derp.example.com", "STUNPort": -1, "EmbeddedRelay": false}]}}}`))
	if err != nil {
		t.Fatalf("valid map: %v", err)
	}
	if r := dm.Regions[900]; r.RegionName != "Europe" || r.Nodes[0].HostName != "derp.example.com" || r.Nodes[0].STUNPort != -1 {
		t.Errorf("parsed region %+v", r)
	}
}

func TestBuildDERPMap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	extra := filepath.Join(dir, "derp.json")
	os.WriteFile(extra, []byte(`{"Regions": {
		"999": {"RegionID": 999, "RegionCode": "mine", "Nodes": [{"Name": "m", "RegionID": 999, "HostName": "relay.example.com"}]},
		"900": {"RegionID": 900, "RegionCode": "eu", "Nodes": [{"Name": "e", "RegionID": 900, "HostName": "eu.example.com"}]}}}`), 0o600)

	dm, err := tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "https://coder.example.com", STUNPort: 3478})
	if err != nil {
		t.Fatal(err)
	}
	r := dm.Regions[999]
	if !dm.OmitDefaultRegions || len(dm.Regions) != 1 || r.RegionCode != "coder" || r.RegionName != "Coder Embedded Relay" {
		t.Fatalf("embedded map %+v region %+v", dm, r)
	}
	if n := r.Nodes[0]; n.HostName != "coder.example.com" || n.DERPPort != 443 || n.STUNPort != 3478 || n.IPv4 != "" {
		t.Errorf("embedded node %+v", n)
	}
	dm, err = tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "http://127.0.0.1:8080", STUNPort: -1, RegionID: 10, RegionCode: "x", RegionName: "X"})
	if err != nil {
		t.Fatal(err)
	}
	if n := dm.Regions[10].Nodes[0]; n.DERPPort != 8080 || n.STUNPort != -1 || n.IPv4 != "127.0.0.1" || n.IPv6 != "none" || dm.Regions[10].RegionCode != "x" {
		t.Errorf("http node %+v", n)
	}
	// Config path: regions add, or replace by id.
	dm, err = tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "https://coder.example.com", ConfigPath: extra})
	if err != nil {
		t.Fatal(err)
	}
	if len(dm.Regions) != 2 || dm.Regions[999].RegionCode != "mine" || dm.Regions[900] == nil {
		t.Errorf("merged map has %d regions: %+v", len(dm.Regions), dm.Regions)
	}
	// Embedded relay disabled.
	dm, err = tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "https://coder.example.com", DisableEmbedded: true, ConfigPath: extra})
	if err != nil || len(dm.Regions) != 2 {
		t.Errorf("disabled embedded: %v %v", dm, err)
	}
	if _, err := tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "https://coder.example.com", DisableEmbedded: true}); err == nil || !strings.Contains(err.Error(), "no regions") {
		t.Errorf("no regions at all: %v", err)
	}
	// Unreachable URL: a closed loopback port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + ln.Addr().String() + "/derp.json"
	ln.Close()
	if _, err := tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: "https://coder.example.com", ConfigURL: deadURL}); err == nil || !strings.Contains(err.Error(), "fetch config URL") {
		t.Errorf("unreachable config URL: %v", err)
	}
	for _, bad := range []string{"ftp://x", "https://", "::"} {
		if _, err := tailnet.BuildDERPMap(ctx, tailnet.DERPMapOptions{AccessURL: bad}); err == nil {
			t.Errorf("access URL %q accepted", bad)
		}
	}
}

func FuzzParseDERPMap(f *testing.F) {
	f.Add([]byte(`{"Regions": {"900": {"RegionID": 900, "RegionCode": "eu", "Nodes": [{"Name": "a", "RegionID": 900, "HostName": "h"}]}}}`))
	f.Add([]byte(`{"Regions": {"1": null}}`))
	f.Add([]byte(`{"Regions": {"1": {"RegionID": 1, "RegionCode": "a", "Nodes": [null]}}}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dm, err := tailnet.ParseDERPMap(data)
		if err == nil {
			if err := tailnet.ValidateDERPMap(dm); err != nil {
				t.Fatalf("parsed map fails validation: %v", err)
			}
		}
	})
}
