package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Provisioners of a template.
const (
	// ProvisionerLocal: the server runs `coder agent` as a child process.
	ProvisionerLocal = "local"
	// ProvisionerManual: the user starts the agent with a printed command.
	ProvisionerManual = "manual"
)

// Sharing levels of an app.
const (
	ShareOwner         = "owner"
	ShareAuthenticated = "authenticated"
	SharePublic        = "public"
)

// Bounds of an app's health check.
const (
	MaxHealthcheckInterval  = 3600
	MaxHealthcheckThreshold = 100
)

// MaxTemplateSize bounds a template file.
const MaxTemplateSize = 64 << 10

// Template is the parsed template file.
type Template struct {
	DisplayName string          `yaml:"display_name" json:"display_name,omitempty"`
	Description string          `yaml:"description" json:"description,omitempty"`
	Provisioner string          `yaml:"provisioner" json:"provisioner"`
	AgentURL    string          `yaml:"agent_url" json:"agent_url,omitempty"`
	Agents      []TemplateAgent `yaml:"agents" json:"agents"`
}

// TemplateAgent is one agent of a template.
type TemplateAgent struct {
	Name      string `yaml:"name" json:"name"`
	Directory string `yaml:"directory" json:"directory,omitempty"`
	Apps      []App  `yaml:"apps" json:"apps,omitempty"`
	// StartupScript runs once each time the agent starts, with the user's
	// shell (`$SHELL -c`) in the workspace directory; long-running
	// services it starts must go to the background (nohup ... &). Its
	// output is the startup log on the workspace page.
	StartupScript string `yaml:"startup_script" json:"startup_script,omitempty"`
}

// App is a workspace app served by an agent on its localhost.
type App struct {
	Slug        string       `yaml:"slug" json:"slug"`
	DisplayName string       `yaml:"display_name" json:"display_name"`
	URL         string       `yaml:"url" json:"url"`
	Subdomain   bool         `yaml:"subdomain" json:"subdomain"`
	Share       string       `yaml:"share" json:"share"`
	Icon        string       `yaml:"icon" json:"icon,omitempty"`
	Healthcheck *Healthcheck `yaml:"healthcheck" json:"healthcheck,omitempty"`
	// IdentityHeaders: the app receives its visitor's identity in
	// Coder-User-Id, Coder-Username and Coder-User-Email headers. Only for
	// subdomain apps that are not public.
	IdentityHeaders bool `yaml:"identity_headers" json:"identity_headers,omitempty"`
	// Socket, when set, is the file name of a unix socket in the agent's
	// app socket directory ($CODER_APP_SOCKET_DIR, private to the
	// workspace's OS user) where the app listens instead of a TCP port:
	// the agent forwards connections to url's port to it, so that other
	// OS users of the machine cannot reach the app.
	Socket string `yaml:"socket" json:"socket,omitempty"`
}

// Healthcheck of an app: the agent polls URL (on its localhost) every
// Interval seconds (zero means 5) and marks the app unhealthy after
// Threshold consecutive failures (zero means 3). A response below 500 is a
// success, as in Coder.
type Healthcheck struct {
	URL       string `yaml:"url" json:"url"`
	Interval  int    `yaml:"interval" json:"interval"`
	Threshold int    `yaml:"threshold" json:"threshold"`
}

// TemplateError is a problem in a template file, with the line it is on
// (0 when it is not tied to a line).
type TemplateError struct {
	Line int
	Msg  string
}

