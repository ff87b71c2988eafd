package pubsubcache

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// cursorWait bounds how long a live answer waits for its cursors to be
// stored.
const cursorWait = 250 * time.Millisecond

// behaviour is how one service behaves where the protocol leaves room
// (DESIGN §6), learned by observation and stored (service_profiles).
type behaviour struct {
	RSM            serviceprofile.Rsm
	IDsOrder       serviceprofile.IdsOrder
	RepublishMoves serviceprofile.RepublishMoves
	MaxItemsRSM    serviceprofile.MaxItemsRsm
	// PublisherInResults says whether items answers carry the publisher
	// attribute ("yes", "no", "" unknown): Prosody puts it in notifications
	// only, and the cache serves what answers would carry. Stored in extra.
	PublisherInResults string
	// RSM index reporting, learned from the service's RSM answers (stored
	// in extra): EmptyIndex is what <first index/> says on an answer with
	// no items (count only, a page past the end): "minus_one" (ejabberd)
	// or "absent"; BeforeIndex on a page asked with <before>CURSOR</before>:
	// "real" (the first item's index), "unclamped" (the cursor's index
	// minus max, negative near the start: ejabberd), "absent", or
	// "present" (an index of one of the first two kinds, which differ only
	// on a page the node's start cuts). "" is unknown: such requests go to
	// the network until learned.
	EmptyIndex, BeforeIndex string
}

func unknownBehaviour() behaviour {
	return behaviour{RSM: serviceprofile.RsmUnknown, IDsOrder: serviceprofile.IdsOrderUnknown,
		RepublishMoves: serviceprofile.RepublishMovesUnknown, MaxItemsRSM: serviceprofile.MaxItemsRsmUnknown}
}

// Keys of service_profiles.extra.
const (
	extraPublisher   = "publisher_in_results"
	extraEmptyIndex  = "rsm_empty_index"
	extraBeforeIndex = "rsm_before_index"
)

type svcKey struct {
	profileID int
	service   string
}

// learner learns how each service behaves from its answers and from a few
// probes of its own, and stores it. It owns the behaviour profiles (memory
// copies of the service_profiles rows), the re-published items whose
// place is being learned (probing) and the count of notified items
// (arrived). mu guards these maps (no I/O under it);
// saveMu serialises the read-modify-write of a row and is held across its
// one-row upsert, so that two lessons about one service never overwrite
// each other (lessons are rare: each is learned once).
type learner struct {
	p *Plugin

	mu      sync.Mutex
	m       map[svcKey]behaviour
	probing map[nodeKey]map[string]bool
	// arrived is, per cached node, the value of seq after its last
	// notified items (counted as they arrive, before the writer stores
	// them: onItems, on xep0060's worker of the profile): a probe of where
	// a re-published item went teaches only while no item of its node
	// arrived after it (newestIs). seq counts every such item, all nodes
	// together, so that a node forgotten and counted again never meets a
	// probe's old count. lastArrival is a digest of each node's last items
	// notification: its repeat (Prosody's PEP delivers each notification
	// twice to a subscribed and interested profile: writer.go, repeats) is
	// not counted again.
	seq         uint64
	arrived     map[nodeKey]uint64
	lastArrival map[nodeKey]uint64
	saveMu      sync.Mutex
}

func newLearner(p *Plugin) *learner {
	return &learner{p: p, m: map[svcKey]behaviour{}, probing: map[nodeKey]map[string]bool{}, arrived: map[nodeKey]uint64{}, lastArrival: map[nodeKey]uint64{}}
}

// itemsArrived counts the items of a notification of k (onItems, in the
// order of the stream; a repeat of the node's previous one is not
// counted) and returns the count after them.
func (l *learner) itemsArrived(k nodeKey, items []wire.Item) uint64 {
	h := fnv.New64a()
	for _, it := range items {
		h.Write([]byte(it.ID))
		h.Write([]byte{0})
		h.Write([]byte(it.Publisher))
		h.Write([]byte{0})
		h.Write(it.Payload)
		h.Write([]byte{0})
	}
	d := h.Sum64()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(items) > 0 && l.lastArrival[k] != d {
		l.seq += uint64(len(items))
		l.arrived[k] = l.seq
		l.lastArrival[k] = d
	}
	return l.arrived[k]
}

// forgetArrivals drops what arrived counts of the nodes keep says yes to
// (deleted, purged from the cache, of a deleted profile).
func (l *learner) forgetArrivals(keep func(nodeKey) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.arrived {
		if !keep(k) {
			delete(l.arrived, k)
			delete(l.lastArrival, k)
		}
	}
}

