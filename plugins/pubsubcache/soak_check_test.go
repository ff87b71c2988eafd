package pubsubcache

import (
	"fmt"
	"slices"
	"time"

	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// The soak's checks after each step (soak_test.go runs the steps).

// quiet returns once alice's cache was handed every notification the
// step caused: bob publishes an item on each service's marker node and
// alice's router delivers notifications of a service in order.
func (s *soak) quiet() {
	s.t.Helper()
	for svc, marker := range s.markers {
		s.marks++
		id := fmt.Sprintf("mark-%d", s.marks)
		deadline := time.Now().Add(20 * time.Second)
		for again := time.Now(); ; {
			if again.Before(time.Now()) {
				// Again until notified (the first ones may come before
				// the service knows alice wants them).
				if _, err := s.c.Publish(ctxT(s.t), xep0060.PublishRequest{Profile: "bob", Service: svc, Node: marker, ID: id, Payload: lifePayload(s.marks)}); err != nil {
					s.t.Fatalf("marker publish: %v", err)
				}
				again = time.Now().Add(2 * time.Second)
			}
			s.mu.Lock()
			seen := len(s.forms[marker][id]) > 0
			s.mu.Unlock()
			if seen {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("alice was never notified of marker %s on %s", id, svc)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// settle checks every node after a step; false: the soak stops.
func (s *soak) settle(what string) bool {
	s.quiet()
	for _, n := range s.nodes {
		if !s.settleNode(what, n) {
			return false
		}
	}
	return !s.t.Failed()
}

// soakServeWithin is how long a node may stay off the cache once quiet
// (an own publish's copy is fetched 5 s after its answer; a
// reconciliation by the whole listing of a node of a few items takes a
// second or two).
const soakServeWithin = 30 * time.Second

// settleNode: alice's live read first (after it, her session received
// what the step caused), then, until the node is served from the cache:
// every answer from the cache equals the live one, and the status does
// not say complete and fresh for long while the cache holds something
// else; then a few random shapes.
func (s *soak) settleNode(what string, n *soakNode) bool {
	t := s.t
	all := xep0060.ItemsRequest{Profile: "alice", Service: n.svc, Node: n.node}
	start := time.Now()
	var claimed time.Time // since when the status says fresh with other items
	for {
		live := s.aliceLive(all)
		cached, err := s.c.Items(ctxT(t), &all)
		if err != nil {
			t.Errorf("%s: %s: alice's read: %v", what, n.name, err)
			return false
		}
		if cached.FromCache {
			if d := s.compare(n.node, cached.Items, live.Items); d != "" || cached.Stale {
				s.diverged(what, n, all, cached, live, d)
				return false
			}
			st, _ := s.cache.Status(ctxT(t), "alice", n.svc, n.node)
			if len(st) != 1 || st[0].State != string(StateComplete) || !st[0].Fresh || st[0].Items != len(live.Items) {
				t.Errorf("%s: %s served from the cache, status %+v (live %d items)", what, n.name, st, len(live.Items))
				return false
			}
			s.logf("  %s: served after %v: %s", n.name, time.Since(start).Round(time.Millisecond), idsOf(live.Items))
			break
		}
		if d := s.claimsFresh(n, live.Items); d == "" {
			claimed = time.Time{}
		} else if claimed.IsZero() {
			claimed = time.Now()
		} else if time.Since(claimed) > 10*time.Second {
			t.Errorf("%s: %s: the status says complete and fresh for %v while the cache holds other items: %s; reads go to the network: %s",
				what, n.name, time.Since(claimed).Round(time.Millisecond), d, s.cache.explain(&all))
			return false
		}
		if time.Since(start) > soakServeWithin {
			st, _ := s.cache.Status(ctxT(t), "alice", n.svc, n.node)
			t.Errorf("%s: %s not served from the cache %v after the step: %s; status %+v", what, n.name, soakServeWithin, s.cache.explain(&all), st)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 3 {
		live0 := s.live(n)
		req := s.shape(n, live0)
		lreq := req
		lreq.NoCache = true
		live := s.aliceLive(lreq)
		cached, err := s.c.Items(ctxT(t), &req)
		if err != nil {
			t.Errorf("%s: %s: alice's read %s: %v", what, n.name, shapeString(req), err)
			return false
		}
		if !cached.FromCache {
			continue
		}
		d := s.compare(n.node, cached.Items, live.Items)
		if d == "" && rsmString(cached.RSM) != rsmString(live.RSM) {
			d = fmt.Sprintf("set %s, live %s", rsmString(cached.RSM), rsmString(live.RSM))
			if live.RSM != nil && live.RSM.FirstIndex != nil && *live.RSM.FirstIndex < 0 {
				// ejabberd's last page (before '') of fewer items than
				// max says index count-max, negative; the cache 0.
				s.logf("  %s %s: known: %s", n.name, shapeString(req), d)
				d = ""
			}
		}
		if d != "" || cached.Stale {
			s.diverged(what, n, req, cached, live, d)
			return false
		}
	}
	return true
}

// aliceLive is alice's read of the service (--no-cache).
func (s *soak) aliceLive(req xep0060.ItemsRequest) *xep0060.ItemsPage {
	s.t.Helper()
	req.NoCache = true
	page, err := s.c.Items(ctxT(s.t), &req)
	if err != nil {
		s.t.Fatalf("alice's live read %s: %v", shapeString(req), err)
	}
	return page
}

// claimsFresh returns what differs between the cache's items of n and
// live while the status says complete and fresh ("" otherwise).
func (s *soak) claimsFresh(n *soakNode, live []wire.Item) string {
	st, err := s.cache.Status(ctxT(s.t), "alice", n.svc, n.node)
	if err != nil || len(st) != 1 || st[0].State != string(StateComplete) || !st[0].Fresh {
		return ""
	}
	page, err := s.cache.Get(ctxT(s.t), &xep0060.ItemsRequest{Profile: "alice", Service: n.svc, Node: n.node})
	if err != nil {
		return ""
	}
	return s.compare(n.node, page.Items, live)
}

// diverged reports an answer from the cache that differs from the live
// one, and whether it still does 3 s later.
func (s *soak) diverged(what string, n *soakNode, req xep0060.ItemsRequest, cached, live *xep0060.ItemsPage, d string) {
	time.Sleep(3 * time.Second)
	again, _ := s.c.Items(ctxT(s.t), &req)
	now := s.aliceLive(req)
	later := "3 s later: not from the cache"
	if again != nil && again.FromCache {
		later = fmt.Sprintf("3 s later from the cache: %s (live %s)", idsOf(again.Items), idsOf(now.Items))
	}
	st, _ := s.cache.Status(ctxT(s.t), "alice", n.svc, n.node)
	s.t.Errorf("DIVERGENCE %s on %s (%s), %s: served %s (stale %v), live %s: %s; %s; status %+v; alice's last requests to the service: %v",
		what, n.name, s.kind, shapeString(req), idsOf(cached.Items), cached.Stale, idsOf(live.Items), d, later, st, s.lastAsked(12))
}

// lastAsked returns alice's last k items requests that went to the service.
func (s *soak) lastAsked(k int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked[max(0, len(s.asked)-k):])
}
