package pubsubcache

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060/wire"
)

// The writes the writer applies (writer.go): each runs in the writer's
// goroutine, inside a wtx.

// parseStateFor is the parse state of an item stored raw on node n.
func parseStateFor(n nodeInfo) pubsubitem.ParseState {
	if n.parser {
		return pubsubitem.ParseStatePending
	}
	return pubsubitem.ParseStateNone
}

// applyItems stores item notifications (upserts at the positions the
// service's behaviour says, retractions) in one transaction.
func (p *Plugin) applyItems(ctx context.Context, t *wtx, ops []op) error {
	type probe struct {
		key      nodeKey
		id, last string
		seq      uint64 // the node's arrived count after id
	}
	var probes []probe
	var publisherProbes []nodeKey
	skip := repeats(ops)
	maxPos := map[int]int64{}
	added := map[nodeKey]bool{}
	// retractedIn counts the retractions of each node in the batch: an
	// addition the service answered by dropping its oldest item silently,
	// followed in the same batch by a retraction, leaves the count where
	// it was (SOAK_SEED=36 SOAK_STEPS=30): the node held more, at its peak.
	retractedIn := map[nodeKey]int{}
	for i, o := range ops {
		if skip[i] {
			continue
		}
		n, ok := t.node(o.key)
		if !ok || !n.cached() {
			continue
		}
		job := p.sync.running(o.key)
		for _, j := range []*SyncJob{job, p.sync.checking(o.key)} {
			if j != nil {
				ids := append([]string(nil), o.retracted...)
				for _, it := range o.items {
					ids = append(ids, it.ID)
				}
				j.touch(ids...)
			}
		}
		if len(o.items) > 0 {
			last, ok := maxPos[n.id]
			if !ok {
				var err error
				if last, err = p.store.maxPosition(ctx, t.c, n.id); err != nil {
					return err
				}
			}
			ids := make([]string, len(o.items))
			for i, it := range o.items {
				ids[i] = it.ID
			}
			existing, err := p.store.itemPositions(ctx, t.c, n.id, ids)
			if err != nil {
				return err
			}
			beh := p.learn.get(ctx, n.profileID, o.key.service)
			moves := beh.RepublishMoves
			stored := make([]storedItem, len(o.items))
			for i, it := range o.items {
				seq := o.arrived - uint64(len(o.items)-1-i)
				if o.arrived == 0 {
					seq = p.learn.arrivedCount(o.key)
				}
				s := &stored[i]
				*s = storedItem{Item: it, parseState: parseStateFor(n), searchText: o.texts[i]}
				switch {
				case beh.PublisherInResults == "no":
					// Served as items answers carry it.
					s.Publisher = ""
				case beh.PublisherInResults == "" && s.Publisher != "" && !slices.Contains(publisherProbes, o.key):
					// Whether items answers carry it is not known yet:
					// asked once, the node kept off the cache meanwhile.
					publisherProbes = append(publisherProbes, o.key)
				}
				cur, exists := existing[s.ID]
				if !exists {
					added[o.key] = true
				}
				switch {
				case !exists || moves == serviceprofile.RepublishMovesYes && cur != last:
					last++
					s.position = last
				default:
					s.position = cur
					if moves == serviceprofile.RepublishMovesUnknown && cur != last && job != nil {
						// Re-published after the running listing stored
						// it: where the service put it is unknown, the
						// listing must not end with it in its old place
						// (finish lists the node again, or places it last
						// once the behaviour is learned).
						job.markLater(s.ID)
					}
					if moves == serviceprofile.RepublishMovesUnknown && cur != last && o.refetched {
						// Where the service put it is unknown: the listing
						// tells (no lesson drawn from it).
						if _, _, err := t.transition(ctx, o.key, event{kind: evNotFresh}); err != nil {
							return err
						}
						k := o.key
						t.afterwards(func() { p.sync.launch(k, false) })
					} else if moves == serviceprofile.RepublishMovesUnknown && cur != last && (n.state == StateComplete || n.state == StateInProgress) && !n.wasOffline {
						// Not after a disconnection until a listing ends
						// (wasOffline): the cached order may not be the
						// service's, and the last item ejabberd sends at
						// the next presence, not re-published, would teach
						// the wrong lesson (SOAK_SEED=401).
						lastID, err := p.store.idAt(ctx, t.c, n.id, last)
						if err != nil {
							return err
						}
						probes = append(probes, probe{o.key, s.ID, lastID, seq})
					}
				}
				existing[s.ID] = s.position
			}
			pending, err := p.store.upsertItems(ctx, t.c, n.id, stored, p.index.inUse(), true)
			if err != nil {
				return err
			}
			p.queueParse(t, o.key, n, stored, pending)
			maxPos[n.id] = last
		}
		if len(o.retracted) > 0 {
			retractedIn[o.key] += len(o.retracted)
			if err := p.store.deleteItems(ctx, t.c, n.id, o.retracted); err != nil {
				return err
			}
		}
		if lim := n.limit(); lim > 0 && len(o.items) > 0 {
			// The service keeps that many: it drops the oldest (without a
			// retraction on Prosody and ejabberd's PEP nodes).
			if _, err := p.store.trim(ctx, t.c, n.id, lim); err != nil {
				return err
			}
		}
	}
	for k := range added {
		n, ok := t.node(k)
		if !ok || n.state == StateInProgress {
			continue
		}
		// cache.item_limit bounds a node whatever notifications bring: the
		// oldest items go and a complete node becomes partial.
		dropped, err := p.store.trim(ctx, t.c, n.id, p.params.of(ctx, k.profile).limit)
		if err != nil {
			return err
		}
		if dropped > 0 {
			if n, _, err = t.transition(ctx, k, event{kind: evOverLimit}); err != nil {
				return err
			}
			state := n.state
			t.afterwards(func() { // not told of a write rolled back
				p.log.Info("node over cache.item_limit: oldest items dropped", "profile", k.profile, "service", k.service, "node", k.node, "state", state)
			})
		}
		// Holding more than the service was seen holding, its capacity
		// unknown: the service may have dropped items silently. Checked
		// before the node is served again.
		if n.limit() == 0 && n.state == StateComplete {
			count, err := p.store.count(ctx, t.c, n.id)
			if err != nil {
				return err
			}
			// At most count plus the batch's retractions at its peak (an
			// upper bound: a check too many costs one request).
			if count+retractedIn[k] > n.verified {
				if n, _, err = t.transition(ctx, k, event{kind: evUnverified}); err != nil {
					return err
				}
				if n.verifying {
					t.afterwards(func() { p.sync.check(k) })
				}
			}
		}
	}
	// A re-published item on a service whose behaviour is unknown: the
	// node is not fresh (before the published items stop being pending)
	// until a sync tells where the service put it.
	for _, pr := range probes {
		if _, _, err := t.transition(ctx, pr.key, event{kind: evNotFresh}); err != nil {
			return err
		}
	}
	var started []nodeKey // the probes this transaction runs (others run already)
	for _, k := range publisherProbes {
		if p.learn.startProbe(k, "publisher") {
			started = append(started, k)
		}
	}
	// Not stored after all: the probe runs anyway (it ends the node's
	// wait for it; else the node would stay off the cache).
	t.unlessCommitted(func() {
		for _, k := range started {
			p.learn.publisherProbe(k)
		}
	})
	t.afterwards(func() {
		for _, k := range started {
			p.learn.publisherProbe(k)
		}
		for _, pr := range probes {
			p.learn.republished(pr.key, pr.id, pr.last, pr.seq)
		}
		for _, o := range ops {
			ids := append([]string(nil), o.retracted...)
			for _, it := range o.items {
				ids = append(ids, it.ID)
			}
			p.pubs.stored(o.key, ids)
		}
	})
	return nil
}

