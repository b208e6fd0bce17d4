package testutil

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

// Logger returns a logger that writes records of level min and above to
// t.Log, and fails t on an Error record (an error log is a bug unless a
// test expects it, which then needs a logger of its own). Records that
// arrive after the test has finished (from goroutines still winding down)
// are dropped, since t may no longer be used.
func Logger(t testing.TB, min slog.Level) *slog.Logger {
	h := &tHandler{t: t, min: min, done: new(atomic.Bool)}
	t.Cleanup(func() { h.done.Store(true) })
	return slog.New(h)
}

type tHandler struct {
	t     testing.TB
	min   slog.Level
	done  *atomic.Bool
	attrs string
}

func (h *tHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h *tHandler) Handle(_ context.Context, r slog.Record) error {
	if h.done.Load() {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message + h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.t.Helper()
	if r.Level >= slog.LevelError {
		h.t.Errorf("unexpected error log: %s", b.String())
		return nil
	}
	h.t.Log(b.String())
	return nil
}

func (h *tHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		b.WriteString(" " + a.String())
	}
	return &tHandler{t: h.t, min: h.min, done: h.done, attrs: b.String()}
}

func (h *tHandler) WithGroup(string) slog.Handler { return h }
