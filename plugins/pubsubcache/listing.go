// Whole listings of a node: the requests, the stored pages, the end that
// makes the node complete, and the reads of its configuration.

package pubsubcache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// listing is the outcome of one whole listing of a node.
type listing struct {
	items   int
	partial bool
	// unchanged items were the same as stored (not written again).
	unchanged int
	// updated: an item was re-published during it.
	updated bool
}

// fetched is one answer of the listing's fetcher.
type fetched struct {
	page *xep0060.ItemsPage
	err  error
}

// begin starts a listing or a reconciliation of the node: the node in
// progress, notifications secured first (so that nothing published
// meanwhile is missed), its configuration read (in the background with
// async: configRead waits for it; nil otherwise). A reconciliation
// (keepTouched) keeps the items notified since its job started: they are
// not what the cache held before the reconnection.
func (s *syncer) begin(ctx context.Context, j *SyncJob, async, keepTouched bool) (n nodeInfo, secured, subscribed bool, configRead func(), err error) {
	p := s.p
	k := j.key
	j.startRound(keepTouched)
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		if _, err := t.ensure(ctx, k); err != nil {
			return err
		}
		var err error
		n, _, err = t.transition(ctx, k, event{kind: evSyncStarted})
		return err
	})
	if err != nil {
		return n, false, false, nil, err
	}
	p.syncEvent(Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1})

	// Notifications first, so that nothing published during the fetch is missed.
	subscribed = n.subscribed
	if !subscribed || n.wasOffline {
		// After the profile was offline since the node's last listing, its
		// subscription may have ended unseen (the node deleted and created
		// again meanwhile: the deletion's notification went to a session
		// that was gone; removed by the owner). Nothing a subscriber can
		// ask tells (Prosody lists a subscription to a node deleted and
		// created again as subscribed): it subscribes again, one request (a
		// subscription that holds stays the one: TestRecreatedWhileOffline).
		// When that fails, the stored flag stands.
		if _, serr := p.c.Subscribe(ctx, k.profile, k.service, k.node); serr == nil {
			subscribed = true
		} else {
			p.log.Info("cannot subscribe to the synced node", "profile", k.profile, "service", k.service, "node", k.node, "err", serr)
		}
	}
	secured = subscribed
	if isPEP(k.service) {
		s.wantNotify(k.node)
		secured = true
	}
	if !async {
		s.readConfig(ctx, k)
		return n, secured, subscribed, nil, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.readConfig(ctx, k)
	}()
	return n, secured, subscribed, func() { <-done }, nil
}