// queueParse hands the items of n stored raw and now parse pending to the
// parse queue once t commits.
func (p *Plugin) queueParse(t *wtx, k nodeKey, n nodeInfo, stored []storedItem, pending []string) {
	if len(pending) == 0 || !n.parser {
		return
	}
	want := make(map[string]bool, len(pending))
	for _, id := range pending {
		want[id] = true
	}
	items := make([]wire.Item, 0, len(pending))
	for _, s := range stored {
		if want[s.ID] {
			items = append(items, s.Item)
			delete(want, s.ID) // an id stored twice in a batch is parsed once
		}
	}
	t.afterwards(func() { p.parse.add(k, n.id, n.analyser, items) })
}

// purgeNode applies a purge of the node on the service (notified, or the
// profile's own): the node is now empty there too, and stays complete.
func (p *Plugin) purgeNode(k nodeKey) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		n, ok := t.node(k)
		if !ok {
			return nil
		}
		if j := p.sync.running(k); j != nil {
			// A listing running may store pages the service answered
			// before the purge: it does not make the node fresh, another
			// one settles it (as when notified items could not be stored).
			j.markLost()
		}
		return p.store.deleteAllItems(ctx, t.c, n.id)
	}
}

// deleteNode applies the deletion of the node on the service.
func (p *Plugin) deleteNode(k nodeKey) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		if err := t.remove(ctx, k); err != nil {
			return err
		}
		t.afterwards(func() {
			p.pubs.forgetNode(k)
			p.learn.forgetArrivals(func(o nodeKey) bool { return o != k })
		})
		return nil
	}
}

