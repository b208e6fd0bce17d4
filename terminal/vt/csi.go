package vt

func csiID(prefix byte, inter byte, final byte) uint32 {
	id := uint32(0)
	if prefix != 0 {
		id = uint32(prefix)
	}
	if inter != 0 {
		id = id<<8 | uint32(inter)
	}
	return id<<8 | uint32(final)
}

var (
	idDECSTR   = csiID(0, '!', 'p')
	idDECSCUSR = csiID(0, ' ', 'q')
	idDECSCA   = csiID(0, '"', 'q')
	idSL       = csiID(0, ' ', '@')
	idSR       = csiID(0, ' ', 'A')
	idDECIC    = csiID(0, '\'', '}')
	idDECDC    = csiID(0, '\'', '~')
	idDECRQM   = csiID(0, '$', 'p')
	idDECRQMp  = csiID('?', '$', 'p')
)

func (t *Terminal) csiDispatch(ident uint32) {
	p := &t.params
	p0 := p.get(0)
	or1 := p0
	if or1 == 0 {
		or1 = 1
	}
	b := t.buf
	// Repeat counts beyond the screen size change nothing more; cap them so
	// that a huge parameter cannot stall the parser (xterm.js loops).
	rowsCap := min(or1, t.rows+1)
	colsCap := min(or1, t.cols+1)
	switch ident {
	case '@':
		t.restrictCursor(t.cols - 1)
		if l := b.line(b.y); l != nil {
			l.insertCells(b.x, or1, t.erase())
		}
	case 'A':
		d := b.y - b.scrollTop
		if d >= 0 {
			t.moveCursor(0, -min(d, or1))
		} else {
			t.moveCursor(0, -or1)
		}
	case 'B':
		t.cursorDown(or1)
	case 'C', 'a':
		t.moveCursor(or1, 0)
	case 'D':
		t.moveCursor(-or1, 0)
	case 'E':
		t.cursorDown(or1)
		b.x = 0
	case 'F':
		d := b.y - b.scrollTop
		if d >= 0 {
			t.moveCursor(0, -min(d, or1))
		} else {
			t.moveCursor(0, -or1)
		}
		b.x = 0
	case 'G', '`':
		t.setCursor(or1-1, b.y)
	case 'H', 'f':
		x := 0
		if p.n >= 2 {
			x = p.get(1)
			if x == 0 {
				x = 1
			}
			x--
		}
		t.setCursor(x, or1-1)
	case 'I':
		if b.x < t.cols {
			for n := colsCap; n > 0; n-- {
				b.x = b.nextStop(b.x)
			}
		}
	case 'Z':
		if b.x < t.cols {
			for n := colsCap; n > 0; n-- {
				b.x = b.prevStop(b.x)
			}
		}
	case 'J':
		t.eraseInDisplay(p0, false)
	case '?'<<8 | 'J':
		t.eraseInDisplay(p0, true)
	case 'K':
		t.eraseInLine(p0, false)
	case '?'<<8 | 'K':
		t.eraseInLine(p0, true)
	case 'L':
		t.insertLines(rowsCap)
	case 'M':
		t.deleteLines(rowsCap)
	case 'P':
		t.restrictCursor(t.cols - 1)
		if l := b.line(b.y); l != nil {
			l.deleteCells(b.x, or1, t.erase())
		}
	case 'S':
		for n := rowsCap; n > 0; n-- {
			b.lines.splice(b.ybase+b.scrollTop, 1)
			b.lines.splice(b.ybase+b.scrollBottom, 0, b.blankLine(t.erase(), false))
		}
	case 'T':
		for n := rowsCap; n > 0; n-- {
			b.lines.splice(b.ybase+b.scrollBottom, 1)
			b.lines.splice(b.ybase+b.scrollTop, 0, b.blankLine(&attrs{}, false))
		}
	case 'X':
		t.restrictCursor(t.cols - 1)
		if l := b.line(b.y); l != nil {
			l.replaceCells(b.x, b.x+or1, t.erase(), false)
		}
	case 'b':
		t.repeatPrecedingCharacter(or1)
	case 'c':
		if p0 <= 0 {
			t.queueReply("\x1b[?1;2c")
		}
	case '>'<<8 | 'c':
		if p0 <= 0 {
			t.queueReply("\x1b[>0;276;0c")
		}
	case 'd':
		t.setCursor(b.x, or1-1)
	case 'e':
		t.moveCursor(0, or1)
	case 'g':
		if p0 == 0 {
			b.setTab(b.x, false)
		} else if p0 == 3 {
			b.tabs = b.tabs[:0]
		}
	case 'h':
		for i := 0; i < p.n; i++ {
			switch p.get(i) {
			case 4:
				t.insertMode = true
			case 20:
				t.convertEol = true
			}
		}
	case 'l':
		for i := 0; i < p.n; i++ {
			switch p.get(i) {
			case 4:
				t.insertMode = false
			case 20:
				t.convertEol = false
			}
		}
	case '?'<<8 | 'h':
		for i := 0; i < p.n; i++ {
			t.setPrivateMode(p.get(i), true)
		}
	case '?'<<8 | 'l':
		for i := 0; i < p.n; i++ {
			t.setPrivateMode(p.get(i), false)
		}
	case 'm':
		t.charAttributes()
	case 'n':
		switch p0 {
		case 5:
			t.queueReply("\x1b[0n")
		case 6:
			t.queueReply("\x1b[" + itoa(b.y+1) + ";" + itoa(b.x+1) + "R")
		}
	case '?'<<8 | 'n':
		if p0 == 6 {
			t.queueReply("\x1b[?" + itoa(b.y+1) + ";" + itoa(b.x+1) + "R")
		}
	case 'r':
		top := or1
		bottom := t.rows
		if p.n >= 2 {
			if v := p.get(1); v <= t.rows && v != 0 {
				bottom = v
			}
		}
		if bottom > top {
			b.scrollTop = top - 1
			b.scrollBottom = bottom - 1
			t.setCursor(0, 0)
		}
	case 's':
		t.saveCursor()
	case 'u':
		t.restoreCursor()
	case idDECSTR:
		t.cursorHidden = false
		b.scrollTop = 0
		b.scrollBottom = t.rows - 1
		t.cur = attrs{}
		t.resetModes()
		t.charsets = [4]charset{}
		t.glevel = 0
		t.charset = 0
		b.savedX = 0
		b.savedY = b.ybase
		b.savedAttr.fg = t.cur.fg
		b.savedAttr.bg = t.cur.bg
		b.savedCharset = 0
		t.origin = false
	case idDECSCUSR:
		v := 1
		if p.n != 0 {
			v = p0
		}
		if v == 0 {
			t.cursorStyle = CursorStyleDefault
			t.cursorBlink = -1
		} else {
			switch v {
			case 1, 2:
				t.cursorStyle = CursorStyleBlock
			case 3, 4:
				t.cursorStyle = CursorStyleUnderline
			case 5, 6:
				t.cursorStyle = CursorStyleBar
			}
			t.cursorBlink = int8(v % 2)
		}
	case idDECSCA:
		if p0 == 1 {
			t.cur.bg |= bgProtected
		}
		if p0 == 2 || p0 == 0 {
			t.cur.bg &^= bgProtected
		}
	case idSL, idSR, idDECIC, idDECDC:
		if b.y > b.scrollBottom || b.y < b.scrollTop {
			return
		}
		for y := b.scrollTop; y <= b.scrollBottom; y++ {
			l := b.line(y)
			switch ident {
			case idSL:
				l.deleteCells(0, or1, t.erase())
			case idSR:
				l.insertCells(0, or1, t.erase())
			case idDECIC:
				l.insertCells(b.x, or1, t.erase())
			case idDECDC:
				l.deleteCells(b.x, or1, t.erase())
			}
			l.wrapped = false
		}
	case idDECRQM:
		t.requestMode(p0, true)
	case idDECRQMp:
		t.requestMode(p0, false)
	}
}

