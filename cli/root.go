package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Commands returns the client commands, to add to the root command.
// version is what `coder version` prints.
func Commands(version string) []*cobra.Command {
	return []*cobra.Command{
		newLoginCmd(),
		newLogoutCmd(),
		newWhoamiCmd(),
		newUsersCmd(),
		newTemplatesCmd(),
		newCreateCmd(),
		newListCmd(),
		newTransitionCmd("start", "Start a workspace's agents"),
		newTransitionCmd("stop", "Stop a workspace's agents"),
		newDeleteCmd(),
		newVersionCmd(version),
		newPingCmd(),
		newSpeedtestCmd(),
		newNetcheckCmd(),
		newSSHCmd(),
		newConfigSSHCmd(),
		newPortForwardCmd(),
	}
}

// ExitError ends the process with Code and no message (the command
// already printed what the user needs).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// FlagError makes a bad flag value a one-line error that names the flag and
// its environment variable. Install it with cobra's SetFlagErrorFunc.
func FlagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var name string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if strings.Contains(msg, `"--`+f.Name+`"`) || strings.Contains(msg, "--"+f.Name+" ") || strings.HasSuffix(msg, "--"+f.Name) {
			name = f.Name
			if i := strings.Index(f.Usage, "[$"); i >= 0 {
				name += " / " + strings.Trim(f.Usage[i:], "[]")
			}
		}
	})
	if name != "" {
		if _, after, ok := strings.Cut(msg, "flag: "); ok {
			msg = after
		}
		return fmt.Errorf("invalid value for --%s: %s (see coder %s --help)", name, msg, cmd.Name())
	}
	return fmt.Errorf("%s (see coder %s --help)", msg, cmd.Name())
}

// DefaultConfigDir is $CODER_CONFIG_DIR, or coderv2 under the user's
// config directory.
func DefaultConfigDir() string {
	if d := os.Getenv("CODER_CONFIG_DIR"); d != "" {
		return d
	}
	base, err := os.UserConfigDir()
	if err != nil {
		base = filepath.Join(os.TempDir(), "coder-config")
	}
	return filepath.Join(base, "coderv2")
}

// NewLogger is the binary's text logger on w: info, or debug with verbose.
func NewLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newVersionCmd(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "Coder %s\n", version)
			return nil
		},
	}
}
