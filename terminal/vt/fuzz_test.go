package vt

import (
	"bytes"
	"testing"
)

// FuzzTerminal feeds random bytes with random resizes (encoded in the input)
// and checks that the emulator never panics or hangs, that its memory stays
// within bounds, and that a snapshot replays to the same cells.
func FuzzTerminal(f *testing.F) {
	for _, c := range synthCases() {
		var b []byte
		for _, o := range c.ops {
			if o.cols > 0 {
				b = append(b, 0xFE, byte(o.cols), byte(o.rows))
			} else {
				b = append(b, o.data...)
			}
		}
		f.Add(b)
	}
	f.Add([]byte("\x1b[?1049h\x1b[1;5r\x1b[2;3H\x1b[4h中\u0301\xfe\x05\x03\x1b[3b\x1b]8;;u\x07x\xfe\x50\x10"))
	f.Add([]byte("\x1bP$q\"q\x1b\\\x1b[>c\x1b[6n\x1b[?2026$p\x1b[999999999b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const scrollback = 100
		term := New(20, 6, Options{Scrollback: scrollback, MaxReplyBytes: 256})
		// 0xFE c r resizes to (c%50+1)x(r%20+1); everything else is output.
		for len(data) > 0 {
			i := bytes.IndexByte(data, 0xFE)
			if i < 0 || i+2 >= len(data) {
				term.Write(data)
				break
			}
			term.Write(data[:i])
			term.Resize(int(data[i+1]%50)+1, int(data[i+2]%20)+1)
			data = data[i+3:]
		}
		cols, rows := term.Size()
		if n := term.Lines(Normal); n > scrollback+rows {
			t.Fatalf("normal buffer holds %d lines, bound is %d", n, scrollback+rows)
		}
		if n := term.Lines(Alternate); n > rows {
			t.Fatalf("alternate buffer holds %d lines, bound is %d", n, rows)
		}
		if len(term.replies) > 256 {
			t.Fatalf("reply queue holds %d bytes, bound is 256", len(term.replies))
		}
		if n := len(term.osc.data); n > oscKeep {
			t.Fatalf("OSC buffer holds %d code points, bound is %d", n, oscKeep)
		}
		if n := len(term.dcs.data); n > 64 {
			t.Fatalf("DCS buffer holds %d code points", n)
		}
		if n := len(term.links.byID); n > maxLinks {
			t.Fatalf("%d links registered, bound is %d", n, maxLinks)
		}
		snap := term.Serialize()
		if len(snap) > 64*(scrollback+2*rows)*cols+oscKeep*8+4096 {
			t.Fatalf("snapshot of %d bytes for a %dx%d terminal", len(snap), cols, rows)
		}
		// The snapshot must parse in a fresh terminal without trouble.
		New(cols, rows, Options{Scrollback: scrollback}).Write(snap)
	})
}
