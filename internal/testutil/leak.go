package testutil

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs m, then fails the test binary if goroutines that the
// tests started are still running (goleak). TestMain of every package whose
// tests start goroutines calls it (storetest.Main does the same for those
// on PostgreSQL).
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := FindLeaks(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// FindLeaks is goleak.Find with more patience: goroutines that are still
// winding down (a node closing on a loaded machine) get 10 s to finish
// before they count as leaked.
func FindLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
