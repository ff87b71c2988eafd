package pubsubcache

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/ent/serviceprofile"
)

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
	skip := repeats(ops)
	for i, o := range ops {
		if skip[i] {
			continue
		}
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
							after, err := tx.PubsubItem.Query().Where(pubsubitem.NodeID(n.id), pubsubitem.PositionGT(cur)).
								Select(pubsubitem.FieldItemID).Strings(ctx)
							if err != nil {
								return fmt.Errorf("read the items after a re-published one: %w", err)
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
				if _, err := trim(ctx, tx, n.id, *n.maxItems); err != nil {
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
			dropped, err := trim(ctx, tx, n.id, limit)
			if err != nil {
				return err
			}
			if dropped > 0 {
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
// ones when max_items is exceeded); it returns how many it dropped.
func trim(ctx context.Context, tx *ent.Tx, nodeID, max int) (int, error) {
	rows, err := tx.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Order(ent.Desc(pubsubitem.FieldPosition)).
		Offset(max).Select(pubsubitem.FieldID).All(ctx)
	if err != nil {
		return 0, fmt.Errorf("find items beyond max_items: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	if _, err := tx.PubsubItem.Delete().Where(pubsubitem.IDIn(ids...)).Exec(ctx); err != nil {
		return 0, fmt.Errorf("drop items beyond max_items: %w", err)
	}
	return len(rows), nil
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
			n.analysed = false // analysed again on next use (no network request)
			if !o.maxItemsSet {
				return true
			}
			lowered = o.maxItems != nil && *o.maxItems > 0 && (n.maxItems == nil || *n.maxItems <= 0 || *o.maxItems < *n.maxItems)
			n.maxItems = o.maxItems
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
