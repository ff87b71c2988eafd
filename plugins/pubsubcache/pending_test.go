package pubsubcache

import (
	"testing"

	"example.org/backend/plugins/xep0060/wire"
)

// TestNotifiedClearsPending: a notification (its write queued before)
// ends the wait of the publishes of its items, and only of those.
func TestNotifiedClearsPending(t *testing.T) {
	ps := newPublishes(nil)
	k := nodeKey{"alice", "alice@localhost", "node"}
	ps.pending[k] = map[string]bool{"a": true, "b": true}
	ps.notified(k, []wire.Item{{ID: "a"}})
	if !ps.has(k) {
		t.Fatal("the publish of b no longer waits after a's notification")
	}
	ps.notified(k, []wire.Item{{ID: "b"}, {ID: "c"}})
	if ps.has(k) {
		t.Fatal("the publishes still wait after their notifications")
	}
	if _, ok := ps.notifiedAt[k]["c"]; !ok {
		t.Fatal("the notification of c is not remembered")
	}
}
