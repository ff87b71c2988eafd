package pubsubcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// The lifecycle suite (issue #18): nodes of bob's that alice caches,
// followed from empty through notifications before a sync, past their
// capacity, under steady re-publishing, and through a disconnection and a
// server restart in the middle of a sync. At every step the cached answer
// equals the live one (--no-cache) and, once the node converged, 20
// consecutive reads leave pubsub_items_requests unchanged.

// placement is where bob's node lives.
type placement struct {
	name string
	// service returns the node's service ("" for bob's PEP service).
	component bool
}

// placements on a server: bob's PEP service everywhere, ejabberd's pubsub
// component too (whose nodes announce their trims with retractions).
func placements(kind string) []placement {
	out := []placement{{name: "pep"}}
	if kind == testsvc.KindEjabberd {
		out = append(out, placement{name: "component", component: true})
	}
	return out
}

// lifeFixture is a fixture with alice (the cache's reader) and bob (the
// publisher), recording the wire forms of the items alice is notified of.
type lifeFixture struct {
	*fixture
	mu    sync.Mutex
	forms map[string]map[string][]string // node → item id → payloads seen
	// asked are alice's items requests answered (what went to the
	// service), for failure messages.
	asked []string
}

func newLifeFixture(t *testing.T, kind string, o fixtureOpts) *lifeFixture {
	t.Helper()
	return watchLife(t, newFixture(t, servers.Use(t, kind), o, "alice", "bob"))
}

