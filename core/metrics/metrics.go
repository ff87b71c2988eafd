// Package metrics is the daemon's Prometheus registry, owned by the core
// (core.Host.Metrics) and served at /metrics. The core and the built-in
// plugins declare their metric families through it; it refuses what would
// make /metrics unusable: a name outside the backend_ namespace, an empty
// or placeholder HELP text, a counter whose name does not end in _total, and
// a label without a bound or named after an unbounded identity (profile,
// node, item, JID, service, user).
//
// Every label has a bound: a fixed list of values (anything else is
// recorded as "other", and every combination of listed values exists from
// the start at zero), or a maximum number of distinct values for labels
// whose values the daemon learns (plugin names, trigger points, API
// procedures); past the maximum, new values are recorded as "other". The
// series of a family are therefore at most the product of its labels'
// bounds (each plus one for "other"): [Family.Bound].
//
// Usage, from a plugin's Init:
//
//	syncs, err := h.Metrics.Histogram("pubsubcache", metrics.Opts{
//		Name: "backend_cache_sync_duration_seconds",
//		Help: "Duration of whole-node syncs, by analyser type and outcome.",
//		Labels: []metrics.Label{{Name: "type", Max: 32}, {Name: "outcome", Values: []string{"complete", "partial", "error"}}},
//		Buckets: metrics.SlowBuckets,
//	})
//	…
//	syncs.With(analyserType, "complete").Observe(time.Since(start).Seconds())
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Other is the label value recorded in place of a value outside a label's
// bound.
const Other = "other"

// Bucket sets for histograms, in seconds.
var (
	// FastBuckets suit in-process work: 10 µs to about 2.6 s (bus dispatch).
	FastBuckets = prometheus.ExponentialBuckets(1e-5, 4, 10)
	// CallBuckets suit requests and calls: 1 ms to 30 s (API requests,
	// plugin calls).
	CallBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// SlowBuckets suit long work: 10 ms to about 20 min (syncs).
	SlowBuckets = prometheus.ExponentialBuckets(0.01, 3, 12)
)

// MaxLabelValues is the largest Label.Max accepted.
const MaxLabelValues = 256

// Label is one label of a family and its bound: exactly one of Values and
// Max is set.
type Label struct {
	Name string
	// Values are the only values the label takes; any other value is
	// recorded as Other.
	Values []string
	// Max bounds the distinct values of a label whose values are learnt
	// (1..MaxLabelValues); the values seen after the first Max are
	// recorded as Other.
	Max int
}

// bound returns the number of distinct values the label may carry.
func (l Label) bound() int {
	if l.Values != nil {
		return len(l.Values) + 1
	}
	return l.Max + 1
}

// Opts declare a family.
type Opts struct {
	// Name is backend_<subsystem>_<what>[_<unit>], ending in _total for a
	// counter, in _seconds for a duration histogram.
	Name string
	// Help says what is counted or measured, for people reading /metrics.
	Help string
	// Labels are the family's labels (none for a single series).
	Labels []Label
	// Buckets are a histogram's upper bounds (default CallBuckets).
	Buckets []float64
}

// Family describes a declared family (for docs and tests).
type Family struct {
	Name, Help, Type, Owner string
	Labels                  []Label
}

// Bound is the maximum number of series of the family.
func (f Family) Bound() int {
	n := 1
	for _, l := range f.Labels {
		n *= l.bound()
	}
	return n
}

// Registry holds every family of the daemon. It is safe for concurrent use.
type Registry struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	families map[string]Family // by name
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{reg: prometheus.NewRegistry(), families: map[string]Family{}}
}

