package handlers

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/static"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
	"github.com/gatewaydev/coder/web"
)

// render writes a component after rendering it into a buffer, so that a
// rendering error can still become an error page.
func render(w http.ResponseWriter, r *http.Request, code int, c templ.Component) error {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		return fmt.Errorf("render page: %w", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
	return nil
}

func (a *API) nav(r *http.Request, active string) web.Nav {
	if a.onAppHost(r) {
		// An error page on an app's host: the dashboard's look, from the
		// dashboard's address; no script, no user.
		base := strings.TrimSuffix(a.opts.AccessURL.String(), "/")
		return web.Nav{Base: base, StylePath: base + static.Path("app-style.css")}
	}
	n := web.Nav{Active: active, StylePath: static.Path("app-style.css"), ScriptPath: static.Path("app.js")}
	if u, ok := r.Context().Value(userKey).(store.User); ok {
		n.Username, n.IsOwner = u.Username, u.Role == store.RoleOwner
	}
	return n
}

func (a *API) renderErrorPage(w http.ResponseWriter, r *http.Request, he *HTTPError) {
	title := http.StatusText(he.Code)
	msg := he.Msg
	for _, v := range he.Validations {
		msg += " " + v.Field + ": " + v.Detail + "."
	}
	if err := render(w, r, he.Code, web.Error(web.ErrorPage{Nav: a.nav(r, ""), Code: he.Code, Title: title, Message: msg})); err != nil {
		http.Error(w, he.Msg, he.Code)
	}
}

// safeRedirect keeps only same-site relative paths, so that a login link
// cannot send the user elsewhere.
func safeRedirect(s string) string {
	if s == "" || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/workspaces"
	}
	if u, err := url.Parse(s); err != nil || u.Host != "" || u.Scheme != "" {
		return "/workspaces"
	}
	return s
}