func (t *Terminal) cursorDown(n int) {
	b := t.buf
	d := b.scrollBottom - b.y
	if d >= 0 {
		t.moveCursor(0, min(d, n))
	} else {
		t.moveCursor(0, n)
	}
}

func (t *Terminal) eraseLine(y, start, end int, clearWrap, respectProtect bool) {
	l := t.buf.line(y)
	if l == nil {
		return
	}
	l.replaceCells(start, end, t.erase(), respectProtect)
	if clearWrap {
		l.wrapped = false
	}
}

func (t *Terminal) resetLine(y int, respectProtect bool) {
	if l := t.buf.line(y); l != nil {
		l.fill(t.erase(), respectProtect)
		l.wrapped = false
	}
}

func (t *Terminal) eraseInDisplay(mode int, respectProtect bool) {
	b := t.buf
	t.restrictCursor(t.cols)
	switch mode {
	case 0:
		j := b.y
		t.eraseLine(j, b.x, t.cols, b.x == 0, respectProtect)
		for j++; j < t.rows; j++ {
			t.resetLine(j, respectProtect)
		}
	case 1:
		j := b.y
		t.eraseLine(j, 0, b.x+1, true, respectProtect)
		if b.x+1 >= t.cols {
			// xterm.js indexes the line without ybase here.
			if l := b.lines.get(j + 1); l != nil {
				l.wrapped = false
			}
		}
		for j--; j >= 0; j-- {
			t.resetLine(j, respectProtect)
		}
	case 2:
		for j := t.rows - 1; j >= 0; j-- {
			t.resetLine(j, respectProtect)
		}
	case 3:
		n := b.lines.length - t.rows
		if n > 0 {
			b.lines.trimStart(n)
			b.ybase = max(b.ybase-n, 0)
		}
	}
}

