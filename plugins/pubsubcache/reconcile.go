package pubsubcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// Reconciliation by difference (issue 22): a complete node that is no
// longer fresh (a disconnection without resumption, a daemon restart) is
// brought back to the service's state by what changed, when the
// service's answers let the cache find every change, rather than listed
// whole again.
//
// The methods (nodeInfo.method, shown by `cache status`):
//
//   - methodFull: the whole listing (syncer.listing). Always exact; used
//     for first syncs, `cache sync`, interrupted syncs, partial nodes, and
//     wherever the difference below is not known exact or cannot be had
//     (the id listing is refused or fails, the node holds more than
//     cache.item_limit, the newest pages do not settle).
//   - methodIDsNewest, on a service that moves a re-published item to the
//     end of the node (learned: RepublishMoves yes; Prosody): one
//     disco#items listing of the ids (retractions, purges and items the
//     service dropped are the cached ids it no longer lists; additions are
//     the listed ids the cache lacks), then the newest items (one
//     max_items request of newestStart items, or 1/64 of the node, grown
//     ×4 until it reaches the anchor; 4 at most, else methodFull), read
//     back from the newest until the anchor: the newest item whose
//     payload is the cached one and that is the newest, in the cache's
//     order, of the items before it; every addition, every changed item
//     of the page, is after it (an item notified during the job is no
//     anchor). Items
//     after the anchor are stored again (their payload and place: the
//     service's), items before keep theirs. Every re-published item being
//     after every untouched one, this finds every update, additions and
//     retractions, with one exception, stated: an update followed, while
//     offline, by no-op re-publishes (unchanged payloads) of more items
//     than the newest pages read is hidden behind them.
//   - methodIDs, on a service that keeps a re-published item in its place
//     (RepublishMoves no; ejabberd): the same requests, which find every
//     addition, retraction, purge and dropped item, and the updates of the
//     newest items read, but not an update in place of an older item
//     (invisible to any request short of the whole listing). Used only
//     where the profile said such updates need not be found
//     (cache.reconcile = ids); otherwise such a service gets methodFull.
//
// cache.reconcile = full forces the whole listing everywhere.
const (
	methodFull      = "full"
	methodIDsNewest = "ids+newest"
	methodIDs       = "ids"
)

// The values of cache.reconcile.
const (
	reconcileExact = "exact"
	reconcileIDs   = "ids"
	reconcileFull  = "full"
)

// errFallback says a reconciliation by difference cannot be exact here:
// the node is listed whole.
var errFallback = errors.New("reconciliation by difference not possible")

// newestStart is the first newest page's size (grown ×4 while the
// anchor is not in it).
const newestStart = 8

// methodFor chooses how a sync lists the node n (before it started):
// mode is cache.reconcile, manual a `cache sync`.
func methodFor(n nodeInfo, beh behaviour, mode string, manual bool) string {
	if manual || mode == reconcileFull || n.state != StateComplete || n.resume || n.fresh {
		return methodFull
	}
	switch beh.RepublishMoves {
	case serviceprofile.RepublishMovesYes:
		return methodIDsNewest
	case serviceprofile.RepublishMovesNo:
		if mode == reconcileIDs {
			return methodIDs
		}
	}
	return methodFull
}

// newestWindow finds, in page (the service's newest items, in its order,
// whole: the whole node), where the items to store again start: after the
// anchor, the newest item same reports unchanged whose cached position
// (pos: every cached item) is the highest of the listed items (held:
// the id listing) not after it, with every listed id the cache lacks
// after it. ok is false when page does not reach the anchor (a larger
// one is needed); a whole page with no anchor is stored whole (start 0).
func newestWindow(page []string, held []string, pos map[string]int64, same func(id string) bool, whole bool) (start int, ok bool) {
	inPage := make(map[string]int, len(page))
	for i, id := range page {
		inPage[id] = i
	}
	// Every addition must be after the anchor, and every cached item of
	// the page whose payload changed: an item notified since (stored, so
	// unchanged) or re-published unchanged must not hide one below it.
	limit := len(page)
	for i, id := range page {
		if _, cached := pos[id]; cached && !same(id) {
			limit = i
			break
		}
	}
	for _, id := range held {
		if _, cached := pos[id]; cached {
			continue
		}
		i, found := inPage[id]
		if !found {
			if whole {
				continue // retracted since the id listing
			}
			return 0, false
		}
		limit = min(limit, i)
	}
	// rest[i]: the highest cached position of the listed items not after
	// page[i] (those not in the page, and page[:i+1]).
	isHeld := make(map[string]bool, len(held))
	var base int64 = -1
	for _, id := range held {
		isHeld[id] = true
		if _, in := inPage[id]; !in {
			if p, cached := pos[id]; cached {
				base = max(base, p)
			}
		}
	}
	rest := make([]int64, len(page))
	for i, id := range page {
		rest[i] = base
		if i > 0 {
			rest[i] = rest[i-1]
		}
		if p, cached := pos[id]; cached && isHeld[id] {
			rest[i] = max(rest[i], p)
		}
	}
	for i := limit - 1; i >= 0; i-- {
		id := page[i]
		if p, cached := pos[id]; cached && same(id) && p >= rest[i] {
			return i + 1, true
		}
	}
	if whole {
		return 0, true
	}
	return 0, false
}