func (a *API) serveIndex(w http.ResponseWriter, r *http.Request) error {
	n, err := a.db.CountUsers(r.Context())
	if err != nil {
		return err
	}
	target := "/workspaces"
	if n == 0 {
		target = "/setup"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

func (a *API) serveSetupPage(w http.ResponseWriter, r *http.Request) error {
	n, err := a.db.CountUsers(r.Context())
	if err != nil {
		return err
	}
	if n > 0 {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil
	}
	return render(w, r, http.StatusOK, web.SetupPage(a.nav(r, ""), web.AuthForm{}))
}

// formErrors spreads an HTTPError's validations over the form's fields.
func formErrors(err error, f *web.AuthForm) bool {
	var he *HTTPError
	if !errors.As(err, &he) || he.Code >= 500 {
		return false
	}
	f.Error = he.Msg
	for _, v := range he.Validations {
		switch v.Field {
		case "username", "name":
			f.Username.Error = v.Detail
		case "email":
			f.Email.Error = v.Detail
		case "password":
			f.Password.Error = v.Detail
		}
	}
	return true
}

func (a *API) serveSetupForm(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(w, r); err != nil {
		return err
	}
	req := sdk.CreateFirstUserRequest{Username: r.PostFormValue("username"), Email: r.PostFormValue("email"), Password: r.PostFormValue("password")}
	u, err := a.createFirstUser(r, req)
	if err != nil {
		f := web.AuthForm{Username: web.Field{Value: req.Username}, Email: web.Field{Value: req.Email}}
		if !formErrors(err, &f) {
			return err
		}
		return render(w, r, http.StatusBadRequest, web.SetupPage(a.nav(r, ""), f))
	}
	if err := a.startBrowserSession(r, u); err != nil {
		return err
	}
	http.Redirect(w, r, "/workspaces", http.StatusSeeOther)
	return nil
}

func (a *API) startBrowserSession(r *http.Request, u store.User) error {
	// A new token on login prevents session fixation.
	if err := a.sessions.RenewToken(r.Context()); err != nil {
		return err
	}
	a.sessions.Put(r.Context(), sessionUserKey, u.ID)
	return nil
}

func (a *API) serveLoginPage(w http.ResponseWriter, r *http.Request) error {
	if _, _, ok, _ := a.authenticate(r); ok {
		http.Redirect(w, r, safeRedirect(r.URL.Query().Get("redirect")), http.StatusSeeOther)
		return nil
	}
	n, err := a.db.CountUsers(r.Context())
	if err != nil {
		return err
	}
	if n == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return nil
	}
	return render(w, r, http.StatusOK, web.LoginPage(a.nav(r, ""), web.AuthForm{Redirect: r.URL.Query().Get("redirect")}))
}

func (a *API) serveLoginForm(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(w, r); err != nil {
		return err
	}
	login, redirect := r.PostFormValue("login"), r.PostFormValue("redirect")
	u, err := a.checkLogin(r, login, r.PostFormValue("password"))
	if err != nil {
		var he *HTTPError
		if !errors.As(err, &he) || he.Code >= 500 {
			return err
		}
		f := web.AuthForm{Error: he.Msg, Username: web.Field{Value: login}, Redirect: redirect}
		return render(w, r, he.Code, web.LoginPage(a.nav(r, ""), f))
	}
	if err := a.startBrowserSession(r, u); err != nil {
		return err
	}
	http.Redirect(w, r, safeRedirect(redirect), http.StatusSeeOther)
	return nil
}

func (a *API) serveLogoutForm(w http.ResponseWriter, r *http.Request) error {
	// Logging out ends the user's app sessions (subdomain apps) too.
	if id := a.sessions.GetString(r.Context(), sessionUserKey); id != "" {
		if err := a.db.BumpAppSessionGeneration(r.Context(), id); err != nil {
			return err
		}
		a.appAuthz.forgetUser(id)
	}
	if err := a.sessions.Destroy(r.Context()); err != nil {
		return err
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// cliAuthCSRFKey is the session key of the /cli-auth form's token.
const cliAuthCSRFKey = "cli_auth_csrf"

// topLevelOnly refuses a request for a page that shows a secret unless the
// browser says it is a top-level navigation. Fetch Metadata tells a page
// that a script fetched, or that a frame loads, from a page opened in the
// address bar; a script of a path app (on the dashboard's origin) could
// read the former two. Browsers send these headers over HTTPS and to
// localhost only; without them (plain HTTP, the CLI) the request passes,
// and owner-only path apps are what keeps other users' scripts off the
// page.
func topLevelOnly(r *http.Request) error {
	dest, mode := r.Header.Get("Sec-Fetch-Dest"), r.Header.Get("Sec-Fetch-Mode")
	if (dest == "" || dest == "document") && (mode == "" || mode == "navigate") {
		return nil
	}
	return &HTTPError{Code: http.StatusForbidden, Msg: "This page shows a secret, so it opens only on its own: type its address into the browser's address bar."}
}

// serveCLIAuthPage shows the form that creates a token for `coder login`.
// A GET creates nothing: the key is made by the form's POST, which carries
// a token bound to the session.
func (a *API) serveCLIAuthPage(w http.ResponseWriter, r *http.Request) error {
	if err := topLevelOnly(r); err != nil {
		return err
	}
	csrf := randomString(32)
	a.sessions.Put(r.Context(), cliAuthCSRFKey, csrf)
	return render(w, r, http.StatusOK, web.CLIAuth(web.CLIAuthPage{Nav: a.nav(r, ""), CSRF: csrf}))
}

// serveCLIAuthForm creates a session token for `coder login` and shows it
// once. The form's token is used up.
func (a *API) serveCLIAuthForm(w http.ResponseWriter, r *http.Request) error {
	if err := topLevelOnly(r); err != nil {
		return err
	}
	want := a.sessions.PopString(r.Context(), cliAuthCSRFKey)
	got := r.PostFormValue("csrf")
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return &HTTPError{Code: http.StatusForbidden, Msg: "This form has expired. Open /cli-auth again and create the token from there."}
	}
	tok, err := a.newAPIKey(r.Context(), userFrom(r).ID, "cli", "cli-auth")
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, web.CLIAuth(web.CLIAuthPage{Nav: a.nav(r, ""), Token: tok}))
}

func workspacePath(owner, name string) string {
	return "/@" + url.PathEscape(owner) + "/" + url.PathEscape(name)
}

func (a *API) serveWorkspacesPage(w http.ResponseWriter, r *http.Request) error {
	p, err := a.workspacesPage(r)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, web.Workspaces(p))
}

