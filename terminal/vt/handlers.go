package vt

// The handlers below are ports of xterm.js's InputHandler methods; comments
// note where behaviour differs from other terminals on purpose.

func (t *Terminal) erase() *attrs {
	t.eraseAttr.bg &^= cmMask | 0xFFFFFF
	t.eraseAttr.bg |= t.cur.bg &^ 0xFC000000
	return &t.eraseAttr
}

// print writes a run of printable code points (InputHandler.print).
func (t *Terminal) print(data []uint32) {
	b := t.buf
	cols := t.cols
	cs := t.charset
	var table map[byte]rune
	if cs != 0 {
		table = charsetTables[cs]
	}
	cur := &t.cur
	row := b.line(b.y)
	printed := len(data) > 0
	if b.x != 0 && printed && row.width(b.x-1) == 2 {
		row.setCP(b.x-1, 0, 1, cur)
	}
	join := t.joinState
	if table == nil && !t.insertMode && join&1 == 0 {
		// Fast path: a run of ASCII that fits on the line needs no
		// width lookup, joining, wrapping or insertion.
		n := 0
		room := cols - b.x
		for n < len(data) && n < room && data[n] < 127 {
			n++
		}
		if n > 0 {
			cells := row.cells[b.x : b.x+n]
			fg, bg := cur.fg, cur.bg
			for i, code := range data[:n] {
				cells[i] = cell{code | 1<<contentWidthShift, fg, bg}
			}
			if bg&bgHasExtended != 0 {
				row.ensureExt()
				for i := b.x; i < b.x+n; i++ {
					row.ext[i] = cur.ext
				}
			}
			b.x += n
			join = 2
			data = data[n:]
		}
	}
	for _, code := range data {
		if code < 127 && table != nil {
			if r, ok := table[byte(code)]; ok {
				code = uint32(r)
			}
		}
		var info uint32
		if code < 127 && join&1 == 0 {
			// Fast path: ASCII never joins and is one cell wide.
			info = 2
		} else {
			info = charProperties(code, join)
		}
		chWidth := int(info>>1) & 3
		shouldJoin := info&1 != 0
		oldWidth := 0
		if shouldJoin {
			oldWidth = int(join>>1) & 3
		}
		join = info
		if cur.ext.urlID != 0 {
			// xterm.js records the line for the link here; nothing to do.
			_ = cur
		}
		if b.x+chWidth-oldWidth > cols {
			if t.wraparound {
				oldRow := row
				oldCol := b.x - oldWidth
				b.x = oldWidth
				b.y++
				if b.y == b.scrollBottom+1 {
					b.y--
					t.scroll(t.erase(), true)
				} else {
					if b.y >= t.rows {
						b.y = t.rows - 1
					}
					b.line(b.y).wrapped = true
				}
				row = b.line(b.y)
				if oldWidth > 0 {
					row.copyCellsFrom(oldRow, oldCol, 0, oldWidth, false)
				}
				for oldCol < cols {
					oldRow.setCP(oldCol, 0, 1, cur)
					oldCol++
				}
			} else {
				b.x = cols - 1
				if chWidth == 2 {
					continue
				}
			}
		}
		if shouldJoin && b.x != 0 {
			offset := 2
			if row.width(b.x-1) != 0 {
				offset = 1
			}
			row.addCodepoint(b.x-offset, code, uint32(chWidth))
			for delta := chWidth - oldWidth; delta > 0; delta-- {
				row.setCP(b.x, 0, 0, cur)
				b.x++
			}
			continue
		}
		if t.insertMode {
			row.insertCells(b.x, chWidth-oldWidth, cur)
			if row.width(cols-1) == 2 {
				row.setCP(cols-1, 0, 1, cur)
			}
		}
		row.setCP(b.x, code, uint32(chWidth), cur)
		b.x++
		if chWidth > 0 {
			for chWidth--; chWidth > 0; chWidth-- {
				row.setCP(b.x, 0, 0, cur)
				b.x++
			}
		}
	}
	t.joinState = join
	if b.x < cols && printed && row.width(b.x) == 0 && !row.hasContent(b.x) {
		row.setCP(b.x, 0, 1, cur)
	}
}

