package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/handlers"
	"github.com/gatewaydev/coder/provision"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/tailnet"
)

// serverOptions are the options of `coder server`.
type serverOptions struct {
	HTTPAddress       stringValue
	AccessURL         urlValue
	WildcardAccessURL stringValue
	TLSEnable         boolValue
	TLSAddress        stringValue
	TLSCertFile       stringValue
	TLSKeyFile        stringValue
	PostgresURL       stringValue
	ConfigDir         stringValue
	PrometheusEnable  boolValue
	PrometheusAddress stringValue
	BrowserOnly       boolValue
	Verbose           boolValue

	StopLocalAgentsOnExit boolValue

	DERPServerEnable        boolValue
	DERPServerRegionID      intValue
	DERPServerRegionCode    stringValue
	DERPServerRegionName    stringValue
	DERPServerSTUNAddresses stringValue
	DERPConfigURL           stringValue
	DERPConfigPath          stringValue
	DERPForceWebsockets     boolValue
	BlockDirect             boolValue
	TailnetTCPBuffer        sizeValue
	PprofEnable             boolValue
	PprofAddress            stringValue

	DisablePathApps                      boolValue
	DangerousAllowPathAppSharing         boolValue
	DangerousAllowPathAppSiteOwnerAccess boolValue
}

func (o *serverOptions) table() optionSet {
	return optionSet{
		{Flag: "http-address", Env: "CODER_HTTP_ADDRESS", Default: "127.0.0.1:3000", Value: &o.HTTPAddress,
			Description: "HTTP bind address of the server. Empty disables plain HTTP (with --tls-enable)."},
		{Flag: "access-url", Env: "CODER_ACCESS_URL", Value: &o.AccessURL,
			Description: "The URL that users and agents use to reach this server. Defaults to the HTTP (or TLS) address."},
		{Flag: "wildcard-access-url", Env: "CODER_WILDCARD_ACCESS_URL", Value: &o.WildcardAccessURL,
			Description: `Wildcard host for subdomain apps and port URLs, like "*.apps.example.com", "*--apps.example.com" or "*.localhost:3000".`},
		{Flag: "tls-enable", Env: "CODER_TLS_ENABLE", Value: &o.TLSEnable,
			Description: "Serve HTTPS on --tls-address with --tls-cert-file and --tls-key-file."},
		{Flag: "tls-address", Env: "CODER_TLS_ADDRESS", Default: "127.0.0.1:3443", Value: &o.TLSAddress,
			Description: "HTTPS bind address of the server."},
		{Flag: "tls-cert-file", Env: "CODER_TLS_CERT_FILE", Value: &o.TLSCertFile,
			Description: "PEM certificate (chain) for TLS."},
		{Flag: "tls-key-file", Env: "CODER_TLS_KEY_FILE", Value: &o.TLSKeyFile,
			Description: "PEM private key for TLS."},
		{Flag: "postgres-url", Env: "CODER_PG_CONNECTION_URL", Value: &o.PostgresURL, Secret: true,
			Description: "URL of an external PostgreSQL database. Empty starts a built-in PostgreSQL under --config-dir."},
		{Flag: "config-dir", Env: "CODER_CONFIG_DIR", Default: defaultConfigDir(), Value: &o.ConfigDir,
			Description: "Directory for the server's state: the built-in database and local workspaces."},
		{Flag: "prometheus-enable", Env: "CODER_PROMETHEUS_ENABLE", Value: &o.PrometheusEnable,
			Description: "Serve Prometheus metrics on --prometheus-address."},
		{Flag: "prometheus-address", Env: "CODER_PROMETHEUS_ADDRESS", Default: "127.0.0.1:2112", Value: &o.PrometheusAddress,
			Description: "Bind address of the Prometheus metrics endpoint."},
		{Flag: "pprof-enable", Env: "CODER_PPROF_ENABLE", Value: &o.PprofEnable,
			Description: "Serve Go's profiling endpoints (/debug/pprof/) on --pprof-address."},
		{Flag: "pprof-address", Env: "CODER_PPROF_ADDRESS", Default: "127.0.0.1:6060", Value: &o.PprofAddress,
			Description: "Bind address of the profiling endpoints."},
		{Flag: "browser-only", Env: "CODER_BROWSER_ONLY", Value: &o.BrowserOnly,
			Description: "Allow only browser connections to workspaces (web terminal and apps); refuse SSH and CLI tunnels."},
		{Flag: "disable-path-apps", Env: "CODER_DISABLE_PATH_APPS", Value: &o.DisablePathApps,
			Description: "Serve no path-based apps (/@user/workspace.agent/apps/slug/); subdomain apps still work."},
		{Flag: "dangerous-allow-path-app-sharing", Env: "CODER_DANGEROUS_ALLOW_PATH_APP_SHARING", Value: &o.DangerousAllowPathAppSharing,
			Description: "Let path apps be shared as their template says (authenticated, public). Dangerous: a path app runs on the dashboard's origin, so its scripts act as whoever opens it."},
		{Flag: "dangerous-allow-path-app-site-owner-access", Env: "CODER_DANGEROUS_ALLOW_PATH_APP_SITE_OWNER_ACCESS", Value: &o.DangerousAllowPathAppSiteOwnerAccess,
			Description: "Let site owners open other users' path apps. Dangerous: the app's scripts act as the site owner."},
		{Flag: "stop-local-agents-on-exit", Env: "CODER_STOP_LOCAL_AGENTS_ON_EXIT", Value: &o.StopLocalAgentsOnExit,
			Description: "Stop the agents of local workspaces when the server exits. Off, they keep running (and their terminals open) and the next server on the same --config-dir takes them over."},
		{Flag: "verbose", Short: "v", Env: "CODER_VERBOSE", Value: &o.Verbose,
			Description: "Log debug messages."},
		{Flag: "derp-server-enable", Env: "CODER_DERP_SERVER_ENABLE", Default: "true", Value: &o.DERPServerEnable,
			Description: "Run the embedded DERP relay at /derp. Off needs regions from --derp-config-url or --derp-config-path."},
		{Flag: "derp-server-region-id", Env: "CODER_DERP_SERVER_REGION_ID", Default: "999", Value: &o.DERPServerRegionID,
			Description: "Region id of the embedded relay."},
		{Flag: "derp-server-region-code", Env: "CODER_DERP_SERVER_REGION_CODE", Default: "coder", Value: &o.DERPServerRegionCode,
			Description: "Region code of the embedded relay."},
		{Flag: "derp-server-region-name", Env: "CODER_DERP_SERVER_REGION_NAME", Default: "Coder Embedded Relay", Value: &o.DERPServerRegionName,
			Description: "Region name of the embedded relay."},
		{Flag: "derp-server-stun-addresses", Env: "CODER_DERP_SERVER_STUN_ADDRESSES", Default: "0.0.0.0:3478", Value: &o.DERPServerSTUNAddresses,
			Description: `UDP addresses of the embedded STUN server, comma-separated; "disable" turns STUN off.`},
		{Flag: "derp-config-url", Env: "CODER_DERP_CONFIG_URL", Value: &o.DERPConfigURL,
			Description: "URL of a DERP map JSON whose regions add to (or replace, by id) the embedded one."},
		{Flag: "derp-config-path", Env: "CODER_DERP_CONFIG_PATH", Value: &o.DERPConfigPath,
			Description: "Path of a DERP map JSON whose regions add to (or replace, by id) the embedded one."},
		{Flag: "derp-force-websockets", Env: "CODER_DERP_FORCE_WEBSOCKETS", Value: &o.DERPForceWebsockets,
			Description: "Make clients reach DERP over websockets (for proxies that break the DERP upgrade)."},
		{Flag: "block-direct-connections", Env: "CODER_BLOCK_DIRECT", Value: &o.BlockDirect,
			Description: "Relay every connection through DERP, even where a direct one would work."},
		{Flag: "tailnet-tcp-buffer", Env: "CODER_TAILNET_TCP_BUFFER", Default: "2MiB", Value: &o.TailnetTCPBuffer,
			Description: "Memory budget of each tailnet TCP connection of the server's own node (its receive and send buffers each; 0 keeps tailscale's 8 MiB)."},
	}
}

