package store_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/store/storetest"
)

func TestMain(m *testing.M) {
	if store.BuiltinHelperForTest() {
		return
	}
	storetest.Main(m)
	// After the cluster is stopped: every goroutine of the package's
	// types (Pubsub, Builtin) must be gone.
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		os.Exit(1)
	}
}
