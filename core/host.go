// Package core is the host of the daemon: the plugin lifecycle, the
// registries that several parts feed (API services, counters, events, and
// later parameters and analysers), and the wiring of bus, profiles and
// sessions. It never imports plugins/: cmd/backend lists the built-in
// plugins and hands them to the core.
package core

import (
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/core/analysers"
	"example.org/backend/core/apiserver"
	"example.org/backend/core/buildinfo"
	"example.org/backend/core/config"
	"example.org/backend/core/metrics"
	"example.org/backend/core/params"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	"example.org/backend/triggers"
)

// Host is what plugins may use. It is passed to [Initializer.Init]; there
// are no globals.
type Host struct {
	Log      *slog.Logger
	Bus      *triggers.Bus
	API      *APIRegistry
	Counters *Counters
	Events   *Events
	// Metrics is the Prometheus registry served at /metrics: the core and
	// the plugins declare their families there (see package metrics).
	Metrics *metrics.Registry
	// Sessions gives access to the profiles' XMPP sessions (set by the
	// daemon before plugins start).
	Sessions Sessions
	// Analysers is the analyser/parser registry (set by the daemon before
	// plugins start).
	Analysers *analysers.Registry
	// Store is the database (set by the daemon before plugins start).
	Store *storage.Store
	// Params is the per-profile parameter registry: plugins declare their
	// parameters in Init (Params.Declare(name, ...)).
	Params *params.Registry
	// Secrets encrypts secret parameters at rest (set by the daemon before
	// plugins start, from <data_dir>/secret.key).
	Secrets *secrets.Box
	Version string
	// Build says which build runs (set by the daemon).
	Build   buildinfo.Info
	Started time.Time

	paramSrc ParamSource // SetParamSource
}

// NewHost builds a host with fresh registries.
func NewHost(log *slog.Logger, version string) *Host {
	reg := metrics.NewRegistry()
	bus := triggers.New()
	if err := instrumentBus(bus, reg); err != nil {
		log.Error("bus metrics", "err", err) // a programming error: the registry is new
	}
	return &Host{
		Log:      log,
		Bus:      bus,
		API:      &APIRegistry{},
		Counters: NewCounters(reg),
		Events:   NewEvents(),
		Metrics:  reg,
		Params:   params.NewRegistry(),
		Version:  version,
		Started:  time.Now(),
	}
}

// APIService is one Connect service mounted on the daemon's API server:
// Path and Handler are what a generated `NewXServiceHandler` returns.
type APIService struct {
	Owner   string
	Path    string
	Handler http.Handler
}

// APIRegistry collects the Connect services of the core and the plugins.
// Every service is built with HandlerOptions (the request bounds).
type APIRegistry struct {
	mu              sync.Mutex
	services        []APIService
	maxRequestBytes int64 // api.max_request_bytes; 0: the default
	opts            []connect.HandlerOption
}

// SetMaxRequestBytes sets the bound of HandlerOptions (the daemon does it
// from api.max_request_bytes before plugins start).
func (r *APIRegistry) SetMaxRequestBytes(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxRequestBytes = n
}

// MaxRequestBytes is the bound of every request message, decompressed.
func (r *APIRegistry) MaxRequestBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.maxRequestBytes <= 0 {
		return config.DefaultMaxRequestBytes
	}
	return r.maxRequestBytes
}

// SetHandlerOptions sets the options every Connect handler of the daemon
// takes after its own (the daemon installs the metrics interceptor there
// before plugins start).
func (r *APIRegistry) SetHandlerOptions(opts ...connect.HandlerOption) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opts = opts
}

// HandlerOptions are the options to build every Connect handler of the API
// with (core's and plugins'): the request read limit applied to the
// decompressed size, then extra (send limits), then the daemon's own
// (the interceptor recording each request's duration and code in
// backend_api_request_duration_seconds). A handler that must read more
// than the limit does not exist today; one that does would pass its own
// connect.WithReadMaxBytes in extra.
func (r *APIRegistry) HandlerOptions(extra ...connect.HandlerOption) []connect.HandlerOption {
	out := append(apiserver.HandlerOptions(r.MaxRequestBytes()), extra...)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(out, r.opts...)
}

