package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatewaydev/coder/sdk"
)

func TestStartupLogBounds(t *testing.T) {
	l := newStartupLog()
	l.setState(sdk.StartupRunning, 0)
	for i := 0; i < sdk.StartupLogMaxLines+5; i++ {
		l.add("x")
	}
	if len(l.lines) != sdk.StartupLogMaxLines || l.first != 5 {
		t.Errorf("after %d lines: kept %d from %d", sdk.StartupLogMaxLines+5, len(l.lines), l.first)
	}
	// Long lines: the byte bound keeps about 1 MiB.
	long := strings.Repeat("é", sdk.StartupLogMaxLineBytes) // 2 bytes each
	for i := 0; i < 1000; i++ {
		l.add(long)
	}
	if l.bytes > sdk.StartupLogMaxBytes {
		t.Errorf("kept %d bytes, more than %d", l.bytes, sdk.StartupLogMaxBytes)
	}
	last := l.lines[len(l.lines)-1]
	if len(last) > sdk.StartupLogMaxLineBytes || !utf8.ValidString(last) || !strings.HasSuffix(last, "(truncated)") {
		t.Errorf("a long line is kept as %d bytes, valid UTF-8 %v", len(last), utf8.ValidString(last))
	}

	// A new connection sends everything kept, in frames within the limit,
	// the first one a reset, then the state; the next call sends only
	// what is new.
	s := &startupSender{reset: true}
	frames := s.frames(l)
	var lines int
	for i, f := range frames[:len(frames)-1] {
		if len(f) > sdk.StartupLogFrameBytes+sdk.StartupLogMaxLineBytes {
			t.Errorf("frame %d is %d bytes", i, len(f))
		}
		var m sdk.AgentStartupLog
		if err := json.Unmarshal(f, &m); err != nil || m.Type != sdk.AgentMessageStartupLog || m.Reset != (i == 0) {
			t.Fatalf("frame %d: %+v %v", i, m, err)
		}
		lines += len(m.Lines)
	}
	if lines != len(l.lines) {
		t.Errorf("sent %d lines, kept %d", lines, len(l.lines))
	}
	var st sdk.AgentStartupState
	if err := json.Unmarshal(frames[len(frames)-1], &st); err != nil || st.State != sdk.StartupRunning {
		t.Errorf("last frame %s", frames[len(frames)-1])
	}
	l.add("new")
	l.setState(sdk.StartupError, 2)
	frames = s.frames(l)
	if len(frames) != 2 || !strings.Contains(string(frames[0]), `"lines":["new"]`) || !strings.Contains(string(frames[1]), `"exit_code":2`) {
		t.Errorf("next frames: %q", frames)
	}
	if frames := s.frames(l); len(frames) != 0 {
		t.Errorf("nothing new, yet sent %q", frames)
	}
	// No script: nothing at all.
	if f := (&startupSender{reset: true}).frames(newStartupLog()); f != nil {
		t.Errorf("no script sends %q", f)
	}
}

func TestTruncateLine(t *testing.T) {
	for in, want := range map[string]string{
		"ok":                "ok",
		"nul\x00":           "nul\uFFFD",
		"bad\xff":           "bad\uFFFD",
		"abcdefghijklmnopq": "a …(truncated)",
	} {
		if got := truncateLine(in, 16); got != want {
			t.Errorf("truncateLine(%q) = %q, want %q", in, got, want)
		}
	}
}
