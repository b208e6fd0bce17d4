package vt

// The parser is a port of xterm.js's EscapeSequenceParser (a VT500 state
// machine after Paul Williams' DEC parser) running on code points produced by
// a port of its UTF-8 decoder, so that malformed input is handled the same way.

const (
	stGround = iota
	stEscape
	stEscapeIntermediate
	stCsiEntry
	stCsiParam
	stCsiIntermediate
	stCsiIgnore
	stSosPmApcString
	stOscString
	stDcsEntry
	stDcsParam
	stDcsIgnore
	stDcsIntermediate
	stDcsPassthrough
)

const (
	acIgnore = iota
	acError
	acPrint
	acExecute
	acOscStart
	acOscPut
	acOscEnd
	acCsiDispatch
	acParam
	acCollect
	acEscDispatch
	acClear
	acDcsHook
	acDcsPut
	acDcsUnhook
)

const nonASCIIPrintable = 0xA0

// transitions is VT500_TRANSITION_TABLE: index state<<8|code, value action<<4|next.
var transitions = func() *[4096]uint8 {
	var t [4096]uint8
	set := func(code, state, action, next int) { t[state<<8|code] = uint8(action<<4 | next) }
	many := func(codes []int, state, action, next int) {
		for _, c := range codes {
			set(c, state, action, next)
		}
	}
	r := func(from, to int) []int {
		var s []int
		for i := from; i < to; i++ {
			s = append(s, i)
		}
		return s
	}
	printables := r(0x20, 0x7f)
	executables := append(r(0x00, 0x18), 0x19)
	executables = append(executables, r(0x1c, 0x20)...)
	for i := range t {
		t[i] = acError<<4 | stGround
	}
	many(printables, stGround, acPrint, stGround)
	for state := stGround; state <= stDcsPassthrough; state++ {
		many([]int{0x18, 0x1a, 0x99, 0x9a}, state, acExecute, stGround)
		many(r(0x80, 0x90), state, acExecute, stGround)
		many(r(0x90, 0x98), state, acExecute, stGround)
		set(0x9c, state, acIgnore, stGround)
		set(0x1b, state, acClear, stEscape)
		set(0x9d, state, acOscStart, stOscString)
		many([]int{0x98, 0x9e, 0x9f}, state, acIgnore, stSosPmApcString)
		set(0x9b, state, acClear, stCsiEntry)
		set(0x90, state, acClear, stDcsEntry)
	}
	many(executables, stGround, acExecute, stGround)
	many(executables, stEscape, acExecute, stEscape)
	set(0x7f, stEscape, acIgnore, stEscape)
	many(executables, stOscString, acIgnore, stOscString)
	many(executables, stCsiEntry, acExecute, stCsiEntry)
	set(0x7f, stCsiEntry, acIgnore, stCsiEntry)
	many(executables, stCsiParam, acExecute, stCsiParam)
	set(0x7f, stCsiParam, acIgnore, stCsiParam)
	many(executables, stCsiIgnore, acExecute, stCsiIgnore)
	many(executables, stCsiIntermediate, acExecute, stCsiIntermediate)
	set(0x7f, stCsiIntermediate, acIgnore, stCsiIntermediate)
	many(executables, stEscapeIntermediate, acExecute, stEscapeIntermediate)
	set(0x7f, stEscapeIntermediate, acIgnore, stEscapeIntermediate)
	set(0x5d, stEscape, acOscStart, stOscString)
	many(printables, stOscString, acOscPut, stOscString)
	set(0x7f, stOscString, acOscPut, stOscString)
	many([]int{0x9c, 0x1b, 0x18, 0x1a, 0x07}, stOscString, acOscEnd, stGround)
	many(r(0x1c, 0x20), stOscString, acIgnore, stOscString)
	many([]int{0x58, 0x5e, 0x5f}, stEscape, acIgnore, stSosPmApcString)
	many(printables, stSosPmApcString, acIgnore, stSosPmApcString)
	many(executables, stSosPmApcString, acIgnore, stSosPmApcString)
	set(0x9c, stSosPmApcString, acIgnore, stGround)
	set(0x7f, stSosPmApcString, acIgnore, stSosPmApcString)
	set(0x5b, stEscape, acClear, stCsiEntry)
	many(r(0x40, 0x7f), stCsiEntry, acCsiDispatch, stGround)
	many(r(0x30, 0x3c), stCsiEntry, acParam, stCsiParam)
	many([]int{0x3c, 0x3d, 0x3e, 0x3f}, stCsiEntry, acCollect, stCsiParam)
	many(r(0x30, 0x3c), stCsiParam, acParam, stCsiParam)
	many(r(0x40, 0x7f), stCsiParam, acCsiDispatch, stGround)
	many([]int{0x3c, 0x3d, 0x3e, 0x3f}, stCsiParam, acIgnore, stCsiIgnore)
	many(r(0x20, 0x40), stCsiIgnore, acIgnore, stCsiIgnore)
	set(0x7f, stCsiIgnore, acIgnore, stCsiIgnore)
	many(r(0x40, 0x7f), stCsiIgnore, acIgnore, stGround)
	many(r(0x20, 0x30), stCsiEntry, acCollect, stCsiIntermediate)
	many(r(0x20, 0x30), stCsiIntermediate, acCollect, stCsiIntermediate)
	many(r(0x30, 0x40), stCsiIntermediate, acIgnore, stCsiIgnore)
	many(r(0x40, 0x7f), stCsiIntermediate, acCsiDispatch, stGround)
	many(r(0x20, 0x30), stCsiParam, acCollect, stCsiIntermediate)
	many(r(0x20, 0x30), stEscape, acCollect, stEscapeIntermediate)
	many(r(0x20, 0x30), stEscapeIntermediate, acCollect, stEscapeIntermediate)
	many(r(0x30, 0x7f), stEscapeIntermediate, acEscDispatch, stGround)
	many(r(0x30, 0x50), stEscape, acEscDispatch, stGround)
	many(r(0x51, 0x58), stEscape, acEscDispatch, stGround)
	many([]int{0x59, 0x5a, 0x5c}, stEscape, acEscDispatch, stGround)
	many(r(0x60, 0x7f), stEscape, acEscDispatch, stGround)
	set(0x50, stEscape, acClear, stDcsEntry)
	many(executables, stDcsEntry, acIgnore, stDcsEntry)
	set(0x7f, stDcsEntry, acIgnore, stDcsEntry)
	many(r(0x1c, 0x20), stDcsEntry, acIgnore, stDcsEntry)
	many(r(0x20, 0x30), stDcsEntry, acCollect, stDcsIntermediate)
	many(r(0x30, 0x3c), stDcsEntry, acParam, stDcsParam)
	many([]int{0x3c, 0x3d, 0x3e, 0x3f}, stDcsEntry, acCollect, stDcsParam)
	many(executables, stDcsIgnore, acIgnore, stDcsIgnore)
	many(r(0x20, 0x80), stDcsIgnore, acIgnore, stDcsIgnore)
	many(r(0x1c, 0x20), stDcsIgnore, acIgnore, stDcsIgnore)
	many(executables, stDcsParam, acIgnore, stDcsParam)
	set(0x7f, stDcsParam, acIgnore, stDcsParam)
	many(r(0x1c, 0x20), stDcsParam, acIgnore, stDcsParam)
	many(r(0x30, 0x3c), stDcsParam, acParam, stDcsParam)
	many([]int{0x3c, 0x3d, 0x3e, 0x3f}, stDcsParam, acIgnore, stDcsIgnore)
	many(r(0x20, 0x30), stDcsParam, acCollect, stDcsIntermediate)
	many(executables, stDcsIntermediate, acIgnore, stDcsIntermediate)
	set(0x7f, stDcsIntermediate, acIgnore, stDcsIntermediate)
	many(r(0x1c, 0x20), stDcsIntermediate, acIgnore, stDcsIntermediate)
	many(r(0x20, 0x30), stDcsIntermediate, acCollect, stDcsIntermediate)
	many(r(0x30, 0x40), stDcsIntermediate, acIgnore, stDcsIgnore)
	many(r(0x40, 0x7f), stDcsIntermediate, acDcsHook, stDcsPassthrough)
	many(r(0x40, 0x7f), stDcsParam, acDcsHook, stDcsPassthrough)
	many(r(0x40, 0x7f), stDcsEntry, acDcsHook, stDcsPassthrough)
	many(executables, stDcsPassthrough, acDcsPut, stDcsPassthrough)
	many(printables, stDcsPassthrough, acDcsPut, stDcsPassthrough)
	set(0x7f, stDcsPassthrough, acIgnore, stDcsPassthrough)
	many([]int{0x1b, 0x9c, 0x18, 0x1a}, stDcsPassthrough, acDcsUnhook, stGround)
	set(nonASCIIPrintable, stGround, acPrint, stGround)
	set(nonASCIIPrintable, stOscString, acOscPut, stOscString)
	set(nonASCIIPrintable, stCsiIgnore, acIgnore, stCsiIgnore)
	set(nonASCIIPrintable, stDcsIgnore, acIgnore, stDcsIgnore)
	set(nonASCIIPrintable, stDcsPassthrough, acDcsPut, stDcsPassthrough)
	return &t
}()

