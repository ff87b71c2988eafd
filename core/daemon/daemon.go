// Package daemon wires the daemon together: host, storage, plugins and the
// API server, and runs until its context ends (SIGINT/SIGTERM in `backend
// serve`).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core"
	"example.org/backend/core/analysers"
	"example.org/backend/core/apiserver"
	"example.org/backend/core/buildinfo"
	"example.org/backend/core/config"
	"example.org/backend/core/connections"
	"example.org/backend/core/pluginhost"
	"example.org/backend/core/profiles"
	"example.org/backend/core/sdnotify"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	sdk "example.org/backend/plugin-sdk"
)

// Options are what the binary hands to the daemon.
type Options struct {
	Config config.Config
	// Build says which build runs (zero: read from the binary); Version,
	// when set, overrides Build.Version.
	Build    buildinfo.Info
	Version  string
	Log      *slog.Logger
	Builtins []core.Plugin
	// FirstParty are the first-party external plugins, served out of
	// process by re-executing this binary with PluginSubcommand.
	FirstParty map[string]*sdk.Plugin
	// Sessions tunes the XMPP sessions (zero: production defaults).
	Sessions connections.Options
	// Ready, when set, is called once the API is served.
	Ready func(*Daemon)
	// Notify, when set, tells systemd when the daemon is ready, pings its
	// watchdog and says when it stops (Type=notify).
	Notify *sdnotify.Notifier
}

// Daemon is a running daemon.
type Daemon struct {
	Host    *core.Host
	Plugins *core.Plugins
	API     *apiserver.Server
	// Profiles manages profiles and their parameters (the session layer
	// installs its state lookup with Profiles.SetStateFunc).
	Profiles *profiles.Service
	// Sessions keeps the profiles' XMPP sessions.
	Sessions *connections.Manager
	// TLSFingerprint is the SHA-256 of the TCP listener's certificate ("":
	// no TLS listener).
	TLSFingerprint string
	external       *externalPlugins
	cfg            config.Config
}

// prepareDataDir creates the data directory (0700) or tightens an existing
// one to 0700; a directory another user owns, or one it cannot tighten, is
// refused.
func prepareDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("data dir %s belongs to uid %d, not to the daemon's user (uid %d): use a directory of your own (--data-dir) or chown it", dir, sys.Uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir %s has mode %o and cannot be made 0700: %w", dir, perm, err)
		}
		log.Warn("data dir tightened to mode 0700 (it holds the database and the secret key)", "dir", dir, "was", fmt.Sprintf("%o", perm))
	}
	return nil
}

// healthy is the watchdog's check: the database answers and the API
// socket accepts connections.
func (d *Daemon) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.Host.Store.DB.PingContext(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", d.cfg.Socket)
	if err != nil {
		return fmt.Errorf("api socket: %w", err)
	}
	return c.Close()
}

// StorageConfig is the database part of the daemon configuration.
func StorageConfig(cfg config.Config) storage.Config {
	return storage.Config{Driver: cfg.DatabaseDriver, DSN: cfg.DatabaseDSN, DataDir: cfg.DataDir}
}

