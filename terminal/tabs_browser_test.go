package terminal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatewaydev/coder/internal/browsertest"
	"github.com/gatewaydev/coder/terminal"
	"github.com/gatewaydev/coder/terminal/terminaltest"
	"github.com/gatewaydev/coder/terminal/vt"
)

// vtScreen is the agent's screen (agent.newVTScreen).
type vtScreen struct{ t *vt.Terminal }

func newVTScreen(cols, rows, scrollback int) terminal.Screen {
	return vtScreen{vt.New(cols, rows, vt.Options{Scrollback: scrollback, MaxCells: terminal.MaxScreenCells})}
}
func (s vtScreen) Write(p []byte)        { s.t.Write(p); s.t.TakeReplies() }
func (s vtScreen) Resize(cols, rows int) { s.t.Resize(cols, rows) }
func (s vtScreen) Serialize() []byte     { return s.t.Serialize() }

// jsCells is every cell of the viewport of the active buffer: the size,
// the buffer kind, and per row per cell its character, width, colours and
// attributes, so that two tabs can be compared cell by cell.
const jsCells = `(() => {
  const t = window.term, b = t.buffer.active, rows = [];
  const c = b.getNullCell();
  for (let y = 0; y < t.rows; y++) {
    const line = b.getLine(b.viewportY + y), row = [];
    for (let x = 0; x < t.cols; x++) {
      line.getCell(x, c);
      row.push([c.getChars(), c.getWidth(), c.getFgColorMode(), c.getFgColor(), c.getBgColorMode(), c.getBgColor(),
        c.isBold(), c.isInverse(), c.isUnderline(), c.isDim(), c.isItalic()].join("|"));
    }
    rows.push(row);
  }
  return JSON.stringify({cols: t.cols, rows: t.rows, buffer: b.type, cursor: [b.cursorX, b.cursorY], cells: rows});
})()`

type cells struct {
	Cols   int        `json:"cols"`
	Rows   int        `json:"rows"`
	Buffer string     `json:"buffer"`
	Cursor [2]int     `json:"cursor"`
	Cells  [][]string `json:"cells"`
}

// text returns row y's characters.
func (c cells) text(y int) string {
	var b strings.Builder
	for _, cell := range c.Cells[y] {
		ch, _, _ := strings.Cut(cell, "|")
		if ch == "" {
			ch = " "
		}
		b.WriteString(ch)
	}
	return strings.TrimRight(b.String(), " ")
}

// diffCells counts the cells that differ (any size difference counts all).
func diffCells(a, b cells) int {
	if a.Cols != b.Cols || a.Rows != b.Rows || len(a.Cells) != len(b.Cells) {
		return a.Cols * a.Rows
	}
	n := 0
	for y := range a.Cells {
		for x := range a.Cells[y] {
			if x >= len(b.Cells[y]) || a.Cells[y][x] != b.Cells[y][x] {
				n++
			}
		}
	}
	return n
}

// tab is one browser tab showing the terminal page.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func (p tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

func (p tab) eval(expr string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate: %v", p.name, err)
	}
	return s
}

func (p tab) cells() cells {
	p.t.Helper()
	var c cells
	if err := json.Unmarshal([]byte(p.eval(jsCells)), &c); err != nil {
		p.t.Fatal(err)
	}
	return c
}

// waitCells polls the tab's cells until cond holds.
func (p tab) waitCells(what string, cond func(cells) bool) cells {
	p.t.Helper()
	deadline := time.Now().Add(terminaltest.WaitLong)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var c cells
	for {
		c = p.cells()
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			var rows []string
			for y := range c.Cells {
				rows = append(rows, c.text(y))
			}
			p.t.Fatalf("%s: timed out waiting for %s; %dx%d:\n%s", p.name, what, c.Cols, c.Rows, strings.Join(rows, "\n"))
		}
		<-tick.C
	}
}

// sameCells waits until a's cells satisfy cond and b shows the very same
// cells (size, characters, widths, colours, attributes).
func sameCells(t *testing.T, a, b tab, what string, cond func(cells) bool) {
	t.Helper()
	deadline := time.Now().Add(terminaltest.WaitLong)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		ca, cb := a.cells(), b.cells()
		if cond(ca) && diffCells(ca, cb) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out; %s %dx%d, %s %dx%d, %d cells differ; %s row 0 %q last %q; %s row 0 %q last %q", what,
				a.name, ca.Cols, ca.Rows, b.name, cb.Cols, cb.Rows, diffCells(ca, cb),
				a.name, ca.text(0), ca.text(len(ca.Cells)-1), b.name, cb.text(0), cb.text(len(cb.Cells)-1))
		}
		<-tick.C
	}
}