// params is xterm.js's Params: up to 32 parameters and 32 sub-parameters.
type params struct {
	vals         [32]int32
	n            int
	sub          [32]int32
	subN         int
	subIdx       [32]uint16
	rejectDigits bool
	rejectSub    bool
	digitIsSub   bool
}

const paramMax = 0x7FFFFFFF

func (p *params) reset() {
	p.n, p.subN = 0, 0
	p.rejectDigits, p.rejectSub, p.digitIsSub = false, false, false
}

func (p *params) addParam(v int32) {
	p.digitIsSub = false
	if p.n >= len(p.vals) {
		p.rejectDigits = true
		return
	}
	p.subIdx[p.n] = uint16(p.subN<<8 | p.subN)
	p.vals[p.n] = v
	p.n++
}

func (p *params) addSubParam(v int32) {
	p.digitIsSub = true
	if p.n == 0 {
		return
	}
	if p.rejectDigits || p.subN >= len(p.sub) {
		p.rejectSub = true
		return
	}
	p.sub[p.subN] = v
	p.subN++
	p.subIdx[p.n-1]++
}

func (p *params) addDigit(v int32) {
	var length int
	if p.digitIsSub {
		length = p.subN
	} else {
		length = p.n
	}
	if p.rejectDigits || length == 0 || (p.digitIsSub && p.rejectSub) {
		return
	}
	store := p.vals[:]
	if p.digitIsSub {
		store = p.sub[:]
	}
	cur := store[length-1]
	if cur != -1 {
		store[length-1] = int32(min(int64(cur)*10+int64(v), paramMax))
	} else {
		store[length-1] = v
	}
}

