package vt

// Cell storage mirrors xterm.js's BufferLine: three uint32 words per cell
// (content, fg, bg) plus two sparse side tables, one for grapheme clusters
// (combined characters) and one for extended attributes (underline style and
// colour, hyperlink). Keeping the same bit layout keeps the emulator's
// behaviour identical to xterm.js in the many places where it depends on it.

// Content word layout (xterm.js Content).
const (
	contentCodepointMask = 0x1FFFFF
	contentIsCombined    = 0x200000
	contentHasContent    = 0x3FFFFF
	contentWidthMask     = 0xC00000
	contentWidthShift    = 22
)

// Colour and flag bits of the fg and bg words (xterm.js Attributes, FgFlags, BgFlags).
const (
	cmMask     = 0x3000000
	cmDefault  = 0
	cmP16      = 0x1000000
	cmP256     = 0x2000000
	cmRGB      = 0x3000000
	rgbMask    = 0xFFFFFF
	pcolorMask = 0xFF

	fgInverse       = 0x4000000
	fgBold          = 0x8000000
	fgUnderline     = 0x10000000
	fgBlink         = 0x20000000
	fgInvisible     = 0x40000000
	fgStrikethrough = 0x80000000

	bgItalic      = 0x4000000
	bgDim         = 0x8000000
	bgHasExtended = 0x10000000
	bgProtected   = 0x20000000
	bgOverline    = 0x40000000

	extUnderlineStyle = 0x1C000000
)

// cell is one grid cell: 12 bytes.
type cell struct {
	content, fg, bg uint32
}

// extAttrs are xterm.js's ExtendedAttrs: underline style and colour packed in
// ext, and the hyperlink id.
type extAttrs struct {
	ext   uint32
	urlID uint32
}

func (e extAttrs) underlineStyle() uint32 {
	if e.urlID != 0 {
		return UnderlineDashed
	}
	return (e.ext & extUnderlineStyle) >> 26
}

func (e *extAttrs) setUnderlineStyle(v uint32) {
	e.ext &^= extUnderlineStyle
	e.ext |= (v << 26) & extUnderlineStyle
}

func (e extAttrs) underlineColor() uint32 { return e.ext & (cmMask | rgbMask) }

func (e *extAttrs) setUnderlineColor(v uint32) {
	e.ext &^= cmMask | rgbMask
	e.ext |= v & (cmMask | rgbMask)
}

func (e extAttrs) isEmpty() bool { return e.underlineStyle() == UnderlineNone && e.urlID == 0 }

// attrs is a pen: xterm.js's AttributeData.
type attrs struct {
	fg, bg uint32
	ext    extAttrs
}

func (a *attrs) updateExtended() {
	if a.ext.isEmpty() {
		a.bg &^= bgHasExtended
	} else {
		a.bg |= bgHasExtended
	}
}

// line is one buffer row (xterm.js BufferLine).
type line struct {
	cells    []cell
	combined map[int]string // grapheme clusters by column, allocated on demand
	ext      []extAttrs     // extended attributes by column, allocated on demand
	wrapped  bool
}

func newLine(cols int, fill cell, fillExt extAttrs, wrapped bool) *line {
	l := &line{cells: make([]cell, cols), wrapped: wrapped}
	for i := range l.cells {
		l.cells[i] = fill
	}
	if fill.bg&bgHasExtended != 0 {
		l.ensureExt()
		for i := range l.ext {
			l.ext[i] = fillExt
		}
	}
	return l
}

func (l *line) length() int { return len(l.cells) }

func (l *line) ensureExt() {
	if len(l.ext) < len(l.cells) {
		n := make([]extAttrs, len(l.cells))
		copy(n, l.ext)
		l.ext = n
	}
}

func (l *line) width(i int) uint32 {
	if i < 0 || i >= len(l.cells) {
		return 0
	}
	return l.cells[i].content >> contentWidthShift
}

func (l *line) hasContent(i int) bool {
	if i < 0 || i >= len(l.cells) {
		return false
	}
	return l.cells[i].content&contentHasContent != 0
}

// setCell stores a cell with its extended attributes (xterm.js setCell).
func (l *line) setCell(i int, c cell, e extAttrs, comb string) {
	if i < 0 || i >= len(l.cells) {
		return
	}
	if c.content&contentIsCombined != 0 {
		if l.combined == nil {
			l.combined = make(map[int]string)
		}
		l.combined[i] = comb
	}
	if c.bg&bgHasExtended != 0 {
		l.ensureExt()
		l.ext[i] = e
	}
	l.cells[i] = c
}

// setCP is xterm.js setCellFromCodepoint.
func (l *line) setCP(i int, cp, w uint32, a *attrs) {
	if i < 0 || i >= len(l.cells) {
		return
	}
	if a.bg&bgHasExtended != 0 {
		l.ensureExt()
		l.ext[i] = a.ext
	}
	l.cells[i] = cell{cp | w<<contentWidthShift, a.fg, a.bg}
}

