package pubsubcache

import (
	"bytes"
	"context"
	"encoding/xml"
	"slices"
	"time"

	"example.org/backend/ent/serviceprofile"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// internalKey marks contexts of the cache's own requests (syncs, fetches
// by id), whose answers the ItemsReceived observer must not analyse again.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool { v, _ := ctx.Value(internalKey{}).(bool); return v }

// shapeOf classifies a request.
func shapeOf(req *xep0060.ItemsRequest) shape {
	switch {
	case req.SubID != "" || req.RSM != nil && (req.MaxItems > 0 || len(req.ItemIDs) > 0 || req.OrderBy != ""):
		return shapeOther
	case req.RSM != nil:
		return shapeRSM
	}
	return shapeNoRSM
}

// version is the analyser set's version (0 without a registry).
func (p *Plugin) version() int64 {
	if p.h.Analysers == nil {
		return 0
	}
	return p.h.Analysers.Version()
}

// getItems is the GetItems handler: it answers from the cache what it can
// answer exactly and lets everything else go to the network.
func (p *Plugin) getItems(ctx context.Context, req *xep0060.ItemsRequest) (triggers.Decision[*xep0060.ItemsPage], error) {
	cont := triggers.Continue[*xep0060.ItemsPage]()
	if req.NoCache {
		p.bypass.Add(1)
		return cont, nil
	}
	pp := p.paramsOf(ctx, req.Profile)
	if !pp.enabled {
		p.bypass.Add(1)
		return cont, nil
	}
	k := nodeKey{req.Profile, req.Service, req.Node}
	n, ok, err := p.node(ctx, k)
	if err != nil {
		p.log.Warn("cache lookup failed; asking the service", "profile", req.Profile, "service", req.Service, "node", req.Node, "err", err)
		p.misses.Add(1)
		return cont, nil
	}
	if !ok {
		p.misses.Add(1)
		return cont, nil
	}
	if n.analysed && n.version != p.version() || !n.analysed && n.state != StateNever {
		n = p.reanalyseFromCache(ctx, k, n, pp)
	}
	online := p.online(req.Profile)
	act, start := decide(n, shapeOf(req), online, p.hasPending(k), time.Now())
	if start {
		p.launch(k, false)
	}
	if act == actNetwork {
		p.misses.Add(1)
		return cont, nil
	}
	page, ok, err := p.answer(ctx, k, n, req)
	if err != nil {
		p.log.Warn("cache read failed; asking the service", "profile", req.Profile, "service", req.Service, "node", req.Node, "err", err)
		p.misses.Add(1)
		return cont, nil
	}
	if !ok {
		p.misses.Add(1)
		return cont, nil
	}
	if act == actServeStale {
		page.Stale = true
		p.stale.Add(1)
	} else {
		p.hits.Add(1)
	}
	return triggers.Answer(page), nil
}

// answer reads the answer to a no-RSM request from the cache; ok is false
// when the cache cannot tell what the service would answer (ids order of
// the service not learned yet).
func (p *Plugin) answer(ctx context.Context, k nodeKey, n nodeInfo, req *xep0060.ItemsRequest) (*xep0060.ItemsPage, bool, error) {
	beh := p.beh.get(ctx, n.profileID, k.service)
	if req.RSM != nil {
		return p.answerRSM(ctx, n, beh, req.RSM)
	}
	q := readQuery{nodeID: n.id, maxItems: req.MaxItems, ids: req.ItemIDs, orderBy: req.OrderBy,
		idsInRequestOrder: beh.IDsOrder == serviceprofile.IdsOrderRequest}
	items, err := p.db.readItems(ctx, q)
	if err != nil {
		return nil, false, err
	}
	if len(req.ItemIDs) > 1 && beh.IDsOrder == serviceprofile.IdsOrderUnknown && req.OrderBy == "" {
		// Node order and request order differ: the service's choice is not
		// known yet (it is learned from the network answer).
		if !sameOrder(items, req.ItemIDs) {
			return nil, false, nil
		}
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

// sameOrder reports whether items come in the order of ids (ids that are
// missing ignored).
func sameOrder(items []wire.Item, ids []string) bool {
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		if _, dup := pos[id]; !dup {
			pos[id] = i
		}
	}
	last := -1
	for _, it := range items {
		if pos[it.ID] < last {
			return false
		}
		last = pos[it.ID]
	}
	return true
}

// payloadNamespace returns the namespace of the payload's first element.
func payloadNamespace(payload []byte) string {
	d := xml.NewDecoder(bytes.NewReader(payload))
	d.Strict = false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Space
		}
	}
}

