package tailnet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"tailscale.com/types/logger"
)

// logfFromSlog adapts a slog logger to tailscale's printf-style logger at
// Debug level, the single mapping STYLE.md asks for. Tailscale logs are
// chatty (hundreds of lines per node pair per minute), so they never go
// above Debug.
func logfFromSlog(l *slog.Logger) logger.Logf {
	if l == nil {
		return logger.Discard
	}
	return func(format string, args ...any) {
		if !l.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
		l.Debug(strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"))
	}
}

// discardLogger returns l, or a logger that drops everything when l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
