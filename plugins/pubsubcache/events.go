package pubsubcache

import (
	"context"
	"fmt"
	"strings"
	"time"

	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/plugins/xep0060"
)

// The bus handlers: notifications and the profile's own pubsub operations
// become writes (writer.go, apply.go); session and parameter changes make
// nodes not fresh or reconcile them.

func (p *Plugin) onItems(ctx context.Context, ev *xep0060.ItemsEvent) error {
	if ev == nil {
		return nil
	}
	p.noteNotified(nodeKey{ev.Profile, ev.Service, ev.Node}, ev.Items)
	p.w.enqueue(op{kind: opItems, key: nodeKey{ev.Profile, ev.Service, ev.Node}, items: ev.Items, retracted: ev.Retracted})
	return nil
}

func (p *Plugin) onPurge(ctx context.Context, ev *xep0060.NodeEvent) error {
	p.w.enqueue(op{kind: opPurgeItems, key: nodeKey{ev.Profile, ev.Service, ev.Node}})
	return nil
}

func (p *Plugin) onDelete(ctx context.Context, ev *xep0060.NodeEvent) error {
	p.w.enqueue(op{kind: opDeleteNode, key: nodeKey{ev.Profile, ev.Service, ev.Node}})
	return nil
}

func (p *Plugin) onConfiguration(ctx context.Context, ev *xep0060.ConfigurationEvent) error {
	o := op{kind: opConfig, key: nodeKey{ev.Profile, ev.Service, ev.Node}}
	for _, f := range ev.Fields {
		if f.Var == "pubsub#max_items" {
			o.maxItems, o.maxItemsSet = maxItemsOf(f.Values), true
		}
	}
	p.w.enqueue(o)
	return nil
}

func (p *Plugin) onSubscription(ctx context.Context, ev *xep0060.SubscriptionEvent) error {
	if ev.Subscription.Subscription != "none" {
		return nil
	}
	own, err := p.c.Service(ctx, ev.Profile, "")
	if err != nil || bareJID(ev.Subscription.JID) != own {
		return nil
	}
	p.w.enqueue(op{kind: opSubGone, key: nodeKey{ev.Profile, ev.Service, ev.Subscription.Node}})
	return nil
}