func (e *TemplateError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ParseTemplate parses and validates a template file. Errors are
// *TemplateError values naming the line.
func ParseTemplate(src []byte) (*Template, error) {
	if len(src) > MaxTemplateSize {
		return nil, &TemplateError{Msg: fmt.Sprintf("template is %d bytes; the limit is %d", len(src), MaxTemplateSize)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, yamlError(err)
	}
	if len(root.Content) == 0 {
		return nil, &TemplateError{Msg: "template is empty"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var t Template
	if err := dec.Decode(&t); err != nil {
		return nil, yamlError(err)
	}
	if err := t.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return &t, nil
}

func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(te.Errors[0])
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		return &TemplateError{Line: line, Msg: m[2]}
	}
	return &TemplateError{Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// lineOf finds the line of the mapping value at path (keys and sequence
// indexes) in doc, or the closest parent's.
func lineOf(doc *yaml.Node, path ...any) int {
	n := doc
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						if next.Kind == yaml.ScalarNode {
							next = n.Content[i]
						}
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			return line
		}
		n = next
		line = n.Line
	}
	return line
}

func (t *Template) validate(doc *yaml.Node) error {
	bad := func(msg string, path ...any) error {
		return &TemplateError{Line: lineOf(doc, path...), Msg: msg}
	}
	switch t.Provisioner {
	case "":
		t.Provisioner = ProvisionerLocal
	case ProvisionerLocal, ProvisionerManual:
	default:
		return bad(fmt.Sprintf("provisioner %q is not one of local, manual", t.Provisioner), "provisioner")
	}
	if t.AgentURL != "" {
		u, err := url.Parse(t.AgentURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(fmt.Sprintf("agent_url %q must be an http or https URL", t.AgentURL), "agent_url")
		}
		if err := checkPort(u); err != nil {
			return bad(fmt.Sprintf("agent_url %q: %v", t.AgentURL, err), "agent_url")
		}
	}
	if len(t.Agents) == 0 {
		return bad("a template needs at least one agent under agents:", "agents")
	}
	agentNames := map[string]bool{}
	for i := range t.Agents {
		a := &t.Agents[i]
		if err := ValidateName(a.Name); err != nil {
			return bad(fmt.Sprintf("agent name: %v", err), "agents", i, "name")
		}
		if agentNames[a.Name] {
			return bad(fmt.Sprintf("agent name %q is used twice", a.Name), "agents", i, "name")
		}
		agentNames[a.Name] = true
		if err := checkStartupScript(a.StartupScript); err != nil {
			return bad(fmt.Sprintf("agent %q: %v", a.Name, err), "agents", i, "startup_script")
		}
		slugs := map[string]bool{}
		for j := range a.Apps {
			app := &a.Apps[j]
			at := func(field string) []any { return []any{"agents", i, "apps", j, field} }
			if err := ValidateName(app.Slug); err != nil {
				return bad(fmt.Sprintf("app slug: %v", err), at("slug")...)
			}
			if slugs[app.Slug] {
				return bad(fmt.Sprintf("app slug %q is used twice in agent %q", app.Slug, a.Name), at("slug")...)
			}
			slugs[app.Slug] = true
			if app.DisplayName == "" {
				app.DisplayName = app.Slug
			}
			if err := checkAppURLVars(app.URL); err != nil {
				return bad(fmt.Sprintf("app %q: url %q: %v", app.Slug, app.URL, err), at("url")...)
			}
			u, err := url.Parse(ExpandAppURL(app.URL, "owner", "workspace", "agent"))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad(fmt.Sprintf("app %q: url %q must be an http URL on the agent, like http://localhost:8080", app.Slug, app.URL), at("url")...)
			}
			if err := checkPort(u); err != nil {
				return bad(fmt.Sprintf("app %q: url %q: %v", app.Slug, app.URL, err), at("url")...)
			}
			if err := checkSocket(a.Apps[:j], app, u); err != nil {
				return bad(fmt.Sprintf("app %q: %v", app.Slug, err), at("socket")...)
			}
			switch app.Share {
			case "":
				app.Share = ShareOwner
			case ShareOwner, ShareAuthenticated, SharePublic:
			default:
				return bad(fmt.Sprintf("app %q: share %q is not one of owner, authenticated, public", app.Slug, app.Share), at("share")...)
			}
			if app.IdentityHeaders && (!app.Subdomain || app.Share == SharePublic) {
				return bad(fmt.Sprintf("app %q: identity_headers needs subdomain: true and share owner or authenticated (a public app never learns who visits)", app.Slug), at("identity_headers")...)
			}
			if h := app.Healthcheck; h != nil {
				hu, err := url.Parse(h.URL)
				if err != nil || (hu.Scheme != "http" && hu.Scheme != "https") || hu.Host == "" {
					return bad(fmt.Sprintf("app %q: healthcheck url %q must be an http URL on the agent, like http://localhost:8080/healthz", app.Slug, h.URL), at("healthcheck")...)
				}
				if err := checkPort(hu); err != nil {
					return bad(fmt.Sprintf("app %q: healthcheck url %q: %v", app.Slug, h.URL, err), at("healthcheck")...)
				}
				if h.Interval < 0 || h.Interval > MaxHealthcheckInterval {
					return bad(fmt.Sprintf("app %q: healthcheck interval %d must be 1 to %d seconds", app.Slug, h.Interval, MaxHealthcheckInterval), at("healthcheck")...)
				}
				if h.Threshold < 0 || h.Threshold > MaxHealthcheckThreshold {
					return bad(fmt.Sprintf("app %q: healthcheck threshold %d must be 1 to %d failures", app.Slug, h.Threshold, MaxHealthcheckThreshold), at("healthcheck")...)
				}
				if h.Interval == 0 {
					h.Interval = 5
				}
				if h.Threshold == 0 {
					h.Threshold = 3
				}
			}
		}
	}
	return nil
}

// checkPort checks that u's port, if it names one, is a TCP port
// (1 to 65535).
func checkPort(u *url.URL) error {
	p := u.Port()
	if p == "" {
		if strings.HasSuffix(u.Host, ":") {
			return errors.New("the port after \":\" is empty")
		}
		return nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is not a TCP port (1 to 65535)", p)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateName checks that name is DNS-safe: lowercase letters, digits and
// inner hyphens, at most 32 characters, without "--" (which separates the
// parts of app subdomains).
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > 32:
		return fmt.Errorf("%q is longer than 32 characters", name)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%q must be lowercase letters, digits and hyphens, starting and ending with a letter or digit", name)
	case strings.Contains(name, "--"):
		return fmt.Errorf("%q must not contain \"--\"", name)
	}
	return nil
}
