// Package vt is a terminal emulator that reproduces xterm.js 6 exactly, and
// serialises its state as an ANSI byte stream that brings a fresh xterm.js of
// the same size to the same state.
//
// The agent runs one [Terminal] per web-terminal session and feeds it the PTY
// output with [Terminal.Write]; when a browser attaches, it sends
// [Terminal.Serialize] first and then the live bytes. The emulator parses
// VT500/xterm sequences with the same state machine, UTF-8 decoder, Unicode 6
// width table, buffer model (primary and alternate screens, scrollback as a
// ring of lines) and resize reflow as @xterm/headless 6.0.0, which is the
// ground truth of its tests.
//
// The package does no I/O and starts no goroutines. A [Terminal] is not safe
// for concurrent use: its owner serialises calls (typically under the
// session's mutex). Replies to terminal queries (DA, DSR, DECRQM, DECRQSS)
// are queued in a bounded buffer that the owner drains with
// [Terminal.TakeReplies]; the parser never blocks on them. Knobs come only
// from [Options].
package vt

// Options configures a [Terminal]. The zero value is ready to use.
type Options struct {
	// Scrollback is the number of lines kept above the normal screen.
	// Zero means 10,000; a negative value keeps none.
	Scrollback int
	// MaxCells bounds the cells of the normal screen's buffer, viewport and
	// scrollback together, and so its memory (12 bytes a cell): the
	// scrollback is cut to MaxCells/cols - rows lines (none if the viewport
	// alone reaches it) when the terminal is made and at every Resize, the
	// oldest lines going first, before any line is widened. Zero means no
	// bound: the scrollback is Scrollback at any size, as in xterm.js.
	MaxCells int
	// MaxReplyBytes bounds the queue of replies to terminal queries.
	// Replies that do not fit are dropped. Zero means 4 KiB.
	MaxReplyBytes int
}

// DefaultScrollback is the scrollback used when [Options.Scrollback] is zero.
const DefaultScrollback = 10000

// maxDecode bounds the code point buffer used per chunk of input.
const maxDecode = 1 << 16

// Terminal is an xterm.js-compatible terminal emulator. Create it with [New].
type Terminal struct {
	cols, rows int
	scrollback int // in effect: scrollbackOpt cut to fit maxCells
	// scrollbackOpt is Options.Scrollback; maxCells Options.MaxCells.
	scrollbackOpt, maxCells int

	normal, alt, buf *buffer
	cur              attrs
	eraseAttr        attrs

	insertMode     bool
	convertEol     bool
	appCursor      bool
	appKeypad      bool
	bracketedPaste bool
	origin         bool
	wraparound     bool
	reverseWrap    bool
	sendFocus      bool
	syncOutput     bool
	cursorHidden   bool
	cursorStyle    CursorStyle
	cursorBlink    int8 // -1 unset, 0 steady, 1 blinking (DECSCUSR)
	cursorBlinkOpt bool // xterm.js's cursorBlink option, set by ?12h
	mouseProtocol  MouseProtocol
	mouseEncoding  MouseEncoding

	charsets [4]charset
	glevel   int
	charset  charset

	title, iconName string

	// parser state
	state     int
	collect   uint32
	params    params
	joinState uint32
	osc       oscState
	dcs       dcsState
	dec       utf8Decoder
	cps       []uint32

	replies    []byte
	maxReplies int
	dropped    int

	links       linkTable
	cachedBlank *line
}

// New returns a terminal of cols×rows cells (raised to at least 2×1, as in
// xterm.js) in the state of a fresh xterm.js.
func New(cols, rows int, opts Options) *Terminal {
	t := &Terminal{cols: max(cols, 2), rows: max(rows, 1)}
	switch {
	case opts.Scrollback == 0:
		t.scrollback = DefaultScrollback
	case opts.Scrollback < 0:
		t.scrollback = 0
	default:
		t.scrollback = opts.Scrollback
	}
	t.scrollbackOpt, t.maxCells = t.scrollback, max(opts.MaxCells, 0)
	t.scrollback = t.scrollbackFor(t.cols, t.rows)
	t.maxReplies = opts.MaxReplyBytes
	if t.maxReplies <= 0 {
		t.maxReplies = 4096
	}
	t.resetState()
	t.params.addParam(0)
	return t
}

