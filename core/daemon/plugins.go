package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/analysers"
	"example.org/backend/core/params"
	"example.org/backend/core/pluginhost"
	"example.org/backend/core/profiles"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/triggers"
)

// PluginSubcommand is the hidden subcommand through which the daemon
// binary re-executes itself to serve a first-party plugin.
const PluginSubcommand = "__plugin"

// externalPlugins supervises the plugin processes and keeps each informed
// of the profiles' parameter values.
type externalPlugins struct {
	d   *Daemon
	sup *pluginhost.Supervisor
	log *slog.Logger
	// refused are the plugin files discovery refused (shown by plugins list).
	refused []pluginhost.Refused
}

// startExternalPlugins starts the first-party plugins (from their own
// executables installed beside this one, else re-executing this binary) and the third-party ones found in the plugin directories. Each
// plugin's parameters are declared in the registry when it starts, and it
// receives every profile's values then and after each change.
func startExternalPlugins(ctx context.Context, d *Daemon, firstParty map[string]*sdk.Plugin) (*externalPlugins, error) {
	log := d.Host.Log.With("component", "plugins")
	specs := pluginhost.BuiltinSpecs(PluginSubcommand, firstParty)
	if exe, err := os.Executable(); err == nil {
		for _, s := range specs {
			switch path, reason := pluginhost.Beside(exe, s.Name); {
			case path == "":
			case reason != "":
				log.Warn("first-party plugin executable refused, the daemon re-executes itself instead: "+reason, "plugin", s.Name, "path", path)
			default:
				log.Info("first-party plugin runs from its own executable", "plugin", s.Name, "path", path)
			}
		}
	}
	pins, err := parsePins(d.cfg.PluginPins)
	if err != nil {
		return nil, err
	}
	third, refused, err := pluginhost.Discover(d.cfg.PluginDirs, pins, log)
	if err != nil {
		return nil, fmt.Errorf("discover plugins: %w", err)
	}
	for _, s := range third {
		if _, clash := firstParty[s.Name]; clash {
			log.Warn("third-party plugin ignored: a first-party plugin has its name", "plugin", s.Name)
			continue
		}
		specs = append(specs, s)
	}
	ep := &externalPlugins{d: d, log: log, refused: refused}
	pm, err := declarePluginMetrics(d.Host.Metrics, func() *pluginhost.Supervisor { return ep.sup })
	if err != nil {
		return nil, err
	}
	ep.sup, err = pluginhost.New(specs, pluginhost.Options{Logger: log, OnStart: ep.onStart, OnCall: pm.onCall,
		OnRunning: func(name string) { ep.d.Host.Analysers.Up(name, supervised{ep.sup, name}) },
		OnState: func(st pluginhost.Status) {
			if err := triggers.Notify(context.Background(), d.Host.Bus, pluginhost.StateChanged, st); err != nil {
				log.Warn("plugin.state observers", "plugin", st.Name, "err", err)
			}
		}})
	if err != nil {
		return nil, err
	}
	if err := ep.sup.Start(ctx); err != nil {
		ep.sup.Close()
		return nil, err
	}
	// Analysers of plugins that are no longer installed are forgotten;
	// those of installed plugins that are down stay known (parse pending).
	installed := ep.sup.Names()
	for _, owner := range d.Host.Analysers.Owners() {
		if !slices.Contains(installed, owner) {
			if err := d.Host.Analysers.Remove(ctx, owner); err != nil {
				ep.sup.Close()
				return nil, err
			}
			log.Info("analysers of a removed plugin forgotten", "plugin", owner)
		}
	}
	if _, err := d.Host.Bus.Attach("plugins", triggers.Observe(profiles.ParamChanged, triggers.PriorityDefault, ep.paramChanged)); err != nil {
		ep.sup.Close()
		return nil, err
	}
	return ep, nil
}

// parsePins reads plugins.pins entries "NAME=SHA256".
func parsePins(entries []string) (map[string]string, error) {
	pins := map[string]string{}
	for _, e := range entries {
		name, sum, ok := strings.Cut(e, "=")
		if !ok || name == "" || len(sum) != 64 {
			return nil, fmt.Errorf("plugins.pins: %q is not NAME=SHA256 (64 hex digits)", e)
		}
		pins[name] = strings.ToLower(sum)
	}
	return pins, nil
}

