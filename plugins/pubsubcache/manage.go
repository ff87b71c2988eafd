package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"example.org/backend/core"
	"example.org/backend/plugins/xep0060"
)

// The cache's own operations (`backend cache get|sync|status|purge|reset`).

// Errors of the cache's own API.
var (
	// ErrNotCached means the node is not in the cache.
	ErrNotCached = errors.New("node is not cached")
	// ErrUnsupported means the request shape cannot be answered from the
	// cache yet.
	ErrUnsupported = errors.New("request shape not answered from the cache")
)

// Get answers an items request from the cache only: what is cached, with
// Complete false when the node is not completely cached and Stale when it
// is not fresh.
func (p *Plugin) Get(ctx context.Context, req *xep0060.ItemsRequest) (*xep0060.ItemsPage, error) {
	if req.Profile == "" || req.Node == "" {
		return nil, fmt.Errorf("%w: a profile and a node are required", xep0060.ErrInvalidRequest)
	}
	if shapeOf(req) != shapeNoRSM {
		return nil, fmt.Errorf("%w: RSM and subscription ids are not answered from the cache yet", ErrUnsupported)
	}
	svc, err := p.c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return nil, err
	}
	k := nodeKey{req.Profile, svc, req.Node}
	n, ok := p.nodes.get(k)
	if !ok || n.state == StateNever && n.syncedAt.IsZero() || n.state == StateNoSync {
		return nil, fmt.Errorf("%s on %s (profile %s): %w (sync it with `backend cache sync`)", req.Node, svc, req.Profile, ErrNotCached)
	}
	f, err := p.readFacts(ctx, facts{cursor: -1}, n, svc, req)
	if err != nil {
		return nil, err
	}
	if _, why, ok := answerable(req, f); !ok {
		return nil, fmt.Errorf("%w: %s for %s (ask without -i, or ask the service once)", ErrUnsupported, why, svc)
	}
	page, _, err := p.read(ctx, n, req, f.beh, window{})
	if err != nil {
		// A damaged stored payload is never shown: the node is synced again.
		p.healDamaged(ctx, k, err)
		return nil, err
	}
	page.Complete = page.Complete && n.state == StateComplete
	page.Stale = !n.fresh || !n.followed() // retractions notified to no one: may differ
	return page, nil
}

// Sync starts (or joins) the sync of any node, whatever the analysers say;
// the returned job tells progress and outcome.
func (p *Plugin) Sync(ctx context.Context, profileName, service, node string) (*SyncJob, error) {
	if profileName == "" || node == "" {
		return nil, fmt.Errorf("%w: a profile and a node are required", xep0060.ErrInvalidRequest)
	}
	svc, err := p.c.Service(ctx, profileName, service)
	if err != nil {
		return nil, err
	}
	if !p.online(profileName) {
		return nil, fmt.Errorf("profile %s: %w", profileName, core.ErrNotConnected)
	}
	k := nodeKey{profileName, svc, node}
	if err := p.w.run(ctx, func(ctx context.Context, t *wtx) error { _, err := t.ensure(ctx, k); return err }); err != nil {
		return nil, err
	}
	return p.sync.launch(k, true), nil
}

// NodeStatus is one line of `cache status`.
type NodeStatus struct {
	Profile   string
	Service   string
	Node      string
	Analyser  *string
	Type      *string
	Subtype   *string
	State     string
	Fresh     bool
	Items     int
	LastSync  *time.Time
	Attempts  int
	LastError *string
	// ParsePending is how many items wait for their parser.
	ParsePending int
	// Capacity is how many items the service keeps (nil: unknown), and
	// CapacitySource where that was learned.
	Capacity       *int
	CapacitySource *string
	// Method is how the last sync since the daemon started made the node
	// complete (full, ids+newest, ids: reconcile.go); nil when none.
	Method *string
}

