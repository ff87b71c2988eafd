package pubsubcache

import (
	"time"

	"example.org/backend/ent/pubsubnode"
)

// State is a node's synchronisation state (the sync_state column).
type State = pubsubnode.SyncState

// The states (DESIGN §6): never synced, analysed and not to sync, in
// progress, complete, partial, error.
const (
	StateNever      = pubsubnode.SyncStateNever
	StateNoSync     = pubsubnode.SyncStateNoSync
	StateInProgress = pubsubnode.SyncStateInProgress
	StateComplete   = pubsubnode.SyncStateComplete
	StatePartial    = pubsubnode.SyncStatePartial
	StateError      = pubsubnode.SyncStateError
)

// nodeKey identifies a cached node: the cache is keyed by profile.
type nodeKey struct{ profile, service, node string }

// nodeInfo is the in-memory copy of a pubsub_nodes row (the row is the
// truth; every change is written to it first).
type nodeInfo struct {
	id        int
	profileID int
	// Analysis: analysed is false until the node was analysed under
	// version; analyser is "" when nothing matched.
	analysed bool
	version  int64
	analyser string
	typ      string
	subtype  string
	toSync   bool

	state      State
	fresh      bool
	subscribed bool
	// pep: the service is a user's PEP service (+notify secures notifications).
	pep         bool
	attempts    int
	nextAttempt time.Time
	lastError   string
	syncedAt    time.Time
	// maxItems is the node's pubsub#max_items when known (-1: "max").
	maxItems *int
}

// evKind is what happened to a node.
type evKind int

const (
	// evAnalysed: the node was analysed (toSync says what the analyser says).
	evAnalysed evKind = iota
	// evSyncStarted: a sync (or a reconciliation) started.
	evSyncStarted
	// evSyncDone: the whole node (or item_limit items: partial) is stored;
	// secured says notifications flow (subscription or +notify).
	evSyncDone
	// evSyncFailed: the sync failed (err).
	evSyncFailed
	// evPurged: `cache purge` removed items; remaining says how many are left.
	evPurged
	// evDisconnected: the profile's session ended.
	evDisconnected
	// evRestarted: the daemon started (nothing is fresh; a sync that was
	// running is gone).
	evRestarted
	// evSubscriptionGone: the profile's subscription ended: notifications
	// stop, the node is no longer served.
	evSubscriptionGone
	// evReanalyse: the analyser set changed; the node must be analysed again.
	evReanalyse
	// evOverLimit: notifications took the node beyond cache.item_limit
	// (the oldest items were dropped): it is partial.
	evOverLimit
)

// event is one input of the state machine.
type event struct {
	kind      evKind
	toSync    bool
	partial   bool
	secured   bool
	err       string
	remaining int
}

// backoff is the delay before the next attempt after n failed attempts.
func backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := 30 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// apply is the state machine: it returns n after e at time now.
func apply(n nodeInfo, e event, now time.Time) nodeInfo {
	switch e.kind {
	case evAnalysed:
		n.analysed = true
		n.toSync = e.toSync
		switch {
		case n.state == StateInProgress || n.state == StateComplete || n.state == StatePartial:
			// A node already (being) synced stays so: `cache sync` syncs
			// nodes whatever the analysers say.
		case e.toSync && n.state == StateNoSync:
			n.state = StateNever
		case !e.toSync && n.state == StateNever:
			n.state = StateNoSync
		}
	case evSyncStarted:
		n.state = StateInProgress
		n.fresh = false
	case evSyncDone:
		n.attempts = 0
		n.nextAttempt = time.Time{}
		n.lastError = ""
		n.syncedAt = now
		if e.partial {
			n.state = StatePartial
			n.fresh = false
		} else {
			n.state = StateComplete
			n.fresh = e.secured
		}
	case evSyncFailed:
		n.state = StateError
		n.fresh = false
		n.attempts++
		n.lastError = e.err
		n.nextAttempt = now.Add(backoff(n.attempts))
	case evPurged:
		n.fresh = false
		switch {
		case n.state == StateInProgress:
		case e.remaining > 0:
			n.state = StatePartial
		case n.state == StateComplete || n.state == StatePartial:
			n.state = StateNever
		}
	case evDisconnected:
		n.fresh = false
	case evRestarted:
		n.fresh = false
		if n.state == StateInProgress {
			// The sync died with the daemon: start again (items already
			// stored are kept and reconciled by the next sync).
			n.state = StateNever
		}
	case evSubscriptionGone:
		n.fresh = false
		n.subscribed = false
		if n.state == StateComplete || n.state == StatePartial || n.state == StateNever || n.state == StateError {
			n.state = StateNoSync
		}
	case evReanalyse:
		n.analysed = false
	case evOverLimit:
		if n.state == StateComplete {
			n.state = StatePartial
			n.fresh = false
		}
	}
	return n
}

// Request shapes the cache knows.
type shape int

const (
	// shapeNoRSM: no arguments, max_items or item ids (order_by allowed).
	shapeNoRSM shape = iota
	// shapeRSM: RSM paging (index, after, before, max), answered from the
	// cache on services that honour RSM (answerRSM tells).
	shapeRSM
	// shapeOther: sub id, RSM mixed with other arguments: the network.
	shapeOther
)

// action is what the GetItems handler does with a request.
type action int

const (
	// actNetwork: let the request go to the service.
	actNetwork action = iota
	// actServe: answer from the cache.
	actServe
	// actServeStale: answer from the cache with stale: true (profile offline).
	actServeStale
)

// decide says how to answer a request of shape s on node n, and whether a
// background sync should start. online says the profile is connected;
// pending says the profile published items whose server copy has not
// arrived yet.
func decide(n nodeInfo, s shape, online, pending bool, now time.Time) (act action, startSync bool) {
	switch n.state {
	case StateNever:
		startSync = n.analysed && n.toSync && online
	case StateError:
		startSync = n.toSync && online && !now.Before(n.nextAttempt)
	case StateComplete:
		if !n.fresh && online && (n.subscribed || n.pep) {
			// Reconcile: a node that is not fresh (and whose notifications
			// can be secured) is synced again.
			startSync = true
		}
	}
	if s == shapeOther || n.state != StateComplete {
		return actNetwork, startSync
	}
	switch {
	case !online:
		return actServeStale, false
	case n.fresh && !pending:
		return actServe, false
	}
	return actNetwork, startSync
}
