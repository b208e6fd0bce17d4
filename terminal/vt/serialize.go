package vt

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Serialize returns an ANSI byte stream that, written into a fresh xterm.js
// (or a fresh [Terminal]) of the same size, reproduces this terminal: every
// cell of the scrollback and both screens, line wrap flags, the cursor, the
// pen, saved cursors, scroll regions, tab stops, character sets, modes, the
// title, and an escape sequence or UTF-8 character cut at the end of the
// input, so that the bytes that follow land as they would have here.
//
// It does not change the terminal. The returned slice is owned by the caller.
func (t *Terminal) Serialize() []byte {
	s := &serializer{t: t, out: make([]byte, 0, 256+t.normal.lines.length*t.cols)}
	s.str("\x1bc")
	s.pen = attrs{}
	s.buffer(t.normal, t.normal.lines.length)
	s.bufferState(t.normal)
	if t.buf == t.alt {
		s.sgr(attrs{})
		s.str("\x1b[?47h")
		s.str("\x1b[H")
		s.buffer(t.alt, t.rows)
		s.bufferState(t.alt)
	}
	s.globalState()
	s.cursorAndPen()
	s.tail()
	return s.out
}

type serializer struct {
	t         *Terminal
	out       []byte
	pen       attrs // pen of the receiving terminal (ext.urlID is ours)
	lastPrint bool  // the previous output was printed text (join state is set)
	savedDone bool  // the current buffer's saved cursor is written
}

func (s *serializer) str(v string) {
	s.out = append(s.out, v...)
	s.lastPrint = false
}

func (s *serializer) csi(n int, final string) {
	s.out = append(s.out, "\x1b["...)
	s.out = strconv.AppendInt(s.out, int64(n), 10)
	s.out = append(s.out, final...)
	s.lastPrint = false
}

func (s *serializer) cup(y, x int) {
	s.out = append(s.out, "\x1b["...)
	s.out = strconv.AppendInt(s.out, int64(y+1), 10)
	s.out = append(s.out, ';')
	s.out = strconv.AppendInt(s.out, int64(x+1), 10)
	s.out = append(s.out, 'H')
	s.lastPrint = false
}

// penKey is what the receiving terminal's pen must match for a cell.
func sameLook(a, b attrs) bool {
	if a.fg != b.fg || a.bg&^bgHasExtended != b.bg&^bgHasExtended {
		return false
	}
	ae, be := a.ext, b.ext
	if a.bg&bgHasExtended == 0 {
		ae.ext &^= extUnderlineStyle
		ae.urlID = 0
	}
	if b.bg&bgHasExtended == 0 {
		be.ext &^= extUnderlineStyle
		be.urlID = 0
	}
	return ae == be
}

