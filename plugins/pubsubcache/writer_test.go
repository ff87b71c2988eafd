package pubsubcache

import (
	"testing"

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