// resetState is xterm.js's Terminal.reset (RIS) minus the parser.
func (t *Terminal) resetState() {
	t.cur = attrs{}
	t.eraseAttr = attrs{}
	t.normal = newBuffer(t, true)
	t.normal.fillViewportRows(&attrs{})
	t.alt = newBuffer(t, false)
	t.buf = t.normal
	t.charsets = [4]charset{}
	t.glevel = 0
	t.charset = 0
	t.resetModes()
	t.mouseProtocol = MouseNone
	t.mouseEncoding = MouseEncodingDefault
	t.cachedBlank = nil
}

func (t *Terminal) resetModes() {
	t.insertMode = false
	t.appCursor, t.appKeypad, t.bracketedPaste = false, false, false
	t.origin, t.reverseWrap, t.sendFocus, t.syncOutput = false, false, false, false
	t.wraparound = true
	t.cursorStyle = CursorStyleDefault
	t.cursorBlink = -1
}

// Write parses p as terminal output. It always consumes all of p and
// returns len(p), nil; it never blocks.
func (t *Terminal) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxDecode {
			chunk = chunk[:maxDecode]
		}
		p = p[len(chunk):]
		if cap(t.cps) < len(chunk) {
			t.cps = make([]uint32, max(len(chunk), 256))
		}
		m := t.dec.decode(chunk, t.cps[:cap(t.cps)])
		t.parse(t.cps[:m])
	}
	return n, nil
}

// WriteString is [Terminal.Write] for a string.
func (t *Terminal) WriteString(s string) (int, error) { return t.Write([]byte(s)) }

// Size returns the number of columns and rows.
func (t *Terminal) Size() (cols, rows int) { return t.cols, t.rows }

// Resize changes the size as xterm.js does, reflowing wrapped lines of the
// normal screen (the alternate screen is not reflowed). Sizes below 2×1 are
// raised to it, as in xterm.js.
func (t *Terminal) Resize(cols, rows int) {
	cols = max(cols, 2)
	rows = max(rows, 1)
	if cols == t.cols && rows == t.rows {
		return
	}
	if sb := t.scrollbackFor(cols, rows); sb < t.scrollback {
		// Drop the oldest lines at the old size first, so that widening
		// never allocates lines the budget then drops.
		t.scrollback = sb
		t.normal.resize(t.cols, t.rows)
	} else {
		t.scrollback = sb
	}
	t.cols, t.rows = cols, rows
	t.normal.resize(cols, rows)
	t.alt.resize(cols, rows)
	t.normal.setupTabStops(cols)
	t.alt.setupTabStops(cols)
}

// scrollbackFor returns the scrollback in effect at cols×rows: the
// configured one, cut to fit Options.MaxCells.
func (t *Terminal) scrollbackFor(cols, rows int) int {
	if t.maxCells == 0 {
		return t.scrollbackOpt
	}
	return min(t.scrollbackOpt, max(t.maxCells/cols-rows, 0))
}

// queueReply appends a reply for the owner, dropping it when the queue is full.
func (t *Terminal) queueReply(s string) {
	if len(t.replies)+len(s) > t.maxReplies {
		t.dropped++
		return
	}
	t.replies = append(t.replies, s...)
}

// TakeReplies returns the queued replies to terminal queries, in order, and
// empties the queue. The owner writes them to the PTY input (or drops them
// when a browser, which answers by itself, is attached). The returned slice
// is owned by the caller.
func (t *Terminal) TakeReplies() []byte {
	if len(t.replies) == 0 {
		return nil
	}
	r := t.replies
	t.replies = nil
	return r
}

// DroppedReplies returns how many replies were dropped because the queue was full.
func (t *Terminal) DroppedReplies() int { return t.dropped }

// Title returns the window title (OSC 0 or 2).
func (t *Terminal) Title() string { return t.title }

// AltScreen reports whether the alternate screen is active.
func (t *Terminal) AltScreen() bool { return t.buf == t.alt }

// Cursor is the cursor state.
type Cursor struct {
	X, Y   int // column and row in the active screen, from 0; X may equal the width (pending wrap)
	Hidden bool
	Style  CursorStyle
	// Blink is the blink state set by DECSCUSR; meaningful when Style is not CursorStyleDefault.
	Blink bool
}

// CursorStyle is the shape set by DECSCUSR.
type CursorStyle uint8

// Cursor styles. CursorStyleDefault means none was set (the client's default applies).
const (
	CursorStyleDefault CursorStyle = iota
	CursorStyleBlock
	CursorStyleUnderline
	CursorStyleBar
)

// Cursor returns the cursor of the active screen.
func (t *Terminal) Cursor() Cursor {
	return Cursor{X: t.buf.x, Y: t.buf.y, Hidden: t.cursorHidden, Style: t.cursorStyle, Blink: t.cursorBlink == 1}
}