// sgr makes the receiving pen equal to a.
func (s *serializer) sgr(a attrs) {
	if sameLook(s.pen, a) && s.pen.ext.underlineColor() == a.ext.underlineColor() {
		return
	}
	b := s.out
	b = append(b, "\x1b[0"...)
	fg, bg := a.fg, a.bg
	flag := func(on bool, code string) {
		if on {
			b = append(b, ';')
			b = append(b, code...)
		}
	}
	flag(fg&fgBold != 0, "1")
	flag(bg&bgDim != 0, "2")
	flag(bg&bgItalic != 0, "3")
	if fg&fgUnderline != 0 {
		style := uint32(UnderlineSingle)
		if bg&bgHasExtended != 0 {
			style = (a.ext.ext & extUnderlineStyle) >> 26
		}
		if style == UnderlineSingle || style == UnderlineNone {
			b = append(b, ";4"...)
		} else {
			b = append(b, ";4:"...)
			b = strconv.AppendInt(b, int64(style), 10)
		}
	}
	flag(fg&fgBlink != 0, "5")
	flag(fg&fgInverse != 0, "7")
	flag(fg&fgInvisible != 0, "8")
	flag(fg&fgStrikethrough != 0, "9")
	flag(bg&bgOverline != 0, "53")
	b = appendColor(b, fg, 30, 90, "38")
	b = appendColor(b, bg, 40, 100, "48")
	if uc := a.ext.underlineColor(); uc != 0 {
		switch uc & cmMask {
		case cmP256, cmP16:
			b = append(b, ";58:5:"...)
			b = strconv.AppendInt(b, int64(uc&pcolorMask), 10)
		case cmRGB:
			b = append(b, ";58:2::"...)
			b = strconv.AppendInt(b, int64(uc>>16&255), 10)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(uc>>8&255), 10)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(uc&255), 10)
		}
	}
	b = append(b, 'm')
	if bg&bgProtected != 0 {
		b = append(b, "\x1b[1\"q"...)
	}
	s.out = b
	s.lastPrint = false
	url := s.pen.ext.urlID
	s.pen = attrs{fg: fg, bg: bg &^ bgHasExtended, ext: extAttrs{ext: a.ext.ext, urlID: url}}
	if fg&fgUnderline != 0 && bg&bgHasExtended == 0 {
		s.pen.ext.setUnderlineStyle(UnderlineSingle)
	}
	s.pen.updateExtended()
	s.link(a)
}

// link makes the receiving pen's hyperlink match a's.
func (s *serializer) link(a attrs) {
	want := uint32(0)
	if a.bg&bgHasExtended != 0 || a.ext.urlID != 0 {
		want = a.ext.urlID
	}
	if want == s.pen.ext.urlID {
		return
	}
	if want == 0 {
		s.str("\x1b]8;;\x07")
	} else {
		lk := s.t.links.byID[want]
		if lk.uri == "" {
			want = 0
			s.str("\x1b]8;;\x07")
		} else {
			p := ""
			if lk.id != "" {
				p = "id=" + lk.id
			}
			s.str("\x1b]8;" + p + ";" + lk.uri + "\x07")
		}
	}
	s.pen.ext.urlID = want
	s.pen.updateExtended()
}

func appendColor(b []byte, c uint32, base16, bright16 int, ext string) []byte {
	switch c & cmMask {
	case cmP16:
		v := int(c & pcolorMask)
		b = append(b, ';')
		if v < 8 {
			b = strconv.AppendInt(b, int64(base16+v), 10)
		} else {
			b = strconv.AppendInt(b, int64(bright16+v-8), 10)
		}
	case cmP256:
		b = append(b, ';')
		b = append(b, ext...)
		b = append(b, ";5;"...)
		b = strconv.AppendInt(b, int64(c&pcolorMask), 10)
	case cmRGB:
		b = append(b, ';')
		b = append(b, ext...)
		b = append(b, ";2;"...)
		b = strconv.AppendInt(b, int64(c>>16&255), 10)
		b = append(b, ';')
		b = strconv.AppendInt(b, int64(c>>8&255), 10)
		b = append(b, ';')
		b = strconv.AppendInt(b, int64(c&255), 10)
	}
	return b
}

func cellAttrs(l *line, x int) attrs {
	c := l.cells[x]
	return attrs{fg: c.fg, bg: c.bg, ext: l.loadExt(x)}
}

func isNull(c cell) bool {
	return c.content&contentHasContent == 0 && c.content>>contentWidthShift == 1
}

// eraseAttrsOf returns the pen whose erase fill produces null cell c, and
// whether one exists (erase fills carry only a background colour).
func eraseAttrsOf(c cell) (attrs, bool) {
	return attrs{bg: c.bg & (cmMask | rgbMask)}, c.fg == 0 && c.bg&^(cmMask|rgbMask) == 0
}

