package vt

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// heldCells sums the cells allocated to the lines of t's normal screen.
func heldCells(t *Terminal) int {
	n := 0
	for i := 0; i < t.normal.lines.length; i++ {
		n += cap(t.normal.lines.get(i).cells)
	}
	return n
}

// TestMaxCells (issue 12): with Options.MaxCells the normal screen's
// lines never hold more cells than the budget, whatever the size: the
// scrollback is cut, oldest lines first, before a resize widens lines,
// and comes back (for new output) when the terminal narrows again. At
// 80×24 a 10,000-line scrollback fits a 1 Mi-cell budget untouched.
func TestMaxCells(t *testing.T) {
	const budget = 1 << 20
	term := New(80, 24, Options{Scrollback: 10000, MaxCells: budget})
	var out strings.Builder
	for i := range 12000 {
		fmt.Fprintf(&out, "line %d\r\n", i)
	}
	term.WriteString(out.String())
	if got := term.Lines(Normal); got != 10000+24 {
		t.Fatalf("at 80×24: %d lines, want the full scrollback %d", got, 10000+24)
	}

	// The cut comes before the widening: the resize allocates about the
	// budget (12 bytes a cell), not the 120 MB that widening all 10,024
	// lines to 1000 columns would take.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	term.Resize(1000, 500)
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(2*12*budget); got > limit {
		t.Errorf("resizing to 1000×500 allocated %d bytes, want at most %d", got, limit)
	}
	if got, want := term.Lines(Normal), budget/1000; got > want {
		t.Errorf("at 1000×500: %d lines, want at most %d", got, want)
	}
	if got := heldCells(term); got > budget {
		t.Errorf("at 1000×500 the lines hold %d cells, want at most %d", got, budget)
	}
	// The newest output survives the cut: "line 11999" is on the last
	// line written.
	found := false
	for y := 0; y < term.Lines(Normal); y++ {
		var b strings.Builder
		for x := 0; x < 12; x++ {
			b.WriteString(term.CellAt(Normal, y, x).Char)
		}
		if b.String() == "line 11999" {
			found = true
		}
	}
	if !found {
		t.Errorf("the newest line is gone after the cut")
	}

	// Narrow again: new output may use the scrollback the budget allows.
	term.Resize(100, 50)
	term.WriteString(out.String())
	if got, want := term.Lines(Normal), 10000+50; got != want {
		t.Errorf("at 100×50 after more output: %d lines, want %d", got, want)
	}
	if got := heldCells(term); got > budget {
		t.Errorf("at 100×50 the lines hold %d cells, want at most %d", got, budget)
	}

	// Without MaxCells the scrollback is kept at any size (xterm.js).
	free := New(80, 24, Options{Scrollback: 10000})
	free.WriteString(out.String())
	free.Resize(200, 100)
	if got := free.Lines(Normal); got != 10000+24 {
		t.Errorf("without MaxCells at 200×100: %d lines, want all %d kept", got, 10000+24)
	}
}