// onStart runs after each (re)start of a plugin: it declares the plugin's
// parameters and sends it every profile's values.
func (ep *externalPlugins) onStart(ctx context.Context, name string, c *host.Client, desc host.Description) error {
	decls := params.FromSDK(desc.Params)
	if err := ep.d.Host.Params.Declare(name, decls...); err != nil {
		return fmt.Errorf("declare parameters of plugin %s: %w", name, err)
	}
	// The provider is installed by OnRunning, once calls can go through.
	ep.d.Host.Analysers.SetOwnerVersion(name, desc.Version)
	if err := ep.d.Host.Analysers.Declare(ctx, name, desc.Analysers, nil); err != nil {
		return fmt.Errorf("declare analysers of plugin %s: %w", name, err)
	}
	if len(decls) == 0 {
		return nil
	}
	list, err := ep.d.Profiles.List(ctx)
	if err != nil {
		return fmt.Errorf("list profiles: %w", err)
	}
	for _, p := range list {
		if err := ep.configure(ctx, name, c, p.Name); err != nil {
			return err
		}
	}
	return nil
}

// configure sends the values of plugin's parameters for one profile.
func (ep *externalPlugins) configure(ctx context.Context, plugin string, c *host.Client, profile string) error {
	resolved, err := ep.d.Profiles.Params(ctx, profile)
	if err != nil {
		return fmt.Errorf("parameters of profile %s: %w", profile, err)
	}
	values := map[string]string{}
	for _, r := range resolved {
		if r.Decl.Owner != plugin {
			continue
		}
		v := r.Value
		if r.Decl.Secret() {
			if v, err = ep.d.Profiles.Secret(ctx, profile, r.Decl.Key()); err != nil {
				ep.log.Warn("secret parameter unavailable for plugin", "plugin", plugin, "profile", profile, "key", r.Decl.Key(), "err", err)
				continue
			}
		}
		values[r.Decl.Key()] = v
	}
	if err := c.Configure(ctx, profile, values); err != nil {
		return fmt.Errorf("configure plugin %s for profile %s: %w", plugin, profile, err)
	}
	return nil
}

// paramChanged re-sends a plugin's values for the profile whose parameter
// of that plugin changed.
func (ep *externalPlugins) paramChanged(ctx context.Context, ch profiles.ParamChange) error {
	decl, ok := ep.d.Host.Params.Lookup(ch.Key)
	if !ok {
		return nil
	}
	c, err := ep.sup.Client(decl.Owner)
	if err != nil {
		if errors.Is(err, pluginhost.ErrUnknownPlugin) {
			return nil // a parameter of the core or of a built-in plugin
		}
		return err // down: it gets every value when it starts again
	}
	return ep.configure(ctx, decl.Owner, c, ch.Profile)
}

func (ep *externalPlugins) close() { ep.sup.Close() }

// supervised is the analysers.Provider of a supervised plugin: each call
// goes to the plugin's current process, and fails with
// analysers.ErrProviderDown while it is down.
type supervised struct {
	sup  *pluginhost.Supervisor
	name string
}

func (s supervised) client() (*host.Client, error) {
	c, err := s.sup.Client(s.name)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w: %w", s.name, analysers.ErrProviderDown, err)
	}
	return c, nil
}

func (s supervised) Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	res, err := c.Parse(ctx, req)
	if errors.Is(err, host.ErrPluginDown) {
		err = fmt.Errorf("%w: %w", analysers.ErrProviderDown, err)
	}
	return res, err
}

func (s supervised) Match(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	c, err := s.client()
	if err != nil {
		return sdk.MatchResult{}, err
	}
	res, err := c.Match(ctx, req)
	if errors.Is(err, host.ErrPluginDown) {
		err = fmt.Errorf("%w: %w", analysers.ErrProviderDown, err)
	}
	return res, err
}

// status lists the plugins for the API.
func (ep *externalPlugins) status() []*backendv1.ExternalPlugin {
	var out []*backendv1.ExternalPlugin
	for _, s := range ep.sup.Plugins() {
		out = append(out, pluginMessage(s))
	}
	for _, r := range ep.refused {
		out = append(out, &backendv1.ExternalPlugin{Name: r.Name, State: "refused", LastError: r.Path + ": " + r.Reason, Analysers: []string{}})
	}
	return out
}

