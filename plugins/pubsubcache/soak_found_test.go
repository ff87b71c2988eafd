package pubsubcache

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// Divergences the life soak (soak_test.go) found, as small deterministic
// tests (each failed before its fix).

// holdWriter keeps the cache's writer busy (as behind a sync's page or a
// burst) until release is called, or the test ends.
func holdWriter(t *testing.T, f *lifeFixture) (release func()) {
	t.Helper()
	started, held := make(chan struct{}), make(chan struct{})
	go f.cache.w.run(context.Background(), func(ctx context.Context, _ *wtx) error {
		close(started)
		<-held
		return nil
	})
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	t.Cleanup(release)
	return release
}

// TestPurgeQueuedServed: a purge notification alice received waits in the
// writer (behind a busy write): a read meanwhile is not answered from the
// cache (it was, with the purged items, fresh: the writer counted the
// queued item writes of a node, not a purge, a deletion or a
// configuration), as for a retraction. Both servers notify purges of a
// node with pubsub#notify_retract set.
func TestPurgeQueuedServed(t *testing.T) {
	for _, kind := range kinds {
		for _, change := range []string{"retract", "purge"} {
			t.Run(kind+"/"+change, func(t *testing.T) {
				f := newLifeFixture(t, kind, fixtureOpts{})
				ctx := ctxT(t)
				svc, node := f.cachedBobNode(t, placements(kind)[0], map[string][]string{"pubsub#max_items": {"10"}, "pubsub#notify_retract": {"1"}}, 3)
				// Handed to the cache: this observer runs after the cache's
				// (lower priority).
				handed := make(chan struct{}, 4)
				h, err := f.host.Bus.Attach("handed", triggers.Observe(xep0060.EventPurge, triggers.PriorityDefault-1, func(ctx context.Context, ev *xep0060.NodeEvent) error {
					if ev.Profile == "alice" && ev.Node == node {
						handed <- struct{}{}
					}
					return nil
				}), triggers.Observe(xep0060.EventItems, triggers.PriorityDefault-1, func(ctx context.Context, ev *xep0060.ItemsEvent) error {
					if ev.Profile == "alice" && ev.Node == node && len(ev.Retracted) > 0 {
						handed <- struct{}{}
					}
					return nil
				}))
				if err != nil {
					t.Fatal(err)
				}
				defer h.Remove()
				// The writer busy with another write (a sync's page, a burst).
				release := holdWriter(t, f)
				// bob's own change passes through the (blocked) writer too:
				// the service has it done before its answer comes back.
				go func() {
					if change == "purge" {
						err = f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: "bob", Service: svc, Node: node})
					} else {
						err = f.c.Retract(ctx, xep0060.RetractRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(0), Notify: true})
					}
					if err != nil {
						t.Error(err)
					}
				}()
				select {
				case <-handed:
				case <-time.After(10 * time.Second):
					t.Fatalf("alice was not notified of the %s", change)
				}
				live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
				page, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
				release()
				if page.FromCache && idsOf(page.Items) != idsOf(live.Items) {
					t.Errorf("%s: after the %s was received, while it waits in the writer: served from the cache %s (stale %v), the service holds %q",
						kind, change, idsOf(page.Items), page.Stale, idsOf(live.Items))
				}
				f.waitServed(t, "alice", svc, node)
			})
		}
	}
}

