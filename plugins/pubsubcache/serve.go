package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// The server: the GetItems handler reads the facts a decision needs,
// decides (decide.go) and reads the answer. It holds no state of its own.

// cacheCursorPrefix starts the cursors the cache issues for items whose
// service cursor it has not seen. They are valid for paging through the
// cache; a request carrying one goes to the network only while the node
// is not served from the cache (the service would not know it).
const cacheCursorPrefix = "bkc:"

// cursorOut is the cursor the cache hands out for an item: the service's
// when it saw it, else its own.
func cursorOut(id, cursor string) string {
	if cursor != "" {
		return cursor
	}
	return cacheCursorPrefix + id
}

// drainWait bounds how long a request waits for the node's queued
// notifications to be applied before it goes to the service.
const drainWait = 250 * time.Millisecond

// internalKey marks contexts of the cache's own requests (syncs, fetches
// by id), whose answers the ItemsReceived observer must not analyse again.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool { v, _ := ctx.Value(internalKey{}).(bool); return v }

// getItems is the GetItems handler: it answers from the cache what it can
// answer exactly and lets everything else go to the network.
func (p *Plugin) getItems(ctx context.Context, req *xep0060.ItemsRequest) (triggers.Decision[*xep0060.ItemsPage], error) {
	cont := triggers.Continue[*xep0060.ItemsPage]()
	k := nodeKey{req.Profile, req.Service, req.Node}
	n, known := p.nodes.get(k)
	if known && n.state == StateComplete && n.fresh && !req.NoCache && p.w.hasQueued(k) {
		// Notifications of the node already received wait in the writer
		// (a busy node): an answer now would miss them. Applying them
		// takes milliseconds: wait for them rather than ask the service.
		p.w.waitDrained(ctx, k, drainWait)
		n, known = p.nodes.get(k)
	}
	pp := p.params.of(ctx, req.Profile)
	f, err := p.facts(ctx, k, n, known, req, pp)
	if err != nil {
		p.log.Warn("cache lookup failed; asking the service", "profile", req.Profile, "service", req.Service, "node", req.Node, "err", err)
		p.misses.Add(1)
		p.answered("miss", n.typ)
		return cont, nil
	}
	v := decide(n, known, req, f, time.Now())
	if v.act == actBypass {
		p.bypass.Add(1)
		p.answered("bypass", n.typ)
		return cont, nil
	}
	if known && (n.analysed && n.version != p.analysers.version() || !n.analysed && n.state != StateNever) {
		p.analyseLater(k, nil, true, pp)
	}
	if v.startSync {
		p.sync.launch(k, false)
	}
	if v.act == actServe && v.check && !p.idsMatch(ctx, k, n) {
		v.act = actNetwork
	}
	if v.act == actNetwork {
		p.misses.Add(1)
		p.answered("miss", n.typ)
		return cont, nil
	}
	page, ok, err := p.read(ctx, n, req, f.beh, v.window)
	if err != nil || !ok {
		if err != nil {
			p.log.Warn("cache read failed; asking the service", "profile", req.Profile, "service", req.Service, "node", req.Node, "err", err)
			p.healDamaged(ctx, k, err)
		}
		p.misses.Add(1)
		p.answered("miss", n.typ)
		return cont, nil
	}
	if v.act == actServeStale {
		page.Stale = true
		p.stale.Add(1)
		p.answered("stale", n.typ)
	} else {
		p.hits.Add(1)
		p.answered("hit", n.typ)
	}
	return triggers.Answer(page), nil
}

// facts reads what decide needs: the profile's state, pending writes, the
// service's behaviour, and for a complete node the item count and cursor
// position of an RSM request or the order of several ids.
func (p *Plugin) facts(ctx context.Context, k nodeKey, n nodeInfo, known bool, req *xep0060.ItemsRequest, pp profileParams) (facts, error) {
	f := facts{enabled: pp.enabled, cursor: -1}
	if req.NoCache || !pp.enabled || !known {
		return f, nil
	}
	f.online = p.online(k.profile)
	f.pending = p.pubs.has(k) || p.learn.isProbing(k) || p.w.hasQueued(k)
	if n.state != StateComplete {
		return f, nil
	}
	return p.readFacts(ctx, f, n, k.service, req)
}