// buffer writes n lines of b from the top-left corner of an empty screen.
func (s *serializer) buffer(b *buffer, n int) {
	var prev *line
	placeholder := false
	startX := 0
	s.savedDone = false
	dummy := false
	if first := b.lines.get(0); first != nil && first.wrapped {
		// Only a wrap from a line above marks a line wrapped: write a
		// throw-away line first and trim it off below.
		dummy = true
		if b.hasScrollback && b.savedY == 0 {
			s.savedDone = true
			s.csi(min(b.savedX, s.t.cols-1)+1, "G")
			s.decsc(b)
			s.str("\r")
		}
		s.out = append(s.out, strings.Repeat(" ", s.t.cols)...)
		s.lastPrint = true
	}
	for i := 0; i < n; i++ {
		l := b.lines.get(i)
		if l == nil {
			continue
		}
		var next *line
		if i+1 < n {
			next = b.lines.get(i + 1)
		}
		nextWrapped := next != nil && next.wrapped
		var prevLast cell
		if placeholder {
			prevLast = prev.cells[min(s.t.cols, prev.length())-1]
		}
		abs := i
		if dummy {
			abs++
		}
		save := b.hasScrollback && abs == b.savedY && !s.savedDone
		placeholder, startX = s.line(b, l, next, nextWrapped, placeholder, prevLast, startX, save)
		if i+1 < n && !nextWrapped {
			if s.pen.bg&(cmMask|rgbMask) != 0 {
				s.sgr(attrs{})
			}
			s.str("\r\n")
		}
		prev = l
	}
	if dummy && n+1 <= b.lines.max {
		s.str("\x1b[3J")
	}
}

// line writes one line from column startX of the cursor row (earlier cells
// are already written). When nextWrapped, it leaves the cursor in the
// pending-wrap position (or, for a wide character that did not fit, before
// the last cell, printing that character) so that the next line is marked
// wrapped. It reports whether its last cell holds a placeholder that the
// next line must repair once it has wrapped, and where the next line
// starts. With save, it also writes b's saved cursor on this line.
func (s *serializer) line(b *buffer, l, next *line, nextWrapped, fixPrev bool, prevLast cell, startX int, save bool) (bool, int) {
	cols := min(s.t.cols, l.length())
	end := cols
	wideWrap := false
	if nextWrapped {
		if next.width(0) == 2 && isNull(l.cells[cols-1]) {
			wideWrap = true
			end = cols - 1
		}
	} else {
		for end > 0 && l.cells[end-1] == (cell{content: 1 << contentWidthShift}) {
			end--
		}
	}
	x := startX
	if l.wrapped && startX == 0 {
		// A wrap is pending: print the first cell (or a placeholder) to
		// wrap, then repair the previous line's placeholder if any.
		empty := l.cells[0].content&contentHasContent == 0
		if empty {
			s.sgr(attrs{})
			s.out = append(s.out, ' ')
			s.lastPrint = true
			x = 1
		} else {
			x = s.cell(l, 0)
		}
		if fixPrev {
			s.str("\x1b[A")
			s.csi(s.t.cols, "G")
			a, _ := eraseAttrsOf(prevLast)
			s.sgr(a)
			s.str("\x1b[X\x1b[B")
		}
		if empty {
			x = 0
		}
		if fixPrev || empty {
			s.csi(x+1, "G")
		}
	}
	if save {
		s.savedDone = true
		s.csi(min(b.savedX, s.t.cols-1)+1, "G")
		s.decsc(b)
		s.csi(x+1, "G")
	}
	placeholder := false
	for x < end {
		c := l.cells[x]
		if c.content&contentHasContent == 0 {
			r := x + 1
			for r < end && l.cells[r] == c && l.loadExt(r) == l.loadExt(x) {
				r++
			}
			if r == end && nextWrapped && !wideWrap {
				// The last cell must be printed to wrap: print a
				// placeholder over it and repair it on the next line.
				if r-1 > x {
					s.eraseRun(c, r-1-x, true)
				}
				s.sgr(attrs{})
				s.out = append(s.out, ' ')
				s.lastPrint = true
				placeholder = true
				break
			}
			s.eraseRun(c, r-x, r < end || wideWrap)
			x = r
			continue
		}
		x = s.cell(l, x)
	}
	if !wideWrap {
		return placeholder, 0
	}
	// Printing the next line's wide character fills this last cell with
	// the pen and wraps, as it did originally.
	last := cellAttrs(l, cols-1)
	s.sgr(last)
	s.printCell(next, 0)
	if !sameLook(cellAttrs(next, 0), last) {
		s.str("\x1b[G")
		s.cell(next, 0)
	}
	return false, 2
}

