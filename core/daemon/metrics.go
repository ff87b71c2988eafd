package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"example.org/backend/core/buildinfo"
	"example.org/backend/core/metrics"
	"example.org/backend/core/pluginhost"
	"example.org/backend/plugin-sdk/host"
)

// maxPlugins bounds the plugin label: the external plugins installed (the
// first-party ones and those found in plugins.dirs).
const maxPlugins = 64

// declareBuildInfo declares backend_build_info, whose labels say which
// build runs (one series per process).
func declareBuildInfo(reg *metrics.Registry, in buildinfo.Info) error {
	return reg.GaugeFunc("core", metrics.Opts{
		Name: "backend_build_info",
		Help: "Always 1: the labels say which build of the daemon runs (module version, VCS revision, modified work tree, Go version).",
		Labels: []metrics.Label{{Name: "version", Max: 1}, {Name: "revision", Max: 1}, {Name: "dirty", Values: []string{"false", "true"}},
			{Name: "go_version", Max: 1}},
	}, func() []metrics.Sample {
		return []metrics.Sample{{Values: []string{in.Version, in.Revision, strconv.FormatBool(in.Dirty), in.GoVersion}, Value: 1}}
	})
}

// pluginStates are the state label values of backend_plugins.
var pluginStates = []string{string(pluginhost.StateStarting), string(pluginhost.StateRunning), string(pluginhost.StateRestarting),
	string(pluginhost.StateFailed), string(pluginhost.StateStopped)}

// pluginMetrics feeds the external plugin metrics.
type pluginMetrics struct {
	calls *metrics.Histogram
}

// declarePluginMetrics declares the plugin call histogram, and the
// restarts and states read from the supervisor at each scrape (sup is
// read through get, set once the supervisor exists).
func declarePluginMetrics(reg *metrics.Registry, get func() *pluginhost.Supervisor) (*pluginMetrics, error) {
	calls, err := reg.Histogram("core", metrics.Opts{
		Name: "backend_plugin_call_duration_seconds",
		Help: "Duration of the calls to external plugin processes, by plugin, protocol method and outcome (ok, error, down: the process was not running, timeout).",
		Labels: []metrics.Label{{Name: "plugin", Max: maxPlugins},
			{Name: "method", Values: []string{host.MethodPing, host.MethodDescribe, host.MethodConfigure, host.MethodMatch, host.MethodParse}},
			{Name: "outcome", Values: []string{"ok", "error", "down", "timeout"}}},
	})
	if err != nil {
		return nil, err
	}
	statuses := func() []pluginhost.Status {
		if s := get(); s != nil {
			return s.Plugins()
		}
		return nil
	}
	err = errors.Join(
		reg.CounterFunc("core", metrics.Opts{
			Name:   "backend_plugin_restarts_total",
			Help:   "Restarts of each external plugin process since the daemon started (after a crash, a hang, or plugins restart).",
			Labels: []metrics.Label{{Name: "plugin", Max: maxPlugins}},
		}, func() []metrics.Sample {
			var out []metrics.Sample
			for _, st := range statuses() {
				out = append(out, metrics.Sample{Values: []string{st.Name}, Value: float64(st.Restarts)})
			}
			return out
		}),
		reg.GaugeFunc("core", metrics.Opts{
			Name:   "backend_plugins",
			Help:   "External plugins by supervision state (starting, running, restarting, failed, stopped).",
			Labels: []metrics.Label{{Name: "state", Values: pluginStates}},
		}, func() []metrics.Sample {
			n := map[string]float64{}
			for _, st := range statuses() {
				n[string(st.State)]++
			}
			out := make([]metrics.Sample, 0, len(pluginStates))
			for _, s := range pluginStates {
				out = append(out, metrics.Sample{Values: []string{s}, Value: n[s]})
			}
			return out
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("declare plugin metrics: %w", err)
	}
	return &pluginMetrics{calls: calls}, nil
}

// onCall is the supervisor's OnCall.
func (m *pluginMetrics) onCall(plugin, method string, d time.Duration, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, host.ErrPluginDown):
		outcome = "down"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	m.calls.With(plugin, method, outcome).Observe(d.Seconds())
}
