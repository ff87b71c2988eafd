package pubsubcache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// Network drops (XEP-0198): alice, the cache's reader, connects through a
// proxy the tests cut; bob, another account, connects directly and
// publishes during the gap.

// dropFixture is a fixture whose alice goes through proxy, with bob
// connected directly (his cache disabled), and alice's session points
// recorded.
type dropFixture struct {
	*fixture
	proxy  *testsvc.Proxy
	states <-chan connections.StateChange // alice's session states
	mu     sync.Mutex
	points []string // alice's session.connected/disconnected/resumed, in order
}

func newDropFixture(t *testing.T, kind string) *dropFixture {
	t.Helper()
	srv := servers.Use(t, kind)
	proxy := testsvc.ProxyFor(t, srv)
	df := &dropFixture{proxy: proxy}
	df.fixture = newFixture(t, srv, fixtureOpts{via: proxy}, "alice")
	ctx := context.Background()
	params := map[string]string{profiles.KeyHost: srv.Host, profiles.KeyPort: strconv.Itoa(srv.Port), profiles.KeyCAFile: srv.CAFile, KeyEnabled: "false"}
	if _, err := df.ps.Create(ctx, profiles.CreateRequest{Name: "bob", JID: df.jid("bob"), Password: "bob-pw", Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := df.m.Connect(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	record := func(p *triggers.Event[connections.ProfileEvent], name string) triggers.Binding {
		return triggers.Observe(p, triggers.PriorityDefault, func(ctx context.Context, ev connections.ProfileEvent) error {
			if ev.Profile == "alice" {
				df.mu.Lock()
				df.points = append(df.points, name)
				df.mu.Unlock()
			}
			return nil
		})
	}
	h, err := df.host.Bus.Attach("drop-test", record(connections.Connected, "connected"),
		record(connections.Disconnected, "disconnected"), record(connections.Resumed, "resumed"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Remove)
	df.states = sessionStates(t, df.fixture, "alice")
	return df
}

// sessionStates records profile's session states (connections.StateChanged)
// until the test ends; states that find the channel full are dropped.
func sessionStates(t testing.TB, f *fixture, profile string) <-chan connections.StateChange {
	t.Helper()
	c := make(chan connections.StateChange, 64)
	h, err := f.host.Bus.Attach("session-states-"+profile, triggers.Observe(connections.StateChanged, triggers.PriorityDefault,
		func(_ context.Context, ev connections.StateChange) error {
			if ev.Profile == profile {
				select {
				case c <- ev:
				default:
				}
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Remove)
	return c
}

func (df *dropFixture) sessionPoints() string {
	df.mu.Lock()
	defer df.mu.Unlock()
	return strings.Join(df.points, ",")
}

// bobNodes creates n nodes on bob's PEP service, open to alice, with
// items items each, and has alice's cache sync them; it returns once
// each is served from the cache.
func (df *dropFixture) bobNodes(t testing.TB, n, items int) (service string, nodes []string) {
	t.Helper()
	ctx := ctxT(t)
	service = df.jid("bob")
	for range n {
		node := uniq(syncPrefix)
		opts := map[string][]string{"pubsub#access_model": {"open"}, "pubsub#max_items": {"max"}}
		if err := df.c.CreateNode(ctx, xep0060.NodeRequest{Profile: "bob", Service: service, Node: node, Options: opts}); err != nil {
			t.Fatalf("create node: %v", err)
		}
		df.publish(t, "bob", service, node, 0, items)
		if _, err := df.cache.Sync(ctx, "alice", service, node); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		df.waitState(t, "alice", service, node, true, StateComplete)
		df.waitServed(t, "alice", service, node)
	}
	// The cache learns once, by listing the node again, where this
	// service puts a re-published item: a lesson before any drop.
	if _, err := df.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: service, Node: nodes[0], ID: itemID(2), Payload: payload(600)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	first, _ := df.cache.nodes.get(nodeKey{"alice", service, nodes[0]})
	for df.cache.learn.get(ctx, first.profileID, service).RepublishMoves == serviceprofile.RepublishMovesUnknown {
		if time.Now().After(deadline) {
			t.Fatalf("the cache never learned where %s puts re-published items", service)
		}
		time.Sleep(10 * time.Millisecond)
	}
	df.waitState(t, "alice", service, nodes[0], true, StateComplete)
	df.waitServed(t, "alice", service, nodes[0])
	return service, nodes
}

// cut cuts alice's connection and refuses new ones until restore.
func (df *dropFixture) cut(t testing.TB) (restore func()) {
	t.Helper()
	df.proxy.RefuseNew(true)
	df.proxy.CutAll()
	deadline := time.Now().Add(10 * time.Second)
	for df.m.State("alice") != "reconnecting" {
		if time.Now().After(deadline) {
			t.Fatalf("alice never noticed the cut: %s", df.m.State("alice"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() { df.proxy.RefuseNew(false) }
}

// waitSessionState waits for alice's session state st and returns the
// change.
func (df *dropFixture) waitSessionState(t testing.TB, st string, within time.Duration) connections.StateChange {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev := <-df.states:
			if ev.State == st {
				return ev
			}
		case <-timeout:
			t.Fatalf("no session.state %q within %s (state %s)", st, within, df.m.State("alice"))
		}
	}
}

// gapChanges publishes, updates and retracts on each node as bob: the
// changes alice's cache must learn from the notifications of the gap.
func (df *dropFixture) gapChanges(t testing.TB, service string, nodes []string, items int) {
	t.Helper()
	ctx := ctxT(t)
	for _, node := range nodes {
		df.publish(t, "bob", service, node, items, items+2)
		if _, err := df.c.Publish(ctx, xep0060.PublishRequest{Profile: "bob", Service: service, Node: node, ID: itemID(1), Payload: payload(700)}); err != nil {
			t.Fatal(err)
		}
		if err := df.c.Retract(ctx, xep0060.RetractRequest{Profile: "bob", Service: service, Node: node, ID: itemID(0), Notify: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// sameAsLive checks that every node is answered from the cache, without
// an items request, as the service answers (asked afterwards), with the
// gap's changes.
func (df *dropFixture) sameAsLive(t testing.TB, what, service string, nodes []string, items int) {
	t.Helper()
	for _, node := range nodes {
		for _, req := range []xep0060.ItemsRequest{
			{Profile: "alice", Service: service, Node: node},
			{Profile: "alice", Service: service, Node: node, MaxItems: 2},
			{Profile: "alice", Service: service, Node: node, ItemIDs: []string{itemID(1), itemID(items + 1)}},
		} {
			cached, sent := df.cachedCounted(t, req)
			if sent != 0 || !cached.FromCache || cached.Stale {
				t.Errorf("%s: %s %+v: sent %d, from cache %v, stale %v", what, node, req, sent, cached.FromCache, cached.Stale)
			}
			live := req
			live.NoCache = true
			page, _ := df.counted(t, live)
			if d := sameAsServed(cached.Items, page.Items); d != "" {
				t.Errorf("%s: %s %+v: cached and live answers differ: %s", what, node, req, d)
			}
		}
		all, _ := df.cachedCounted(t, xep0060.ItemsRequest{Profile: "alice", Service: service, Node: node})
		ids := idsOf(all.Items)
		if strings.Contains(ids, itemID(0)) || !strings.Contains(ids, itemID(items+1)) || len(all.Items) != items+1 {
			t.Errorf("%s: %s holds %s: the gap's changes are missing", what, node, ids)
		}
	}
}

// TestResumeKeepsNodesFresh: a TCP cut, bob publishing, updating and
// retracting during the gap, then the link back: alice's stream is
// resumed (a session.state "resumed" event with her full JID), plugins see
// no disconnection, the gap's notifications arrive, pubsub_items_requests
// does not move (no resync, no reconciliation), the nodes stayed fresh
// and the cached answers equal the live ones.
func TestResumeKeepsNodesFresh(t *testing.T) {
	const nodes, items = 3, 6
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			df := newDropFixture(t, kind)
			service, names := df.bobNodes(t, nodes, items)
			x, err := df.m.Session("alice")
			if err != nil {
				t.Fatal(err)
			}
			jid := x.JID()
			before, _ := df.cache.Status(ctxT(t), "alice", service, "")
			requests := df.requests.Load()

			restore := df.cut(t)
			gap := time.Now()
			df.gapChanges(t, service, names, items)
			// During the gap the profile is offline: answers come from the
			// cache, marked stale, and nothing goes to the service.
			page, err := df.c.Items(ctxT(t), &xep0060.ItemsRequest{Profile: "alice", Service: service, Node: names[0]})
			if err != nil || !page.FromCache || !page.Stale {
				t.Errorf("a read during the gap: %v, %+v", err, page)
			}
			time.Sleep(time.Second)
			restore()
			back := time.Now()
			change := df.waitSessionState(t, "resumed", 20*time.Second)
			t.Logf("%s: resumed %v after the link was back (gap %v)", kind, time.Since(back).Round(time.Millisecond), back.Sub(gap).Round(time.Millisecond))
			if change.JID != jid {
				t.Errorf("resumed change %+v, want jid %s", change, jid)
			}
			if got := df.sessionPoints(); got != "resumed" {
				t.Errorf("alice's session points %q, want only resumed", got)
			}
			if n := df.requests.Load() - requests; n != 0 {
				t.Errorf("%d items requests after the resumption, want 0", n)
			}
			after, _ := df.cache.Status(ctxT(t), "alice", service, "")
			for i, st := range after {
				if !st.Fresh || st.State != string(StateComplete) || st.Attempts != 0 || !sameTime(st.LastSync, before[i].LastSync) {
					t.Errorf("node %s after the resumption: %+v (before %+v): resynced or not fresh", st.Node, st, before[i])
				}
			}
			df.sameAsLive(t, "after the resumption", service, names, items)
		})
	}
}

// sameAsServed is sameItems, except that a payload may differ from the
// live one in its serialisation when both have the same Exclusive XML
// Canonicalization: bob's items reach alice by notification only, and
// Prosody orders attributes differently there and in IQ results (see
// docs/cache.md).
func sameAsServed(cached, live []wire.Item) string {
	if d := sameItems(cached, live); d == "" || len(cached) != len(live) {
		return d
	}
	for i := range cached {
		c, l := cached[i], live[i]
		if c.ID != l.ID || c.Publisher != l.Publisher {
			return sameItems(cached, live)
		}
		if string(c.Payload) == string(l.Payload) {
			continue
		}
		cc, err1 := c14n(string(c.Payload))
		lc, err2 := c14n(string(l.Payload))
		if err1 != nil || err2 != nil || cc != lc {
			return fmt.Sprintf("item %s: %q and live %q differ in canonical form (%v %v)", c.ID, c.Payload, l.Payload, err1, err2)
		}
	}
	return ""
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// TestResumeWindowPassedReconciles: a gap longer than the server's window
// (testsvc.ResumeWindow): session.disconnected when the window passes,
// nodes not fresh (answered stale) until reconciled after the fresh
// login, and then the gap's changes are there, the cached answers equal
// the live ones.
func TestResumeWindowPassedReconciles(t *testing.T) {
	const nodes, items = 2, 6
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			df := newDropFixture(t, kind)
			service, names := df.bobNodes(t, nodes, items)
			restore := df.cut(t)
			df.gapChanges(t, service, names, items)
			deadline := time.Now().Add(testsvc.ResumeWindow + 20*time.Second)
			for df.sessionPoints() != "disconnected" {
				if time.Now().After(deadline) {
					t.Fatalf("no session.disconnected after the window: %q", df.sessionPoints())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, node := range names {
				st, _ := df.cache.Status(ctxT(t), "alice", service, node)
				if len(st) != 1 || st[0].Fresh {
					t.Errorf("node %s fresh after the window passed: %+v", node, st)
				}
			}
			page, err := df.c.Items(ctxT(t), &xep0060.ItemsRequest{Profile: "alice", Service: service, Node: names[0]})
			if err != nil || !page.FromCache || !page.Stale || len(page.Items) != items {
				t.Errorf("a read after the window: %v, %+v", err, page)
			}
			requests := df.requests.Load()
			restore()
			df.waitSessionState(t, "connected", 20*time.Second)
			for _, node := range names {
				df.waitState(t, "alice", service, node, true, StateComplete)
			}
			if got := df.sessionPoints(); got != "disconnected,connected" {
				t.Errorf("alice's session points %q", got)
			}
			if n := df.requests.Load() - requests; n < nodes {
				t.Errorf("%d items requests after the fresh login: the nodes were not reconciled", n)
			}
			df.sameAsLive(t, "after the reconciliation", service, names, items)
		})
	}
}

// BenchmarkNetworkDrop3s: the figure. alice has 20 synced nodes
// (10 items each); her TCP connection is cut and the network refuses
// connections for 3 s. Reported: items requests sent from the cut until
// every node is answered from the cache again (target 0), and the time
// from the link being back until every node is answered from the cache,
// fresh, again (target ≤ 1 s). The session's own resumption schedule
// applies (the first attempt at once, then every 0.5 s ±20 %), whatever
// the fixture's backoff (which only spaces fresh logins).
//
//	go test -run '^$' -bench BenchmarkNetworkDrop3s -benchtime 3x ./plugins/pubsubcache/
func BenchmarkNetworkDrop3s(b *testing.B) {
	const nodes, items = 20, 10
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			srv := servers.Use(b, kind)
			proxy := testsvc.ProxyFor(b, srv)
			f := newFixture(b, srv, fixtureOpts{via: proxy}, "alice")
			var names []string
			var service string
			for range nodes {
				svc, node := f.nodeOn(b, "alice", syncPrefix)
				f.publish(b, "alice", svc, node, 0, items)
				if _, err := f.cache.Sync(ctxT(b), "alice", svc, node); err != nil {
					b.Fatal(err)
				}
				service, names = svc, append(names, node)
			}
			for _, node := range names {
				f.waitState(b, "alice", service, node, true, StateComplete)
				f.waitServed(b, "alice", service, node)
			}
			states := sessionStates(b, f, "alice")
			var sent int64
			var untilServed, worst time.Duration
			for b.Loop() {
				requests := f.requests.Load()
				proxy.RefuseNew(true)
				proxy.CutAll()
				time.Sleep(3 * time.Second)
				proxy.RefuseNew(false)
				back := time.Now()
				served := map[string]bool{}
				for len(served) < len(names) {
					if time.Since(back) > time.Minute {
						b.Fatalf("%d of %d nodes answered from the cache a minute after the link was back", len(served), len(names))
					}
					for _, node := range names {
						if served[node] {
							continue
						}
						page, err := f.c.Items(context.Background(), &xep0060.ItemsRequest{Profile: "alice", Service: service, Node: node, MaxItems: 1})
						if err == nil && page.FromCache && !page.Stale {
							served[node] = true
						}
					}
				}
				took := time.Since(back)
				untilServed += took
				worst = max(worst, took)
				// The next drop comes once this one is over (reported resumed).
				for done := false; !done; {
					select {
					case ev := <-states:
						if ev.State == "connected" {
							b.Fatal("a fresh login instead of a resumption")
						}
						done = ev.State == "resumed"
					case <-time.After(20 * time.Second):
						b.Fatal("the session was never reported resumed")
					}
				}
				sent += f.requests.Load() - requests
			}
			n := float64(b.N)
			b.ReportMetric(float64(sent)/n, "items-requests/op")
			b.ReportMetric(untilServed.Seconds()/n, "s-until-served/op")
			b.ReportMetric(worst.Seconds(), "s-until-served-max")
			b.Logf("%s: %d drops: %.3f s (worst %.3f s) from the link back to %d nodes answered from the cache; %d items requests",
				kind, b.N, untilServed.Seconds()/n, worst.Seconds(), nodes, sent)
		})
	}
}

// gapSessions are the sessions the plugins see, reporting every profile
// offline while gap is set: what a request meets between the loss of a
// stream and its resumption.
type gapSessions struct {
	core.Sessions
	gap atomic.Bool
}

func (g *gapSessions) Session(profile string) (core.XMPP, error) {
	if g.gap.Load() {
		return nil, core.NotConnected(profile)
	}
	return g.Sessions.Session(profile)
}

// TestResumeRestartsCutSync: a sync paging through a node (ejabberd, RSM
// pages of 10) meets a drop. When the drop catches a request in flight,
// the request waits for the resumed stream; when the next request is made
// during the gap, it fails (the profile is offline) and the sync is
// interrupted: the resumption starts it again (session.resumed). Either
// way the node becomes complete and fresh by itself, without a read.
func TestResumeRestartsCutSync(t *testing.T) {
	const size = 400
	srv := servers.Use(t, testsvc.KindEjabberd)
	proxy := testsvc.ProxyFor(t, srv)
	gs := &gapSessions{}
	f := newFixture(t, srv, fixtureOpts{via: proxy, pageSize: 10, sessions: func(s core.Sessions) core.Sessions {
		gs.Sessions = s
		return gs
	}}, "alice")
	for _, during := range []bool{false, true} {
		svc, node := f.nodeOn(t, "alice", plainPrefix)
		f.publishParallel(t, "alice", svc, node, 0, size, 8)
		if _, err := f.cache.Sync(ctxT(t), "alice", svc, node); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			st, _ := f.cache.Status(ctxT(t), "alice", svc, node)
			if len(st) == 1 && st[0].State == string(StateInProgress) && st[0].Items > 0 {
				break
			}
			if time.Now().After(deadline) || len(st) == 1 && st[0].State == string(StateComplete) {
				t.Fatalf("never caught the sync in progress: %+v", st)
			}
			time.Sleep(time.Millisecond)
		}
		proxy.RefuseNew(true)
		if during {
			gs.gap.Store(true)
			f.waitState(t, "alice", svc, node, false, StateNever)
		}
		proxy.CutAll()
		time.Sleep(300 * time.Millisecond)
		gs.gap.Store(false)
		proxy.RefuseNew(false)
		st := f.waitState(t, "alice", svc, node, true, StateComplete)
		if st.Items != size {
			t.Errorf("request during the gap %v: %d items after the drop, want %d", during, st.Items, size)
		}
	}
}
