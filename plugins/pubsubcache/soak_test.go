package pubsubcache

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// The life soak: a seeded random sequence of steps on bob's nodes that
// alice caches (bob's PEP node everywhere, a node of ejabberd's pubsub
// component too): bob publishes, updates, re-publishes unchanged,
// retracts, purges and bursts past the node's capacity; carol (a third
// account) and alice herself publish; alice's network is cut (resumed, or
// past the resumption window), paused, her stream closed by the server,
// her profile disconnected, her cache turned off, with changes meanwhile;
// `cache sync` runs with changes during it; bob reconfigures a node (its
// capacity, on ejabberd whether retractions are notified) and deletes it
// and creates it again (docs/cache.md, "What the cache cannot see": the
// soak's nodes notify what a subscriber can be told of). After each step, once alice's
// session received what the step caused (a live request of hers is
// answered after it), every answer the cache gives equals the live one
// asked just before (ids, order, payloads, publishers, RSM set), `cache
// status` does not say complete and fresh for long while the cache holds
// something else, and the node is served from the cache again in time.
//
//	SOAK_SEED=7 SOAK_SEEDS=20 SOAK_STEPS=60 go test -run TestLifeSoak ./plugins/pubsubcache/
//
// runs seeds 7..26 with 60 steps each on both servers (default: seed 1,
// 14 steps). A failure prints the seed, the step log and the command that
// replays it.

// soakEnv reads the soak's settings.
func soakEnv(t *testing.T) (seed uint64, seeds, steps int) {
	t.Helper()
	seed, seeds, steps = 1, 1, 14
	num := func(key string, dst *int) {
		if v := os.Getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", key, v)
			}
			*dst = n
		}
	}
	s := int(seed)
	num("SOAK_SEED", &s)
	num("SOAK_SEEDS", &seeds)
	num("SOAK_STEPS", &steps)
	return uint64(s), seeds, steps
}

func TestLifeSoak(t *testing.T) {
	seed, seeds, steps := soakEnv(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for i := range seeds {
				s := seed + uint64(i)
				t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { runSoak(t, kind, s, steps) })
			}
		})
	}
}

// soak is one seeded run on one server.
type soak struct {
	*lifeFixture
	t      *testing.T
	kind   string
	seed   uint64
	r      *rand.Rand
	proxy  *testsvc.Proxy
	states <-chan connections.StateChange // alice's session states
	nodes  []*soakNode
	// log is the step log, printed on failure.
	log []string
	// payloads counts the payloads published (each new one differs).
	payloads int
	// offline: alice's session is down (her own operations are skipped).
	offline bool
	start   time.Time
	// markers: per service, a node of bob's alice is notified of, whose
	// items mark the end of a step's notifications (see quiet).
	markers map[string]string
	marks   int
}

// soakNode is one of bob's nodes under the soak.
type soakNode struct {
	name      string // the placement's
	svc, node string
	capacity  int
	next      int  // index of the next new item
	open      bool // carol and alice may publish
	// silent: the node's pubsub#notify_retract is 0 (retractions and
	// purges notified to no one).
	silent bool
}

// config is n's configuration as the soak sets it on a service of kind.
// On ejabberd the node's configuration changes and its deletion are
// notified to its subscribers (pubsub#notify_config, notify_delete: off
// by default there); Prosody always notifies a deletion and never a
// configuration change.
func (n *soakNode) config(kind string) map[string][]string {
	notify := "1"
	if n.silent {
		notify = "0"
	}
	c := map[string][]string{"pubsub#access_model": {"open"}, "pubsub#max_items": {strconv.Itoa(n.capacity)},
		"pubsub#publish_model": {"open"}, "pubsub#notify_retract": {notify}}
	if kind == testsvc.KindEjabberd {
		c["pubsub#notify_config"], c["pubsub#notify_delete"] = []string{"1"}, []string{"1"}
	}
	return c
}

func runSoak(t *testing.T, kind string, seed uint64, steps int) {
	start := time.Now()
	s := newSoak(t, kind, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("soak %s seed %d failed; replay: SOAK_SEED=%d SOAK_STEPS=%d go test -run 'TestLifeSoak/%s/seed=%d$' ./plugins/pubsubcache/\nstep log:\n%s",
				kind, seed, seed, steps, kind, seed, strings.Join(s.log, "\n"))
		}
	})
	if !s.settle("setup") {
		return
	}
	// The first steps are every kind once, in a random order (a short
	// run covers them all), then random ones.
	order := s.r.Perm(len(soakSteps))
	for i := range steps {
		st := soakSteps[s.r.IntN(len(soakSteps))]
		if i < len(order) {
			st = soakSteps[order[i]]
		}
		if !st.cheap && i >= len(order) && s.r.IntN(4) != 0 {
			st = soakSteps[0]
		}
		s.logf("step %d: %s", i, st.name)
		st.run(s)
		if t.Failed() || !s.settle(fmt.Sprintf("step %d (%s)", i, st.name)) {
			return
		}
	}
	t.Logf("%s seed %d: %d steps in %v", kind, seed, steps, time.Since(start).Round(time.Millisecond))
}

