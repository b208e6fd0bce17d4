package tailnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"tailscale.com/tailcfg"
)

// Defaults of the embedded DERP region.
const (
	DefaultRegionID   = 999
	DefaultRegionCode = "coder"
	DefaultRegionName = "Coder Embedded Relay"
)

// ParseDERPMap parses a DERP map in tailcfg.DERPMap JSON
// ({"Regions": {"900": {"RegionID": 900, "RegionCode": ..., "Nodes": [...]}}})
// and validates it. Errors name the problem: bad JSON with line and column,
// a region key that differs from its RegionID, a region without nodes, a
// node without HostName, bad ports.
func ParseDERPMap(data []byte) (*tailcfg.DERPMap, error) {
	var dm tailcfg.DERPMap
	dec := json.NewDecoder(bytes.NewReader(data))
	// Unknown fields are allowed: Coder-format maps carry extra fields
	// (EmbeddedRelay, ForceHTTP) that upstream tailcfg does not know.
	if err := dec.Decode(&dm); err != nil {
		return nil, fmt.Errorf("parse derp map: %w", jsonErrorAt(data, err))
	}
	if dec.More() {
		return nil, errors.New("parse derp map: unexpected data after the JSON object")
	}
	if err := ValidateDERPMap(&dm); err != nil {
		return nil, fmt.Errorf("parse derp map: %w", err)
	}
	return &dm, nil
}

// jsonErrorAt adds line and column to JSON syntax and type errors.
func jsonErrorAt(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return err
	}
	off = min(off, int64(len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("line %d, column %d (offset %d): %w", line, col, off, err)
}

// ValidateDERPMap checks a DERP map: at least one region, region keys equal
// to RegionID, every region with a code and nodes, every node with a name,
// its region's id, a HostName and valid ports.
func ValidateDERPMap(dm *tailcfg.DERPMap) error {
	if dm == nil || len(dm.Regions) == 0 {
		return errors.New("no regions")
	}
	ids := make([]int, 0, len(dm.Regions))
	for id := range dm.Regions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := dm.Regions[id]
		if r == nil {
			return fmt.Errorf("region %d: null region", id)
		}
		if id <= 0 {
			return fmt.Errorf("region %d: region ids must be positive", id)
		}
		if r.RegionID != id {
			return fmt.Errorf("region %d: key %d does not match RegionID %d", id, id, r.RegionID)
		}
		if r.RegionCode == "" {
			return fmt.Errorf("region %d: missing RegionCode", id)
		}
		if len(r.Nodes) == 0 {
			return fmt.Errorf("region %d (%s): no nodes", id, r.RegionCode)
		}
		for i, n := range r.Nodes {
			if n == nil {
				return fmt.Errorf("region %d (%s): node %d: null node", id, r.RegionCode, i)
			}
			where := fmt.Sprintf("region %d (%s): node %d (%q)", id, r.RegionCode, i, n.Name)
			if n.Name == "" {
				return fmt.Errorf("region %d (%s): node %d: missing Name", id, r.RegionCode, i)
			}
			if n.RegionID != id {
				return fmt.Errorf("%s: RegionID %d does not match its region %d", where, n.RegionID, id)
			}
			if n.HostName == "" {
				return fmt.Errorf("%s: missing HostName", where)
			}
			if n.DERPPort < 0 || n.DERPPort > 65535 {
				return fmt.Errorf("%s: DERPPort %d out of range", where, n.DERPPort)
			}
			if n.STUNPort < -1 || n.STUNPort > 65535 {
				return fmt.Errorf("%s: STUNPort %d out of range (-1 disables STUN)", where, n.STUNPort)
			}
			if n.STUNOnly && n.STUNPort < 0 {
				return fmt.Errorf("%s: STUNOnly with STUN disabled", where)
			}
		}
	}
	return nil
}

// DERPMapOptions describe the DERP map of a deployment
// (--derp-server-*, --derp-config-*). The zero value, with an AccessURL,
// is the embedded region only.
type DERPMapOptions struct {
	// AccessURL is the deployment's access URL (http or https, host, port):
	// nodes reach the embedded relay at AccessURL/derp.
	AccessURL string
	// DisableEmbedded leaves the embedded region out
	// (--derp-server-enable=false); then ConfigPath or ConfigURL must
	// provide regions.
	DisableEmbedded bool
	// RegionID, RegionCode and RegionName name the embedded region;
	// zero values mean 999, "coder", "Coder Embedded Relay".
	RegionID   int
	RegionCode string
	RegionName string
	// STUNPort is the embedded STUN port advertised for the embedded
	// region; 0 or -1 means no STUN.
	STUNPort int
	// ConfigPath and ConfigURL name a DERP map JSON whose regions add to
	// the embedded one, or replace it when they use its id. At most one may
	// be set.
	ConfigPath string
	ConfigURL  string
	// HTTPClient fetches ConfigURL; nil means a client with a 10 s
	// timeout.
	HTTPClient *http.Client
}

