package xep0060

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/eventjson"
	"example.org/backend/core/session"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// nodeOn returns the service and a fresh node for a test: the profile's own
// PEP service on Prosody (only admins may create nodes on its component),
// the pubsub.localhost component on ejabberd (created here).
func (f *fixture) nodeOn(t *testing.T, owner string, config map[string][]string) (service, node string) {
	t.Helper()
	node = uniq("urn:test:node")
	if f.srv.Kind == "prosody" {
		if err := f.c.CreateNode(ctxT(t), NodeRequest{Profile: owner, Node: node, Options: config}); err != nil {
			t.Fatalf("create PEP node: %v", err)
		}
		return f.jid(owner), node
	}
	if err := f.c.CreateNode(ctxT(t), NodeRequest{Profile: owner, Service: f.srv.PubSub, Node: node, Options: config}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	return f.srv.PubSub, node
}

func ids(items []wire.Item) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return strings.Join(out, ",")
}

func entry(i int) []byte {
	return fmt.Appendf(nil, "<entry xmlns='urn:test:e'><n>%d</n><t>a &amp; b &lt; c</t></entry>", i)
}

func TestPublishGetRetract(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), "alice")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", map[string][]string{"pubsub#max_items": {"100"}})
			requests := f.host.Counters.Get(core.CounterPubsubItemsRequests)
			for i := 1; i <= 3; i++ {
				id, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, ID: fmt.Sprintf("i%d", i), Payload: entry(i)})
				if err != nil || id != fmt.Sprintf("i%d", i) {
					t.Fatalf("publish %d: %q %v", i, id, err)
				}
			}
			// A service-assigned id.
			auto, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, Payload: entry(4)})
			if err != nil || auto == "" {
				t.Fatalf("publish without id: %q %v", auto, err)
			}
			before := requests.Load()
			page, err := f.c.Items(ctx, &ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			if got := requests.Load() - before; got != 1 {
				t.Errorf("items requests counted: %d, want 1", got)
			}
			if ids(page.Items) != "i1,i2,i3,"+auto || !page.Complete || page.FromCache {
				t.Fatalf("items = %s complete=%v rsm=%+v", ids(page.Items), page.Complete, page.RSM)
			}
			if want := string(entry(2)); string(page.Items[1].Payload) != want {
				t.Errorf("payload = %s, want %s", page.Items[1].Payload, want)
			}
			if j := page.JSON(); j.Items[0].XML != "<item id='i1'"+pubAttr(page.Items[0])+">"+string(page.Items[0].Payload)+"</item>" {
				t.Errorf("canonical xml = %s", j.Items[0].XML)
			}
			// max_items: the N most recent, oldest first.
			page = f.items(t, &ItemsRequest{Profile: "alice", Service: svc, Node: node, MaxItems: 2})
			if ids(page.Items) != "i3,"+auto || page.Complete {
				t.Errorf("max_items 2 = %s complete=%v %v", ids(page.Items), page.Complete, err)
			}
			page = f.items(t, &ItemsRequest{Profile: "alice", Service: svc, Node: node, MaxItems: 10})
			if len(page.Items) != 4 || !page.Complete {
				t.Errorf("max_items 10 = %s complete=%v %v", ids(page.Items), page.Complete, err)
			}
			// By id.
			page = f.items(t, &ItemsRequest{Profile: "alice", Service: svc, Node: node, ItemIDs: []string{"i2"}})
			if ids(page.Items) != "i2" || string(page.Items[0].Payload) != string(entry(2)) {
				t.Errorf("by id = %s %v", ids(page.Items), err)
			}
			// Retract.
			if err := f.c.Retract(ctx, RetractRequest{Profile: "alice", Service: svc, Node: node, ID: "i2", Notify: true}); err != nil {
				t.Fatal(err)
			}
			page = f.items(t, &ItemsRequest{Profile: "alice", Service: svc, Node: node})
			if ids(page.Items) != "i1,i3,"+auto {
				t.Errorf("after retract = %s %v", ids(page.Items), err)
			}
			// Errors carry the condition.
			_, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Service: svc, Node: "urn:test:no-such-node"})
			var ie *session.IQError
			if !errors.As(err, &ie) || ie.Condition != "item-not-found" {
				t.Errorf("missing node: %v", err)
			}
			// Order-by is refused clearly where the service does not advertise it.
			_, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Service: svc, Node: node, OrderBy: "creation"})
			if !errors.Is(err, ErrOrderByUnsupported) {
				t.Errorf("order-by: %v", err)
			}
			// The own PEP service by default.
			if kind == "prosody" {
				page, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: node})
				if err != nil || len(page.Items) != 3 {
					t.Errorf("default service: %v %v", page, err)
				}
			}
		})
	}
}

