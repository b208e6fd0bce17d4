package handlers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/terminal"
)

// TestTerminalSessionLimitPage (issue 12): in Chromium, a terminal the
// agent refuses because its session limit is reached says so in the status
// pill while it retries, and opens by itself once a session ends.
func TestTerminalSessionLimitPage(t *testing.T) {
	e := newLimitedTermEnv(t, 1)
	holder := e.attach(t, uuid.NewString(), nil)
	holder.Type("echo holder-$((1+1))\r")
	holder.WaitText("holder-2")

	base := e.ts.URL.String()
	ctx := browsertest.New(t, 90*time.Second)
	// The page backs off between retries (up to 3 s).
	p := termPage{t: t, ctx: ctx, wait: 60 * time.Second}
	p.login(base, "owner", "owner-password")
	p.do("open the terminal", chromedp.Navigate(base+"/@owner/dev.main/terminal"), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	got := p.status("reconnecting")
	if !strings.Contains(got, terminal.ReasonTooManySessions) {
		t.Fatalf("status pill %q does not say why: want %q", got, terminal.ReasonTooManySessions)
	}

	holder.Type("exit\r")
	holder.WaitClosed()
	p.status("connected")
	p.input("echo page-$((6*7))\r")
	p.waitLine("page-42")
}
