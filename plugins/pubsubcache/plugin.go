// Package pubsubcache is the built-in pubsub cache (DESIGN §6): it decides
// per node, through the analyser registry, which nodes to cache; syncs them
// whole (RSM pages where the service honours RSM, one request otherwise),
// storing each item's exact payload bytes with its parsed JSON and search
// text; answers items requests on complete, fresh nodes from the database
// with the ids, order and payload bytes the service would give; and keeps
// them fresh with notifications.
//
// The plugin binds xep0060.GetItems at triggers.PriorityCache, observes the
// pubsub events and the session events, declares the cache.* parameters and
// registers the PubSubCacheService API.
//
// Freshness: a node is fresh when it is complete, its notifications are
// secured (subscription, or +notify for PEP nodes) and the profile has not
// been disconnected nor the daemon restarted since it was synced. A node
// that is not fresh goes to the network while the profile is online, and a
// reconciliation (a new sync) starts; while the profile is offline it is
// answered from the cache with stale: true.
package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core"
	"example.org/backend/core/analysers"
	"example.org/backend/core/connections"
	"example.org/backend/core/params"
	"example.org/backend/core/profiles"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// ImportName is the plugin's import name.
const ImportName = "pubsubcache"

// Version is the plugin's version.
const Version = "0.1.0"

// Parameter keys (category "cache").
const (
	KeyEnabled     = "cache.enabled"
	KeyItemLimit   = "cache.item_limit"
	KeyAnalysers   = "cache.analysers"
	KeyConcurrency = "cache.sync_concurrency"
)

// Counters of the cache (shown by `backend status`).
const (
	CounterHits   = "cache_hits"
	CounterMisses = "cache_misses"
	CounterBypass = "cache_bypasses"
	CounterStale  = "cache_stale_answers"
)

// Plugin is the built-in pubsub cache.
type Plugin struct {
	xp  *xep0060.Plugin
	c   *xep0060.Client
	h   *core.Host
	log *slog.Logger
	db  *db
	beh *behaviours

	hits, misses, bypass, stale *atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	w      *writer

	// rowMu serialises read-modify-writes of node rows (modify).
	rowMu    sync.Mutex
	mu       sync.Mutex
	nodes    map[nodeKey]*nodeInfo // nil value: known to have no row
	pids     map[string]int
	params   map[string]profileParams
	pending  map[nodeKey]map[string]bool
	jobs     map[nodeKey]*SyncJob
	sems     map[string]chan struct{}
	notified map[string]bool
	probing  map[nodeKey]map[string]bool // re-published ids being learned
	queued   map[nodeKey]int             // item writes waiting in the writer
	// notifiedAt: when items were last notified (notifiedN entries).
	notifiedAt map[nodeKey]map[string]time.Time
	notifiedN  int
	search     *search.Searcher
	built      []string // indexed paths the side table is complete for
	reindexing bool
	// resume: nodes whose sync the last stop interrupted (restarted when
	// their profile connects).
	resume map[nodeKey]bool
	// reparseNudge wakes the reparser (a parse batch failed).
	reparseNudge chan struct{}

	// pageSize is the RSM page size of syncs (tests lower it).
	pageSize int
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
	}
}

