package pubsubcache

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/analysers"
	"example.org/backend/core/connections"
	"example.org/backend/core/params"
	"example.org/backend/core/profiles"
	"example.org/backend/core/storage"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// ImportName is the plugin's import name.
const ImportName = "pubsubcache"

// Version is the plugin's version.
const Version = "0.2.0"

// Parameter keys (category "cache").
const (
	KeyEnabled     = "cache.enabled"
	KeyItemLimit   = "cache.item_limit"
	KeyAnalysers   = "cache.analysers"
	KeyConcurrency = "cache.sync_concurrency"
	KeyReconcile   = "cache.reconcile"
)

// Counters of the cache (shown by `backend status`).
const (
	CounterHits   = "cache_hits"
	CounterMisses = "cache_misses"
	CounterBypass = "cache_bypasses"
	CounterStale  = "cache_stale_answers"
)

// Plugin is the built-in pubsub cache: the wiring of its parts (see the
// package doc). Its fields are set by Init and not changed after.
type Plugin struct {
	xp  *xep0060.Plugin
	c   *xep0060.Client
	h   *core.Host
	log *slog.Logger

	store     *nodeStore
	nodes     *nodeTable
	w         *writer
	sync      *syncer
	learn     *learner
	defaults  *serviceDefaults
	parse     *parseQueue
	pubs      *publishes
	params    *paramCache
	index     *searchIndex
	analysers analyserSet
	inflight  *analyses
	search    *search.Searcher
	metrics   *cacheMetrics

	hits, misses, bypass, stale *atomic.Int64
	// checkRequests counts the items requests checked reads sent
	// (checkHeld), which are not a read's own.
	checkRequests atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// pageSize is the RSM page size of syncs (tests lower it).
	pageSize int
	// reconcileMode, when set (benchmarks), overrides cache.reconcile for
	// every profile (reconcile.go). Set before the plugin starts, or
	// between syncs.
	reconcileMode string
	// pendingTimeout is how long a published item waits for its
	// notification before it is fetched by id.
	pendingTimeout time.Duration
}

var (
	_ core.Initializer = (*Plugin)(nil)
	_ core.Binder      = (*Plugin)(nil)
	_ core.Closer      = (*Plugin)(nil)
)

// New returns the cache plugin on top of the pubsub plugin xp.
func New(xp *xep0060.Plugin) *Plugin {
	return &Plugin{xp: xp, pageSize: 250, pendingTimeout: 5 * time.Second}
}

// Info implements core.Plugin.
func (p *Plugin) Info() core.PluginInfo {
	return core.PluginInfo{
		Name:         "Pubsub cache",
		ImportName:   ImportName,
		Version:      Version,
		Description:  "Caches pubsub nodes whole, answers items requests from the database exactly as the service would, keeps them fresh with notifications.",
		Dependencies: []string{xep0060.ImportName},
	}
}

// Declarations are the cache's per-profile parameters.
func Declarations() []params.Decl {
	return []params.Decl{
		{Category: "cache", Name: "enabled", Type: params.TypeBool, Default: "true",
			Help: "Answer items requests from the pubsub cache and keep synced nodes fresh."},
		{Category: "cache", Name: "item_limit", Type: params.TypeInt, Default: "10000", Min: params.Int64(1),
			Help: "Largest number of items cached per node; a larger node is cached partially."},
		{Category: "cache", Name: "analysers", Type: params.TypeList, Default: "",
			Help: "Analysers that apply to this profile's nodes (empty: all)."},
		{Category: "cache", Name: "sync_concurrency", Type: params.TypeInt, Default: "2", Min: params.Int64(1), Max: params.Int64(16),
			Help: "Node syncs running at the same time for this profile."},
		{Category: "cache", Name: "reconcile", Type: params.TypeEnum, Default: reconcileExact, Choices: []string{reconcileExact, reconcileIDs, reconcileFull},
			Help: "How a node is reconciled after a disconnection: exact (by difference where the service allows an exact one, else whole), ids (by difference also where updates in place would be missed), full (whole)."},
	}
}