// decsc writes b's saved cursor attributes and charset and saves the cursor
// at its current position.
func (s *serializer) decsc(b *buffer) {
	if b.savedCharset != 0 {
		s.str("\x1b(" + string(rune(b.savedCharset)))
	}
	s.sgr(attrs{fg: b.savedAttr.fg, bg: b.savedAttr.bg &^ bgHasExtended})
	s.str("\x1b7")
	if b.savedCharset != 0 {
		s.str("\x1b(B")
	}
	s.sgr(attrs{})
}

// cell prints cell x of l with its attributes and returns the next column.
func (s *serializer) cell(l *line, x int) int {
	s.sgr(cellAttrs(l, x))
	return x + s.printCell(l, x)
}

// printCell prints the text of cell x of l with the current pen and returns its width (at least 1).
func (s *serializer) printCell(l *line, x int) int {
	c := l.cells[x]
	w := int(c.content >> contentWidthShift)
	if w == 0 && s.lastPrint {
		s.str("\x1b\\") // a no-op that keeps a zero-width character from joining
	}
	if c.content&contentIsCombined != 0 {
		s.out = append(s.out, l.combined[x]...)
	} else if cp := c.content & contentCodepointMask; cp < 0x80 {
		s.out = append(s.out, byte(cp))
	} else {
		s.out = utf8.AppendRune(s.out, rune(cp))
	}
	s.lastPrint = true
	return max(w, 1)
}

// eraseRun reproduces n null cells like c at the cursor and, if move, moves past them.
func (s *serializer) eraseRun(c cell, n int, move bool) {
	if c != (cell{content: 1 << contentWidthShift}) {
		a, _ := eraseAttrsOf(c)
		if s.pen.bg&(cmMask|rgbMask) != a.bg {
			s.sgr(a)
		}
		s.csi(n, "X")
	}
	if move {
		s.csi(n, "C")
	}
}

// bufferState writes the tab stops, scroll region, saved cursor and cursor
// position of b, which is the active screen of the receiving terminal.
func (s *serializer) bufferState(b *buffer) {
	t := s.t
	defaultTabs := true
	for x := 0; x < t.cols; x++ {
		if b.tab(x) != (x%8 == 0) {
			defaultTabs = false
			break
		}
	}
	if !defaultTabs {
		s.str("\x1b[3g")
		for x := 0; x < t.cols; x++ {
			if b.tab(x) {
				s.cup(0, x)
				s.str("\x1bH")
			}
		}
	}
	if b.scrollTop != 0 || b.scrollBottom != t.rows-1 {
		s.out = append(s.out, "\x1b["...)
		s.out = strconv.AppendInt(s.out, int64(b.scrollTop+1), 10)
		s.out = append(s.out, ';')
		s.out = strconv.AppendInt(s.out, int64(b.scrollBottom+1), 10)
		s.out = append(s.out, 'r')
	}
	if !s.savedDone && (b.savedX != 0 || b.savedY != 0 || b.savedAttr.fg != 0 || b.savedAttr.bg != 0 || b.savedCharset != 0) {
		sy := min(max(b.savedY-b.ybase, 0), t.rows-1)
		s.cup(sy, min(b.savedX, t.cols-1))
		s.decsc(b)
	}
	s.cup(b.y, min(b.x, t.cols-1))
}