// Status lists cached nodes, filtered by profile, service and node when
// not empty, sorted by profile, service, node.
func (p *Plugin) Status(ctx context.Context, profileName, service, node string) ([]NodeStatus, error) {
	if profileName != "" {
		if _, err := p.store.profileID(ctx, profileName); err != nil {
			return nil, fmt.Errorf("profile %s: %w", profileName, core.ErrUnknownProfile)
		}
		if service == "" && node != "" {
			if svc, err := p.c.Service(ctx, profileName, ""); err == nil {
				service = svc
			}
		}
	}
	keys := p.nodes.keys(func(k nodeKey, _ nodeInfo) bool {
		return (profileName == "" || k.profile == profileName) && (service == "" || k.service == service) && (node == "" || k.node == node)
	})
	type row struct {
		k nodeKey
		n nodeInfo
	}
	rows := make([]row, 0, len(keys))
	ids := make([]int, 0, len(keys))
	for _, k := range keys {
		if n, ok := p.nodes.get(k); ok {
			rows = append(rows, row{k, n})
			ids = append(ids, n.id)
		}
	}
	counts, err := p.store.countItems(ctx, ids, false)
	if err != nil {
		return nil, err
	}
	pending, err := p.store.countItems(ctx, ids, true)
	if err != nil {
		return nil, err
	}
	out := make([]NodeStatus, 0, len(rows))
	for _, r := range rows {
		n := r.n
		s := NodeStatus{Profile: r.k.profile, Service: r.k.service, Node: r.k.node, Analyser: nilIfEmpty(n.analyser), Type: nilIfEmpty(n.typ),
			Subtype: nilIfEmpty(n.subtype), State: string(n.state), Fresh: n.fresh, Items: counts[n.id], Attempts: n.attempts,
			LastError: nilIfEmpty(n.lastError), ParsePending: pending[n.id], Method: nilIfEmpty(n.method)}
		if !n.syncedAt.IsZero() {
			t := n.syncedAt.UTC().Truncate(time.Second)
			s.LastSync = &t
		}
		if lim := n.limit(); lim > 0 {
			src := n.capSource
			s.Capacity, s.CapacitySource = &lim, &src
		}
		out = append(out, s)
	}
	return out, nil
}

// PurgeFilter selects what `cache purge` removes; empty lists match all.
type PurgeFilter struct {
	Profiles, Services, Nodes, Types, Subtypes []string
	CreatedBefore, UpdatedBefore               *time.Time
}

// match reports whether the node is selected by f.
func (f PurgeFilter) match(k nodeKey, n nodeInfo) bool {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	return in(f.Profiles, k.profile) && in(f.Services, k.service) && in(f.Nodes, k.node) &&
		(len(f.Types) == 0 || n.typ != "" && slices.Contains(f.Types, n.typ)) && in(f.Subtypes, n.subtype)
}

// Purge removes cached items matching f; the nodes they belonged to are no
// longer complete (answered by the network until synced again). It returns
// how many nodes were touched and items removed.
func (p *Plugin) Purge(ctx context.Context, f PurgeFilter) (nodes, items int, err error) {
	for _, name := range f.Profiles {
		if _, err := p.store.profileID(ctx, name); err != nil {
			return 0, 0, fmt.Errorf("profile %s: %w", name, core.ErrUnknownProfile)
		}
	}
	for _, k := range p.nodes.keys(f.match) {
		var removed int
		var touched bool
		err := p.w.run(ctx, func(ctx context.Context, t *wtx) error {
			removed, touched = 0, false
			n, ok := t.node(k)
			if !ok {
				return nil
			}
			var remaining int
			var err error
			if removed, remaining, err = p.store.purgeItems(ctx, t.c, n.id, f.CreatedBefore, f.UpdatedBefore); err != nil {
				return err
			}
			if removed == 0 && remaining > 0 {
				return nil
			}
			touched = true
			_, _, err = t.transition(ctx, k, event{kind: evPurged, remaining: remaining})
			return err
		})
		if err != nil {
			return nodes, items, err
		}
		items += removed
		if touched {
			nodes++
		}
	}
	return nodes, items, nil
}

// Reset removes every cached node and item of every profile.
func (p *Plugin) Reset(ctx context.Context) (int, error) {
	var n int
	err := p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		var err error
		if n, err = p.store.deleteAllNodes(ctx, t.c); err != nil {
			return err
		}
		keys := p.nodes.keys(nil)
		for _, k := range keys {
			t.changes[k] = nil
		}
		t.afterwards(func() {
			for _, k := range keys {
				p.pubs.forgetNode(k)
			}
			p.learn.forgetArrivals(func(nodeKey) bool { return false })
		})
		return nil
	})
	return n, err
}
