package pubsubcache

import (
	"context"
	"testing"
	"time"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// TestSyncWaitMeansUsable: once a sync's job is done (what `cache sync
// --wait` waits for), the node is complete, fresh and parsed, and no other
// sync follows: the server re-sending the last item on subscription (or on
// +notify for a PEP node) starts no second listing.
func TestSyncWaitMeansUsable(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), fixtureOpts{}, "alice")
			ctx := ctxT(t)
			events := f.host.Events.Subscribe("alice")
			defer events.Close()
			for round := range 3 {
				svc, node := f.nodeOn(t, "alice", syncPrefix)
				f.publish(t, "alice", svc, node, 0, 5)
				j, err := f.cache.Sync(ctx, "alice", svc, node)
				if err != nil {
					t.Fatal(err)
				}
				<-j.Done()
				// The job's own events are in the buffer by now.
			own:
				for {
					select {
					case <-events.C:
					default:
						break own
					}
				}
				pr := j.Progress()
				if j.Err() != nil || !pr.Done || pr.State != StateComplete || !pr.Fresh || pr.Items != 5 || pr.Total != 5 || pr.ParsePending != 0 {
					t.Fatalf("round %d: sync ended with %+v %v", round, pr, j.Err())
				}
				st, err := f.cache.Status(ctx, "alice", svc, node)
				if err != nil || len(st) != 1 || st[0].State != string(StateComplete) || !st[0].Fresh || st[0].Items != 5 || st[0].ParsePending != 0 {
					t.Fatalf("round %d: status right after the sync: %+v %v", round, st, err)
				}
				parsed, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStateOk), pubsubitem.HasNodeWith()).Count(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if want := 5 * (round + 1); parsed != want {
					t.Errorf("round %d: %d items parsed, want %d", round, parsed, want)
				}
				// Nothing follows: no second sync (its events), no items
				// request, for a while after the job ended.
				before := f.requests.Load()
				quiet := time.After(2 * time.Second)
			drain:
				for {
					select {
					case ev := <-events.C:
						if m := ev.GetCacheSync(); m.GetNode() == node && !m.GetDone() && m.GetState() == string(StateInProgress) && m.GetItems() == 0 {
							t.Errorf("round %d: another sync of %s started after the job ended: %+v", round, node, m)
						}
					case <-quiet:
						break drain
					}
				}
				if n := f.requests.Load() - before; n != 0 {
					t.Errorf("round %d: %d items requests after the sync ended", round, n)
				}
				if st, _ := f.cache.Status(ctx, "alice", svc, node); len(st) != 1 || st[0].State != string(StateComplete) || !st[0].Fresh {
					t.Errorf("round %d: status 2 s later: %+v", round, st)
				}
			}
		})
	}
}