// globalState writes modes, character sets, cursor shape and visibility and
// the title; none of them moves the cursor except DECOM, which the final
// cursor position follows.
func (s *serializer) globalState() {
	t := s.t
	set := func(on bool, seq string) {
		if on {
			s.str(seq)
		}
	}
	set(t.appCursor, "\x1b[?1h")
	set(t.appKeypad, "\x1b=")
	set(t.bracketedPaste, "\x1b[?2004h")
	set(t.reverseWrap, "\x1b[?45h")
	set(t.sendFocus, "\x1b[?1004h")
	set(t.syncOutput, "\x1b[?2026h")
	set(!t.wraparound, "\x1b[?7l")
	set(t.cursorBlinkOpt, "\x1b[?12h")
	set(t.convertEol, "\x1b[20h")
	set(t.insertMode, "\x1b[4h")
	switch t.mouseProtocol {
	case MouseX10:
		s.str("\x1b[?9h")
	case MouseVT200:
		s.str("\x1b[?1000h")
	case MouseDrag:
		s.str("\x1b[?1002h")
	case MouseAny:
		s.str("\x1b[?1003h")
	}
	switch t.mouseEncoding {
	case MouseEncodingSGR:
		s.str("\x1b[?1006h")
	case MouseEncodingSGRPixels:
		s.str("\x1b[?1016h")
	}
	set(t.cursorHidden, "\x1b[?25l")
	if t.cursorStyle != CursorStyleDefault {
		v := 2*int(t.cursorStyle) - int(t.cursorBlink)
		s.csi(v, " q")
	}
	switch {
	case t.title != "" && t.title == t.iconName:
		s.str("\x1b]0;" + t.title + "\x07")
	default:
		if t.title != "" {
			s.str("\x1b]2;" + t.title + "\x07")
		}
		if t.iconName != "" {
			s.str("\x1b]1;" + t.iconName + "\x07")
		}
	}
	designators := [4]string{"(", ")", "*", "+"}
	for g, cs := range t.charsets {
		if cs != 0 {
			s.str("\x1b" + designators[g] + string(rune(cs)))
		}
	}
	switch t.glevel {
	case 1:
		s.str("\x0e")
	case 2:
		s.str("\x1bn")
	case 3:
		s.str("\x1bo")
	}
	set(t.origin, "\x1b[?6h")
}

// cursorAndPen positions the cursor, restores the pending-wrap state and the
// join state of the last printed character, and sets the pen.
func (s *serializer) cursorAndPen() {
	t := s.t
	b := t.buf
	y, x := b.y, b.x
	if t.origin {
		y -= b.scrollTop
	}
	l := b.line(b.y)
	lastCol := func(end int) int {
		c := end - 1
		if c > 0 && l.width(c) == 0 && !l.hasContent(c) && l.width(c-1) == 2 {
			c--
		}
		return c
	}
	joinW := int(t.joinState>>1) & 3
	switch {
	case t.joinState != 0 && !t.wraparound && joinW == 2 && x == t.cols-1 && !(l.width(x-1) == 2):
		// A wide character that did not fit was dropped (no autowrap):
		// drop one again to restore the join state.
		s.sgr(t.cur)
		s.cup(y, x)
		s.out = append(s.out, "中"...)
		s.lastPrint = true
		return
	case t.joinState != 0 && x > 0 && x <= t.cols && sameLook(cellAttrs(l, lastCol(x)), t.cur) && l.hasContent(lastCol(x)):
		// The last action was printing the character before the cursor
		// with the current pen: print it again so that a combining
		// character or REP that follows applies to it.
		c := lastCol(x)
		s.sgr(t.cur)
		s.cup(y, c)
		if t.insertMode && x < t.cols {
			// Insert mode shifts the line right: delete the cells first.
			s.csi(x-c, "P")
		}
		s.printCell(l, c)
		return
	case x >= t.cols && l.hasContent(lastCol(t.cols)):
		c := lastCol(t.cols)
		s.cup(y, c)
		s.sgr(cellAttrs(l, c))
		s.printCell(l, c)
	default:
		s.cup(y, min(x, t.cols-1))
	}
	s.sgr(t.cur)
	if s.lastPrint && t.joinState == 0 {
		s.str("\x1b\\")
	}
}