func bareJID(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// onPublished: the profile published an item. The server's copy arrives
// with the notification; until then the node is not answered from the
// cache, and if it does not come in time the item is fetched by id.
func (p *Plugin) onPublished(ctx context.Context, ev *xep0060.PublishedEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	n, ok, err := p.node(ctx, k)
	if err != nil || !ok || !cached(n) || ev.ID == "" {
		return err
	}
	p.mu.Lock()
	if at, ok := p.notifiedAt[k][ev.ID]; ok && !at.Before(ev.Sent) {
		// The notification came before the answer (Prosody sends it
		// first): it is stored or queued (and a queued write keeps the
		// node off the cache until it is applied).
		p.mu.Unlock()
		return nil
	}
	p.log.Debug("cache own publish pending", "node", k.node, "id", ev.ID)
	if p.pending[k] == nil {
		p.pending[k] = map[string]bool{}
	}
	p.pending[k][ev.ID] = true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(p.pendingTimeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		still := p.pending[k][ev.ID]
		p.mu.Unlock()
		if !still {
			return
		}
		p.log.Debug("cache own publish not notified in time: fetching it", "node", k.node, "id", ev.ID)
		page, err := p.c.FetchItems(internal(p.ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, ItemIDs: []string{ev.ID}})
		if err != nil {
			p.log.Warn("fetching a published item failed; the node is re-synced", "node", k.node, "id", ev.ID, "err", err)
			p.mu.Lock()
			delete(p.pending, k)
			p.mu.Unlock()
			p.markNotFresh(p.ctx, k)
			return
		}
		p.w.enqueue(op{kind: opItems, key: k, items: page.Items, refetched: true})
	}()
	return nil
}

// markNotFresh makes a node go to the network (and be reconciled); it
// reports whether the node has a row and nothing failed.
func (p *Plugin) markNotFresh(ctx context.Context, k nodeKey) (ok bool) {
	_, ok, err := p.modify(ctx, k, func(n *nodeInfo) bool {
		if !n.fresh {
			return false
		}
		n.fresh = false
		return true
	})
	if err != nil {
		p.log.Warn("marking node not fresh", "err", err)
	}
	return err == nil && ok
}

// onRetracted: the service confirmed the profile's retract: the item is
// removed before the call returns.
func (p *Plugin) onRetracted(ctx context.Context, ev *xep0060.RetractedEvent) error {
	return p.w.do(ctx, op{kind: opItems, key: nodeKey{ev.Profile, ev.Service, ev.Node}, retracted: []string{ev.ID}})
}

// onNodeChanged applies the profile's own node operations before the call
// returns.
func (p *Plugin) onNodeChanged(ctx context.Context, ev *xep0060.NodeChangedEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	switch ev.Op {
	case "purge":
		return p.w.do(ctx, op{kind: opPurgeItems, key: k})
	case "delete":
		return p.w.do(ctx, op{kind: opDeleteNode, key: k})
	case "configure":
		o := op{kind: opConfig, key: k}
		if v, ok := ev.Options["pubsub#max_items"]; ok {
			o.maxItems, o.maxItemsSet = maxItemsOf(v), true
		}
		return p.w.do(ctx, o)
	}
	return nil
}

// onDisconnected: nothing of the profile is fresh any more.
func (p *Plugin) onDisconnected(ctx context.Context, ev connections.ProfileEvent) error {
	return p.markProfileNotFresh(ctx, ev.Profile)
}

// markProfileNotFresh makes every node of the profile not fresh (and
// forgets its pending publishes): they go to the network while online
// until reconciled.
func (p *Plugin) markProfileNotFresh(ctx context.Context, profileName string) error {
	pid, err := p.profileID(ctx, profileName)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	for k, n := range p.nodes {
		if n != nil && k.profile == profileName {
			n.fresh = false
		}
	}
	for k := range p.pending {
		if k.profile == profileName {
			delete(p.pending, k)
		}
	}
	p.mu.Unlock()
	if _, err := p.h.Store.Client.PubsubNode.Update().Where(pubsubnode.ProfileID(pid), pubsubnode.Fresh(true)).SetFresh(false).Save(ctx); err != nil {
		return fmt.Errorf("mark nodes of %s not fresh: %w", profileName, err)
	}
	return nil
}

// onConnected reconciles the profile's complete nodes that are not fresh
// (after a disconnection or a restart): they are synced again in the
// background, cache.sync_concurrency at a time.
func (p *Plugin) onConnected(ctx context.Context, ev connections.ProfileEvent) error {
	p.searchablePaths() // plugins have declared their analysers: index what they ask
	return p.reconcileProfile(ctx, ev.Profile)
}

// reconcileProfile syncs again, in the background, the profile's complete
// nodes that are not fresh (when its cache is enabled).
func (p *Plugin) reconcileProfile(ctx context.Context, profileName string) error {
	if !p.paramsOf(ctx, profileName).enabled {
		return nil
	}
	pid, err := p.profileID(ctx, profileName)
	if err != nil {
		return nil
	}
	rows, err := p.h.Store.Client.PubsubNode.Query().Where(pubsubnode.ProfileID(pid), pubsubnode.SyncStateEQ(StateComplete), pubsubnode.Fresh(false)).All(ctx)
	if err != nil {
		return fmt.Errorf("list nodes to reconcile: %w", err)
	}
	for _, r := range rows {
		if r.Subscribed || isPEP(r.Service) {
			p.launch(nodeKey{profileName, r.Service, r.Name}, false)
		}
	}
	p.mu.Lock()
	var resume []nodeKey
	for k := range p.resume {
		if k.profile == profileName {
			resume = append(resume, k)
			delete(p.resume, k)
		}
	}
	p.mu.Unlock()
	for _, k := range resume {
		p.log.Info("restarting a sync interrupted by the last stop", "profile", k.profile, "service", k.service, "node", k.node)
		p.launch(k, false)
	}
	return nil
}

// onParamChanged forgets the cached parameters; a change of
// cache.analysers makes the profile's nodes be analysed again.
func (p *Plugin) onParamChanged(ctx context.Context, ch profiles.ParamChange) error {
	if !strings.HasPrefix(ch.Key, "cache.") {
		return nil
	}
	p.mu.Lock()
	delete(p.params, ch.Profile)
	if ch.Key == KeyAnalysers {
		for k, n := range p.nodes {
			if n != nil && k.profile == ch.Profile {
				n.analysed = false
			}
		}
	}
	p.mu.Unlock()
	if ch.Key == KeyEnabled {
		// Off: gets go to the network at once, and what is cached stops
		// being fresh (notifications are not trusted while off). On again:
		// the complete nodes are reconciled, resuming from what is stored.
		if !p.paramsOf(ctx, ch.Profile).enabled {
			p.log.Info("cache disabled for a profile: its gets go to the network", "profile", ch.Profile)
			return p.markProfileNotFresh(ctx, ch.Profile)
		}
		p.log.Info("cache enabled for a profile: reconciling its nodes", "profile", ch.Profile)
		if p.online(ch.Profile) {
			return p.reconcileProfile(ctx, ch.Profile)
		}
		return nil
	}
	if ch.Key == KeyAnalysers {
		if pid, err := p.profileID(ctx, ch.Profile); err == nil {
			if _, err := p.h.Store.Client.PubsubNode.Update().Where(pubsubnode.ProfileID(pid)).ClearAnalyserVersion().Save(ctx); err != nil {
				return fmt.Errorf("re-analyse nodes of %s: %w", ch.Profile, err)
			}
		}
	}
	return nil
}