// loadExt returns the extended attributes of cell i (zero when none).
func (l *line) loadExt(i int) extAttrs {
	if l.cells[i].bg&bgHasExtended != 0 && i < len(l.ext) {
		return l.ext[i]
	}
	return extAttrs{}
}

func (l *line) loadComb(i int) string {
	if l.cells[i].content&contentIsCombined != 0 {
		return l.combined[i]
	}
	return ""
}

func (l *line) addCodepoint(i int, cp, w uint32) {
	if i < 0 || i >= len(l.cells) {
		return
	}
	content := l.cells[i].content
	if content&contentIsCombined != 0 {
		if l.combined == nil {
			l.combined = make(map[int]string)
		}
		l.combined[i] += string(rune(cp))
	} else if content&contentCodepointMask != 0 {
		if l.combined == nil {
			l.combined = make(map[int]string)
		}
		l.combined[i] = string(rune(content&contentCodepointMask)) + string(rune(cp))
		content &^= contentCodepointMask
		content |= contentIsCombined
	} else {
		content = cp | 1<<contentWidthShift
	}
	if w != 0 {
		content &^= contentWidthMask
		content |= w << contentWidthShift
	}
	l.cells[i].content = content
}

// nullCell returns the fill cell for erase operations with the given pen.
func nullCell(a *attrs) cell { return cell{1 << contentWidthShift, a.fg, a.bg} }

func (l *line) insertCells(pos, n int, fill *attrs) {
	length := len(l.cells)
	pos %= length
	if pos != 0 && l.width(pos-1) == 2 {
		l.setCP(pos-1, 0, 1, fill)
	}
	nc := nullCell(fill)
	if n < length-pos {
		for i := length - pos - n - 1; i >= 0; i-- {
			l.copyCell(pos+n+i, pos+i)
		}
		for i := 0; i < n; i++ {
			l.setCell(pos+i, nc, fill.ext, "")
		}
	} else {
		for i := pos; i < length; i++ {
			l.setCell(i, nc, fill.ext, "")
		}
	}
	if l.width(length-1) == 2 {
		l.setCP(length-1, 0, 1, fill)
	}
}

// copyCell is setCell(dst, loadCell(src)) within one line.
func (l *line) copyCell(dst, src int) {
	c := l.cells[src]
	var e extAttrs
	if c.bg&bgHasExtended != 0 && src < len(l.ext) {
		e = l.ext[src]
	}
	comb := ""
	if c.content&contentIsCombined != 0 {
		comb = l.combined[src]
	}
	l.setCell(dst, c, e, comb)
}

func (l *line) deleteCells(pos, n int, fill *attrs) {
	length := len(l.cells)
	pos %= length
	nc := nullCell(fill)
	if n < length-pos {
		for i := 0; i < length-pos-n; i++ {
			l.copyCell(pos+i, pos+n+i)
		}
		for i := length - n; i < length; i++ {
			l.setCell(i, nc, fill.ext, "")
		}
	} else {
		for i := pos; i < length; i++ {
			l.setCell(i, nc, fill.ext, "")
		}
	}
	if pos != 0 && l.width(pos-1) == 2 {
		l.setCP(pos-1, 0, 1, fill)
	}
	if l.width(pos) == 0 && !l.hasContent(pos) {
		l.setCP(pos, 0, 1, fill)
	}
}

func (l *line) replaceCells(start, end int, fill *attrs, respectProtect bool) {
	length := len(l.cells)
	nc := nullCell(fill)
	if respectProtect {
		if start != 0 && l.width(start-1) == 2 && !l.isProtected(start-1) {
			l.setCP(start-1, 0, 1, fill)
		}
		if end < length && l.width(end-1) == 2 && !l.isProtected(end) {
			l.setCP(end, 0, 1, fill)
		}
		for start < end && start < length {
			if !l.isProtected(start) {
				l.setCell(start, nc, fill.ext, "")
			}
			start++
		}
		return
	}
	if start != 0 && l.width(start-1) == 2 {
		l.setCP(start-1, 0, 1, fill)
	}
	if end < length && l.width(end-1) == 2 {
		l.setCP(end, 0, 1, fill)
	}
	for start < end && start < length {
		l.setCell(start, nc, fill.ext, "")
		start++
	}
}

func (l *line) isProtected(i int) bool {
	return i >= 0 && i < len(l.cells) && l.cells[i].bg&bgProtected != 0
}