// arrivedCount is seq after the last items of k notified (0: none
// counted).
func (l *learner) arrivedCount(k nodeKey) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.arrived[k]
}

// get returns the behaviour of service as seen by profileID.
func (l *learner) get(ctx context.Context, profileID int, service string) behaviour {
	k := svcKey{profileID, service}
	l.mu.Lock()
	v, ok := l.m[k]
	l.mu.Unlock()
	if ok {
		return v
	}
	v = unknownBehaviour()
	if stored, ok, err := l.p.store.loadBehaviour(ctx, profileID, service); err != nil {
		l.p.log.Warn("reading service behaviour", "service", service, "err", err)
		return v
	} else if ok {
		v = stored
	}
	l.mu.Lock()
	if cur, ok := l.m[k]; ok {
		v = cur // learned meanwhile
	} else {
		l.m[k] = v
	}
	l.mu.Unlock()
	return v
}

// learn applies change to the behaviour of service and stores it when it
// changed (a failure is logged: the lesson is learned again later).
func (l *learner) learn(ctx context.Context, profileID int, service string, change func(*behaviour)) {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	cur := l.get(ctx, profileID, service)
	next := cur
	change(&next)
	if next == cur {
		return
	}
	if err := l.p.store.saveBehaviour(ctx, profileID, service, next); err != nil {
		l.p.log.Warn("learning service behaviour", "service", service, "err", err)
		return
	}
	l.mu.Lock()
	l.m[svcKey{profileID, service}] = next
	l.mu.Unlock()
}

// isProbing reports whether the place of a re-published item of k is
// being learned (the node is not answered from the cache meanwhile).
func (l *learner) isProbing(k nodeKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.probing[k]) > 0
}

// fromAnswer learns from a live answer: RSM support, the publisher
// attribute, max_items paging, RSM index reporting, the service's cursors
// of cached items (stored by the writer) and the order of several ids.
func (l *learner) fromAnswer(ctx context.Context, pid int, k nodeKey, req *xep0060.ItemsRequest, page *xep0060.ItemsPage) {
	p := l.p
	before := l.beforeIndexKind(ctx, k, req, page)
	l.learn(ctx, pid, k.service, func(b *behaviour) {
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
				switch {
				case idx == "absent":
					b.BeforeIndex = idx
				case before != "":
					b.BeforeIndex = before
				case b.BeforeIndex == "":
					// An index, of a kind only a page the node's start cuts
					// tells: enough for the other pages.
					b.BeforeIndex = "present"
				}
			}
		}
	})
	if page.RSM != nil && len(page.Items) > 0 {
		// Stored before the answer returns (a request carrying one of
		// these cursors usually follows), waiting for the writer a
		// little at most.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cursorWait)
		err := p.w.run(wctx, p.storeCursors(k, page.Items, page.RSM.First, page.RSM.Last))
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			p.log.Warn("storing a service's cursors", "node", k.node, "err", err)
		}
	}
	if len(req.ItemIDs) < 2 || len(page.Items) < 2 || req.OrderBy != "" {
		return
	}
	if l.get(ctx, pid, k.service).IDsOrder != serviceprofile.IdsOrderUnknown {
		return
	}
	if !sameOrder(page.Items, req.ItemIDs) {
		l.learn(ctx, pid, k.service, func(b *behaviour) { b.IDsOrder = serviceprofile.IdsOrderCreation })
		return
	}
	// In request order: it tells only when the node's order differs.
	n, ok := p.nodes.get(k)
	if !ok {
		return
	}
	got := make([]string, len(page.Items))
	for i, it := range page.Items {
		got[i] = it.ID
	}
	pos, err := p.store.itemPositions(ctx, p.store.db.Client, n.id, got)
	if err != nil || len(pos) != len(got) {
		return
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return int(pos[a] - pos[b]) }) {
		l.learn(ctx, pid, k.service, func(b *behaviour) { b.IDsOrder = serviceprofile.IdsOrderRequest })
	}
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

// publisherSeen tells whether any item carries a publisher ("yes"/"no").
func publisherSeen(items []wire.Item) string {
	for _, it := range items {
		if it.Publisher != "" {
			return "yes"
		}
	}
	return "no"
}