// TestSyncListingPastCapacity: alice syncs bob's full PEP node on Prosody
// (capacity 10, which she cannot read) again, and bob publishes a new
// item between the listing's answer and its storing: the service dropped
// its oldest item, which the cache kept, serving 11 items, fresh, for
// good (the soak: SOAK_SEED=111, prosody, step 22); the node is now
// checked before it is served.
func TestSyncListingPastCapacity(t *testing.T) {
	hs := &iqSessions{}
	srv := servers.Use(t, testsvc.KindProsody)
	f := watchLife(t, newFixture(t, srv, fixtureOpts{sessions: hs.wrap}, "alice", "bob"))
	ctx := ctxT(t)
	svc, node := f.cachedBobNode(t, placement{name: "pep"}, map[string][]string{"pubsub#max_items": {"10"}}, 10)
	hook := func() {
		if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(10), Payload: lifePayload(10)}); err != nil {
			t.Error(err)
			return
		}
		f.waitNotified(t, node, itemID(10))
	}
	// Once alice's next items request got its answer, before the cache
	// sees it.
	var ran atomic.Bool
	hs.set(func(ctx context.Context, x core.XMPP, profile, to, typ, payloadXML string) (*stanza.IQ, error) {
		res, err := x.SendIQRaw(ctx, to, typ, payloadXML)
		if profile == "alice" && typ == "get" && strings.Contains(payloadXML, "<items") && ran.CompareAndSwap(false, true) {
			hook()
		}
		return res, err
	})
	j, err := f.cache.Sync(ctx, "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	f.waitServed(t, "alice", svc, node)
	live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
	deadline := time.Now().Add(5 * time.Second)
	for {
		page, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
		if !page.FromCache || idsOf(page.Items) == idsOf(live.Items) {
			break
		}
		if time.Now().After(deadline) {
			st, _ := f.cache.Status(ctx, "alice", svc, node)
			t.Fatalf("5 s after the sync: served from the cache %s (stale %v), the service holds %s; status %+v", idsOf(page.Items), page.Stale, idsOf(live.Items), st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPresenceDeliveryTeachesNothing: while alice is offline, bob updates
// an older item of an ejabberd component node and retracts the newest;
// when she connects again, ejabberd sends her the node's last published
// item (the updated one, not re-published: no delay, as at any presence).
// The node was not fresh, its order not the service's: nothing is learned
// from it (the cache learned "re-published items move to the end", the
// updated item being now the newest the service holds, and served later
// re-publishes out of place: SOAK_SEED=401).
func TestPresenceDeliveryTeachesNothing(t *testing.T) {
	f := newLifeFixture(t, testsvc.KindEjabberd, fixtureOpts{})
	ctx := ctxT(t)
	svc, node := f.cachedBobNode(t, placement{name: "component", component: true}, map[string][]string{"pubsub#max_items": {"10"}}, 3)
	n, _ := f.cache.nodes.get(nodeKey{"alice", svc, node})
	delivered := make(chan struct{}, 1)
	h, err := f.host.Bus.Attach("delivered", triggers.Observe(xep0060.EventItems, triggers.PriorityDefault-1, func(ctx context.Context, ev *xep0060.ItemsEvent) error {
		if ev.Profile == "alice" && ev.Node == node && len(ev.Items) == 1 && ev.Items[0].ID == itemID(1) {
			select {
			case delivered <- struct{}{}:
			default:
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Remove()
	f.offline(t, svc, node, func() {
		if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(1), Payload: lifePayload(101)}); err != nil {
			t.Fatal(err)
		}
		if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(2)}); err != nil {
			t.Fatal(err)
		}
	})
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("ejabberd sent no last published item at the connection")
	}
	f.converged(t, "after the reconnection", svc, node)
	if moves := f.cache.learn.get(ctx, n.profileID, svc).RepublishMoves; moves == serviceprofile.RepublishMovesYes {
		t.Fatalf("learned that ejabberd moves re-published items to the end")
	}
}

// TestRecreatedWhileOffline: while alice is offline, bob deletes a node
// she caches and creates it again under the same name, with one item.
// Nothing tells her (the deletion's notification went to a session that
// was gone) and her subscription went with the old node. When she
// connects again the reconciliation finds her subscription gone and
// subscribes again: bob's next item is notified, and served (the cache
// waited for notifications that never came, and served the node without
// bob's later items: the soak's "deleted and created again" during a cut).
func TestRecreatedWhileOffline(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newLifeFixture(t, kind, fixtureOpts{})
			ctx := ctxT(t)
			svc, node := f.cachedBobNode(t, placement{name: "pep"}, map[string][]string{"pubsub#max_items": {"10"}}, 3)
			oneSubscription := func(what string) {
				t.Helper()
				// Subscribing again leaves one subscription (no second one
				// whose notifications would come twice).
				subs, err := f.c.Subscriptions(ctx, "alice", svc, node)
				if err != nil {
					t.Fatal(err)
				}
				if len(subs) != 1 {
					t.Fatalf("%s: alice's subscriptions to the node: %+v, want one", what, subs)
				}
			}
			f.offline(t, svc, node, func() {})
			f.converged(t, "after a reconnection, nothing changed", svc, node)
			oneSubscription("after a reconnection, nothing changed")
			f.offline(t, svc, node, func() {
				req := xep0060.NodeRequest{Profile: "bob", Service: svc, Node: node}
				if err := f.c.DeleteNode(ctx, req); err != nil {
					t.Fatal(err)
				}
				req.Options = map[string][]string{"pubsub#access_model": {"open"}, "pubsub#max_items": {"10"}}
				if err := f.c.CreateNode(ctx, req); err != nil {
					t.Fatal(err)
				}
				if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(5), Payload: lifePayload(5)}); err != nil {
					t.Fatal(err)
				}
			})
			f.converged(t, "after the reconnection", svc, node)
			f.post(t, svc, node, 6, 7, 0)
			st := f.converged(t, "after bob's next item", svc, node)
			if st.Items != 2 {
				t.Fatalf("served %d items, want bob's 2 on the new node", st.Items)
			}
			oneSubscription("after the node was created again")
		})
	}
}

