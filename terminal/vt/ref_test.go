package vt

// This file drives @xterm/headless 6.0.0 (testdata/xtermref.mjs) as the
// ground truth. It is an internal test because it compares hidden state
// (saved cursors, tab stops, pen, parser state) as well as cells.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// op is one step of a case: write bytes, or resize.
type op struct {
	data       []byte
	cols, rows int // resize when cols > 0
}

type refCase struct {
	cols, rows int
	ops        []op
}

func (c refCase) MarshalJSON() ([]byte, error) {
	ops := make([][]any, 0, len(c.ops))
	for _, o := range c.ops {
		if o.cols > 0 {
			ops = append(ops, []any{"r", o.cols, o.rows})
		} else {
			ops = append(ops, []any{"w", base64.StdEncoding.EncodeToString(o.data)})
		}
	}
	return json.Marshal(map[string]any{"cols": c.cols, "rows": c.rows, "scrollback": 10000, "ops": ops})
}

type bufDump struct {
	Lines        [][2]json.RawMessage `json:"lines"`
	Ybase        int                  `json:"ybase"`
	X            int                  `json:"x"`
	Y            int                  `json:"y"`
	ScrollTop    int                  `json:"scrollTop"`
	ScrollBottom int                  `json:"scrollBottom"`
	SavedX       int                  `json:"savedX"`
	SavedY       int                  `json:"savedY"`
	SavedFg      uint32               `json:"savedFg"`
	SavedBg      uint32               `json:"savedBg"`
	SavedCharset string               `json:"savedCharset"`
	Tabs         []int                `json:"tabs"`
}

type dump struct {
	Cols           int             `json:"cols"`
	Rows           int             `json:"rows"`
	Active         string          `json:"active"`
	Normal         bufDump         `json:"normal"`
	Alt            bufDump         `json:"alt"`
	CursorHidden   bool            `json:"cursorHidden"`
	CursorStyle    string          `json:"cursorStyle"`
	CursorBlink    int             `json:"cursorBlink"`
	Modes          map[string]any  `json:"modes"`
	MouseEncoding  string          `json:"mouseEncoding"`
	Title          string          `json:"title"`
	IconName       string          `json:"iconName"`
	ConvertEol     bool            `json:"convertEol"`
	CursorBlinkOpt bool            `json:"cursorBlinkOpt"`
	Pen            json.RawMessage `json:"pen"`
	Charsets       []string        `json:"charsets"`
	Glevel         int             `json:"glevel"`
	Charset        string          `json:"charset"`
	JoinState      uint32          `json:"joinState"`
	ParserState    int             `json:"parserState"`
}

// lines decodes the line list into (wrapped, cells) pairs.
func (b *bufDump) decoded() ([]bool, [][]string) {
	w := make([]bool, len(b.Lines))
	cells := make([][]string, len(b.Lines))
	for i, l := range b.Lines {
		w[i] = string(l[0]) == "1"
		_ = json.Unmarshal(l[1], &cells[i])
	}
	return w, cells
}

// repoRoot finds the module root (where node_modules lives).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// xtermRef runs all cases through one node process and returns their dumps.
func xtermRef(t testing.TB, cases []refCase) []dump {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: install Node.js 20+ and run `npm ci` at the repository root")
	}
	mod := filepath.Join(repoRoot(t), "node_modules", "@xterm", "headless")
	if _, err := os.Stat(filepath.Join(mod, "package.json")); err != nil {
		t.Fatalf("@xterm/headless missing (%v): run `npm ci` at the repository root", err)
	}
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, c := range cases {
		if err := enc.Encode(c); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(node, filepath.Join("testdata", "xtermref.mjs"), mod)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xtermref.mjs: %v\n%s", err, stderr.String())
	}
	var dumps []dump
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<30)
	for sc.Scan() {
		var d dump
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("decode dump: %v", err)
		}
		dumps = append(dumps, d)
	}
	if len(dumps) != len(cases) {
		t.Fatalf("xtermref.mjs returned %d dumps for %d cases\n%s", len(dumps), len(cases), stderr.String())
	}
	return dumps
}