// beforeIndexKind tells, from a live answer to <before>CURSOR</before>,
// how the service reports the page's index: "real" (the first item's
// index) or "unclamped" (the cursor's index minus max, negative near the
// start: ejabberd). Only a page cut by the start of the node tells them
// apart; "" when this answer does not.
func (l *learner) beforeIndexKind(ctx context.Context, k nodeKey, req *xep0060.ItemsRequest, page *xep0060.ItemsPage) string {
	if req.RSM == nil || req.RSM.Before == nil || *req.RSM.Before == "" || page.RSM == nil || page.RSM.FirstIndex == nil || len(page.Items) == 0 {
		return ""
	}
	st := l.p.store
	n, ok := l.p.nodes.get(k)
	if !ok || n.state != StateComplete {
		return ""
	}
	start, err := st.cursorIndex(ctx, n.id, cacheCursorPrefix+page.Items[0].ID)
	if err != nil || start != 0 {
		return ""
	}
	last, err := st.cursorIndex(ctx, n.id, cacheCursorPrefix+page.Items[len(page.Items)-1].ID)
	if err != nil || last < 0 {
		return ""
	}
	end := last + 1
	counts, err := st.countItems(ctx, []int{n.id}, false)
	if err != nil {
		return ""
	}
	max := counts[n.id]
	if req.RSM.Max != nil {
		max = *req.RSM.Max
	}
	if end-max >= 0 {
		return ""
	}
	switch *page.RSM.FirstIndex {
	case 0:
		return "real"
	case end - max:
		return "unclamped"
	}
	return ""
}

// probeIDsOrder learns, once per service, in which order it answers a
// request for several ids (request order or node order): one request for
// two cached items in reverse order.
func (l *learner) probeIDsOrder(ctx context.Context, k nodeKey, n nodeInfo, synced int) {
	p := l.p
	if synced < 2 || l.get(ctx, n.profileID, k.service).IDsOrder != serviceprofile.IdsOrderUnknown {
		return
	}
	firsts, err := p.store.readPage(ctx, n.id, 0, 1)
	if err != nil || len(firsts) == 0 {
		return
	}
	last, ok, err := p.store.lastItem(ctx, n.id)
	if err != nil || !ok || last.ID == firsts[0].ID {
		return
	}
	first := firsts[0].ID
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, ItemIDs: []string{last.ID, first}})
	if err != nil || len(page.Items) != 2 {
		return
	}
	order := serviceprofile.IdsOrderCreation
	if page.Items[0].ID == last.ID {
		order = serviceprofile.IdsOrderRequest
	}
	l.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.IDsOrder = order })
}

// probeMaxItems learns, once per service, whether it answers max_items
// with an RSM <set/> (ejabberd does), which cached answers then carry
// too: one request for the last item.
func (l *learner) probeMaxItems(ctx context.Context, k nodeKey, profileID int, items int) {
	if items == 0 || l.get(ctx, profileID, k.service).MaxItemsRSM != serviceprofile.MaxItemsRsmUnknown {
		return
	}
	page, err := l.p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: 1})
	if err != nil {
		return
	}
	v := serviceprofile.MaxItemsRsmNo
	if page.RSM != nil {
		v = serviceprofile.MaxItemsRsmYes
	}
	l.learn(ctx, profileID, k.service, func(b *behaviour) { b.MaxItemsRSM = v })
}

// startProbe marks the node as probed for what (the node is not answered
// from the cache until endProbe); it reports whether that probe was not
// running already (then the caller runs it: one probe at a time, so that
// none ends another's wait).
func (l *learner) startProbe(k nodeKey, what string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.probing[k] == nil {
		l.probing[k] = map[string]bool{}
	}
	if l.probing[k][what] {
		return false
	}
	l.probing[k][what] = true
	return true
}

func (l *learner) endProbe(k nodeKey, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.probing[k], what)
	if len(l.probing[k]) == 0 {
		delete(l.probing, k)
	}
}

