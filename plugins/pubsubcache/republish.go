package pubsubcache

import (
	"context"
	"time"

	"example.org/backend/ent/serviceprofile"
)

// learnRepublish handles a re-published item on a service whose behaviour
// is unknown: the node is not fresh until a sync tells where the service
// put the item, which is then learned: after every item that followed it
// (moves to the end, as Prosody does) or before them (keeps its place, as
// ejabberd does). Items re-published meanwhile are left out of the
// comparison; unclear evidence teaches nothing.
func (p *Plugin) learnRepublish(ctx context.Context, k nodeKey, id string, payload []byte, after []string) {
	if !p.markNotFresh(ctx, k) {
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
