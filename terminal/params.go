package terminal

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Terminal size limits. Sizes above them are clamped: they bound the memory
// a client can make the agent's screen allocate (the emulator keeps 12
// bytes per cell; 1000×500 is 6 MB of viewport, and [MaxScreenCells] bounds
// the scrollback on top of it).
const (
	// MaxWidth is the largest accepted width in columns.
	MaxWidth = 1000
	// MaxHeight is the largest accepted height in rows.
	MaxHeight = 500
	// DefaultWidth is the width used when none (or zero) is given.
	DefaultWidth = 80
	// DefaultHeight is the height used when none (or zero) is given.
	DefaultHeight = 24
	// MaxScreenCells is the cell budget of a session's screen, viewport and
	// scrollback together, that the agent gives its emulator
	// (vt.Options.MaxCells): about 12 MB a session. An 80-column session
	// keeps its full 10,000-line scrollback; a 1000×500 one keeps 548 lines.
	MaxScreenCells = 1 << 20
	// MaxCommandLen is the longest accepted command, in bytes.
	MaxCommandLen = 4096
)

// Params select and shape a session: they come from the websocket URL
// (see [ParseParams]) and travel to the agent in the hello.
type Params struct {
	// Reconnect is the session's id, a UUID in canonical lower-case form.
	// Attaches with the same id share one session.
	Reconnect string
	// Width and Height are the client's size in columns and rows; they
	// resize the session on attach. Zero means the defaults.
	Width, Height uint16
	// Command is run with the shell's -c instead of a login shell when the
	// session is created; it is ignored when attaching to an existing
	// session. Empty means a login shell.
	Command string
}

// ParseParams reads and validates the websocket URL's query, as in
// /api/v2/workspaceagents/{agent}/pty?reconnect={uuid}&width=&height=&command=
//
//   - reconnect is required and must be a UUID (any case; returned lower-case);
//   - width and height are optional decimal integers in [0, 65535]: zero or
//     absent means [DefaultWidth]×[DefaultHeight], larger than
//     [MaxWidth]/[MaxHeight] is clamped;
//   - command is optional, valid UTF-8 without NUL, at most [MaxCommandLen]
//     bytes.
//
// Errors are lowercase sentences suitable for a 400 response.
func ParseParams(q url.Values) (Params, error) {
	var p Params
	id := strings.ToLower(q.Get("reconnect"))
	switch {
	case id == "":
		return Params{}, errors.New("missing reconnect: pass ?reconnect=<uuid>")
	case !validUUID(id):
		return Params{}, fmt.Errorf("reconnect %q is not a UUID", truncate(q.Get("reconnect"), 64))
	}
	p.Reconnect = id
	var err error
	if p.Width, err = parseSize(q, "width", DefaultWidth, MaxWidth); err != nil {
		return Params{}, err
	}
	if p.Height, err = parseSize(q, "height", DefaultHeight, MaxHeight); err != nil {
		return Params{}, err
	}
	p.Command = q.Get("command")
	if err := validCommand(p.Command); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parseSize(q url.Values, key string, def, limit uint16) (uint16, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not an integer between 0 and 65535", key, truncate(s, 16))
	}
	return clampSize(uint16(n), def, limit), nil
}

// clampSize maps 0 to def and clamps to limit.
func clampSize(n, def, limit uint16) uint16 {
	switch {
	case n == 0:
		return def
	case n > limit:
		return limit
	}
	return n
}

func validCommand(c string) error {
	switch {
	case len(c) > MaxCommandLen:
		return fmt.Errorf("command is longer than %d bytes", MaxCommandLen)
	case !utf8.ValidString(c):
		return errors.New("command is not valid UTF-8")
	case strings.ContainsRune(c, 0):
		return errors.New("command contains a NUL byte")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// validUUID reports whether s is a UUID in canonical lower-case
// 8-4-4-4-12 hexadecimal form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
