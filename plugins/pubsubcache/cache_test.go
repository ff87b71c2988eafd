package pubsubcache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// TestSyncAndServe: the first get of a to_sync node goes to the network and
// starts a background sync; once complete and fresh, no-arg, max_items and
// item-id requests are answered from the cache, equal to the live answer,
// with no items request sent; --no-cache goes to the network.
func TestSyncAndServe(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{pageSize: 16}, "alice")
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 40)

			page, sent := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if page.FromCache || sent != 1 || len(page.Items) != 40 {
				t.Fatalf("first get: from_cache=%v sent=%d items=%d", page.FromCache, sent, len(page.Items))
			}
			st := f.waitState(t, "alice", svc, node, true, StateComplete)
			if st.Items != 40 || st.Analyser == nil || *st.Analyser != "test-sync" || st.Type == nil || *st.Type != "test" {
				t.Fatalf("status = %+v", st)
			}
			live := page.Items
			shapes := []xep0060.ItemsRequest{
				{},
				{MaxItems: 1}, {MaxItems: 7}, {MaxItems: 40}, {MaxItems: 400},
				{ItemIDs: []string{itemID(3)}},
				{ItemIDs: []string{itemID(30), itemID(2), "no-such-item", itemID(17)}},
			}
			for _, s := range shapes {
				s.Profile, s.Service, s.Node = "alice", svc, node
				cached, sentC := f.cachedCounted(t, s)
				s.NoCache = true
				net, sentN := f.liveCounted(t, s)
				if sentC != 0 || !cached.FromCache || sentN != 1 || net.FromCache {
					t.Errorf("%+v: cached sent=%d from_cache=%v; live sent=%d from_cache=%v", s, sentC, cached.FromCache, sentN, net.FromCache)
				}
				if d := sameItems(cached.Items, net.Items); d != "" {
					t.Errorf("%+v: cache differs from the service: %s", s, d)
				}
			}
			if d := sameItems(live, mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}).Items); d != "" {
				t.Errorf("whole node: %s", d)
			}
			// Parsed JSON and search text are stored with the payload.
			it, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ItemID(itemID(5))).Only(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			indexed, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ID(it.ID), f.host.Store.MatchText("parsed "+itemID(5))).Exist(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if it.ParseState != pubsubitem.ParseStateOk || parsedDoc(t, it)["id"] != itemID(5) || !indexed {
				t.Errorf("parse_state=%s parsed=%v full-text indexed=%v", it.ParseState, parsedDoc(t, it), indexed)
			}
			// Behaviour learned from the service.
			pid, _ := f.cache.store.profileID(context.Background(), "alice")
			b := f.cache.learn.get(context.Background(), pid, svc)
			wantRSM := serviceprofile.RsmYes
			if kind == "prosody" {
				wantRSM = serviceprofile.RsmNo
			}
			if b.RSM != wantRSM {
				t.Errorf("rsm learned = %s, want %s", b.RSM, wantRSM)
			}
			t.Logf("behaviour of %s: %+v", kind, b)
			// cache get answers from the cache only.
			cg, err := f.cache.Get(context.Background(), &xep0060.ItemsRequest{Profile: "alice", Node: node, Service: svc, MaxItems: 3})
			if err != nil || !cg.FromCache || cg.Stale || len(cg.Items) != 3 {
				t.Errorf("cache get: %+v %v", cg, err)
			}
			// Several ids in reverse node order while the service's order
			// is not known: refused, not a crash.
			f.cache.learn.learn(context.Background(), pid, svc, func(b *behaviour) { b.IDsOrder = serviceprofile.IdsOrderUnknown })
			_, err = f.cache.Get(context.Background(), &xep0060.ItemsRequest{Profile: "alice", Node: node, Service: svc, ItemIDs: []string{itemID(5), itemID(1)}})
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("cache get of two ids in an unknown order: %v, want ErrUnsupported", err)
			}
		})
	}
}