// Init declares the parameters, loads nothing eagerly, marks every node not
// fresh (a restart loses the notification flow) and registers the API.
func (p *Plugin) Init(ctx context.Context, h *core.Host) error {
	if p.xp == nil || p.xp.Client() == nil {
		return errors.New("pubsub cache: the xep0060 plugin is not started")
	}
	if h.Store == nil {
		return errors.New("pubsub cache: no database")
	}
	p.h, p.c = h, p.xp.Client()
	p.log = h.Log.With("plugin", ImportName)
	p.db = &db{store: h.Store, indexPaths: p.indexedPaths, index: search.IndexItem}
	p.beh = newBehaviours(h.Store.Client)
	p.hits, p.misses = h.Counters.Get(CounterHits), h.Counters.Get(CounterMisses)
	p.bypass, p.stale = h.Counters.Get(CounterBypass), h.Counters.Get(CounterStale)
	p.nodes, p.pids, p.params = map[nodeKey]*nodeInfo{}, map[string]int{}, map[string]profileParams{}
	p.pending, p.jobs, p.sems, p.notified = map[nodeKey]map[string]bool{}, map[nodeKey]*SyncJob{}, map[string]chan struct{}{}, map[string]bool{}
	p.probing, p.queued, p.notifiedAt = map[nodeKey]map[string]bool{}, map[nodeKey]int{}, map[nodeKey]map[string]time.Time{}
	if err := h.Params.Declare(ImportName, Declarations()...); err != nil {
		return fmt.Errorf("declare cache parameters: %w", err)
	}
	// Restart: nothing is fresh, and a sync that was running is gone.
	if _, err := h.Store.Client.PubsubNode.Update().Where(pubsubnode.Fresh(true)).SetFresh(false).Save(ctx); err != nil {
		return fmt.Errorf("mark cached nodes not fresh: %w", err)
	}
	// Syncs the daemon's end interrupted (kill -9 included) start again
	// when their profile connects; meanwhile the node is not served.
	interrupted, err := h.Store.Client.PubsubNode.Query().Where(pubsubnode.SyncStateEQ(StateInProgress)).WithProfile().All(ctx)
	if err != nil {
		return fmt.Errorf("list interrupted syncs: %w", err)
	}
	p.resume = map[nodeKey]bool{}
	for _, r := range interrupted {
		if r.Edges.Profile != nil {
			p.resume[nodeKey{r.Edges.Profile.Name, r.Service, r.Name}] = true
		}
	}
	if _, err := h.Store.Client.PubsubNode.Update().Where(pubsubnode.SyncStateEQ(StateInProgress)).
		SetSyncState(StateNever).SetSyncStateChangedAt(time.Now()).Save(ctx); err != nil {
		return fmt.Errorf("reset interrupted syncs: %w", err)
	}
	if len(interrupted) > 0 {
		p.log.Info("syncs interrupted by the last stop start again when their profile connects", "nodes", len(interrupted))
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.w = newWriter(p)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.w.run(p.ctx) }()
	p.reparseNudge = make(chan struct{}, 1)
	p.wg.Add(1)
	go p.reparser()
	if h.API != nil {
		path, handler := backendv1connect.NewPubSubCacheServiceHandler(&api{p: p},
			h.API.HandlerOptions(connect.WithSendMaxBytes(xep0060.MaxMessageBytes))...)
		if err := h.API.Register(ImportName, path, handler); err != nil {
			return fmt.Errorf("register cache api: %w", err)
		}
	}
	if err := p.startSearch(ctx); err != nil {
		return fmt.Errorf("start cache search: %w", err)
	}
	return nil
}

// Bindings: the cache answers GetItems and observes answers, notifications,
// the profile's own pubsub operations and the sessions.
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
		triggers.Observe(profiles.ParamChanged, triggers.PriorityDefault, p.onParamChanged),
	}
}

// Close stops the syncs and the writer (queued writes are flushed first).
func (p *Plugin) Close(ctx context.Context) error {
	if p.cancel == nil {
		return nil
	}
	p.w.flush(ctx)
	p.cancel()
	p.wg.Wait()
	return nil
}