func newSoak(t *testing.T, kind string, seed uint64) *soak {
	t.Helper()
	srv := servers.Use(t, kind)
	ctx := ctxT(t)
	if err := srv.Register(ctx, "carol", "carol-pw"); err != nil {
		t.Fatal(err)
	}
	proxy := testsvc.ProxyFor(t, srv)
	r := rand.New(rand.NewPCG(seed, 0x50a4))
	page := []int{4, 10, 100}[r.IntN(3)]
	f := newFixture(t, srv, fixtureOpts{via: proxy, pageSize: page}, "alice")
	// bob and carol connect directly (alice's cuts are not theirs), their
	// cache off: their reads are the service's.
	for _, u := range []string{"bob", "carol"} {
		params := map[string]string{profiles.KeyHost: srv.Host, profiles.KeyPort: strconv.Itoa(srv.Port), profiles.KeyCAFile: srv.CAFile, KeyEnabled: "false"}
		if _, err := f.ps.Create(ctx, profiles.CreateRequest{Name: u, JID: f.jid(u), Password: u + "-pw", Params: params}); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Connect(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	s := &soak{lifeFixture: watchLife(t, f), t: t, kind: kind, seed: seed, r: r, proxy: proxy, states: sessionStates(t, f, "alice"), payloads: 1000, start: time.Now()}
	modes := []string{reconcileExact, reconcileFull}
	if kind == testsvc.KindProsody {
		modes = append(modes, reconcileIDs) // ejabberd under ids misses updates in place, as documented
	}
	mode := modes[r.IntN(len(modes))]
	if _, err := f.ps.Set(ctx, "alice", KeyReconcile, mode); err != nil {
		t.Fatal(err)
	}
	s.logf("seed %d on %s: page size %d, cache.reconcile %s", seed, kind, page, mode)
	s.markers = map[string]string{}
	for _, pl := range placements(kind) {
		svc, marker := s.bobNode(t, pl, plainPrefix, nil)
		if _, err := f.c.Subscribe(ctx, "alice", svc, marker); err != nil {
			t.Fatal(err)
		}
		s.markers[svc] = marker
		n := &soakNode{name: pl.name, capacity: []int{4, 7, 10}[r.IntN(3)]}
		capacity := strconv.Itoa(n.capacity)
		// ejabberd's PEP nodes notify no purge by default
		// (pubsub#notify_retract 0): TestPurgeNotNotified.
		n.svc, n.node = s.bobNode(t, pl, syncPrefix, n.config(kind))
		n.open = s.publish(n, "carol", n.newID())
		initial := r.IntN(n.capacity + 1)
		for range initial {
			s.publish(n, "bob", n.newID())
		}
		s.logf("%s node %s: capacity %s, open to carol %v, %d items, then synced", pl.name, n.node, capacity, n.open, initial+b2i(n.open))
		j, err := f.cache.Sync(ctx, "alice", n.svc, n.node)
		if err != nil {
			t.Fatal(err)
		}
		<-j.Done()
		s.nodes = append(s.nodes, n)
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *soak) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("%7.3fs ", time.Since(s.start).Seconds())+fmt.Sprintf(format, args...))
}

// soakStep is one kind of step; cheap ones take well under a second.
type soakStep struct {
	name  string
	cheap bool
	run   func(s *soak)
}

// soakSteps: the first is the plain one, the others wrap changes.
var soakSteps = []soakStep{
	{"changes", true, func(s *soak) { s.changes(1 + s.r.IntN(4)) }},
	{"burst", true, func(s *soak) { s.burst(s.pick()) }},
	{"purge", true, func(s *soak) { s.purge(s.pick()) }},
	{"cache sync during changes", true, (*soak).syncDuring},
	{"cut, resumed", true, (*soak).cutResumed},
	{"paused network", true, (*soak).paused},
	{"disconnected", true, (*soak).disconnected},
	{"stream closed by the server", true, (*soak).kicked},
	{"cache off and on", true, (*soak).toggled},
	{"cut past the resumption window", false, (*soak).dropped},
	{"reconfigured", true, func(s *soak) { s.reconfigure(s.pick()); s.changes(s.r.IntN(3)) }},
	{"deleted and created again", true, func(s *soak) { s.recreate(s.pick()); s.changes(s.r.IntN(3)) }},
}

func (s *soak) pick() *soakNode { return s.nodes[s.r.IntN(len(s.nodes))] }

func (n *soakNode) newID() string {
	n.next++
	return itemID(n.next - 1)
}

// publish publishes id on n as who with a new payload; it reports whether
// the service took it (a refusal is logged, not a failure).
func (s *soak) publish(n *soakNode, who, id string) bool {
	s.payloads++
	return s.publishPayload(n, who, id, lifePayload(s.payloads), fmt.Sprintf("%s publishes %s", who, id))
}

func (s *soak) publishPayload(n *soakNode, who, id string, payload []byte, what string) bool {
	s.t.Helper()
	_, err := s.c.Publish(ctxT(s.t), xep0060.PublishRequest{Profile: who, Service: n.svc, Node: n.node, ID: id, Payload: payload})
	if err != nil {
		s.logf("  %s on %s: refused: %v", what, n.name, err)
		return false
	}
	s.logf("  %s on %s", what, n.name)
	return true
}

// live is the node as the service holds it (bob's read).
func (s *soak) live(n *soakNode) []wire.Item {
	s.t.Helper()
	page, err := s.c.Items(ctxT(s.t), &xep0060.ItemsRequest{Profile: "bob", Service: n.svc, Node: n.node, NoCache: true})
	if err != nil {
		s.t.Fatalf("bob's read of %s: %v", n.name, err)
	}
	return page.Items
}

// changes makes k random changes on random nodes.
func (s *soak) changes(k int) {
	for range k {
		s.change(s.pick())
		if s.r.IntN(3) == 0 && !s.offline {
			s.touch(s.pick())
		}
	}
}

// change makes one random change on n.
func (s *soak) change(n *soakNode) {
	live := s.live(n)
	var existing *wire.Item
	if len(live) > 0 {
		existing = &live[s.r.IntN(len(live))]
	}
	switch w := s.r.IntN(100); {
	case w < 30 || existing == nil:
		for range 1 + s.r.IntN(3) {
			s.publish(n, "bob", n.newID())
		}
	case w < 50:
		s.publish(n, "bob", existing.ID)
	case w < 57:
		s.publishPayload(n, "bob", existing.ID, existing.Payload, "bob re-publishes "+existing.ID+" unchanged")
	case w < 72:
		err := s.c.Retract(ctxT(s.t), xep0060.RetractRequest{Profile: "bob", Service: n.svc, Node: n.node, ID: existing.ID, Notify: true})
		s.logf("  bob retracts %s on %s (%v)", existing.ID, n.name, err)
	case w < 82 && n.open:
		id := n.newID()
		if s.r.IntN(2) == 0 {
			id = existing.ID
		}
		s.publish(n, "carol", id)
	case w < 92 && n.open && !s.offline:
		id := n.newID()
		if s.r.IntN(2) == 0 {
			id = existing.ID
		}
		s.publish(n, "alice", id)
	case w < 96 && !s.offline:
		err := s.c.Retract(ctxT(s.t), xep0060.RetractRequest{Profile: "alice", Service: n.svc, Node: n.node, ID: existing.ID, Notify: true})
		s.logf("  alice retracts %s on %s (%v)", existing.ID, n.name, err)
	case w < 98:
		s.reconfigure(n)
	case w < 99:
		s.recreate(n)
	default:
		s.burst(n)
	}
}

// burst publishes past n's capacity.
func (s *soak) burst(n *soakNode) {
	k := n.capacity + 1 + s.r.IntN(4)
	s.logf("  bob publishes %d new items on %s (capacity %d):", k, n.name, n.capacity)
	for range k {
		s.publish(n, "bob", n.newID())
	}
}

func (s *soak) purge(n *soakNode) {
	err := s.c.PurgeNode(ctxT(s.t), xep0060.NodeRequest{Profile: "bob", Service: n.svc, Node: n.node})
	s.logf("  bob purges %s (%v)", n.name, err)
}

// reconfigure has bob change n's capacity and, one time in three,
// whether retractions are notified: on ejabberd, while alice is online.
// Prosody notifies no configuration change, and alice may not read the
// configuration of a node she does not own: a capacity lowered there (the
// service drops the oldest items, telling no one), raised past one the
// cache learned, or retractions silenced are unknown to her cache until
// its next reconciliation (docs/cache.md, "What the cache cannot see").
func (s *soak) reconfigure(n *soakNode) {
	if s.kind == testsvc.KindProsody || s.offline {
		// Offline, the notification of it would be lost, and nothing
		// alice may read says it.
		s.logf("  %s not reconfigured (Prosody notifies no configuration change; alice offline: %v)", n.name, s.offline)
		return
	}
	was := n.capacity
	choices := []int{2, 4, 7, 10, 15}
	for n.capacity == was {
		n.capacity = choices[s.r.IntN(len(choices))]
	}
	if s.r.IntN(3) == 0 {
		n.silent = !n.silent
	}
	err := s.c.ConfigureNode(ctxT(s.t), xep0060.NodeRequest{Profile: "bob", Service: n.svc, Node: n.node, Options: n.config(s.kind)})
	s.logf("  bob configures %s: capacity %d -> %d, notify_retract %v (%v)", n.name, was, n.capacity, !n.silent, err)
	if err != nil {
		s.t.Fatalf("bob's configure of %s: %v", n.name, err)
	}
}

// recreate has bob delete n and create it again (same name and
// configuration but retractions notified, as the cache takes a node it
// cannot read the configuration of; no items; alice's subscription, if
// any, gone).
func (s *soak) recreate(n *soakNode) {
	ctx := ctxT(s.t)
	n.silent = false
	if err := s.c.DeleteNode(ctx, xep0060.NodeRequest{Profile: "bob", Service: n.svc, Node: n.node}); err != nil {
		s.t.Fatalf("bob's delete of %s: %v", n.name, err)
	}
	if err := s.c.CreateNode(ctx, xep0060.NodeRequest{Profile: "bob", Service: n.svc, Node: n.node, Options: n.config(s.kind)}); err != nil {
		s.t.Fatalf("bob's create of %s: %v", n.name, err)
	}
	s.logf("  bob deletes %s and creates it again", n.name)
}

// touch is a read of alice's through the cache, not checked (what it
// meets may still be on its way): reads start syncs, checks and probes.
func (s *soak) touch(n *soakNode) {
	req := s.shape(n, nil)
	page, err := s.c.Items(ctxT(s.t), &req)
	if err != nil {
		s.logf("  alice reads %s %s: %v", n.name, shapeString(req), err)
		return
	}
	s.logf("  alice reads %s %s: from cache %v, %d items", n.name, shapeString(req), page.FromCache, len(page.Items))
}

func (s *soak) syncDuring() {
	n := s.pick()
	j, err := s.cache.Sync(ctxT(s.t), "alice", n.svc, n.node)
	if err != nil {
		s.t.Fatal(err)
	}
	s.changes(s.r.IntN(3))
	select {
	case <-j.Done():
	case <-time.After(time.Minute):
		s.t.Fatalf("the sync of %s did not end within a minute", n.name)
	}
	pr := j.Progress()
	s.logf("  sync of %s ended %s fresh=%v items=%d err=%q", n.name, pr.State, pr.Fresh, pr.Items, pr.Err)
}

// drain forgets alice's session states recorded so far.
func (s *soak) drain() {
	for {
		select {
		case <-s.states:
		default:
			return
		}
	}
}

// waitSession waits for one of alice's session states.
func (s *soak) waitSession(within time.Duration, states ...string) string {
	s.t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev := <-s.states:
			if slices.Contains(states, ev.State) {
				return ev.State
			}
		case <-timeout:
			s.t.Fatalf("alice's session never %v within %v (state %s)", states, within, s.m.State("alice"))
		}
	}
}