// Handler serves the registry in the Prometheus exposition formats.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gatherer is the underlying registry, for tests and exporters.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Families lists the declared families, sorted by name (collectors
// registered with Collector are listed by the names they declared).
func (r *Registry) Families() []Family {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Family, 0, len(r.families))
	for _, f := range r.families {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var (
	nameRE  = regexp.MustCompile(`^backend_[a-z][a-z0-9_]*[a-z0-9]$`)
	labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// unboundedLabels are label names that would carry one value per profile,
// node, item or account: refused whatever their declared bound.
var unboundedLabels = []string{"profile", "node", "item", "item_id", "jid", "service", "user", "account", "id"}

// ErrInvalid is wrapped by the errors about a refused declaration.
var ErrInvalid = errors.New("invalid metric declaration")

func (o Opts) check(kind string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrInvalid, kind, o.Name, fmt.Sprintf(format, a...))
	}
	if !nameRE.MatchString(o.Name) {
		return bad("the name must match %s", nameRE)
	}
	if kind == "counter" && !strings.HasSuffix(o.Name, "_total") {
		return bad("a counter's name ends in _total")
	}
	if kind != "counter" && strings.HasSuffix(o.Name, "_total") {
		return bad("only counters end in _total")
	}
	help := strings.TrimSpace(o.Help)
	if len(strings.Fields(help)) < 3 || strings.Contains(help, o.Name) {
		return bad("the HELP text must say in words what is measured (got %q)", o.Help)
	}
	seen := map[string]bool{}
	for _, l := range o.Labels {
		if !labelRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__") || l.Name == "le" || l.Name == "quantile" {
			return bad("label name %q is not allowed", l.Name)
		}
		if slices.Contains(unboundedLabels, l.Name) {
			return bad("label %q would carry one value per %s: metrics never name profiles, nodes or items", l.Name, l.Name)
		}
		if seen[l.Name] {
			return bad("label %q twice", l.Name)
		}
		seen[l.Name] = true
		switch {
		case l.Values != nil && l.Max != 0, l.Values == nil && l.Max == 0:
			return bad("label %q needs exactly one bound: Values or Max", l.Name)
		case l.Values != nil && (len(l.Values) == 0 || len(l.Values) > MaxLabelValues):
			return bad("label %q: 1 to %d values", l.Name, MaxLabelValues)
		case l.Max < 0 || l.Max > MaxLabelValues:
			return bad("label %q: Max must be 1..%d", l.Name, MaxLabelValues)
		}
		if slices.Contains(l.Values, Other) {
			return bad("label %q: %q is reserved for values outside the bound", l.Name, Other)
		}
	}
	return nil
}

// register records the family and registers c.
func (r *Registry) register(owner, kind string, o Opts, c prometheus.Collector) error {
	if owner == "" {
		return fmt.Errorf("%w: %s %s: no owner", ErrInvalid, kind, o.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, dup := r.families[o.Name]; dup {
		return fmt.Errorf("%w: %s is already declared by %s", ErrInvalid, o.Name, f.Owner)
	}
	if err := r.reg.Register(c); err != nil {
		return fmt.Errorf("register %s: %w", o.Name, err)
	}
	r.families[o.Name] = Family{Name: o.Name, Help: o.Help, Type: kind, Owner: owner, Labels: slices.Clone(o.Labels)}
	return nil
}

// bounds maps label values into their bounds.
type bounds struct {
	labels []Label
	fixed  []map[string]bool // per label, for Values labels

	mu   sync.Mutex
	seen []map[string]bool // per label, for Max labels
}

func newBounds(ls []Label) *bounds {
	b := &bounds{labels: ls, fixed: make([]map[string]bool, len(ls)), seen: make([]map[string]bool, len(ls))}
	for i, l := range ls {
		if l.Values != nil {
			b.fixed[i] = map[string]bool{}
			for _, v := range l.Values {
				b.fixed[i][v] = true
			}
		} else {
			b.seen[i] = map[string]bool{}
		}
	}
	return b
}

// apply returns values with those outside their label's bound replaced
// by Other (values itself is never modified). A wrong number of values is
// a programming error: it panics, as client_golang does.
func (b *bounds) apply(values []string) []string {
	if len(values) != len(b.labels) {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), len(b.labels)))
	}
	out := values
	other := func(i int) {
		if &out[0] == &values[0] {
			out = slices.Clone(values)
		}
		out[i] = Other
	}
	for i, v := range values {
		if m := b.fixed[i]; m != nil {
			if !m[v] {
				other(i)
			}
			continue
		}
		b.mu.Lock()
		if !b.seen[i][v] {
			if len(b.seen[i]) < b.labels[i].Max {
				b.seen[i][v] = true
			} else {
				other(i)
			}
		}
		b.mu.Unlock()
	}
	return out
}

// combinations returns every combination of the labels' Values (nil when
// a label has no fixed values, or when there would be more than limit).
func combinations(ls []Label, limit int) [][]string {
	out := [][]string{{}}
	for _, l := range ls {
		if l.Values == nil || len(out)*len(l.Values) > limit {
			return nil
		}
		var next [][]string
		for _, prefix := range out {
			for _, v := range l.Values {
				next = append(next, append(slices.Clone(prefix), v))
			}
		}
		out = next
	}
	return out
}

func names(ls []Label) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}

// preinit is the largest number of series created at zero on declaration.
const preinit = 1024

// Counter is a declared counter family.
type Counter struct {
	vec *prometheus.CounterVec
	b   *bounds
}