// run feeds a case to a new Terminal.
func (c refCase) run() *Terminal {
	term := New(c.cols, c.rows, Options{})
	for _, o := range c.ops {
		if o.cols > 0 {
			term.Resize(o.cols, o.rows)
		} else {
			term.Write(o.data)
		}
	}
	return term
}

// cellKey renders a cell like xtermref.mjs's cellKey.
func cellKey(c Cell) string {
	link := ""
	if c.Link != "" {
		link = c.LinkID + ";" + c.Link
	}
	return fmt.Sprintf("%d|%d|%d|%d|%d|%d|%s|%s", c.Width, uint32(c.Fg), uint32(c.Bg), c.Attrs, c.Underline, uint32(c.UnderlineColor), link, c.Char)
}

const emptyKey = "1|0|0|0|0|0||"

func charsetKey(cs charset) string {
	if cs == 0 {
		return ""
	}
	tbl := charsetTables[cs]
	var b strings.Builder
	for c := 0x20; c < 0x7f; c++ {
		if r, ok := tbl[byte(c)]; ok {
			fmt.Fprintf(&b, "%c=%d,", c, r)
		}
	}
	return b.String()
}

func (t *Terminal) goBufDump(s Screen) bufDump {
	b := t.screen(s)
	var d bufDump
	for y := 0; y < b.lines.length; y++ {
		l := b.lines.get(y)
		var cells []string
		for x := 0; x < min(l.length(), t.cols); x++ {
			cells = append(cells, cellKey(t.CellAt(s, y, x)))
		}
		for len(cells) > 0 && cells[len(cells)-1] == emptyKey {
			cells = cells[:len(cells)-1]
		}
		if cells == nil {
			cells = []string{}
		}
		w := "0"
		if l.wrapped {
			w = "1"
		}
		cj, _ := json.Marshal(cells)
		d.Lines = append(d.Lines, [2]json.RawMessage{json.RawMessage(w), cj})
	}
	d.Ybase, d.X, d.Y = b.ybase, b.x, b.y
	d.ScrollTop, d.ScrollBottom = b.scrollTop, b.scrollBottom
	d.SavedX, d.SavedY = b.savedX, b.savedY
	d.SavedFg, d.SavedBg = b.savedAttr.fg, b.savedAttr.bg&^bgHasExtended
	d.SavedCharset = charsetKey(b.savedCharset)
	d.Tabs = []int{}
	for x := 0; x < t.cols; x++ {
		if b.tab(x) {
			d.Tabs = append(d.Tabs, x)
		}
	}
	return d
}

// goDump renders the emulator's state like xtermref.mjs's dump.
func goDump(t *Terminal) dump {
	d := dump{Cols: t.cols, Rows: t.rows, Active: "normal"}
	if t.buf == t.alt {
		d.Active = "alternate"
	}
	d.Normal = t.goBufDump(Normal)
	d.Alt = t.goBufDump(Alternate)
	d.CursorHidden = t.cursorHidden
	d.CursorStyle = [...]string{"", "block", "underline", "bar"}[t.cursorStyle]
	d.CursorBlink = int(t.cursorBlink)
	m := t.Modes()
	d.Modes = map[string]any{
		"applicationCursorKeysMode": m.ApplicationCursorKeys,
		"applicationKeypadMode":     m.ApplicationKeypad,
		"bracketedPasteMode":        m.BracketedPaste,
		"insertMode":                m.Insert,
		"mouseTrackingMode":         [...]string{"none", "x10", "vt200", "drag", "any"}[m.MouseProtocol],
		"originMode":                m.Origin,
		"reverseWraparoundMode":     m.ReverseWraparound,
		"sendFocusMode":             m.SendFocus,
		"synchronizedOutputMode":    m.SynchronizedOutput,
		"wraparoundMode":            m.Wraparound,
	}
	d.MouseEncoding = [...]string{"DEFAULT", "SGR", "SGR_PIXELS"}[m.MouseEncoding]
	d.Title, d.IconName = t.title, t.iconName
	d.ConvertEol, d.CursorBlinkOpt = t.convertEol, t.cursorBlinkOpt
	link := ""
	if t.cur.ext.urlID != 0 {
		if lk, ok := t.links.byID[t.cur.ext.urlID]; ok {
			link = lk.id + ";" + lk.uri
		}
	}
	d.Pen, _ = json.Marshal([]any{t.cur.fg, t.cur.bg &^ bgHasExtended, t.cur.ext.underlineStyle(), t.cur.ext.underlineColor(), link})
	for _, cs := range t.charsets {
		d.Charsets = append(d.Charsets, charsetKey(cs))
	}
	d.Glevel = t.glevel
	d.Charset = charsetKey(t.charset)
	d.JoinState = t.joinState
	d.ParserState = t.state
	return d
}