// listing fetches the whole node once: notifications secured first, then
// every item (RSM pages where the service honours RSM, the next page in
// flight while the current one is stored; one request otherwise), stored
// raw one transaction per page; items no longer on the service are removed
// at the end and the node made complete (or partial).
func (s *syncer) listing(ctx context.Context, j *SyncJob) (listing, error) {
	p := s.p
	k := j.key
	pp := p.params.of(ctx, k.profile)
	n, secured, subscribed, _, err := s.begin(ctx, j, false, false)
	if err != nil {
		return listing{}, err
	}

	ictx := internal(ctx)
	beh := p.learn.get(ctx, n.profileID, k.service)
	useRSM := beh.RSM != serviceprofile.RsmNo
	if sup, known := p.c.RSMSupport(k.service); known && !sup {
		useRSM = false
	}
	fetch := func(after string) <-chan fetched {
		ch := make(chan fetched, 1)
		req := &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node}
		if useRSM {
			size := min(p.pageSize, pp.limit+1)
			req.RSM = &wire.RSMQuery{Max: &size}
			if after != "" {
				req.RSM.After = &after
			}
		}
		go func() {
			page, err := p.c.FetchItems(ictx, req)
			ch <- fetched{page, err}
		}()
		return ch
	}

	var pos int64
	seen := map[string]bool{}
	var order []string // listed ids, in the service's order
	unchanged := 0
	partial := false
	total := -1
	ch := fetch("")
	for {
		var f fetched
		select {
		case f = <-ch:
		case <-ctx.Done():
			return listing{}, ctx.Err()
		}
		if f.err != nil {
			return listing{}, fmt.Errorf("fetch items: %w", f.err)
		}
		page := f.page
		if useRSM && page.RSM == nil {
			// The service ignored RSM: this answer is the whole node.
			useRSM = false
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmNo })
		} else if page.RSM != nil {
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmYes })
			if page.RSM.Count != nil {
				total = *page.RSM.Count
			}
		}
		items := page.Items
		if len(items) > 0 {
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.PublisherInResults = publisherSeen(items) })
		}
		fresh := items[:0:0]
		for _, it := range items {
			if !seen[it.ID] {
				fresh = append(fresh, it)
			}
		}
		if int(pos)+len(fresh) > pp.limit {
			fresh = fresh[:pp.limit-int(pos)]
			partial = true
		}
		more := useRSM && !partial && len(fresh) > 0 && page.RSM != nil && page.RSM.Last != "" &&
			(total < 0 || int(pos)+len(fresh) < total)
		var next <-chan fetched
		if more {
			next = fetch(page.RSM.Last)
		}
		if !n.analysed && pos == 0 && len(fresh) > 0 {
			if m, ok := p.analyse(ctx, k, &fresh[0], pp); ok {
				n = m
			}
		}
		cursors := map[string]string{}
		if page.RSM != nil && len(items) > 0 {
			cursors[items[0].ID] = page.RSM.First
			cursors[items[len(items)-1].ID] = page.RSM.Last
		}
		same, err := s.storePage(ctx, j, fresh, cursors, pos)
		if err != nil {
			if next != nil {
				<-next
			}
			return listing{}, err
		}
		unchanged += same
		for _, it := range fresh {
			seen[it.ID] = true
			order = append(order, it.ID)
		}
		pos += int64(len(fresh))
		pr := Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Items: int(pos), Total: total, Unchanged: unchanged}
		j.report(pr)
		p.syncEvent(pr)
		if !more {
			break
		}
		ch = next
	}
	if !n.analysed && len(seen) == 0 {
		// An empty node: analysed by its name alone.
		if m, ok := p.analyse(ctx, k, nil, pp); ok {
			n = m
		}
	}
	// Learned before the node is complete, so that no request of the
	// cache's own follows its completion.
	s.probeMoves(ctx, j, n, order)
	p.learn.probeIDsOrder(ctx, k, n, len(seen))
	p.learn.probeMaxItems(ctx, k, n.profileID, len(seen))
	p.learn.probeRSMIndex(ctx, k, n, len(seen))
	var updated bool
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		// In the writer: every notification that came before is applied.
		var err error
		updated, err = s.finish(ctx, t, j, seen, pos, partial, secured, subscribed, methodFull)
		return err
	})
	if err != nil {
		return listing{}, err
	}
	p.pubs.forgetBefore(k, j.roundStart(), nil)
	return listing{items: int(pos), partial: partial, updated: updated, unchanged: unchanged}, nil
}

