// Package browsertest starts Debian's headless Chromium for end-to-end
// tests, driven by chromedp, with console messages and exceptions piped to
// the test log. It is imported only from tests.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's Chromium. Tests fail, never skip, without it.
func chromiumPath(t testing.TB) string {
	for _, p := range []string{os.Getenv("CODER_TEST_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("Chromium is missing: install it with `apt-get install chromium` (make test does this as root), or set CODER_TEST_CHROMIUM")
	return ""
}

// New starts a headless Chromium with a fresh profile and returns a
// chromedp context for one tab, bounded by timeout. Everything is closed on
// test cleanup.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, LogEvents(t)); err != nil {
		t.Fatalf("listen to chromium: %v", err)
	}
	return ctx
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

// LogEvents returns a chromedp listener that pipes a tab's console to the
// test log and fails the test on uncaught exceptions. New installs it on
// the first tab; install it on tabs the page opens.
func LogEvents(t testing.TB) func(ev any) {
	return func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			t.Logf("browser console.%s: %v", ev.Type, args)
		case *runtime.EventExceptionThrown:
			t.Errorf("browser exception: %s %s", ev.ExceptionDetails.Text, exceptionText(ev.ExceptionDetails))
		}
	}
}