// reconcile brings the complete node of j back to the service's state by
// difference (method methodIDsNewest or methodIDs, see above), in the
// syncer; errFallback (wrapped) when it cannot, before anything changed.
func (s *syncer) reconcile(ctx context.Context, j *SyncJob, method string) (listing, error) {
	p := s.p
	k := j.key
	pp := p.params.of(ctx, k.profile)
	// The configuration is read meanwhile (one round trip less), and
	// known before the node is complete.
	n, secured, subscribed, configRead, err := s.begin(ctx, j, true, true)
	if err != nil {
		return listing{}, err
	}
	defer configRead()
	pos, err := p.store.itemPositions(ctx, p.store.db.Client, n.id, nil)
	if err != nil {
		return listing{}, err
	}
	var top int64 = -1
	for _, v := range pos {
		top = max(top, v)
	}
	var ids []string // the id listing; nil when the count made it needless
	var np newestPage
	listed := -1
	if beh := p.learn.get(ctx, n.profileID, k.service); beh.MaxItemsRSM == serviceprofile.MaxItemsRsmYes && len(pos) > 0 {
		// The service counts the node in its max_items answers (ejabberd):
		// the newest page alone may settle it (counted).
		if np, err = s.newest(ctx, k, n, max(newestStart, len(pos)/64)); err != nil {
			return listing{}, err
		}
		if np.count >= 0 {
			held := make([]string, 0, len(pos)+len(np.ids))
			for id := range pos {
				held = append(held, id)
			}
			held = append(held, np.ids...)
			if start, ok := counted(np.ids, held, pos, np.unchanged(j), np.whole, np.count); ok {
				np.start, listed = start, np.count
			}
		}
	}
	if listed < 0 {
		if ids, err = p.c.ItemIDs(ctx, k.profile, k.service, k.node); err != nil {
			return listing{}, fmt.Errorf("%w: id listing: %v", errFallback, err)
		}
		listed = len(ids)
		if len(ids) > pp.limit {
			return listing{}, fmt.Errorf("%w: %d items, beyond cache.item_limit", errFallback, len(ids))
		}
		settled, size := len(ids) == 0, max(newestStart, len(ids)/64)
		if np.page != nil && !settled {
			// The page the count did not settle may with the listing.
			np.start, settled = newestWindow(np.ids, ids, pos, np.unchanged(j), np.whole)
			size = min(size*4, len(ids)+1)
		}
		if settled && len(ids) == 0 {
			np = newestPage{}
		}
		for round := 0; !settled; size, round = min(size*4, len(ids)+1), round+1 {
			if round == 4 {
				return listing{}, fmt.Errorf("%w: the newest items did not settle", errFallback)
			}
			if np, err = s.newest(ctx, k, n, size); err != nil {
				return listing{}, err
			}
			np.start, settled = newestWindow(np.ids, ids, pos, np.unchanged(j), np.whole)
		}
	}
	if listed > pp.limit {
		return listing{}, fmt.Errorf("%w: %d items, beyond cache.item_limit", errFallback, listed)
	}
	// What the service holds: the listed ids, or (counted) every cached
	// item and the page.
	seen := make(map[string]bool, len(pos))
	if ids != nil {
		for _, id := range ids {
			seen[id] = true
		}
	} else {
		for id := range pos {
			seen[id] = true
		}
	}
	unchanged := 0
	next := top + 1
	var items []wire.Item
	if np.page != nil {
		items = np.page.Items[np.start:]
	}
	if len(items) > 0 {
		p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.PublisherInResults = publisherSeen(items) })
		cursors := map[string]string{}
		if pg := np.page; pg.RSM != nil && len(pg.Items) > 0 {
			// The service's cursors of the page's ends (ejabberd).
			cursors[pg.Items[0].ID] = pg.RSM.First
			cursors[pg.Items[len(pg.Items)-1].ID] = pg.RSM.Last
		}
		if unchanged, err = s.storePage(ctx, j, items, cursors, next); err != nil {
			return listing{}, err
		}
		for _, it := range items {
			seen[it.ID] = true
		}
		next += int64(len(items))
	}
	configRead()
	var updated bool
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		var err error
		updated, err = s.finish(ctx, t, j, seen, next, false, secured, subscribed, method)
		return err
	})
	if err != nil {
		return listing{}, err
	}
	// Own publishes waiting for their copy: settled if stored again or
	// gone; an update in place the listing cannot see still waits.
	stored := make(map[string]bool, len(items))
	for _, it := range items {
		stored[it.ID] = true
	}
	p.pubs.forgetBefore(k, j.roundStart(), func(id string) bool { return stored[id] || !seen[id] })
	gone := 0
	for id := range pos {
		if !seen[id] {
			gone++
		}
	}
	p.log.Debug("node reconciled by difference", "profile", k.profile, "service", k.service, "node", k.node, "method", method,
		"listed", listed, "id_listing", ids != nil, "stored_again", len(items), "unchanged", unchanged, "removed", gone)
	return listing{items: listed, unchanged: unchanged, updated: updated}, nil
}

