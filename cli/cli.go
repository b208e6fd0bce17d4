package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gatewaydev/coder/sdk"
)

// MissingFlag is the error for a required option that is not set.
func MissingFlag(flag, env string) error {
	return fmt.Errorf("--%s is required: set it or $%s", flag, env)
}

// cliConfig is where the CLI keeps its session: files "url" and "session"
// (mode 0600) in the config directory.
type cliConfig struct{ dir string }

func (c cliConfig) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	return strings.TrimSpace(string(b)), err
}

func (c cliConfig) write(name, v string) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, name), []byte(v+"\n"), 0o600)
}

// clientOptions are the options every API command shares.
type clientOptions struct {
	URL       URLValue
	Token     StringValue
	ConfigDir StringValue
	Output    EnumValue
}

func (o *clientOptions) table(withOutput bool) OptionSet {
	t := OptionSet{
		{Flag: "url", Env: "CODER_URL", Value: &o.URL, Description: "URL of the deployment (default: the one `coder login` saved)."},
		{Flag: "token", Env: "CODER_SESSION_TOKEN", Value: &o.Token, Secret: true, Description: "Session token (default: the one `coder login` saved)."},
		{Flag: "global-config", Env: "CODER_CONFIG_DIR", Default: DefaultConfigDir(), Value: &o.ConfigDir, Description: "Directory of the CLI's saved session."},
	}
	if withOutput {
		o.Output = EnumValue{choices: []string{"table", "json"}}
		t = append(t, &Option{Flag: "output", Short: "o", Default: "table", Value: &o.Output, Description: "Output format: table or json."})
	}
	return t
}

func (o *clientOptions) config() cliConfig { return cliConfig{dir: string(o.ConfigDir)} }

