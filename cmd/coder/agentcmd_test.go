package main_test

import (
	"strings"
	"testing"
)

// TestAgentMaxTerminalSessionsInvalid (issue 12): a session limit below 1
// or not a number, by flag or by environment variable, stops `coder agent`
// at once with a message that names both.
func TestAgentMaxTerminalSessionsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"flag 0", nil, []string{"--max-terminal-sessions", "0"},
			"error: invalid value 0 for --max-terminal-sessions / $CODER_AGENT_MAX_TERMINAL_SESSIONS: must be at least 1 (see coder agent --help)\n"},
		{"env -1", []string{"CODER_AGENT_MAX_TERMINAL_SESSIONS=-1"}, nil,
			"error: invalid value -1 for --max-terminal-sessions / $CODER_AGENT_MAX_TERMINAL_SESSIONS: must be at least 1 (see coder agent --help)\n"},
		{"env not a number", []string{"CODER_AGENT_MAX_TERMINAL_SESSIONS=many"}, nil,
			"error: invalid value \"many\" for $CODER_AGENT_MAX_TERMINAL_SESSIONS (--max-terminal-sessions): must be a whole number\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"agent", "--agent-url", "http://127.0.0.1:1", "--agent-token", "t"}, tc.args...)
			out, errOut, code := coderEnv(t, t.TempDir(), tc.env, "", args...)
			if code == 0 || out != "" || errOut != tc.want {
				t.Fatalf("coder %s: exit %d, stdout %q, stderr %q; want stderr %q", strings.Join(args, " "), code, out, errOut, tc.want)
			}
		})
	}
}