// readFacts fills the facts read from the cached items of node n.
func (p *Plugin) readFacts(ctx context.Context, f facts, n nodeInfo, service string, req *xep0060.ItemsRequest) (facts, error) {
	f.beh = p.learn.get(ctx, n.profileID, service)
	if q := req.RSM; q != nil && f.beh.RSM == serviceprofile.RsmYes {
		counts, err := p.store.countItems(ctx, []int{n.id}, false)
		if err != nil {
			return f, err
		}
		f.total = counts[n.id]
		cursor := ""
		switch {
		case q.After != nil:
			cursor = *q.After
		case q.Before != nil:
			cursor = *q.Before
		}
		if cursor != "" {
			if f.cursor, err = p.store.cursorIndex(ctx, n.id, cursor); err != nil {
				return f, err
			}
		}
	}
	if len(req.ItemIDs) > 1 && req.OrderBy == "" && f.beh.IDsOrder == serviceprofile.IdsOrderUnknown {
		var err error
		if f.idsSorted, err = p.store.idsSorted(ctx, n.id, req.ItemIDs); err != nil {
			return f, err
		}
	}
	return f, nil
}

// read reads the answer to req from the cache (w: the RSM window decide
// chose); ok is false when the node changed under the read (the service
// answers then).
func (p *Plugin) read(ctx context.Context, n nodeInfo, req *xep0060.ItemsRequest, beh behaviour, w window) (*xep0060.ItemsPage, bool, error) {
	if req.RSM != nil {
		return p.readWindow(ctx, n, w)
	}
	q := readQuery{nodeID: n.id, maxItems: req.MaxItems, ids: req.ItemIDs, orderBy: req.OrderBy,
		idsInRequestOrder: beh.IDsOrder == serviceprofile.IdsOrderRequest}
	items, err := p.store.readItems(ctx, q)
	if err != nil {
		return nil, false, err
	}
	page := &xep0060.ItemsPage{Items: items, FromCache: true}
	if req.MaxItems > 0 && len(req.ItemIDs) == 0 && beh.MaxItemsRSM == serviceprofile.MaxItemsRsmYes {
		// The service answers max_items with a <set/> (ejabberd): its count,
		// the index of the first item (the count minus max_items, negative
		// when the node holds fewer) and the cursors of the page's ends.
		if page.RSM, err = p.maxItemsSet(ctx, n, items, req.MaxItems, beh.EmptyIndex); err != nil {
			return nil, false, err
		}
	}
	// Complete as the client says of the service's own answer.
	page.Complete = xep0060.Complete(req, wire.ItemsReply{Items: items, RSM: page.RSM})
	return page, true, nil
}

// readWindow reads an RSM window.
func (p *Plugin) readWindow(ctx context.Context, n nodeInfo, w window) (*xep0060.ItemsPage, bool, error) {
	count := w.count
	set := &wire.RSMSet{Count: &count, FirstIndex: w.index}
	if w.start == w.end {
		return &xep0060.ItemsPage{Items: []wire.Item{}, RSM: set, FromCache: true, Complete: xep0060.SetComplete(set, 0)}, true, nil
	}
	page, err := p.store.readPage(ctx, n.id, w.start, w.end-w.start)
	if err != nil {
		return nil, false, err
	}
	if len(page) != w.end-w.start {
		return nil, false, nil // changed meanwhile: let the service answer
	}
	items := make([]wire.Item, len(page))
	for i, it := range page {
		items[i] = it.Item
	}
	first, last := page[0], page[len(page)-1]
	set.First, set.Last = cursorOut(first.ID, first.cursor), cursorOut(last.ID, last.cursor)
	return &xep0060.ItemsPage{Items: items, RSM: set, FromCache: true, Complete: xep0060.SetComplete(set, len(items))}, true, nil
}

// maxItemsSet is the <set/> a service that pages max_items answers
// (ejabberd) puts on its answer.
func (p *Plugin) maxItemsSet(ctx context.Context, n nodeInfo, items []wire.Item, maxItems int, emptyIndex string) (*wire.RSMSet, error) {
	if len(items) == 0 {
		// An empty node: a count of 0 (ejabberd gives no index).
		zero := 0
		set := &wire.RSMSet{Count: &zero}
		if emptyIndex == "minus_one" {
			set.FirstIndex = intPtr(-1)
		}
		return set, nil
	}
	counts, err := p.store.countItems(ctx, []int{n.id}, false)
	if err != nil {
		return nil, err
	}
	total := counts[n.id]
	idx := total - maxItems
	first, last := items[0].ID, items[len(items)-1].ID
	cursors, err := p.store.cursorsOf(ctx, n.id, first, last)
	if err != nil {
		return nil, err
	}
	return &wire.RSMSet{Count: &total, FirstIndex: &idx, First: cursorOut(first, cursors[first]), Last: cursorOut(last, cursors[last])}, nil
}

