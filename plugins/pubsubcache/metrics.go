package pubsubcache

import (
	"sync/atomic"
	"time"

	"example.org/backend/core/metrics"
)

// cacheMetrics are the cache's metric families (docs/operations.md). The
// histogram and counter are the metrics registry's; the gauges read the
// parts that own their state (the node table, the writer's queue, the
// parse queue) at scrape time, and the count of items waiting for a parser
// that a refresher (refreshPending) reads from the database.
type cacheMetrics struct {
	syncs     *metrics.Histogram
	answers   *metrics.Counter
	unchanged *metrics.Counter
	checks    *metrics.Counter
	// pending is the number of items whose parse is pending, as last read.
	pending atomic.Int64
}

// typeLabel bounds the analyser types a label carries.
var typeLabel = metrics.Label{Name: "type", Max: 32}

// declareMetrics declares the cache's families on the host's registry.
func (p *Plugin) declareMetrics() error {
	reg := p.h.Metrics
	if reg == nil {
		return nil
	}
	m := &cacheMetrics{}
	var err error
	if m.syncs, err = reg.Histogram(ImportName, metrics.Opts{Name: "backend_cache_sync_duration_seconds",
		Help:   "Duration of node syncs until usable (listings and parse), by the node's analyser type and how they ended.",
		Labels: []metrics.Label{typeLabel, {Name: "outcome", Values: []string{"complete", "partial", "error", "interrupted"}}}, Buckets: metrics.SlowBuckets}); err != nil {
		return err
	}
	if m.answers, err = reg.Counter(ImportName, metrics.Opts{Name: "backend_cache_answers_total",
		Help:   "Items requests the cache saw, by what it did and the node's analyser type.",
		Labels: []metrics.Label{{Name: "outcome", Values: []string{"hit", "miss", "bypass", "stale"}}, typeLabel}}); err != nil {
		return err
	}
	if m.unchanged, err = reg.Counter(ImportName, metrics.Opts{Name: "backend_cache_unchanged_items_total",
		Help: "Listed items the same as stored (same payload, parsed by the same parser version): not parsed, written nor indexed again."}); err != nil {
		return err
	}
	if m.checks, err = reg.Counter(ImportName, metrics.Opts{Name: "backend_cache_checked_reads_total",
		Help:   "Reads of nodes whose retractions are notified to no one, checked against the service's id listing first, by how the check ended (matched: answered from the cache).",
		Labels: []metrics.Label{{Name: "outcome", Values: []string{"matched", "differed", "failed"}}}}); err != nil {
		return err
	}
	states := []string{string(StateNever), string(StateNoSync), string(StateInProgress), string(StateComplete), string(StatePartial), string(StateError)}
	if err := reg.GaugeFunc(ImportName, metrics.Opts{Name: "backend_cache_nodes", Help: "Nodes the cache knows, by sync state.",
		Labels: []metrics.Label{{Name: "state", Values: states}}}, func() []metrics.Sample {
		counts := map[string]float64{}
		for _, k := range p.nodes.keys(nil) {
			if n, ok := p.nodes.get(k); ok {
				counts[string(n.state)]++
			}
		}
		out := make([]metrics.Sample, 0, len(states))
		for _, s := range states {
			out = append(out, metrics.Sample{Values: []string{s}, Value: counts[s]})
		}
		return out
	}); err != nil {
		return err
	}
	gauges := []struct {
		name, help string
		read       func() int64
	}{
		{"backend_cache_items_pending_parse", "Cached items waiting for their parser (down, or busy), as read every 15 seconds.", m.pending.Load},
		{"backend_cache_writer_queue_depth", "Writes (notifications, sync pages, parse results) waiting for the cache's writer.", func() int64 { return int64(p.w.depth()) }},
		{"backend_cache_parse_backlog_items", "Items the parse queue holds in memory, waiting for a parser call (at most 5000; more wait in the database).", func() int64 { return int64(p.parse.heldItems()) }},
	}
	for _, g := range gauges {
		read := g.read
		if err := reg.GaugeFunc(ImportName, metrics.Opts{Name: g.name, Help: g.help}, func() []metrics.Sample {
			return []metrics.Sample{{Value: float64(read())}}
		}); err != nil {
			return err
		}
	}
	p.metrics = m
	p.wg.Add(1)
	go p.refreshPending()
	return nil
}

// refreshPending reads how many items wait for a parser, every 15 seconds.
func (p *Plugin) refreshPending() {
	defer p.wg.Done()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		if n, err := p.store.countAllPending(p.ctx); err == nil {
			p.metrics.pending.Store(int64(n))
		}
		select {
		case <-tick.C:
		case <-p.ctx.Done():
			return
		}
	}
}

// answered counts an answer of the GetItems handler.
func (p *Plugin) answered(outcome, typ string) {
	if p.metrics != nil {
		p.metrics.answers.With(outcome, orNone(typ)).Inc()
	}
}

// checks counts a checked read (idsMatch) by how it ended.
func (p *Plugin) checks(outcome string) {
	if p.metrics != nil {
		p.metrics.checks.With(outcome).Inc()
	}
}

// unchangedItems counts listed items that were the same as stored.
func (p *Plugin) unchangedItems(n int) {
	if p.metrics != nil {
		p.metrics.unchanged.With().Add(float64(n))
	}
}

// synced records a sync that ended.
func (p *Plugin) synced(typ, outcome string, took time.Duration) {
	if p.metrics != nil {
		p.metrics.syncs.With(orNone(typ), outcome).Observe(took.Seconds())
	}
}

func orNone(typ string) string {
	if typ == "" {
		return "none"
	}
	return typ
}
