package vt

// ring is xterm.js's CircularList of lines: a fixed-capacity ring that
// scrolls by moving its start index, never by copying cells.
type ring struct {
	arr    []*line
	start  int
	length int
	max    int
}

func newRing(max int) *ring {
	return &ring{max: max, arr: make([]*line, 0, min(max, 64))}
}

// slot maps a logical index to a physical one, growing the backing array
// lazily so that a large scrollback costs nothing until it is used.
func (r *ring) slot(i int) int {
	p := r.start + i
	if p >= r.max {
		p %= r.max
	}
	if p < len(r.arr) {
		return p
	}
	for p >= len(r.arr) {
		if len(r.arr) < cap(r.arr) {
			r.arr = r.arr[:len(r.arr)+1]
			continue
		}
		// Growing is only possible while the ring has never wrapped
		// (start is 0), which holds because start moves only once full.
		n := make([]*line, len(r.arr)+1, min(r.max, max(2*cap(r.arr), 64)))
		copy(n, r.arr)
		r.arr = n
	}
	return p
}

func (r *ring) get(i int) *line {
	if i < 0 || i >= r.length {
		return nil
	}
	return r.arr[r.slot(i)]
}

func (r *ring) set(i int, l *line) { r.arr[r.slot(i)] = l }

func (r *ring) isFull() bool { return r.length == r.max }

func (r *ring) push(l *line) {
	r.arr[r.slot(r.length)] = l
	if r.length == r.max {
		r.start = (r.start + 1) % r.max
	} else {
		r.length++
	}
}

// recycle drops the oldest line and returns it for reuse as the newest.
func (r *ring) recycle() *line {
	r.start = (r.start + 1) % r.max
	return r.arr[r.slot(r.length-1)]
}

func (r *ring) pop() *line {
	l := r.arr[r.slot(r.length-1)]
	r.length--
	return l
}

func (r *ring) splice(start, deleteCount int, items ...*line) {
	if deleteCount > 0 {
		for i := start; i < r.length-deleteCount; i++ {
			r.arr[r.slot(i)] = r.arr[r.slot(i+deleteCount)]
		}
		r.length -= deleteCount
	}
	for i := r.length - 1; i >= start; i-- {
		r.arr[r.slot(i+len(items))] = r.arr[r.slot(i)]
	}
	for i, it := range items {
		r.arr[r.slot(start+i)] = it
	}
	if r.length+len(items) > r.max {
		trim := r.length + len(items) - r.max
		r.start = (r.start + trim) % r.max
		r.length = r.max
	} else {
		r.length += len(items)
	}
}

func (r *ring) trimStart(n int) {
	if n > r.length {
		n = r.length
	}
	r.start = (r.start + n) % r.max
	r.length -= n
}

func (r *ring) shiftElements(start, count, offset int) {
	if count <= 0 || start < 0 || start >= r.length || start+offset < 0 {
		return
	}
	if offset > 0 {
		for i := count - 1; i >= 0; i-- {
			r.set(start+i+offset, r.get(start+i))
		}
		expand := start + count + offset - r.length
		if expand > 0 {
			r.length += expand
			for r.length > r.max {
				r.length--
				r.start = (r.start + 1) % r.max
			}
		}
	} else {
		for i := 0; i < count; i++ {
			r.set(start+i+offset, r.get(start+i))
		}
	}
}

// setMax changes the capacity, keeping the lines in order (xterm.js maxLength setter).
func (r *ring) setMax(n int) {
	if n == r.max {
		return
	}
	keep := min(n, r.length)
	arr := make([]*line, keep, min(n, max(keep, 64)))
	for i := 0; i < keep; i++ {
		arr[i] = r.get(i)
	}
	r.arr = arr
	r.max = n
	r.start = 0
	r.length = keep
}

// setLength truncates or extends the logical length (xterm.js length setter).
func (r *ring) setLength(n int) {
	for i := r.length; i < n; i++ {
		r.arr[r.slot(i)] = nil
	}
	r.length = n
}
