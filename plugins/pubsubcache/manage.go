package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"example.org/backend/core"
	"example.org/backend/ent"
	"example.org/backend/ent/predicate"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/plugins/xep0060"
)

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
	n, ok, err := p.node(ctx, k)
	if err != nil {
		return nil, err
	}
	if !ok || n.state == StateNever && n.syncedAt.IsZero() || n.state == StateNoSync {
		return nil, fmt.Errorf("%s on %s (profile %s): %w (sync it with `backend cache sync`)", req.Node, svc, req.Profile, ErrNotCached)
	}
	page, ok, err := p.answer(ctx, k, n, req)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: the order in which %s answers several item ids is not known yet (ask without -i, or ask the service once)", ErrUnsupported, svc)
	}
	page.Complete = page.Complete && n.state == StateComplete
	page.Stale = !n.fresh
	return page, nil
}

// Sync starts (or joins) the sync of a node of any node, whatever the
// analysers say; the returned job tells progress and outcome.
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
	if _, err := p.ensure(ctx, k); err != nil {
		return nil, err
	}
	return p.launch(k, true), nil
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
}

// Status lists cached nodes, filtered by profile, service and node when
// not empty, sorted by profile, service, node.
func (p *Plugin) Status(ctx context.Context, profileName, service, node string) ([]NodeStatus, error) {
	q := p.h.Store.Client.PubsubNode.Query().WithProfile()
	if profileName != "" {
		pid, err := p.profileID(ctx, profileName)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profileName, core.ErrUnknownProfile)
		}
		q.Where(pubsubnode.ProfileID(pid))
		if service == "" && node != "" {
			if svc, err := p.c.Service(ctx, profileName, ""); err == nil {
				service = svc
			}
		}
	}
	if service != "" {
		q.Where(pubsubnode.Service(service))
	}
	if node != "" {
		q.Where(pubsubnode.Name(node))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list cached nodes: %w", err)
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	counts, err := p.db.countItems(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]NodeStatus, 0, len(rows))
	for _, r := range rows {
		s := NodeStatus{Profile: r.Edges.Profile.Name, Service: r.Service, Node: r.Name, Analyser: r.Analyser, Type: r.Type,
			Subtype: r.Subtype, State: string(r.SyncState), Fresh: r.Fresh, Items: counts[r.ID], Attempts: r.Attempts, LastError: r.LastError}
		if r.SyncedAt != nil {
			t := r.SyncedAt.UTC().Truncate(time.Second)
			s.LastSync = &t
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Profile != b.Profile {
			return a.Profile < b.Profile
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Node < b.Node
	})
	return out, nil
}

// PurgeFilter selects what `cache purge` removes; empty lists match all.
type PurgeFilter struct {
	Profiles, Services, Nodes, Types, Subtypes []string
	CreatedBefore, UpdatedBefore               *time.Time
}

// Purge removes cached items matching f; the nodes they belonged to are no
// longer complete (answered by the network until synced again). It returns
// how many nodes were touched and items removed.
func (p *Plugin) Purge(ctx context.Context, f PurgeFilter) (nodes, items int, err error) {
	q := p.h.Store.Client.PubsubNode.Query()
	if len(f.Profiles) > 0 {
		var pids []int
		for _, name := range f.Profiles {
			pid, err := p.profileID(ctx, name)
			if err != nil {
				return 0, 0, fmt.Errorf("profile %s: %w", name, core.ErrUnknownProfile)
			}
			pids = append(pids, pid)
		}
		q.Where(pubsubnode.ProfileIDIn(pids...))
	}
	if len(f.Services) > 0 {
		q.Where(pubsubnode.ServiceIn(f.Services...))
	}
	if len(f.Nodes) > 0 {
		q.Where(pubsubnode.NameIn(f.Nodes...))
	}
	if len(f.Types) > 0 {
		q.Where(pubsubnode.TypeIn(f.Types...))
	}
	if len(f.Subtypes) > 0 {
		var ors []predicate.PubsubNode
		var named []string
		for _, s := range f.Subtypes {
			if s == "" {
				ors = append(ors, pubsubnode.SubtypeIsNil())
			} else {
				named = append(named, s)
			}
		}
		if len(named) > 0 {
			ors = append(ors, pubsubnode.SubtypeIn(named...))
		}
		q.Where(pubsubnode.Or(ors...))
	}
	rows, err := q.WithProfile().All(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("select nodes to purge: %w", err)
	}
	for _, r := range rows {
		preds := []predicate.PubsubItem{pubsubitem.NodeID(r.ID)}
		if f.CreatedBefore != nil {
			preds = append(preds, pubsubitem.CreatedAtLT(*f.CreatedBefore))
		}
		if f.UpdatedBefore != nil {
			preds = append(preds, pubsubitem.UpdatedAtLT(*f.UpdatedBefore))
		}
		var removed, remaining int
		err := p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
			var err error
			if removed, err = tx.PubsubItem.Delete().Where(preds...).Exec(ctx); err != nil {
				return fmt.Errorf("purge items of %s: %w", r.Name, err)
			}
			remaining, err = tx.PubsubItem.Query().Where(pubsubitem.NodeID(r.ID)).Count(ctx)
			return err
		})
		if err != nil {
			return nodes, items, err
		}
		items += removed
		if removed == 0 && remaining > 0 {
			continue
		}
		nodes++
		k := nodeKey{r.Edges.Profile.Name, r.Service, r.Name}
		if _, err := p.transition(ctx, k, event{kind: evPurged, remaining: remaining}); err != nil {
			return nodes, items, err
		}
	}
	return nodes, items, nil
}

// Reset removes every cached node and item of every profile.
func (p *Plugin) Reset(ctx context.Context) (int, error) {
	var n int
	err := p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
		if _, err := tx.PubsubItem.Delete().Exec(ctx); err != nil {
			return fmt.Errorf("delete cached items: %w", err)
		}
		var err error
		if n, err = tx.PubsubNode.Delete().Exec(ctx); err != nil {
			return fmt.Errorf("delete cached nodes: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.nodes = map[nodeKey]*nodeInfo{}
	p.pending = map[nodeKey]map[string]bool{}
	p.mu.Unlock()
	return n, nil
}