func newServerCmd() *cobra.Command {
	var o serverOptions
	opts := o.table()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Start the Coder server: dashboard, API, tailnet coordination, DERP relay and STUN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			logger := newLogger(cmd.ErrOrStderr(), bool(o.Verbose))
			logger.Info("starting coder server", append([]any{"version", version}, opts.NonDefault()...)...)
			if cmd.Flags().Changed("postgres-url") {
				// /proc/<pid>/cmdline is world-readable: every local account,
				// workspace accounts included, could read the password.
				logger.Warn("--postgres-url on the command line is visible to every user of this machine, local workspaces included: set CODER_PG_CONNECTION_URL instead")
			}
			return runServer(cmd.Context(), &o, logger, cmd.OutOrStdout())
		},
	}
	opts.Register(cmd)
	return cmd
}

func checkHostPort(flag, env, v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return fmt.Errorf("invalid value %q for --%s / $%s: must be host:port, like 127.0.0.1:3000", v, flag, env)
	}
	return nil
}

func (o *serverOptions) validate() error {
	if o.HTTPAddress != "" {
		if err := checkHostPort("http-address", "CODER_HTTP_ADDRESS", string(o.HTTPAddress)); err != nil {
			return err
		}
	}
	if o.TLSEnable {
		if err := checkHostPort("tls-address", "CODER_TLS_ADDRESS", string(o.TLSAddress)); err != nil {
			return err
		}
		if o.TLSCertFile == "" || o.TLSKeyFile == "" {
			return errors.New("--tls-enable needs --tls-cert-file ($CODER_TLS_CERT_FILE) and --tls-key-file ($CODER_TLS_KEY_FILE)")
		}
	} else if o.HTTPAddress == "" {
		return errors.New("--http-address ($CODER_HTTP_ADDRESS) is empty and TLS is off: the server would listen nowhere")
	}
	if o.PrometheusEnable {
		if err := checkHostPort("prometheus-address", "CODER_PROMETHEUS_ADDRESS", string(o.PrometheusAddress)); err != nil {
			return err
		}
	}
	if w := string(o.WildcardAccessURL); w != "" {
		if _, err := apps.ParseWildcard(w); err != nil {
			return fmt.Errorf("invalid value %q for --wildcard-access-url / $CODER_WILDCARD_ACCESS_URL: %w", w, err)
		}
	}
	if o.ConfigDir == "" {
		return errors.New("--config-dir ($CODER_CONFIG_DIR) must not be empty")
	}
	if o.DERPConfigURL != "" && o.DERPConfigPath != "" {
		return errors.New("--derp-config-url ($CODER_DERP_CONFIG_URL) and --derp-config-path ($CODER_DERP_CONFIG_PATH) are exclusive: set one")
	}
	if !o.DERPServerEnable && o.DERPConfigURL == "" && o.DERPConfigPath == "" {
		return errors.New("--derp-server-enable=false ($CODER_DERP_SERVER_ENABLE) needs DERP regions from --derp-config-url or --derp-config-path")
	}
	if id := int(o.DERPServerRegionID); id <= 0 || id > 1<<20 {
		return fmt.Errorf("invalid value %d for --derp-server-region-id / $CODER_DERP_SERVER_REGION_ID: must be between 1 and %d", id, 1<<20)
	}
	for _, a := range o.stunAddrs() {
		if err := checkHostPort("derp-server-stun-addresses", "CODER_DERP_SERVER_STUN_ADDRESSES", a); err != nil {
			return err
		}
	}
	return nil
}

