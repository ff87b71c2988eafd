package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/plugins/xep0060/wire"
)

// TestNotifiedClearsPending: a notification (its write queued before)
// ends the wait of the publishes of its items, and only of those.
func TestNotifiedClearsPending(t *testing.T) {
	ps := newPublishes(nil)
	k := nodeKey{"alice", "alice@localhost", "node"}
	now := time.Now()
	ps.pending[k] = map[string]time.Time{"a": now, "b": now}
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

// TestForgetBefore: a listing's end forgets the pending publishes answered
// before it began (it saw their items), not those answered during it
// (their items may be in none of its pages); a reconciliation's end only
// those whose items it settled.
func TestForgetBefore(t *testing.T) {
	ps := newPublishes(nil)
	k := nodeKey{"alice", "alice@localhost", "node"}
	began := time.Now()
	ps.pending[k] = map[string]time.Time{"before": began.Add(-time.Millisecond), "unsettled": began.Add(-time.Millisecond), "during": began.Add(time.Millisecond)}
	ps.forgetBefore(k, began, func(id string) bool { return id != "unsettled" })
	if _, ok := ps.pending[k]["before"]; ok {
		t.Error("a publish answered before the listing still waits")
	}
	if _, ok := ps.pending[k]["unsettled"]; !ok {
		t.Error("a publish answered before a reconciliation that did not settle its item no longer waits")
	}
	if _, ok := ps.pending[k]["during"]; !ok || !ps.has(k) {
		t.Error("a publish answered during the listing no longer waits")
	}
	ps.forgetBefore(k, began, nil)
	if _, ok := ps.pending[k]["unsettled"]; ok {
		t.Error("a whole listing's end did not forget a publish answered before it")
	}
	ps.forgetBefore(k, began.Add(time.Second), nil)
	if ps.has(k) || ps.pending[k] != nil {
		t.Errorf("pending after every publish was forgotten: %v", ps.pending)
	}
}

// TestOneProbeAtATime: a probe already running is not started again (its
// end would end the other's wait early); once ended it can be.
func TestOneProbeAtATime(t *testing.T) {
	l := newLearner(nil)
	k := nodeKey{"alice", "pubsub.localhost", "node"}
	if !l.startProbe(k, "publisher") {
		t.Fatal("the first probe did not start")
	}
	if l.startProbe(k, "publisher") {
		t.Fatal("a second probe of the same started while the first runs")
	}
	if !l.startProbe(k, "republished x") {
		t.Fatal("another kind of probe did not start")
	}
	l.endProbe(k, "publisher")
	if !l.isProbing(k) {
		t.Fatal("the node is no longer probed while a probe runs")
	}
	l.endProbe(k, "republished x")
	if l.isProbing(k) || !l.startProbe(k, "publisher") {
		t.Fatal("the probe cannot start again once ended")
	}
}

// TestJobTouchedBeforeItsListing: a job waiting for its slot is running
// for the notifications, which may touch it and mark an item re-published
// after its page before its first listing began (this panicked the
// daemon: the map of those items was made by the listing's start; found
// by the life soak).
func TestJobTouchedBeforeItsListing(t *testing.T) {
	j := newSyncJob(nodeKey{"alice", "pubsub.localhost", "node"})
	j.markLater("it-0001")
	if !j.isLater("it-0001") {
		t.Fatal("the item marked later is not")
	}
	j.startRound(true)
	if j.isLater("it-0001") {
		t.Error("a listing's start keeps the items marked later before it")
	}
}
