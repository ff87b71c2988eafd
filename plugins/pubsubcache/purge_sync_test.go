package pubsubcache

import (
	"context"
	"testing"
	"time"

	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// TestPurgeDuringSync: a purge of the node (the profile's own, applied
// before its call returns) while a listing holds a page it fetched before
// the purge (its parse hangs) does not leave the node complete and fresh
// with the page's items, which the service no longer has: the listing
// ends not fresh and the node is listed again.
func TestPurgeDuringSync(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{}, "alice")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 3)
			k := nodeKey{"alice", svc, node}

			// The purge's notification, once the cache queued its write.
			purged := make(chan struct{}, 4)
			handle, err := f.host.Bus.Attach("test", triggers.Observe(xep0060.EventPurge, triggers.PriorityDefault-1, func(ctx context.Context, ev *xep0060.NodeEvent) error {
				if ev.Node == node {
					purged <- struct{}{}
				}
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer handle.Remove()
			hang := make(chan struct{})
			f.provider.hang.Store(&hang)
			released := false
			release := func() {
				if !released {
					released = true
					f.provider.hang.Store(nil)
					close(hang)
				}
			}
			defer release()
			j := f.cache.sync.launch(k, true)
			// The listing's page is fetched: its parse hangs.
			for deadline := time.Now().Add(time.Minute); f.provider.hung.Load() == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the page's parse never started")
				}
			}
			if err := f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			// Its notification applied too (else it would remove the
			// page's items after they are stored).
			select {
			case <-purged:
			case <-time.After(10 * time.Second):
				t.Log("no purge notification")
			}
			f.cache.w.flush(ctx)
			release()
			<-j.Done()
			if err := j.Err(); err != nil {
				t.Fatal(err)
			}
			f.waitState(t, "alice", svc, node, false, StateComplete)
			n, _ := f.cache.nodes.get(k)
			cached, err := f.cache.store.count(ctx, f.cache.store.db.Client, n.id)
			if err != nil {
				t.Fatal(err)
			}
			live, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
			if err != nil {
				t.Fatal(err)
			}
			if n.fresh && cached != len(live.Items) {
				t.Fatalf("node fresh and complete after the sync with %d items cached, the service holds %d (purged during the listing)", cached, len(live.Items))
			}
			t.Logf("after the sync: fresh %v, %d cached, %d on the service", n.fresh, cached, len(live.Items))
		})
	}
}
