package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
)

// TestRetractionsNotNotified: ejabberd's PEP nodes have
// pubsub#notify_retract 0 by default, and alice cannot read the
// configuration of bob's: his retractions (without the notify attribute)
// and purges are notified to no one. The cache reads the service's
// default configuration and checks every read against the node's id
// listing: it never answers with what bob removed (it did, fresh, for
// good). On ejabberd's pubsub component alice owns the node (its
// configuration, notify_retract 0, is read) and bob publishes.
func TestRetractionsNotNotified(t *testing.T) {
	for _, pl := range placements(testsvc.KindEjabberd) {
		t.Run(pl.name, func(t *testing.T) {
			f := newLifeFixture(t, testsvc.KindEjabberd, fixtureOpts{})
			ctx := ctxT(t)
			var svc, node string
			if pl.component {
				svc, node = f.srv.PubSub, uniq(syncPrefix)
				if err := f.c.CreateNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node, Options: map[string][]string{
					"pubsub#access_model": {"open"}, "pubsub#publish_model": {"open"}, "pubsub#notify_retract": {"0"}, "pubsub#max_items": {"10"}}}); err != nil {
					t.Fatal(err)
				}
			} else {
				svc, node = f.bobNode(t, pl, syncPrefix, map[string][]string{"pubsub#max_items": {"10"}})
			}
			f.post(t, svc, node, 0, 4, 0)
			j, err := f.cache.Sync(ctx, "alice", svc, node)
			if err != nil {
				t.Fatal(err)
			}
			<-j.Done()
			if n, _ := f.cache.nodes.get(nodeKey{"alice", svc, node}); n.followed() {
				t.Fatalf("retractions taken as notified: %+v", n)
			}
			f.converged(t, "synced", svc, node)
			same := func(what string, want int) {
				t.Helper()
				live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
				if len(live.Items) != want {
					t.Fatalf("%s: the service holds %s", what, idsOf(live.Items))
				}
				for _, shape := range []xep0060.ItemsRequest{{}, {MaxItems: 2}} {
					shape.Profile, shape.Service, shape.Node = "alice", svc, node
					page, _ := f.counted(t, shape)
					live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, MaxItems: shape.MaxItems, NoCache: true})
					if idsOf(page.Items) != idsOf(live.Items) {
						st, _ := f.cache.Status(ctx, "alice", svc, node)
						t.Fatalf("%s: answered %s (from the cache %v), the service holds %s; %+v", what, idsOf(page.Items), page.FromCache, idsOf(live.Items), st)
					}
				}
			}
			// Bob's retraction: notified to no one.
			if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(1)}); err != nil {
				t.Fatal(err)
			}
			same("after a retraction", 3)
			f.converged(t, "reconciled after the retraction", svc, node)
			same("served again after the retraction", 3)
			// A purge (ejabberd lets only owners purge: alice purges the
			// component's node from another client, bob his PEP node).
			purger := "bob"
			if pl.component {
				purger = "alice-other"
				if err := purgeElsewhere(t, f, svc, node); err != nil {
					t.Fatal(err)
				}
			} else if err := f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: purger, Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			same("after a purge by "+purger, 0)
			f.post(t, svc, node, 10, 12, 0)
			deadline := time.Now().Add(30 * time.Second)
			for {
				page, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
				if page.FromCache {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("never served again after the purge")
				}
				time.Sleep(50 * time.Millisecond)
			}
			same("served after the purge and two publishes", 2)
		})
	}
}

// purgeElsewhere purges alice's node from another client of hers (the
// daemon's session is told nothing: no own operation, no notification).
func purgeElsewhere(t *testing.T, f *lifeFixture, svc, node string) error {
	ctx := ctxT(t)
	rc, err := f.srv.RawLogin(ctx, "alice", "alice-pw", "elsewhere")
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = rc.IQ(ctx, "set", svc, "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='"+node+"'/></pubsub>")
	return err
}