// watchLife records, on f, what a lifeFixture records: alice's
// notifications' wire forms and her items requests answered.
func watchLife(t testing.TB, f *fixture) *lifeFixture {
	t.Helper()
	lf := &lifeFixture{fixture: f, forms: map[string]map[string][]string{}}
	h, err := lf.host.Bus.Attach("lifecycle-test", triggers.Observe(xep0060.EventItems, triggers.PriorityDefault+1,
		func(ctx context.Context, ev *xep0060.ItemsEvent) error {
			if ev.Profile == "alice" {
				lf.mu.Lock()
				if lf.forms[ev.Node] == nil {
					lf.forms[ev.Node] = map[string][]string{}
				}
				for _, it := range ev.Items {
					lf.forms[ev.Node][it.ID] = append(lf.forms[ev.Node][it.ID], string(it.Payload))
				}
				lf.mu.Unlock()
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Remove)
	h2, err := lf.host.Bus.Attach("lifecycle-test-requests", triggers.Observe(xep0060.ItemsReceived, triggers.PriorityDefault+1,
		func(ctx context.Context, res *xep0060.ItemsResult) error {
			if res != nil && res.Request != nil && res.Request.Profile == "alice" && !res.Page.FromCache {
				r := res.Request
				lf.mu.Lock()
				lf.asked = append(lf.asked, fmt.Sprintf("%s max=%d ids=%v rsm=%v internal=%v", r.Node, r.MaxItems, r.ItemIDs, r.RSM != nil, isInternal(ctx)))
				lf.mu.Unlock()
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h2.Remove)
	return lf
}

// bobNode creates a node of bob's (open to read) with extra configuration.
func (f *lifeFixture) bobNode(t testing.TB, pl placement, prefix string, config map[string][]string) (service, node string) {
	t.Helper()
	node = uniq(prefix)
	cfg := map[string][]string{"pubsub#access_model": {"open"}}
	for k, v := range config {
		cfg[k] = v
	}
	service = f.jid("bob")
	if pl.component {
		service = f.srv.PubSub
	}
	if err := f.c.CreateNode(ctxT(t), xep0060.NodeRequest{Profile: "bob", Service: service, Node: node, Options: cfg}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	return service, node
}

// cachedBobNode creates bob's node (bobNode, syncPrefix) with items
// 0..items-1 and has alice's cache sync it: it returns once the node is
// served from the cache.
func (f *lifeFixture) cachedBobNode(t testing.TB, pl placement, config map[string][]string, items int) (service, node string) {
	t.Helper()
	service, node = f.bobNode(t, pl, syncPrefix, config)
	f.post(t, service, node, 0, items, 0)
	j, err := f.cache.Sync(ctxT(t), "alice", service, node)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	f.waitServed(t, "alice", service, node)
	return service, node
}

// post publishes items from..to of bob's with payload(seed+i); when alice
// follows the node, it returns once she was notified of the last one.
func (f *lifeFixture) post(t testing.TB, service, node string, from, to, seed int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := f.c.Publish(ctxT(t), xep0060.PublishRequest{Profile: "bob", Service: service, Node: node, ID: itemID(i), Payload: lifePayload(seed + i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if n, ok := f.cache.nodes.get(nodeKey{"alice", service, node}); ok && n.cached() && to > from {
		f.waitNotified(t, node, itemID(to-1))
		f.waitCached(t, n.id, itemID(to-1))
	}
}

// waitCached waits until the cache stored item id in node nodeID: this
// test's observer sees a notification before the cache's writer stores
// it, and the checks a notification may start must have begun before a
// test looks for requests.
func (f *lifeFixture) waitCached(t testing.TB, nodeID int, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemID(id)).Exist(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache never stored notified item %s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNotified waits until alice was notified of item id of node.
func (f *lifeFixture) waitNotified(t testing.TB, node, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		f.mu.Lock()
		n := len(f.forms[node][id])
		f.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice was never notified of %s on %s", id, node)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lifePayload is a payload with several attributes and mixed content (where
// servers' serialisations may differ between their two paths).
func lifePayload(i int) []byte {
	return fmt.Appendf(nil, "<entry xmlns='http://www.w3.org/2005/Atom' xml:lang='en' data-n='%d' class='post'><title>post %d</title><content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>a <b>bold</b> &amp; <i>é%d</i></div></content></entry>", i, i, i)
}

// c14n is the Exclusive XML Canonicalization of a payload.
func c14n(payload string) (string, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(payload); err != nil {
		return "", err
	}
	b, err := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(doc.Root())
	return string(b), err
}

// compare returns what differs between the cached and the live items (""
// when nothing): ids, order, publishers, and payload bytes, or, where the
// service serialises an item differently on its two paths, the cached bytes
// are one of the service's own forms (notified, or the live answer's) and
// their canonical forms are equal.
func (f *lifeFixture) compare(node string, cached, live []wire.Item) string {
	if idsOf(cached) != idsOf(live) {
		return fmt.Sprintf("ids %s, live %s", idsOf(cached), idsOf(live))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range cached {
		c, l := cached[i], live[i]
		if c.Publisher != l.Publisher {
			return fmt.Sprintf("item %s: publisher %q, live %q", c.ID, c.Publisher, l.Publisher)
		}
		if string(c.Payload) == string(l.Payload) {
			continue
		}
		if !slices.Contains(f.forms[node][c.ID], string(c.Payload)) {
			return fmt.Sprintf("item %s: cached bytes are no wire form of the service's: %q, live %q", c.ID, c.Payload, l.Payload)
		}
		cc, err1 := c14n(string(c.Payload))
		lc, err2 := c14n(string(l.Payload))
		if err1 != nil || err2 != nil || cc != lc {
			return fmt.Sprintf("item %s: %q and live %q differ in canonical form (%v %v)", c.ID, c.Payload, l.Payload, err1, err2)
		}
	}
	return ""
}

// converged waits until alice's cache serves the node (complete, fresh),
// then checks that its answers equal the live ones for the no-argument
// and max_items shapes and that 20 consecutive reads send no items
// request.
func (f *lifeFixture) converged(t testing.TB, what, service, node string) NodeStatus {
	t.Helper()
	st := f.waitState(t, "alice", service, node, true, StateComplete)
	f.waitServed(t, "alice", service, node)
	for _, shape := range []xep0060.ItemsRequest{{}, {MaxItems: 3}} {
		shape.Profile, shape.Service, shape.Node = "alice", service, node
		cached, sent := f.cachedCounted(t, shape)
		live := shape
		live.NoCache = true
		page, _ := f.counted(t, live)
		if sent != 0 || !cached.FromCache {
			t.Errorf("%s: %+v not answered from the cache (sent %d)", what, shape, sent)
		}
		if d := f.compare(node, cached.Items, page.Items); d != "" {
			t.Errorf("%s: %+v: cache differs from the service: %s", what, shape, d)
		}
	}
	f.twentyReads(t, what, service, node)
	if now, err := f.cache.Status(context.Background(), "alice", service, node); err == nil && len(now) == 1 {
		st = now[0]
	}
	return st
}

// twentyReads checks that 20 consecutive reads come from the cache with no
// items request sent.
func (f *lifeFixture) twentyReads(t testing.TB, what, service, node string) {
	t.Helper()
	f.mu.Lock()
	asked := len(f.asked)
	f.mu.Unlock()
	before := f.requests.Load()
	for i := range 20 {
		page, err := f.c.Items(ctxT(t), &xep0060.ItemsRequest{Profile: "alice", Service: service, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		if !page.FromCache {
			t.Errorf("%s: read %d of 20 not from the cache: %s", what, i, f.cache.explain(&xep0060.ItemsRequest{Profile: "alice", Service: service, Node: node}))
			break
		}
	}
	// The reads' own requests (answered before Items returns); a
	// background request of the cache meanwhile (a one-time probe of the
	// service after a sync) is not a read's.
	f.mu.Lock()
	sent := append([]string(nil), f.asked[asked:]...)
	f.mu.Unlock()
	reads := slices.DeleteFunc(slices.Clone(sent), func(s string) bool { return strings.HasSuffix(s, "internal=true") })
	if len(reads) != 0 {
		t.Errorf("%s: 20 reads sent %d items requests (%d in all meanwhile): %v", what, len(reads), f.requests.Load()-before, sent)
	}
}

// allParsed checks that every cached item of the node is parsed.
func (f *lifeFixture) allParsed(t testing.TB, what, service, node string, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n, _ := f.cache.nodes.get(nodeKey{"alice", service, node})
		rows, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.NodeID(n.id)).All(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ok := len(rows) == want
		for _, r := range rows {
			ok = ok && r.ParseState == pubsubitem.ParseStateOk && parsedDoc(t, r)["id"] == r.ItemID
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var states []string
			for _, r := range rows {
				states = append(states, r.ItemID+":"+string(r.ParseState))
			}
			t.Fatalf("%s: items not all parsed (want %d): %v", what, want, states)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLifecycleEmptyNode: an empty node is analysed by its name and cached
// like any other, whether synced first or read first; posts another
// account publishes later arrive by notification, parsed and searchable.
func TestLifecycleEmptyNode(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newLifeFixture(t, kind, fixtureOpts{})
			for _, pl := range placements(kind) {
				for _, first := range []string{"sync", "read"} {
					what := pl.name + ", " + first + " first"
					svc, node := f.bobNode(t, pl, syncPrefix, map[string][]string{"pubsub#max_items": {"100"}})
					if first == "sync" {
						j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
						if err != nil {
							t.Fatal(err)
						}
						<-j.Done()
					} else if page, sent := f.counted(t, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}); sent != 1 || len(page.Items) != 0 {
						t.Fatalf("%s: first read: sent %d, %d items", what, sent, len(page.Items))
					}
					st := f.waitState(t, "alice", svc, node, true, StateComplete)
					if st.Analyser == nil || *st.Analyser != "test-sync" || st.Items != 0 {
						t.Fatalf("%s: empty node: %+v", what, st)
					}
					f.converged(t, what+", empty", svc, node)
					f.post(t, svc, node, 0, 5, 0)
					f.allParsed(t, what, svc, node, 5)
					f.converged(t, what+", after 5 posts", svc, node)
					res, err := f.cache.Searcher().Search(ctxT(t), search.Query{Nodes: []string{node}, Filters: []search.Filter{mustFilter(t, `id != "x"`)}})
					if err != nil || len(res.Rows) != 5 || res.SkippedUnparsed != 0 {
						t.Errorf("%s: search: %d rows, %d skipped, %v", what, len(res.Rows), res.SkippedUnparsed, err)
					}
				}
			}
		})
	}
}

func mustFilter(t testing.TB, s string) search.Filter {
	t.Helper()
	flt, err := search.ParseFilter(s)
	if err != nil {
		t.Fatal(err)
	}
	return flt
}

// TestLifecycleNotificationsBeforeSync: the item a service sends again on
// subscription (and on +notify for PEP) arrives before the node is
// analysed: once synced every item is parsed, and the cached wrappers are
// what the live items answer shows (publisher where it carries one).
func TestLifecycleNotificationsBeforeSync(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newLifeFixture(t, kind, fixtureOpts{})
			for _, pl := range placements(kind) {
				for round := range 3 {
					what := fmt.Sprintf("%s, round %d", pl.name, round)
					svc, node := f.bobNode(t, pl, syncPrefix, map[string][]string{"pubsub#max_items": {"100"}})
					f.post(t, svc, node, 0, 4, 0)
					j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
					if err != nil {
						t.Fatal(err)
					}
					<-j.Done()
					f.allParsed(t, what, svc, node, 4)
					f.converged(t, what, svc, node)
				}
			}
		})
	}
}

// TestLifecycleCapacity: nodes of capacity 10 and 100, and of the server's
// default, filled past it by bob: the cache holds what the service holds
// (it drops the oldest items without a retraction on Prosody and on
// ejabberd's PEP nodes), learning the capacity where the configuration
// cannot be read (alice reads bob's nodes), reading it where it can (her
// own node).
func TestLifecycleCapacity(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newLifeFixture(t, kind, fixtureOpts{})
			for _, pl := range placements(kind) {
				for _, capacity := range []string{"10", "100", "default"} {
					what := pl.name + ", capacity " + capacity
					cfg := map[string][]string{}
					if capacity != "default" {
						cfg["pubsub#max_items"] = []string{capacity}
					}
					svc, node := f.bobNode(t, pl, syncPrefix, cfg)
					limit := capacityOf(t, f, svc, node)
					fill := limit
					if limit > 300 {
						t.Logf("%s: the server's default keeps %d items: filled to 20", what, limit)
						fill = 17
					}
					f.post(t, svc, node, 0, max(fill/2, 1), 0)
					j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
					if err != nil {
						t.Fatal(err)
					}
					<-j.Done()
					f.converged(t, what+", half full", svc, node)
					f.post(t, svc, node, max(fill/2, 1), fill+3, 0)
					st := f.converged(t, what+", filled past it", svc, node)
					t.Logf("%s: the server keeps %d; cache status: %d items, capacity %v (%v)", what, limit, st.Items, deref(st.Capacity), deref(st.CapacitySource))
					f.post(t, svc, node, fill+3, fill+6, 0)
					f.converged(t, what+", 3 more", svc, node)
				}
			}
			// Alice's own node, filled past its capacity by bob: the
			// capacity comes from the configuration she can read.
			svc, node := f.nodeOn(t, "alice", syncPrefix)
			if err := f.c.ConfigureNode(ctxT(t), xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node,
				Options: map[string][]string{"pubsub#max_items": {"10"}, "pubsub#publish_model": {"open"}, "pubsub#access_model": {"open"}}}); err != nil {
				t.Fatal(err)
			}
			j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
			if err != nil {
				t.Fatal(err)
			}
			<-j.Done()
			f.post(t, svc, node, 0, 14, 0)
			st := f.converged(t, "own node", svc, node)
			if st.Items != 10 || st.Capacity == nil || *st.Capacity != 10 || *st.CapacitySource != "config" {
				t.Errorf("own node: %d items, capacity %v (%v), want 10 from config", st.Items, deref(st.Capacity), deref(st.CapacitySource))
			}
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// capacityOf reads how many items bob's node keeps (bob owns it).
func capacityOf(t testing.TB, f *lifeFixture, service, node string) int {
	t.Helper()
	fields, err := f.c.NodeConfig(ctxT(t), xep0060.NodeRequest{Profile: "bob", Service: service, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range fields {
		if fl.Var == "pubsub#max_items" && len(fl.Values) > 0 {
			v := fl.Values[0]
			if v == "max" {
				v = fl.RangeMax
			}
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil && n > 0 {
				return n
			}
		}
	}
	t.Fatalf("no max_items in the configuration of %s: %+v", node, fields)
	return 0
}

// republisher re-publishes bob's items 0..n-1 (new payloads) at rate per
// second until stopped; paused, it publishes nothing.
type republisher struct {
	f         *lifeFixture
	svc, node string
	n         int
	stop      chan struct{}
	done      chan struct{}
	paused    atomic.Bool
	count     atomic.Int64
}

func (f *lifeFixture) republish(t testing.TB, svc, node string, n int, every time.Duration) *republisher {
	r := &republisher{f: f, svc: svc, node: node, n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		rnd := rand.New(rand.NewPCG(7, uint64(n)))
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			if r.paused.Load() {
				continue
			}
			i := rnd.IntN(n)
			_, err := f.c.Publish(context.Background(), xep0060.PublishRequest{Profile: "bob", Service: svc, Node: node, ID: itemID(i), Payload: lifePayload(10000 + int(r.count.Add(1)))})
			if err != nil {
				t.Errorf("re-publish: %v", err)
				return
			}
		}
	}()
	t.Cleanup(r.halt)
	return r
}

func (r *republisher) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// quiet pauses the re-publishing and waits until its last notification
// reached the cache.
func (r *republisher) quiet(t testing.TB) {
	r.paused.Store(true)
	time.Sleep(300 * time.Millisecond) // a publish in flight
	r.f.waitServed(t, "alice", r.svc, r.node)
}

// TestLifecycleBusyNode: items re-published steadily (several per second)
// during and after a sync: the sync ends complete and fresh within two
// whole listings, and reads are served from the cache while the
// re-publishing goes on.
func TestLifecycleBusyNode(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newLifeFixture(t, kind, fixtureOpts{pageSize: 20})
			for _, pl := range placements(kind) {
				svc, node := f.bobNode(t, pl, syncPrefix, map[string][]string{"pubsub#max_items": {"100"}})
				f.post(t, svc, node, 0, 60, 0)
				r := f.republish(t, svc, node, 60, 100*time.Millisecond)
				time.Sleep(time.Second)
				events := f.host.Events.Subscribe("alice")
				before := f.requests.Load()
				j, err := f.cache.Sync(ctxT(t), "alice", svc, node)
				if err != nil {
					t.Fatal(err)
				}
				<-j.Done()
				sent := f.requests.Load() - before
				events.Close()
				listings := 0
				for ev := range events.C {
					if m := ev.GetCacheSync(); m.GetNode() == node && !m.GetDone() && m.GetItems() == 0 && m.GetState() == string(StateInProgress) {
						listings++
					}
				}
				pr := j.Progress()
				t.Logf("%s: sync during re-publishing: %d whole listings, %d items requests (probes included), ended %s fresh=%v", pl.name, listings, sent, pr.State, pr.Fresh)
				if pr.State != StateComplete || !pr.Fresh || listings > 2 {
					t.Errorf("%s: sync during re-publishing: %d listings, ended %s fresh=%v (want complete and fresh within two listings)", pl.name, listings, pr.State, pr.Fresh)
				}
				// Served from the cache while the re-publishing goes on, once
				// the cache learned where this service puts a re-published
				// item (the first re-publish it sees on the node, during the
				// sync or after it, lists the node once more).
				f.waitLearnedRepublish(t, svc, node)
				f.waitServed(t, "alice", svc, node)
				for range 3 {
					f.twentyReads(t, pl.name+", during re-publishing", svc, node)
					time.Sleep(300 * time.Millisecond)
				}
				r.quiet(t)
				f.converged(t, pl.name+", re-publishing paused", svc, node)
				r.halt()
				t.Logf("%s: %d re-publications", pl.name, r.count.Load())
			}
		})
	}
}

// waitLearnedRepublish waits until the cache learned where the service puts
// re-published items.
func (f *lifeFixture) waitLearnedRepublish(t testing.TB, svc, node string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n, _ := f.cache.nodes.get(nodeKey{"alice", svc, node})
		if f.cache.learn.get(context.Background(), n.profileID, svc).RepublishMoves != serviceprofile.RepublishMovesUnknown {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache never learned where %s puts re-published items", svc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLifecycleInterrupted: a sync cut by a disconnection, or by a server
// restart, with no reader: it starts again by itself when the profile is
// connected again (no backoff) and the node converges; meanwhile a search
// lists the node as not complete.
func TestLifecycleInterrupted(t *testing.T) {
	for _, kind := range kinds {
		for _, cut := range []string{"disconnect", "server restart"} {
			t.Run(kind+"/"+cut, func(t *testing.T) {
				srv := servers.Use(t, kind)
				proxy := testsvc.ProxyFor(t, srv)
				f := newLifeFixture(t, kind, fixtureOpts{pageSize: 10, via: proxy})
				const size = 300
				svc, node := f.bobNode(t, placements(kind)[0], syncPrefix, map[string][]string{"pubsub#max_items": {"1000"}})
				f.post(t, svc, node, 0, size, 0)
				// Mid-sync: the traffic held while the sync waits for an
				// answer (on ejabberd, once pages of it are stored; Prosody
				// answers the whole node at once), then cut.
				if kind == testsvc.KindProsody {
					proxy.Pause()
				}
				if _, err := f.cache.Sync(ctxT(t), "alice", svc, node); err != nil {
					proxy.Resume()
					t.Fatal(err)
				}
				for kind != testsvc.KindProsody {
					st, _ := f.cache.Status(ctxT(t), "alice", svc, node)
					if len(st) == 1 && st[0].State == string(StateInProgress) && st[0].Items > 0 {
						proxy.Pause()
						if st, _ := f.cache.Status(ctxT(t), "alice", svc, node); st[0].State != string(StateInProgress) || st[0].Items == size {
							t.Fatalf("the sync ended before the cut: %+v", st)
						}
						t.Logf("cut after %d items", st[0].Items)
						break
					}
					time.Sleep(time.Millisecond)
				}
				f.waitState(t, "alice", svc, node, false, StateInProgress)
				if cut == "server restart" {
					proxy.CutAll()
					proxy.Resume()
					if err := srv.Restart(ctxT(t)); err != nil {
						t.Fatal(err)
					}
				} else {
					proxy.CutAll()
					proxy.Resume()
				}
				// Until it is complete again, a search says the node is not.
				res, err := f.cache.Searcher().Search(ctxT(t), search.Query{Nodes: []string{node}})
				if err != nil {
					t.Fatal(err)
				}
				if st, _ := f.cache.Status(ctxT(t), "alice", svc, node); len(st) == 1 && st[0].State != string(StateComplete) {
					if len(res.IncompleteNodes) != 1 {
						t.Errorf("a search during the interruption lists incomplete nodes %+v (node %s)", res.IncompleteNodes, st[0].State)
					}
				}
				// No read: the sync starts again by itself.
				st := f.waitState(t, "alice", svc, node, true, StateComplete)
				if st.Items != size || st.Attempts != 0 {
					t.Errorf("after the interruption: %+v", st)
				}
				f.converged(t, cut, svc, node)
			})
		}
	}
}