// storePage stores a page's items at positions from pos on, in the
// writer; it returns how many were unchanged (same payload, already parsed
// by this parser version: not parsed, written nor indexed again, only
// placed). The others are parsed here first, out of the writer, while the
// next page is fetched; those the parser could not take (down, failing)
// are stored parse pending for the parse queue. An item a notification
// changed meanwhile keeps its newer payload (and takes its place in the
// service's order) unless the page brings the same payload (the service's
// copy as its items answers show it).
func (s *syncer) storePage(ctx context.Context, j *SyncJob, items []wire.Item, cursors map[string]string, pos int64) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	p := s.p
	n, _ := p.nodes.get(j.key)
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	before, err := p.store.states(ctx, p.store.db.Client, n.id, ids)
	if err != nil {
		return 0, err
	}
	version := p.analysers.parserVersion(n.analyser)
	unchangedNow := func(st storedState, ok bool, digest []byte) bool {
		return ok && bytes.Equal(st.digest, digest) && (!n.parser || (st.parseState == pubsubitem.ParseStateOk || st.parseState == pubsubitem.ParseStateError) && st.parserVersion == version)
	}
	// The search text of an item the parser takes comes with its result
	// (the payload's text and the parser's); the others' is extracted
	// here, out of the writer (in the writer only for an item changed
	// since this read).
	parsing := n.parser && p.analysers.available(n.analyser)
	stored := make([]storedItem, len(items))
	var toParse []wire.Item
	changed := make([]bool, len(items))
	for i, it := range items {
		stored[i] = storedItem{Item: it, digest: digestOf(it.Payload), position: pos + int64(i), cursor: cursors[it.ID]}
		if st, ok := before[it.ID]; !unchangedNow(st, ok, stored[i].digest) {
			changed[i] = true
			if !parsing {
				stored[i].searchText = textOf(it.Payload)
			}
			toParse = append(toParse, it)
		}
	}
	var parsed map[string]parsedItem
	if parsing && len(toParse) > 0 {
		parsed = s.parsePage(j.key, n.analyser, toParse)
		if len(parsed) < len(toParse) {
			// A batch the parser failed: its items' text is extracted
			// here too, not in the writer.
			for i := range stored {
				if _, ok := parsed[stored[i].ID]; changed[i] && !ok {
					stored[i].searchText = textOf(stored[i].Payload)
				}
			}
		}
	}
	unchanged := 0
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		unchanged = 0
		n, ok := t.node(j.key)
		if !ok {
			return fmt.Errorf("node %s is no longer cached", j.key.node)
		}
		now, err := p.store.states(ctx, t.c, n.id, ids)
		if err != nil {
			return err
		}
		var keep []storedItem
		values := map[string]json.RawMessage{}
		for i := range stored {
			it := &stored[i]
			st, had := now[it.ID]
			if j.isTouched(it.ID) && !(had && bytes.Equal(st.digest, it.digest)) {
				// A newer payload came by notification: it stays, placed
				// where the page says.
				j.markLater(it.ID)
				if err := p.store.setPosition(ctx, t.c, n.id, it.ID, it.position); err != nil {
					return err
				}
				continue
			}
			if _, reparsed := parsed[it.ID]; !reparsed && unchangedNow(st, had, it.digest) {
				unchanged++
				if st.position != it.position || it.cursor != "" && it.cursor != st.cursor {
					if err := p.store.placeItem(ctx, t.c, n.id, it.ID, it.position, it.cursor); err != nil {
						return err
					}
				}
				continue
			}
			r, isParsed := parsed[it.ID]
			isParsed = isParsed && n.parser
			if it.searchText == "" && !isParsed {
				it.searchText = textOf(it.Payload) // not parsed, or changed since it was read
			}
			it.parseState = parseStateFor(n)
			if isParsed {
				it.parseState, it.parsed, it.parseErr, it.searchText, it.parserVersion = r.state, r.parsed, r.err, r.searchText, r.version
				if r.state == pubsubitem.ParseStateOk {
					values[r.id] = r.parsed
				}
			}
			keep = append(keep, *it)
		}
		pending, err := p.store.upsertItems(ctx, t.c, n.id, keep, p.index.inUse(), false)
		if err != nil {
			return err
		}
		if err := p.store.indexParsed(ctx, t.c, n.id, values, p.analysers.indexedPaths(), p.index.item); err != nil {
			return err
		}
		p.queueParse(t, j.key, n, keep, pending)
		return nil
	})
	if err == nil && unchanged > 0 {
		p.unchangedItems(unchanged)
	}
	return unchanged, err
}

// parsePage parses a page's items with the node's parser, parseBatch at a
// time, keyed by item id; a batch the parser fails is left out (its items
// are stored pending).
func (s *syncer) parsePage(k nodeKey, analyser string, items []wire.Item) map[string]parsedItem {
	out := make(map[string]parsedItem, len(items))
	for start := 0; start < len(items); start += parseBatch {
		res, err := s.p.parse.parseBatch(k, analyser, items[start:min(start+parseBatch, len(items))])
		if err != nil {
			s.p.log.Info("parsing a sync page failed; its items wait for the parser", "node", k.node, "err", err)
			return out
		}
		for _, r := range res {
			out[r.id] = r
		}
	}
	return out
}

// probeMoves learns, on a service whose way of placing re-published items
// is not known yet, where it put an item re-published after its page was
// answered (X, the last such): one request for the newest item. X itself
// on a service that moves re-published items to the end; the newest item
// the listing showed (L), on one that keeps their place.
func (s *syncer) probeMoves(ctx context.Context, j *SyncJob, n nodeInfo, order []string) {
	p := s.p
	k := j.key
	if p.learn.get(ctx, n.profileID, k.service).RepublishMoves != serviceprofile.RepublishMovesUnknown || len(order) < 2 {
		return
	}
	x, xPos := "", -1
	for _, id := range slices.Backward(j.touchedIDs()) {
		if j.isLater(id) {
			x = id
			break
		}
	}
	if x == "" {
		return
	}
	last := ""
	for i := len(order) - 1; i >= 0; i-- {
		if order[i] == x {
			xPos = i
		}
		if last == "" && !j.isTouched(order[i]) {
			last = order[i]
		}
	}
	if last == "" || xPos < 0 || xPos == len(order)-1 {
		return // X was the newest anyway: its place tells nothing
	}
	p.log.Debug("probing where the service put an item re-published during a listing", "node", k.node, "item", x, "newest_listed", last)
	p.learn.newestIs(ctx, k, n.profileID, x, last, p.learn.arrivedCount(k))
}