func (p *params) hasSub(i int) bool {
	return int(p.subIdx[i]&0xff)-int(p.subIdx[i]>>8) > 0
}

func (p *params) getSub(i int) []int32 {
	start, end := int(p.subIdx[i]>>8), int(p.subIdx[i]&0xff)
	if end-start > 0 {
		return p.sub[start:end]
	}
	return nil
}

// get returns parameter i as xterm.js reads params.params[i].
func (p *params) get(i int) int { return int(p.vals[i]) }

// utf8Decoder is xterm.js's Utf8ToUtf32, including its handling of
// malformed input (dropped silently) and of sequences split across writes.
type utf8Decoder struct {
	interim [3]byte
}

func (d *utf8Decoder) decode(in []byte, out []uint32) int {
	length := len(in)
	if length == 0 {
		return 0
	}
	size, start := 0, 0
	if d.interim[0] != 0 {
		discard := false
		cp := uint32(d.interim[0])
		switch {
		case cp&0xE0 == 0xC0:
			cp &= 0x1F
		case cp&0xF0 == 0xE0:
			cp &= 0x0F
		default:
			cp &= 0x07
		}
		pos := 0
		for {
			pos++
			if pos >= 3 {
				break
			}
			tmp := uint32(d.interim[pos] & 0x3F)
			if tmp == 0 {
				break
			}
			cp = cp<<6 | tmp
		}
		typ := 4
		if d.interim[0]&0xE0 == 0xC0 {
			typ = 2
		} else if d.interim[0]&0xF0 == 0xE0 {
			typ = 3
		}
		missing := typ - pos
		for start < missing {
			if start >= length {
				return 0
			}
			tmp := in[start]
			start++
			if tmp&0xC0 != 0x80 {
				start--
				discard = true
				break
			}
			if pos < 3 {
				d.interim[pos] = tmp
			}
			pos++
			cp = cp<<6 | uint32(tmp&0x3F)
		}
		if !discard {
			switch typ {
			case 2:
				if cp < 0x80 {
					start--
				} else {
					out[size] = cp
					size++
				}
			case 3:
				if !(cp < 0x0800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFEFF) {
					out[size] = cp
					size++
				}
			default:
				if !(cp < 0x010000 || cp > 0x10FFFF) {
					out[size] = cp
					size++
				}
			}
		}
		d.interim = [3]byte{}
	}
	i := start
	for i < length {
		for i < length-4 && in[i] < 0x80 && in[i+1] < 0x80 && in[i+2] < 0x80 && in[i+3] < 0x80 {
			out[size] = uint32(in[i])
			out[size+1] = uint32(in[i+1])
			out[size+2] = uint32(in[i+2])
			out[size+3] = uint32(in[i+3])
			size += 4
			i += 4
		}
		b1 := in[i]
		i++
		switch {
		case b1 < 0x80:
			out[size] = uint32(b1)
			size++
		case b1&0xE0 == 0xC0:
			if i >= length {
				d.interim[0] = b1
				return size
			}
			b2 := in[i]
			i++
			if b2&0xC0 != 0x80 {
				i--
				continue
			}
			cp := uint32(b1&0x1F)<<6 | uint32(b2&0x3F)
			if cp < 0x80 {
				i--
				continue
			}
			out[size] = cp
			size++
		case b1&0xF0 == 0xE0:
			if i >= length {
				d.interim[0] = b1
				return size
			}
			b2 := in[i]
			i++
			if b2&0xC0 != 0x80 {
				i--
				continue
			}
			if i >= length {
				d.interim[0], d.interim[1] = b1, b2
				return size
			}
			b3 := in[i]
			i++
			if b3&0xC0 != 0x80 {
				i--
				continue
			}
			cp := uint32(b1&0x0F)<<12 | uint32(b2&0x3F)<<6 | uint32(b3&0x3F)
			if cp < 0x0800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFEFF {
				continue
			}
			out[size] = cp
			size++
		case b1&0xF8 == 0xF0:
			if i >= length {
				d.interim[0] = b1
				return size
			}
			b2 := in[i]
			i++
			if b2&0xC0 != 0x80 {
				i--
				continue
			}
			if i >= length {
				d.interim[0], d.interim[1] = b1, b2
				return size
			}
			b3 := in[i]
			i++
			if b3&0xC0 != 0x80 {
				i--
				continue
			}
			if i >= length {
				d.interim[0], d.interim[1], d.interim[2] = b1, b2, b3
				return size
			}
			b4 := in[i]
			i++
			if b4&0xC0 != 0x80 {
				i--
				continue
			}
			cp := uint32(b1&0x07)<<18 | uint32(b2&0x3F)<<12 | uint32(b3&0x3F)<<6 | uint32(b4&0x3F)
			if cp < 0x010000 || cp > 0x10FFFF {
				continue
			}
			out[size] = cp
			size++
		}
	}
	return size
}

// pending returns the bytes of an unfinished UTF-8 sequence.
func (d *utf8Decoder) pending() []byte {
	n := 0
	for n < 3 && d.interim[n] != 0 {
		n++
	}
	return d.interim[:n]
}
