package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/web"
)

// startupPageLines is how many of the newest startup log lines the
// workspace page shows.
const startupPageLines = 500

// handleStartupMessage records a startup_log or startup_state message of
// an agent and wakes the workspace's pages. A message that does not parse
// or names an unknown state is logged and dropped: the agent's next one
// may be fine.
func (a *API) handleStartupMessage(ctx context.Context, log *slog.Logger, agentID, workspaceID, typ string, data []byte) {
	var err error
	switch typ {
	case sdk.AgentMessageStartupLog:
		var m sdk.AgentStartupLog
		if err = json.Unmarshal(data, &m); err != nil {
			log.Warn("agent sent a startup log that does not parse", "err", err)
			return
		}
		for i, l := range m.Lines {
			m.Lines[i] = cleanLogLine(l)
		}
		err = a.db.AppendStartupLog(ctx, agentID, m.Reset, m.Lines, sdk.StartupLogMaxLines, sdk.StartupLogMaxBytes)
	case sdk.AgentMessageStartupState:
		var m sdk.AgentStartupState
		if err = json.Unmarshal(data, &m); err != nil {
			log.Warn("agent sent a startup state that does not parse", "err", err)
			return
		}
		switch m.State {
		case sdk.StartupRunning, sdk.StartupReady, sdk.StartupError:
		default:
			log.Warn("agent sent an unknown startup state", "state", truncateForLog(m.State))
			return
		}
		err = a.db.SetStartupState(ctx, agentID, m.State, m.ExitCode)
	}
	if err != nil {
		log.Warn("record startup script", "err", err)
		return
	}
	a.notifyWorkspace(workspaceID)
}

// cleanLogLine makes a line from an agent storable and bounded: valid
// UTF-8, no NUL byte, at most sdk.StartupLogMaxLineBytes.
func cleanLogLine(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
	if len(s) > sdk.StartupLogMaxLineBytes {
		cut := sdk.StartupLogMaxLineBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

func truncateForLog(s string) string {
	if len(s) > 64 {
		return cleanLogLine(s[:64]) + "…"
	}
	return s
}

// startupView is an agent's startup script as the workspace page shows
// it; the zero value (no script) shows nothing.
func (a *API) startupView(ctx context.Context, ag sdk.WorkspaceAgent) (web.Startup, error) {
	if ag.StartupState == "" {
		return web.Startup{}, nil
	}
	s, err := a.db.StartupOf(ctx, ag.ID, startupPageLines)
	if err != nil {
		return web.Startup{}, err
	}
	return web.Startup{State: ag.StartupState, ExitCode: ag.StartupExitCode, Lines: s.Lines, Dropped: s.Dropped}, nil
}

// agentStartupState is the startup state of an agent whose spec has a
// startup script: what it reported, or StartupPending.
func (a *API) agentStartupState(ctx context.Context, agentID string, spec sdk.TemplateAgent) (string, int, error) {
	if spec.StartupScript == "" {
		return "", 0, nil
	}
	s, err := a.db.StartupOf(ctx, agentID, 0)
	if err != nil || s.State == "" {
		return sdk.StartupPending, 0, err
	}
	return s.State, s.ExitCode, nil
}
