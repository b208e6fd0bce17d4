package agent

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gatewaydev/coder/sdk"
)

// healthChecks runs the health checks of the apps of the agent's latest
// manifest. Guarded by Agent.mu.
type healthChecks struct {
	// key identifies the checks that run (their apps' slugs and checks),
	// so that a reconnection with the same manifest keeps them running.
	key    string
	cancel context.CancelFunc
	wg     *sync.WaitGroup
}

// startHealth runs a health check for every app of apps that has one,
// replacing the checks of an earlier manifest unless they are the same.
// Every app with a check starts initializing.
func (a *Agent) startHealth(apps []sdk.App) {
	type check struct {
		Slug string
		H    sdk.Healthcheck
	}
	var checks []check
	for _, app := range apps {
		if app.Healthcheck != nil && app.Healthcheck.URL != "" {
			checks = append(checks, check{app.Slug, *app.Healthcheck})
		}
	}
	kb, _ := json.Marshal(checks)
	key := string(kb)
	a.mu.Lock()
	old := a.health
	if old.wg != nil && old.key == key {
		a.mu.Unlock()
		return
	}
	a.health = healthChecks{}
	a.mu.Unlock()
	if old.cancel != nil {
		old.cancel()
		old.wg.Wait()
	}
	states := map[string]string{}
	for _, c := range checks {
		states[c.Slug] = sdk.AppHealthInitializing
	}
	a.setHealth("", "", states)
	ctx, cancel := context.WithCancel(a.ctx)
	wg := &sync.WaitGroup{}
	for _, c := range checks {
		wg.Add(1)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer wg.Done()
			a.probeLoop(ctx, c.Slug, c.H)
		}()
	}
	a.mu.Lock()
	a.health = healthChecks{key: key, cancel: cancel, wg: wg}
	a.mu.Unlock()
}

// probeLoop probes one app's health URL at once and then every h.Interval
// seconds until ctx ends: the app turns healthy on a response below 500,
// and unhealthy after h.Threshold consecutive failures (as in Coder).
func (a *Agent) probeLoop(ctx context.Context, slug string, h sdk.Healthcheck) {
	interval := time.Duration(max(h.Interval, 1)) * time.Second
	threshold := max(h.Threshold, 1)
	client := &http.Client{
		// The check's own interval bounds each probe, as in Coder.
		Timeout: interval,
		// The app is on the agent's localhost: never through a proxy.
		// An app with a socket is probed on its socket (as the proxy
		// reaches it), never on the TCP port that stands for it.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: a.dialHealth},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := 0
	for {
		if probe(ctx, client, h.URL) {
			failures = 0
			a.setHealth(slug, sdk.AppHealthHealthy, nil)
		} else if ctx.Err() == nil {
			failures++
			if failures >= threshold {
				a.setHealth(slug, sdk.AppHealthUnhealthy, nil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe reports whether a GET of u answers with a status below 500.
func probe(ctx context.Context, client *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode < http.StatusInternalServerError
}

// dialHealth dials a health check's address: the app's unix socket when
// its port stands for one (appSocket), else TCP.
func (a *Agent) dialHealth(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if port, err := strconv.ParseUint(p, 10, 16); err == nil {
			if sock := a.appSocket(uint16(port)); sock != "" {
				return d.DialContext(ctx, "unix", sock)
			}
		}
	}
	return d.DialContext(ctx, network, addr)
}