func (a *API) workspacesPage(r *http.Request) (web.WorkspacesPage, error) {
	u := userFrom(r)
	owner := u.ID
	if u.Role == store.RoleOwner {
		owner = ""
	}
	ws, err := a.db.ListWorkspaces(r.Context(), owner)
	if err != nil {
		return web.WorkspacesPage{}, err
	}
	p := web.WorkspacesPage{Nav: a.nav(r, "workspaces")}
	for _, wk := range ws {
		v, err := a.workspaceView(r.Context(), wk)
		if err != nil {
			return p, err
		}
		row := web.WorkspaceRow{Name: wk.Name, Owner: wk.OwnerName, Template: wk.TemplateName, Status: v.Status,
			Agents: len(v.Agents), URL: workspacePath(wk.OwnerName, wk.Name), Updated: wk.UpdatedAt}
		for _, ag := range v.Agents {
			if ag.Status == sdk.AgentConnected {
				row.Connected++
			}
		}
		p.Workspaces = append(p.Workspaces, row)
	}
	ts, _, err := a.db.ListTemplates(r.Context())
	if err != nil {
		return p, err
	}
	for _, t := range ts {
		p.Templates = append(p.Templates, t.Name)
	}
	return p, nil
}

// serveCreateWorkspaceForm creates a workspace and shows its page, which
// for a manual workspace holds the agents' tokens: like /cli-auth, it
// answers top-level navigations only.
func (a *API) serveCreateWorkspaceForm(w http.ResponseWriter, r *http.Request) error {
	if err := topLevelOnly(r); err != nil {
		return err
	}
	if err := readForm(w, r); err != nil {
		return err
	}
	req := sdk.CreateWorkspaceRequest{Name: r.PostFormValue("name"), Template: r.PostFormValue("template")}
	v, err := a.createWorkspace(r, req)
	if err != nil {
		var he *HTTPError
		if !errors.As(err, &he) || he.Code >= 500 {
			return err
		}
		p, perr := a.workspacesPage(r)
		if perr != nil {
			return perr
		}
		p.Form.Name = web.Field{Value: req.Name}
		p.Form.Template = req.Template
		p.Form.Error = he.Msg
		for _, val := range he.Validations {
			if val.Field == "name" {
				p.Form.Name.Error = val.Detail
			}
		}
		return render(w, r, he.Code, web.Workspaces(p))
	}
	if v.Provisioner == sdk.ProvisionerManual {
		// The tokens are shown once, on this response.
		p, err := a.workspacePage(r, v)
		if err != nil {
			return err
		}
		p.Notice = "This workspace's agents are started by hand. Copy the command below now: its token is not shown again."
		return render(w, r, http.StatusCreated, web.Workspace(p))
	}
	http.Redirect(w, r, workspacePath(v.OwnerName, v.Name), http.StatusSeeOther)
	return nil
}

// workspacePage converts a workspace view into the page's view model.
func (a *API) workspacePage(r *http.Request, v sdk.Workspace) (web.WorkspacePage, error) {
	base := workspacePath(v.OwnerName, v.Name)
	p := web.WorkspacePage{
		Nav: a.nav(r, "workspaces"), Owner: v.OwnerName, Name: v.Name, Template: v.TemplateName,
		Provisioner: v.Provisioner, Status: v.Status, DesiredState: v.DesiredState, BasePath: base,
	}
	if !a.opts.BrowserOnly {
		p.SSHHost = "coder." + v.Name
	}
	reports, err := a.db.AgentReportsByWorkspace(r.Context(), v.ID)
	if err != nil {
		return p, err
	}
	shares, err := a.db.ListPortShares(r.Context(), v.ID)
	if err != nil {
		return p, err
	}
	for _, ag := range v.Agents {
		va := web.Agent{
			ID: ag.ID, Name: ag.Name, Status: ag.Status, OS: ag.OS, Arch: ag.Arch, Version: ag.Version,
			Hostname: ag.Hostname, LastSeen: "never",
			TerminalURL: base + "." + url.PathEscape(ag.Name) + "/terminal",
		}
		if ag.LastConnected != nil {
			va.LastSeen = web.Since(*ag.LastConnected)
		}
		if ag.Status == sdk.AgentConnected {
			va.Connection, va.PreferredDERP = a.describePath(ag.ID)
		}
		if !a.opts.BrowserOnly {
			target := v.Name
			if len(v.Agents) > 1 {
				target += "." + ag.Name
			}
			if u := userFrom(r); u.Username != v.OwnerName {
				target = v.OwnerName + "/" + target
			}
			va.SSHCommand = "coder ssh " + target
		}
		for _, app := range ag.Apps {
			av := a.appLink(base+"."+url.PathEscape(ag.Name),
				apps.AppHost{Slug: app.Slug, Agent: ag.Name, Workspace: v.Name, User: v.OwnerName}, app)
			if app.Healthcheck != nil && ag.Status == sdk.AgentConnected {
				av.Health = reports[ag.ID].Health[app.Slug]
			}
			av.Off = appOff(v.DesiredState, ag.Status, av.Health)
			va.Apps = append(va.Apps, av)
		}
		va.Ports = a.portsView(userFrom(r), v, ag, reports[ag.ID], shares, base+"."+url.PathEscape(ag.Name))
		st, err := a.startupView(r.Context(), ag)
		if err != nil {
			return web.WorkspacePage{}, err
		}
		va.Startup = st
		if v.Provisioner == sdk.ProvisionerManual {
			tok := ag.Token
			if tok == "" {
				tok = "<token>"
			}
			va.ManualCommand = fmt.Sprintf("CODER_AGENT_URL=%s CODER_AGENT_TOKEN=%s coder agent", a.opts.AccessURL, tok)
		}
		p.Agents = append(p.Agents, va)
	}
	return p, nil
}

