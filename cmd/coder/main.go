// Command coder is the one binary of the product: the server
// (`coder server`), the workspace agent (`coder agent`), the workspace
// proxy (`coder wsproxy server`) and the CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatewaydev/coder/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "v0.1.0-devel"

func main() {
	// Some of tailscale's packages (derphttp, netcheck) print through the
	// global logger; our output is slog, and a CLI's stderr must stay clean
	// (coder ssh --stdio, JSON output).
	log.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *cli.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