// MouseProtocol is the mouse tracking mode.
type MouseProtocol uint8

// Mouse tracking modes (DECSET 9, 1000, 1002, 1003).
const (
	MouseNone MouseProtocol = iota
	MouseX10
	MouseVT200
	MouseDrag
	MouseAny
)

// MouseEncoding is the mouse report encoding. xterm.js 6 does not
// implement 1005 (UTF-8) and 1015 (urxvt), so neither does this package.
type MouseEncoding uint8

// Mouse encodings (default, DECSET 1006, DECSET 1016).
const (
	MouseEncodingDefault MouseEncoding = iota
	MouseEncodingSGR
	MouseEncodingSGRPixels
)

// Modes are the terminal modes that change how input is encoded or output
// is interpreted.
type Modes struct {
	ApplicationCursorKeys bool // DECCKM, ?1
	ApplicationKeypad     bool // DECKPAM, ESC = or ?66
	BracketedPaste        bool // ?2004
	Insert                bool // IRM, 4
	Origin                bool // DECOM, ?6
	Wraparound            bool // DECAWM, ?7
	ReverseWraparound     bool // ?45
	SendFocus             bool // ?1004
	SynchronizedOutput    bool // ?2026
	ConvertEOL            bool // LNM, 20
	CursorBlink           bool // ?12 (xterm.js's cursorBlink option)
	MouseProtocol         MouseProtocol
	MouseEncoding         MouseEncoding
}

// Modes returns the current modes.
func (t *Terminal) Modes() Modes {
	return Modes{
		ApplicationCursorKeys: t.appCursor,
		ApplicationKeypad:     t.appKeypad,
		BracketedPaste:        t.bracketedPaste,
		Insert:                t.insertMode,
		Origin:                t.origin,
		Wraparound:            t.wraparound,
		ReverseWraparound:     t.reverseWrap,
		SendFocus:             t.sendFocus,
		SynchronizedOutput:    t.syncOutput,
		ConvertEOL:            t.convertEol,
		CursorBlink:           t.cursorBlinkOpt,
		MouseProtocol:         t.mouseProtocol,
		MouseEncoding:         t.mouseEncoding,
	}
}

// Screen selects the normal or the alternate screen.
type Screen uint8

// Screens.
const (
	Normal Screen = iota
	Alternate
)

func (t *Terminal) screen(s Screen) *buffer {
	if s == Alternate {
		return t.alt
	}
	return t.normal
}

// Lines returns the number of lines of a screen, scrollback included
// (the alternate screen has none, and no lines while inactive).
func (t *Terminal) Lines(s Screen) int { return t.screen(s).lines.length }

// ScrollbackLines returns the number of lines above the normal screen's viewport.
func (t *Terminal) ScrollbackLines() int { return t.normal.ybase }

// Wrapped reports whether line y of screen s (0 is the oldest scrollback
// line) continues the previous line because of an automatic wrap.
func (t *Terminal) Wrapped(s Screen, y int) bool {
	l := t.screen(s).lines.get(y)
	return l != nil && l.wrapped
}

// Color is a cell colour: a mode and a value.
type Color uint32

// ColorMode says how to read a [Color].
type ColorMode uint8

// Colour modes.
const (
	ColorDefault ColorMode = iota
	ColorPalette16
	ColorPalette256
	ColorRGB
)

// Mode returns the colour mode.
func (c Color) Mode() ColorMode { return ColorMode(c >> 24 & 3) }

// Value returns the palette index or the 0xRRGGBB value (0 for ColorDefault).
func (c Color) Value() uint32 {
	switch c.Mode() {
	case ColorPalette16, ColorPalette256:
		return uint32(c) & pcolorMask
	case ColorRGB:
		return uint32(c) & rgbMask
	}
	return 0
}

// Attr is a set of character attributes.
type Attr uint16

// Character attributes.
const (
	AttrBold Attr = 1 << iota
	AttrDim
	AttrItalic
	AttrBlink
	AttrInverse
	AttrInvisible
	AttrStrikethrough
	AttrOverline
	AttrProtected
)

// Underline styles (SGR 4:n, 21).
const (
	UnderlineNone = iota
	UnderlineSingle
	UnderlineDouble
	UnderlineCurly
	UnderlineDotted
	UnderlineDashed
)