// configured is the evConfigured of a new configuration: value returns a
// field's values (ok false when the configuration does not have it).
func configured(value func(name string) (values []string, ok bool)) event {
	e := event{kind: evConfigured}
	if v, ok := value("pubsub#max_items"); ok {
		e.maxItemsSet, e.maxItems = true, maxItemsOf(v)
	}
	if v, ok := value("pubsub#notify_retract"); ok && len(v) > 0 {
		e.retractSet, e.silentRetracts = true, isFalse(v[0])
	}
	return e
}

// isFalse reports whether a data-form boolean is false.
func isFalse(v string) bool {
	v = strings.TrimSpace(v)
	return v == "0" || v == "false"
}

// configure applies a configuration change of the node (e: configured);
// a lowered max_items on a cached node is reconciled from the listing.
func (p *Plugin) configure(k nodeKey, e event) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		before, ok := t.node(k)
		if !ok {
			return nil
		}
		if _, _, err := t.transition(ctx, k, e); err != nil {
			return err
		}
		if e.maxItemsSet && lowers(before.knownMax(), e.maxItems) && before.cached() {
			// Services differ: Prosody drops the extra items at once,
			// ejabberd at the next publish. The listing tells; the next
			// publishes are trimmed to the new limit. A listing running
			// may have pages answered before: it does not make the node
			// fresh, another one settles it.
			if j := p.sync.running(k); j != nil {
				j.markLost()
			}
			t.afterwards(func() { p.sync.launch(k, false) })
		}
		return nil
	}
}

// subscriptionGone applies the end of the profile's subscription.
func (p *Plugin) subscriptionGone(k nodeKey) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		n, ok := t.node(k)
		if !ok {
			return nil
		}
		if j := p.sync.running(k); j != nil {
			// A listing running ends as this (its begin subscribed).
			j.markUnsubscribed()
		}
		if err := p.store.deleteAllItems(ctx, t.c, n.id); err != nil {
			return err
		}
		_, _, err := t.transition(ctx, k, event{kind: evSubscriptionGone})
		return err
	}
}

// transitionOf applies e to one node (creating its row first when create).
func (p *Plugin) transitionOf(k nodeKey, e event, create bool) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		if create {
			if _, err := t.ensure(ctx, k); err != nil {
				return err
			}
		}
		_, _, err := t.transition(ctx, k, e)
		return err
	}
}

// transitionProfile applies e to every node of a profile.
func (p *Plugin) transitionProfile(profileName string, e event) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		for _, k := range p.nodes.keys(ofProfile(profileName)) {
			if _, _, err := t.transition(ctx, k, e); err != nil {
				return err
			}
		}
		return nil
	}
}

// forgetProfile drops what the table holds of a deleted profile (its rows
// went with it).
func (p *Plugin) forgetProfile(profileName string) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		for _, k := range p.nodes.keys(ofProfile(profileName)) {
			t.changes[k] = nil
		}
		t.afterwards(func() { p.store.forgetProfile(profileName) })
		return nil
	}
}

// storeCursors keeps the service's cursors of the first and last items of
// a live answer (DESIGN §6: stored when handed out), for cached items.
func (p *Plugin) storeCursors(k nodeKey, items []wire.Item, first, last string) func(ctx context.Context, t *wtx) error {
	return func(ctx context.Context, t *wtx) error {
		n, ok := t.node(k)
		if !ok || !n.cached() || len(items) == 0 {
			return nil
		}
		for _, c := range []struct{ id, cursor string }{{items[0].ID, first}, {items[len(items)-1].ID, last}} {
			if c.cursor == "" || strings.HasPrefix(c.cursor, cacheCursorPrefix) {
				continue
			}
			if err := p.store.setCursor(ctx, t.c, n.id, c.id, c.cursor); err != nil {
				return err
			}
		}
		return nil
	}
}

// maxItemsOf reads pubsub#max_items from configuration values.
func maxItemsOf(values []string) *int {
	if len(values) == 0 {
		return nil
	}
	v := strings.TrimSpace(values[0])
	if v == "max" {
		m := -1
		return &m
	}
	if n, err := strconv.Atoi(v); err == nil {
		return &n
	}
	return nil
}
