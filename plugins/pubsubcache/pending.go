package pubsubcache

import (
	"time"

	"example.org/backend/plugins/xep0060/wire"
)

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
