package testutil

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs m, then fails the test binary if goroutines that the
// tests started are still running (goleak). TestMain of every package whose
// tests start goroutines calls it (storetest.Main does the same for those
// on PostgreSQL).
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