// Register adds a service; a path registered twice is refused.
func (r *APIRegistry) Register(owner, path string, h http.Handler) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.services {
		if s.Path == path {
			return &DuplicateServiceError{Path: path, Owner: s.Owner}
		}
	}
	r.services = append(r.services, APIService{Owner: owner, Path: path, Handler: h})
	return nil
}

// Services lists the registered services sorted by path.
func (r *APIRegistry) Services() []APIService {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]APIService(nil), r.services...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// DuplicateServiceError reports a second registration of an API path.
type DuplicateServiceError struct{ Path, Owner string }

func (e *DuplicateServiceError) Error() string {
	return "api service " + e.Path + " is already registered by " + e.Owner
}

// Counters are the named monotonic counters of `backend status` (DESIGN
// §9: scripts rely on their names and meaning), each also exported to
// Prometheus as backend_<name>_total. A counter is either incremented
// (Get) or read from its owner at each use (DeclareFunc).
type Counters struct {
	mu    sync.Mutex
	m     map[string]*atomic.Int64
	funcs map[string]func() int64
	reg   *metrics.Registry
}

// Documented counters that are always present in status output.
const (
	// CounterPubsubItemsRequests counts items requests actually sent to
	// pubsub services (cache hits do not count).
	CounterPubsubItemsRequests = "pubsub_items_requests"
	// CounterIQSent counts IQs sent, all profiles together.
	CounterIQSent = "iq_sent"
)

// counterHelp are the HELP texts of the documented status counters, by
// name; a counter declared without one gets a generic text.
var counterHelp = map[string]string{
	CounterPubsubItemsRequests: "Items requests sent to pubsub services (answers from the cache are not counted); the pubsub_items_requests counter of backend status.",
	CounterIQSent:              "IQ requests sent by the profiles' sessions since the daemon started (liveness pings and answers not counted); the iq_sent counter of backend status.",
	"cache_hits":               "Items requests answered from the pubsub cache without a request to the service; the cache_hits counter of backend status.",
	"cache_misses":             "Items requests the pubsub cache could not answer (node not cached, not complete or not fresh), sent to the service; the cache_misses counter of backend status.",
	"cache_bypasses":           "Items requests that asked to bypass the pubsub cache (--no-cache, or a shape the cache never answers), sent to the service; the cache_bypasses counter of backend status.",
	"cache_stale_answers":      "Items requests answered from the pubsub cache while the profile was offline, marked stale; the cache_stale_answers counter of backend status.",
}

// NewCounters returns the counters with the documented ones declared,
// exported on reg (nil: not exported).
func NewCounters(reg *metrics.Registry) *Counters {
	c := &Counters{m: map[string]*atomic.Int64{}, funcs: map[string]func() int64{}, reg: reg}
	c.Get(CounterPubsubItemsRequests)
	return c
}

// counterMetric is the Prometheus name of counter name.
func counterMetric(name string) string {
	return "backend_" + strings.NewReplacer(".", "_", "-", "_").Replace(name) + "_total"
}

func (c *Counters) exportLocked(name string, read func() int64) {
	if c.reg == nil {
		return
	}
	help, ok := counterHelp[name]
	if !ok {
		help = "Count of " + strings.ReplaceAll(name, "_", " ") + " since the daemon started; the " + name + " counter of backend status."
	}
	_ = c.reg.CounterFunc("core", metrics.Opts{Name: counterMetric(name), Help: help}, func() []metrics.Sample {
		return []metrics.Sample{{Value: float64(read())}}
	})
}

// Get returns the counter called name ([a-z0-9_.]), declaring it on first use.
func (c *Counters) Get(name string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[name]; ok {
		return v
	}
	v := new(atomic.Int64)
	c.m[name] = v
	c.exportLocked(name, v.Load)
	return v
}

// DeclareFunc declares the counter called name whose value read returns
// (monotonic; read must be quick). Declaring a name twice is a no-op.
func (c *Counters) DeclareFunc(name string, read func() int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.funcs[name]; ok {
		return
	}
	if _, ok := c.m[name]; ok {
		return
	}
	c.funcs[name] = read
	c.exportLocked(name, read)
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m)+len(c.funcs))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	for k, f := range c.funcs {
		out[k] = f()
	}
	return out
}