// diff compares two dumps. It returns the number of cells compared, the
// number that differ, and a description of the first differences.
func diff(want, got dump) (compared, wrong int, report []string) {
	add := func(format string, args ...any) {
		if len(report) < 12 {
			report = append(report, fmt.Sprintf(format, args...))
		}
	}
	cells := func(name string, a, b bufDump) {
		aw, ac := a.decoded()
		bw, bc := b.decoded()
		if len(ac) != len(bc) {
			add("%s: %d lines, want %d", name, len(bc), len(ac))
		}
		for y := 0; y < max(len(ac), len(bc)); y++ {
			var la, lb []string
			if y < len(ac) {
				la = ac[y]
			}
			if y < len(bc) {
				lb = bc[y]
			}
			if y < len(aw) && y < len(bw) && aw[y] != bw[y] {
				add("%s line %d: wrapped %v, want %v", name, y, bw[y], aw[y])
				wrong++
			}
			for x := 0; x < want.Cols; x++ {
				ca, cb := emptyKey, emptyKey
				if x < len(la) {
					ca = la[x]
				}
				if x < len(lb) {
					cb = lb[x]
				}
				compared++
				if ca != cb {
					wrong++
					add("%s line %d col %d: %q, want %q", name, y, x, cb, ca)
				}
			}
		}
	}
	cells("normal", want.Normal, got.Normal)
	cells("alt", want.Alt, got.Alt)
	state := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			add("%s: %v, want %v", name, b, a)
			wrong++
		}
	}
	buf := func(name string, a, b bufDump, cursor bool) {
		if cursor {
			state(name+".cursor", [2]int{a.X, a.Y}, [2]int{b.X, b.Y})
		}
		state(name+".ybase", a.Ybase, b.Ybase)
		state(name+".scrollRegion", [2]int{a.ScrollTop, a.ScrollBottom}, [2]int{b.ScrollTop, b.ScrollBottom})
		state(name+".savedCursor", []any{min(a.SavedX, want.Cols-1), a.SavedY - a.Ybase, a.SavedFg, a.SavedBg, a.SavedCharset},
			[]any{min(b.SavedX, want.Cols-1), b.SavedY - b.Ybase, b.SavedFg, b.SavedBg, b.SavedCharset})
		state(name+".tabs", a.Tabs, b.Tabs)
	}
	buf("normal", want.Normal, got.Normal, want.Active == "normal")
	if want.Active == "alternate" {
		buf("alt", want.Alt, got.Alt, true)
	}
	state("active", want.Active, got.Active)
	state("size", [2]int{want.Cols, want.Rows}, [2]int{got.Cols, got.Rows})
	state("cursorHidden", want.CursorHidden, got.CursorHidden)
	state("cursorStyle", []any{want.CursorStyle, want.CursorBlink}, []any{got.CursorStyle, got.CursorBlink})
	state("modes", want.Modes, got.Modes)
	state("mouseEncoding", want.MouseEncoding, got.MouseEncoding)
	state("title", want.Title, got.Title)
	state("iconName", want.IconName, got.IconName)
	state("convertEol", want.ConvertEol, got.ConvertEol)
	state("cursorBlinkOpt", want.CursorBlinkOpt, got.CursorBlinkOpt)
	state("pen", string(want.Pen), string(got.Pen))
	state("charsets", []any{want.Charsets, want.Glevel, want.Charset}, []any{got.Charsets, got.Glevel, got.Charset})
	state("joinState", want.JoinState, got.JoinState)
	state("parserState", want.ParserState, got.ParserState)
	return compared, wrong, report
}
