package vt

// oscPayloadLimit is xterm.js's PAYLOAD_LIMIT (in UTF-16 units): longer OSC
// and DCS payloads are dropped.
const oscPayloadLimit = 10000000

// oscKeep bounds the OSC payload kept in memory; a title longer than this
// is truncated (xterm.js would keep up to oscPayloadLimit).
const oscKeep = 64 << 10

const (
	oscStart = iota
	oscID
	oscPayload
	oscAbort
)

type oscState struct {
	state int
	id    int
	data  []rune
	count int // payload length in UTF-16 units
}

type dcsState struct {
	active bool   // a $q (DECRQSS) hook is active
	ident  uint32 // collect<<8|final of the hook
	data   []rune
	count  int
}

// parse runs the state machine over decoded code points.
func (t *Terminal) parse(data []uint32) {
	tbl := transitions
	n := len(data)
	for i := 0; i < n; i++ {
		code := data[i]
		idx := code
		if idx >= nonASCIIPrintable {
			idx = nonASCIIPrintable
		}
		tr := tbl[t.state<<8|int(idx)]
		switch tr >> 4 {
		case acPrint:
			j := i + 1
			for ; j < n; j++ {
				c := data[j]
				if c < 0x20 || (c > 0x7e && c < nonASCIIPrintable) {
					break
				}
			}
			t.print(data[i:j])
			i = j - 1
		case acExecute:
			t.execute(code)
			t.joinState = 0
		case acIgnore, acError:
		case acCsiDispatch:
			t.csiDispatch(t.collect<<8 | code)
			t.joinState = 0
		case acParam:
			for {
				switch code {
				case 0x3b:
					t.params.addParam(0)
				case 0x3a:
					t.params.addSubParam(-1)
				default:
					t.params.addDigit(int32(code - 48))
				}
				i++
				if i >= n {
					break
				}
				code = data[i]
				if !(code > 0x2f && code < 0x3c) {
					break
				}
			}
			i--
		case acCollect:
			t.collect = t.collect<<8 | code
		case acEscDispatch:
			t.escDispatch(t.collect<<8 | code)
			t.joinState = 0
		case acClear:
			t.clearParams()
		case acDcsHook:
			t.dcsHook(t.collect<<8 | code)
		case acDcsPut:
			j := i + 1
			for ; j < n; j++ {
				c := data[j]
				if c == 0x18 || c == 0x1a || c == 0x1b || (c > 0x7f && c < nonASCIIPrintable) {
					break
				}
			}
			t.dcsPut(data[i:j])
			i = j - 1
		case acDcsUnhook:
			t.dcsUnhook(code != 0x18 && code != 0x1a)
			if code == 0x1b {
				tr |= stEscape
			}
			t.clearParams()
			t.joinState = 0
		case acOscStart:
			t.oscReset()
			t.osc.state = oscID
		case acOscPut:
			j := i + 1
			for ; j < n; j++ {
				c := data[j]
				if c < 0x20 || (c > 0x7f && c < nonASCIIPrintable) {
					break
				}
			}
			t.oscPut(data[i:j])
			i = j - 1
		case acOscEnd:
			t.oscEnd(code != 0x18 && code != 0x1a)
			if code == 0x1b {
				tr |= stEscape
			}
			t.clearParams()
			t.joinState = 0
		}
		t.state = int(tr & 15)
	}
}

func (t *Terminal) clearParams() {
	t.params.reset()
	t.params.addParam(0)
	t.collect = 0
}

// resetParser is EscapeSequenceParser.reset.
func (t *Terminal) resetParser() {
	t.state = stGround
	t.oscReset()
	t.dcs = dcsState{}
	t.clearParams()
	t.joinState = 0
}

// OSC (xterm.js OscParser with OscHandlers for 0, 1, 2 and 8).

func oscHandled(id int) bool { return id == 0 || id == 1 || id == 2 || id == 8 }

func (t *Terminal) oscReset() {
	t.osc.state = oscStart
	t.osc.id = -1
	t.osc.data = t.osc.data[:0]
	t.osc.count = 0
	if cap(t.osc.data) > 4096 {
		t.osc.data = nil
	}
}

