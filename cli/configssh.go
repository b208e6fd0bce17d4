package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/tailnet"
)

// The markers of the block config-ssh manages, as Coder writes them.
const (
	sshStartMarker = "# ------------START-CODER-----------"
	sshEndMarker   = "# ------------END-CODER------------"
)

type configSSHOptions struct {
	File   StringValue
	DryRun BoolValue
	Prefix StringValue
}

func newConfigSSHCmd() *cobra.Command {
	var o configSSHOptions
	cmd := apiCmd(&cobra.Command{
		Use:   "config-ssh",
		Short: "Add your workspaces to your SSH config, so that `ssh coder.<workspace>` works",
		Long: "Writes a block between marker comments into your SSH config with one Host entry per workspace,\n" +
			"reached through `coder ssh --stdio`. Lines outside the markers are never changed; running it again\n" +
			"only refreshes the block. The agents' host keys are pinned in a known_hosts file next to the CLI's session.",
		Args: cobra.NoArgs,
	}, false, func(ctx context.Context, c *sdk.Client, co *clientOptions, _ []string) error {
		return tunnelError(runConfigSSH(ctx, c, co, &o))
	})
	home, _ := os.UserHomeDir()
	OptionSet{
		{Flag: "ssh-config-file", Env: "CODER_SSH_CONFIG_FILE", Default: filepath.Join(home, ".ssh", "config"), Value: &o.File, Description: "The SSH config file to write."},
		{Flag: "dry-run", Short: "n", Env: "CODER_SSH_DRY_RUN", Value: &o.DryRun, Description: "Show the changes as a diff without writing them."},
		{Flag: "ssh-host-prefix", Env: "CODER_CONFIGSSH_SSH_HOST_PREFIX", Default: "coder.", Value: &o.Prefix, Description: "Prefix of the Host entries."},
	}.Register(cmd)
	return cmd
}

func runConfigSSH(ctx context.Context, c *sdk.Client, co *clientOptions, o *configSSHOptions) error {
	bi, err := c.BuildInfo(ctx)
	if err != nil {
		return err
	}
	if bi.BrowserOnly {
		return tailnet.ErrBrowserOnly
	}
	ws, err := c.ListWorkspaces(ctx, false)
	if err != nil {
		return err
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	cfgDir, err := filepath.Abs(co.config().dir)
	if err != nil {
		return err
	}
	knownHosts := filepath.Join(cfgDir, "known_hosts")
	var hosts []sshHost
	for _, w := range ws {
		for i, ag := range w.Agents {
			info, err := c.AgentConnection(ctx, ag.ID)
			if err != nil {
				return err
			}
			names := []string{string(o.Prefix) + w.Name + "." + ag.Name}
			if i == 0 {
				names = append([]string{string(o.Prefix) + w.Name}, names...)
			}
			for _, n := range names {
				target := w.Name
				if n != string(o.Prefix)+w.Name {
					target = w.Name + "." + ag.Name
				}
				hosts = append(hosts, sshHost{name: n, target: target, hostKey: info.SSHHostKey})
			}
		}
	}
	block := sshConfigBlock(hosts, bin, cfgDir, knownHosts)

	file := string(o.File)
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	updated, err := replaceSSHBlock(string(old), block)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var kh strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&kh, "%s %s\n", h.name, h.hostKey)
	}
	if o.DryRun {
		if updated == string(old) {
			fmt.Fprintf(os.Stderr, "No changes to %s.\n", file)
			return nil
		}
		fmt.Fprint(os.Stdout, unifiedDiff(file, string(old), updated))
		return nil
	}
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(knownHosts, []byte(kh.String()), 0o600); err != nil {
		return err
	}
	if updated == string(old) {
		fmt.Fprintf(os.Stderr, "No changes to %s.\n", file)
	} else {
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if st, err := os.Stat(file); err == nil {
			mode = st.Mode().Perm()
		}
		if err := writeFileAtomic(file, []byte(updated), mode); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "Updated %s.\n", file)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(os.Stderr, "You have no workspaces yet; run config-ssh again after `coder create`.")
		return nil
	}
	fmt.Fprintf(os.Stderr, "You can now connect with: ssh %s\n", hosts[0].name)
	return nil
}

type sshHost struct{ name, target, hostKey string }

