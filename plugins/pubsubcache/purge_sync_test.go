package pubsubcache

import (
	"context"
	"sync"
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
			// The listing's page is fetched: its parse hangs.
			j, release := f.syncHeld(t, k)
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

// syncHeld starts a manual sync of k and returns once its first page's
// parse hangs (the page fetched, not stored yet); release lets it go on
// (at most once; also when the test ends).
func (f *fixture) syncHeld(t *testing.T, k nodeKey) (j *SyncJob, release func()) {
	t.Helper()
	hang := make(chan struct{})
	f.provider.hang.Store(&hang)
	var once sync.Once
	release = func() {
		once.Do(func() {
			f.provider.hang.Store(nil)
			close(hang)
		})
	}
	t.Cleanup(release)
	j = f.cache.sync.launch(k, true)
	for deadline := time.Now().Add(time.Minute); f.provider.hung.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the page's parse never started")
		}
	}
	return j, release
}