// tail re-creates an escape sequence or UTF-8 character cut at the end of
// the input from the parser state.
func (s *serializer) tail() {
	t := s.t
	b := s.out
	collect := func() {
		for sh := 24; sh >= 0; sh -= 8 {
			if c := byte(t.collect >> sh); c != 0 {
				b = append(b, c)
			}
		}
	}
	prefixFirst := func() {
		// A private prefix (<=>?) can only have been collected first.
		c := t.collect
		var bs []byte
		for sh := 24; sh >= 0; sh -= 8 {
			if v := byte(c >> sh); v != 0 {
				bs = append(bs, v)
			}
		}
		if len(bs) > 0 && bs[0] >= 0x3c && bs[0] <= 0x3f {
			b = append(b, bs[0])
		}
	}
	inters := func() {
		c := t.collect
		var bs []byte
		for sh := 24; sh >= 0; sh -= 8 {
			if v := byte(c >> sh); v != 0 {
				bs = append(bs, v)
			}
		}
		if len(bs) > 0 && bs[0] >= 0x3c && bs[0] <= 0x3f {
			bs = bs[1:]
		}
		b = append(b, bs...)
	}
	switch t.state {
	case stEscape:
		b = append(b, 0x1b)
	case stEscapeIntermediate:
		b = append(b, 0x1b)
		collect()
	case stCsiEntry:
		b = append(b, "\x1b["...)
	case stCsiParam:
		b = append(b, "\x1b["...)
		prefixFirst()
		b = appendParams(b, &t.params)
	case stCsiIntermediate:
		b = append(b, "\x1b["...)
		prefixFirst()
		b = appendParams(b, &t.params)
		inters()
	case stCsiIgnore:
		b = append(b, "\x1b[0<"...)
	case stSosPmApcString:
		b = append(b, "\x1b_"...)
	case stOscString:
		b = append(b, "\x1b]"...)
		switch t.osc.state {
		case oscID:
			if t.osc.id >= 0 {
				b = strconv.AppendInt(b, int64(t.osc.id), 10)
			}
		case oscPayload:
			if t.osc.id >= 0 {
				b = strconv.AppendInt(b, int64(t.osc.id), 10)
			}
			b = append(b, ';')
			b = append(b, string(t.osc.data)...)
		case oscAbort:
			b = append(b, 'x')
		}
	case stDcsEntry:
		b = append(b, "\x1bP"...)
	case stDcsParam:
		b = append(b, "\x1bP"...)
		prefixFirst()
		b = appendParams(b, &t.params)
	case stDcsIntermediate:
		b = append(b, "\x1bP"...)
		prefixFirst()
		b = appendParams(b, &t.params)
		inters()
	case stDcsIgnore:
		b = append(b, "\x1bP0<"...)
	case stDcsPassthrough:
		b = append(b, "\x1bP"...)
		if t.dcs.active {
			b = append(b, "$q"...)
			b = append(b, string(t.dcs.data)...)
		} else {
			// Any unhandled DCS: its payload is ignored.
			b = append(b, "$p"...)
		}
	}
	b = append(b, t.dec.pending()...)
	s.out = b
}

// appendParams writes CSI parameters that parse back to p.
func appendParams(b []byte, p *params) []byte {
	for i := 0; i < p.n; i++ {
		if i > 0 {
			b = append(b, ';')
		}
		b = strconv.AppendInt(b, int64(p.vals[i]), 10)
		for _, sv := range p.getSub(i) {
			b = append(b, ':')
			if sv >= 0 {
				b = strconv.AppendInt(b, int64(sv), 10)
			}
		}
	}
	if p.rejectDigits {
		b = append(b, ';')
	}
	return b
}