func (o *serverOptions) stunAddrs() []string {
	v := strings.TrimSpace(string(o.DERPServerSTUNAddresses))
	if v == "" || v == "disable" || !o.DERPServerEnable {
		return nil
	}
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// runServer runs the server until ctx ends, then shuts down in order:
// HTTP (graceful, 10 s), agents, API, database.
func runServer(ctx context.Context, o *serverOptions, logger *slog.Logger, stdout interface{ Write([]byte) (int, error) }) error {
	configDir, err := filepath.Abs(string(o.ConfigDir))
	if err != nil {
		return err
	}
	// As root, the built-in PostgreSQL runs as an unprivileged user that
	// must be able to traverse (not list) the config dir to reach its data.
	dirMode := os.FileMode(0o700)
	if os.Geteuid() == 0 {
		dirMode = 0o711
	}
	if err := os.MkdirAll(configDir, dirMode); err != nil {
		return fmt.Errorf("create config dir: %w", err)
	}

	// Listen first, so that the access URL can name the real port.
	var httpLn, tlsLn net.Listener
	if o.HTTPAddress != "" {
		httpLn, err = net.Listen("tcp", string(o.HTTPAddress))
		if err != nil {
			return fmt.Errorf("listen on --http-address %s: %w", o.HTTPAddress, err)
		}
		defer httpLn.Close()
	}
	var tlsConfig *tls.Config
	if o.TLSEnable {
		cert, err := tls.LoadX509KeyPair(string(o.TLSCertFile), string(o.TLSKeyFile))
		if err != nil {
			return fmt.Errorf("load --tls-cert-file and --tls-key-file: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		tlsLn, err = net.Listen("tcp", string(o.TLSAddress))
		if err != nil {
			return fmt.Errorf("listen on --tls-address %s: %w", o.TLSAddress, err)
		}
		defer tlsLn.Close()
	}
	accessURL := o.AccessURL.URL()
	if accessURL == nil {
		accessURL = defaultAccessURL(httpLn, tlsLn)
	}
	// Tailscale's knobs are process-wide: set before the server's own node
	// starts.
	if err := tailnet.ConfigureProcess(tailnet.ProcessOptions{ControlURL: accessURL.String(), DERPForceWebsockets: bool(o.DERPForceWebsockets)}); err != nil {
		return fmt.Errorf("--derp-force-websockets ($CODER_DERP_FORCE_WEBSOCKETS): %w", err)
	}

	pgURL := string(o.PostgresURL)
	builtin := pgURL == ""
	if builtin {
		pg, err := store.StartBuiltin(ctx, store.BuiltinOptions{Dir: filepath.Join(configDir, "postgres"), Logger: logger.With("component", "postgres")})
		if err != nil {
			return err
		}
		defer pg.Close()
		pgURL = pg.URL()
	}
	db, err := store.Open(ctx, pgURL)
	if err != nil {
		if !builtin {
			return fmt.Errorf("%w (check --postgres-url / $CODER_PG_CONNECTION_URL)", err)
		}
		return err
	}
	defer db.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	trims := prometheus.NewCounter(prometheus.CounterOpts{Name: "coder_memory_trims_total",
		Help: "Times the server returned memory to the OS after tailnet traffic went quiet."})
	trimmed := prometheus.NewCounter(prometheus.CounterOpts{Name: "coder_memory_trimmed_bytes_total",
		Help: "Heap bytes the server returned to the OS after tailnet traffic went quiet."})
	reg.MustRegister(trims, trimmed)
	go tailnet.NewTrimmer(tailnet.TrimOptions{Logger: logger.With("component", "memory"), OnTrim: func(before, after uint64) {
		trims.Inc()
		if before > after {
			trimmed.Add(float64(before - after))
		}
	}}).Run(ctx)

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for local agents: %w", err)
	}
	// Agents get a clean environment (none of the server's secrets): of
	// ours, only PATH, LANG and which certificates to trust when they dial
	// the server (SSL_CERT_FILE, SSL_CERT_DIR).
	var agentEnv []string
	for _, k := range []string{"PATH", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			agentEnv = append(agentEnv, k+"="+v)
		}
	}
	prov := &provision.Process{Binary: exe, Dir: configDir, Env: agentEnv, Logger: logger.With("component", "provisioner")}
	defer prov.Close()

	api, err := handlers.New(handlers.Options{
		DB: db, Logger: logger, AccessURL: accessURL, WildcardAccessURL: string(o.WildcardAccessURL),
		TLS: bool(o.TLSEnable), BrowserOnly: bool(o.BrowserOnly),
		DisablePathApps: bool(o.DisablePathApps), DangerousAllowPathAppSharing: bool(o.DangerousAllowPathAppSharing),
		DangerousAllowPathAppSiteOwnerAccess: bool(o.DangerousAllowPathAppSiteOwnerAccess), BuiltinDB: builtin, Version: version,
		Registerer: reg, Provisioner: localProvisioner{prov},
		Tailnet: handlers.TailnetOptions{
			Enabled: true,
			DERP: tailnet.DERPMapOptions{
				DisableEmbedded: !bool(o.DERPServerEnable),
				RegionID:        int(o.DERPServerRegionID), RegionCode: string(o.DERPServerRegionCode), RegionName: string(o.DERPServerRegionName),
				ConfigPath: string(o.DERPConfigPath), ConfigURL: string(o.DERPConfigURL),
			},
			BlockDirect:     bool(o.BlockDirect),
			STUNAddrs:       o.stunAddrs(),
			ForceWebsockets: bool(o.DERPForceWebsockets),
			TCPBufferMax:    int(o.TailnetTCPBuffer),
		},
	})
	if err != nil {
		return err
	}
	defer api.Close()

	var g errgroup.Group
	var servers []*http.Server
	serve := func(ln net.Listener, tlsCfg *tls.Config) {
		srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
		servers = append(servers, srv)
		g.Go(func() error {
			var err error
			if tlsCfg != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
	}
	if httpLn != nil {
		serve(httpLn, nil)
	}
	if tlsLn != nil {
		serve(tlsLn, tlsConfig)
	}
	// serveSide serves mux on a side listener (metrics, profiling) that
	// shuts down with the main servers; flag names the address's flag.
	serveSide := func(flag, address string, mux *http.ServeMux) (string, error) {
		ln, err := net.Listen("tcp", address)
		if err != nil {
			return "", fmt.Errorf("listen on --%s %s: %w", flag, address, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		return ln.Addr().String(), nil
	}
	if o.PrometheusEnable {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		addr, err := serveSide("prometheus-address", string(o.PrometheusAddress), mux)
		if err != nil {
			return err
		}
		logger.Info("serving prometheus metrics", "address", addr)
	}

	nodeCtx, cancelNode := context.WithTimeout(ctx, 30*time.Second)
	if err := api.StartServerNode(nodeCtx, filepath.Join(configDir, "tailnet", "server")); err != nil {
		logger.Error("the server's tailnet node did not start: the web terminal and apps cannot reach agents", "err", err)
	}
	cancelNode()
	if o.PprofEnable {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		addr, err := serveSide("pprof-address", string(o.PprofAddress), mux)
		if err != nil {
			return err
		}
		logger.Info("serving pprof", "address", addr)
	}
	if err := api.StartWorkspaces(ctx); err != nil {
		logger.Error("start workspaces", "err", err)
	}
	printBanner(ctx, stdout, db, accessURL, builtin)

	<-ctx.Done()
	logger.Info("shutting down; press Ctrl+C again to force")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// Event streams and proxied app requests would hold Shutdown for its
	// whole timeout: end them first.
	api.BeginShutdown()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			logger.Warn("requests still open 10 s after Ctrl+C: closing them", "err", err)
			srv.Close()
		}
	}
	if o.StopLocalAgentsOnExit {
		prov.Close()
	} else {
		prov.Detach() // the next server adopts them
	}
	api.Close()
	err = g.Wait()
	logger.Info("stopped")
	return err
}

// defaultAccessURL is the address users reach when --access-url is not
// set: the TLS listener if any, else the HTTP one, with a wildcard host
// replaced by localhost.
func defaultAccessURL(httpLn, tlsLn net.Listener) *url.URL {
	scheme, ln := "http", httpLn
	if tlsLn != nil {
		scheme, ln = "https", tlsLn
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
}

func printBanner(ctx context.Context, w interface{ Write([]byte) (int, error) }, db *store.DB, accessURL *url.URL, builtin bool) {
	n, _ := db.CountUsers(ctx)
	fmt.Fprintf(w, "\nCoder %s is ready.\n\n", version)
	fmt.Fprintf(w, "  Dashboard:  %s\n", accessURL)
	if builtin {
		fmt.Fprintf(w, "  Database:   built-in PostgreSQL\n")
	}
	if n == 0 {
		fmt.Fprintf(w, "\n  No users yet: open %s/setup to create the first (owner) user,\n  or run: coder login %s --first-user-username admin --first-user-email admin@example.com\n", accessURL, accessURL)
	} else {
		fmt.Fprintf(w, "\n  Log in at %s/login, or from a terminal: coder login %s\n", accessURL, accessURL)
	}
	fmt.Fprintf(w, "\n  Press Ctrl+C to stop.\n\n")
}

// localProvisioner runs the API's local agents with package provision.
type localProvisioner struct{ *provision.Process }

func (p localProvisioner) StartAgent(ctx context.Context, a handlers.LocalAgent) error {
	return p.Process.StartAgent(ctx, provision.Agent(a))
}

// AdoptAgent makes localProvisioner a handlers.AgentAdopter.
func (p localProvisioner) AdoptAgent(ctx context.Context, a handlers.LocalAgent) bool {
	return p.Process.AdoptAgent(ctx, provision.Agent(a))
}