// client builds an API client from the flags or the saved session.
func (o *clientOptions) client() (*sdk.Client, error) {
	cfg := o.config()
	u := o.URL.u
	if u == nil {
		s, err := cfg.read("url")
		if err != nil || s == "" {
			return nil, errors.New("you are not logged in: run `coder login <url>` first")
		}
		if u, err = url.Parse(s); err != nil {
			return nil, fmt.Errorf("saved url %q in %s is not valid: run `coder login <url>` again", s, cfg.dir)
		}
	}
	tok := string(o.Token)
	if tok == "" {
		tok, _ = cfg.read("session")
	}
	if tok == "" {
		return nil, errors.New("you are not logged in: run `coder login <url>` first")
	}
	return &sdk.Client{URL: u, Token: tok, HTTP: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiCmd makes a command that talks to the API with the shared options.
func apiCmd(cmd *cobra.Command, withOutput bool, run func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error) *cobra.Command {
	o := &clientOptions{}
	o.table(withOutput).Register(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		return run(cmd.Context(), c, o, args)
	}
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows under upper-case headers, like Coder's tables.
func printTable(w io.Writer, headers []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(headers, "\t")))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func prompt(in *bufio.Reader, out io.Writer, label string) (string, error) {
	fmt.Fprintf(out, "%s: ", label)
	s, err := in.ReadString('\n')
	if err != nil && s == "" {
		return "", fmt.Errorf("read %s: %w", strings.ToLower(label), err)
	}
	return strings.TrimSpace(s), nil
}

// promptSecret reads a line without echo when stdin is a terminal.
func promptSecret(in *bufio.Reader, out io.Writer, label string) (string, error) {
	if f, ok := any(os.Stdin).(*os.File); ok && term.IsTerminal(int(f.Fd())) && in.Buffered() == 0 {
		fmt.Fprintf(out, "%s: ", label)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		return strings.TrimSpace(string(b)), err
	}
	return prompt(in, out, label)
}

func newLoginCmd() *cobra.Command {
	var o clientOptions
	var useToken, firstUser, firstEmail, firstPassword, password, username StringValue
	opts := o.table(false)
	opts = append(opts,
		&Option{Flag: "use-token-as-session", Value: &useToken, Secret: true, Description: "Log in with this session token (from the /cli-auth page) instead of a password."},
		&Option{Flag: "username", Env: "CODER_USERNAME", Value: &username, Description: "Username or email to log in with (prompted when missing)."},
		&Option{Flag: "password", Env: "CODER_PASSWORD", Value: &password, Secret: true, Description: "Password to log in with (prompted when missing)."},
		&Option{Flag: "first-user-username", Env: "CODER_FIRST_USER_USERNAME", Value: &firstUser, Description: "On a new deployment, create the first (owner) user with this username."},
		&Option{Flag: "first-user-email", Env: "CODER_FIRST_USER_EMAIL", Value: &firstEmail, Description: "Email of the first user."},
		&Option{Flag: "first-user-password", Env: "CODER_FIRST_USER_PASSWORD", Value: &firstPassword, Secret: true, Description: "Password of the first user."},
	)
	cmd := &cobra.Command{
		Use:   "login <url>",
		Short: "Log in to a Coder deployment and save the session",
		Long: "Log in with a password (prompted), or with --use-token-as-session and a token from <url>/cli-auth.\n" +
			"On a deployment with no users yet, --first-user-* create the owner.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := cmd.ErrOrStderr()
			in := bufio.NewReader(cmd.InOrStdin())
			u := o.URL.u
			if len(args) == 1 {
				var v URLValue
				raw := args[0]
				if !strings.Contains(raw, "://") {
					raw = "https://" + raw
				}
				if err := v.Set(raw); err != nil {
					return fmt.Errorf("%q is not a deployment URL: %v", args[0], err)
				}
				u = v.u
			}
			if u == nil {
				return errors.New("give the deployment URL: coder login <url>")
			}
			c := &sdk.Client{URL: u, HTTP: &http.Client{Timeout: 30 * time.Second}}
			if _, err := c.BuildInfo(ctx); err != nil {
				return fmt.Errorf("reach %s: %w", u, err)
			}
			tok := string(useToken)
			if firstUser != "" {
				if firstPassword == "" {
					return errors.New("--first-user-password is required with --first-user-username")
				}
				email := string(firstEmail)
				if email == "" {
					email = string(firstUser) + "@example.com"
				}
				err := c.CreateFirstUser(ctx, sdk.CreateFirstUserRequest{Username: string(firstUser), Email: email, Password: string(firstPassword)})
				switch {
				case err == nil:
					fmt.Fprintf(out, "Created the first user %q (owner).\n", firstUser)
				case sdk.StatusCode(err) == http.StatusConflict:
					// Already set up: log in as that user below.
				default:
					return err
				}
				username, password = firstUser, firstPassword
			}
			if tok == "" && username == "" && password == "" {
				fmt.Fprintf(out, "Log in with a password, or open %s/cli-auth and paste the token here.\n", u)
			}
			if tok == "" {
				var err error
				if username == "" {
					if username_, err2 := prompt(in, out, "Username or email (or a session token)"); err2 != nil {
						return err2
					} else if strings.Count(username_, "-") == 1 && len(username_) == 33 {
						tok = username_
					} else {
						username = StringValue(username_)
					}
				}
				if tok == "" {
					if password == "" {
						var p string
						if p, err = promptSecret(in, out, "Password"); err != nil {
							return err
						}
						password = StringValue(p)
					}
					resp, err := c.Login(ctx, sdk.LoginRequest{Login: string(username), Password: string(password)})
					if err != nil {
						return err
					}
					tok = resp.SessionToken
				}
			}
			c.Token = tok
			me, err := c.Me(ctx)
			if err != nil {
				return fmt.Errorf("check session: %w", err)
			}
			cfg := o.config()
			if err := cfg.write("url", u.String()); err != nil {
				return fmt.Errorf("save session: %w", err)
			}
			if err := cfg.write("session", tok); err != nil {
				return fmt.Errorf("save session: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Welcome to Coder, %s! You're authenticated.\n", me.Username)
			return nil
		},
	}
	opts.Register(cmd)
	return cmd
}

func newLogoutCmd() *cobra.Command {
	return apiCmd(&cobra.Command{Use: "logout", Short: "Log out and forget the saved session", Args: cobra.NoArgs}, false,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			err := c.Logout(ctx)
			if err != nil && sdk.StatusCode(err) != http.StatusUnauthorized {
				return err
			}
			for _, f := range []string{"session", "url"} {
				if err := os.Remove(filepath.Join(o.config().dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			fmt.Println("You are logged out.")
			return nil
		})
}

func newWhoamiCmd() *cobra.Command {
	return apiCmd(&cobra.Command{Use: "whoami", Short: "Show who you are logged in as", Args: cobra.NoArgs}, true,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			me, err := c.Me(ctx)
			if err != nil {
				return err
			}
			if o.Output.v == "json" {
				return printJSON(os.Stdout, me)
			}
			fmt.Printf("Coder is running at %s, you're authenticated as %s !\n", c.URL, me.Username)
			return nil
		})
}

func newUsersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users (owner only)"}
	var username, email, password, role StringValue
	create := apiCmd(&cobra.Command{Use: "create", Short: "Create a user", Args: cobra.NoArgs}, false,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			if username == "" || email == "" || password == "" {
				return errors.New("--username, --email and --password are required")
			}
			u, err := c.CreateUser(ctx, sdk.CreateUserRequest{Username: string(username), Email: string(email), Password: string(password), Role: string(role)})
			if err != nil {
				return err
			}
			fmt.Printf("Created user %q (%s).\n", u.Username, u.Role)
			return nil
		})
	OptionSet{
		{Flag: "username", Short: "u", Value: &username, Description: "Username (DNS-safe: lowercase letters, digits, hyphens)."},
		{Flag: "email", Short: "e", Value: &email, Description: "Email address."},
		{Flag: "password", Short: "p", Env: "CODER_NEW_USER_PASSWORD", Value: &password, Secret: true, Description: "Password (at least 8 characters)."},
		{Flag: "role", Value: &role, Default: "member", Description: "member or owner."},
	}.Register(create)
	list := apiCmd(&cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List users", Args: cobra.NoArgs}, true,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			us, err := c.ListUsers(ctx)
			if err != nil {
				return err
			}
			if o.Output.v == "json" {
				return printJSON(os.Stdout, us)
			}
			var rows [][]string
			for _, u := range us {
				rows = append(rows, []string{u.Username, u.Email, u.Role, u.CreatedAt.Format(time.DateOnly)})
			}
			printTable(os.Stdout, []string{"username", "email", "role", "created at"}, rows)
			return nil
		})
	cmd.AddCommand(create, list)
	return cmd
}

func newTemplatesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "templates", Short: "Manage templates"}
	var file StringValue
	push := apiCmd(&cobra.Command{Use: "push <name>", Short: "Create or update a template from a YAML file", Args: cobra.ExactArgs(1)}, false,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			if file == "" {
				return errors.New("--file (-f) is required: the template's YAML file")
			}
			src, err := os.ReadFile(string(file))
			if err != nil {
				return err
			}
			if _, err := sdk.ParseTemplate(src); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			info, err := c.PushTemplate(ctx, args[0], sdk.PushTemplateRequest{Source: string(src)})
			if err != nil {
				return err
			}
			verb := "Updated"
			if info.Created {
				verb = "Created"
			}
			fmt.Printf("%s template %q (%d agent(s), %s provisioner).\n", verb, info.Name, info.Agents, info.Provisioner)
			return nil
		})
	OptionSet{{Flag: "file", Short: "f", Value: &file, Description: "Template YAML file."}}.Register(push)
	list := apiCmd(&cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List templates", Args: cobra.NoArgs}, true,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			ts, err := c.ListTemplates(ctx)
			if err != nil {
				return err
			}
			if o.Output.v == "json" {
				return printJSON(os.Stdout, ts)
			}
			var rows [][]string
			for _, t := range ts {
				rows = append(rows, []string{t.Name, t.Provisioner, fmt.Sprint(t.Agents), fmt.Sprint(t.Workspaces), t.UpdatedAt.Format(time.DateTime)})
			}
			printTable(os.Stdout, []string{"name", "provisioner", "agents", "workspaces", "last updated"}, rows)
			return nil
		})
	cmd.AddCommand(push, list)
	return cmd
}

