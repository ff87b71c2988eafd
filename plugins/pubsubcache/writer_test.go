package pubsubcache

import (
	"testing"

	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// TestRepeatedNotifications: in a batch of item writes, a notification
// identical to the previous one of its node (a PEP service delivers once
// for the subscription and once for +notify) is skipped; anything else is
// applied.
func TestRepeatedNotifications(t *testing.T) {
	k := nodeKey{"alice", "alice@example.org", "urn:xmpp:microblog:0"}
	other := nodeKey{"bob", "alice@example.org", "urn:xmpp:microblog:0"}
	item := func(id, payload string) []wire.Item {
		return []wire.Item{{ID: id, Publisher: "alice@example.org", Payload: []byte(payload)}}
	}
	steps := []struct {
		what string
		o    op
		skip bool
	}{
		{"first delivery", op{kind: opItems, key: k, items: item("1", "<a/>")}, false},
		{"second delivery", op{kind: opItems, key: k, items: item("1", "<a/>")}, true},
		{"same item for another profile", op{kind: opItems, key: other, items: item("1", "<a/>")}, false},
		{"third delivery, after another node's", op{kind: opItems, key: k, items: item("1", "<a/>")}, true},
		{"new payload", op{kind: opItems, key: k, items: item("1", "<b/>")}, false},
		{"its repeat", op{kind: opItems, key: k, items: item("1", "<b/>")}, true},
		{"the first payload again (a real re-publish)", op{kind: opItems, key: k, items: item("1", "<a/>")}, false},
		{"other publisher", op{kind: opItems, key: k, items: []wire.Item{{ID: "1", Publisher: "eve@example.org", Payload: []byte("<a/>")}}}, false},
		{"retraction", op{kind: opItems, key: k, retracted: []string{"1"}}, false},
		{"repeated retraction", op{kind: opItems, key: k, retracted: []string{"1"}}, true},
		{"item whose fields spell a retraction", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
		{"refetched copy", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}, refetched: true}, false},
		{"same item after the refetch", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
		{"a write waited for", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}, done: make(chan error, 1)}, false},
		{"same item after it", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
	}
	ops := make([]op, len(steps))
	for i, s := range steps {
		ops[i] = s.o
	}
	skip := repeats(ops)
	for i, s := range steps {
		if skip[i] != s.skip {
			t.Errorf("%s: skipped=%v, want %v", s.what, skip[i], s.skip)
		}
	}
}

// TestFailedItemsWriteNotFresh: notified items that cannot be stored
// leave their node not fresh (answered from the network until
// reconciled) by the time the write is reported failed: the cache never
// answers without them as if it held the node.
func TestFailedItemsWriteNotFresh(t *testing.T) {
	f, svc, node := cachedNode(t, "prosody", 3)
	ctx := ctxT(t)

	// Every insert into the items table fails from now on.
	db := f.host.Store.DB
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER test_fail_items BEFORE INSERT ON pubsub_items BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(`DROP TRIGGER IF EXISTS test_fail_items`) })
	k := nodeKey{"alice", svc, node}
	if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{{ID: "it-new", Payload: payload(7)}}, nil, false)); err == nil {
		t.Fatal("the items write did not fail")
	}
	st, err := f.cache.Status(ctx, "alice", svc, node)
	if err != nil || len(st) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st[0].Fresh {
		t.Fatalf("node still fresh after its notified items could not be stored: %+v", st[0])
	}
	page, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if page.FromCache && !page.Stale {
		t.Fatalf("answered from the cache as fresh: %+v", page)
	}
}
