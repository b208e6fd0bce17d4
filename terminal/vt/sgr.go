package vt

// charAttributes is xterm.js's SGR handler (InputHandler.charAttributes).
func (t *Terminal) charAttributes() {
	p := &t.params
	a := &t.cur
	if p.n == 1 && p.get(0) == 0 {
		sgr0(a)
		return
	}
	for i := 0; i < p.n; i++ {
		v := p.get(i)
		switch {
		case v >= 30 && v <= 37:
			a.fg &^= cmMask | pcolorMask
			a.fg |= cmP16 | uint32(v-30)
		case v >= 40 && v <= 47:
			a.bg &^= cmMask | pcolorMask
			a.bg |= cmP16 | uint32(v-40)
		case v >= 90 && v <= 97:
			a.fg &^= cmMask | pcolorMask
			a.fg |= cmP16 | uint32(v-90) | 8
		case v >= 100 && v <= 107:
			a.bg &^= cmMask | pcolorMask
			a.bg |= cmP16 | uint32(v-100) | 8
		case v == 0:
			sgr0(a)
		case v == 1:
			a.fg |= fgBold
		case v == 3:
			a.bg |= bgItalic
		case v == 4:
			a.fg |= fgUnderline
			style := int32(UnderlineSingle)
			if p.hasSub(i) {
				style = p.getSub(i)[0]
			}
			processUnderline(style, a)
		case v == 5:
			a.fg |= fgBlink
		case v == 7:
			a.fg |= fgInverse
		case v == 8:
			a.fg |= fgInvisible
		case v == 9:
			a.fg |= fgStrikethrough
		case v == 2:
			a.bg |= bgDim
		case v == 21:
			processUnderline(UnderlineDouble, a)
		case v == 22:
			a.fg &^= fgBold
			a.bg &^= bgDim
		case v == 23:
			a.bg &^= bgItalic
		case v == 24:
			a.fg &^= fgUnderline
			processUnderline(UnderlineNone, a)
		case v == 25:
			a.fg &^= fgBlink
		case v == 27:
			a.fg &^= fgInverse
		case v == 28:
			a.fg &^= fgInvisible
		case v == 29:
			a.fg &^= fgStrikethrough
		case v == 39:
			a.fg &^= cmMask | rgbMask
		case v == 49:
			a.bg &^= cmMask | rgbMask
		case v == 38 || v == 48 || v == 58:
			i += extractColor(p, i, a)
		case v == 53:
			a.bg |= bgOverline
		case v == 55:
			a.bg &^= bgOverline
		case v == 59:
			a.ext.setUnderlineColor(0xFFFFFFFF)
			a.updateExtended()
		}
	}
}

func sgr0(a *attrs) {
	a.fg = 0
	a.bg = 0
	a.ext.setUnderlineStyle(UnderlineNone)
	a.ext.ext &^= cmMask | rgbMask
	a.updateExtended()
}

func processUnderline(style int32, a *attrs) {
	if style == -1 || style > 5 {
		style = 1
	}
	a.ext.setUnderlineStyle(uint32(style))
	a.fg |= fgUnderline
	if style == 0 {
		a.fg &^= fgUnderline
	}
	a.updateExtended()
}

func updateAttrColor(color uint32, mode, c1, c2, c3 int32) uint32 {
	switch mode {
	case 2:
		color |= cmRGB
		color &^= rgbMask
		color |= uint32(c1&255)<<16 | uint32(c2&255)<<8 | uint32(c3&255)
	case 5:
		color &^= cmMask | pcolorMask
		color |= cmP256 | uint32(c1&0xff)
	}
	return color
}

// extractColor is xterm.js _extractColor: SGR 38/48/58 with ';' or ':'
// separated arguments. It returns how many parameters it consumed.
func extractColor(p *params, pos int, a *attrs) int {
	accu := [8]int32{0, 0, -1, 0, 0, 0}
	const accuLen = 6
	cSpace := 0
	advance := 0
	for {
		accu[advance+cSpace] = int32(p.get(pos + advance))
		if p.hasSub(pos + advance) {
			sub := p.getSub(pos + advance)
			i := 0
			for {
				if accu[1] == 5 {
					cSpace = 1
				}
				accu[advance+i+1+cSpace] = sub[i]
				i++
				if !(i < len(sub) && i+advance+1+cSpace < accuLen) {
					break
				}
			}
			break
		}
		if (accu[1] == 5 && advance+cSpace >= 2) || (accu[1] == 2 && advance+cSpace >= 5) {
			break
		}
		if accu[1] != 0 {
			cSpace = 1
		}
		advance++
		if !(advance+pos < p.n && advance+cSpace < accuLen) {
			break
		}
	}
	for i := 2; i < accuLen; i++ {
		if accu[i] == -1 {
			accu[i] = 0
		}
	}
	switch accu[0] {
	case 38:
		a.fg = updateAttrColor(a.fg, accu[1], accu[3], accu[4], accu[5])
	case 48:
		a.bg = updateAttrColor(a.bg, accu[1], accu[3], accu[4], accu[5])
	case 58:
		a.ext.setUnderlineColor(updateAttrColor(a.ext.underlineColor(), accu[1], accu[3], accu[4], accu[5]))
	}
	return advance
}
