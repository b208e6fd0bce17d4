// Package testutil holds helpers shared by this module's tests: the coder
// binary under test, a `coder server` process, bounded polling. It is
// imported only from tests.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte
)

// CoderBinary returns the path of the coder binary: $CODER_TEST_BINARY
// (make test sets it to the one it built), or one built once per test
// binary with `go build`.
func CoderBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CODER_TEST_BINARY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CODER_TEST_BINARY=%s: %v", p, err)
		}
		return p
	}
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "coder-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "coder")
		cmd := exec.Command("go", "build", "-tags", "ts_debug_websockets", "-o", buildPath, "./cmd/coder")
		cmd.Dir = root
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build coder: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}