// scroll is BufferService.scroll: one line up within the scroll region.
func (t *Terminal) scroll(erase *attrs, wrapped bool) {
	b := t.buf
	nl := t.cachedBlank
	if nl == nil || nl.length() != t.cols || nl.cells[0].fg != erase.fg || nl.cells[0].bg != erase.bg {
		nl = b.blankLine(erase, wrapped)
		t.cachedBlank = nl
	}
	nl.wrapped = wrapped
	top := b.ybase + b.scrollTop
	bottom := b.ybase + b.scrollBottom
	if b.scrollTop == 0 {
		full := b.lines.isFull()
		if bottom == b.lines.length-1 {
			if full {
				b.lines.recycle().reset(nl)
			} else {
				b.lines.push(nl.clone())
			}
		} else {
			b.lines.splice(bottom+1, 0, nl.clone())
		}
		if !full {
			b.ybase++
		}
	} else {
		height := bottom - top + 1
		b.lines.shiftElements(top+1, height-1, -1)
		b.lines.set(bottom, nl.clone())
	}
}

func (t *Terminal) execute(code uint32) {
	switch code {
	case 0x07: // BEL
	case 0x0a, 0x0b, 0x0c:
		t.lineFeed()
	case 0x0d:
		t.buf.x = 0
	case 0x08:
		t.backspace()
	case 0x09:
		b := t.buf
		if b.x < t.cols {
			b.x = b.nextStop(b.x)
		}
	case 0x0e:
		t.setgLevel(1)
	case 0x0f:
		t.setgLevel(0)
	case 0x84: // IND
		t.index()
	case 0x85: // NEL
		t.buf.x = 0
		t.index()
	case 0x88: // HTS
		t.buf.setTab(t.buf.x, true)
	}
}

func (t *Terminal) lineFeed() {
	b := t.buf
	if t.convertEol {
		b.x = 0
	}
	b.y++
	if b.y == b.scrollBottom+1 {
		b.y--
		t.scroll(t.erase(), false)
	} else if b.y >= t.rows {
		b.y = t.rows - 1
	} else {
		b.line(b.y).wrapped = false
	}
	if b.x >= t.cols {
		b.x--
	}
}

func (t *Terminal) backspace() {
	b := t.buf
	if !t.reverseWrap {
		t.restrictCursor(t.cols - 1)
		if b.x > 0 {
			b.x--
		}
		return
	}
	t.restrictCursor(t.cols)
	if b.x > 0 {
		b.x--
	} else if b.x == 0 && b.y > b.scrollTop && b.y <= b.scrollBottom && b.line(b.y) != nil && b.line(b.y).wrapped {
		b.line(b.y).wrapped = false
		b.y--
		b.x = t.cols - 1
		l := b.line(b.y)
		if l.width(b.x) != 0 && !l.hasContent(b.x) {
			b.x--
		}
	}
	t.restrictCursor(t.cols - 1)
}

func (t *Terminal) restrictCursor(maxCol int) {
	b := t.buf
	b.x = min(maxCol, max(0, b.x))
	if t.origin {
		b.y = min(b.scrollBottom, max(b.scrollTop, b.y))
	} else {
		b.y = min(t.rows-1, max(0, b.y))
	}
}

func (t *Terminal) setCursor(x, y int) {
	b := t.buf
	b.x = x
	if t.origin {
		b.y = b.scrollTop + y
	} else {
		b.y = y
	}
	t.restrictCursor(t.cols - 1)
}

func (t *Terminal) moveCursor(dx, dy int) {
	t.restrictCursor(t.cols - 1)
	t.setCursor(t.buf.x+dx, t.buf.y+dy)
}