// gap cuts alice's network (refusing new connections), waits until she
// noticed, checks that a read says stale, runs the changes, and restores.
func (s *soak) gap(cut func(), during func()) {
	s.drain()
	s.proxy.RefuseNew(true)
	cut()
	deadline := time.Now().Add(15 * time.Second)
	for st := s.m.State("alice"); st == "connected" || st == "resumed"; st = s.m.State("alice") {
		if time.Now().After(deadline) {
			s.t.Fatalf("alice never noticed the cut: %s", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.offline = true
	s.staleRead(s.pick())
	during()
	s.proxy.RefuseNew(false)
	got := s.waitSession(time.Minute, "resumed", "connected")
	s.offline = false
	s.logf("  network back: %s", got)
}

// staleRead: while alice is offline, a read from the cache says stale.
func (s *soak) staleRead(n *soakNode) {
	page, err := s.c.Items(ctxT(s.t), &xep0060.ItemsRequest{Profile: "alice", Service: n.svc, Node: n.node})
	if err == nil && page.FromCache && !page.Stale {
		s.t.Errorf("%s: a read while alice is offline (%s) is answered from the cache, not stale", n.name, s.m.State("alice"))
	}
}

func (s *soak) cutResumed() {
	s.gap(s.proxy.CutAll, func() { s.changes(1 + s.r.IntN(3)) })
}

func (s *soak) dropped() {
	s.gap(s.proxy.CutAll, func() {
		s.changes(1 + s.r.IntN(3))
		time.Sleep(testsvc.ResumeWindow + time.Second) // the server's timer
	})
}

func (s *soak) kicked() {
	x, err := s.m.Session("alice")
	if err != nil {
		s.t.Fatal(err)
	}
	s.gap(func() {
		if err := s.srv.CloseStream(ctxT(s.t), x.JID()); err != nil {
			s.t.Fatal(err)
		}
	}, func() { s.changes(1 + s.r.IntN(3)) })
}

// paused holds alice's traffic (nothing closed) during changes.
func (s *soak) paused() {
	s.proxy.Pause()
	s.offline = true // her own operations would wait for the network
	s.changes(1 + s.r.IntN(3))
	s.offline = false
	s.proxy.Resume()
}

func (s *soak) disconnected() {
	ctx := ctxT(s.t)
	if err := s.m.Disconnect(ctx, "alice"); err != nil {
		s.t.Fatal(err)
	}
	s.offline = true
	s.staleRead(s.pick())
	s.changes(1 + s.r.IntN(3))
	s.offline = false
	if err := s.m.Connect(ctx, "alice"); err != nil {
		s.t.Fatal(err)
	}
}

func (s *soak) toggled() {
	ctx := ctxT(s.t)
	if _, err := s.ps.Set(ctx, "alice", KeyEnabled, "false"); err != nil {
		s.t.Fatal(err)
	}
	s.changes(1 + s.r.IntN(3))
	if _, err := s.ps.Set(ctx, "alice", KeyEnabled, "true"); err != nil {
		s.t.Fatal(err)
	}
}

// shape is a random request shape on n (ids among live, plus unknown and
// gone ones); RSM ones on ejabberd.
func (s *soak) shape(n *soakNode, live []wire.Item) xep0060.ItemsRequest {
	req := xep0060.ItemsRequest{Profile: "alice", Service: n.svc, Node: n.node}
	switch w := s.r.IntN(10); {
	case w < 3:
		req.MaxItems = 1 + s.r.IntN(n.capacity+2)
	case w < 6:
		for range 1 + s.r.IntN(4) {
			id := itemID(s.r.IntN(n.next + 2))
			if len(live) > 0 && s.r.IntN(3) != 0 {
				id = live[s.r.IntN(len(live))].ID
			}
			// An id asked twice: Prosody answers the item twice, the
			// cache once (not soaked).
			if !slices.Contains(req.ItemIDs, id) {
				req.ItemIDs = append(req.ItemIDs, id)
			}
		}
	case w < 9 && s.kind == testsvc.KindEjabberd:
		q := wire.RSMQuery{Max: intp(s.r.IntN(n.capacity + 1))}
		switch s.r.IntN(3) {
		case 0:
			q.Before = strp("")
		case 1:
			// Within the node: ejabberd fails an index past its end
			// (internal-server-error).
			q.Index = intp(s.r.IntN(max(1, len(live))))
		}
		req.RSM = &q
	}
	return req
}

func shapeString(req xep0060.ItemsRequest) string {
	switch {
	case req.MaxItems > 0:
		return fmt.Sprintf("max_items=%d", req.MaxItems)
	case len(req.ItemIDs) > 0:
		return fmt.Sprintf("ids=%v", req.ItemIDs)
	case req.RSM != nil:
		return "rsm " + rsmQueryString(*req.RSM)
	}
	return "(all)"
}

func rsmQueryString(q wire.RSMQuery) string {
	var b strings.Builder
	if q.Max != nil {
		fmt.Fprintf(&b, "max=%d ", *q.Max)
	}
	if q.Index != nil {
		fmt.Fprintf(&b, "index=%d ", *q.Index)
	}
	if q.Before != nil {
		fmt.Fprintf(&b, "before=%q ", *q.Before)
	}
	if q.After != nil {
		fmt.Fprintf(&b, "after=%q ", *q.After)
	}
	return strings.TrimSpace(b.String())
}
