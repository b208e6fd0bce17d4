package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/gatewaydev/coder/internal/backoff"
	"github.com/gatewaydev/coder/tailnet"
)

// After the server's node failed to start, it is tried again after
// serverNodeRetryMin, doubling to serverNodeRetryMax, each attempt allowed
// serverNodeAttempt.
const (
	serverNodeRetryMin = 5 * time.Second
	serverNodeRetryMax = time.Minute
	serverNodeAttempt  = 30 * time.Second
)

// serverNodeFailed records why the server's node did not start and, the
// first time, starts retrying in the background until it starts or the
// API closes.
func (a *API) serverNodeFailed(dir string, err error) {
	a.node.mu.Lock()
	a.node.err = err
	start := !a.node.retrying
	a.node.retrying = true
	a.node.mu.Unlock()
	if start && a.track() {
		go a.retryServerNode(dir)
	}
}

func (a *API) retryServerNode(dir string) {
	defer a.wg.Done()
	ctx, started := context.WithCancel(a.ctx)
	defer started()
	if !backoff.Sleep(ctx, serverNodeRetryMin) {
		return
	}
	backoff.New(serverNodeRetryMin, serverNodeRetryMax).Loop(ctx, 0, func() error {
		actx, cancel := context.WithTimeout(ctx, serverNodeAttempt)
		defer cancel()
		err := a.startServerNode(actx, dir)
		if err == nil {
			a.logger.Info("the server's tailnet node started")
			started()
			return nil
		}
		if ctx.Err() == nil {
			a.node.mu.Lock()
			a.node.err = err
			a.node.mu.Unlock()
		}
		return err
	}, func(err error, in time.Duration) {
		a.logger.Warn("the server's tailnet node did not start; retrying", "err", err, "in", in)
	})
}

// serverNodeDown says why the server's tailnet node is not running, as a
// sentence for the dashboard; "" while it runs or before its first
// attempt ended. detail adds what tailscale reported (for the owner's
// deployment page).
func (a *API) serverNodeDown(detail bool) string {
	a.node.mu.Lock()
	defer a.node.mu.Unlock()
	if a.node.node != nil || a.node.err == nil {
		return ""
	}
	msg := "The server's tailnet node is not running, so the web terminal and apps cannot reach agents; the server keeps trying."
	if !detail {
		return msg + " The deployment page says why."
	}
	var nu *tailnet.NotUpError
	if errors.As(a.node.err, &nu) {
		msg += " It did not come up: " + nu.Why() + "."
	} else {
		msg += " It could not start (the server's log says why)."
	}
	return msg + " Check that the server can reach its own access URL (" + a.opts.AccessURL.String() + ")."
}
