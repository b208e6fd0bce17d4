package vt

// buffer is one screen (xterm.js Buffer): the normal one with scrollback, or
// the alternate one without.
type buffer struct {
	t             *Terminal
	lines         *ring
	ybase         int
	y, x          int
	scrollTop     int
	scrollBottom  int
	tabs          []bool
	savedX        int
	savedY        int
	savedAttr     attrs // only fg and bg are saved, as in xterm.js
	savedCharset  charset
	hasScrollback bool
	cols, rows    int
}

func newBuffer(t *Terminal, hasScrollback bool) *buffer {
	b := &buffer{t: t, hasScrollback: hasScrollback, cols: t.cols, rows: t.rows}
	b.lines = newRing(b.correctLength(b.rows))
	b.scrollBottom = b.rows - 1
	b.setupTabStops(-1)
	return b
}

func (b *buffer) correctLength(rows int) int {
	if !b.hasScrollback {
		return rows
	}
	return rows + b.t.scrollback
}

func (b *buffer) blankLine(a *attrs, wrapped bool) *line {
	return newLine(b.t.cols, nullCell(a), a.ext, wrapped)
}

func (b *buffer) fillViewportRows(a *attrs) {
	if b.lines.length == 0 {
		for i := b.rows; i > 0; i-- {
			b.lines.push(b.blankLine(a, false))
		}
	}
}

func (b *buffer) clear() {
	b.ybase, b.y, b.x = 0, 0, 0
	b.lines = newRing(b.correctLength(b.rows))
	b.scrollTop = 0
	b.scrollBottom = b.rows - 1
	b.setupTabStops(-1)
}

func (b *buffer) line(y int) *line { return b.lines.get(b.ybase + y) }

func (b *buffer) tab(i int) bool { return i >= 0 && i < len(b.tabs) && b.tabs[i] }

func (b *buffer) setTab(i int, v bool) {
	if i < 0 {
		return
	}
	for i >= len(b.tabs) {
		b.tabs = append(b.tabs, false)
	}
	b.tabs[i] = v
}

// setupTabStops is xterm.js setupTabStops; i < 0 means "reset all".
func (b *buffer) setupTabStops(i int) {
	if i >= 0 {
		if !b.tab(i) {
			i = b.prevStop(i)
		}
	} else {
		b.tabs = b.tabs[:0]
		i = 0
	}
	for ; i < b.cols; i += 8 {
		b.setTab(i, true)
	}
}

func (b *buffer) prevStop(x int) int {
	for {
		x--
		if b.tab(x) || x <= 0 {
			break
		}
	}
	return clampStop(x, b.cols)
}

func (b *buffer) nextStop(x int) int {
	for {
		x++
		if b.tab(x) || x >= b.cols {
			break
		}
	}
	return clampStop(x, b.cols)
}

func clampStop(x, cols int) int {
	if x >= cols {
		return cols - 1
	}
	if x < 0 {
		return 0
	}
	return x
}

// resize is xterm.js Buffer.resize, reflow included.
func (b *buffer) resize(newCols, newRows int) {
	var def attrs
	newMax := b.correctLength(newRows)
	if newMax > b.lines.max {
		b.lines.setMax(newMax)
	}
	if b.lines.length > 0 {
		if b.cols < newCols {
			for i := 0; i < b.lines.length; i++ {
				b.lines.get(i).resize(newCols, &def)
			}
		}
		addToY := 0
		if b.rows < newRows {
			for y := b.rows; y < newRows; y++ {
				if b.lines.length < newRows+b.ybase {
					if b.ybase > 0 && b.lines.length <= b.ybase+b.y+addToY+1 {
						b.ybase--
						addToY++
					} else {
						b.lines.push(newLine(newCols, nullCell(&def), extAttrs{}, false))
					}
				}
			}
		} else {
			for y := b.rows; y > newRows; y-- {
				if b.lines.length > newRows+b.ybase {
					if b.lines.length > b.ybase+b.y+1 {
						b.lines.pop()
					} else {
						b.ybase++
					}
				}
			}
		}
		if newMax < b.lines.max {
			trim := b.lines.length - newMax
			if trim > 0 {
				b.lines.trimStart(trim)
				b.ybase = max(b.ybase-trim, 0)
				b.savedY = max(b.savedY-trim, 0)
			}
			b.lines.setMax(newMax)
		}
		b.x = min(b.x, newCols-1)
		b.y = min(b.y, newRows-1)
		if addToY != 0 {
			b.y += addToY
		}
		b.savedX = min(b.savedX, newCols-1)
		b.scrollTop = 0
	}
	b.scrollBottom = newRows - 1
	if b.hasScrollback {
		b.reflow(newCols, newRows)
		if b.cols > newCols {
			for i := 0; i < b.lines.length; i++ {
				b.lines.get(i).resize(newCols, &def)
			}
		}
	}
	b.cols = newCols
	b.rows = newRows
}

