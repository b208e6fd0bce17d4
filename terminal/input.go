package terminal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxInputFrame is the largest browser→server websocket message the relay
// accepts, in bytes; a larger one closes the websocket with 1009.
const MaxInputFrame = 64 << 10

// Input is one browser→server message, as parsed by [ParseInput].
type Input struct {
	// Data is text to send to the PTY (keystrokes, paste); empty if none.
	Data string
	// Resize is set when the message asks for a resize to Width×Height.
	Resize        bool
	Width, Height uint16
	// HasAck is set when the message acknowledges Ack more bytes of output
	// rendered by the browser. The first ack turns on flow control.
	HasAck bool
	Ack    int
	// Claim is set when the user is working in this tab (a keystroke or
	// focus): the session takes this tab's size.
	Claim bool
	// HasVisible is set when the message says whether the tab is
	// Visible: a hidden tab holds nobody back and gets the current screen
	// when shown.
	HasVisible, Visible bool
}

// maxAck bounds one acknowledgement.
const maxAck = 1 << 30

// wireInput is the JSON shape of Input; absent fields stay nil.
type wireInput struct {
	Data    *string      `json:"data"`
	Width   *json.Number `json:"width"`
	Height  *json.Number `json:"height"`
	Ack     *json.Number `json:"ack"`
	Claim   *bool        `json:"claim"`
	Visible *bool        `json:"visible"`
}

// ParseInput parses one browser→server text message, a JSON object with
// any of these fields (Coder's shapes plus ack); unknown fields are ignored:
//
//	{"data":"ls\r"}               text for the PTY
//	{"height":24,"width":80}      resize; both fields or neither
//	{"ack":65536}                 output bytes rendered since the last ack
//	{"claim":true}                the user works in this tab: the session
//	                              takes its size (false is a no-op)
//	{"visible":false}             the tab is hidden (true: shown again)
//
// Sizes are integers in [0, 65535]: a zero width or height makes the resize
// a no-op (a hidden terminal measures zero), sizes above [MaxWidth] or
// [MaxHeight] are clamped. ack is an integer in [0, 2^30]. Anything else
// (not a single JSON object, wrong types, out of range) is an error.
// ParseInput does not limit len(b): the relay rejects messages above
// [MaxInputFrame] before parsing.
func ParseInput(b []byte) (Input, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return Input{}, errors.New("parse input: not a JSON object")
	}
	var w wireInput
	if err := json.Unmarshal(t, &w); err != nil {
		return Input{}, fmt.Errorf("parse input: %w", err)
	}
	var in Input
	if w.Data != nil {
		in.Data = *w.Data
	}
	switch {
	case w.Width != nil && w.Height != nil:
		width, err := parseUint(*w.Width, 65535)
		if err != nil {
			return Input{}, fmt.Errorf("parse input: width: %w", err)
		}
		height, err := parseUint(*w.Height, 65535)
		if err != nil {
			return Input{}, fmt.Errorf("parse input: height: %w", err)
		}
		if width != 0 && height != 0 {
			in.Resize = true
			in.Width = min(uint16(width), MaxWidth)
			in.Height = min(uint16(height), MaxHeight)
		}
	case w.Width != nil || w.Height != nil:
		return Input{}, errors.New("parse input: resize needs both width and height")
	}
	if w.Ack != nil {
		n, err := parseUint(*w.Ack, maxAck)
		if err != nil {
			return Input{}, fmt.Errorf("parse input: ack: %w", err)
		}
		in.HasAck, in.Ack = true, int(n)
	}
	if w.Claim != nil {
		in.Claim = *w.Claim
	}
	if w.Visible != nil {
		in.HasVisible, in.Visible = true, *w.Visible
	}
	return in, nil
}

func parseUint(n json.Number, limit uint64) (uint64, error) {
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil || v > limit {
		return 0, fmt.Errorf("%q is not an integer between 0 and %d", truncate(string(n), 32), limit)
	}
	return v, nil
}
