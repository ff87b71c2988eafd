package pubsubcache

import (
	"context"
	"strings"

	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/plugins/xep0060"
)

// The bus handlers: notifications and the profile's own pubsub operations
// become writes (writer.go, writes.go); session and parameter changes are
// transitions of the profile's nodes, or reconcile them.

func (p *Plugin) onItems(ctx context.Context, ev *xep0060.ItemsEvent) error {
	if ev == nil {
		return nil
	}
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	// The write is queued before the notification is recorded: once
	// publishes sees it, the items are stored or queued (a queued write
	// keeps the node off the cache), whichever goroutine gets the
	// publish's answer (the other order let a publish return, its
	// notification recorded but its write not queued yet, and the cache
	// answer without the item: TestFreshness, 2 runs in ≈ 520 under load).
	o := itemsOp(k, ev.Items, ev.Retracted, false)
	if n, ok := p.nodes.get(k); ok && n.cached() {
		o.arrived = p.learn.itemsArrived(k, ev.Items)
	}
	p.w.enqueue(o)
	p.pubs.notified(k, ev.Items)
	return nil
}

func (p *Plugin) onPurge(ctx context.Context, ev *xep0060.NodeEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	p.w.enqueue(op{kind: opFunc, key: k, fn: p.purgeNode(k)})
	return nil
}

func (p *Plugin) onDelete(ctx context.Context, ev *xep0060.NodeEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	p.w.enqueue(op{kind: opFunc, key: k, fn: p.deleteNode(k)})
	return nil
}

func (p *Plugin) onConfiguration(ctx context.Context, ev *xep0060.ConfigurationEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	e := configured(func(name string) ([]string, bool) {
		for _, f := range ev.Fields {
			if f.Var == name {
				return f.Values, true
			}
		}
		return nil, false
	})
	p.w.enqueue(op{kind: opFunc, key: k, fn: p.configure(k, e)})
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
	k := nodeKey{ev.Profile, ev.Service, ev.Subscription.Node}
	p.w.enqueue(op{kind: opFunc, key: k, fn: p.subscriptionGone(k)})
	return nil
}

func bareJID(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// onPublished: the profile published an item on a cached node (its
// server's copy is followed by publishes).
func (p *Plugin) onPublished(ctx context.Context, ev *xep0060.PublishedEvent) error {
	if n, ok := p.nodes.get(nodeKey{ev.Profile, ev.Service, ev.Node}); ok && n.cached() && ev.ID != "" {
		p.pubs.published(ev)
	}
	return nil
}

// onRetracted: the service confirmed the profile's retract: the item is
// removed before the call returns.
func (p *Plugin) onRetracted(ctx context.Context, ev *xep0060.RetractedEvent) error {
	o := itemsOp(nodeKey{ev.Profile, ev.Service, ev.Node}, nil, []string{ev.ID}, false)
	return p.w.do(ctx, o)
}

// onNodeChanged applies the profile's own node operations before the call
// returns (as writes of the node: it is not answered from the cache while
// one waits, and not fresh if it fails).
func (p *Plugin) onNodeChanged(ctx context.Context, ev *xep0060.NodeChangedEvent) error {
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	var fn func(ctx context.Context, t *wtx) error
	switch ev.Op {
	case "purge":
		fn = p.purgeNode(k)
	case "unsubscribe":
		// Notifications stop (no notification of it comes either).
		fn = p.subscriptionGone(k)
	case "delete":
		fn = p.deleteNode(k)
	case "configure":
		fn = p.configure(k, configured(func(name string) ([]string, bool) { v, ok := ev.Options[name]; return v, ok }))
	default:
		return nil
	}
	return p.w.do(ctx, op{kind: opFunc, key: k, fn: fn})
}

// onDisconnected: nothing of the profile is fresh any more.
func (p *Plugin) onDisconnected(ctx context.Context, ev connections.ProfileEvent) error {
	p.sync.interrupt(ev.Profile)
	p.pubs.forgetProfile(ev.Profile)
	return p.w.run(ctx, p.transitionProfile(ev.Profile, event{kind: evDisconnected}))
}

// onConnected reconciles the profile's nodes that are not fresh (after a
// disconnection or a restart) and restarts the syncs a disconnection, a
// server restart or the daemon's stop interrupted, in the background,
// cache.sync_concurrency at a time.
func (p *Plugin) onConnected(ctx context.Context, ev connections.ProfileEvent) error {
	p.index.paths() // plugins have declared their analysers: index what they ask
	p.reconcileProfile(ctx, ev.Profile)
	return nil
}

// onResumed: the profile's stream was resumed (XEP-0198): no notification
// was lost and fresh nodes stay as they are. Only what a request made
// while the stream was down cut (it failed: the profile was offline) is
// started again: interrupted syncs, and complete nodes such a failure
// made not fresh.
func (p *Plugin) onResumed(ctx context.Context, ev connections.ProfileEvent) error {
	p.reconcileProfile(ctx, ev.Profile)
	return nil
}

// reconcileProfile syncs again, in the background, the profile's complete
// nodes that are not fresh (when its cache is enabled).
func (p *Plugin) reconcileProfile(ctx context.Context, profileName string) {
	if !p.params.of(ctx, profileName).enabled {
		return
	}
	for _, k := range p.nodes.keys(func(k nodeKey, n nodeInfo) bool {
		return k.profile == profileName && n.state == StateComplete && !n.fresh && (n.subscribed || n.pep)
	}) {
		p.sync.launch(k, false)
	}
	for _, k := range p.nodes.keys(func(k nodeKey, n nodeInfo) bool { return k.profile == profileName && n.resume }) {
		p.log.Info("restarting an interrupted sync", "profile", k.profile, "service", k.service, "node", k.node)
		p.sync.launch(k, false)
	}
}

// onParamChanged forgets the cached parameters; cache.analysers makes the
// profile's nodes be analysed again, cache.enabled off makes them not
// fresh (notifications are not trusted while off) and on reconciles them.
func (p *Plugin) onParamChanged(ctx context.Context, ch profiles.ParamChange) error {
	if !strings.HasPrefix(ch.Key, "cache.") {
		return nil
	}
	p.params.forget(ch.Profile)
	switch ch.Key {
	case KeyAnalysers:
		return p.w.run(ctx, p.transitionProfile(ch.Profile, event{kind: evReanalyse}))
	case KeyEnabled:
		if !p.params.of(ctx, ch.Profile).enabled {
			p.log.Info("cache disabled for a profile: its gets go to the network", "profile", ch.Profile)
			p.pubs.forgetProfile(ch.Profile)
			return p.w.run(ctx, p.transitionProfile(ch.Profile, event{kind: evNotFresh}))
		}
		p.log.Info("cache enabled for a profile: reconciling its nodes", "profile", ch.Profile)
		if p.online(ch.Profile) {
			p.reconcileProfile(ctx, ch.Profile)
		}
	}
	return nil
}

// onProfileDeleted forgets the deleted profile's nodes.
func (p *Plugin) onProfileDeleted(ctx context.Context, name string) error {
	p.pubs.forgetProfile(name)
	p.learn.forgetArrivals(func(k nodeKey) bool { return k.profile != name })
	return p.w.run(ctx, p.forgetProfile(name))
}
