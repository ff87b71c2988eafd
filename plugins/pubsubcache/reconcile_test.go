package pubsubcache

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/core/profiles"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// writer connects a second profile on alice's account (another resource)
// that changes alice's nodes while her profile is disconnected.
func (f *fixture) writer(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	params := map[string]string{profiles.KeyHost: f.srv.Host, profiles.KeyPort: strconv.Itoa(f.srv.Port), profiles.KeyCAFile: f.srv.CAFile,
		profiles.KeyResource: "writer", KeyEnabled: "false"}
	if _, err := f.ps.Create(ctx, profiles.CreateRequest{Name: "writer", JID: f.jid("alice"), Password: "alice-pw", Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Connect(ctx, "writer"); err != nil {
		t.Fatal(err)
	}
	return "writer"
}

// TestReconcileAfterDisconnect: items published, updated and retracted
// while the profile was disconnected; offline reads are stale answers from
// the cache; after reconnection the nodes are reconciled and every answer
// (no-RSM shapes, and RSM ones on ejabberd) equals the live one, served
// from the cache.
func TestReconcileAfterDisconnect(t *testing.T) {
	const size = 60
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{pageSize: 25}, "alice")
			w := f.writer(t)
			ctx := ctxT(t)
			r := rand.New(rand.NewPCG(3, uint64(len(kind))))
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, size)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)

			if err := f.m.Disconnect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			f.publish(t, w, svc, node, size, size+4)
			for _, i := range []int{5, 30} {
				if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: node, ID: itemID(i), Payload: payload(500 + i)}); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range []int{7, size + 1} {
				if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: w, Service: svc, Node: node, ID: itemID(i), Notify: true}); err != nil {
					t.Fatal(err)
				}
			}
			// Offline: the cache answers what it had, saying so.
			page, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if err != nil || !page.FromCache || !page.Stale || len(page.Items) != size {
				t.Fatalf("offline read: %v, %+v", err, page)
			}

			start := time.Now()
			if err := f.m.Connect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			t.Logf("%s: reconciled in %v", kind, time.Since(start))
			f.parity(t, "after changes while disconnected", svc, node, randomShapes(r, 40, size+4))
			if kind != "ejabberd" {
				return
			}
			f.rsmParity(t, svc, node)
		})
	}
}

// rsmParity: RSM answers from the cache equal the live ones (ejabberd
// honours RSM).
func (f *fixture) rsmParity(t *testing.T, svc, node string) {
	t.Helper()
	for _, q := range []wire.RSMQuery{{Max: intp(10)}, {Max: intp(10), Index: intp(20)}, {Max: intp(7), Before: strp("")}, {Max: intp(0)}} {
		req := xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &q}
		live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &q, NoCache: true})
		cached, sent := f.cachedCounted(t, req)
		if sent != 0 || !cached.FromCache || rsmString(cached.RSM) != rsmString(live.RSM) || sameItems(cached.Items, live.Items) != "" {
			t.Errorf("RSM %+v after reconciliation: sent=%d cache %s live %s %s", q, sent, rsmString(cached.RSM), rsmString(live.RSM), sameItems(cached.Items, live.Items))
		}
	}
}

// TestSyncFailureAndRetry: a failed sync leaves the node in error with its
// attempts and last error in the status; gets do not retry it before the
// backoff is due; `cache sync` retries at once.
func TestSyncFailureAndRetry(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{}, "alice")
	ctx := ctxT(t)
	svc, node := f.srv.PubSub, uniq(syncPrefix) // not created yet
	j, err := f.cache.Sync(ctx, "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	if j.Err() == nil {
		t.Fatal("the sync of a missing node succeeded")
	}
	st, err := f.cache.Status(ctx, "alice", svc, node)
	if err != nil || len(st) != 1 || st[0].State != string(StateError) || st[0].Attempts != 1 || st[0].LastError == nil || *st[0].LastError == "" {
		t.Fatalf("status after a failed sync: %+v %v", st, err)
	}
	// A get goes to the network and does not start a sync before the
	// backoff is due.
	if _, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}); err == nil {
		t.Fatal("items of a missing node: no error")
	}
	if j := f.cache.sync.running(nodeKey{"alice", svc, node}); j != nil {
		t.Error("a get retried the sync before its backoff")
	}
	// The node now exists: `cache sync` retries at once.
	if err := f.c.CreateNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node,
		Options: map[string][]string{"pubsub#max_items": {"max"}}}); err != nil {
		t.Fatal(err)
	}
	f.publish(t, "alice", svc, node, 0, 3)
	j, err = f.cache.Sync(ctx, "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	if j.Err() != nil {
		t.Fatalf("retry: %v", j.Err())
	}
	st, err = f.cache.Status(ctx, "alice", svc, node)
	if err != nil || len(st) != 1 || st[0].State != string(StateComplete) || st[0].Attempts != 0 || st[0].LastError != nil || st[0].Items != 3 {
		t.Fatalf("status after the retry: %+v %v", st, err)
	}
}

