package pubsubcache

import (
	"bytes"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
)

// TestNotifiedBeforeReconcileNoAnchor: items notified after the
// reconnection but before the node's reconciliation began (it waited for
// a slot) are no anchor either: newer than an item updated while the
// profile was offline, they must not hide it (Prosody, ids+newest; eight
// of them fill the first newest page).
func TestNotifiedBeforeReconcileNoAnchor(t *testing.T) {
	const size, old = 30, 3
	f := newFixture(t, servers.Use(t, testsvc.KindProsody), fixtureOpts{params: map[string]string{KeyReconcile: reconcileExact}}, "alice")
	w := f.writer(t)
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, size)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
	f.learnRepublish(t, svc, node, 10)
	k := nodeKey{"alice", svc, node}
	n, _ := f.cache.nodes.get(k)

	if err := f.m.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: node, ID: itemID(old), Payload: payload(900)}); err != nil {
		t.Fatal(err)
	}
	// Another after it (Prosody sends the last item at the reconnection).
	f.publish(t, w, svc, node, size+100, size+101)
	// Every reconciliation slot taken: the node's waits.
	sem := f.cache.sync.semaphore(ctx, "alice", true)
	for range cap(sem) {
		sem <- struct{}{}
	}
	drained := false
	drain := func() {
		if !drained {
			drained = true
			for range cap(sem) {
				<-sem
			}
		}
	}
	defer drain()
	if err := f.m.Connect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// The last item, as Prosody sends it at the reconnection (not every
	// time in time: its notification is applied here).
	last, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, ItemIDs: []string{itemID(size + 100)}, NoCache: true})
	if err != nil || len(last.Items) != 1 {
		t.Fatalf("the last item: %v %v", last, err)
	}
	if err := f.cache.w.do(ctx, itemsOp(k, last.Items, nil, false)); err != nil {
		t.Fatal(err)
	}
	ids := []string{itemID(size + 100)}
	for i := size; i < size+newestStart; i++ {
		ids = append(ids, itemID(i))
	}
	f.publish(t, w, svc, node, size, size+newestStart)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pos, err := f.cache.store.itemPositions(ctx, f.cache.store.db.Client, n.id, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(pos) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live notifications were not stored: %d of %d", len(pos), len(ids))
		}
	}
	if j := f.cache.sync.running(k); j == nil {
		t.Fatal("no reconciliation waits")
	}
	drain()
	st := f.waitState(t, "alice", svc, node, true, StateComplete)
	req := &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, ItemIDs: []string{itemID(old)}}
	cached, err := f.cache.Get(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	live, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, ItemIDs: []string{itemID(old)}, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cached.Items) != 1 || len(live.Items) != 1 || !bytes.Equal(cached.Items[0].Payload, live.Items[0].Payload) {
		t.Fatalf("reconciled (%s) fresh with another copy of %s than the service's:\ncached %q\nlive   %q", strOrNil(st.Method), itemID(old), cached.Items, live.Items)
	}
	t.Logf("reconciled by %s", strOrNil(st.Method))
}
