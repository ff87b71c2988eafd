package pubsubcache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// opKind is a kind of write the writer applies.
type opKind int

const (
	opItems opKind = iota
	opPurgeItems
	opDeleteNode
	opConfig
	opSubGone
	// opFunc runs fn in the writer (sync pages: totally ordered with
	// notifications).
	opFunc
)

// op is one write coming from a notification or from the profile's own
// pubsub operations.
type op struct {
	kind      opKind
	key       nodeKey
	items     []wire.Item
	retracted []string
	maxItems  *int // opConfig: the new pubsub#max_items (nil: unknown)
	// refetched: items fetched by id because their notification did not
	// come (not evidence of where the service puts re-published items).
	refetched bool
	fn        func(ctx context.Context) error
	done      chan error
}

// writer applies notifications in arrival order, many per transaction, so
// that bursts are stored whole (no "database is locked" losses: one writer,
// and WithTx retries transient contention).
type writer struct {
	p    *Plugin
	mu   sync.Mutex
	ops  []op
	wake chan struct{}
	idle *sync.Cond
	busy bool
}

func newWriter(p *Plugin) *writer {
	w := &writer{p: p, wake: make(chan struct{}, 1)}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// maxBatch bounds the writes of one transaction.
const maxBatch = 1000

func (w *writer) enqueue(o op) {
	if o.kind == opItems {
		w.p.queue(o.key, 1)
	}
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// do enqueues o and waits until it is applied.
func (w *writer) do(ctx context.Context, o op) error {
	o.done = make(chan error, 1)
	w.enqueue(o)
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush waits until every queued write is applied (or ctx ends).
func (w *writer) flush(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		w.mu.Lock()
		for len(w.ops) > 0 || w.busy {
			w.idle.Wait()
		}
		w.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (w *writer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.busy = false
			w.idle.Broadcast()
			w.mu.Unlock()
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if len(w.ops) == 0 {
				w.busy = false
				w.idle.Broadcast()
				w.mu.Unlock()
				break
			}
			n := min(len(w.ops), maxBatch)
			batch := append([]op(nil), w.ops[:n]...)
			w.ops = append(w.ops[:0], w.ops[n:]...)
			w.busy = true
			w.mu.Unlock()
			w.apply(ctx, batch)
		}
	}
}

// apply runs a batch: consecutive item writes in one transaction, other
// writes one by one.
func (w *writer) apply(ctx context.Context, batch []op) {
	for len(batch) > 0 {
		i := 0
		for i < len(batch) && batch[i].kind == opItems {
			i++
		}
		if i > 0 {
			err := w.p.applyItems(ctx, batch[:i])
			if err != nil {
				w.p.log.Error("storing notified items failed", "ops", i, "err", err)
			}
			for _, o := range batch[:i] {
				w.p.queue(o.key, -1)
				if o.done != nil {
					o.done <- err
				}
			}
			batch = batch[i:]
			continue
		}
		o := batch[0]
		var err error
		if o.kind == opFunc {
			err = o.fn(ctx)
		} else {
			err = w.p.applyNodeOp(ctx, o)
		}
		if err != nil {
			w.p.log.Error("applying a node notification failed", "profile", o.key.profile, "service", o.key.service, "node", o.key.node, "err", err)
		}
		if o.done != nil {
			o.done <- err
		}
		batch = batch[1:]
	}
}

// cached reports whether the cache holds items of a node in state n.
func cached(n nodeInfo) bool {
	return n.state == StateComplete || n.state == StatePartial || n.state == StateInProgress
}

// applyItems stores item notifications (upserts at the positions the
// service's behaviour says, retractions) in one transaction.
func (p *Plugin) applyItems(ctx context.Context, ops []op) error {
	type work struct {
		op     op
		n      nodeInfo
		stored []storedItem
		job    *SyncJob
	}
	var todo []work
	for _, o := range ops {
		n, ok, err := p.node(ctx, o.key)
		if err != nil {
			return err
		}
		if !ok || !cached(n) {
			continue
		}
		j := p.runningJob(o.key)
		if j != nil {
			ids := append([]string(nil), o.retracted...)
			for _, it := range o.items {
				ids = append(ids, it.ID)
			}
			j.touch(ids...)
		}
		todo = append(todo, work{op: o, n: n, stored: p.parse(ctx, o.key, n.analyser, o.items), job: j})
	}
	if len(todo) == 0 {
		return nil
	}
	type probe struct {
		key     nodeKey
		id      string
		payload []byte
		after   []string
	}
	var probes []probe
	var resync, overLimit map[nodeKey]bool
	added := map[int]bool{}
	err := p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
		probes = probes[:0]
		resync, overLimit = map[nodeKey]bool{}, map[nodeKey]bool{}
		clear(added)
		maxPos := map[int]int64{}
		for _, wk := range todo {
			n := wk.n
			last, ok := maxPos[n.id]
			if !ok {
				var err error
				if last, err = maxPosition(ctx, tx.Client(), n.id); err != nil {
					return err
				}
			}
			if len(wk.stored) > 0 {
				ids := make([]string, len(wk.stored))
				for i, s := range wk.stored {
					ids[i] = s.ID
				}
				existing, err := p.db.itemPositions(ctx, tx.Client(), n.id, ids)
				if err != nil {
					return err
				}
				beh := p.beh.get(ctx, n.profileID, wk.op.key.service)
				moves := beh.RepublishMoves
				for i := range wk.stored {
					s := &wk.stored[i]
					if beh.PublisherInResults == "no" {
						// Served as items answers carry it.
						s.Publisher = ""
					}
					cur, exists := existing[s.ID]
					if exists && wk.job != nil {
						// Re-published while a sync runs: the page may show
						// the old place or the new one.
						wk.job.markUpdated()
					}
					if !exists {
						added[n.id] = true
					}
					switch {
					case !exists || moves == serviceprofile.RepublishMovesYes && cur != last:
						last++
						s.position = last
					default:
						s.position = cur
						if moves == serviceprofile.RepublishMovesUnknown && cur != last && wk.op.refetched {
							// Where the service put it is unknown: the
							// listing tells (no lesson drawn from it).
							resync[wk.op.key] = true
						} else if moves == serviceprofile.RepublishMovesUnknown && cur != last && (n.state == StateComplete || n.state == StateInProgress) {
							all, err := p.db.itemPositions(ctx, tx.Client(), n.id, nil)
							if err != nil {
								return err
							}
							var after []string
							for id, pos := range all {
								if pos > cur {
									after = append(after, id)
								}
							}
							probes = append(probes, probe{wk.op.key, s.ID, s.Payload, after})
						}
					}
					existing[s.ID] = s.position
				}
				if err := p.db.upsertItems(ctx, tx, n.id, wk.stored); err != nil {
					return err
				}
			}
			if len(wk.op.retracted) > 0 {
				if _, err := tx.PubsubItem.Delete().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemIDIn(wk.op.retracted...)).Exec(ctx); err != nil {
					return fmt.Errorf("delete retracted items: %w", err)
				}
			}
			if n.maxItems != nil && *n.maxItems > 0 && len(wk.stored) > 0 {
				if err := trim(ctx, tx, n.id, *n.maxItems); err != nil {
					return err
				}
			}
			maxPos[n.id] = last
		}
		// cache.item_limit bounds a node whatever notifications bring: the
		// oldest items go and a complete node becomes partial.
		limited := map[int]bool{}
		for _, wk := range todo {
			n := wk.n
			if !added[n.id] || limited[n.id] || n.state == StateInProgress {
				continue
			}
			limited[n.id] = true
			limit := p.paramsOf(ctx, wk.op.key.profile).limit
			counts, err := p.db.countItemsTx(ctx, tx, n.id)
			if err != nil {
				return err
			}
			if counts > limit {
				if err := trim(ctx, tx, n.id, limit); err != nil {
					return err
				}
				overLimit[wk.op.key] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Before the published items stop being pending: the node must not be
	// served with a position the service may not have.
	for _, pr := range probes {
		p.learnRepublish(ctx, pr.key, pr.id, pr.payload, pr.after)
	}
	for k := range resync {
		p.markNotFresh(ctx, k)
		p.launch(k, false)
	}
	for k := range overLimit {
		if n, err := p.transition(ctx, k, event{kind: evOverLimit}); err == nil {
			p.log.Info("node over cache.item_limit: oldest items dropped, node partial", "profile", k.profile, "service", k.service, "node", k.node, "state", n.state)
		}
	}
	p.mu.Lock()
	for _, wk := range todo {
		if pend := p.pending[wk.op.key]; pend != nil {
			for _, it := range wk.op.items {
				delete(pend, it.ID)
			}
			for _, id := range wk.op.retracted {
				delete(pend, id)
			}
			if len(pend) == 0 {
				delete(p.pending, wk.op.key)
			}
		}
	}
	p.mu.Unlock()
	return nil
}

// trim keeps the max most recent items of a node (the service drops older
// ones when max_items is exceeded).
func trim(ctx context.Context, tx *ent.Tx, nodeID, max int) error {
	rows, err := tx.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Order(ent.Desc(pubsubitem.FieldPosition)).
		Offset(max).Select(pubsubitem.FieldID).All(ctx)
	if err != nil {
		return fmt.Errorf("find items beyond max_items: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	if _, err := tx.PubsubItem.Delete().Where(pubsubitem.IDIn(ids...)).Exec(ctx); err != nil {
		return fmt.Errorf("drop items beyond max_items: %w", err)
	}
	return nil
}

// learnRepublish handles a re-published item on a service whose behaviour
// is unknown: the node is not fresh until a sync tells where the service
// put the item, which is then learned: after every item that followed it
// (moves to the end, as Prosody does) or before them (keeps its place, as
// ejabberd does). Items re-published meanwhile are left out of the
// comparison; unclear evidence teaches nothing.
func (p *Plugin) learnRepublish(ctx context.Context, k nodeKey, id string, payload []byte, after []string) {
	_, ok, err := p.modify(ctx, k, func(n *nodeInfo) bool { n.fresh = false; return true })
	if err != nil {
		p.log.Warn("marking node not fresh", "err", err)
	}
	if err != nil || !ok {
		return
	}
	p.mu.Lock()
	if p.probing[k] == nil {
		p.probing[k] = map[string]bool{}
	}
	p.probing[k][id] = true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.probing[k], id)
			if len(p.probing[k]) == 0 {
				delete(p.probing, k)
			}
			p.mu.Unlock()
		}()
		// The evidence is a sync that fetched after the re-publish: one
		// that was running may not have, and a service may notify before
		// it stores. A listing still showing the old payload is retried.
		var n nodeInfo
		var pos map[string]int64
		for attempt := 0; ; attempt++ {
			if running := p.runningJob(k); running != nil {
				select {
				case <-running.Done():
				case <-p.ctx.Done():
					return
				}
			}
			j := p.launch(k, false)
			select {
			case <-j.Done():
			case <-p.ctx.Done():
				return
			}
			if j.Err() != nil {
				return
			}
			var ok bool
			var err error
			if n, ok, err = p.node(p.ctx, k); err != nil || !ok {
				return
			}
			stored, err := p.db.readItems(p.ctx, readQuery{nodeID: n.id, ids: []string{id}})
			if err != nil {
				return
			}
			if len(stored) == 1 && string(stored[0].Payload) == string(payload) {
				if pos, err = p.db.itemPositions(p.ctx, p.h.Store.Client, n.id, nil); err != nil {
					return
				}
				break
			}
			if attempt == 3 {
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-p.ctx.Done():
				return
			}
		}
		cur, ok := pos[id]
		if !ok {
			return
		}
		p.mu.Lock()
		others := map[string]bool{}
		for o := range p.probing[k] {
			others[o] = true
		}
		p.mu.Unlock()
		before, behind := 0, 0
		for _, o := range after {
			v, ok := pos[o]
			if !ok || others[o] {
				continue
			}
			if v < cur {
				before++
			} else {
				behind++
			}
		}
		var moves serviceprofile.RepublishMoves
		// Items re-published meanwhile whose notification is not stored yet
		// may blur the evidence: a clear majority decides.
		switch {
		case before > 4*behind:
			moves = serviceprofile.RepublishMovesYes
		case behind > 4*before:
			moves = serviceprofile.RepublishMovesNo
		default:
			return
		}
		if err := p.beh.learn(p.ctx, n.profileID, k.service, func(b *behaviour) { b.RepublishMoves = moves }); err != nil {
			p.log.Warn("learning service behaviour", "err", err)
		}
		p.log.Info("learned where the service puts re-published items", "service", k.service, "moves_to_end", moves)
	}()
}

// applyNodeOp applies a purge, delete, configuration or subscription
// change.
func (p *Plugin) applyNodeOp(ctx context.Context, o op) error {
	n, ok, err := p.node(ctx, o.key)
	if err != nil || !ok {
		return err
	}
	switch o.kind {
	case opPurgeItems:
		if _, err := p.h.Store.Client.PubsubItem.Delete().Where(pubsubitem.NodeID(n.id)).Exec(ctx); err != nil {
			return fmt.Errorf("purge cached items: %w", err)
		}
		// The node is now empty on the service too: still complete.
		return nil
	case opDeleteNode:
		if _, err := p.h.Store.Client.PubsubNode.Delete().Where(pubsubnode.ID(n.id)).Exec(ctx); err != nil {
			return fmt.Errorf("delete cached node: %w", err)
		}
		p.forget(o.key)
		return nil
	case opConfig:
		lowered := false
		n, _, err := p.modify(ctx, o.key, func(n *nodeInfo) bool {
			lowered = o.maxItems != nil && *o.maxItems > 0 && (n.maxItems == nil || *n.maxItems <= 0 || *o.maxItems < *n.maxItems)
			n.maxItems = o.maxItems
			n.analysed = false // analysed again on next use (no network request)
			if lowered && cached(*n) {
				// Services differ: Prosody drops the extra items at once,
				// ejabberd at the next publish. The listing tells; the
				// next publishes are trimmed to the new limit.
				n.fresh = false
			}
			return true
		})
		if err == nil && lowered && cached(n) {
			p.launch(o.key, false)
		}
		return err
	case opSubGone:
		if _, err := p.h.Store.Client.PubsubItem.Delete().Where(pubsubitem.NodeID(n.id)).Exec(ctx); err != nil {
			return fmt.Errorf("drop items of an unsubscribed node: %w", err)
		}
		_, err := p.transition(ctx, o.key, event{kind: evSubscriptionGone})
		return err
	}
	return nil
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
	if n, ok, _ := p.node(ctx, o.key); ok {
		o.maxItems = n.maxItems
	}
	for _, f := range ev.Fields {
		if f.Var == "pubsub#max_items" {
			o.maxItems = maxItemsOf(f.Values)
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

// markNotFresh makes a node go to the network (and be reconciled).
func (p *Plugin) markNotFresh(ctx context.Context, k nodeKey) {
	_, _, err := p.modify(ctx, k, func(n *nodeInfo) bool {
		if !n.fresh {
			return false
		}
		n.fresh = false
		return true
	})
	if err != nil {
		p.log.Warn("marking node not fresh", "err", err)
	}
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
		if n, ok, _ := p.node(ctx, k); ok {
			o.maxItems = n.maxItems
		}
		if v, ok := ev.Options["pubsub#max_items"]; ok {
			o.maxItems = maxItemsOf(v)
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

// hasPending reports whether the profile published items of k whose server
// copy has not been stored yet, or the place of a re-published item is
// being learned.
func (p *Plugin) hasPending(k nodeKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending[k]) > 0 || len(p.probing[k]) > 0 || p.queued[k] > 0
}

// queue counts the item writes of k waiting in the writer: while there
// are some, the node is not answered from the cache (the answer would miss
// what the service already notified).
func (p *Plugin) queue(k nodeKey, delta int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queued[k] += delta; p.queued[k] <= 0 {
		delete(p.queued, k)
	}
}

// notifiedKeep is how long the arrival of an item notification is
// remembered (to tell whether a publish's answer came after its
// notification).
const notifiedKeep = time.Minute

// noteNotified remembers when items of k were notified.
func (p *Plugin) noteNotified(k nodeKey, items []wire.Item) {
	if len(items) == 0 {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notifiedN >= 4096 {
		p.notifiedN = 0
		for nk, ids := range p.notifiedAt {
			for id, at := range ids {
				if now.Sub(at) > notifiedKeep {
					delete(ids, id)
				} else {
					p.notifiedN++
				}
			}
			if len(ids) == 0 {
				delete(p.notifiedAt, nk)
			}
		}
		if p.notifiedN >= 2048 {
			// Many recent notifications: keep the bound, forget them all
			// (a publish then waits for its refetch: slower, still exact).
			p.notifiedAt, p.notifiedN = map[nodeKey]map[string]time.Time{}, 0
		}
	}
	ids := p.notifiedAt[k]
	if ids == nil {
		ids = map[string]time.Time{}
		p.notifiedAt[k] = ids
	}
	for _, it := range items {
		if _, seen := ids[it.ID]; !seen {
			p.notifiedN++
		}
		ids[it.ID] = now
	}
}