func (b *buffer) reflow(newCols, newRows int) {
	if b.cols == newCols {
		return
	}
	if newCols > b.cols {
		b.reflowLarger(newCols, newRows)
	} else {
		b.reflowSmaller(newCols, newRows)
	}
}

func (b *buffer) reflowLarger(newCols, newRows int) {
	toRemove := reflowLargerGetLinesToRemove(b.lines, b.cols, newCols, b.ybase+b.y)
	if len(toRemove) == 0 {
		return
	}
	layout, countRemoved := reflowLargerCreateNewLayout(b.lines, toRemove)
	newLines := make([]*line, len(layout))
	for i, idx := range layout {
		newLines[i] = b.lines.get(idx)
	}
	for i, l := range newLines {
		b.lines.set(i, l)
	}
	b.lines.setLength(len(layout))
	var def attrs
	for adj := countRemoved; adj > 0; adj-- {
		if b.ybase == 0 {
			if b.y > 0 {
				b.y--
			}
			if b.lines.length < newRows {
				b.lines.push(newLine(newCols, nullCell(&def), extAttrs{}, false))
			}
		} else {
			b.ybase--
		}
	}
	b.savedY = max(b.savedY-countRemoved, 0)
}

type insertion struct {
	start    int
	newLines []*line
}

func (b *buffer) reflowSmaller(newCols, newRows int) {
	var def attrs
	var toInsert []insertion
	countToInsert := 0
	for y := b.lines.length - 1; y >= 0; y-- {
		next := b.lines.get(y)
		if next == nil || !next.wrapped && next.trimmedLength() <= newCols {
			continue
		}
		wrapped := []*line{next}
		for next.wrapped && y > 0 {
			y--
			next = b.lines.get(y)
			wrapped = append([]*line{next}, wrapped...)
		}
		abs := b.ybase + b.y
		if abs >= y && abs < y+len(wrapped) {
			continue
		}
		lastLineLength := wrapped[len(wrapped)-1].trimmedLength()
		destLineLengths := reflowSmallerGetNewLineLengths(wrapped, b.cols, newCols)
		linesToAdd := len(destLineLengths) - len(wrapped)
		var trimmedLines int
		if b.ybase == 0 && b.y != b.lines.length-1 {
			trimmedLines = max(0, b.y-b.lines.max+linesToAdd)
		} else {
			trimmedLines = max(0, b.lines.length-b.lines.max+linesToAdd)
		}
		var newLines []*line
		for i := 0; i < linesToAdd; i++ {
			newLines = append(newLines, b.blankLine(&def, true))
		}
		if len(newLines) > 0 {
			toInsert = append(toInsert, insertion{y + len(wrapped) + countToInsert, newLines})
			countToInsert += len(newLines)
		}
		wrapped = append(wrapped, newLines...)
		destLineIndex := len(destLineLengths) - 1
		destCol := destLineLengths[destLineIndex]
		if destCol == 0 {
			destLineIndex--
			destCol = destLineLengths[destLineIndex]
		}
		srcLineIndex := len(wrapped) - linesToAdd - 1
		srcCol := lastLineLength
		for srcLineIndex >= 0 {
			n := min(srcCol, destCol)
			if destLineIndex < 0 || destLineIndex >= len(wrapped) || srcLineIndex >= len(wrapped) {
				break
			}
			wrapped[destLineIndex].copyCellsFrom(wrapped[srcLineIndex], srcCol-n, destCol-n, n, true)
			destCol -= n
			if destCol == 0 {
				destLineIndex--
				if destLineIndex >= 0 {
					destCol = destLineLengths[destLineIndex]
				}
			}
			srcCol -= n
			if srcCol == 0 {
				srcLineIndex--
				srcCol = wrappedLineTrimmedLength(wrapped, max(srcLineIndex, 0), b.cols)
			}
		}
		for i := range wrapped {
			if i < len(destLineLengths) && destLineLengths[i] < newCols {
				wrapped[i].setCell(destLineLengths[i], nullCell(&def), extAttrs{}, "")
			}
		}
		for adj := linesToAdd - trimmedLines; adj > 0; adj-- {
			if b.ybase == 0 {
				if b.y < newRows-1 {
					b.y++
					b.lines.pop()
				} else {
					b.ybase++
				}
			} else if b.ybase < min(b.lines.max, b.lines.length+countToInsert)-newRows {
				b.ybase++
			}
		}
		b.savedY = min(b.savedY+linesToAdd, b.ybase+newRows-1)
	}
	if len(toInsert) == 0 {
		return
	}
	original := make([]*line, b.lines.length)
	for i := range original {
		original[i] = b.lines.get(i)
	}
	origLen := b.lines.length
	origIdx := origLen - 1
	next, soFar := 0, 0
	b.lines.setLength(min(b.lines.max, b.lines.length+countToInsert))
	for i := min(b.lines.max-1, origLen+countToInsert-1); i >= 0; i-- {
		if next < len(toInsert) && toInsert[next].start > origIdx+soFar {
			nl := toInsert[next].newLines
			for j := len(nl) - 1; j >= 0 && i >= 0; j-- {
				b.lines.set(i, nl[j])
				i--
			}
			i++
			soFar += len(nl)
			next++
		} else {
			if origIdx >= 0 {
				b.lines.set(i, original[origIdx])
			}
			origIdx--
		}
	}
}

