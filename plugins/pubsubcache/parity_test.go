package pubsubcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"example.org/backend/plugins/xep0060"
)

// randomShapes returns n random no-RSM requests: no arguments, max_items
// 1–400, item-id sets in random order (some unknown ids).
func randomShapes(r *rand.Rand, n, size int) []xep0060.ItemsRequest {
	out := make([]xep0060.ItemsRequest, 0, n)
	for len(out) < n {
		switch r.IntN(3) {
		case 0:
			out = append(out, xep0060.ItemsRequest{})
		case 1:
			out = append(out, xep0060.ItemsRequest{MaxItems: 1 + r.IntN(400)})
		default:
			k := 1 + r.IntN(12)
			ids := make([]string, 0, k)
			for range k {
				if r.IntN(6) == 0 {
					ids = append(ids, fmt.Sprintf("unknown-%d", r.IntN(1000)))
				} else {
					ids = append(ids, itemID(r.IntN(size+20)))
				}
			}
			out = append(out, xep0060.ItemsRequest{ItemIDs: ids})
		}
	}
	return out
}

// parity asserts that each shape is answered from the cache (no items
// request sent) with the items the service gives (one request sent).
func (f *fixture) parity(t *testing.T, what, svc, node string, shapes []xep0060.ItemsRequest) {
	t.Helper()
	failed := 0
	for _, s := range shapes {
		s.Profile, s.Service, s.Node = "alice", svc, node
		cached, sentC := f.cachedCounted(t, s)
		s.NoCache = true
		live, sentL := f.liveCounted(t, s)
		bad := ""
		switch {
		case sentC != 0 || !cached.FromCache:
			bad = fmt.Sprintf("not from the cache (sent %d)", sentC)
		case sentL != 1 || live.FromCache:
			bad = fmt.Sprintf("live request: sent %d from_cache=%v", sentL, live.FromCache)
		case rsmString(cached.RSM) != rsmString(live.RSM):
			// ejabberd answers max_items with a <set/>: count and index too.
			bad = fmt.Sprintf("set: cache %s, live %s", rsmString(cached.RSM), rsmString(live.RSM))
		default:
			bad = sameItems(cached.Items, live.Items)
		}
		if bad != "" {
			failed++
			if failed <= 5 {
				t.Errorf("%s: max_items=%d ids=%v: %s", what, s.MaxItems, s.ItemIDs, bad)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%s: %d of %d shapes differ", what, failed, len(shapes))
	}
}

// TestParity is the parity suite of DESIGN §6 for the no-RSM shapes, on
// both servers: a node of 320 items with prefixes, CDATA, entities and
// mixed content; 150 random shapes answered from the cache equal to the
// live answer; again after publish, update, retract and purge while
// connected.
func TestParity(t *testing.T) {
	const size = 320
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{pageSize: 100}, "alice")
			ctx := ctxT(t)
			r := rand.New(rand.NewPCG(1, uint64(len(kind))))
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publishParallel(t, "alice", svc, node, 0, size, 1)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "synced", svc, node, randomShapes(r, 150, size))

			f.publish(t, "alice", svc, node, size, size+5)
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after publish", svc, node, randomShapes(r, 40, size+5))

			for _, i := range []int{7, 100} {
				if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(i), Payload: payload(1000 + i)}); err != nil {
					t.Fatal(err)
				}
			}
			f.waitState(t, "alice", svc, node, true, StateComplete)
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after update", svc, node, randomShapes(r, 40, size+5))
			pid, _ := f.cache.store.profileID(ctx, "alice")
			beh := f.cache.learn.get(ctx, pid, svc)
			t.Logf("behaviour of %s: %+v", kind, beh)
			// DESIGN §6: a re-published item becomes newest on Prosody and
			// keeps its place on ejabberd; learned by observation.
			if want := map[string]string{"prosody": "yes", "ejabberd": "no"}[kind]; string(beh.RepublishMoves) != want {
				t.Errorf("republish_moves learned = %s, want %s", beh.RepublishMoves, want)
			}
			// Known now: the next update is placed without a sync.
			if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(50), Payload: payload(1050)}); err != nil {
				t.Fatal(err)
			}
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after a second update", svc, node, randomShapes(r, 30, size+5))

			for _, i := range []int{3, 200, size + 1} {
				if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: "alice", Service: svc, Node: node, ID: itemID(i), Notify: true}); err != nil {
					t.Fatal(err)
				}
			}
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after retract", svc, node, randomShapes(r, 40, size+5))

			if err := f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after purge", svc, node, randomShapes(r, 10, size+5))
			f.publish(t, "alice", svc, node, 0, 3)
			f.waitServed(t, "alice", svc, node)
			f.parity(t, "after purge and publish", svc, node, randomShapes(r, 20, 5))
		})
	}
}

// publishParallel publishes items from..to with workers publishers.
func (f *fixture) publishParallel(t testing.TB, profile, service, node string, from, to, workers int) {
	t.Helper()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: profile, Service: service, Node: node, ID: itemID(i), Payload: payload(i)}); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// TestBurst: 5 000 notifications, as fast as the server sends them, all end
// up cached (no write lost).
func TestBurst(t *testing.T) {
	const n = 5000
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{}, "alice")
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			f.publish(t, "alice", svc, node, 0, 1)
			mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			f.waitState(t, "alice", svc, node, true, StateComplete)
			start := time.Now()
			f.publishParallel(t, "alice", svc, node, 1, n, 16)
			published := time.Since(start)
			deadline := time.Now().Add(3 * time.Minute)
			var st []NodeStatus
			for time.Now().Before(deadline) {
				var err error
				if st, err = f.cache.Status(context.Background(), "alice", svc, node); err != nil {
					t.Fatal(err)
				}
				if len(st) == 1 && st[0].Items == n {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(st) != 1 || st[0].Items != n {
				t.Fatalf("cached items after the burst: %+v, want %d", st, n)
			}
			t.Logf("%s: %d items published in %v, all cached after %v", kind, n, published, time.Since(start))
			f.waitServed(t, "alice", svc, node)
			cached, sent := f.cachedCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
			live, _ := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node, NoCache: true})
			if sent != 0 || len(cached.Items) != n {
				t.Errorf("whole node from the cache: sent=%d items=%d", sent, len(cached.Items))
			}
			if d := sameItems(cached.Items, live.Items); d != "" {
				t.Errorf("after the burst: %s", d)
			}
		})
	}
}
