package pubsubcache

import (
	"strings"
	"testing"

	"example.org/backend/ent/serviceprofile"
)

func TestMethodFor(t *testing.T) {
	moves, keeps, unknown := unknownBehaviour(), unknownBehaviour(), unknownBehaviour()
	moves.RepublishMoves = serviceprofile.RepublishMovesYes
	keeps.RepublishMoves = serviceprofile.RepublishMovesNo
	stale := nodeInfo{state: StateComplete}
	for _, tc := range []struct {
		name   string
		n      nodeInfo
		beh    behaviour
		mode   string
		manual bool
		want   string
	}{
		{"moves: by difference", stale, moves, reconcileExact, false, methodIDsNewest},
		{"moves under ids", stale, moves, reconcileIDs, false, methodIDsNewest},
		{"keeps place: updates invisible", stale, keeps, reconcileExact, false, methodFull},
		{"keeps place, ids asked", stale, keeps, reconcileIDs, false, methodIDs},
		{"unknown behaviour", stale, unknown, reconcileIDs, false, methodFull},
		{"full asked", stale, moves, reconcileFull, false, methodFull},
		{"cache sync", stale, moves, reconcileExact, true, methodFull},
		{"never synced", nodeInfo{state: StateNever}, moves, reconcileExact, false, methodFull},
		{"interrupted", nodeInfo{state: StateNever, resume: true}, moves, reconcileExact, false, methodFull},
		{"partial", nodeInfo{state: StatePartial}, moves, reconcileExact, false, methodFull},
		{"in error", nodeInfo{state: StateError}, moves, reconcileExact, false, methodFull},
	} {
		if got := methodFor(tc.n, tc.beh, tc.mode, tc.manual); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNewestWindow(t *testing.T) {
	// The cache held a..f in that order; page is the service's newest
	// items (its order), held its id listing; changed ids have another
	// payload than cached.
	pos := map[string]int64{"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, "n": 6}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	for _, tc := range []struct {
		name, held, page, changed string
		whole                     bool
		start                     int
		ok                        bool
	}{
		{"nothing changed", "a,b,c,d,e,f", "d,e,f", "", false, 3, true},
		{"additions after the newest", "a,b,c,d,e,f,g,h", "e,f,g,h", "", false, 2, true},
		{"retraction of the newest", "a,b,c,d,e", "c,d,e", "", false, 3, true},
		{"update moved to the end", "a,b,c,d,e,f", "d,e,f,b", "b", false, 3, true},
		{"unchanged re-publish moved to the end", "a,b,c,d,e,f", "e,f,b", "", false, 2, true},
		{"update of the newest, in place", "a,b,c,d,e,f", "d,e,f", "f", false, 2, true},
		{"additions beyond the page", "a,b,c,d,e,f,g,h,i", "g,h,i", "", false, 0, false},
		{"every item changed, page not whole", "a,b,c,d,e,f", "e,f,a,b", "a,b,e,f", false, 0, false},
		{"whole page, no anchor", "a,b", "b,a", "a,b", true, 0, true},
		{"purged and refilled", "x,y", "x,y", "", true, 0, true},
		{"addition retracted since the listing", "a,b,c,d,e,f,g", "e,f", "", true, 2, true},
		{"re-published out of order: anchor before", "a,b,c,d,e,f", "c,d,f,e", "", false, 3, true},
		// n was notified after the reconnection (stored: unchanged) above
		// c, updated offline: n is no anchor, c is stored again.
		{"update below a live notification", "a,b,c,d,e,f,n", "d,e,f,c,n", "c", false, 3, true},
		// b updated offline, then e re-published unchanged: b is in the
		// page below e, e is no anchor.
		{"update below an unchanged re-publish", "a,b,c,d,e", "c,d,b,e", "b", false, 2, true},
		// Updates reach the bottom of the page: a larger page is needed.
		{"changed items down to the page's start", "a,b,c,d,e,f", "e,f,b,c", "e,b,c", false, 0, false},
	} {
		changed := map[string]bool{}
		for _, id := range split(tc.changed) {
			changed[id] = true
		}
		start, ok := newestWindow(split(tc.page), split(tc.held), pos, func(id string) bool { return !changed[id] }, tc.whole)
		if start != tc.start || ok != tc.ok {
			t.Errorf("%s: start %d ok %v, want %d %v", tc.name, start, ok, tc.start, tc.ok)
		}
	}
}

func TestCounted(t *testing.T) {
	pos := map[string]int64{"a": 0, "b": 1, "c": 2, "d": 3}
	same := func(string) bool { return true }
	for _, tc := range []struct {
		name  string
		page  []string
		count int
		start int
		ok    bool
	}{
		{"nothing changed", []string{"c", "d"}, 4, 2, true},
		{"two added", []string{"d", "e", "f"}, 6, 1, true},
		{"one added, one retracted", []string{"d", "e"}, 4, 0, false},
		{"one retracted", []string{"c", "d"}, 3, 0, false},
	} {
		held := []string{"a", "b", "c", "d"}
		held = append(held, tc.page...)
		start, ok := counted(tc.page, held, pos, same, false, tc.count)
		if ok != tc.ok || ok && start != tc.start {
			t.Errorf("%s: start %d ok %v, want %d %v", tc.name, start, ok, tc.start, tc.ok)
		}
	}
}