// shellQuote quotes s for the shell ssh runs ProxyCommand with.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sshQuote quotes a path for an ssh_config value.
func sshQuote(s string) string {
	if strings.ContainsAny(s, " \t\"") {
		return `"` + s + `"`
	}
	return s
}

// sshConfigBlock renders the managed block, markers included.
func sshConfigBlock(hosts []sshHost, bin, cfgDir, knownHosts string) string {
	var b strings.Builder
	fmt.Fprintln(&b, sshStartMarker)
	fmt.Fprintln(&b, "# This section is managed by coder. DO NOT EDIT.")
	fmt.Fprintln(&b, "#")
	fmt.Fprintln(&b, "# You should not hand-edit this section unless you are removing it, all")
	fmt.Fprintln(&b, `# changes will be lost when running "coder config-ssh".`)
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n", h.name)
		fmt.Fprintf(&b, "  HostName %s\n", h.name)
		fmt.Fprintf(&b, "  ConnectTimeout 0\n")
		fmt.Fprintf(&b, "  StrictHostKeyChecking yes\n")
		fmt.Fprintf(&b, "  UserKnownHostsFile %s\n", sshQuote(knownHosts))
		fmt.Fprintf(&b, "  GlobalKnownHostsFile none\n")
		fmt.Fprintf(&b, "  LogLevel ERROR\n")
		fmt.Fprintf(&b, "  ProxyCommand %s ssh --global-config %s --stdio %s\n", shellQuote(bin), shellQuote(cfgDir), shellQuote(h.target))
	}
	fmt.Fprintln(&b, sshEndMarker)
	return b.String()
}

// replaceSSHBlock puts block in place of the marked block of config, or
// appends it; every line outside the markers is kept byte for byte.
func replaceSSHBlock(config, block string) (string, error) {
	start := findLine(config, sshStartMarker)
	end := findLine(config, sshEndMarker)
	switch {
	case start < 0 && end < 0:
		if config == "" {
			return block, nil
		}
		if !strings.HasSuffix(config, "\n") {
			config += "\n"
		}
		return config + "\n" + block, nil
	case start < 0 || end < 0 || end < start:
		return "", errors.New("the coder section's markers are unbalanced: fix or remove the lines starting with \"# ------------START-CODER\" and \"# ------------END-CODER\"")
	}
	if findLine(config[start+1:], sshStartMarker) >= 0 {
		return "", errors.New("the coder section appears twice: remove one")
	}
	afterEnd := end + len(sshEndMarker)
	if afterEnd < len(config) && config[afterEnd] == '\n' {
		afterEnd++
	}
	return config[:start] + block + config[afterEnd:], nil
}

// findLine returns the offset of the first line that is exactly line, or
// -1.
func findLine(s, line string) int {
	off := 0
	for {
		i := strings.Index(s[off:], line)
		if i < 0 {
			return -1
		}
		p := off + i
		atStart := p == 0 || s[p-1] == '\n'
		e := p + len(line)
		atEnd := e == len(s) || s[e] == '\n' || s[e] == '\r'
		if atStart && atEnd {
			return p
		}
		off = p + 1
	}
}

// writeFileAtomic writes through a temporary file and a rename.
func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// unifiedDiff is a small line diff (LCS) in unified format with 3 lines
// of context, for --dry-run.
func unifiedDiff(name, a, b string) string {
	al, bl := splitLines(a), splitLines(b)
	n, m := len(al), len(bl)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		text string
		ai   int
		bi   int
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			ops = append(ops, op{' ', al[i], i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', al[i], i, j})
			i++
		default:
			ops = append(ops, op{'+', bl[j], i, j})
			j++
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", name, name)
	const ctx = 3
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		s := max(0, k-ctx)
		e := k
		for e < len(ops) {
			if ops[e].kind != ' ' {
				e++
				continue
			}
			run := e
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run-e > 2*ctx || run == len(ops) {
				e = min(e+ctx, len(ops))
				break
			}
			e = run
		}
		var na, nb int
		for _, o := range ops[s:e] {
			if o.kind != '+' {
				na++
			}
			if o.kind != '-' {
				nb++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", ops[s].ai+1, na, ops[s].bi+1, nb)
		for _, o := range ops[s:e] {
			fmt.Fprintf(&out, "%c%s\n", o.kind, o.text)
		}
		k = e
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
