package pubsubcache

import (
	"slices"
	"sync"
	"time"

	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// notifiedKeep is how long the arrival of an item notification is
// remembered (to tell whether a publish's answer came after its
// notification).
const notifiedKeep = time.Minute

// publishes follows the profile's own publishes until the server's copy is
// stored (DESIGN §5: the server's copy, never the bytes sent): it owns the
// published ids waiting for their copy (pending, with when their publish
// was answered) and when item
// notifications last arrived (notifiedAt, notifiedN entries, bounded). Its
// lock guards those maps only.
type publishes struct {
	p *Plugin

	mu         sync.Mutex
	pending    map[nodeKey]map[string]time.Time
	notifiedAt map[nodeKey]map[string]time.Time
	notifiedN  int
}

func newPublishes(p *Plugin) *publishes {
	return &publishes{p: p, pending: map[nodeKey]map[string]time.Time{}, notifiedAt: map[nodeKey]map[string]time.Time{}}
}

// has reports whether the profile published items of k whose server copy
// is not stored yet.
func (ps *publishes) has(k nodeKey) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.pending[k]) > 0
}

// notified remembers when items of k were notified, once their write is
// queued (onItems). The items' own publishes waiting for them no longer
// wait: their copies are stored or queued (a publish whose answer was
// handled between the queueing and this call would otherwise wait for
// pendingTimeout, its write applied already).
func (ps *publishes) notified(k nodeKey, items []wire.Item) {
	if len(items) == 0 {
		return
	}
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pend := ps.pending[k]; pend != nil {
		for _, it := range items {
			delete(pend, it.ID)
		}
		if len(pend) == 0 {
			delete(ps.pending, k)
		}
	}
	if ps.notifiedN >= 4096 {
		ps.notifiedN = 0
		for nk, ids := range ps.notifiedAt {
			for id, at := range ids {
				if now.Sub(at) > notifiedKeep {
					delete(ids, id)
				} else {
					ps.notifiedN++
				}
			}
			if len(ids) == 0 {
				delete(ps.notifiedAt, nk)
			}
		}
		if ps.notifiedN >= 2048 {
			// Many recent notifications: keep the bound, forget them all
			// (a publish then waits for its refetch: slower, still exact).
			ps.notifiedAt, ps.notifiedN = map[nodeKey]map[string]time.Time{}, 0
		}
	}
	ids := ps.notifiedAt[k]
	if ids == nil {
		ids = map[string]time.Time{}
		ps.notifiedAt[k] = ids
	}
	for _, it := range items {
		if _, seen := ids[it.ID]; !seen {
			ps.notifiedN++
		}
		ids[it.ID] = now
	}
}

// published: the profile published an item on a cached node. The server's
// copy arrives with the notification; until then the node is not answered
// from the cache, and if it does not come in time the item is fetched by
// id.
func (ps *publishes) published(ev *xep0060.PublishedEvent) {
	p := ps.p
	k := nodeKey{ev.Profile, ev.Service, ev.Node}
	ps.mu.Lock()
	if at, ok := ps.notifiedAt[k][ev.ID]; ok && !at.Before(ev.Sent) {
		// The notification came before the answer (Prosody sends it
		// first): it is stored or queued (and a queued write keeps the
		// node off the cache until it is applied).
		ps.mu.Unlock()
		return
	}
	if ps.pending[k] == nil {
		ps.pending[k] = map[string]time.Time{}
	}
	ps.pending[k][ev.ID] = time.Now()
	ps.mu.Unlock()
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
		ps.mu.Lock()
		_, still := ps.pending[k][ev.ID]
		ps.mu.Unlock()
		if !still {
			return
		}
		p.log.Debug("cache own publish not notified in time: fetching it", "node", k.node, "id", ev.ID)
		page, err := p.c.FetchItems(internal(p.ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, ItemIDs: []string{ev.ID}})
		if err != nil {
			p.log.Warn("fetching a published item failed; the node is re-synced", "node", k.node, "id", ev.ID, "err", err)
			// Not fresh before it stops waiting (the other order let the
			// node be answered from the cache without the item while the
			// write waited in the writer's queue); still waiting if that
			// write fails.
			if err := p.w.do(p.ctx, op{kind: opFunc, key: k, fn: p.transitionOf(k, event{kind: evNotFresh}, false)}); err == nil {
				ps.forgetNode(k)
			}
			return
		}
		// Not in the answer: no longer on the service (retracted, or
		// dropped, meanwhile; no notification told): removed here too,
		// which ends the wait (else the node stays off the cache).
		var gone []string
		if !slices.ContainsFunc(page.Items, func(it wire.Item) bool { return it.ID == ev.ID }) {
			gone = []string{ev.ID}
		}
		p.w.enqueue(itemsOp(k, page.Items, gone, true))
	}()
}

// stored: the server's copies of ids (or their retractions) are stored.
func (ps *publishes) stored(k nodeKey, ids []string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pend := ps.pending[k]
	if pend == nil {
		return
	}
	for _, id := range ids {
		delete(pend, id)
	}
	if len(pend) == 0 {
		delete(ps.pending, k)
	}
}

// forgetNode forgets the pending publishes of a node (it is gone, or
// emptied).
func (ps *publishes) forgetNode(k nodeKey) {
	ps.mu.Lock()
	delete(ps.pending, k)
	ps.mu.Unlock()
}

// forgetBefore forgets the pending publishes of a node answered before
// since, whose items a listing (or reconciliation) that began then
// settled: stored again from the service's answers, or found gone from
// the service (settled nil: all of them, a whole listing saw every item).
// One answered later may be in none of its pages, and one a
// reconciliation did not store again (an update in place on a service
// whose id listing cannot tell it): they stay pending (the node off the
// cache until its copy is stored, by its notification or fetched by id).
func (ps *publishes) forgetBefore(k nodeKey, since time.Time, settled func(id string) bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id, at := range ps.pending[k] {
		if at.Before(since) && (settled == nil || settled(id)) {
			delete(ps.pending[k], id)
		}
	}
	if len(ps.pending[k]) == 0 {
		delete(ps.pending, k)
	}
}

// forgetProfile forgets the pending publishes of a profile (it went
// offline: its nodes are reconciled when it is back).
func (ps *publishes) forgetProfile(profileName string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k := range ps.pending {
		if k.profile == profileName {
			delete(ps.pending, k)
		}
	}
}