// BuildDERPMap returns the deployment's DERP map: the embedded region made
// from the access URL, merged with the regions of ConfigPath or ConfigURL.
// OmitDefaultRegions is always true: nodes never use Tailscale's public
// relays. An unreachable ConfigURL is an error.
func BuildDERPMap(ctx context.Context, o DERPMapOptions) (*tailcfg.DERPMap, error) {
	dm := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}, OmitDefaultRegions: true}
	if !o.DisableEmbedded {
		r, err := EmbeddedRegion(o)
		if err != nil {
			return nil, err
		}
		dm.Regions[r.RegionID] = r
	}
	var extra *tailcfg.DERPMap
	switch {
	case o.ConfigPath != "" && o.ConfigURL != "":
		return nil, errors.New("derp map: set either a config path or a config URL, not both")
	case o.ConfigPath != "":
		b, err := os.ReadFile(o.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("derp map: read config path: %w", err)
		}
		extra, err = ParseDERPMap(b)
		if err != nil {
			return nil, fmt.Errorf("derp map: %s: %w", o.ConfigPath, err)
		}
	case o.ConfigURL != "":
		var err error
		extra, err = fetchDERPMap(ctx, o.HTTPClient, o.ConfigURL)
		if err != nil {
			return nil, err
		}
	}
	if extra != nil {
		for id, r := range extra.Regions {
			dm.Regions[id] = r
		}
		dm.HomeParams = extra.HomeParams
	}
	if len(dm.Regions) == 0 {
		return nil, errors.New("derp map: no regions: the embedded relay is disabled and no DERP config was given")
	}
	return dm, nil
}

// EmbeddedRegion returns the region of the embedded relay for o.
func EmbeddedRegion(o DERPMapOptions) (*tailcfg.DERPRegion, error) {
	u, err := url.Parse(o.AccessURL)
	if err != nil {
		return nil, fmt.Errorf("derp map: parse access URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("derp map: access URL %q: scheme must be http or https", o.AccessURL)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("derp map: access URL %q has no host", o.AccessURL)
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("derp map: access URL %q: bad port", o.AccessURL)
		}
	}
	id := o.RegionID
	if id == 0 {
		id = DefaultRegionID
	}
	code := o.RegionCode
	if code == "" {
		code = DefaultRegionCode
	}
	name := o.RegionName
	if name == "" {
		name = DefaultRegionName
	}
	stunPort := o.STUNPort
	if stunPort == 0 {
		stunPort = -1
	}
	n := &tailcfg.DERPNode{
		Name:     fmt.Sprintf("%da", id),
		RegionID: id,
		HostName: host,
		DERPPort: port,
		STUNPort: stunPort,
	}
	// An IP literal host is used as is; IPv6 "none" keeps clients from
	// guessing a v6 address for a v4 literal (and vice versa).
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			n.IPv4, n.IPv6 = host, "none"
		} else {
			n.IPv6, n.IPv4 = host, "none"
		}
	}
	return &tailcfg.DERPRegion{RegionID: id, RegionCode: code, RegionName: name, Nodes: []*tailcfg.DERPNode{n}}, nil
}

func fetchDERPMap(ctx context.Context, hc *http.Client, rawURL string) (*tailcfg.DERPMap, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("derp map: config URL %q: %w", rawURL, err)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("derp map: fetch config URL %q: %w", rawURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("derp map: fetch config URL %q: %s", rawURL, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("derp map: read config URL %q: %w", rawURL, err)
	}
	dm, err := ParseDERPMap(b)
	if err != nil {
		return nil, fmt.Errorf("derp map: %s: %w", rawURL, err)
	}
	return dm, nil
}

// regionCodeOf returns the code of region id in dm, or "".
func regionCodeOf(dm *tailcfg.DERPMap, id int) string {
	if dm == nil {
		return ""
	}
	if r := dm.Regions[id]; r != nil {
		return r.RegionCode
	}
	return ""
}