// analyse runs the analyser registry on a node (no network request: the
// first item comes from an answer or from the cache) and stores the
// analysis with the set's version. Without items and without a matching
// node prefix nothing is stored (ok false).
func (p *Plugin) analyse(ctx context.Context, k nodeKey, first *wire.Item, pp profileParams) (nodeInfo, bool, error) {
	if p.h.Analysers == nil {
		return nodeInfo{}, false, nil
	}
	version := p.version()
	ns := ""
	if first != nil {
		ns = payloadNamespace(first.Payload)
	}
	a, matched := p.h.Analysers.Match(k.node, ns, pp.allowed())
	if !matched && first == nil {
		return nodeInfo{}, false, nil
	}
	n, err := p.ensure(ctx, k)
	if err != nil {
		return nodeInfo{}, false, err
	}
	n.analyser, n.typ, n.subtype = "", "", ""
	toSync := false
	if matched {
		n.analyser, n.typ, n.subtype, toSync = a.Name, a.Type, a.Subtype, a.ToSync
		if a.Match {
			mr := sdk.MatchRequest{Profile: k.profile, Service: k.service, Node: k.node, Analyser: a.Name}
			if first != nil {
				mr.FirstItem = &sdk.Item{ID: first.ID, Publisher: first.Publisher, Payload: first.Payload}
			}
			res, err := p.h.Analysers.Refine(ctx, mr)
			switch {
			case err != nil:
				p.log.Info("analyser match callback unavailable; keeping its declaration", "analyser", a.Name, "err", err)
			case res.Drop:
				n.analyser, n.typ, n.subtype, toSync = "", "", "", false
			case res.Subtype != "":
				n.subtype = res.Subtype
			}
		}
	}
	analysis := n
	n, _, err = p.modify(ctx, k, func(cur *nodeInfo) bool {
		cur.analyser, cur.typ, cur.subtype = analysis.analyser, analysis.typ, analysis.subtype
		*cur = apply(*cur, event{kind: evAnalysed, toSync: toSync}, time.Now())
		cur.version = version
		return true
	})
	if err != nil {
		return nodeInfo{}, false, err
	}
	return n, true, nil
}

// reanalyseFromCache analyses a node again from its first cached item (the
// analyser set changed); on failure the node keeps its analysis.
func (p *Plugin) reanalyseFromCache(ctx context.Context, k nodeKey, n nodeInfo, pp profileParams) nodeInfo {
	items, err := p.db.readPage(ctx, n.id, 0, 1)
	if err != nil {
		return n
	}
	var first *wire.Item
	if len(items) > 0 {
		first = &items[0].Item
	}
	if m, ok, err := p.analyse(ctx, k, first, pp); err == nil && ok {
		return m
	}
	return n
}