// TestConfigureMaxItems: lowering a synced node's pubsub#max_items keeps
// the cache equal to the service, before and after the next publish (the
// cache learns the new limit from the profile's configure and the
// configuration notification).
func TestConfigureMaxItems(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{}, "alice")
			ctx := ctxT(t)
			r := rand.New(rand.NewPCG(5, uint64(len(kind))))
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 10)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			if err := f.c.ConfigureNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node,
				Options: map[string][]string{"pubsub#max_items": {"5"}}}); err != nil {
				t.Fatal(err)
			}
			live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
			t.Logf("%s: %d items listed right after max_items=5", kind, len(live.Items))
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after configure", svc, node, randomShapes(r, 20, 12))
			f.publish(t, "alice", svc, node, 10, 12)
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after configure and publish", svc, node, randomShapes(r, 20, 12))
		})
	}
}

// learnRepublish re-publishes a cached item that is not the newest (its
// payload unchanged) until the cache learned where the service puts
// re-published items, then waits for the node to be served again.
func (f *fixture) learnRepublish(t testing.TB, svc, node string, id int) {
	t.Helper()
	ctx := ctxT(t)
	n, ok := f.cache.nodes.get(nodeKey{"alice", svc, node})
	if !ok {
		t.Fatal("node not cached")
	}
	if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(id), Payload: payload(id)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for f.cache.learn.get(ctx, n.profileID, svc).RepublishMoves == serviceprofile.RepublishMovesUnknown {
		if time.Now().After(deadline) {
			t.Fatal("the service's way of placing re-published items was never learned")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
}

// offline disconnects alice, runs change (the writer's changes), connects
// her again and waits until the node is complete and fresh: it returns
// the node's status and how many items requests the reconciliation sent.
func (f *fixture) offline(t *testing.T, svc, node string, change func()) (NodeStatus, int64) {
	t.Helper()
	ctx := ctxT(t)
	if err := f.m.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	change()
	before := f.requests.Load()
	if err := f.m.Connect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	st := f.waitState(t, "alice", svc, node, true, StateComplete)
	return st, f.requests.Load() - before
}

// TestReconcileByDifference: the offline churn (publish, update, retract,
// then purge, by another resource of the account while the profile is
// offline) reconciled by each method a server gets, with parity with the
// live service after each (a failing id listing falls back to the whole
// listing): on Prosody by difference (ids+newest: one id
// listing and one newest page when nothing changed); on ejabberd whole
// (full) under cache.reconcile=exact (updates in place are invisible to
// the difference), and by difference (ids) under cache.reconcile=ids,
// where additions and retractions are what changes. The method of the
// last sync is in `cache status`.
func TestReconcileByDifference(t *testing.T) {
	const size = 60
	for _, tc := range []struct {
		kind, mode, method string
		updates            bool
		// purgeSent: items requests of the reconciliation after the purge
		// (by difference: Prosody none, the id listing being empty;
		// ejabberd the counted newest page, empty).
		purgeSent int64
	}{
		{testsvc.KindProsody, reconcileExact, methodIDsNewest, true, 0},
		{testsvc.KindEjabberd, reconcileExact, methodFull, true, -1},
		{testsvc.KindEjabberd, reconcileIDs, methodIDs, false, 1},
	} {
		t.Run(tc.kind+"/"+tc.mode, func(t *testing.T) {
			fs := &iqSessions{}
			f := newFixture(t, servers.Use(t, tc.kind), fixtureOpts{params: map[string]string{KeyReconcile: tc.mode}, sessions: fs.wrap}, "alice")
			w := f.writer(t)
			ctx := ctxT(t)
			r := rand.New(rand.NewPCG(7, uint64(len(tc.kind+tc.mode))))
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, size)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			f.learnRepublish(t, svc, node, 10)

			// Nothing changed: by difference, one newest page.
			st, sent := f.offline(t, svc, node, func() {})
			if st.Method == nil || *st.Method != tc.method || st.Items != size {
				t.Fatalf("nothing changed: status %+v (method %s), want %s", st, strOrNil(st.Method), tc.method)
			}
			if tc.method != methodFull && sent != 1 {
				t.Errorf("nothing changed: %d items requests, want 1", sent)
			}
			t.Logf("nothing changed: %s, %d items requests", *st.Method, sent)
			f.parity(t, "nothing changed offline", svc, node, randomShapes(r, 10, size))

			st, sent = f.offline(t, svc, node, func() {
				f.publish(t, w, svc, node, size, size+4)
				if tc.updates {
					for _, i := range []int{5, 30, size + 2} {
						if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: node, ID: itemID(i), Payload: payload(500 + i)}); err != nil {
							t.Fatal(err)
						}
					}
					// Re-published unchanged: moved to the end on Prosody.
					if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: node, ID: itemID(20), Payload: payload(20)}); err != nil {
						t.Fatal(err)
					}
				}
				for _, i := range []int{7, size + 1} {
					if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: w, Service: svc, Node: node, ID: itemID(i), Notify: true}); err != nil {
						t.Fatal(err)
					}
				}
			})
			if st.Method == nil || *st.Method != tc.method || st.Items != size+2 {
				t.Fatalf("churn: status %+v (method %s), want %s", st, strOrNil(st.Method), tc.method)
			}
			if tc.method != methodFull && sent != 1 {
				t.Errorf("churn: %d items requests, want 1 (the newest page)", sent)
			}
			t.Logf("churn: %s, %d items requests", *st.Method, sent)
			f.parity(t, "after changes while offline", svc, node, randomShapes(r, 40, size+4))
			if tc.kind == testsvc.KindEjabberd {
				f.rsmParity(t, svc, node)
			}

			// The id listing fails: the whole listing.
			fs.set(failDiscoItems)
			st, _ = f.offline(t, svc, node, func() {
				if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: w, Service: svc, Node: node, ID: itemID(0), Notify: true}); err != nil {
					t.Fatal(err)
				}
			})
			fs.set(nil)
			if st.Method == nil || *st.Method != methodFull || st.Items != size+1 {
				t.Fatalf("id listing failing: status %+v (method %s), want full", st, strOrNil(st.Method))
			}
			f.parity(t, "after the id listing failed", svc, node, randomShapes(r, 10, size+4))

			st, sent = f.offline(t, svc, node, func() {
				if err := f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: w, Service: svc, Node: node}); err != nil {
					t.Fatal(err)
				}
			})
			if st.Method == nil || *st.Method != tc.method || st.Items != 0 {
				t.Fatalf("purge: status %+v (method %s), want %s", st, strOrNil(st.Method), tc.method)
			}
			if tc.purgeSent >= 0 && sent != tc.purgeSent {
				t.Errorf("purge: %d items requests, want %d", sent, tc.purgeSent)
			}
			f.parity(t, "after a purge while offline", svc, node, randomShapes(r, 5, 4))
		})
	}
}

func strOrNil(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// failDiscoItems makes disco#items requests fail (a service refusing the
// id listing).
func failDiscoItems(ctx context.Context, x core.XMPP, profile, to, typ, payloadXML string) (*stanza.IQ, error) {
	if strings.Contains(payloadXML, "disco#items") {
		return nil, errors.New("forbidden (test)")
	}
	return x.SendIQRaw(ctx, to, typ, payloadXML)
}