// TestRepublishLessonOvertaken: on Prosody, where the cache does not know
// yet where re-published items go, bob re-publishes the oldest item of
// alice's cached node, then, before the cache's probe of the service's
// newest item is sent, the newest one again (its notification reaches
// alice before the probe's answer, maybe not handled yet when the answer
// is). The service's newest is then the item that was the
// newest before, which on its own says "re-published items keep their
// place": nothing is learned from it (Prosody was learned as keeping the
// place, and later re-publishes were served out of place: SOAK_SEED=15
// SOAK_STEPS=30); the node is listed again and served as the service has
// it.
func TestRepublishLessonOvertaken(t *testing.T) {
	hs := &iqSessions{}
	srv := servers.Use(t, testsvc.KindProsody)
	f := watchLife(t, newFixture(t, srv, fixtureOpts{sessions: hs.wrap}, "alice", "bob"))
	ctx := ctxT(t)
	svc, node := f.cachedBobNode(t, placement{name: "pep"}, map[string][]string{"pubsub#max_items": {"10"}}, 3)
	n, _ := f.cache.nodes.get(nodeKey{"alice", svc, node})
	republish := func(i int, wait bool) {
		f.mu.Lock()
		before := len(f.forms[node][itemID(i)])
		f.mu.Unlock()
		if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(i), Payload: lifePayload(i)}); err != nil {
			t.Error(err)
			return
		}
		for deadline := time.Now().Add(10 * time.Second); wait; time.Sleep(5 * time.Millisecond) {
			f.mu.Lock()
			now := len(f.forms[node][itemID(i)])
			f.mu.Unlock()
			if now > before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("alice was not notified of %s again", itemID(i))
				return
			}
		}
	}
	var probed atomic.Bool
	hs.set(func(ctx context.Context, x core.XMPP, profile, to, typ, payloadXML string) (*stanza.IQ, error) {
		if profile == "alice" && typ == "get" && strings.Contains(payloadXML, "max_items='1'") && probed.CompareAndSwap(false, true) {
			// Not waiting for alice's notification: the service sends it
			// before its answer to the probe, which the cache waits for
			// to be handled (xep0060.Client.Settled).
			republish(2, false)
		}
		return x.SendIQRaw(ctx, to, typ, payloadXML)
	})
	republish(0, true)
	f.converged(t, "after the re-publishes", svc, node)
	if !probed.Load() {
		t.Fatal("the cache did not ask for the service's newest item")
	}
	if moves := f.cache.learn.get(ctx, n.profileID, svc).RepublishMoves; moves == serviceprofile.RepublishMovesNo {
		t.Fatal("learned that Prosody keeps re-published items in their place")
	}
}

// TestDropAndRetractInOneBatch: bob's full PEP node on Prosody (capacity
// 4, which alice cannot read) gets a new item, the service dropping its
// oldest without telling, and bob retracts another; both notifications
// reach alice's cache while its writer is busy, and are stored in one
// transaction. The node's count is then what it was, yet the service
// holds one item less: the node is checked before it is served (it was
// served with the dropped item, fresh: SOAK_SEED=36 SOAK_STEPS=30).
func TestDropAndRetractInOneBatch(t *testing.T) {
	f := newLifeFixture(t, testsvc.KindProsody, fixtureOpts{})
	ctx := ctxT(t)
	svc, node := f.cachedBobNode(t, placement{name: "pep"}, map[string][]string{"pubsub#max_items": {"4"}, "pubsub#notify_retract": {"1"}}, 4)
	// Handed to the cache: this observer runs after the cache's.
	handed := make(chan bool, 8) // true: the retraction
	h, err := f.host.Bus.Attach("handed", triggers.Observe(xep0060.EventItems, triggers.PriorityDefault-1, func(ctx context.Context, ev *xep0060.ItemsEvent) error {
		if ev.Profile == "alice" && ev.Node == node {
			handed <- len(ev.Retracted) > 0
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Remove()
	release := holdWriter(t, f)
	if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(4), Payload: lifePayload(4)}); err != nil {
		t.Fatal(err)
	}
	// bob's retraction passes through the (blocked) writer too: the
	// service has it done before its answer comes back.
	retractDone := make(chan error, 1)
	go func() {
		retractDone <- f.c.Retract(ctx, xep0060.RetractRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(3), Notify: true})
	}()
	for items, retracted := false, false; !items || !retracted; {
		select {
		case r := <-handed:
			if r {
				retracted = true
			} else {
				items = true
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("alice was not notified (item %v, retraction %v)", items, retracted)
		}
	}
	release()
	if err := <-retractDone; err != nil {
		t.Fatal(err)
	}
	f.converged(t, "after the batch", svc, node)
}
