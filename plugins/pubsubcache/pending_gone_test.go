package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// TestPublishGoneBeforeRefetch: an own publish whose notification does not
// come and whose item is no longer on the service when it is fetched by id
// (retracted, or dropped, meanwhile) does not keep the node off the cache:
// the fetch's answer, without it, ends its wait.
func TestPublishGoneBeforeRefetch(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f, svc, node := cachedNode(t, kind, 3)
			k := nodeKey{"alice", svc, node}
			f.cache.pubs.published(&xep0060.PublishedEvent{Profile: "alice", Service: svc, Node: node, ID: "gone-meanwhile", Sent: time.Now()})
			if !f.cache.pubs.has(k) {
				t.Fatal("the publish does not wait for its copy")
			}
			for deadline := time.Now().Add(f.cache.pendingTimeout + 15*time.Second); f.cache.pubs.has(k); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					st, _ := f.cache.Status(ctxT(t), "alice", svc, node)
					t.Fatalf("the publish still waits %v after it was answered: %+v", f.cache.pendingTimeout+15*time.Second, st)
				}
			}
			f.waitServed(t, "alice", svc, node)
		})
	}
}

// TestPublishKeptByReconcile: an own publish answered before a
// reconciliation by difference began, not notified, whose item the
// reconciliation did not store again (an old item updated in place: the
// id listing and the newest page cannot show it), still waits for its
// copy at the reconciliation's end: it is fetched by id, and the node is
// not served with the cached copy meanwhile. Forgotten there, the node
// was served fresh with the old copy for good (ejabberd, by ids under
// cache.reconcile=ids; Prosody's ids+newest stores that item again).
func TestPublishKeptByReconcile(t *testing.T) {
	for _, tc := range []struct{ kind, mode, method string }{
		{testsvc.KindProsody, reconcileExact, methodIDsNewest},
		{testsvc.KindEjabberd, reconcileIDs, methodIDs},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			const size, old = 30, 3
			f := newFixture(t, servers.Use(t, tc.kind), fixtureOpts{params: map[string]string{KeyReconcile: tc.mode}}, "alice")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, size)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			f.learnRepublish(t, svc, node, 10)
			k := nodeKey{"alice", svc, node}

			// The cache holds another copy of an old item than the service
			// (as before an update in place whose notification never came),
			// and the profile's publish of it is answered, not notified.
			stale := wire.Item{ID: itemID(old), Publisher: "alice@" + f.srv.Domain, Payload: payload(900)}
			if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{stale}, nil, false)); err != nil {
				t.Fatal(err)
			}
			f.cache.pubs.published(&xep0060.PublishedEvent{Profile: "alice", Service: svc, Node: node, ID: itemID(old), Sent: time.Now()})
			if err := f.cache.w.do(ctx, op{kind: opFunc, key: k, fn: f.cache.transitionOf(k, event{kind: evNotFresh}, false)}); err != nil {
				t.Fatal(err)
			}
			j := f.cache.sync.launch(k, false)
			<-j.Done()
			if err := j.Err(); err != nil {
				t.Fatal(err)
			}
			st, err := f.cache.Status(ctx, "alice", svc, node)
			if err != nil {
				t.Fatal(err)
			}
			if len(st) != 1 || st[0].Method == nil || *st[0].Method != tc.method {
				t.Fatalf("not reconciled by %s: %+v", tc.method, st)
			}
			// Stored again by the reconciliation (Prosody: the stale copy,
			// placed last as a re-published item, is not the service's
			// newest), or still waiting (ejabberd: ids cannot show it).
			for deadline := time.Now().Add(f.cache.pendingTimeout + 15*time.Second); f.cache.pubs.has(k); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the publish still waits long after its fetch by id was due")
				}
			}
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after the publish's fetch by id", svc, node, []xep0060.ItemsRequest{{ItemIDs: []string{itemID(old)}}, {}})
		})
	}
}
