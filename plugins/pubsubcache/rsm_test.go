package pubsubcache

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

func intp(v int) *int       { return &v }
func strp(v string) *string { return &v }

func rsmString(s *wire.RSMSet) string {
	if s == nil {
		return "no <set/>"
	}
	c, i := "nil", "nil"
	if s.Count != nil {
		c = fmt.Sprint(*s.Count)
	}
	if s.FirstIndex != nil {
		i = fmt.Sprint(*s.FirstIndex)
	}
	return "count=" + c + " index=" + i
}

// TestParityRSM is the RSM part of the parity suite (DESIGN §6) on
// ejabberd, which honours RSM: index-based pages, after/before with
// cursors handed out by the live service and by the cache, the last page
// and count-only requests are answered from the cache (no items request)
// with the service's items, count and index.
func TestParityRSM(t *testing.T) {
	const size = 320
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{pageSize: 100}, "alice")
	r := rand.New(rand.NewPCG(7, 11))
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publishParallel(t, "alice", svc, node, 0, size, 1)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
	req := func(q *wire.RSMQuery, noCache bool) (*xep0060.ItemsPage, int64) {
		return f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: q, NoCache: noCache})
	}
	// How the service reports the index of empty pages and of pages asked
	// with <before/> is learned from its answers (ejabberd: -1).
	req(&wire.RSMQuery{Max: intp(0)}, true)
	first, _ := req(&wire.RSMQuery{Max: intp(2)}, true)
	req(&wire.RSMQuery{Max: intp(3), Before: strp(first.RSM.Last)}, true)
	pid, _ := f.cache.store.profileID(ctxT(t), "alice")
	if beh := f.cache.learn.get(ctxT(t), pid, svc); beh.EmptyIndex != "absent" || beh.BeforeIndex != "unclamped" {
		t.Errorf("learned RSM index reporting: empty=%q before=%q, want absent, unclamped (ejabberd)", beh.EmptyIndex, beh.BeforeIndex)
	}

	// Cursors seen: item id → the service's cursor, and the cache's.
	live, cache := map[string]string{}, map[string]string{}
	note := func(m map[string]string, p *xep0060.ItemsPage) {
		if p.RSM != nil && len(p.Items) > 0 {
			m[p.Items[0].ID], m[p.Items[len(p.Items)-1].ID] = p.RSM.First, p.RSM.Last
		}
	}
	note(live, first)
	pick := func(m map[string]string) (string, string, bool) {
		if len(m) == 0 {
			return "", "", false
		}
		i := r.IntN(len(m))
		for id, c := range m {
			if i == 0 {
				return id, c, true
			}
			i--
		}
		return "", "", false
	}
	// liveCursor returns the service's cursor of an item (asking the
	// service for a one-item page at its index when not seen yet).
	liveCursor := func(id string) string {
		if c, ok := live[id]; ok {
			return c
		}
		all, _ := req(&wire.RSMQuery{Max: intp(1000)}, true)
		for i, it := range all.Items {
			if it.ID == id {
				p, _ := req(&wire.RSMQuery{Max: intp(1), Index: intp(i)}, true)
				note(live, p)
				return p.RSM.First
			}
		}
		t.Fatalf("item %s not on the service", id)
		return ""
	}
	maxOf := func() *int {
		if r.IntN(8) == 0 {
			return nil
		}
		return intp(r.IntN(60))
	}
	total := size
	suite := func(what string, shapes int) {
		failed, kinds := 0, map[string]int{}
		for n := 0; n < shapes; n++ {
			var qc, ql wire.RSMQuery
			kind := ""
			switch r.IntN(6) {
			case 0:
				kind = "index"
				qc = wire.RSMQuery{Max: maxOf(), Index: intp(r.IntN(total))}
				ql = qc
			case 1:
				kind = "max"
				qc = wire.RSMQuery{Max: maxOf()}
				ql = qc
			case 2:
				kind = "last page"
				qc = wire.RSMQuery{Max: intp(1 + r.IntN(40)), Before: strp("")}
				ql = qc
			case 3, 4:
				// A cursor handed out by the service, or by the cache.
				src, m := "live", live
				if r.IntN(2) == 0 && len(cache) > 0 {
					src, m = "cache", cache
				}
				id, c, ok := pick(m)
				if !ok {
					n--
					continue
				}
				lc := c
				if src == "cache" {
					lc = liveCursor(id)
				}
				if r.IntN(2) == 0 {
					kind = "after " + src + " cursor"
					qc = wire.RSMQuery{Max: intp(1 + r.IntN(40)), After: strp(c)}
					ql = wire.RSMQuery{Max: qc.Max, After: strp(lc)}
				} else {
					kind = "before " + src + " cursor"
					qc = wire.RSMQuery{Max: intp(1 + r.IntN(40)), Before: strp(c)}
					ql = wire.RSMQuery{Max: qc.Max, Before: strp(lc)}
				}
			default:
				kind = "count only"
				qc = wire.RSMQuery{Max: intp(0)}
				ql = qc
			}
			kinds[kind]++
			cached, sentC := f.cachedCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &qc})
			lv, sentL := f.liveCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &ql, NoCache: true})
			note(cache, cached)
			note(live, lv)
			bad := ""
			switch {
			case sentC != 0 || !cached.FromCache:
				bad = fmt.Sprintf("not from the cache (sent %d)", sentC)
			case sentL != 1 || lv.FromCache:
				bad = fmt.Sprintf("live: sent %d from_cache=%v", sentL, lv.FromCache)
			case rsmString(cached.RSM) != rsmString(lv.RSM):
				bad = fmt.Sprintf("set: cache %s, live %s", rsmString(cached.RSM), rsmString(lv.RSM))
			default:
				bad = sameItems(cached.Items, lv.Items)
			}
			if bad != "" {
				failed++
				if failed <= 8 {
					cur := ""
					if qc.After != nil {
						cur = "after=" + *qc.After
					}
					if qc.Before != nil {
						cur = "before=" + *qc.Before
					}
					t.Errorf("%s: %s %s: %s", what, kind, cur, bad)
				}
			}
		}
		t.Logf("%s: RSM shapes: %v", what, kinds)
		if failed > 0 {
			t.Errorf("%s: %d of %d RSM shapes differ", what, failed, shapes)
		}
	}
	suite("synced", 120)
	// Kept exact by notifications: new items (cursors issued by the
	// cache), an update, retractions.
	f.publish(t, "alice", svc, node, size, size+5)
	if _, err := f.c.Publish(ctxT(t), xep0060.PublishRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(10), Payload: payload(1010)}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 150, size + 2} {
		if err := f.c.Retract(ctxT(t), xep0060.RetractRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(i), Notify: true}); err != nil {
			t.Fatal(err)
		}
		// The cursor of a retracted item names nothing the cache holds:
		// such a request goes to the network (checked below).
		delete(live, itemID(i))
		delete(cache, itemID(i))
	}
	total = size + 2
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
	suite("after publish, update and retract", 40)
	// A cursor of a retracted item, or that nobody handed out, goes to the
	// network.
	if p, sent := req(&wire.RSMQuery{Max: intp(3), After: strp("2001-01-01T00:00:00.000000Z")}, false); sent != 1 || p.FromCache {
		t.Errorf("unknown cursor: sent %d from_cache=%v", sent, p.FromCache)
	}
}