// newestPage is one answer for the node's newest items.
type newestPage struct {
	page *xep0060.ItemsPage
	ids  []string
	// same reports whether an item of the page has its cached payload.
	same func(id string) bool
	// whole: the page is the whole node (fewer items than asked).
	whole bool
	// count is the service's count of the node's items (RSM), -1 unknown.
	count int
	// start is where the items to store again start (newestWindow).
	start int
}

// unchanged reports whether an item of the page has its cached payload
// and was not notified during the job j: an item stored from a
// notification since the reconnection is not what the cache held before
// it, and cannot be the anchor.
func (np newestPage) unchanged(j *SyncJob) func(id string) bool {
	return func(id string) bool { return np.same(id) && !j.isTouched(id) }
}

// newest asks the service for the node's size newest items.
func (s *syncer) newest(ctx context.Context, k nodeKey, n nodeInfo, size int) (newestPage, error) {
	p := s.p
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: size})
	if err != nil {
		return newestPage{}, fmt.Errorf("%w: newest items: %v", errFallback, err)
	}
	np := newestPage{page: page, ids: make([]string, len(page.Items)), whole: len(page.Items) < size, count: -1}
	digests := make(map[string][]byte, len(page.Items))
	for i, it := range page.Items {
		np.ids[i] = it.ID
		digests[it.ID] = digestOf(it.Payload)
	}
	if page.RSM != nil && page.RSM.Count != nil {
		np.count = *page.RSM.Count
	}
	states, err := p.store.states(ctx, p.store.db.Client, n.id, np.ids)
	if err != nil {
		return newestPage{}, err
	}
	np.same = func(id string) bool {
		st, ok := states[id]
		return ok && bytes.Equal(st.digest, digests[id])
	}
	return np, nil
}

// counted settles a node without its id listing, from its newest page
// (ids; whole: the whole node) and the service's count: with held the
// cached ids and the page's (nothing retracted), the page reaches the
// anchor (newestWindow), and the service holds as many items as the
// cache (pos) plus the page's items it lacks. Every addition being after
// the anchor, a retraction (or a dropped item) would make the count
// lower: none happened. ok is false when the id listing is needed.
func counted(ids, held []string, pos map[string]int64, same func(string) bool, whole bool, count int) (start int, ok bool) {
	start, ok = newestWindow(ids, held, pos, same, whole)
	if !ok {
		return 0, false
	}
	added := 0
	for _, id := range ids[start:] {
		if _, cached := pos[id]; !cached {
			added++
		}
	}
	return start, count == len(pos)+added
}