// itemsReceived observes answers of services: it learns the service's
// behaviour and analyses nodes from their items (no extra request).
func (p *Plugin) itemsReceived(ctx context.Context, res *xep0060.ItemsResult) error {
	if isInternal(ctx) || res == nil || res.Request == nil || res.Page == nil {
		return nil
	}
	req, page := res.Request, res.Page
	pid, err := p.profileID(ctx, req.Profile)
	if err != nil {
		return nil
	}
	k := nodeKey{req.Profile, req.Service, req.Node}
	p.learnFromAnswer(ctx, pid, k, req, page)
	if req.NoCache {
		return nil
	}
	pp := p.paramsOf(ctx, req.Profile)
	if !pp.enabled {
		return nil
	}
	n, ok, err := p.node(ctx, k)
	if err != nil {
		return err
	}
	if !ok || !n.analysed || n.version != p.version() {
		var first *wire.Item
		if len(page.Items) > 0 && len(req.ItemIDs) == 0 {
			first = &page.Items[0]
		}
		var analysed bool
		n, analysed, err = p.analyse(ctx, k, first, pp)
		if err != nil || !analysed {
			return err
		}
	}
	if n.toSync && n.state == StateNever {
		p.launch(k, false)
	}
	return nil
}

// learnFromAnswer updates the service's behaviour profile from an answer.
func (p *Plugin) learnFromAnswer(ctx context.Context, pid int, k nodeKey, req *xep0060.ItemsRequest, page *xep0060.ItemsPage) {
	before := p.beforeIndexKind(ctx, k, req, page)
	err := p.beh.learn(ctx, pid, k.service, func(b *behaviour) {
		if page.RSM != nil {
			b.RSM = serviceprofile.RsmYes
		} else if req.RSM != nil && b.RSM == serviceprofile.RsmUnknown {
			b.RSM = serviceprofile.RsmNo
		}
		if len(page.Items) > 0 {
			b.PublisherInResults = publisherSeen(page.Items)
		}
		if req.MaxItems > 0 && req.RSM == nil && len(req.ItemIDs) == 0 {
			if page.RSM != nil {
				b.MaxItemsRSM = serviceprofile.MaxItemsRsmYes
			} else {
				b.MaxItemsRSM = serviceprofile.MaxItemsRsmNo
			}
		}
		if req.RSM != nil && page.RSM != nil {
			idx := "absent"
			if fi := page.RSM.FirstIndex; fi != nil {
				idx = "real"
				if *fi < 0 {
					idx = "minus_one"
				}
			}
			switch {
			case len(page.Items) == 0 && idx != "real":
				b.EmptyIndex = idx
			case len(page.Items) > 0 && req.RSM.Before != nil && *req.RSM.Before != "":
				if idx == "absent" {
					b.BeforeIndex = idx
				} else if before != "" {
					b.BeforeIndex = before
				}
			}
		}
	})
	if err != nil {
		p.log.Warn("learning service behaviour", "service", k.service, "err", err)
	}
	p.storeCursors(ctx, k, page)
	if len(req.ItemIDs) < 2 || len(page.Items) < 2 || req.OrderBy != "" {
		return
	}
	if p.beh.get(ctx, pid, k.service).IDsOrder != serviceprofile.IdsOrderUnknown {
		return
	}
	got := make([]string, len(page.Items))
	for i, it := range page.Items {
		got[i] = it.ID
	}
	if !sameOrder(page.Items, req.ItemIDs) {
		_ = p.beh.learn(ctx, pid, k.service, func(b *behaviour) { b.IDsOrder = serviceprofile.IdsOrderCreation })
		return
	}
	// In request order: it tells only when the node's order differs.
	n, ok, err := p.node(ctx, k)
	if err != nil || !ok {
		return
	}
	pos, err := p.db.itemPositions(ctx, p.h.Store.Client, n.id, got)
	if err != nil || len(pos) != len(got) {
		return
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return int(pos[a] - pos[b]) }) {
		_ = p.beh.learn(ctx, pid, k.service, func(b *behaviour) { b.IDsOrder = serviceprofile.IdsOrderRequest })
	}
}

// publisherSeen tells whether any item carries a publisher ("yes"/"no").
func publisherSeen(items []wire.Item) string {
	for _, it := range items {
		if it.Publisher != "" {
			return "yes"
		}
	}
	return "no"
}
