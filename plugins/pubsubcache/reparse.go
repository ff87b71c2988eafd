package pubsubcache

import (
	"context"
	"fmt"
	"time"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/plugins/xep0060/wire"
)

// reparseBatch is how many pending items one reparse round reads.
const reparseBatch = 200

// reparser parses the items stored while their parser's plugin was down
// (parse_state pending), at start and every time a provider comes up.
func (p *Plugin) reparser() {
	defer p.wg.Done()
	if p.h.Analysers == nil {
		return
	}
	safety := time.NewTicker(time.Minute)
	defer safety.Stop()
	for {
		up := p.h.Analysers.ProviderUp()
		if err := p.reparsePending(p.ctx); err != nil && p.ctx.Err() == nil {
			p.log.Warn("parsing pending items failed", "err", err)
		}
		select {
		case <-up:
		case <-p.reparseNudge:
			// A batch failed while its provider looked up (it crashed or
			// hung): its items are being stored pending. The provider
			// coming back wakes us too; this covers a restart that was
			// faster than the store.
			select {
			case <-time.After(time.Second):
			case <-p.ctx.Done():
				return
			}
		case <-safety.C:
		case <-p.ctx.Done():
			return
		}
	}
}

// nudgeReparse asks the reparser to look for pending items soon.
func (p *Plugin) nudgeReparse() {
	select {
	case p.reparseNudge <- struct{}{}:
	default:
	}
}

// reparsePending parses every pending item whose analyser's provider is
// running.
func (p *Plugin) reparsePending(ctx context.Context) error {
	last := 0
	done := 0
	for {
		rows, err := p.h.Store.Client.PubsubItem.Query().
			Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending), pubsubitem.IDGT(last)).
			WithNode(func(q *ent.PubsubNodeQuery) { q.WithProfile() }).
			Order(ent.Asc(pubsubitem.FieldID)).Limit(reparseBatch).All(ctx)
		if err != nil {
			return fmt.Errorf("list items to parse: %w", err)
		}
		if len(rows) == 0 {
			if done > 0 {
				p.log.Info("parsed items stored while their parser was down", "items", done)
			}
			return nil
		}
		last = rows[len(rows)-1].ID
		p.log.Debug("reparse round", "rows", len(rows), "after", last)
		type group struct {
			key      nodeKey
			analyser string
			rows     []*ent.PubsubItem
		}
		groups := map[int]*group{}
		var order []int
		for _, r := range rows {
			nd := r.Edges.Node
			if nd == nil || nd.Edges.Profile == nil || nd.Analyser == nil || !p.h.Analysers.Available(*nd.Analyser) {
				continue
			}
			g := groups[nd.ID]
			if g == nil {
				g = &group{key: nodeKey{nd.Edges.Profile.Name, nd.Service, nd.Name}, analyser: *nd.Analyser}
				groups[nd.ID] = g
				order = append(order, nd.ID)
			}
			g.rows = append(g.rows, r)
		}
		for _, nodeID := range order {
			g := groups[nodeID]
			items := make([]wire.Item, len(g.rows))
			for i, r := range g.rows {
				items[i] = wire.Item{ID: r.ItemID, Payload: r.Payload}
				if r.Publisher != nil {
					items[i].Publisher = *r.Publisher
				}
			}
			stored := p.parse(ctx, g.key, g.analyser, items)
			// Through the writer: ordered with notifications; an item a
			// notification replaced meanwhile is left alone (its payload
			// is no longer the one parsed here).
			err := p.w.do(ctx, op{kind: opFunc, key: g.key, fn: func(ctx context.Context) error {
				return p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
					return p.storeReparsed(ctx, tx, g.rows, stored)
				})
			}})
			if err != nil {
				return err
			}
			for _, s := range stored {
				if s.parseState != pubsubitem.ParseStatePending {
					done++
				}
			}
		}
	}
}

// storeReparsed writes parse results of rows (same order as stored) whose
// payload did not change since they were read.
func (p *Plugin) storeReparsed(ctx context.Context, tx *ent.Tx, rows []*ent.PubsubItem, stored []storedItem) error {
	var paths []string
	if p.db.index != nil {
		paths = p.db.indexPaths()
	}
	for i, s := range stored {
		if s.parseState == pubsubitem.ParseStatePending {
			continue
		}
		u := tx.PubsubItem.Update().Where(pubsubitem.ID(rows[i].ID), pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending),
			pubsubitem.Payload(rows[i].Payload)).
			SetParseState(s.parseState).SetNillableParseError(nilIfEmpty(s.parseErr)).SetSearchText(s.searchText)
		if m := parsedMap(s.parsed); m != nil {
			u.SetParsed(m)
		}
		n, err := u.Save(ctx)
		if err != nil {
			return fmt.Errorf("store parse of item %s: %w", s.ID, err)
		}
		if n == 1 && len(paths) > 0 {
			if err := p.db.index(ctx, tx, rows[i].ID, s.parsed, paths); err != nil {
				return err
			}
		}
	}
	return nil
}