// finish ends a listing in the writer, in one transaction: it removes
// items the service no longer has (unless partial), places the items
// notifications changed during the listing, and makes the node complete
// (or partial). Where those items go follows the service: after the
// listed ones, in the order of their notifications, for every item on a
// service that moves re-published items to the end (Prosody), for new
// items only on one that keeps their place (ejabberd). On a service whose
// way is not known yet, a listed item notified meanwhile may be in its
// old place: updated is true, and the node is listed again (as when
// notified items could not be stored during the listing: SyncJob.lost).
func (s *syncer) finish(ctx context.Context, t *wtx, j *SyncJob, seen map[string]bool, pos int64, partial, secured, subscribed bool, method string) (updated bool, err error) {
	p := s.p
	n, ok := t.node(j.key)
	if !ok {
		return false, fmt.Errorf("node %s is no longer cached", j.key.node)
	}
	if j.wasUnsubscribed() {
		// The profile's subscription ended during the listing: the node
		// ends as after it (not synced, emptied), not listed again (which
		// would subscribe the profile again).
		if err := p.store.deleteAllItems(ctx, t.c, n.id); err != nil {
			return false, err
		}
		if _, _, err := t.transition(ctx, j.key, event{kind: evSyncDone, method: method}); err != nil {
			return false, err
		}
		_, _, err := t.transition(ctx, j.key, event{kind: evSubscriptionGone})
		return false, err
	}
	beh := p.learn.get(ctx, n.profileID, j.key.service)
	// In the writer: no item is touched while this runs.
	touched := j.touchedIDs()
	isTouched := make(map[string]bool, len(touched))
	for _, id := range touched {
		isTouched[id] = true
	}
	// positions holds at least the touched items still cached.
	var positions map[string]int64
	if !partial {
		if positions, err = p.store.itemPositions(ctx, t.c, n.id, nil); err != nil {
			return false, err
		}
		var gone []string
		for id := range positions {
			if !seen[id] && !isTouched[id] {
				gone = append(gone, id)
				delete(positions, id)
			}
		}
		if err := p.store.deleteItems(ctx, t.c, n.id, gone); err != nil {
			return false, fmt.Errorf("remove items gone from the service: %w", err)
		}
	}
	if len(touched) > 0 {
		if positions == nil {
			if positions, err = p.store.itemPositions(ctx, t.c, n.id, touched); err != nil {
				return false, err
			}
		}
		var place []string
		for _, id := range touched {
			if _, ok := positions[id]; !ok {
				continue // retracted
			}
			switch {
			case !seen[id]:
				place = append(place, id) // new during the listing
			case beh.RepublishMoves == serviceprofile.RepublishMovesYes:
				place = append(place, id)
			case beh.RepublishMoves == serviceprofile.RepublishMovesUnknown && j.isLater(id):
				// Re-published after its page: its place depends on a
				// behaviour not known yet. (Notified before, the page
				// shows where the service put it.)
				updated = true
			}
		}
		for i, id := range place {
			if err := p.store.setPosition(ctx, t.c, n.id, id, pos+int64(i)); err != nil {
				return false, err
			}
		}
		if beh.PublisherInResults == "no" {
			// Served as the service's items answers show them.
			if err := p.store.clearPublishers(ctx, t.c, n.id, touched); err != nil {
				return false, err
			}
		}
	}
	if partial {
		// cache.item_limit bounds the node, notified items included.
		if _, err := p.store.trim(ctx, t.c, n.id, p.params.of(ctx, j.key.profile).limit); err != nil {
			return false, err
		}
	}
	if j.hadLost() {
		// Notified items could not be stored during the listing: they may
		// be in none of its pages. Not fresh, and listed again.
		updated = true
	}
	count, err := p.store.count(ctx, t.c, n.id)
	if err != nil {
		return false, err
	}
	next, _, err := t.transition(ctx, j.key, event{kind: evSyncDone, partial: partial, secured: secured && !updated, subscribed: subscribed, count: count, method: method})
	if err != nil {
		return updated, err
	}
	if !partial && next.state == StateComplete && next.limit() == 0 && count > len(seen) {
		// Items notified during the listing, beyond what it saw, and the
		// service's capacity unknown: it may have dropped older items
		// its pages (answered before) still brought. Checked before the
		// node is served.
		if next, _, err = t.transition(ctx, j.key, event{kind: evUnverified}); err != nil {
			return updated, err
		}
		if next.verifying {
			t.afterwards(func() { s.check(j.key) })
		}
	}
	return updated, nil
}