// Run starts the daemon and blocks until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, o Options) error {
	var d *Daemon
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	cfg := o.Config
	// The socket lock first: a second daemon on a busy socket is refused
	// before it touches a data directory, a database or a key.
	lock, err := apiserver.Lock(cfg.Socket)
	if err != nil {
		return err
	}
	defer func() {
		if d == nil || d.API == nil {
			lock.Release() // not handed to a server (which releases it on shutdown)
		}
	}()
	if err := prepareDataDir(cfg.DataDir, log); err != nil {
		return err
	}
	build := o.Build
	if build.Version == "" {
		build = buildinfo.Read("")
	}
	if o.Version != "" {
		build.Version = o.Version
	}
	host := core.NewHost(log, build.Version)
	host.Build = build
	host.API.SetMaxRequestBytes(cfg.APIMaxRequestBytes)
	if err := host.Metrics.Runtime(); err != nil {
		return fmt.Errorf("runtime metrics: %w", err)
	}
	if err := declareBuildInfo(host.Metrics, build); err != nil {
		return fmt.Errorf("build info metric: %w", err)
	}
	// Every Connect handler (the core's and the plugins') takes the
	// metrics interceptor.
	ic, err := apiserver.NewInterceptor(host.Metrics)
	if err != nil {
		return err
	}
	host.API.SetHandlerOptions(connect.WithInterceptors(ic))
	d = &Daemon{Host: host, cfg: cfg}

	store, err := storage.Open(ctx, StorageConfig(cfg), log)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()
	host.Store = store
	// Free memory goes back to the OS after a burst (memory.go).
	go returnMemory(ctx, log, host.Events, store)
	if host.Analysers, err = analysers.Open(ctx, store, log); err != nil {
		return err
	}

	// Profiles and parameters: the secret key, the core's connection
	// parameters (declared before plugins declare theirs).
	if host.Secrets, err = secrets.OpenBox(cfg.DataDir); err != nil {
		return err
	}
	if err := profiles.DeclareConnection(host.Params); err != nil {
		return err
	}

	d.Profiles = profiles.New(host, cfg.Params)
	host.SetParamSource(d.Profiles)
	d.Plugins = core.NewPlugins(host, o.Builtins...)
	d.Sessions = connections.New(host, d.Profiles, d.Plugins, o.Sessions)
	host.Sessions = d.Sessions
	// The core's events reach the API's event stream through their bridges
	// (plugins declare theirs among their bindings).
	bridges := append(profiles.EventBindings(host.Events), connections.EventBindings(host.Events)...)
	bridges = append(bridges, core.Bridge(host.Events, pluginhost.StateChanged, pluginStateEvent))
	if _, err := host.Bus.Attach("core", bridges...); err != nil {
		return fmt.Errorf("attach event bridges: %w", err)
	}

	if err := d.Plugins.Start(ctx); err != nil {
		return fmt.Errorf("start plugins: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Sessions.Close(cctx); err != nil {
			log.Warn("closing sessions", "err", err)
		}
		if err := d.Plugins.Close(cctx); err != nil {
			log.Error("closing plugins", "err", err)
		}
	}()

	// External plugins: first-party ones re-executed from this binary,
	// third-party ones from the plugin directories.
	ext, err := startExternalPlugins(ctx, d, o.FirstParty)
	if err != nil {
		return err
	}
	d.external = ext
	defer ext.close()

	// Every plugin has declared its parameters: check the config's [params].
	if err := host.Params.CheckConfig(ext.configToCheck(cfg.Params)); err != nil {
		return fmt.Errorf("%w: fix or remove these keys in %s", err, cfg.File)
	}

	hopts := host.API.HandlerOptions()
	dv2 := &daemonServiceV2{d: d}
	for _, reg := range []func() (string, http.Handler){
		func() (string, http.Handler) { return backendv2connect.NewDaemonServiceHandler(dv2, hopts...) },
		func() (string, http.Handler) { return profiles.NewHandlerV2(d.Profiles, hopts...) },
		func() (string, http.Handler) { return connections.NewHandlerV2(d.Sessions, hopts...) },
		func() (string, http.Handler) { return newPluginHandlerV2(ext, hopts...) },
		// backend.v1, deprecated: served for one more release.
		func() (string, http.Handler) {
			return backendv1connect.NewDaemonServiceHandler(&daemonService{v2: dv2}, hopts...)
		},
		func() (string, http.Handler) { return profiles.NewHandler(d.Profiles, hopts...) },
		func() (string, http.Handler) { return connections.NewHandler(d.Sessions, hopts...) },
		func() (string, http.Handler) { return newPluginHandler(ext, hopts...) },
	} {
		path, h := reg()
		if err := host.API.Register("core", path, h); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	services := host.API.Services()
	for _, s := range services {
		mux.Handle(s.Path, s.Handler)
	}
	// Discovery: gRPC reflection lists every service above, gRPC health
	// says whether the daemon serves (its database answers).
	for path, h := range discoveryHandlers(serviceNames(services), store.DB.PingContext, hopts...) {
		mux.Handle(path, h)
	}
	metrics := host.Metrics.Handler()
	mux.Handle("/metrics", metrics)

	// The metrics address is taken first: a taken address refuses start-up
	// before anything serves.
	var metricsLn net.Listener
	if cfg.MetricsAddress != "" {
		if metricsLn, err = apiserver.ListenTCP("metrics.address", cfg.MetricsAddress); err != nil {
			return err
		}
	}
	apiOpts := apiserver.Options{
		Socket: cfg.Socket, Lock: lock, TCPAddress: cfg.APITCPAddress, TokenFile: cfg.APITokenFile, Log: log,
		Plaintext: cfg.APITCPPlaintext, AllowedOrigins: cfg.APIAllowedOrigins, MaxRequestBytes: cfg.APIMaxRequestBytes,
	}
	if cfg.APITCPAddress != "" && (cfg.APITCPPlaintext == "" || cfg.APITLSCert != "") {
		cert, fp, err := apiserver.LoadOrCreateCertificate(cfg.APITLSCert, cfg.APITLSKey, cfg.DataDir, cfg.APITCPAddress)
		if err != nil {
			if metricsLn != nil {
				metricsLn.Close()
			}
			return err
		}
		apiOpts.TLS, d.TLSFingerprint = cert, fp
	}
	srv, err := apiserver.Start(apiOpts, mux)
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	d.API = srv
	var metricsSrv *http.Server
	if metricsLn != nil {
		ln := metricsLn
		m := http.NewServeMux()
		m.Handle("/metrics", metrics)
		metricsSrv = &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "addr", cfg.MetricsAddress, "err", err)
			}
		}()
	}
	log.Info("daemon ready", "socket", cfg.Socket, "data_dir", cfg.DataDir, "tcp", cfg.APITCPAddress, "version", build.Version,
		"revision", build.ShortRevision(), "plugin_protocol", sdk.ProtocolVersion)
	if d.TLSFingerprint != "" {
		log.Info("api tcp listener uses TLS: pin it with --tls-fingerprint", "addr", cfg.APITCPAddress, "tls_fingerprint", d.TLSFingerprint)
	}
	if err := o.Notify.Ready("serving on " + cfg.Socket); err != nil {
		log.Warn("systemd readiness notification", "err", err)
	}
	stopWatchdog := make(chan struct{})
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		o.Notify.RunWatchdog(stopWatchdog, func() error { return d.healthy(ctx) }, func(err error) {
			log.Warn("systemd watchdog: ping skipped", "err", err)
		})
	}()
	d.Sessions.Autoconnect(ctx)
	if o.Ready != nil {
		o.Ready(d)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-srv.Err():
		log.Error("api server failed", "err", runErr)
	}
	close(stopWatchdog)
	<-watchdogDone
	if err := o.Notify.Stopping(); err != nil {
		log.Warn("systemd stopping notification", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if metricsSrv != nil {
		metricsSrv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("api shutdown", "err", err)
	}
	return runErr
}
