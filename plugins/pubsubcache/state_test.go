package pubsubcache

import (
	"testing"
	"time"

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
		{"analysed to sync", nodeInfo{state: StateNever}, event{kind: evAnalysed, toSync: true}, StateNever, false,
			func(t *testing.T, n nodeInfo) {
				if !n.analysed || !n.toSync {
					t.Errorf("analysed=%v toSync=%v", n.analysed, n.toSync)
				}
			}},
		{"analysed not to sync", nodeInfo{state: StateNever}, event{kind: evAnalysed}, StateNoSync, false, nil},
		{"no_sync becomes to sync", nodeInfo{state: StateNoSync}, event{kind: evAnalysed, toSync: true}, StateNever, false, nil},
		{"manually synced node stays complete", nodeInfo{state: StateComplete, fresh: true}, event{kind: evAnalysed}, StateComplete, true, nil},
		{"sync starts", nodeInfo{state: StateNever}, event{kind: evSyncStarted}, StateInProgress, false, nil},
		{"reconcile starts", nodeInfo{state: StateComplete, fresh: true}, event{kind: evSyncStarted}, StateInProgress, false, nil},
		{"sync done secured", nodeInfo{state: StateInProgress, attempts: 3, lastError: "x", nextAttempt: now}, event{kind: evSyncDone, secured: true}, StateComplete, true,
			func(t *testing.T, n nodeInfo) {
				if n.attempts != 0 || n.lastError != "" || !n.nextAttempt.IsZero() || !n.syncedAt.Equal(now) {
					t.Errorf("error bookkeeping not reset: %+v", n)
				}
			}},
		{"sync done without notifications", nodeInfo{state: StateInProgress}, event{kind: evSyncDone}, StateComplete, false, nil},
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
		{"disconnect", nodeInfo{state: StateComplete, fresh: true}, event{kind: evDisconnected}, StateComplete, false, nil},
		{"restart mid-sync", nodeInfo{state: StateInProgress}, event{kind: evRestarted}, StateNever, false, nil},
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
	fresh := nodeInfo{state: StateComplete, fresh: true, analysed: true, toSync: true}
	stale := nodeInfo{state: StateComplete, analysed: true, toSync: true, subscribed: true}
	tests := []struct {
		name    string
		n       nodeInfo
		s       shape
		online  bool
		pending bool
		act     action
		sync    bool
	}{
		{"complete fresh", fresh, shapeNoRSM, true, false, actServe, false},
		{"complete fresh, rsm", fresh, shapeRSM, true, false, actServe, false},
		{"complete fresh, sub id or mixed rsm", fresh, shapeOther, true, false, actNetwork, false},
		{"partial, rsm", nodeInfo{state: StatePartial, toSync: true}, shapeRSM, true, false, actNetwork, false},
		{"complete fresh, own publish pending", fresh, shapeNoRSM, true, true, actNetwork, false},
		{"complete not fresh online: network and reconcile", stale, shapeNoRSM, true, false, actNetwork, true},
		{"complete not fresh, notifications not secured: no reconcile loop", nodeInfo{state: StateComplete, analysed: true}, shapeNoRSM, true, false, actNetwork, false},
		{"complete not fresh PEP: reconcile", nodeInfo{state: StateComplete, pep: true}, shapeNoRSM, true, false, actNetwork, true},
		{"complete offline: stale answer", stale, shapeNoRSM, false, false, actServeStale, false},
		{"complete offline, rsm", stale, shapeRSM, false, false, actServeStale, false},
		{"complete offline, sub id", stale, shapeOther, false, false, actNetwork, false},
		{"never to sync: first get starts the sync", nodeInfo{state: StateNever, analysed: true, toSync: true}, shapeNoRSM, true, false, actNetwork, true},
		{"never not analysed", nodeInfo{state: StateNever}, shapeNoRSM, true, false, actNetwork, false},
		{"never offline", nodeInfo{state: StateNever, analysed: true, toSync: true}, shapeNoRSM, false, false, actNetwork, false},
		{"no_sync", nodeInfo{state: StateNoSync, analysed: true}, shapeNoRSM, true, false, actNetwork, false},
		{"in progress", nodeInfo{state: StateInProgress, toSync: true}, shapeNoRSM, true, false, actNetwork, false},
		{"partial", nodeInfo{state: StatePartial, toSync: true}, shapeNoRSM, true, false, actNetwork, false},
		{"partial offline", nodeInfo{state: StatePartial, toSync: true}, shapeNoRSM, false, false, actNetwork, false},
		{"error due: retried", nodeInfo{state: StateError, toSync: true, nextAttempt: now}, shapeNoRSM, true, false, actNetwork, true},
		{"error not due", nodeInfo{state: StateError, toSync: true, nextAttempt: now.Add(time.Second)}, shapeNoRSM, true, false, actNetwork, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act, sync := decide(tt.n, tt.s, tt.online, tt.pending, now)
			if act != tt.act || sync != tt.sync {
				t.Errorf("decide = %v, %v; want %v, %v", act, sync, tt.act, tt.sync)
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