// readConfig reads the node's configuration, when the service lets the
// profile read it (owners everywhere, publishers too on Prosody): its
// capacity (pubsub#max_items, or the range behind "max") and publish
// model.
//
// When the profile cannot read it, whether retractions are notified is
// read in the service's default configuration (once per service): a node
// whose owner did not change pubsub#notify_retract has the default, and
// ejabberd's PEP default is 0.
func (s *syncer) readConfig(ctx context.Context, k nodeKey) {
	p := s.p
	fields, err := p.c.NodeConfig(ctx, xep0060.NodeRequest{Profile: k.profile, Service: k.service, Node: k.node})
	if err != nil {
		p.log.Debug("node configuration not readable; its capacity is learned", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		e := event{kind: evConfigRead, unreadable: true, silentRetracts: p.defaults.silentRetracts(ctx, k.profile, k.service)}
		if err := p.w.run(ctx, p.transitionOf(k, e, false)); err != nil {
			p.log.Warn("storing a node's configuration", "node", k.node, "err", err)
		}
		s.logSilent(k, e.silentRetracts, "the service's default configuration")
		return
	}
	e := event{kind: evConfigRead}
	for _, f := range fields {
		v := ""
		if len(f.Values) > 0 {
			v = strings.TrimSpace(f.Values[0])
		}
		switch f.Var {
		case "pubsub#max_items":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				e.capacity, e.capSource = n, "config"
			} else if v == "max" {
				if n, err := strconv.Atoi(f.RangeMax); err == nil && n > 0 {
					e.capacity, e.capSource = n, "config_range"
				}
			}
		case "pubsub#publish_model":
			e.publishModel = v
		case "pubsub#notify_retract":
			e.silentRetracts = isFalse(v)
		}
	}
	if err := p.w.run(ctx, p.transitionOf(k, e, false)); err != nil {
		p.log.Warn("storing a node's configuration", "node", k.node, "err", err)
	}
	s.logSilent(k, e.silentRetracts, "its configuration")
}

// logSilent says, once per node and daemon run, that the node's reads are
// checked because its retractions are not notified (from where it read so).
func (s *syncer) logSilent(k nodeKey, silent bool, from string) {
	if !silent {
		return
	}
	if n, ok := s.p.nodes.get(k); ok && !n.followed() && s.p.defaults.firstSilent(k) {
		s.p.log.Info("node's retractions and purges are notified to no one (pubsub#notify_retract 0 in "+from+"): each read is checked with the service (the node's item count or id listing) before the cache answers",
			"profile", k.profile, "service", k.service, "node", k.node)
	}
}

// serviceDefaults is what services' default node configurations say
// (XEP-0060 §8.3), read once per service and daemon run. It owns its maps
// (mu; no I/O under it).
type serviceDefaults struct {
	c      *xep0060.Client
	mu     sync.Mutex
	silent map[string]bool  // service → its default pubsub#notify_retract is 0
	logged map[nodeKey]bool // nodes logSilent told about
}

func newServiceDefaults(c *xep0060.Client) *serviceDefaults {
	return &serviceDefaults{c: c, silent: map[string]bool{}, logged: map[nodeKey]bool{}}
}

// silentRetracts reports whether the service's default configuration has
// pubsub#notify_retract 0 (false when it cannot be read: as before the
// default was read, retractions are taken as notified).
func (d *serviceDefaults) silentRetracts(ctx context.Context, profile, service string) bool {
	d.mu.Lock()
	v, ok := d.silent[service]
	d.mu.Unlock()
	if ok {
		return v
	}
	fields, err := d.c.DefaultConfig(ctx, profile, service)
	if err != nil && ctx.Err() != nil {
		return false // not answered: asked again next time
	}
	for _, f := range fields {
		if f.Var == "pubsub#notify_retract" && len(f.Values) > 0 {
			v = isFalse(f.Values[0])
		}
	}
	d.mu.Lock()
	d.silent[service] = v
	d.mu.Unlock()
	return v
}

// firstSilent reports whether logSilent has not told about k yet.
func (d *serviceDefaults) firstSilent(k nodeKey) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.logged[k] {
		return false
	}
	d.logged[k] = true
	return true
}

// syncEvent fires SyncProgressed with pr (bridged to the API's event
// stream as cache_sync).
func (p *Plugin) syncEvent(pr Progress) {
	if err := triggers.Notify(context.Background(), p.h.Bus, SyncProgressed, pr); err != nil {
		p.log.Warn("cache.sync observers", "node", pr.Node, "err", err)
	}
}
