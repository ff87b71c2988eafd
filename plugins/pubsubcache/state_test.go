package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

func TestStateTransitions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		from  nodeInfo
		ev    event
		state State
		fresh bool
		check func(t *testing.T, n nodeInfo)
	}{
		{"analysed to sync", nodeInfo{state: StateNever}, event{kind: evAnalysed, analysis: analysis{analyser: "a", toSync: true, parser: true}, version: 3}, StateNever, false,
			func(t *testing.T, n nodeInfo) {
				if !n.analysed || !n.toSync || !n.parser || n.analyser != "a" || n.version != 3 {
					t.Errorf("analysis not recorded: %+v", n)
				}
			}},
		{"analysed not to sync", nodeInfo{state: StateNever}, event{kind: evAnalysed}, StateNoSync, false, nil},
		{"no_sync becomes to sync", nodeInfo{state: StateNoSync}, event{kind: evAnalysed, analysis: analysis{toSync: true}}, StateNever, false, nil},
		{"manually synced node stays complete", nodeInfo{state: StateComplete, fresh: true}, event{kind: evAnalysed}, StateComplete, true, nil},
		{"sync starts", nodeInfo{state: StateNever}, event{kind: evSyncStarted}, StateInProgress, false, nil},
		{"reconcile starts", nodeInfo{state: StateComplete, fresh: true}, event{kind: evSyncStarted}, StateInProgress, false, nil},
		{"sync done secured", nodeInfo{state: StateInProgress, attempts: 3, lastError: "x", nextAttempt: now}, event{kind: evSyncDone, secured: true, subscribed: true}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.attempts != 0 || n.lastError != "" || !n.nextAttempt.IsZero() || !n.syncedAt.Equal(now) || !n.subscribed {
					t.Errorf("error bookkeeping not reset: %+v", n)
				}
			}},
		{"sync done without notifications", nodeInfo{state: StateInProgress}, event{kind: evSyncDone}, StateComplete, false, nil},
		{"reconciled by difference", nodeInfo{state: StateInProgress, method: methodFull}, event{kind: evSyncDone, secured: true, method: methodIDsNewest}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.method != methodIDsNewest {
					t.Errorf("method not recorded: %q", n.method)
				}
			}},
		{"sync done over the limit", nodeInfo{state: StateInProgress}, event{kind: evSyncDone, partial: true, secured: true}, StatePartial, false, nil},
		{"notifications over the limit", nodeInfo{state: StateComplete, fresh: true}, event{kind: evOverLimit}, StatePartial, false, nil},
		{"partial node over the limit", nodeInfo{state: StatePartial}, event{kind: evOverLimit}, StatePartial, false, nil},
		{"sync fails", nodeInfo{state: StateInProgress, attempts: 1}, event{kind: evSyncFailed, err: "boom"}, StateError, false,
			func(t *testing.T, n nodeInfo) {
				if n.attempts != 2 || n.lastError != "boom" || !n.nextAttempt.Equal(now.Add(time.Minute)) {
					t.Errorf("attempts=%d err=%q next=%v", n.attempts, n.lastError, n.nextAttempt)
				}
			}},
		{"purge all", nodeInfo{state: StateComplete, fresh: true}, event{kind: evPurged}, StateNever, false, nil},
		{"purge some", nodeInfo{state: StateComplete, fresh: true}, event{kind: evPurged, remaining: 3}, StatePartial, false, nil},
		{"purge during sync", nodeInfo{state: StateInProgress}, event{kind: evPurged}, StateInProgress, false, nil},
		{"purge of an error node", nodeInfo{state: StateError}, event{kind: evPurged}, StateError, false, nil},
		{"disconnect", nodeInfo{state: StateComplete, fresh: true}, event{kind: evDisconnected}, StateComplete, false, wasOffline(true)},
		{"sync done after a disconnection", nodeInfo{state: StateInProgress, wasOffline: true}, event{kind: evSyncDone, secured: true}, StateComplete, true, wasOffline(false)},
		{"partial sync after a disconnection", nodeInfo{state: StateInProgress, wasOffline: true}, event{kind: evSyncDone, partial: true}, StatePartial, false, wasOffline(true)},
		{"sync interrupted", nodeInfo{state: StateInProgress}, event{kind: evSyncInterrupted, err: "x"}, StateNever, false, wasOffline(true)},
		{"restart mid-sync", nodeInfo{state: StateInProgress}, event{kind: evRestarted}, StateNever, false, wasOffline(true)},
		{"restart complete", nodeInfo{state: StateComplete, fresh: true}, event{kind: evRestarted}, StateComplete, false, nil},
		{"subscription gone", nodeInfo{state: StateComplete, fresh: true, subscribed: true}, event{kind: evSubscriptionGone}, StateNoSync, false,
			func(t *testing.T, n nodeInfo) {
				if n.subscribed {
					t.Error("still subscribed")
				}
			}},
		{"subscription gone mid-sync", nodeInfo{state: StateInProgress, subscribed: true}, event{kind: evSubscriptionGone}, StateInProgress, false, nil},
		{"reanalyse", nodeInfo{state: StateComplete, fresh: true, analysed: true}, event{kind: evReanalyse}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.analysed {
					t.Error("still analysed")
				}
			}},
		{"configured: max_items lowered on a cached node", nodeInfo{state: StateComplete, fresh: true, analysed: true, maxItems: intPtr(-1)},
			event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(10)}, StateComplete, false,
			func(t *testing.T, n nodeInfo) {
				if n.analysed || n.maxItems == nil || *n.maxItems != 10 {
					t.Errorf("analysed=%v max_items=%v", n.analysed, n.maxItems)
				}
			}},
		{"configured: max_items raised", nodeInfo{state: StateComplete, fresh: true, maxItems: intPtr(10)},
			event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(20)}, StateComplete, true, nil},
		{"configured: max_items lowered, not cached", nodeInfo{state: StateNoSync}, event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(1)}, StateNoSync, false, nil},
		{"configured without max_items", nodeInfo{state: StateComplete, fresh: true, analysed: true, maxItems: intPtr(5)}, event{kind: evConfigured}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.analysed || *n.maxItems != 5 {
					t.Errorf("analysed=%v max_items=%v", n.analysed, *n.maxItems)
				}
			}},
		{"not fresh", nodeInfo{state: StateComplete, fresh: true}, event{kind: evNotFresh}, StateComplete, false, nil},
		{"configuration read: retractions not notified", nodeInfo{state: StateComplete, fresh: true, capacity: 10, capSource: "config"},
			event{kind: evConfigRead, capacity: 10, capSource: "config", silentRetracts: true}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if !n.silentRetracts || n.followed() {
					t.Errorf("silent=%v followed=%v", n.silentRetracts, n.followed())
				}
			}},
		{"configuration unreadable: the service's default, the capacity kept", nodeInfo{state: StateComplete, fresh: true, capacity: 10, capSource: "config", publishModel: "open"},
			event{kind: evConfigRead, unreadable: true, silentRetracts: true}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if !n.silentRetracts || n.capacity != 10 || n.capSource != "config" || n.publishModel != "open" {
					t.Errorf("silent=%v capacity=%d %q publish model %q", n.silentRetracts, n.capacity, n.capSource, n.publishModel)
				}
			}},
		{"configured: max_items forgets the capacity", nodeInfo{state: StateComplete, fresh: true, capacity: 7, capSource: "learned", capCandidate: 5},
			event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(4)}, StateComplete, false,
			func(t *testing.T, n nodeInfo) {
				if n.capacity != 0 || n.capSource != "" || n.capCandidate != 0 || n.limit() != 0 {
					t.Errorf("capacity %d %q candidate %d limit %d", n.capacity, n.capSource, n.capCandidate, n.limit())
				}
			}},
		{"configured: the same max_items keeps the capacity", nodeInfo{state: StateComplete, fresh: true, capacity: 7, capSource: "config"},
			event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(7)}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.capacity != 7 || n.capSource != "config" {
					t.Errorf("capacity %d %q", n.capacity, n.capSource)
				}
				n = apply(n, event{kind: evConfigured, maxItemsSet: true, maxItems: intPtr(7)}, now)
				if n.capacity != 7 {
					t.Errorf("repeated: capacity %d", n.capacity)
				}
			}},
		{"configuration unreadable after a disconnection: notified or default silence checks", nodeInfo{state: StateComplete, retractOwn: true, wasOffline: true},
			event{kind: evConfigRead, unreadable: true, silentRetracts: true}, StateComplete, false,
			func(t *testing.T, n nodeInfo) {
				if !n.silentRetracts {
					t.Error("a node maybe created again with the default (silent) is followed")
				}
			}},
		{"configuration unreadable after a notified notify_retract: the node's stands", nodeInfo{state: StateComplete, fresh: true},
			configured(func(name string) ([]string, bool) { return []string{"0"}, name == "pubsub#notify_retract" }), StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				n = apply(n, event{kind: evConfigRead, unreadable: true, silentRetracts: false}, now)
				if !n.silentRetracts || n.followed() {
					t.Errorf("silent=%v: the service's default replaced what the node's notification said", n.silentRetracts)
				}
			}},
		{"configured: notify_retract turned on", nodeInfo{state: StateComplete, fresh: true, silentRetracts: true},
			configured(func(name string) ([]string, bool) { return []string{"true"}, name == "pubsub#notify_retract" }), StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.silentRetracts {
					t.Error("still silent")
				}
			}},
		{"configured: notify_retract turned off", nodeInfo{state: StateComplete, fresh: true},
			configured(func(name string) ([]string, bool) { return []string{"0"}, name == "pubsub#notify_retract" }), StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if !n.silentRetracts || n.followed() {
					t.Errorf("silent=%v followed=%v", n.silentRetracts, n.followed())
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := apply(tt.from, tt.ev, now)
			if got.state != tt.state || got.fresh != tt.fresh {
				t.Errorf("state=%s fresh=%v, want %s %v", got.state, got.fresh, tt.state, tt.fresh)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{0, 30 * time.Second}, {1, 30 * time.Second}, {2, time.Minute}, {3, 2 * time.Minute}, {8, 64 * time.Minute / 1}, {50, time.Hour}} {
		want := min(tt.want, time.Hour)
		if got := backoff(tt.n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fresh := nodeInfo{state: StateComplete, fresh: true, analysed: true, analysis: analysis{toSync: true}}
	stale := nodeInfo{state: StateComplete, analysed: true, analysis: analysis{toSync: true}, subscribed: true}
	silent := fresh
	silent.silentRetracts = true
	rsm := &wire.RSMQuery{Max: intPtr(10)}
	noRSM := xep0060.ItemsRequest{}
	paged := xep0060.ItemsRequest{RSM: rsm}
	other := xep0060.ItemsRequest{SubID: "s"}
	pages := unknownBehaviour()
	pages.RSM = serviceprofile.RsmYes
	online := facts{enabled: true, online: true, beh: pages, total: 30, cursor: -1}
	offline := facts{enabled: true, beh: pages, total: 30, cursor: -1}
	pending := online
	pending.pending = true
	tests := []struct {
		name  string
		n     nodeInfo
		known bool
		req   xep0060.ItemsRequest
		f     facts
		act   action
		sync  bool
	}{
		{"complete fresh", fresh, true, noRSM, online, actServe, false},
		{"complete fresh, rsm", fresh, true, paged, online, actServe, false},
		{"complete fresh, retractions not notified: served once checked", silent, true, noRSM, online, actServe, false},
		{"retractions not notified, offline: stale answer", silent, true, noRSM, offline, actServeStale, false},
		{"no-cache", fresh, true, xep0060.ItemsRequest{NoCache: true}, online, actBypass, false},
		{"cache disabled", fresh, true, noRSM, facts{online: true}, actBypass, false},
		{"unknown node", nodeInfo{}, false, noRSM, online, actNetwork, false},
		{"complete fresh, sub id or mixed rsm", fresh, true, other, online, actNetwork, false},
		{"partial, rsm", nodeInfo{state: StatePartial, analysis: analysis{toSync: true}}, true, paged, online, actNetwork, false},
		{"complete fresh, own publish pending", fresh, true, noRSM, pending, actNetwork, false},
		{"complete not fresh online: network and reconcile", stale, true, noRSM, online, actNetwork, true},
		{"complete not fresh, notifications not secured: no reconcile loop", nodeInfo{state: StateComplete, analysed: true}, true, noRSM, online, actNetwork, false},
		{"complete not fresh PEP: reconcile", nodeInfo{state: StateComplete, pep: true}, true, noRSM, online, actNetwork, true},
		{"complete offline: stale answer", stale, true, noRSM, offline, actServeStale, false},
		{"complete offline, rsm", stale, true, paged, offline, actServeStale, false},
		{"complete offline, sub id", stale, true, other, offline, actNetwork, false},
		{"never to sync: first get starts the sync", nodeInfo{state: StateNever, analysed: true, analysis: analysis{toSync: true}}, true, noRSM, online, actNetwork, true},
		{"never not analysed", nodeInfo{state: StateNever}, true, noRSM, online, actNetwork, false},
		{"never offline", nodeInfo{state: StateNever, analysed: true, analysis: analysis{toSync: true}}, true, noRSM, offline, actNetwork, false},
		{"no_sync", nodeInfo{state: StateNoSync, analysed: true}, true, noRSM, online, actNetwork, false},
		{"in progress", nodeInfo{state: StateInProgress, analysis: analysis{toSync: true}}, true, noRSM, online, actNetwork, false},
		{"partial", nodeInfo{state: StatePartial, analysis: analysis{toSync: true}}, true, noRSM, online, actNetwork, false},
		{"partial offline", nodeInfo{state: StatePartial, analysis: analysis{toSync: true}}, true, noRSM, offline, actNetwork, false},
		{"error due: retried", nodeInfo{state: StateError, analysis: analysis{toSync: true}, nextAttempt: now}, true, noRSM, online, actNetwork, true},
		{"error not due", nodeInfo{state: StateError, analysis: analysis{toSync: true}, nextAttempt: now.Add(time.Second)}, true, noRSM, online, actNetwork, false},
		{"rsm on a service that does not page", fresh, true, paged, facts{enabled: true, online: true, cursor: -1}, actNetwork, false},
		{"several ids, order unknown, not in node order", fresh, true, xep0060.ItemsRequest{ItemIDs: []string{"b", "a"}}, online, actNetwork, false},
		{"several ids, order unknown, in node order", fresh, true, xep0060.ItemsRequest{ItemIDs: []string{"a", "b"}}, facts{enabled: true, online: true, beh: pages, idsSorted: true}, actServe, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := decide(tt.n, tt.known, &tt.req, tt.f, now)
			if v.act != tt.act || v.startSync != tt.sync {
				t.Errorf("decide = %v, %v (%s); want %v, %v", v.act, v.startSync, v.why, tt.act, tt.sync)
			}
			if want := v.act == actServe && tt.n.silentRetracts; v.check != want {
				t.Errorf("check = %v, want %v", v.check, want)
			}
		})
	}
}

// TestAnswerableRSM: the RSM windows the cache answers, and the requests
// it leaves to the service (ejabberd's index reporting).
func TestAnswerableRSM(t *testing.T) {
	ej := behaviour{RSM: serviceprofile.RsmYes, EmptyIndex: "minus_one", BeforeIndex: "unclamped"}
	unlearned := behaviour{RSM: serviceprofile.RsmYes}
	s := func(v string) *string { return &v }
	tests := []struct {
		name            string
		q               wire.RSMQuery
		beh             behaviour
		cursor          int
		ok              bool
		start, end, idx int
		noIndex         bool
	}{
		{"first page", wire.RSMQuery{Max: intPtr(10)}, ej, -1, true, 0, 10, 0, false},
		{"index", wire.RSMQuery{Max: intPtr(10), Index: intPtr(25)}, ej, -1, true, 25, 30, 25, false},
		{"index past the end", wire.RSMQuery{Max: intPtr(10), Index: intPtr(30)}, ej, -1, false, 0, 0, 0, false},
		{"after a known cursor", wire.RSMQuery{Max: intPtr(10), After: s("c")}, ej, 4, true, 5, 15, 5, false},
		{"after an unknown cursor", wire.RSMQuery{Max: intPtr(10), After: s("c")}, ej, -1, false, 0, 0, 0, false},
		{"last page", wire.RSMQuery{Max: intPtr(10), Before: s("")}, ej, -1, true, 20, 30, 20, false},
		{"before a cursor near the start (unclamped)", wire.RSMQuery{Max: intPtr(10), Before: s("c")}, ej, 3, true, 0, 3, -7, false},
		{"before a cursor, index kind unknown", wire.RSMQuery{Max: intPtr(10), Before: s("c")}, unlearned, 3, false, 0, 0, 0, false},
		{"count only", wire.RSMQuery{Max: intPtr(0)}, ej, -1, true, 0, 0, -1, false},
		{"count only, empty index unknown", wire.RSMQuery{Max: intPtr(0)}, unlearned, -1, false, 0, 0, 0, false},
		{"count only, no index", wire.RSMQuery{Max: intPtr(0)}, behaviour{RSM: serviceprofile.RsmYes, EmptyIndex: "absent"}, -1, true, 0, 0, 0, true},
		{"negative max", wire.RSMQuery{Max: intPtr(-1)}, ej, -1, false, 0, 0, 0, false},
		{"after and before", wire.RSMQuery{After: s("a"), Before: s("b")}, ej, 2, false, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			w, why, ok := answerable(&xep0060.ItemsRequest{RSM: &q}, facts{beh: tt.beh, total: 30, cursor: tt.cursor})
			if ok != tt.ok {
				t.Fatalf("answerable = %v (%s), want %v", ok, why, tt.ok)
			}
			if !ok {
				return
			}
			if w.start != tt.start || w.end != tt.end || w.count != 30 || (w.index == nil) != tt.noIndex || w.index != nil && *w.index != tt.idx {
				t.Errorf("window = %+v (index %v), want [%d,%d) index %d", w, w.index, tt.start, tt.end, tt.idx)
			}
		})
	}
}

func TestShapeOf(t *testing.T) {
	one := 1
	for _, c := range []struct {
		req  xep0060.ItemsRequest
		want shape
	}{
		{xep0060.ItemsRequest{}, shapeNoRSM},
		{xep0060.ItemsRequest{MaxItems: 3}, shapeNoRSM},
		{xep0060.ItemsRequest{ItemIDs: []string{"a"}}, shapeNoRSM},
		{xep0060.ItemsRequest{RSM: &wire.RSMQuery{Max: &one}}, shapeRSM},
		{xep0060.ItemsRequest{RSM: &wire.RSMQuery{Max: &one}, MaxItems: 2}, shapeOther},
		{xep0060.ItemsRequest{SubID: "s"}, shapeOther},
	} {
		if got := shapeOf(&c.req); got != c.want {
			t.Errorf("shapeOf(%+v) = %v, want %v", c.req, got, c.want)
		}
	}
}

// wasOffline checks the node's wasOffline flag.
func wasOffline(want bool) func(t *testing.T, n nodeInfo) {
	return func(t *testing.T, n nodeInfo) {
		t.Helper()
		if n.wasOffline != want {
			t.Errorf("wasOffline=%v, want %v", n.wasOffline, want)
		}
	}
}