// Cell is the content and attributes of one grid cell.
type Cell struct {
	Char           string // "" for an empty cell; a grapheme cluster may hold several code points
	Width          int    // 1, 2 for a wide character, 0 for the cell right of a wide character
	Fg, Bg         Color
	Attrs          Attr
	Underline      int   // UnderlineNone … UnderlineDashed
	UnderlineColor Color // ColorDefault means the foreground colour
	Link           string
	LinkID         string // the id= parameter of the OSC 8 link, if any
}

// CellAt returns cell x of line y of screen s (0 is the oldest scrollback
// line). Out-of-range positions return the zero Cell.
func (t *Terminal) CellAt(s Screen, y, x int) Cell {
	l := t.screen(s).lines.get(y)
	if l == nil || x < 0 || x >= l.length() || x >= t.cols {
		return Cell{}
	}
	c := l.cells[x]
	out := Cell{
		Char:  l.chars(x),
		Width: int(c.content >> contentWidthShift),
		Fg:    Color(c.fg & (cmMask | rgbMask)),
		Bg:    Color(c.bg & (cmMask | rgbMask)),
		Attrs: attrFlags(c.fg, c.bg),
	}
	e := l.loadExt(x)
	out.Underline = underlineStyleOf(c.fg, c.bg, e)
	if out.Underline != UnderlineNone && c.bg&bgHasExtended != 0 {
		out.UnderlineColor = Color(e.underlineColor())
	}
	if c.bg&bgHasExtended != 0 && e.urlID != 0 {
		if lk, ok := t.links.byID[e.urlID]; ok {
			out.Link, out.LinkID = lk.uri, lk.id
		}
	}
	return out
}

func attrFlags(fg, bg uint32) Attr {
	var a Attr
	flag := func(on bool, f Attr) {
		if on {
			a |= f
		}
	}
	flag(fg&fgBold != 0, AttrBold)
	flag(bg&bgDim != 0, AttrDim)
	flag(bg&bgItalic != 0, AttrItalic)
	flag(fg&fgBlink != 0, AttrBlink)
	flag(fg&fgInverse != 0, AttrInverse)
	flag(fg&fgInvisible != 0, AttrInvisible)
	flag(fg&fgStrikethrough != 0, AttrStrikethrough)
	flag(bg&bgOverline != 0, AttrOverline)
	flag(bg&bgProtected != 0, AttrProtected)
	return a
}

// underlineStyleOf is xterm.js getUnderlineStyle.
func underlineStyleOf(fg, bg uint32, e extAttrs) int {
	if fg&fgUnderline == 0 {
		return UnderlineNone
	}
	if bg&bgHasExtended != 0 {
		return int(e.underlineStyle())
	}
	return UnderlineSingle
}

// BytesPerScrollbackLine returns the average memory held per line of the
// normal screen's buffer (scrollback and viewport), in bytes.
func (t *Terminal) BytesPerScrollbackLine() int {
	n := t.normal.lines.length
	if n == 0 {
		return 0
	}
	total := 0
	for i := 0; i < n; i++ {
		total += t.normal.lines.get(i).memSize()
	}
	return total/n + 8 // plus the ring slot
}

// link registry (xterm.js OscLinkService), bounded by sweeping unused links.
type linkData struct{ id, uri string }

type linkTable struct {
	next  uint32
	byID  map[uint32]linkData
	byKey map[string]uint32
}

const maxLinks = 4096

func (t *Terminal) registerLink(id, uri string) uint32 {
	lt := &t.links
	if lt.byID == nil {
		lt.byID = make(map[uint32]linkData)
		lt.byKey = make(map[string]uint32)
	}
	if id != "" {
		if v, ok := lt.byKey[id+";;"+uri]; ok {
			return v
		}
	}
	if len(lt.byID) >= maxLinks {
		t.sweepLinks()
	}
	lt.next++
	lt.byID[lt.next] = linkData{id, uri}
	if id != "" {
		lt.byKey[id+";;"+uri] = lt.next
	}
	return lt.next
}

// sweepLinks forgets links no cell, pen or saved pen refers to.
func (t *Terminal) sweepLinks() {
	used := map[uint32]bool{t.cur.ext.urlID: true}
	for _, b := range []*buffer{t.normal, t.alt} {
		for i := 0; i < b.lines.length; i++ {
			l := b.lines.get(i)
			for x := range l.cells {
				if l.cells[x].bg&bgHasExtended != 0 && x < len(l.ext) {
					used[l.ext[x].urlID] = true
				}
			}
		}
	}
	for k, v := range t.links.byID {
		if !used[k] {
			delete(t.links.byID, k)
			if v.id != "" {
				delete(t.links.byKey, v.id+";;"+v.uri)
			}
		}
	}
}