func (t *Terminal) setgLevel(g int) {
	t.glevel = g
	t.charset = t.charsets[g]
}

func (t *Terminal) setgCharset(g int, cs charset) {
	t.charsets[g] = cs
	if t.glevel == g {
		t.charset = cs
	}
}

func (t *Terminal) index() {
	b := t.buf
	t.restrictCursor(t.cols - 1)
	b.y++
	if b.y == b.scrollBottom+1 {
		b.y--
		t.scroll(t.erase(), false)
	} else if b.y >= t.rows {
		b.y = t.rows - 1
	}
	t.restrictCursor(t.cols - 1)
}

func (t *Terminal) reverseIndex() {
	b := t.buf
	t.restrictCursor(t.cols - 1)
	if b.y == b.scrollTop {
		height := b.scrollBottom - b.scrollTop
		b.lines.shiftElements(b.ybase+b.y, height, 1)
		b.lines.set(b.ybase+b.y, b.blankLine(t.erase(), false))
	} else {
		b.y--
		t.restrictCursor(t.cols - 1)
	}
}

func (t *Terminal) saveCursor() {
	b := t.buf
	b.savedX = b.x
	b.savedY = b.ybase + b.y
	b.savedAttr.fg = t.cur.fg
	b.savedAttr.bg = t.cur.bg
	b.savedCharset = t.charset
}

func (t *Terminal) restoreCursor() {
	b := t.buf
	b.x = b.savedX
	b.y = max(b.savedY-b.ybase, 0)
	t.cur.fg = b.savedAttr.fg
	t.cur.bg = b.savedAttr.bg
	t.charset = b.savedCharset
	t.restrictCursor(t.cols - 1)
}

func (t *Terminal) escDispatch(ident uint32) {
	switch ident {
	case '7':
		t.saveCursor()
	case '8':
		t.restoreCursor()
	case 'D':
		t.index()
	case 'E':
		t.buf.x = 0
		t.index()
	case 'H':
		t.buf.setTab(t.buf.x, true)
	case 'M':
		t.reverseIndex()
	case '=':
		t.appKeypad = true
	case '>':
		t.appKeypad = false
	case 'c':
		t.fullReset()
	case 'n', '}':
		t.setgLevel(2)
	case 'o', '|':
		t.setgLevel(3)
	case '~':
		t.setgLevel(1)
	case '%'<<8 | '@', '%'<<8 | 'G':
		t.setgLevel(0)
		t.setgCharset(0, 0)
	case '#'<<8 | '8':
		t.screenAlignmentPattern()
	default:
		inter, final := ident>>8, byte(ident)
		if inter > 0xff || !isCharsetFinal(final) {
			return
		}
		switch inter {
		case '(':
			t.selectCharset(0, final)
		case ')', '-':
			t.selectCharset(1, final)
		case '*', '.':
			t.selectCharset(2, final)
		case '+':
			t.selectCharset(3, final)
		}
	}
}

func isCharsetFinal(b byte) bool {
	for i := 0; i < len(charsetFinals); i++ {
		if charsetFinals[i] == b {
			return true
		}
	}
	return false
}

func (t *Terminal) selectCharset(g int, final byte) {
	cs := charset(final)
	if final == 'B' {
		cs = 0
	}
	t.setgCharset(g, cs)
}

func (t *Terminal) fullReset() {
	t.resetParser()
	t.resetState()
}

func (t *Terminal) screenAlignmentPattern() {
	c := cell{1<<contentWidthShift | 'E', t.cur.fg, t.cur.bg}
	t.setCursor(0, 0)
	b := t.buf
	for off := 0; off < t.rows; off++ {
		if l := b.lines.get(b.ybase + b.y + off); l != nil {
			l.fillCell(c)
			if c.bg&bgHasExtended != 0 {
				l.ensureExt()
				clear(l.ext)
			}
			l.wrapped = false
		}
	}
	t.setCursor(0, 0)
}
