package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Startup is an agent's startup script state and the newest lines of its
// log, oldest first. State is "" when the agent never reported one.
type Startup struct {
	State    string
	ExitCode int
	// Dropped counts the lines removed to keep the log within its bounds.
	Dropped int64
	Lines   []string
}

// SetStartupState records the state of an agent's startup script. A new
// "running" state (a new agent start) forgets the count of dropped lines.
func (db *DB) SetStartupState(ctx context.Context, agentID, state string, exitCode int) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO workspace_agent_startup (agent_id, state, exit_code) VALUES ($1, $2, $3)
		ON CONFLICT (agent_id) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code, updated_at = now(),
			lines_dropped = CASE WHEN excluded.state = 'running' THEN 0 ELSE workspace_agent_startup.lines_dropped END`,
		agentID, state, exitCode)
	return err
}

// AppendStartupLog adds lines to an agent's startup log (after removing
// every earlier line when reset), then drops the oldest lines beyond
// maxLines or maxBytes, counting them in Startup.Dropped.
func (db *DB) AppendStartupLog(ctx context.Context, agentID string, reset bool, lines []string, maxLines int, maxBytes int64) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if reset {
			if _, err := tx.Exec(ctx, `DELETE FROM workspace_agent_startup_logs WHERE agent_id = $1`, agentID); err != nil {
				return err
			}
		}
		if len(lines) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO workspace_agent_startup_logs (agent_id, line)
				SELECT $1, l FROM unnest($2::text[]) WITH ORDINALITY AS t(l, n) ORDER BY n`, agentID, lines); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `DELETE FROM workspace_agent_startup_logs WHERE agent_id = $1 AND id IN (
			SELECT id FROM (SELECT id,
				row_number() OVER (ORDER BY id DESC) AS n,
				sum(octet_length(line) + 1) OVER (ORDER BY id DESC) AS bytes
				FROM workspace_agent_startup_logs WHERE agent_id = $1) x
			WHERE n > $2 OR bytes > $3)`, agentID, maxLines, maxBytes)
		if err != nil {
			return err
		}
		if reset || tag.RowsAffected() > 0 {
			_, err = tx.Exec(ctx, `INSERT INTO workspace_agent_startup (agent_id, state, lines_dropped) VALUES ($1, 'running', $2)
				ON CONFLICT (agent_id) DO UPDATE SET lines_dropped = CASE WHEN $3 THEN 0 ELSE workspace_agent_startup.lines_dropped END + $2`,
				agentID, tag.RowsAffected(), reset)
		}
		return err
	})
}

// StartupOf returns an agent's startup state and the newest limit lines of
// its log; Dropped also counts the lines beyond limit.
func (db *DB) StartupOf(ctx context.Context, agentID string, limit int) (Startup, error) {
	var s Startup
	err := db.Pool.QueryRow(ctx, `SELECT state, exit_code, lines_dropped FROM workspace_agent_startup WHERE agent_id = $1`, agentID).
		Scan(&s.State, &s.ExitCode, &s.Dropped)
	if err != nil && err != pgx.ErrNoRows {
		return s, err
	}
	var total int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM workspace_agent_startup_logs WHERE agent_id = $1`, agentID).Scan(&total); err != nil {
		return s, err
	}
	rows, err := db.Pool.Query(ctx, `SELECT line FROM (SELECT id, line FROM workspace_agent_startup_logs WHERE agent_id = $1
		ORDER BY id DESC LIMIT $2) x ORDER BY id`, agentID, limit)
	if err != nil {
		return s, err
	}
	s.Lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if total > int64(len(s.Lines)) {
		s.Dropped += total - int64(len(s.Lines))
	}
	return s, err
}