// TestSearchNeverHalfWritten: a filter on a parsed path never matches an
// item without parsed data, positive or negated; the answer says how many
// items were left out and which searched nodes are not complete.
func TestSearchNeverHalfWritten(t *testing.T) {
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{params: map[string]string{KeyItemLimit: "6"}}, "alice")
	ctx := ctxT(t)
	f.host.Analysers.Down("testplugin")
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 4)
	j, err := f.cache.Sync(ctx, "alice", svc, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	if pr := j.Progress(); pr.State != StateComplete || pr.ParsePending != 4 {
		t.Fatalf("sync with the parser down: %+v", pr)
	}
	// A second node over cache.item_limit: partial.
	_, big := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, big, 0, 8)
	j, err = f.cache.Sync(ctx, "alice", svc, big)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	st, _ := f.cache.Status(ctx, "alice", svc, big)
	if len(st) != 1 || st[0].State != string(StatePartial) {
		t.Fatalf("partial node right after its sync: %+v", st)
	}
	// 4 items and the partial node's: its 6 oldest, and the newest when
	// its notification (the server re-sends it on subscription) came
	// during the listing.
	cached := 4 + st[0].Items
	mustFilter := func(s string) search.Filter {
		flt, err := search.ParseFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		return flt
	}
	filters := []string{`id != "nope"`, `id not_in ["nope"]`, `id disjoint ["nope"]`, `id not_like nope%`, `size > 0`, `id like it-%`}
	check := func(what string, wantRows, wantSkipped int) {
		t.Helper()
		for _, flt := range filters {
			res, err := f.cache.Searcher().Search(ctx, search.Query{Profiles: []string{"alice"}, Nodes: []string{node, big}, Filters: []search.Filter{mustFilter(flt)}})
			if err != nil {
				t.Fatalf("%s: %s: %v", what, flt, err)
			}
			if len(res.Rows) != wantRows || res.SkippedUnparsed != wantSkipped {
				t.Errorf("%s: %s: %d rows, %d skipped; want %d, %d", what, flt, len(res.Rows), res.SkippedUnparsed, wantRows, wantSkipped)
			}
			if len(res.IncompleteNodes) != 1 || res.IncompleteNodes[0].Node != big || res.IncompleteNodes[0].State != string(StatePartial) {
				t.Errorf("%s: incomplete nodes %+v, want %s partial", what, res.IncompleteNodes, big)
			}
		}
		// Without a filter on a parsed path nothing is left out.
		res, err := f.cache.Searcher().Search(ctx, search.Query{Nodes: []string{node, big}})
		if err != nil || len(res.Rows) != cached || res.SkippedUnparsed != 0 {
			t.Errorf("%s: no filter: %d rows, %d skipped, %v", what, len(res.Rows), res.SkippedUnparsed, err)
		}
	}
	check("parser down", 0, cached)
	// The parser is back: every item is parsed, and found.
	f.host.Analysers.Up("testplugin", f.provider)
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := f.cache.Status(ctx, "alice", svc, "")
		if err != nil {
			t.Fatal(err)
		}
		pending := 0
		for _, s := range st {
			pending += s.ParsePending
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("items still pending: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("parser back", cached, 0)
}

// TestHungParserDoesNotStallNotifications: while a parser hangs on a batch,
// notifications of another node are still stored (parsing is not done in
// the writer).
func TestHungParserDoesNotStallNotifications(t *testing.T) {
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{}, "alice")
	ctx := ctxT(t)
	parsedSvc, parsedNode := f.nodeOn(t, "alice", syncPrefix)
	plainSvc, plainNode := f.nodeOn(t, "alice", plainPrefix)
	f.publish(t, "alice", parsedSvc, parsedNode, 100, 101)
	for _, n := range []string{parsedNode, plainNode} {
		j, err := f.cache.Sync(ctx, "alice", parsedSvc, n)
		if err != nil {
			t.Fatal(err)
		}
		<-j.Done()
	}
	f.waitState(t, "alice", plainSvc, plainNode, true, StateComplete)
	hang := make(chan struct{})
	f.provider.hang.Store(&hang)
	defer close(hang)
	// When the plain node's notification reaches the bus.
	arrived := make(chan time.Time, 16)
	handle, err := f.host.Bus.Attach("test", triggers.Observe(xep0060.EventItems, triggers.PriorityDefault+1, func(ctx context.Context, ev *xep0060.ItemsEvent) error {
		if ev.Node == plainNode {
			arrived <- time.Now()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer handle.Remove()
	f.publish(t, "alice", parsedSvc, parsedNode, 0, 1)
	deadline := time.Now().Add(time.Minute)
	for f.provider.hung.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the parser was never called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.publish(t, "alice", plainSvc, plainNode, 10, 11)
	at := <-arrived
	for {
		page, err := f.cache.Get(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: plainSvc, Node: plainNode})
		if err != nil {
			t.Fatal(err)
		}
		if idsOf(page.Items) == itemID(10) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the notification of the other node was never stored")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(at)
	t.Logf("notification stored %v after it reached the bus, while the parser hangs", took)
	if took > time.Second {
		t.Errorf("notification stored %v after it arrived (want within a second)", took)
	}
	if f.provider.hung.Load() == 0 {
		t.Fatal("the parser no longer hangs")
	}
	// The item of the parsed node is stored raw meanwhile (parse pending).
	page, err := f.cache.Get(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: parsedSvc, Node: parsedNode})
	if err != nil || idsOf(page.Items) != itemID(100)+","+itemID(0) {
		t.Errorf("parsed node: %v %v", page, err)
	}
}