// Init declares the parameters, loads the nodes (nothing is fresh after a
// restart), starts the writer and the parse queue, and registers the API.
func (p *Plugin) Init(ctx context.Context, h *core.Host) error {
	if p.xp == nil || p.xp.Client() == nil {
		return errors.New("pubsub cache: the xep0060 plugin is not started")
	}
	if h.Store == nil {
		return errors.New("pubsub cache: no database")
	}
	p.h, p.c = h, p.xp.Client()
	p.log = h.Log.With("plugin", ImportName)
	p.analysers = analyserSet{h.Analysers}
	p.store = newNodeStore(h.Store)
	p.nodes = newNodeTable()
	p.params = &paramCache{h: h, log: p.log, m: map[string]profileParams{}}
	p.learn = newLearner(p)
	p.defaults = newServiceDefaults(p.c)
	p.pubs = newPublishes(p)
	p.sync = newSyncer(p)
	p.inflight = &analyses{inflight: map[nodeKey]bool{}}
	p.index = &searchIndex{p: p}
	p.hits, p.misses = h.Counters.Get(CounterHits), h.Counters.Get(CounterMisses)
	p.bypass, p.stale = h.Counters.Get(CounterBypass), h.Counters.Get(CounterStale)
	if err := h.Params.Declare(ImportName, Declarations()...); err != nil {
		return fmt.Errorf("declare cache parameters: %w", err)
	}
	// Before any write: expression indexes of the raw-JSON form would
	// refuse packed documents.
	if err := search.DropStaleAutoIndexes(ctx, h.Store); err != nil {
		return fmt.Errorf("pubsub cache: %w", err)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.w = newWriter(p)
	interrupted, err := p.w.loadNodes(ctx)
	if err != nil {
		return err
	}
	// Syncs the daemon's end interrupted (kill -9 included) start again
	// when their profile connects; meanwhile the node is not served.
	if interrupted > 0 {
		p.log.Info("syncs interrupted by the last stop start again when their profile connects", "nodes", interrupted)
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.w.loop(p.ctx) }()
	p.parse = newParseQueue(p)
	p.wg.Add(1)
	go p.parse.rescan()
	if err := p.declareMetrics(); err != nil {
		return fmt.Errorf("declare cache metrics: %w", err)
	}
	if err := p.registerAPI(); err != nil {
		return err
	}
	if p.search, err = p.index.start(ctx); err != nil {
		return fmt.Errorf("start cache search: %w", err)
	}
	return nil
}

// Bindings: the cache answers GetItems and observes answers, notifications,
// the profile's own pubsub operations, the sessions and the profiles.
func (p *Plugin) Bindings() []triggers.Binding {
	return []triggers.Binding{
		triggers.Intercept(xep0060.GetItems, triggers.PriorityCache, p.getItems),
		triggers.Observe(xep0060.ItemsReceived, triggers.PriorityDefault, p.itemsReceived),
		triggers.Observe(xep0060.EventItems, triggers.PriorityDefault, p.onItems),
		triggers.Observe(xep0060.EventPurge, triggers.PriorityDefault, p.onPurge),
		triggers.Observe(xep0060.EventDelete, triggers.PriorityDefault, p.onDelete),
		triggers.Observe(xep0060.EventConfiguration, triggers.PriorityDefault, p.onConfiguration),
		triggers.Observe(xep0060.EventSubscription, triggers.PriorityDefault, p.onSubscription),
		triggers.Observe(xep0060.Published, triggers.PriorityDefault, p.onPublished),
		triggers.Observe(xep0060.Retracted, triggers.PriorityDefault, p.onRetracted),
		triggers.Observe(xep0060.NodeChanged, triggers.PriorityDefault, p.onNodeChanged),
		triggers.Observe(connections.Disconnected, triggers.PriorityDefault, p.onDisconnected),
		triggers.Observe(connections.Connected, triggers.PriorityDefault, p.onConnected),
		triggers.Observe(connections.Resumed, triggers.PriorityDefault, p.onResumed),
		triggers.Observe(profiles.ParamChanged, triggers.PriorityDefault, p.onParamChanged),
		triggers.Observe(profiles.Deleted, triggers.PriorityDefault, p.onProfileDeleted),
		core.Bridge(p.h.Events, SyncProgressed, syncProgressEvent),
	}
}

// Close stops the syncs, the parse queue and the writer (queued writes
// are flushed first).
func (p *Plugin) Close(ctx context.Context) error {
	if p.cancel == nil {
		return nil
	}
	p.w.flush(ctx)
	p.cancel()
	p.wg.Wait()
	if p.index.auto != nil {
		p.index.auto.Close()
	}
	return nil
}

// Searcher returns the cache's search engine.
func (p *Plugin) Searcher() *search.Searcher { return p.search }

// profileParams are a profile's cache parameters.
type profileParams struct {
	enabled     bool
	limit       int
	analysers   []string
	concurrency int
	// reconcile is cache.reconcile (reconcile.go).
	reconcile string
}

func defaultParams() profileParams {
	return profileParams{enabled: true, limit: 10000, concurrency: 2, reconcile: reconcileExact}
}

// allowed returns the analyser filter of a profile (nil: all).
func (pp profileParams) allowed() func(string) bool {
	if len(pp.analysers) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, a := range pp.analysers {
		set[analysers.Normalize(a)] = true
	}
	return func(name string) bool { return set[name] }
}

// paramCache holds each profile's cache parameters, read from the
// profiles on first use and forgotten when one changes; mu guards the map
// only.
type paramCache struct {
	h   *core.Host
	log *slog.Logger

	mu sync.Mutex
	m  map[string]profileParams
}

// of returns the profile's cache parameters.
func (c *paramCache) of(ctx context.Context, profileName string) profileParams {
	c.mu.Lock()
	v, ok := c.m[profileName]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = defaultParams()
	values := map[string]string{}
	res, err := c.h.ProfileParams(ctx, profileName)
	if errors.Is(err, core.ErrNoParamSource) {
		err = nil // no profiles service on the host: the defaults
	} else if err != nil {
		c.log.Warn("cache parameters unavailable, using defaults", "profile", profileName, "err", err)
	}
	for _, r := range res {
		values[r.Decl.Key()] = r.Value
	}
	if s, ok := values[KeyEnabled]; ok {
		if b, err := params.ParseBool(s); err == nil {
			v.enabled = b
		}
	}
	if s, ok := values[KeyItemLimit]; ok {
		if n, err := params.ParseInt(s); err == nil && n >= 1 {
			v.limit = int(n)
		}
	}
	if s, ok := values[KeyConcurrency]; ok {
		if n, err := params.ParseInt(s); err == nil && n >= 1 && n <= 16 {
			v.concurrency = int(n)
		}
	}
	if s, ok := values[KeyReconcile]; ok && (s == reconcileIDs || s == reconcileFull) {
		v.reconcile = s
	}
	if s, ok := values[KeyAnalysers]; ok && s != "" {
		if l, err := params.ParseList(s); err == nil {
			v.analysers = l
		}
	}
	if err == nil {
		c.mu.Lock()
		c.m[profileName] = v
		c.mu.Unlock()
	}
	return v
}

// forget drops a profile's cached parameters (one changed).
func (c *paramCache) forget(profileName string) {
	c.mu.Lock()
	delete(c.m, profileName)
	c.mu.Unlock()
}

// online reports whether the profile has a connected session.
func (p *Plugin) online(profileName string) bool {
	if p.h.Sessions == nil {
		return false
	}
	_, err := p.h.Sessions.Session(profileName)
	return err == nil
}

// isPEP tells whether service is a user's PEP service (a bare account JID).
func isPEP(service string) bool {
	return strings.Contains(service, "@") && !strings.Contains(service, "/")
}

// searchTextOf is the full-text of a parsed item: the payload's text, then
// each line of the parser's text that does not repeat it. A line whose
// terms (case folded) appear in the same order next to each other in the
// payload's text is left out: every word and phrase of it already matches
// (a microblog parser's title and content are the payload's text again).
func searchTextOf(payloadText, parserText string) string {
	parserText = strings.TrimSpace(parserText)
	if parserText == "" {
		return payloadText
	}
	have := foldedTerms(payloadText)
	b := strings.Builder{}
	b.WriteString(payloadText)
	for line := range strings.Lines(parserText) {
		line = strings.TrimSpace(line)
		terms := foldedTerms(line)
		if len(terms) == 0 || containsRun(have, terms) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
	}
	return b.String()
}

// foldedTerms are the full-text terms of s, case folded.
func foldedTerms(s string) []string {
	terms := storage.SearchTerms(s)
	for i, t := range terms {
		terms[i] = strings.ToLower(t)
	}
	return terms
}

// containsRun reports whether run appears in terms as consecutive terms.
func containsRun(terms, run []string) bool {
	for i := 0; i+len(run) <= len(terms); i++ {
		if slices.Equal(terms[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// ftsText is the search_text written with an item. The column only hands
// the text over to the full-text index, whose triggers then blank it (see
// migration 20261202153404_fts_contentless): the empty string means "keep
// the index as it is", so an item without text is written as " " (no
// terms).
func ftsText(text string) string {
	if text == "" {
		return " "
	}
	return text
}

// textOf returns the character data of a payload without markup.
func textOf(payload []byte) string {
	d := xml.NewDecoder(bytes.NewReader(payload))
	d.Strict = false
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if cd, ok := tok.(xml.CharData); ok {
			t := bytes.TrimSpace(cd)
			if len(t) == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.Write(t)
		}
	}
	return b.String()
}