func newCreateCmd() *cobra.Command {
	var template StringValue
	cmd := apiCmd(&cobra.Command{Use: "create <name>", Short: "Create a workspace", Args: cobra.ExactArgs(1)}, true,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			if template == "" {
				return errors.New("--template (-t) is required; list templates with `coder templates list`")
			}
			w, err := c.CreateWorkspace(ctx, sdk.CreateWorkspaceRequest{Name: args[0], Template: string(template)})
			if err != nil {
				return err
			}
			if o.Output.v == "json" {
				return printJSON(os.Stdout, w)
			}
			fmt.Printf("Workspace %q created from template %q.\n", w.Name, w.TemplateName)
			for _, ag := range w.Agents {
				if ag.Token != "" {
					fmt.Printf("\nStart agent %q on the workspace's machine (the token is shown only now):\n  CODER_AGENT_URL=%s CODER_AGENT_TOKEN=%s coder agent\n", ag.Name, c.URL, ag.Token)
				}
			}
			fmt.Printf("\nOpen it: %s/@%s/%s\n", c.URL, w.OwnerName, w.Name)
			return nil
		})
	OptionSet{{Flag: "template", Short: "t", Env: "CODER_TEMPLATE_NAME", Value: &template, Description: "Template to create the workspace from."}}.Register(cmd)
	return cmd
}

func newListCmd() *cobra.Command {
	var all BoolValue
	cmd := apiCmd(&cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List workspaces", Args: cobra.NoArgs}, true,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			ws, err := c.ListWorkspaces(ctx, bool(all))
			if err != nil {
				return err
			}
			if o.Output.v == "json" {
				return printJSON(os.Stdout, ws)
			}
			var rows [][]string
			var unreachable []string
			for _, w := range ws {
				healthy := 0
				for _, ag := range w.Agents {
					if ag.Status == sdk.AgentConnected {
						healthy++
					}
					if ag.TailnetError != "" {
						unreachable = append(unreachable, fmt.Sprintf("%s/%s.%s: %s", w.OwnerName, w.Name, ag.Name, ag.TailnetError))
					}
				}
				rows = append(rows, []string{w.OwnerName + "/" + w.Name, w.TemplateName, w.Status, fmt.Sprintf("%d/%d", healthy, len(w.Agents)), w.UpdatedAt.Format(time.DateTime)})
			}
			if len(rows) == 0 {
				fmt.Fprintln(os.Stderr, "No workspaces found. Create one with: coder create <name> --template <template>")
				return nil
			}
			printTable(os.Stdout, []string{"workspace", "template", "status", "agents connected", "last updated"}, rows)
			for _, u := range unreachable {
				fmt.Fprintln(os.Stderr, "warning: "+u)
			}
			return nil
		})
	OptionSet{{Flag: "all", Short: "a", Value: &all, Description: "List every user's workspaces (owner only)."}}.Register(cmd)
	return cmd
}

func newTransitionCmd(action, short string) *cobra.Command {
	return apiCmd(&cobra.Command{Use: action + " <workspace>", Short: short, Args: cobra.ExactArgs(1)}, false,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			w, err := c.Workspace(ctx, args[0])
			if err != nil {
				return err
			}
			transition := c.StartWorkspace
			if action == "stop" {
				transition = c.StopWorkspace
			}
			if w, err = transition(ctx, w.ID); err != nil {
				return err
			}
			fmt.Printf("Workspace %q: %s.\n", w.Name, w.Status)
			return nil
		})
}

func newDeleteCmd() *cobra.Command {
	var yes BoolValue
	cmd := apiCmd(&cobra.Command{Use: "delete <workspace>", Short: "Delete a workspace", Args: cobra.ExactArgs(1)}, false,
		func(ctx context.Context, c *sdk.Client, o *clientOptions, args []string) error {
			w, err := c.Workspace(ctx, args[0])
			if err != nil {
				return err
			}
			if !yes {
				in := bufio.NewReader(os.Stdin)
				ans, err := prompt(in, os.Stderr, fmt.Sprintf("Delete workspace %q? Type its name to confirm", w.Name))
				if err != nil {
					return err
				}
				if ans != w.Name {
					return errors.New("not deleted: the name did not match")
				}
			}
			if err := c.DeleteWorkspace(ctx, w.ID); err != nil {
				return err
			}
			fmt.Printf("Workspace %q deleted.\n", w.Name)
			return nil
		})
	OptionSet{{Flag: "yes", Short: "y", Value: &yes, Description: "Do not ask for confirmation."}}.Register(cmd)
	return cmd
}