func mustGet(t testing.TB, f *fixture, req xep0060.ItemsRequest) *xep0060.ItemsPage {
	t.Helper()
	page, err := f.c.Items(ctxT(t), &req)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// TestNotSyncedNodes: a node whose analyser does not say to_sync is
// analysed once (no extra requests on later gets) and never cached; `cache
// sync` caches it anyway.
func TestNotSyncedNodes(t *testing.T) {
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{}, "alice")
	svc, node := f.nodeOn(t, "alice", plainPrefix)
	f.publish(t, "alice", svc, node, 0, 5)
	for i := 0; i < 3; i++ {
		page, sent := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
		if sent != 1 || page.FromCache {
			t.Fatalf("get %d: sent=%d from_cache=%v (one request, no analysis request)", i, sent, page.FromCache)
		}
	}
	st := f.waitState(t, "alice", svc, node, false, StateNoSync)
	if st.Analyser == nil || *st.Analyser != "test-plain" {
		t.Errorf("status = %+v", st)
	}
	j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	if j.Err() != nil {
		t.Fatal(j.Err())
	}
	f.waitState(t, "alice", svc, node, true, StateComplete)
	page, sent := f.cachedCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if sent != 0 || !page.FromCache || len(page.Items) != 5 {
		t.Fatalf("after cache sync: sent=%d from_cache=%v items=%d", sent, page.FromCache, len(page.Items))
	}
}

// TestItemLimit: a node larger than cache.item_limit is partial and not
// answered from the cache.
func TestItemLimit(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{params: map[string]string{KeyItemLimit: "5"}, pageSize: 3}, "alice")
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 9)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			st := f.waitState(t, "alice", svc, node, false, StatePartial)
			// The sync stops at the limit; the last published item the
			// service sends on subscription may come on top.
			if st.Items < 5 || st.Items > 6 || st.Fresh {
				t.Errorf("status = %+v", st)
			}
			page, sent := f.liveCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if sent != 1 || page.FromCache || len(page.Items) != 9 {
				t.Errorf("partial node: sent=%d from_cache=%v items=%d", sent, page.FromCache, len(page.Items))
			}
			cg, err := f.cache.Get(context.Background(), &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if err != nil || cg.Complete || len(cg.Items) != st.Items {
				t.Errorf("cache get of a partial node: complete=%v items=%d %v", cg.Complete, len(cg.Items), err)
			}
		})
	}
}

// TestItemLimitNotifications: notifications never take a node beyond
// cache.item_limit: the oldest items go and the complete node becomes
// partial (network answers from then on).
func TestItemLimitNotifications(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{params: map[string]string{KeyItemLimit: "5"}}, "alice")
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 3)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.publish(t, "alice", svc, node, 3, 8)
	st := f.waitState(t, "alice", svc, node, false, StatePartial)
	if st.Items != 5 || st.Fresh {
		t.Errorf("status = %+v, want 5 items, partial, not fresh", st)
	}
	// The last notifications may still be on their way: the newest five
	// are cached once they are in.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cg, err := f.cache.Get(context.Background(), &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		if !cg.Complete && idsOf(cg.Items) == "it-0003,it-0004,it-0005,it-0006,it-0007" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cached items: complete=%v ids=%s", cg.Complete, idsOf(cg.Items))
		}
		time.Sleep(20 * time.Millisecond)
	}
	page, sent := f.liveCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if sent != 1 || page.FromCache || len(page.Items) != 8 {
		t.Errorf("partial node: sent=%d from_cache=%v items=%d", sent, page.FromCache, len(page.Items))
	}
}

// TestParserDown: items of a node whose parser's plugin is down are stored
// raw with parse_state pending: nothing is lost.
func TestParserDown(t *testing.T) {
	for _, how := range []string{"down", "crashed mid-batch"} {
		t.Run(how, func(t *testing.T) { testParserDown(t, how) })
	}
}

