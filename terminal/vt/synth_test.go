package vt

import (
	"fmt"
	"strings"
	"testing"
)

// probe is appended after each synthetic case (to the raw bytes and to the
// restored snapshot): it exercises the state that a snapshot must carry
// (pen, pending wrap, join state, charset, modes, scroll region).
const probe = "\u0301\x1b[2bZq\x1b[1;31mPROBE\x1b[0m\r\nline\x1b[Mtail\x1b[5S"

type synthCase struct {
	name string
	ops  []op
}

func w(s string) op        { return op{data: []byte(s)} }
func rs(cols, rows int) op { return op{cols: cols, rows: rows} }
func seqLines(n int, f func(i int) string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(f(i))
	}
	return b.String()
}

func synthCases() []synthCase {
	long := strings.Repeat("0123456789abcdefghij", 10)
	cjk := strings.Repeat("中文字符", 12)
	many := seqLines(60, func(i int) string {
		return fmt.Sprintf("\x1b[3%dmline %d %s\x1b[0m\r\n", i%8, i, strings.Repeat("x", i*3%150))
	})
	return []synthCase{
		{"plain", []op{w("hello world\r\nsecond line")}},
		{"pending wrap at right margin", []op{w(strings.Repeat("a", 80))}},
		{"pending wrap then SGR", []op{w(strings.Repeat("b", 79) + "\x1b[41mc\x1b[0m")}},
		{"wrap continues", []op{w(strings.Repeat("c", 85))}},
		{"wide char at margin wraps", []op{w(strings.Repeat("d", 79) + "\x1b[44m中\x1b[0mX")}},
		{"wide chars wrap", []op{w(cjk)}},
		{"combining and emoji", []op{w("e\u0301 a\u0308\u0304 👍🏽 ❤\ufe0f 한글 ｶﾀｶﾅ \u200b zw")}},
		{"zero width after escape", []op{w("ab\x1b[1m\u0301cd")}},
		{"sgr 16/256/truecolor", []op{w("\x1b[31;42ma\x1b[91;102mb\x1b[38;5;123;48;5;45mc\x1b[38;2;1;2;3;48;2;250;251;252md\x1b[38:2::9:8:7me\x1b[0m")}},
		{"sgr attributes", []op{w("\x1b[1ma\x1b[2mb\x1b[3mc\x1b[4md\x1b[5me\x1b[7mf\x1b[8mg\x1b[9mh\x1b[53mi\x1b[0m\x1b[21mj\x1b[4:3mk\x1b[58;5;196ml\x1b[58:2::1:2:3mm\x1b[59mn\x1b[24mo\x1b[0m")}},
		{"sgr 21 double underline", []op{w("\x1b[21mdouble\x1b[24m none \x1b[4:2mdbl\x1b[0m")}},
		{"sgr 53 overline", []op{w("\x1b[53mover\x1b[55mnot\x1b[0m")}},
		{"pen left set", []op{w("\x1b[1;4:3;38;5;200;48;2;10;20;30;58;5;9mpen")}},
		{"csi S T scroll", []op{w(many + "\x1b[3S\x1b[2T")}},
		{"csi S with region", []op{w(many + "\x1b[5;10r\x1b[2S\x1b[1T")}},
		{"decstbm scroll region", []op{w(many + "\x1b[3;8r\x1b[8;1Hx\ny\nz\n\x1bMw")}},
		{"decstbm top region scrollback", []op{w("\x1b[1;10r" + seqLines(30, func(i int) string { return fmt.Sprintf("r%d\n", i) }))}},
		{"origin mode", []op{w("\x1b[5;15r\x1b[?6h\x1b[2;3Hin\x1b[20;1Hclamped")}},
		{"origin mode off homes", []op{w("\x1b[5;15r\x1b[?6h\x1b[3;3Hab\x1b[?6lcd")}},
		{"origin mode left set", []op{w("\x1b[5;15r\x1b[?6h\x1b[3;3Hab")}},
		{"tab stops", []op{w("a\tb\tc\x1b[3g\x1b[5GH\x1bH\x1b[20G\x1bH\r\tx\ty\x1b[2Zz\x1b[3I!")}},
		{"tab clear one", []op{w("\x1b[17G\x1b[g\r\t\t.")}},
		{"insert delete chars", []op{w("abcdefghij\x1b[3G\x1b[2@XY\x1b[6G\x1b[3P\x1b[4h12\x1b[4lok")}},
		{"insert mode left set", []op{w("abcdefghij\x1b[3G\x1b[4hXY")}},
		{"insert delete lines", []op{w(many + "\x1b[10;1H\x1b[3L\x1b[15;1H\x1b[2M")}},
		{"ech and el", []op{w("abcdefghijklmnop\x1b[3G\x1b[44m\x1b[4X\x1b[12G\x1b[K\r\n0123456789\x1b[5G\x1b[1K\x1b[0m\r\n\x1b[45mabc\x1b[2K\x1b[0m")}},
		{"ed variants", []op{w(many + "\x1b[12;40H\x1b[43m\x1b[J\x1b[0m\x1b[5;5H\x1b[1J")}},
		{"ed 3 clears scrollback", []op{w(many + "\x1b[3J")}},
		{"rep", []op{w("ab\x1b[5bc\x1b[b\x1b[2b中\x1b[3b")}},
		{"rep left pending", []op{w("xy")}},
		{"charset dec special graphics", []op{w("\x1b(0lqqk\x1b(B text \x1b)0\x0eabc\x0fdef")}},
		{"charset left shifted", []op{w("\x1b)0\x1b*A\x1b+0\x0eqq")}},
		{"charset uk", []op{w("\x1b(A#\x1b(B#")}},
		{"osc titles", []op{w("\x1b]0;first\x07\x1b]2;with;semi;colons\x1b\\\x1b]1;icon\x07")}},
		{"osc 8 links", []op{w("\x1b]8;;http://a.example/\x07link\x1b]8;;\x07 \x1b]8;id=x;http://b/\x07idlink\x1b]8;;\x07 open\x1b]8;;http://c/\x07")}},
		{"modes", []op{w("\x1b[?1h\x1b=\x1b[?2004h\x1b[?1004h\x1b[?2026h\x1b[?45h\x1b[?12h\x1b[20h\x1b[?1002h\x1b[?1006h\x1b[?25l\x1b[4 q")}},
		{"mouse any sgr pixels", []op{w("\x1b[?1003h\x1b[?1016h")}},
		{"mouse x10 then off", []op{w("\x1b[?9h\x1b[?1000h\x1b[?1000l\x1b[?1005h\x1b[?1015h")}},
		{"autowrap off", []op{w("\x1b[?7l" + strings.Repeat("w", 90) + "中")}},
		{"reverse wraparound", []op{w("\x1b[?45h" + strings.Repeat("r", 85) + "\b\b\b\b\b\b\b\bX")}},
		{"alt screen 1049", []op{w("main\x1b[31m\x1b[?1049h\x1b[Halt screen\x1b[5;5Hhere")}},
		{"alt screen and back", []op{w("main text\x1b[?1049h\x1b[Halt\x1b[?1049lback")}},
		{"alt 47 and 1047", []op{w("one\x1b[?47htwo\x1b[?47lthree\x1b[?1047hfour")}},
		{"save restore cursor", []op{w("\x1b[5;10H\x1b[1;32m\x1b7\x1b[0m\x1b[1;1Hmoved\x1b8restored")}},
		{"saved cursor left", []op{w("\x1b[7;20H\x1b[35;1m\x1b(0\x1b7\x1b(B\x1b[0m\x1b[HX")}},
		{"decsc 1048", []op{w("\x1b[3;3H\x1b[?1048h\x1b[10;10Hx\x1b[?1048ly")}},
		{"decstr", []op{w("\x1b[?1h\x1b[1m\x1b[5;10r\x1b[?25l\x1b[!pafter")}},
		{"ris", []op{w("junk\x1b]2;keep\x07\x1b[?25l\x1b[1mxx\x1bcfresh")}},
		{"decaln", []op{w("\x1b#8")}},
		{"ind nel ri", []op{w("a\x1bDb\x1bEc\x1bMd\x1bM\x1bM\x1bM\x1bMe")}},
		{"c1 controls", []op{w("a\u0084b\u0085c\u0088d\u009b1mbold\u009b0m")}},
		{"dcs apc pm sos ignored", []op{w("a\x1bPq#0;1\x1b\\b\x1b_apc\x1b\\c\x1b^pm\x1b\\d\x1bXsos\x1b\\e")}},
		{"cut csi", []op{w("abc\x1b[1;3")}},
		{"cut csi private", []op{w("abc\x1b[?104")}},
		{"cut csi intermediate", []op{w("abc\x1b[2 ")}},
		{"cut esc", []op{w("abc\x1b")}},
		{"cut esc intermediate", []op{w("abc\x1b(")}},
		{"cut osc", []op{w("abc\x1b]2;partial ti")}},
		{"cut osc id", []op{w("abc\x1b]2")}},
		{"cut dcs", []op{w("abc\x1bP$q")}},
		{"cut utf8 2", []op{w("abc\xc3")}},
		{"cut utf8 3", []op{w("abc\xe4\xb8")}},
		{"cut utf8 4", []op{w("abc\xf0\x9f\x91")}},
		{"invalid utf8", []op{w("a\xff\xc3(b\xe4\x80c\x80d\xed\xa0\x80e\xf8f")}},
		{"cursor movement", []op{w("\x1b[10;10H\x1b[3A\x1b[2B\x1b[5C\x1b[2D\x1b[2E\x1b[F\x1b[30G\x1b[7d\x1b[3e\x1b[4a\x1b[5`x\x1b[2;2fy")}},
		{"decscusr", []op{w("\x1b[5 q")}},
		{"decscusr reset", []op{w("\x1b[3 q\x1b[0 q")}},
		{"protected", []op{w("\x1b[1\"qprot\x1b[2\"qnot\x1b[?2Kx")}},
		{"scroll left right", []op{w(many + "\x1b[5;10r\x1b[7;1H\x1b[2 @\x1b[1 A\x1b[3'}\x1b[1'~")}},
		{"hts via c1 at margin", []op{w(strings.Repeat("q", 80) + "\x1bH")}},
		{"long scrollback", []op{w(seqLines(300, func(i int) string { return fmt.Sprintf("%d %s\r\n", i, long[:i%100]) }))}},
		{"resize narrower reflow", []op{w(many + long + "\r\n" + cjk + "\r\nend"), rs(50, 24)}},
		{"resize wider reflow", []op{w(many + long + "\r\n" + cjk + "\r\nend"), rs(50, 20), rs(120, 30)}},
		{"resize shorter and taller", []op{w(many), rs(80, 10), rs(80, 40)}},
		{"resize with cursor mid", []op{w(many + "\x1b[5;1H"), rs(60, 12), rs(100, 30)}},
		{"resize alt no reflow", []op{w("\x1b[?1049h" + long), rs(40, 24), rs(90, 24)}},
		{"resize wide at boundary", []op{w(strings.Repeat("a", 77) + cjk), rs(79, 24), rs(81, 24), rs(30, 24)}},
		{"resize saved cursor", []op{w(many + "\x1b[20;30H\x1b7"), rs(40, 10)}},
		{"resize tabs", []op{w("\x1b[3g\x1b[5G\x1bH"), rs(100, 24), rs(30, 24)}},
		{"resize small", []op{w(many), rs(2, 1), rs(80, 24)}},
	}
}