// With returns the counter of the given label values (in declaration
// order), values outside the bounds replaced by Other.
func (c *Counter) With(values ...string) prometheus.Counter {
	return c.vec.WithLabelValues(c.b.apply(values)...)
}

// Counter declares a counter family for owner.
func (r *Registry) Counter(owner string, o Opts) (*Counter, error) {
	if err := o.check("counter"); err != nil {
		return nil, err
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: o.Name, Help: o.Help}, names(o.Labels))
	if err := r.register(owner, "counter", o, vec); err != nil {
		return nil, err
	}
	for _, vs := range combinations(o.Labels, preinit) {
		vec.WithLabelValues(vs...)
	}
	return &Counter{vec: vec, b: newBounds(o.Labels)}, nil
}

// Gauge is a declared gauge family.
type Gauge struct {
	vec *prometheus.GaugeVec
	b   *bounds
}

// With returns the gauge of the given label values, values outside the
// bounds replaced by Other.
func (g *Gauge) With(values ...string) prometheus.Gauge {
	return g.vec.WithLabelValues(g.b.apply(values)...)
}

// Gauge declares a gauge family for owner.
func (r *Registry) Gauge(owner string, o Opts) (*Gauge, error) {
	if err := o.check("gauge"); err != nil {
		return nil, err
	}
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: o.Name, Help: o.Help}, names(o.Labels))
	if err := r.register(owner, "gauge", o, vec); err != nil {
		return nil, err
	}
	for _, vs := range combinations(o.Labels, preinit) {
		vec.WithLabelValues(vs...)
	}
	return &Gauge{vec: vec, b: newBounds(o.Labels)}, nil
}

// Histogram is a declared histogram family.
type Histogram struct {
	vec *prometheus.HistogramVec
	b   *bounds
}

// With returns the histogram of the given label values, values outside
// the bounds replaced by Other.
func (h *Histogram) With(values ...string) prometheus.Observer {
	return h.vec.WithLabelValues(h.b.apply(values)...)
}

// Histogram declares a histogram family for owner.
func (r *Registry) Histogram(owner string, o Opts) (*Histogram, error) {
	if err := o.check("histogram"); err != nil {
		return nil, err
	}
	buckets := o.Buckets
	if buckets == nil {
		buckets = CallBuckets
	}
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: o.Name, Help: o.Help, Buckets: buckets}, names(o.Labels))
	if err := r.register(owner, "histogram", o, vec); err != nil {
		return nil, err
	}
	for _, vs := range combinations(o.Labels, preinit) {
		vec.WithLabelValues(vs...)
	}
	return &Histogram{vec: vec, b: newBounds(o.Labels)}, nil
}

// Sample is one series of a gauge or counter read at scrape time.
type Sample struct {
	// Values are the label values, in declaration order.
	Values []string
	Value  float64
}

// funcCollector reads its series at scrape time.
type funcCollector struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	b    *bounds
	read func() []Sample
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	sums := map[string]float64{}
	var order []string
	byKey := map[string][]string{}
	for _, s := range c.read() {
		vs := c.b.apply(s.Values)
		k := strings.Join(vs, "\xff")
		if _, ok := sums[k]; !ok {
			order = append(order, k)
			byKey[k] = vs
		}
		sums[k] += s.Value // values folded into Other add up
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(c.desc, c.typ, sums[k], byKey[k]...)
	}
}

// GaugeFunc declares a gauge family whose series read returns at each
// scrape (a state held elsewhere: sessions by state, queue depths). read
// must be quick and must not block on I/O.
func (r *Registry) GaugeFunc(owner string, o Opts, read func() []Sample) error {
	if err := o.check("gauge"); err != nil {
		return err
	}
	c := &funcCollector{desc: prometheus.NewDesc(o.Name, o.Help, names(o.Labels), nil), typ: prometheus.GaugeValue,
		b: newBounds(o.Labels), read: read}
	return r.register(owner, "gauge", o, c)
}

// CounterFunc declares a counter family whose series read returns at each
// scrape (a monotonic count kept elsewhere, e.g. plugin restarts).
func (r *Registry) CounterFunc(owner string, o Opts, read func() []Sample) error {
	if err := o.check("counter"); err != nil {
		return err
	}
	c := &funcCollector{desc: prometheus.NewDesc(o.Name, o.Help, names(o.Labels), nil), typ: prometheus.CounterValue,
		b: newBounds(o.Labels), read: read}
	return r.register(owner, "counter", o, c)
}

// Runtime registers the Go runtime and process collectors (go_*,
// process_*), outside the backend_ namespace and its checks.
func (r *Registry) Runtime() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(
		r.reg.Register(goCollector()),
		r.reg.Register(processCollector()),
	)
}