// indexedPaths is the union of the analysers' declared IndexedPaths, the
// paths the search side table holds.
func (p *Plugin) indexedPaths() []string {
	if p.h.Analysers == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range p.h.Analysers.All() {
		for _, path := range a.IndexedPaths {
			if !seen[path] {
				seen[path] = true
				out = append(out, path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// profileParams are a profile's cache parameters.
type profileParams struct {
	enabled     bool
	limit       int
	analysers   []string
	concurrency int
}

func defaultParams() profileParams {
	return profileParams{enabled: true, limit: 10000, concurrency: 2}
}

// paramsOf returns the profile's cache parameters (cached until one
// changes).
func (p *Plugin) paramsOf(ctx context.Context, profileName string) profileParams {
	p.mu.Lock()
	v, ok := p.params[profileName]
	p.mu.Unlock()
	if ok {
		return v
	}
	v = defaultParams()
	values := map[string]string{}
	res, err := p.h.ProfileParams(ctx, profileName)
	if errors.Is(err, core.ErrNoParamSource) {
		err = nil // no profiles service on the host: the defaults
	} else if err != nil {
		p.log.Warn("cache parameters unavailable, using defaults", "profile", profileName, "err", err)
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
	if s, ok := values[KeyAnalysers]; ok && s != "" {
		if l, err := params.ParseList(s); err == nil {
			v.analysers = l
		}
	}
	if err == nil {
		p.mu.Lock()
		p.params[profileName] = v
		p.mu.Unlock()
	}
	return v
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

// profileID returns (and remembers) the id of a profile.
func (p *Plugin) profileID(ctx context.Context, name string) (int, error) {
	p.mu.Lock()
	id, ok := p.pids[name]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := p.db.profileID(ctx, name)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.pids[name] = id
	p.mu.Unlock()
	return id, nil
}

// node returns the in-memory copy of a node row (loaded on first use); ok
// is false when the node has no row.
func (p *Plugin) node(ctx context.Context, k nodeKey) (nodeInfo, bool, error) {
	p.mu.Lock()
	n, known := p.nodes[k]
	p.mu.Unlock()
	if known {
		if n == nil {
			return nodeInfo{}, false, nil
		}
		return *n, true, nil
	}
	pid, err := p.profileID(ctx, k.profile)
	if err != nil {
		return nodeInfo{}, false, err
	}
	row, ok, err := p.db.loadNode(ctx, pid, k.service, k.node)
	if err != nil {
		return nodeInfo{}, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, known := p.nodes[k]; known {
		if cur == nil {
			return nodeInfo{}, false, nil
		}
		return *cur, true, nil
	}
	if !ok {
		p.nodes[k] = nil
		return nodeInfo{}, false, nil
	}
	row.toSync = p.toSync(row)
	p.nodes[k] = &row
	return row, true, nil
}

// toSync tells whether the node's analyser says to sync it.
func (p *Plugin) toSync(n nodeInfo) bool {
	if n.analyser == "" || p.h.Analysers == nil {
		return false
	}
	a, ok := p.h.Analysers.Lookup(n.analyser)
	return ok && a.ToSync
}

// ensure returns the node, creating its row when missing.
func (p *Plugin) ensure(ctx context.Context, k nodeKey) (nodeInfo, error) {
	if n, ok, err := p.node(ctx, k); err != nil || ok {
		return n, err
	}
	pid, err := p.profileID(ctx, k.profile)
	if err != nil {
		return nodeInfo{}, err
	}
	n, err := p.db.ensureNode(ctx, pid, k.service, k.node)
	if err != nil {
		return nodeInfo{}, err
	}
	n.toSync = p.toSync(n)
	p.mu.Lock()
	if cur := p.nodes[k]; cur != nil {
		n = *cur
	} else {
		p.nodes[k] = &n
	}
	p.mu.Unlock()
	return n, nil
}

// transition applies e to the node, writes the row, then the memory copy.
func (p *Plugin) transition(ctx context.Context, k nodeKey, e event) (nodeInfo, error) {
	if _, err := p.ensure(ctx, k); err != nil {
		return nodeInfo{}, err
	}
	n, _, err := p.modify(ctx, k, func(n *nodeInfo) bool {
		*n = apply(*n, e, time.Now())
		return true
	})
	return n, err
}

// modify is the read-modify-write of a node's row: f changes the current
// copy and says whether to write it. Modifications are serialised (a sync
// finishing and a notification arriving must not write back stale
// copies of each other). ok is false when the node has no row.
func (p *Plugin) modify(ctx context.Context, k nodeKey, f func(n *nodeInfo) bool) (nodeInfo, bool, error) {
	p.rowMu.Lock()
	defer p.rowMu.Unlock()
	n, ok, err := p.node(ctx, k)
	if err != nil || !ok {
		return n, ok, err
	}
	prev := n.state
	if !f(&n) {
		return n, true, nil
	}
	return n, true, p.save(ctx, k, n, n.state != prev)
}

// save writes n as the node's row and memory copy.
func (p *Plugin) save(ctx context.Context, k nodeKey, n nodeInfo, stateChanged bool) error {
	if err := saveNode(ctx, p.h.Store.Client, n, stateChanged); err != nil {
		return err
	}
	p.mu.Lock()
	c := n
	p.nodes[k] = &c
	p.mu.Unlock()
	return nil
}

// forget drops the memory copy of a node (its row was deleted).
func (p *Plugin) forget(k nodeKey) {
	p.mu.Lock()
	p.nodes[k] = nil
	delete(p.pending, k)
	p.mu.Unlock()
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

// publishEvent publishes an API event of the cache.
func (p *Plugin) publishEvent(typ, profileName string, data map[string]any) {
	p.h.Events.Publish(core.Event{Type: typ, Profile: profileName, Time: time.Now().UTC(), Data: data})
}