func TestSynthetic(t *testing.T) {
	cs := synthCases()
	// Per case: raw, raw+probe, serialised, serialised+probe.
	var ref []refCase
	type pair struct{ raw, rawProbe, ser, serProbe int }
	idx := make([]pair, len(cs))
	terms := make([]*Terminal, len(cs))
	for i, c := range cs {
		rc := refCase{cols: 80, rows: 24, ops: c.ops}
		term := rc.run()
		terms[i] = term
		snap := term.Serialize()
		cols, rows := term.Size()
		idx[i].raw = len(ref)
		ref = append(ref, rc)
		idx[i].rawProbe = len(ref)
		ref = append(ref, refCase{cols: 80, rows: 24, ops: append(append([]op{}, c.ops...), w(probe))})
		idx[i].ser = len(ref)
		ref = append(ref, refCase{cols: cols, rows: rows, ops: []op{{data: snap}}})
		idx[i].serProbe = len(ref)
		ref = append(ref, refCase{cols: cols, rows: rows, ops: []op{{data: snap}, w(probe)}})
	}
	dumps := xtermRef(t, ref)
	for i, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			p := idx[i]
			if n, bad, rep := diff(dumps[p.raw], goDump(terms[i])); bad > 0 {
				t.Errorf("emulator vs xterm.js: %d of %d cells/state wrong:\n%s", bad, n, strings.Join(rep, "\n"))
			}
			if n, bad, rep := diff(dumps[p.raw], dumps[p.ser]); bad > 0 {
				t.Errorf("restored xterm.js vs xterm.js: %d of %d wrong:\n%s", bad, n, strings.Join(rep, "\n"))
			}
			if n, bad, rep := diff(dumps[p.rawProbe], dumps[p.serProbe]); bad > 0 {
				t.Errorf("after probe, restored vs original: %d of %d wrong:\n%s", bad, n, strings.Join(rep, "\n"))
			}
		})
	}
}
