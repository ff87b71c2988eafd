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
	"github.com/prometheus/client_golang/prometheus"

	"example.org/backend/core/analysers"
	"example.org/backend/core/apiserver"
	"example.org/backend/core/config"
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
	Metrics  *prometheus.Registry
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
	Started time.Time

	paramSrc ParamSource // SetParamSource
}

// NewHost builds a host with fresh registries.
func NewHost(log *slog.Logger, version string) *Host {
	reg := prometheus.NewRegistry()
	return &Host{
		Log:      log,
		Bus:      triggers.New(),
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

// HandlerOptions are the options to build every Connect handler of the API
// with (core's and plugins'): the request read limit applied to the
// decompressed size, then extra (send limits, interceptors). A handler
// that must read more than the limit does not exist today; one that does
// would pass its own connect.WithReadMaxBytes in extra.
func (r *APIRegistry) HandlerOptions(extra ...connect.HandlerOption) []connect.HandlerOption {
	return append(apiserver.HandlerOptions(r.MaxRequestBytes()), extra...)
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

// Counters are named monotonic counters shown by `backend status` and
// exported to Prometheus as backend_<name>_total.
type Counters struct {
	mu  sync.Mutex
	m   map[string]*atomic.Int64
	reg prometheus.Registerer
}

// Documented counters that are always present in status output.
const (
	// CounterPubsubItemsRequests counts items requests actually sent to
	// pubsub services (cache hits do not count).
	CounterPubsubItemsRequests = "pubsub_items_requests"
	// CounterIQSent counts IQs sent, all profiles together.
	CounterIQSent = "iq_sent"
)

// NewCounters returns the counters with the documented ones declared.
func NewCounters(reg prometheus.Registerer) *Counters {
	c := &Counters{m: map[string]*atomic.Int64{}, reg: reg}
	c.Get(CounterPubsubItemsRequests)
	c.Get(CounterIQSent)
	return c
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
	if c.reg != nil {
		metric := "backend_" + strings.NewReplacer(".", "_", "-", "_").Replace(name) + "_total"
		_ = c.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: metric, Help: "Counter " + name + " (see backend status).",
		}, func() float64 { return float64(v.Load()) }))
	}
	return v
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}