// key presses a key that vim ignores in normal mode (a real keydown in the
// page: the tab claims the session), and types s through xterm.js.
func (p tab) key(s string) {
	p.t.Helper()
	p.do("focus", chromedp.Focus(chromedp.CSS(`textarea.xterm-helper-textarea`)))
	p.do("press Escape", chromedp.KeyEvent("\x1b"))
	p.type_(s)
}

// type_ types s through xterm.js, as the user's keys (no claim).
func (p tab) type_(s string) {
	p.t.Helper()
	if s != "" {
		q, _ := json.Marshal(s)
		p.do("type", chromedp.Evaluate[chromedp.Void](`window.term.input(`+string(q)+`, true)`))
	}
}

// vimAt reports whether c shows the three-line file in vim filling all of
// c: the lines, then only "~" rows, then the ruler on the last row.
func vimAt(c cells, cols, rows int) bool {
	if c.Cols != cols || c.Rows != rows || c.Buffer != "alternate" {
		return false
	}
	for y := 0; y < 3; y++ {
		if c.text(y) != fmt.Sprintf("tab line %d", y+1) {
			return false
		}
	}
	for y := 3; y < rows-1; y++ {
		if c.text(y) != "~" {
			return false
		}
	}
	return strings.HasSuffix(c.text(rows-1), "All")
}

// TestBrowserTwoTabsOfDifferentSizes opens one session in a small and a
// big tab of one Chromium, with vim running. The session takes the size
// of the tab the user types in, and both tabs show it cell for cell (the
// big tab shows vim filling the session's size, not vim in its corner
// with garbage); when the active small tab closes, the session goes back
// to the big tab's size and vim fills it.
func TestBrowserTwoTabsOfDifferentSizes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "three.txt"), []byte("tab line 1\ntab line 2\ntab line 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, dial := newServer(t, terminal.ServerOptions{Dir: dir, NewScreen: newVTScreen})
	h := newBrowserHarness(t, dial)
	id := newID()
	page := h.url + "/term?" + url.Values{"reconnect": {id}, "command": {shellCmd}}.Encode()

	bctx := browsertest.New(t, 120*time.Second)
	smallCtx, closeSmall := chromedp.NewContext(bctx)
	t.Cleanup(closeSmall)
	small := tab{t: t, name: "small tab", ctx: smallCtx}
	small.do("small viewport", chromedp.EmulateViewport(800, 480))
	small.do("open", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	if err := chromedp.Listen(smallCtx, browsertest.LogEvents(t)); err != nil {
		t.Fatal(err)
	}
	small.waitCells("the prompt", func(c cells) bool { return strings.HasPrefix(c.text(0), strings.TrimSpace(testPrompt)) })
	sCols, sRows := small.cells().Cols, small.cells().Rows

	bigCtx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	big := tab{t: t, name: "big tab", ctx: bigCtx}
	big.do("big viewport", chromedp.EmulateViewport(1280, 800))
	big.do("open", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.xterm-screen`)))
	if err := chromedp.Listen(bigCtx, browsertest.LogEvents(t)); err != nil {
		t.Fatal(err)
	}
	// What fits the big window, as the page measures it.
	bCols, bRows := 0, 0
	if _, err := fmt.Sscanf(big.eval(`(() => { const s = window.termSizes().own; return s.cols + " " + s.rows; })()`), "%d %d", &bCols, &bRows); err != nil {
		t.Fatal(err)
	}
	if bCols <= sCols || bRows <= sRows {
		t.Fatalf("big tab fits %dx%d, small %dx%d: want the big one bigger", bCols, bRows, sCols, sRows)
	}

	// vim, typed in the small tab: both tabs show it at the small size.
	small.do("click", chromedp.Click(chromedp.CSS(`.xterm-screen`)))
	small.waitCells("the small size", func(c cells) bool { return c.Cols == sCols && c.Rows == sRows })
	small.type_("vim -Nu NONE -c 'set ruler' three.txt\r")
	sameCells(t, small, big, "vim at the small size", func(c cells) bool { return vimAt(c, sCols, sRows) })

	// Typing in the big tab: the session takes its size; vim redraws to
	// fill it, in both tabs, cell for cell.
	big.key("")
	sameCells(t, big, small, "vim at the big size", func(c cells) bool { return vimAt(c, bCols, bRows) })
	// The small window shows the bigger session by scrolling.
	if got := small.eval(`(() => { const e = document.getElementById("terminal");
	  return String(e.scrollWidth > e.clientWidth && e.scrollHeight > e.clientHeight && getComputedStyle(e).overflow === "auto"); })()`); got != "true" {
		t.Errorf("the small tab cannot scroll over the bigger session")
	}

	// Back to the small tab, then it closes: the size goes back to the big
	// tab's, and vim fills it.
	small.key("")
	sameCells(t, small, big, "vim at the small size again", func(c cells) bool { return vimAt(c, sCols, sRows) })
	closeSmall() // closes the tab
	big.waitCells("vim at the big size after the small tab left", func(c cells) bool { return vimAt(c, bCols, bRows) })
}