func (t *Terminal) eraseInLine(mode int, respectProtect bool) {
	b := t.buf
	t.restrictCursor(t.cols)
	switch mode {
	case 0:
		t.eraseLine(b.y, b.x, t.cols, b.x == 0, respectProtect)
	case 1:
		t.eraseLine(b.y, 0, b.x+1, false, respectProtect)
	case 2:
		t.eraseLine(b.y, 0, t.cols, true, respectProtect)
	}
}

func (t *Terminal) insertLines(n int) {
	b := t.buf
	t.restrictCursor(t.cols - 1)
	if b.y > b.scrollBottom || b.y < b.scrollTop {
		return
	}
	row := b.ybase + b.y
	bottomAbs := t.rows - 1 + b.ybase - (t.rows - 1 - b.scrollBottom) + 1
	for ; n > 0; n-- {
		b.lines.splice(bottomAbs-1, 1)
		b.lines.splice(row, 0, b.blankLine(t.erase(), false))
	}
	b.x = 0
}

func (t *Terminal) deleteLines(n int) {
	b := t.buf
	t.restrictCursor(t.cols - 1)
	if b.y > b.scrollBottom || b.y < b.scrollTop {
		return
	}
	row := b.ybase + b.y
	j := t.rows - 1 + b.ybase - (t.rows - 1 - b.scrollBottom)
	for ; n > 0; n-- {
		b.lines.splice(row, 1)
		b.lines.splice(j, 0, b.blankLine(t.erase(), false))
	}
	b.x = 0
}

// maxRepeat bounds the code points printed by one REP (CSI b).
const maxRepeat = 1 << 16

func (t *Terminal) repeatPrecedingCharacter(n int) {
	js := t.joinState
	if js == 0 {
		return
	}
	w := int(js>>1) & 3
	b := t.buf
	x := b.x - w
	l := b.line(b.y)
	text := ""
	if x >= 0 && x < l.length() {
		text = l.chars(x)
	} else if x < 0 && -x <= l.length() {
		// JS getString with a negative index reads an undefined cell: "".
		text = ""
	}
	if text == "" {
		return
	}
	var cps []uint32
	for _, r := range text {
		cps = append(cps, uint32(r))
	}
	// xterm.js prints len(text)*n code points in one go; bound the work so
	// that a hostile count cannot stall the parser.
	n = min(n, maxRepeat/len(cps))
	const chunk = 4096
	data := make([]uint32, 0, min(len(cps)*n, chunk+len(cps)))
	for i := 0; i < n; i++ {
		data = append(data, cps...)
		if len(data) >= chunk || i == n-1 {
			t.print(data)
			data = data[:0]
		}
	}
}