// TestBeforeFirstCursor: a page asked with <before/> the first cursor of a
// page the service handed out is answered from the cache, like the
// service, without any earlier live request teaching how the service
// reports such pages' index (the cache probes it once per service, at the
// end of its first sync there).
func TestBeforeFirstCursor(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{pageSize: 16}, "alice")
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 40)
	j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	f.waitServed(t, "alice", svc, node)
	for _, at := range []int{3, 20, 35} {
		page, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true, RSM: &wire.RSMQuery{Max: intp(5), Index: intp(at)}})
		if page.RSM == nil || page.RSM.First == "" {
			t.Fatalf("live page at %d: %+v", at, page.RSM)
		}
		q := xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &wire.RSMQuery{Max: intp(5), Before: strp(page.RSM.First)}}
		// The first such request: nothing taught the cache how the
		// service reports these pages' index but its own probe.
		why := f.cache.explain(&q)
		cached, sent := f.counted(t, q)
		q.NoCache = true
		live, _ := f.counted(t, q)
		if sent != 0 || !cached.FromCache {
			t.Errorf("before the first cursor of the page at %d: not from the cache (sent %d): %s", at, sent, why)
		}
		if d := sameItems(cached.Items, live.Items); d != "" || rsmString(cached.RSM) != rsmString(live.RSM) {
			t.Errorf("before the first cursor of the page at %d: %s; rsm %s, live %s", at, d, rsmString(cached.RSM), rsmString(live.RSM))
		}
	}
}