// items gets items or fails the test.
func (f *fixture) items(t *testing.T, req *ItemsRequest) *ItemsPage {
	t.Helper()
	page, err := f.c.Items(ctxT(t), req)
	if err != nil {
		t.Fatalf("items %+v: %v", req, err)
	}
	return page
}

func pubAttr(it wire.Item) string {
	if it.Publisher == "" {
		return ""
	}
	return " publisher='" + it.Publisher + "'"
}

// TestProsodyMaxItems shows Prosody's PEP default (max_items 1) and the
// publish-options reconfigure-and-retry that lifts it.
func TestProsodyMaxItems(t *testing.T) {
	f := newFixture(t, servers.Use(t, "prosody"), "alice")
	ctx := ctxT(t)
	node := uniq("urn:test:max")
	for i := 1; i <= 3; i++ {
		if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Node: node, ID: fmt.Sprintf("a%d", i), Payload: entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: node})
	if err != nil || ids(page.Items) != "a3" {
		t.Fatalf("default PEP node keeps %s (%v), want only a3", ids(page.Items), err)
	}
	// publish-options max_items=max on a node configured with 1: the
	// service answers precondition-not-met, the client reconfigures and
	// publishes again.
	opts := map[string][]string{"pubsub#max_items": {"max"}}
	for i := 4; i <= 6; i++ {
		if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Node: node, ID: fmt.Sprintf("a%d", i), Payload: entry(i), Options: opts}); err != nil {
			t.Fatalf("publish with options: %v", err)
		}
	}
	page, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: node})
	if err != nil || ids(page.Items) != "a3,a4,a5,a6" {
		t.Fatalf("after reconfiguration: %s %v", ids(page.Items), err)
	}
	fields, err := f.c.NodeConfig(ctx, NodeRequest{Profile: "alice", Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(fields, func(f wire.Field) bool { return f.Var == "pubsub#max_items" }); i < 0 || fields[i].Values[0] != "max" {
		t.Errorf("max_items field = %+v", fields)
	}
	// RSM is ignored by Prosody: no <set/>, everything comes back, and the
	// client learns it.
	ten := 2
	page, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: node, RSM: &wire.RSMQuery{Max: &ten}})
	if err != nil || page.RSM != nil || len(page.Items) != 4 || !page.Complete {
		t.Errorf("rsm on prosody: %s rsm=%v complete=%v %v", ids(page.Items), page.RSM, page.Complete, err)
	}
	if sup, known := f.c.RSMSupport(f.jid("alice")); sup || !known {
		t.Errorf("RSM support learned = %v, %v; want false, true", sup, known)
	}
}