func pluginMessage(s pluginhost.Status) *backendv1.ExternalPlugin {
	return &backendv1.ExternalPlugin{
		Name: s.Name, Version: s.Version, State: string(s.State), Pid: int64(s.PID),
		Analysers: append([]string{}, s.Analysers...), Restarts: int64(s.Restarts),
		FirstParty: s.FirstParty, LastError: s.LastError,
	}
}

// pluginStateEvent encodes a plugin's state change for the API's event
// stream (daemon-wide: no profile).
func pluginStateEvent(s pluginhost.Status) []*backendv2.Event {
	m := &backendv2.PluginStateEvent{Name: s.Name, Version: s.Version, State: string(s.State), Pid: int64(s.PID),
		Restarts: int64(s.Restarts), FirstParty: s.FirstParty}
	if s.LastError != "" {
		e := s.LastError
		m.LastError = &e
	}
	return []*backendv2.Event{{Event: &backendv2.Event_PluginState{PluginState: m}}}
}

// pluginService implements backend.v1.PluginService.
type pluginService struct{ ep *externalPlugins }

func newPluginHandler(ep *externalPlugins, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv1connect.NewPluginServiceHandler(&pluginService{ep: ep}, opts...)
}

func (s *pluginService) List(ctx context.Context, _ *connect.Request[backendv1.ListPluginsRequest]) (*connect.Response[backendv1.ListPluginsResponse], error) {
	return connect.NewResponse(&backendv1.ListPluginsResponse{Plugins: s.ep.status()}), nil
}

func (s *pluginService) Restart(ctx context.Context, req *connect.Request[backendv1.RestartPluginRequest]) (*connect.Response[backendv1.RestartPluginResponse], error) {
	name := req.Msg.GetName()
	if err := s.ep.sup.Restart(ctx, name); err != nil {
		if errors.Is(err, pluginhost.ErrUnknownPlugin) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no plugin called %q (see `backend plugins list`)", name))
		}
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	for _, st := range s.ep.sup.Plugins() {
		if st.Name == name {
			return connect.NewResponse(&backendv1.RestartPluginResponse{Plugin: pluginMessage(st)}), nil
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no plugin called %q", name))
}

// configToCheck leaves out of the [params] check the keys of plugins that
// are not running (their declarations are unknown until they start), with a
// warning.
func (ep *externalPlugins) configToCheck(config map[string]string) map[string]string {
	down := map[string]bool{}
	for _, s := range ep.sup.Plugins() {
		if s.State != pluginhost.StateRunning {
			down[s.Name] = true
		}
	}
	out := make(map[string]string, len(config))
	for k, v := range config {
		cat, _, _ := strings.Cut(k, ".")
		if _, known := ep.d.Host.Params.Lookup(k); !known && down[cat] {
			ep.log.Warn("config key of a plugin that is not running: not checked", "key", "params."+k, "plugin", cat)
			continue
		}
		out[k] = v
	}
	return out
}

// pluginServiceV2 implements backend.v2.PluginService.
type pluginServiceV2 struct{ v1 *pluginService }

func newPluginHandlerV2(ep *externalPlugins, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv2connect.NewPluginServiceHandler(&pluginServiceV2{v1: &pluginService{ep: ep}}, opts...)
}

// pluginV2 converts a v1 plugin message (the same fields).
func pluginV2(m *backendv1.ExternalPlugin) *backendv2.ExternalPlugin {
	return &backendv2.ExternalPlugin{Name: m.Name, Version: m.Version, State: m.State, Pid: m.Pid, Analysers: m.Analysers,
		Restarts: m.Restarts, FirstParty: m.FirstParty, LastError: m.LastError}
}

func (s *pluginServiceV2) List(ctx context.Context, _ *connect.Request[backendv2.ListPluginsRequest]) (*connect.Response[backendv2.ListPluginsResponse], error) {
	out := &backendv2.ListPluginsResponse{}
	for _, p := range s.v1.ep.status() {
		out.Plugins = append(out.Plugins, pluginV2(p))
	}
	return connect.NewResponse(out), nil
}

func (s *pluginServiceV2) Restart(ctx context.Context, req *connect.Request[backendv2.RestartPluginRequest]) (*connect.Response[backendv2.RestartPluginResponse], error) {
	res, err := s.v1.Restart(ctx, connect.NewRequest(&backendv1.RestartPluginRequest{Name: req.Msg.GetName()}))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&backendv2.RestartPluginResponse{Plugin: pluginV2(res.Msg.GetPlugin())}), nil
}
