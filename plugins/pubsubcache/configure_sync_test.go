package pubsubcache

import (
	"testing"

	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
)

// TestLowerMaxItemsDuringSync: the profile lowering the node's max_items
// while a listing holds a page the service answered before (its parse
// hangs; Prosody drops the extra items at once) does not leave the node
// complete and fresh with items the service dropped: the listing ends not
// fresh and the node is listed again.
func TestLowerMaxItemsDuringSync(t *testing.T) {
	f := newFixture(t, servers.Use(t, testsvc.KindProsody), fixtureOpts{}, "alice")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 5)
	k := nodeKey{"alice", svc, node}

	j, release := f.syncHeld(t, k)
	if err := f.c.ConfigureNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node, Options: map[string][]string{"pubsub#max_items": {"2"}}}); err != nil {
		t.Fatal(err)
	}
	live, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
	if err != nil {
		t.Fatal(err)
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
	t.Logf("after the sync: fresh %v, %d cached, %d on the service", n.fresh, cached, len(live.Items))
	if n.fresh && cached != len(live.Items) {
		t.Fatalf("node fresh and complete after the sync with %d items cached, the service holds %d (max_items lowered during the listing)", cached, len(live.Items))
	}
}