func testParserDown(t *testing.T, how string) {
	// More than a parse batch.
	const items = parseBatch + 50
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{}, "alice")
	if how == "down" {
		f.host.Analysers.Down("testplugin")
	} else {
		f.provider.failing.Store(true)
	}
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publishParallel(t, "alice", svc, node, 0, items, 8)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	n, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending)).Count(context.Background())
	if err != nil || n != items {
		t.Errorf("pending items = %d %v, want %d", n, err, items)
	}
	// Pending, they are found by their payload's text (taken from the
	// payload when the parser could not give it).
	bold, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending), f.host.Store.MatchText("bold")).Count(context.Background())
	if want := (items + 3) / 4; err != nil || bold != want { // payload(i) has "bold" when i%4 == 0
		t.Errorf("pending items found by their text = %d %v, want %d", bold, err, want)
	}
	page, sent := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if sent != 0 || len(page.Items) != items {
		t.Errorf("served: sent=%d items=%d", sent, len(page.Items))
	}
	// The parser is back (restarted): the pending items are parsed.
	f.provider.failing.Store(false)
	f.host.Analysers.Up("testplugin", f.provider)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStateOk)).All(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ok) == items {
			for _, it := range ok {
				indexed, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ID(it.ID), f.host.Store.MatchText("parsed "+it.ItemID)).Exist(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if parsedDoc(t, it)["id"] != it.ItemID || !indexed {
					t.Errorf("item %s: parsed=%v full-text indexed=%v", it.ItemID, parsedDoc(t, it), indexed)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d items parsed after the parser came back", len(ok), items)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFreshness: notifications keep a synced node equal to the service
// (publish, update, retract, purge, node delete); a disconnection makes it
// not fresh: answered stale while offline, reconciled after reconnection.
func TestFreshness(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{}, "alice")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 10)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			check := func(what string) {
				t.Helper()
				f.waitServed(t, "alice", svc, node)
				cached, sent := f.cachedCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
				live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
				if sent != 0 || !cached.FromCache {
					t.Errorf("%s: not from the cache (sent=%d)", what, sent)
				}
				if d := sameItems(cached.Items, live.Items); d != "" {
					t.Errorf("%s: %s", what, d)
				}
			}
			f.publish(t, "alice", svc, node, 10, 13)
			check("after publish")
			// Update (re-publish of an existing id, new payload).
			if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(4), Payload: payload(99)}); err != nil {
				t.Fatal(err)
			}
			check("after update")
			if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(2), Notify: true}); err != nil {
				t.Fatal(err)
			}
			check("after retract")
			if err := f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			check("after purge")
			f.publish(t, "alice", svc, node, 20, 22)
			check("after publish on a purged node")

			// Offline: stale answers from the cache.
			if err := f.m.Disconnect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			page, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if err != nil || !page.FromCache || !page.Stale || len(page.Items) != 2 {
				t.Fatalf("offline: %+v %v", page, err)
			}
			if err := f.m.Connect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			f.waitState(t, "alice", svc, node, true, StateComplete)
			check("after reconnection")

			// Node deleted: the cache forgets it.
			if err := f.c.DeleteNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			st, err := f.cache.Status(ctx, "alice", svc, node)
			if err != nil || len(st) != 0 {
				t.Errorf("after delete: %+v %v", st, err)
			}
		})
	}
}

// TestPurgeAndReset: `cache purge` makes a node not complete (network until
// synced again); `cache reset` forgets everything.
func TestPurgeAndReset(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{}, "alice")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 4)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	future := time.Now().Add(time.Hour)
	nodes, items, err := f.cache.Purge(ctx, PurgeFilter{Profiles: []string{"alice"}, Types: []string{"test"}, CreatedBefore: &future})
	if err != nil || nodes != 1 || items != 4 {
		t.Fatalf("purge: %d nodes %d items %v", nodes, items, err)
	}
	st := f.waitState(t, "alice", svc, node, false, StateNever, StateInProgress, StateComplete)
	t.Logf("after purge: %+v", st)
	page, sent := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, MaxItems: 2})
	// (sent may count the sync this get starts as well)
	if st.State == string(StateNever) && (sent < 1 || page.FromCache) {
		t.Errorf("purged node answered from the cache")
	}
	// The get above started a new sync: served again once complete.
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
	n, err := f.cache.Reset(ctx)
	if err != nil || n != 1 {
		t.Fatalf("reset: %d %v", n, err)
	}
	if st, _ := f.cache.Status(ctx, "", "", ""); len(st) != 0 {
		t.Errorf("after reset: %+v", st)
	}
	_, sent = f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, MaxItems: 2})
	if sent != 1 {
		t.Errorf("after reset: sent=%d", sent)
	}
}

