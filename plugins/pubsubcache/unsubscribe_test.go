package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// TestOwnUnsubscribe: once the profile unsubscribed from a node of a
// pubsub service (notifications stop), the node is not answered from the
// cache as fresh: an item another publishes afterwards is not missing from
// the answers.
func TestOwnUnsubscribe(t *testing.T) {
	f := newFixture(t, servers.Use(t, testsvc.KindEjabberd), fixtureOpts{}, "alice", "bob")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 3)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)

	if err := f.c.Unsubscribe(ctx, "alice", svc, node, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: "by-bob", Payload: payload(9)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a notification, were one sent, is stored by then
	req := &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}
	page, err := f.c.Items(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !page.FromCache {
		return
	}
	if !containsID(page.Items, "by-bob") {
		t.Fatalf("answered from the cache without the item published after the profile unsubscribed: %s (%s)", idsOf(page.Items), f.cache.explain(req))
	}
}

func containsID(items []wire.Item, id string) bool {
	for _, it := range items {
		if it.ID == id {
			return true
		}
	}
	return false
}

// TestOwnUnsubscribeDuringSync: the profile unsubscribing while the node
// is being listed (the listing subscribed it first): the listing does not
// end with the node fresh, answered from the cache without what others
// publish afterwards (no notification comes).
func TestOwnUnsubscribeDuringSync(t *testing.T) {
	f := newFixture(t, servers.Use(t, testsvc.KindEjabberd), fixtureOpts{}, "alice", "bob")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 3)
	k := nodeKey{"alice", svc, node}
	j, release := f.syncHeld(t, k)
	if err := f.c.Unsubscribe(ctx, "alice", svc, node, ""); err != nil {
		t.Fatal(err)
	}
	release()
	<-j.Done()
	if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: "by-bob", Payload: payload(9)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	req := &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}
	page, err := f.c.Items(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if page.FromCache && !containsID(page.Items, "by-bob") {
		t.Fatalf("answered from the cache without the item published after the profile unsubscribed during the sync: %s (%s)", idsOf(page.Items), f.cache.explain(req))
	}
}