func (t *Terminal) oscPut(data []uint32) {
	o := &t.osc
	if o.state == oscAbort {
		return
	}
	if o.state == oscID {
		for len(data) > 0 {
			c := data[0]
			data = data[1:]
			if c == 0x3b {
				o.state = oscPayload
				break
			}
			if c < 0x30 || c > 0x39 {
				o.state = oscAbort
				return
			}
			if o.id == -1 {
				o.id = 0
			}
			o.id = o.id*10 + int(c-48)
			if o.id > 1<<30 {
				o.id = 1 << 30
			}
		}
	}
	if o.state == oscPayload && len(data) > 0 && oscHandled(o.id) {
		if o.count > oscPayloadLimit {
			return
		}
		for _, c := range data {
			if c > 0xFFFF {
				o.count += 2
			} else {
				o.count++
			}
			if len(o.data) < oscKeep {
				o.data = append(o.data, rune(c))
			}
		}
		if o.count > oscPayloadLimit {
			o.data = o.data[:0]
		}
	}
}

func (t *Terminal) oscEnd(success bool) {
	o := &t.osc
	if o.state == oscStart {
		return
	}
	if o.state != oscAbort && success && oscHandled(o.id) && o.count <= oscPayloadLimit {
		s := string(o.data)
		switch o.id {
		case 0:
			t.title, t.iconName = s, s
		case 1:
			t.iconName = s
		case 2:
			t.title = s
		case 8:
			t.setHyperlink(s)
		}
	}
	t.oscReset()
}

// DCS: only DECRQSS (DCS $ q … ST) is handled, as in xterm.js.

const identDECRQSS = '$'<<8 | 'q'

func (t *Terminal) dcsHook(ident uint32) {
	t.dcs = dcsState{active: ident == identDECRQSS, ident: ident, data: t.dcs.data[:0]}
}

func (t *Terminal) dcsPut(data []uint32) {
	d := &t.dcs
	if !d.active || d.count > oscPayloadLimit {
		return
	}
	for _, c := range data {
		if c > 0xFFFF {
			d.count += 2
		} else {
			d.count++
		}
		if len(d.data) < 64 {
			d.data = append(d.data, rune(c))
		}
	}
}

func (t *Terminal) dcsUnhook(success bool) {
	d := &t.dcs
	if d.active && success && d.count <= oscPayloadLimit {
		s := string(d.data)
		if d.count > len(d.data) {
			s = "\x00" // too long to be a known request
		}
		t.requestStatusString(s)
	}
	t.dcs = dcsState{data: d.data[:0]}
}

func (t *Terminal) requestStatusString(data string) {
	f := func(s string) { t.queueReply("\x1bP" + s + "\x1b\\") }
	switch data {
	case "\"q":
		p := 0
		if t.cur.bg&bgProtected != 0 {
			p = 1
		}
		f("1$r" + itoa(p) + "\"q")
	case "\"p":
		f("1$r61;1\"p")
	case "r":
		f("1$r" + itoa(t.buf.scrollTop+1) + ";" + itoa(t.buf.scrollBottom+1) + "r")
	case "m":
		f("1$r0m")
	case " q":
		v := 2
		if t.cursorBlinkOpt {
			v = 1
		}
		f("1$r" + itoa(v) + " q")
	default:
		f("0$r")
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// setHyperlink is xterm.js setHyperlink (OSC 8).
func (t *Terminal) setHyperlink(data string) {
	idx := -1
	for i := 0; i < len(data); i++ {
		if data[i] == ';' {
			idx = i
			break
		}
	}
	if idx == -1 {
		return
	}
	params := trimJS(data[:idx])
	uri := data[idx+1:]
	if uri != "" {
		if t.cur.ext.urlID != 0 {
			t.finishHyperlink()
		}
		id := ""
		for _, p := range splitByte(params, ':') {
			if len(p) >= 3 && p[:3] == "id=" {
				id = p[3:]
				break
			}
		}
		t.cur.ext.urlID = t.registerLink(id, uri)
		t.cur.updateExtended()
		return
	}
	if trimJS(params) != "" {
		return
	}
	t.finishHyperlink()
}

func (t *Terminal) finishHyperlink() {
	t.cur.ext.urlID = 0
	t.cur.updateExtended()
}

func splitByte(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// trimJS trims white space as String.prototype.trim does (ASCII and common Unicode spaces).
func trimJS(s string) string {
	isSpace := func(r rune) bool {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff:
			return true
		}
		return r >= 0x2000 && r <= 0x200a
	}
	rs := []rune(s)
	a, b := 0, len(rs)
	for a < b && isSpace(rs[a]) {
		a++
	}
	for b > a && isSpace(rs[b-1]) {
		b--
	}
	return string(rs[a:b])
}