// TestStoredPayloadForms: payloads are stored packed (payloadcodec) and
// served byte for byte as the service sends them; a row stored raw (before
// packing) is served as it is; a damaged stored payload is never served:
// the service answers instead, and the node is synced again.
func TestStoredPayloadForms(t *testing.T) {
	f := newFixture(t, servers.Use(t, testsvc.KindProsody), fixtureOpts{}, "alice")
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 12)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	ctx := context.Background()
	live := func() []wire.Item {
		return mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true}).Items
	}
	stored := func(id string) *ent.PubsubItem {
		it, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ItemID(id)).Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	want := live()
	// Atom entries (every fourth test payload) are packed.
	if p := stored(itemID(0)).Payload; len(p) < 2 || p[0] != 0 || p[1] != 1 {
		t.Fatalf("the Atom entry is not stored packed: %q", p)
	}
	req := xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}
	if got, _ := f.cachedCounted(t, req); !got.FromCache || sameItems(got.Items, want) != "" {
		t.Fatalf("packed payloads: from_cache=%v, %s", got.FromCache, sameItems(got.Items, want))
	}
	// A row written before packing holds the XML itself.
	raw, err := payloadcodec.Unpack(stored(itemID(4)).Payload)
	if err != nil {
		t.Fatal(err)
	}
	f.host.Store.Client.PubsubItem.UpdateOneID(stored(itemID(4)).ID).SetPayload(raw).ExecX(ctx)
	if got, _ := f.cachedCounted(t, req); !got.FromCache || sameItems(got.Items, want) != "" {
		t.Fatalf("a raw row: from_cache=%v, %s", got.FromCache, sameItems(got.Items, want))
	}
	// Damaged bytes: the service answers, right.
	f.host.Store.Client.PubsubItem.UpdateOneID(stored(itemID(8)).ID).SetPayload([]byte{0, 1, 0xff, 0xff, 0xff, 0x0f}).ExecX(ctx)
	// (The heal's listing may be counted with the answer's request.)
	got, sent := f.counted(t, req)
	if got.FromCache || sent < 1 || sameItems(got.Items, want) != "" {
		t.Fatalf("a damaged row: from_cache=%v sent=%d, %s", got.FromCache, sent, sameItems(got.Items, want))
	}
	// ... and the node heals: a full sync stores the item again.
	if got, _ := f.cachedCounted(t, req); !got.FromCache || sameItems(got.Items, want) != "" {
		t.Fatalf("after the damaged row: from_cache=%v, %s", got.FromCache, sameItems(got.Items, want))
	}
	if p, err := payloadcodec.Unpack(stored(itemID(8)).Payload); err != nil || stored(itemID(8)).Digest == nil {
		t.Fatalf("the damaged row is not stored again: %v %q", err, p)
	}
	// `cache get` (what the cache holds, never the network) refuses a
	// damaged row and heals the node likewise.
	f.host.Store.Client.PubsubItem.UpdateOneID(stored(itemID(0)).ID).SetPayload([]byte{0, 1, 0xff, 0xff, 0xff, 0x0f}).ExecX(ctx)
	if _, err := f.cache.Get(ctx, &req); err == nil || !strings.Contains(err.Error(), itemID(0)) {
		t.Fatalf("cache get of a damaged row: %v", err)
	}
	if j := f.cache.sync.running(nodeKey{"alice", svc, node}); j != nil {
		<-j.Done()
	}
	if page, err := f.cache.Get(ctx, &req); err != nil || sameItems(page.Items, want) != "" {
		t.Fatalf("cache get after the heal: %v", err)
	}
}