func (t *Terminal) setPrivateMode(mode int, on bool) {
	switch mode {
	case 1:
		t.appCursor = on
	case 2:
		if on {
			t.setgCharset(0, 0)
			t.setgCharset(1, 0)
			t.setgCharset(2, 0)
			t.setgCharset(3, 0)
		}
	case 6:
		t.origin = on
		t.setCursor(0, 0)
	case 7:
		t.wraparound = on
	case 12:
		t.cursorBlinkOpt = on
	case 45:
		t.reverseWrap = on
	case 66:
		t.appKeypad = on
	case 9:
		t.setMouse(MouseX10, on)
	case 1000:
		t.setMouse(MouseVT200, on)
	case 1002:
		t.setMouse(MouseDrag, on)
	case 1003:
		t.setMouse(MouseAny, on)
	case 1004:
		t.sendFocus = on
	case 1006:
		if on {
			t.mouseEncoding = MouseEncodingSGR
		} else {
			t.mouseEncoding = MouseEncodingDefault
		}
	case 1016:
		if on {
			t.mouseEncoding = MouseEncodingSGRPixels
		} else {
			t.mouseEncoding = MouseEncodingDefault
		}
	case 25:
		t.cursorHidden = !on
	case 1048:
		if on {
			t.saveCursor()
		} else {
			t.restoreCursor()
		}
	case 1049, 47, 1047:
		if on {
			if mode == 1049 {
				t.saveCursor()
			}
			t.activateAlt(t.erase())
		} else {
			t.activateNormal()
			if mode == 1049 {
				t.restoreCursor()
			}
		}
	case 2004:
		t.bracketedPaste = on
	case 2026:
		t.syncOutput = on
	}
}

func (t *Terminal) setMouse(p MouseProtocol, on bool) {
	if on {
		t.mouseProtocol = p
	} else {
		t.mouseProtocol = MouseNone
	}
}

func (t *Terminal) activateAlt(fill *attrs) {
	if t.buf == t.alt {
		return
	}
	t.alt.fillViewportRows(fill)
	t.alt.x, t.alt.y = t.normal.x, t.normal.y
	t.buf = t.alt
}

func (t *Terminal) activateNormal() {
	if t.buf == t.normal {
		return
	}
	t.normal.x, t.normal.y = t.alt.x, t.alt.y
	t.alt.clear()
	t.buf = t.normal
}

func (t *Terminal) requestMode(p int, ansi bool) {
	const (
		notRecognized = 0
		set           = 1
		reset         = 2
		permSet       = 3
		permReset     = 4
	)
	f := func(v int) {
		q := "?"
		if ansi {
			q = ""
		}
		t.queueReply("\x1b[" + q + itoa(p) + ";" + itoa(v) + "$y")
	}
	b2v := func(v bool) int {
		if v {
			return set
		}
		return reset
	}
	if ansi {
		switch p {
		case 2:
			f(permReset)
		case 4:
			f(b2v(t.insertMode))
		case 12:
			f(permSet)
		case 20:
			f(b2v(t.convertEol))
		default:
			f(notRecognized)
		}
		return
	}
	switch p {
	case 1:
		f(b2v(t.appCursor))
	case 3:
		f(notRecognized)
	case 6:
		f(b2v(t.origin))
	case 7:
		f(b2v(t.wraparound))
	case 8:
		f(permSet)
	case 9:
		f(b2v(t.mouseProtocol == MouseX10))
	case 12:
		f(b2v(t.cursorBlinkOpt))
	case 25:
		f(b2v(!t.cursorHidden))
	case 45:
		f(b2v(t.reverseWrap))
	case 66:
		f(b2v(t.appKeypad))
	case 67:
		f(permReset)
	case 1000:
		f(b2v(t.mouseProtocol == MouseVT200))
	case 1002:
		f(b2v(t.mouseProtocol == MouseDrag))
	case 1003:
		f(b2v(t.mouseProtocol == MouseAny))
	case 1004:
		f(b2v(t.sendFocus))
	case 1005, 1015:
		f(permReset)
	case 1006:
		f(b2v(t.mouseEncoding == MouseEncodingSGR))
	case 1016:
		f(b2v(t.mouseEncoding == MouseEncodingSGRPixels))
	case 1048:
		f(set)
	case 47, 1047, 1049:
		f(b2v(t.buf == t.alt))
	case 2004:
		f(b2v(t.bracketedPaste))
	case 2026:
		f(b2v(t.syncOutput))
	default:
		f(notRecognized)
	}
}