// TestEjabberdRSM pages a node with RSM on ejabberd, which honours it
// without advertising it.
func TestEjabberdRSM(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), "alice")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", map[string][]string{"pubsub#max_items": {"100"}})
	for i := 0; i < 25; i++ {
		if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, ID: fmt.Sprintf("r%02d", i), Payload: entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	feats, err := f.c.Features(ctx, "alice", svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disco advertises RSM: %v", feats.RSMHint())
	ptr := func(i int) *int { return &i }
	get := func(q wire.RSMQuery) *ItemsPage {
		t.Helper()
		page, err := f.c.Items(ctx, &ItemsRequest{Profile: "alice", Service: svc, Node: node, RSM: &q})
		if err != nil {
			t.Fatal(err)
		}
		if page.RSM == nil {
			t.Fatal("no <set/> in the answer")
		}
		return page
	}
	p1 := get(wire.RSMQuery{Max: ptr(10)})
	if len(p1.Items) != 10 || p1.Items[0].ID != "r00" || *p1.RSM.Count != 25 || p1.RSM.First == "" || p1.RSM.Last == "" || p1.Complete {
		t.Errorf("first page: %s %+v complete=%v", ids(p1.Items), p1.RSM, p1.Complete)
	}
	if p1.RSM.FirstIndex != nil && *p1.RSM.FirstIndex != 0 {
		t.Errorf("first index = %d", *p1.RSM.FirstIndex)
	}
	last := p1.RSM.Last
	p2 := get(wire.RSMQuery{Max: ptr(10), After: &last})
	if len(p2.Items) != 10 || p2.Items[0].ID != "r10" {
		t.Errorf("after page: %s", ids(p2.Items))
	}
	p3 := get(wire.RSMQuery{Max: ptr(10), Index: ptr(20)})
	if ids(p3.Items) != "r20,r21,r22,r23,r24" {
		t.Errorf("index 20: %s", ids(p3.Items))
	}
	empty := ""
	p4 := get(wire.RSMQuery{Max: ptr(5), Before: &empty})
	if ids(p4.Items) != "r20,r21,r22,r23,r24" {
		t.Errorf("last page: %s", ids(p4.Items))
	}
	all := get(wire.RSMQuery{Max: ptr(100)})
	if len(all.Items) != 25 || !all.Complete {
		t.Errorf("whole node in one page: %d complete=%v", len(all.Items), all.Complete)
	}
	if sup, known := f.c.RSMSupport(svc); !sup || !known {
		t.Errorf("RSM support learned = %v, %v", sup, known)
	}
}

// TestPublishOptionsRetry makes a publish-options precondition fail on a
// node configured otherwise, on both servers.
func TestPublishOptionsRetry(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), "alice")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", map[string][]string{"pubsub#access_model": {"open"}})
			opts := map[string][]string{"pubsub#access_model": {"whitelist"}}
			if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, ID: "x", Payload: entry(1), Options: opts}); err != nil {
				t.Fatalf("publish: %v", err)
			}
			fields, err := f.c.NodeConfig(ctx, NodeRequest{Profile: "alice", Service: svc, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			if i := slices.IndexFunc(fields, func(f wire.Field) bool { return f.Var == "pubsub#access_model" }); i < 0 || fields[i].Values[0] != "whitelist" {
				t.Errorf("access_model after the retry: %+v", fields)
			}
		})
	}
}

// TestGetItemsPoint shows that a handler on GetItems answers or cancels
// before the network, and sees NoCache.
func TestGetItemsPoint(t *testing.T) {
	f := newFixture(t, servers.Use(t, "prosody"), "alice")
	ctx := ctxT(t)
	var seen []bool
	h, err := f.host.Bus.Attach("fakecache", triggers.Intercept(GetItems, triggers.PriorityCache,
		func(ctx context.Context, r *ItemsRequest) (triggers.Decision[*ItemsPage], error) {
			seen = append(seen, r.NoCache)
			switch {
			case r.NoCache:
				return triggers.Continue[*ItemsPage](), nil
			case r.Node == "cancel-me":
				return triggers.Cancel[*ItemsPage](), nil
			}
			if r.Service != f.jid("alice") {
				return triggers.Decision[*ItemsPage]{}, fmt.Errorf("service not resolved: %q", r.Service)
			}
			return triggers.Answer(&ItemsPage{Items: []wire.Item{{ID: "cached", Payload: []byte("<x/>")}}, Complete: true, FromCache: true}), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Remove()
	requests := f.host.Counters.Get(core.CounterPubsubItemsRequests)
	before := requests.Load()
	page, err := f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: "n"})
	if err != nil || !page.FromCache || ids(page.Items) != "cached" {
		t.Fatalf("answered: %v %v", page, err)
	}
	if requests.Load() != before {
		t.Error("an answered request was counted as sent")
	}
	if _, err := f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: "cancel-me"}); !errors.Is(err, ErrCancelled) {
		t.Errorf("cancelled: %v", err)
	}
	_, err = f.c.Items(ctx, &ItemsRequest{Profile: "alice", Node: "urn:test:absent", NoCache: true})
	if !isCondition(err, "item-not-found") || requests.Load() != before+1 {
		t.Errorf("no-cache went to the network: %v, counter %d", err, requests.Load()-before)
	}
	if !slices.Equal(seen, []bool{false, false, true}) {
		t.Errorf("NoCache seen by the handler: %v", seen)
	}
}

