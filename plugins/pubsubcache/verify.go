// Checks that the service still holds every cached item of a node.

package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// verify checks, with one listing of the node's item ids (disco#items),
// that the service still holds every cached item: a full node drops its
// oldest items without telling (Prosody, ejabberd's PEP nodes). Items gone
// are removed, and when some were the service's count is its capacity;
// items the service has that the cache lacks make the node listed again.
func (s *syncer) verify(ctx context.Context, j *SyncJob) error {
	p := s.p
	k := j.key
	n, ok := p.nodes.get(k)
	if !ok {
		return nil
	}
	// Notifications come in bursts, and a service trims a full node while
	// it stores a new item: the listing waits for both to settle.
	select {
	case <-time.After(checkDelay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if n, ok = p.nodes.get(k); !ok {
		return nil
	}
	if n.state != StateComplete {
		// Partial (cache.item_limit), or being listed: nothing to check
		// against the service's listing.
		return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
			_, _, err := t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			return err
		})
	}
	held, err := p.store.count(ctx, p.store.db.Client, n.id)
	if err != nil {
		return err
	}
	// Items notified from now on may be missing from the listing; those
	// notified before are in it (a check run again after more
	// notifications must not keep sparing them, or it never ends).
	j.forgetTouched()
	ids, err := s.serviceIDs(ctx, k, n, held)
	if err != nil {
		p.log.Info("checking a node's items failed; it is listed again", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		return p.w.run(context.WithoutCancel(ctx), func(ctx context.Context, t *wtx) error {
			n, ok, err := t.transition(ctx, k, event{kind: evNotFresh})
			if err == nil && ok && n.verifying {
				_, _, err = t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			}
			t.afterwards(func() { s.launch(k, false) })
			return err
		})
	}
	if ids == nil {
		// The service holds as many items as the cache: nothing dropped.
		return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
			if _, _, err := t.transition(ctx, k, event{kind: evVerified, count: held}); err != nil {
				return err
			}
			return s.stillUnverified(ctx, t, k)
		})
	}
	server := make(map[string]bool, len(ids))
	for _, id := range ids {
		server[id] = true
	}
	return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		n, ok := t.node(k)
		if !ok || n.state != StateComplete {
			_, _, err := t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			return err
		}
		positions, err := p.store.itemPositions(ctx, t.c, n.id, nil)
		if err != nil {
			return err
		}
		touched := map[string]bool{}
		for _, id := range j.touchedIDs() {
			touched[id] = true
		}
		var gone []string
		for id := range positions {
			if !server[id] && !touched[id] {
				gone = append(gone, id)
			}
		}
		missed := false
		for id := range server {
			if _, ok := positions[id]; !ok && !touched[id] {
				missed = true
			}
		}
		if err := p.store.deleteItems(ctx, t.c, n.id, gone); err != nil {
			return err
		}
		learned := 0
		if len(gone) > 0 && oldest(gone, positions) {
			// The oldest items went without a retraction: the node is
			// full, the service keeps that many.
			learned = len(ids)
		}
		if n, _, err = t.transition(ctx, k, event{kind: evVerified, count: len(ids), learned: learned}); err != nil {
			return err
		}
		if lim := n.limit(); lim > 0 {
			// Learned (or known): the service keeps that many; items
			// notified during the check beyond them went too.
			if _, err := p.store.trim(ctx, t.c, n.id, lim); err != nil {
				return err
			}
		}
		if err := s.stillUnverified(ctx, t, k); err != nil {
			return err
		}
		if len(gone) > 0 {
			t.afterwards(func() { // not told of a write rolled back
				p.log.Info("the service dropped items without telling; removed from the cache", "profile", k.profile, "service", k.service, "node", k.node,
					"items", len(gone), "capacity", learned)
			})
		}
		if missed || len(gone) > 0 && learned == 0 {
			// Items the cache never saw, or a removal it cannot explain:
			// listed again.
			if _, _, err := t.transition(ctx, k, event{kind: evNotFresh}); err != nil {
				return err
			}
			t.afterwards(func() { s.launch(k, false) })
		}
		return nil
	})
}

// checkDelay is how long a check waits before listing the node's ids.
const checkDelay = 250 * time.Millisecond

// errCountDiffers says a service's item count differs from the cache's.
var errCountDiffers = errors.New("the service holds another number of items")

// serviceIDs returns the ids of the items the service holds in the node
// (the cache holds held items), or nil when it holds at least as many as
// the cache: with disco#items on the node where the service lets the
// profile list it; else, on a service that pages, its count alone
// (errCountDiffers when it is not held); else the held most recent items
// (max_items: the service returns fewer when it holds fewer).
func (s *syncer) serviceIDs(ctx context.Context, k nodeKey, n nodeInfo, held int) ([]string, error) {
	p := s.p
	ids, err := p.c.ItemIDs(ctx, k.profile, k.service, k.node)
	if err == nil {
		return ids, nil
	}
	ictx := internal(ctx)
	if p.learn.get(ctx, n.profileID, k.service).RSM == serviceprofile.RsmYes {
		zero := 0
		page, err := p.c.FetchItems(ictx, &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, RSM: &wire.RSMQuery{Max: &zero}})
		switch {
		case err != nil:
			return nil, err
		case page.RSM == nil || page.RSM.Count == nil:
			return nil, fmt.Errorf("count of %s: no count in the answer", k.node)
		case *page.RSM.Count != held:
			return nil, fmt.Errorf("%w (%d, the cache %d)", errCountDiffers, *page.RSM.Count, held)
		}
		return nil, nil
	}
	page, err := p.c.FetchItems(ictx, &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: max(held, 1)})
	if err != nil {
		return nil, err
	}
	if len(page.Items) >= held {
		// The service holds at least as many (items published meanwhile
		// may have pushed older ones out of this answer, not out of the
		// node): nothing was dropped.
		return nil, nil
	}
	ids = make([]string, len(page.Items))
	for i, it := range page.Items {
		ids[i] = it.ID
	}
	return ids, nil
}

// stillUnverified keeps the node off the cache, checked once more, when
// notifications brought it beyond what the check verified meanwhile.
func (s *syncer) stillUnverified(ctx context.Context, t *wtx, k nodeKey) error {
	n, ok := t.node(k)
	if !ok || n.limit() > 0 || n.state != StateComplete {
		return nil
	}
	count, err := s.p.store.count(ctx, t.c, n.id)
	if err != nil || count <= n.verified {
		return err
	}
	if _, _, err := t.transition(ctx, k, event{kind: evUnverified}); err != nil {
		return err
	}
	t.afterwards(func() { s.check(k) })
	return nil
}

// oldest reports whether gone are the oldest of the items at positions.
func oldest(gone []string, positions map[string]int64) bool {
	max := int64(-1 << 62)
	isGone := make(map[string]bool, len(gone))
	for _, id := range gone {
		isGone[id] = true
		max = maxOf(max, positions[id])
	}
	for id, pos := range positions {
		if !isGone[id] && pos < max {
			return false
		}
	}
	return true
}

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