// itemsReceived observes answers of services: it learns the service's
// behaviour and analyses nodes from their items (no extra request, in the
// background).
func (p *Plugin) itemsReceived(ctx context.Context, res *xep0060.ItemsResult) error {
	if isInternal(ctx) || res == nil || res.Request == nil || res.Page == nil {
		return nil
	}
	req, page := res.Request, res.Page
	pid, err := p.store.profileID(ctx, req.Profile)
	if err != nil {
		return nil
	}
	k := nodeKey{req.Profile, req.Service, req.Node}
	p.learn.fromAnswer(ctx, pid, k, req, page)
	if req.NoCache {
		return nil
	}
	pp := p.params.of(ctx, req.Profile)
	if !pp.enabled {
		return nil
	}
	n, ok := p.nodes.get(k)
	if !ok || !n.analysed || n.version != p.analysers.version() {
		var first *wire.Item
		if len(page.Items) > 0 && len(req.ItemIDs) == 0 {
			it := page.Items[0]
			first = &it
		}
		p.analyseLater(k, first, false, pp)
		return nil
	}
	if n.toSync && n.state == StateNever {
		p.sync.launch(k, false)
	}
	return nil
}

// healDamaged, when err is a damaged stored payload, makes the next
// listing store the item again and starts a full sync of k (until it
// ends, the service answers the node's requests: the read fails).
func (p *Plugin) healDamaged(ctx context.Context, k nodeKey, err error) {
	var d *damagedError
	if !errors.As(err, &d) {
		return
	}
	p.log.Error("a cached payload is damaged: syncing the node again", "profile", k.profile, "service", k.service, "node", k.node, "item", d.itemID)
	if err := p.store.forgetDigest(ctx, d.nodeID, d.itemID); err != nil {
		p.log.Error("cannot mark the damaged item", "err", err)
		return
	}
	p.sync.launch(k, true)
}

// idsMatch checks a node whose retractions are notified to no one before
// the cache answers, with one request without the node's payloads: where
// the service counts the node in its max_items answers (ejabberd, whose
// PEP services list item ids only to contacts with a presence
// subscription) its count must be the cached one, else the service's id
// listing (disco#items) must hold exactly the cached ids. Additions and
// updates are notified (the node is fresh): a removal nobody was told of
// makes the service hold fewer items, or others. A check that differs
// makes the node not fresh (reconciled now); one that fails (a deleted
// node) sends the read to the service.
func (p *Plugin) idsMatch(ctx context.Context, k nodeKey, n nodeInfo) bool {
	same, listed, cached, err := p.checkHeld(ctx, k, n)
	if err != nil {
		p.log.Debug("checked read failed; asking the service", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		p.checks("failed")
		return false
	}
	if same {
		p.checks("matched")
		return true
	}
	p.checks("differed")
	p.log.Info("checked read: the service holds other items than the cache (retractions notified to no one); reconciling",
		"profile", k.profile, "service", k.service, "node", k.node, "service_items", listed, "cached", cached)
	if err := p.w.do(ctx, op{kind: opFunc, key: k, fn: func(ctx context.Context, t *wtx) error {
		if _, _, err := t.transition(ctx, k, event{kind: evNotFresh}); err != nil {
			return err
		}
		t.afterwards(func() { p.sync.launch(k, false) })
		return nil
	}}); err != nil {
		p.log.Warn("checked read: marking the node not fresh", "node", k.node, "err", err)
	}
	return false
}

// checkHeld compares what the service holds of the node with the cache
// (idsMatch): same, and the two counts.
func (p *Plugin) checkHeld(ctx context.Context, k nodeKey, n nodeInfo) (same bool, listed, cached int, err error) {
	if beh := p.learn.get(ctx, n.profileID, k.service); beh.MaxItemsRSM == serviceprofile.MaxItemsRsmYes {
		p.checkRequests.Add(1)
		page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: 1})
		if err != nil {
			return false, 0, 0, fmt.Errorf("newest item: %w", err)
		}
		if page.RSM == nil || page.RSM.Count == nil {
			return false, 0, 0, fmt.Errorf("newest item: no count in the answer")
		}
		if cached, err = p.store.count(ctx, p.store.db.Client, n.id); err != nil {
			return false, 0, 0, err
		}
		return *page.RSM.Count == cached, *page.RSM.Count, cached, nil
	}
	ids, err := p.c.ItemIDs(internal(ctx), k.profile, k.service, k.node)
	if err != nil {
		return false, 0, 0, err
	}
	pos, err := p.store.itemPositions(ctx, p.store.db.Client, n.id, nil)
	if err != nil {
		return false, 0, 0, err
	}
	same = len(ids) == len(pos)
	for _, id := range ids {
		if _, ok := pos[id]; !ok {
			same = false
			break
		}
	}
	return same, len(ids), len(pos), nil
}
