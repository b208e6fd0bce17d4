package tailnet_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gatewaydev/coder/tailnet"
)

// TestNewNodeSaysWhyItDidNotComeUp: a node whose control server does not
// answer (nothing listens on its loopback port) fails when its context
// ends with a NotUpError that says why, not only "context deadline
// exceeded".
func TestNewNodeSaysWhyItDidNotComeUp(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	n, err := tailnet.NewNode(ctx, tailnet.NodeOptions{ControlURL: "http://" + addr, AuthKey: "nobody"})
	if err == nil {
		n.Close()
		t.Fatal("a node came up without a control server")
	}
	var nu *tailnet.NotUpError
	if !errors.As(err, &nu) {
		t.Fatalf("error %v is not a NotUpError", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not wrap the deadline", err)
	}
	if nu.Why() == "" || nu.State == "" || nu.State == "Running" {
		t.Fatalf("why = %q, state = %q", nu.Why(), nu.State)
	}
	t.Logf("why: %s", nu.Why())
}