func (a *API) loadWorkspacePage(r *http.Request) (web.WorkspacePage, error) {
	name := r.PathValue("workspace")
	wk, err := a.workspaceByOwnerAndName(r, r.PathValue("user"), name)
	if err != nil {
		return web.WorkspacePage{}, err
	}
	v, err := a.workspaceView(r.Context(), wk)
	if err != nil {
		return web.WorkspacePage{}, err
	}
	return a.workspacePage(r, v)
}

func (a *API) serveWorkspacePage(w http.ResponseWriter, r *http.Request) error {
	p, err := a.loadWorkspacePage(r)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, web.Workspace(p))
}

func (a *API) serveWorkspaceAction(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByOwnerAndName(r, r.PathValue("user"), r.PathValue("workspace"))
	if err != nil {
		return err
	}
	action := r.PathValue("action")
	if err := a.transition(r.Context(), wk, action); err != nil {
		return err
	}
	if action == "delete" {
		http.Redirect(w, r, "/workspaces", http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, workspacePath(wk.OwnerName, wk.Name), http.StatusSeeOther)
	return nil
}

// serveWorkspaceEvents streams the agent list of a workspace as
// server-sent events: one "agents" event with the rendered HTML whenever
// it changes, checked on every wake and every second (so that an agent
// that went silent turns disconnected without a wake).
func (a *API) serveWorkspaceEvents(w http.ResponseWriter, r *http.Request) error {
	wk, err := a.workspaceByOwnerAndName(r, r.PathValue("user"), r.PathValue("workspace"))
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	wake, unsubscribe := a.events.subscribe(wk.ID)
	defer unsubscribe()
	tick := time.NewTicker(a.opts.StatusPollInterval)
	defer tick.Stop()
	var last string
	ctx := r.Context()
	for {
		html, err := a.renderAgents(ctx, r, wk.ID)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprint(w, "event: deleted\ndata: {}\n\n")
			rc.Flush()
			return nil
		}
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Warn("render agents event", "err", err)
			}
			return nil
		}
		if html != last {
			last = html
			fmt.Fprint(w, "event: agents\n")
			for _, line := range strings.Split(html, "\n") {
				fmt.Fprintf(w, "data: %s\n", line)
			}
			fmt.Fprint(w, "\n")
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.ctx.Done():
			return nil
		case <-a.draining:
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

func (a *API) renderAgents(ctx context.Context, r *http.Request, workspaceID string) (string, error) {
	wk, err := a.db.WorkspaceByID(ctx, workspaceID)
	if err != nil {
		return "", err
	}
	v, err := a.workspaceView(ctx, wk)
	if err != nil {
		return "", err
	}
	p, err := a.workspacePage(r, v)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := web.AgentList(p).Render(ctx, &buf); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func (a *API) usersPage(r *http.Request) (web.UsersPage, error) {
	us, err := a.db.ListUsers(r.Context())
	if err != nil {
		return web.UsersPage{}, err
	}
	p := web.UsersPage{Nav: a.nav(r, "users")}
	me := userFrom(r).ID
	for _, u := range us {
		p.Users = append(p.Users, web.UserRow{ID: u.ID, Username: u.Username, Email: u.Email, Role: u.Role, Created: u.CreatedAt, IsSelf: u.ID == me})
	}
	return p, nil
}

func (a *API) serveUsersPage(w http.ResponseWriter, r *http.Request) error {
	p, err := a.usersPage(r)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, web.Users(p))
}

func (a *API) serveCreateUserForm(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(w, r); err != nil {
		return err
	}
	req := sdk.CreateUserRequest{Username: r.PostFormValue("username"), Email: r.PostFormValue("email"),
		Password: r.PostFormValue("password"), Role: r.PostFormValue("role")}
	if _, err := a.createUser(r, req); err != nil {
		p, perr := a.usersPage(r)
		if perr != nil {
			return perr
		}
		p.Form = web.AuthForm{Username: web.Field{Value: req.Username}, Email: web.Field{Value: req.Email}}
		p.Role = req.Role
		if !formErrors(err, &p.Form) {
			return err
		}
		return render(w, r, http.StatusBadRequest, web.Users(p))
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
	return nil
}

func (a *API) serveDeleteUserForm(w http.ResponseWriter, r *http.Request) error {
	if err := a.deleteUser(r, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
	return nil
}

func (a *API) serveTemplatesPage(w http.ResponseWriter, r *http.Request) error {
	ts, counts, err := a.db.ListTemplates(r.Context())
	if err != nil {
		return err
	}
	p := web.TemplatesPage{Nav: a.nav(r, "templates")}
	for i, t := range ts {
		info := toTemplateInfo(t, counts[i])
		p.Templates = append(p.Templates, web.TemplateRow{Name: t.Name, DisplayName: t.DisplayName, Description: t.Description,
			Provisioner: info.Provisioner, Agents: info.Agents, Workspaces: info.Workspaces, Updated: t.UpdatedAt, Source: t.Source})
	}
	return render(w, r, http.StatusOK, web.Templates(p))
}

// pathAppsSetting says who path apps open for.
func pathAppsSetting(o Options) string {
	switch {
	case o.DisablePathApps:
		return "off"
	case o.DangerousAllowPathAppSharing:
		return "shared as each template says (dangerous)"
	default:
		return "workspace owner only"
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (a *API) serveDeploymentPage(w http.ResponseWriter, r *http.Request) error {
	o := a.opts
	db := "external (--postgres-url)"
	if o.BuiltinDB {
		db = "built-in PostgreSQL"
	}
	wildcard := o.WildcardAccessURL
	if wildcard == "" {
		wildcard = "not set: subdomain apps are off"
	}
	p := web.DeploymentPage{Nav: a.nav(r, "deployment"), Settings: []web.Setting{
		{Name: "Version", Value: o.Version},
		{Name: "Access URL", Value: o.AccessURL.String(), Help: "--access-url / CODER_ACCESS_URL"},
		{Name: "Wildcard access URL", Value: wildcard, Help: "--wildcard-access-url / CODER_WILDCARD_ACCESS_URL"},
		{Name: "TLS", Value: onOff(o.TLS), Help: "--tls-enable / CODER_TLS_ENABLE"},
		{Name: "Database", Value: db},
		{Name: "Browser-only", Value: onOff(o.BrowserOnly), Help: "--browser-only / CODER_BROWSER_ONLY: when on, SSH and CLI tunnels are refused."},
		{Name: "Path apps", Value: pathAppsSetting(o), Help: "--disable-path-apps / CODER_DISABLE_PATH_APPS, --dangerous-allow-path-app-sharing / CODER_DANGEROUS_ALLOW_PATH_APP_SHARING"},
		{Name: "Path apps of other users for site owners", Value: onOff(o.DangerousAllowPathAppSiteOwnerAccess), Help: "--dangerous-allow-path-app-site-owner-access / CODER_DANGEROUS_ALLOW_PATH_APP_SITE_OWNER_ACCESS"},
	}}
	p.Settings = append(p.Settings, a.extraSettings...)
	p.DERPRegions, p.STUN = a.derpRegions()
	if a.tailnet != nil {
		node := "running"
		if down := a.serverNodeDown(true); down != "" {
			node = down
		}
		p.Nodes = append(p.Nodes, web.Setting{Name: "This server's node", Value: node})
		st := a.tailnet.Stats()
		for _, k := range []tailnet.Kind{tailnet.KindServer, tailnet.KindAgent, tailnet.KindClient, tailnet.KindProxy} {
			p.Nodes = append(p.Nodes, web.Setting{Name: string(k), Value: fmt.Sprintf("%d online of %d", st.Online[k], st.Nodes[k])})
		}
		p.Nodes = append(p.Nodes,
			web.Setting{Name: "DERP clients", Value: fmt.Sprint(st.DERPClients)},
			web.Setting{Name: "STUN requests answered", Value: fmt.Sprint(st.STUNRequests)})
	}
	return render(w, r, http.StatusOK, web.Deployment(p))
}