// publisherProbe learns, once per service, whether its items answers
// carry the publisher attribute (notifications do), with one request for
// the node's newest item; when they do not, the publishers stored from
// notifications are removed from the profile's nodes of that service (the
// cache serves what answers show). The node was marked probed.
func (l *learner) publisherProbe(k nodeKey) {
	p := l.p
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer l.endProbe(k, "publisher")
		n, ok := p.nodes.get(k)
		if !ok {
			return
		}
		page, err := p.c.FetchItems(internal(p.ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: 1})
		if err != nil || len(page.Items) == 0 {
			return
		}
		seen := publisherSeen(page.Items)
		l.learn(p.ctx, n.profileID, k.service, func(b *behaviour) { b.PublisherInResults = seen })
		if seen != "no" {
			return
		}
		err = p.w.run(p.ctx, func(ctx context.Context, t *wtx) error {
			for _, nk := range p.nodes.keys(func(o nodeKey, _ nodeInfo) bool { return o.profile == k.profile && o.service == k.service }) {
				if m, ok := t.node(nk); ok {
					if err := p.store.clearAllPublishers(ctx, t.c, m.id); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			p.log.Warn("removing publishers items answers do not show", "service", k.service, "err", err)
		}
	}()
}

// republished learns where a service whose behaviour is unknown puts a
// re-published item (the writer made the node not fresh): one request for
// the newest item answers it. The re-published item (id, which was not
// the newest) is the newest now on a service that moves re-published items
// to the end (Prosody); the newest item before it (last) still is on one
// that keeps their place (ejabberd answers max_items in creation order).
// Anything else (another publish meanwhile) teaches nothing. The node is
// not answered from the cache meanwhile (probing), and is reconciled by
// its next listing.
func (l *learner) republished(k nodeKey, id, last string, seq uint64) {
	p := l.p
	l.startProbe(k, "republished "+id)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer l.endProbe(k, "republished "+id)
		n, ok := p.nodes.get(k)
		if !ok {
			return
		}
		// Whatever it teaches, a node still not fresh is listed again
		// (joining a listing that runs): its order is the service's then.
		defer func() {
			if cur, ok := p.nodes.get(k); ok && cur.state == StateComplete && !cur.fresh && p.online(k.profile) && p.ctx.Err() == nil {
				p.sync.launch(k, false)
			}
		}()
		l.newestIs(p.ctx, k, n.profileID, id, last, seq)
	}()
}

// newestIs asks the service for its newest item, id having been
// re-published after last was the newest: id (moves re-published items to
// the end) or last (keeps their place) teaches it; anything else (another
// publish meanwhile) teaches nothing, nor does an answer once an item of
// the node arrived after id (seq: the node's arrived count then):
// last re-published after id is the newest on either kind of service
// (Prosody was learned as keeping the place: SOAK_SEED=15 SOAK_STEPS=30).
func (l *learner) newestIs(ctx context.Context, k nodeKey, profileID int, id, last string, seq uint64) {
	p := l.p
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: 1})
	if err != nil || len(page.Items) != 1 {
		return
	}
	// Notifications the service sent before its answer are counted once
	// their bus events fired.
	if err := p.c.Settled(ctx, k.profile); err != nil {
		return
	}
	if l.arrivedCount(k) != seq {
		p.log.Debug("items notified during the probe of a re-published item's place: nothing learned", "node", k.node, "item", id)
		return
	}
	var moves serviceprofile.RepublishMoves
	switch page.Items[0].ID {
	case id:
		moves = serviceprofile.RepublishMovesYes
	case last:
		moves = serviceprofile.RepublishMovesNo
	default:
		return
	}
	l.learn(ctx, profileID, k.service, func(b *behaviour) { b.RepublishMoves = moves })
	p.log.Info("learned where the service puts re-published items", "service", k.service, "moves_to_end", moves)
}

// probeRSMIndex learns, once per service that pages, how it reports the
// index of a page asked with <before>CURSOR</before> that the start of the
// node cuts (the first item's index, the cursor's index minus max, or
// none): one request before the first cached item with a service cursor
// that is not the node's first, max one more than its index.
func (l *learner) probeRSMIndex(ctx context.Context, k nodeKey, n nodeInfo, items int) {
	p := l.p
	beh := l.get(ctx, n.profileID, k.service)
	if items < 2 || beh.RSM != serviceprofile.RsmYes || beh.BeforeIndex == "real" || beh.BeforeIndex == "unclamped" || beh.BeforeIndex == "absent" {
		return
	}
	cursor, idx, err := p.store.laterCursor(ctx, n.id)
	if err != nil || idx < 1 {
		return
	}
	max := idx + 1
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node,
		RSM: &wire.RSMQuery{Before: &cursor, Max: &max}})
	if err != nil || page.RSM == nil || len(page.Items) != idx {
		return
	}
	kind := ""
	switch fi := page.RSM.FirstIndex; {
	case fi == nil:
		kind = "absent"
	case *fi == 0:
		kind = "real"
	case *fi == idx-max:
		kind = "unclamped"
	default:
		return
	}
	l.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.BeforeIndex = kind })
}
