package pubsubcache

import (
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
)

// Request shapes the cache knows.
type shape int

const (
	// shapeNoRSM: no arguments, max_items or item ids (order_by allowed).
	shapeNoRSM shape = iota
	// shapeRSM: RSM paging (index, after, before, max), answered from the
	// cache on services that honour RSM.
	shapeRSM
	// shapeOther: sub id, RSM mixed with other arguments: the network.
	shapeOther
)

// shapeOf classifies a request.
func shapeOf(req *xep0060.ItemsRequest) shape {
	switch {
	case req.SubID != "" || req.RSM != nil && (req.MaxItems > 0 || len(req.ItemIDs) > 0 || req.OrderBy != ""):
		return shapeOther
	case req.RSM != nil:
		return shapeRSM
	}
	return shapeNoRSM
}

// action is what the GetItems handler does with a request.
type action int

const (
	// actNetwork: let the request go to the service.
	actNetwork action = iota
	// actServe: answer from the cache.
	actServe
	// actServeStale: answer from the cache with stale: true (profile offline).
	actServeStale
	// actBypass: the request or the profile's settings say not to use the
	// cache (--no-cache, cache.enabled false).
	actBypass
)

// facts are what the decision needs beyond the node's state and the
// request. The server reads them before deciding (the item counts and
// cursor positions only for complete nodes: decide answers nothing else
// from the cache).
type facts struct {
	// enabled: the profile's cache.enabled.
	enabled bool
	// online: the profile has a connected session.
	online bool
	// pending: items the profile published (or re-published items being
	// placed, or notifications still queued for the writer) are not stored
	// yet: an answer now could miss what the service already has.
	pending bool
	beh     behaviour
	// total is the node's number of cached items (RSM shapes).
	total int
	// cursor is the index, in the node's order, of the item the request's
	// after or before cursor names, -1 when no cached item has it.
	cursor int
	// idsSorted: the cached items among the requested ids come in the
	// request's order in the node (several ids while the service's order
	// for them is not known).
	idsSorted bool
}

// verdict is the decision on one request.
type verdict struct {
	act action
	// startSync: a background sync (or reconciliation) should start.
	startSync bool
	// why names the rule that decided (logs, tests).
	why string
	// window is the RSM page to answer (shapeRSM, when served).
	window window
	// check (actServe): the node's retractions are notified to no one
	// (nodeInfo.silentRetracts): the service's id listing of the node
	// must match the cached ids before the cache answers.
	check bool
}

// window is an RSM answer read from the cache: the items [start, end) of
// the node's order, the node's count, and the first index to report (nil:
// the service reports none).
type window struct {
	start, end int
	count      int
	index      *int
}

// decide is the cache's hit/miss decision for every request shape: whether
// the request is answered from the cache (and which RSM window), goes to
// the network, or bypasses the cache, and whether a background sync should
// start. It is pure: n is the node's state (ok false: the cache knows
// nothing of the node), f what the server read.
func decide(n nodeInfo, ok bool, req *xep0060.ItemsRequest, f facts, now time.Time) verdict {
	if req.NoCache {
		return verdict{act: actBypass, why: "no-cache"}
	}
	if !f.enabled {
		return verdict{act: actBypass, why: "cache disabled"}
	}
	if !ok {
		return verdict{act: actNetwork, why: "unknown node"}
	}
	v := verdict{act: actNetwork, startSync: wantsSync(n, f.online, now)}
	switch {
	case n.state != StateComplete:
		v.why = "not complete (" + string(n.state) + ")"
		return v
	case shapeOf(req) == shapeOther:
		v.why = "shape not answered from the cache"
		return v
	case f.online && !n.fresh:
		v.why = "not fresh"
		return v
	case f.online && n.verifying:
		v.why = "checking what the service dropped"
		return v
	case f.online && f.pending:
		v.why = "writes pending"
		return v
	}
	w, why, can := answerable(req, f)
	if !can {
		v.why = why
		return v
	}
	v.window, v.startSync = w, false
	if f.online {
		v.act, v.why, v.check = actServe, "hit", !n.followed()
	} else {
		v.act, v.why = actServeStale, "offline"
	}
	return v
}

// wantsSync tells whether a node should be synced now: a to_sync node never
// synced, a failed one past its backoff, a complete one that is not fresh
// and whose notifications can be secured (reconciliation).
func wantsSync(n nodeInfo, online bool, now time.Time) bool {
	if !online {
		return false
	}
	switch n.state {
	case StateNever:
		return n.analysed && n.toSync
	case StateError:
		return n.toSync && !now.Before(n.nextAttempt)
	case StateComplete:
		return !n.fresh && (n.subscribed || n.pep)
	}
	return false
}

// answerable says whether the cached items answer req as the service would
// (window for RSM shapes); why says what is missing when not. `cache get`
// uses it too.
func answerable(req *xep0060.ItemsRequest, f facts) (w window, why string, ok bool) {
	if req.RSM == nil {
		if len(req.ItemIDs) > 1 && req.OrderBy == "" && f.beh.IDsOrder == serviceprofile.IdsOrderUnknown && !f.idsSorted {
			// Node order and request order differ: the service's choice is
			// not known yet (it is learned from the network answer).
			return w, "order of several ids not known", false
		}
		return w, "", true
	}
	q := req.RSM
	switch {
	case f.beh.RSM != serviceprofile.RsmYes:
		return w, "service does not page", false
	case q.After != nil && q.Before != nil || q.Index != nil && (q.After != nil || q.Before != nil):
		return w, "mixed RSM cursors", false
	case q.Max != nil && *q.Max < 0:
		return w, "negative max", false
	}
	total := f.total
	max := total
	if q.Max != nil {
		max = *q.Max
	}
	beforeCursor := false
	switch {
	case q.Index != nil:
		if *q.Index < 0 || *q.Index >= total {
			return w, "index past the end", false // ejabberd fails there
		}
		w.start = *q.Index
		w.end = min(total, w.start+max)
	case q.After != nil:
		if f.cursor < 0 {
			return w, "unknown cursor", false
		}
		w.start = f.cursor + 1
		w.end = min(total, w.start+max)
	case q.Before != nil && *q.Before == "":
		w.end = total
		w.start = max0(total - max)
	case q.Before != nil:
		if f.cursor < 0 {
			return w, "unknown cursor", false
		}
		w.end = f.cursor
		w.start = max0(w.end - max)
		beforeCursor = true
	default:
		w.start, w.end = 0, min(total, max)
	}
	w.start = min(w.start, w.end)
	w.count = total
	switch {
	case w.start == w.end:
		switch f.beh.EmptyIndex {
		case "minus_one":
			w.index = intPtr(-1)
		case "absent":
		default:
			return w, "index of an empty page not learned", false
		}
	case beforeCursor:
		switch f.beh.BeforeIndex {
		case "unclamped":
			w.index = intPtr(w.end - max)
		case "real":
			w.index = intPtr(w.start)
		case "present":
			if w.end-max < 0 {
				return w, "index of a before page cut by the start not learned", false
			}
			w.index = intPtr(w.start)
		case "absent":
		default:
			return w, "index of a before page not learned", false
		}
	default:
		w.index = intPtr(w.start)
	}
	return w, "", true
}

func max0(v int) int { return max(v, 0) }

func intPtr(v int) *int { return &v }