func (l *line) fill(fill *attrs, respectProtect bool) {
	nc := nullCell(fill)
	if respectProtect {
		for i := range l.cells {
			if !l.isProtected(i) {
				l.setCell(i, nc, fill.ext, "")
			}
		}
		return
	}
	l.combined = nil
	if len(l.ext) > 0 && fill.bg&bgHasExtended == 0 {
		clear(l.ext)
	}
	for i := range l.cells {
		l.setCell(i, nc, fill.ext, "")
	}
}

// fillCell fills the whole line with one cell (DECALN).
func (l *line) fillCell(c cell) {
	l.combined = nil
	for i := range l.cells {
		l.cells[i] = c
	}
}

// resize is xterm.js BufferLine.resize without the memory bookkeeping.
func (l *line) resize(cols int, fill *attrs) {
	old := len(l.cells)
	if cols == old {
		return
	}
	if cols > old {
		if cap(l.cells) >= cols {
			l.cells = l.cells[:cols]
		} else {
			n := make([]cell, cols)
			copy(n, l.cells)
			l.cells = n
		}
		if len(l.ext) > 0 {
			l.ensureExt()
		}
		nc := nullCell(fill)
		for i := old; i < cols; i++ {
			l.setCell(i, nc, fill.ext, "")
		}
		return
	}
	l.cells = l.cells[:cols:cols]
	for k := range l.combined {
		if k >= cols {
			delete(l.combined, k)
		}
	}
	if len(l.ext) > cols {
		l.ext = l.ext[:cols:cols]
	}
}

// copyFrom makes l a copy of src (xterm.js copyFrom).
func (l *line) copyFrom(src *line) {
	if len(l.cells) != len(src.cells) {
		l.cells = make([]cell, len(src.cells))
	}
	copy(l.cells, src.cells)
	l.combined = nil
	if len(src.combined) > 0 {
		l.combined = make(map[int]string, len(src.combined))
		for k, v := range src.combined {
			l.combined[k] = v
		}
	}
	if len(src.ext) > 0 {
		if len(l.ext) != len(src.ext) {
			l.ext = make([]extAttrs, len(src.ext))
		}
		copy(l.ext, src.ext)
	} else {
		l.ext = l.ext[:0]
	}
	l.wrapped = src.wrapped
}

// reset makes l a copy of the blank line src (all cells equal), reusing
// its storage: the fast path of scrolling.
func (l *line) reset(src *line) {
	if len(l.cells) != len(src.cells) || len(src.ext) > 0 || len(src.combined) > 0 {
		l.copyFrom(src)
		return
	}
	fill := src.cells[0]
	cells := l.cells
	for i := range cells {
		cells[i] = fill
	}
	l.combined = nil
	l.wrapped = src.wrapped
}

func (l *line) clone() *line {
	n := &line{}
	n.cells = make([]cell, len(l.cells))
	n.copyFrom(l)
	return n
}

func (l *line) trimmedLength() int {
	for i := len(l.cells) - 1; i >= 0; i-- {
		if l.cells[i].content&contentHasContent != 0 {
			return i + int(l.cells[i].content>>contentWidthShift)
		}
	}
	return 0
}

// copyCellsFrom is xterm.js copyCellsFrom, including its handling of the
// combined-character table (every key at or right of srcCol is copied).
func (l *line) copyCellsFrom(src *line, srcCol, destCol, length int, reverse bool) {
	one := func(c int) {
		d, s := destCol+c, srcCol+c
		if d < 0 || d >= len(l.cells) || s < 0 || s >= len(src.cells) {
			return
		}
		l.cells[d] = src.cells[s]
		if src.cells[s].bg&bgHasExtended != 0 {
			l.ensureExt()
			var e extAttrs
			if s < len(src.ext) {
				e = src.ext[s]
			}
			l.ext[d] = e
		}
	}
	if reverse {
		for c := length - 1; c >= 0; c-- {
			one(c)
		}
	} else {
		for c := 0; c < length; c++ {
			one(c)
		}
	}
	if len(src.combined) > 0 {
		// Collect first: src may be l itself.
		type kv struct {
			k int
			v string
		}
		var moved []kv
		for k, v := range src.combined {
			if k >= srcCol {
				moved = append(moved, kv{k - srcCol + destCol, v})
			}
		}
		if l.combined == nil && len(moved) > 0 {
			l.combined = make(map[int]string)
		}
		for _, m := range moved {
			l.combined[m.k] = m.v
		}
	}
}

// chars returns the text of cell i ("" for an empty cell).
func (l *line) chars(i int) string {
	c := l.cells[i].content
	if c&contentIsCombined != 0 {
		return l.combined[i]
	}
	if cp := c & contentCodepointMask; cp != 0 {
		return string(rune(cp))
	}
	return ""
}

// memSize estimates the bytes held by the line.
func (l *line) memSize() int {
	n := 64 + cap(l.cells)*12 + cap(l.ext)*8
	for _, v := range l.combined {
		n += 48 + len(v)
	}
	return n
}