func reflowLargerGetLinesToRemove(lines *ring, oldCols, newCols, absY int) []int {
	var toRemove []int
	var def attrs
	for y := 0; y < lines.length-1; y++ {
		i := y
		i++
		next := lines.get(i)
		if !next.wrapped {
			continue
		}
		wrapped := []*line{lines.get(y)}
		for i < lines.length && next.wrapped {
			wrapped = append(wrapped, next)
			i++
			next = lines.get(i)
			if next == nil {
				break
			}
		}
		if absY >= y && absY < i {
			y += len(wrapped) - 1
			continue
		}
		destLineIndex := 0
		destCol := wrappedLineTrimmedLength(wrapped, destLineIndex, oldCols)
		srcLineIndex := 1
		srcCol := 0
		for srcLineIndex < len(wrapped) {
			srcTrimmed := wrappedLineTrimmedLength(wrapped, srcLineIndex, oldCols)
			srcRemaining := srcTrimmed - srcCol
			destRemaining := newCols - destCol
			n := min(srcRemaining, destRemaining)
			wrapped[destLineIndex].copyCellsFrom(wrapped[srcLineIndex], srcCol, destCol, n, false)
			destCol += n
			if destCol == newCols {
				destLineIndex++
				destCol = 0
			}
			srcCol += n
			if srcCol == srcTrimmed {
				srcLineIndex++
				srcCol = 0
			}
			if destCol == 0 && destLineIndex != 0 {
				if wrapped[destLineIndex-1].width(newCols-1) == 2 {
					wrapped[destLineIndex].copyCellsFrom(wrapped[destLineIndex-1], newCols-1, destCol, 1, false)
					destCol++
					wrapped[destLineIndex-1].setCell(newCols-1, nullCell(&def), extAttrs{}, "")
				}
			}
		}
		wrapped[destLineIndex].replaceCells(destCol, newCols, &def, false)
		countToRemove := 0
		for k := len(wrapped) - 1; k > 0; k-- {
			if k > destLineIndex || wrapped[k].trimmedLength() == 0 {
				countToRemove++
			} else {
				break
			}
		}
		if countToRemove > 0 {
			toRemove = append(toRemove, y+len(wrapped)-countToRemove, countToRemove)
		}
		y += len(wrapped) - 1
	}
	return toRemove
}

func reflowLargerCreateNewLayout(lines *ring, toRemove []int) ([]int, int) {
	var layout []int
	next := 0
	nextStart := toRemove[next]
	removed := 0
	for i := 0; i < lines.length; i++ {
		if nextStart == i {
			next++
			count := toRemove[next]
			i += count - 1
			removed += count
			next++
			if next < len(toRemove) {
				nextStart = toRemove[next]
			} else {
				nextStart = -1
			}
		} else {
			layout = append(layout, i)
		}
	}
	return layout, removed
}

func reflowSmallerGetNewLineLengths(wrapped []*line, oldCols, newCols int) []int {
	var lengths []int
	needed := 0
	for i := range wrapped {
		needed += wrappedLineTrimmedLength(wrapped, i, oldCols)
	}
	srcCol, srcLine, available := 0, 0, 0
	for available < needed {
		if needed-available < newCols {
			lengths = append(lengths, needed-available)
			break
		}
		srcCol += newCols
		oldTrimmed := wrappedLineTrimmedLength(wrapped, srcLine, oldCols)
		if srcCol > oldTrimmed {
			srcCol -= oldTrimmed
			srcLine++
		}
		endsWithWide := srcLine < len(wrapped) && wrapped[srcLine].width(srcCol-1) == 2
		if endsWithWide {
			srcCol--
		}
		n := newCols
		if endsWithWide {
			n--
		}
		lengths = append(lengths, n)
		available += n
	}
	return lengths
}

func wrappedLineTrimmedLength(lines []*line, i, cols int) int {
	if i == len(lines)-1 {
		return lines[i].trimmedLength()
	}
	endsInNull := !lines[i].hasContent(cols-1) && lines[i].width(cols-1) == 1
	followingWide := lines[i+1].width(0) == 2
	if endsInNull && followingWide {
		return cols - 1
	}
	return cols
}
