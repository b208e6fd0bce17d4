package terminal

import "bytes"

// Screen is a session's model of what its terminal shows, kept by the agent
// so that every attach can be given the current screen (exact screen
// restore, see shared/TERMINAL.md). The emulator in terminal/vt implements
// it; until then the agent uses [NewRawTailScreen].
//
// A session calls the methods with its lock held, one at a time, so an
// implementation need not be safe for concurrent use; they must not block.
type Screen interface {
	// Write feeds raw PTY output, in order. It must not retain p.
	Write(p []byte)
	// Resize follows a PTY resize to cols columns and rows rows.
	Resize(cols, rows int)
	// Serialize returns bytes that, written to a terminal (xterm.js) in any
	// state, make it show exactly this screen, with the pen, modes and
	// pending escape sequence ready for the output that follows: they must
	// begin with a full reset, ESC c. The caller owns the returned slice.
	Serialize() []byte
}

// rawTailBytes bounds the raw tail kept by NewRawTailScreen.
const rawTailBytes = 256 << 10

// NewRawTailScreen returns the stand-in [Screen] used until the emulator in
// terminal/vt lands: it keeps the last 256 KiB of raw output and replays it
// from the first line start it holds. It is not exact: sizes, modes and
// state from dropped output are lost. cols, rows and scrollback are ignored.
func NewRawTailScreen(cols, rows, scrollback int) Screen {
	return &rawTailScreen{}
}

// rawTailScreen is a bounded ring of raw output.
type rawTailScreen struct {
	buf  []byte // len(buf) ≤ rawTailBytes; ring storage once full
	head int    // next write position once full
	full bool   // the ring has wrapped: output was dropped
}

func (s *rawTailScreen) Write(p []byte) {
	if len(p) >= rawTailBytes {
		s.buf = append(s.buf[:0], p[len(p)-rawTailBytes:]...)
		s.head, s.full = 0, true
		return
	}
	if !s.full {
		if len(s.buf)+len(p) <= rawTailBytes {
			s.buf = append(s.buf, p...)
			return
		}
		// Grow to the full size and switch to ring mode.
		n := rawTailBytes - len(s.buf)
		s.buf = append(s.buf, p[:n]...)
		p = p[n:]
		s.head, s.full = 0, true
	}
	for len(p) > 0 {
		n := copy(s.buf[s.head:], p)
		p = p[n:]
		s.head = (s.head + n) % len(s.buf)
	}
}

func (s *rawTailScreen) Resize(cols, rows int) {}

func (s *rawTailScreen) Serialize() []byte {
	out := make([]byte, 0, 2+len(s.buf))
	out = append(out, "\x1bc"...)
	if !s.full {
		return append(out, s.buf...)
	}
	tail := append(append([]byte(nil), s.buf[s.head:]...), s.buf[:s.head]...)
	// Start at a line start, not inside an escape sequence or character.
	if i := bytes.IndexByte(tail, '\n'); i >= 0 {
		tail = tail[i+1:]
	}
	return append(out, tail...)
}