// TestNotifications routes every notification kind the servers send from a
// node of alice to her subscriber bob, and proves that an item's payload
// bytes are the same in a notification and in an IQ result.
func TestNotifications(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), "alice", "bob")
			ctx := ctxT(t)
			config := map[string][]string{
				"pubsub#access_model": {"open"}, "pubsub#max_items": {"100"}, "pubsub#notify_retract": {"1"},
				"pubsub#notify_config": {"1"}, "pubsub#notify_delete": {"1"}, "pubsub#deliver_payloads": {"1"},
			}
			svc, node := f.nodeOn(t, "alice", config)
			sub, err := f.c.Subscribe(ctx, "bob", svc, node)
			if err != nil || sub.Subscription != "subscribed" || sub.JID != f.jid("bob") {
				t.Fatalf("subscribe: %+v %v", sub, err)
			}
			subs, err := f.c.Subscriptions(ctx, "bob", svc, "")
			if err != nil || !slices.ContainsFunc(subs, func(s wire.Subscription) bool { return s.Node == node }) {
				t.Errorf("subscriptions: %+v %v", subs, err)
			}
			apiEvents := f.host.Events.Subscribe("bob")
			defer apiEvents.Close()

			// A payload with what servers like to rewrite: prefixes, CDATA,
			// entities, mixed content.
			payload := []byte(`<entry xmlns='urn:test:e' xmlns:x='urn:test:x'><x:ext x:attr='1'>mixed <b>bold</b> text</x:ext><c><![CDATA[<raw> & co]]></c><t>&#233;t&#xE9; &amp; &lt;</t></entry>`)
			for _, id := range []string{"n1", "n2"} {
				if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, ID: id, Payload: payload}); err != nil {
					t.Fatal(err)
				}
			}
			notified := wait(t, f.rec, "items notification", func(e *ItemsEvent) bool {
				return e.Profile == "bob" && e.Node == node && len(e.Items) == 1 && e.Items[0].ID == "n1"
			})
			if notified.Service != svc {
				t.Errorf("notification service = %q, want %q", notified.Service, svc)
			}
			page := f.items(t, &ItemsRequest{Profile: "bob", Service: svc, Node: node, ItemIDs: []string{"n1"}})
			if len(page.Items) != 1 || string(page.Items[0].Payload) != string(notified.Items[0].Payload) {
				t.Fatalf("payload differs between IQ result and notification:\n iq:    %s\n event: %s", page.Items[0].Payload, notified.Items[0].Payload)
			}
			// The publisher may differ: Prosody's PEP names it in
			// notifications only.
			t.Logf("publisher: iq %q, notification %q", page.Items[0].Publisher, notified.Items[0].Publisher)
			t.Logf("%s serialises the payload as %s", kind, page.Items[0].Payload)

			// Retract with notify.
			if err := f.c.Retract(ctx, RetractRequest{Profile: "alice", Service: svc, Node: node, ID: "n1", Notify: true}); err != nil {
				t.Fatal(err)
			}
			wait(t, f.rec, "retract notification", func(e *ItemsEvent) bool {
				return e.Profile == "bob" && e.Node == node && slices.Equal(e.Retracted, []string{"n1"})
			})
			// Configuration (Prosody 0.12 has no pubsub#notify_config: it
			// sends none; TestRouteSynthetic covers the routing).
			if err := f.c.ConfigureNode(ctx, NodeRequest{Profile: "alice", Service: svc, Node: node, Options: map[string][]string{"pubsub#title": {"A title"}}}); err != nil {
				t.Fatal(err)
			}
			want := "pubsub.items pubsub.items pubsub.retract pubsub.purge pubsub.delete"
			if kind == "ejabberd" {
				wait(t, f.rec, "configuration notification", func(e *ConfigurationEvent) bool { return e.Profile == "bob" && e.Node == node })
				want = "pubsub.items pubsub.items pubsub.retract pubsub.configuration pubsub.purge pubsub.delete"
			}
			// Purge.
			if err := f.c.PurgeNode(ctx, NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			wait(t, f.rec, "purge notification", func(e *NodeEvent) bool { return e.Profile == "bob" && e.Node == node && e.Redirect == "" })
			if page := f.items(t, &ItemsRequest{Profile: "alice", Service: svc, Node: node}); len(page.Items) != 0 {
				t.Errorf("items after purge: %s", ids(page.Items))
			}
			// Delete.
			if err := f.c.DeleteNode(ctx, NodeRequest{Profile: "alice", Service: svc, Node: node}); err != nil {
				t.Fatal(err)
			}
			var deleted int
			wait(t, f.rec, "delete notification", func(e *NodeEvent) bool {
				if e.Profile == "bob" && e.Node == node {
					deleted++
				}
				return deleted == 2 // the purge, then the delete
			})

			// The API event stream saw them, in order.
			var types []string
			for len(types) < len(strings.Fields(want)) {
				select {
				case ev := <-apiEvents.C:
					typ, data, _ := eventjson.Fields(ev)
					if data["node"] == node {
						types = append(types, typ)
					}
					if ev.GetItems().GetNode() == node && len(types) == 1 {
						if x := ev.GetItems().GetItems()[0].GetXml(); x != wire.Wrap(notified.Items[0]) {
							t.Errorf("api event xml = %s", x)
						}
					}
				case <-ctx.Done():
					t.Fatalf("api events: %v", types)
				}
			}
			if strings.Join(types, " ") != want {
				t.Errorf("api events = %v, want %s", types, want)
			}
		})
	}
}

// TestHeaderOnlyNotifications subscribes to a node that does not deliver
// payloads: the plugin fetches each notified item by id.
func TestHeaderOnlyNotifications(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), "alice", "bob")
			ctx := ctxT(t)
			svc, node := f.nodeOn(t, "alice", map[string][]string{
				"pubsub#access_model": {"open"}, "pubsub#max_items": {"100"}, "pubsub#deliver_payloads": {"0"},
			})
			if _, err := f.c.Subscribe(ctx, "bob", svc, node); err != nil {
				t.Fatal(err)
			}
			requests := f.host.Counters.Get(core.CounterPubsubItemsRequests)
			before := requests.Load()
			if _, err := f.c.Publish(ctx, PublishRequest{Profile: "alice", Service: svc, Node: node, ID: "h1", Payload: entry(7)}); err != nil {
				t.Fatal(err)
			}
			ev := wait(t, f.rec, "items notification", func(e *ItemsEvent) bool { return e.Profile == "bob" && e.Node == node })
			if len(ev.Items) != 1 || ev.Items[0].ID != "h1" || string(ev.Items[0].Payload) != string(entry(7)) || len(ev.Missing) != 0 {
				t.Errorf("header-only notification completed as %+v", ev)
			}
			if requests.Load() != before+1 {
				t.Errorf("items requests: %d, want 1 fetch by id", requests.Load()-before)
			}
		})
	}
}

// TestWantNotify advertises NODE+notify so that the profile's own PEP
// service sends it notifications of that node (XEP-0163), without a
// subscription.
func TestWantNotify(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, servers.Use(t, kind), "carol")
			ctx := ctxT(t)
			node := uniq("urn:test:pep")
			f.c.WantNotify(node)
			defer f.c.StopNotify(node)
			if got := f.c.NotifyNodes(); !slices.Equal(got, []string{node}) {
				t.Errorf("notify nodes = %v", got)
			}
			// The server learns the new caps from the re-sent presence and
			// asks for them; publish until the notification comes.
			deadline := 0
			for {
				id := fmt.Sprintf("p%d", deadline)
				if _, err := f.c.Publish(ctx, PublishRequest{Profile: "carol", Node: node, ID: id, Payload: entry(deadline)}); err != nil {
					t.Fatal(err)
				}
				got := false
				func() {
					f.rec.mu.Lock()
					defer f.rec.mu.Unlock()
					for _, e := range f.rec.events {
						if ev, ok := e.(*ItemsEvent); ok && ev.Node == node && ev.Service == f.jid("carol") {
							got = true
						}
					}
				}()
				if got {
					break
				}
				if deadline++; deadline > 50 {
					t.Fatal("no PEP notification with +notify")
				}
				select {
				case <-f.rec.wake:
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
}
