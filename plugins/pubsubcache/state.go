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

// nodeInfo is a node's state: the memory copy of its pubsub_nodes row. It
// changes only through apply, in the writer (nodes.go).
type nodeInfo struct {
	id        int
	profileID int
	// Analysis: analysed is false until the node was analysed under
	// version; analyser is "" when nothing matched. toSync and parser are
	// what the analyser declares (derived from the registry, not stored).
	analysed bool
	version  int64
	analysis

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
	// capacity is how many items the service keeps in the node (0:
	// unknown), capSource where it was learned: "config" (its
	// pubsub#max_items), "config_range" (the range behind "max" in the
	// configuration form) or "learned" (the service dropped items when it
	// held that many). verified is how many items the service held at the
	// last whole listing or check; while capacity is unknown, holding more
	// than that (notifications) asks for a check (verifying) before the
	// node is served again: the service may have dropped items silently.
	capacity  int
	capSource string
	verified  int
	verifying bool
	// capCandidate is a capacity one check suggested (the service dropped
	// items when it held that many): learned once a second check agrees.
	capCandidate int
	// publishModel is the node's pubsub#publish_model when its
	// configuration could be read ("" unknown).
	publishModel string
	// silentRetracts: the node's pubsub#notify_retract is 0 (read in its
	// configuration, or, when the profile cannot read it, in the service's
	// default configuration: ejabberd's PEP nodes): retractions and purges
	// are notified to no one (a retraction whose publisher asked for it is),
	// and the cached copy may keep what the service removed. Reads of such a
	// node are answered from the cache only once the service's id listing
	// of it matches the cached ids (decide's verdict.check).
	silentRetracts bool
	// retractOwn: silentRetracts is the node's own (read in its
	// configuration, or notified with a change of it), not the service's
	// default: a later unreadable configuration read keeps it. Memory only.
	retractOwn bool
	// wasOffline: the profile was disconnected (or the daemon stopped)
	// since the node's last whole listing: the cached order may not be the
	// service's (items removed meanwhile), and the items a service sends
	// again at the next presence (ejabberd's last published item) look like
	// re-publishes: no lesson on where re-published items go is drawn
	// until a listing ends (SOAK_SEED=401). Memory only.
	wasOffline bool
	// resume: a sync of the node was interrupted (disconnection, server
	// restart, daemon stop): it starts again when the profile connects.
	resume bool
	// method is how the last sync made the node complete (reconcile.go:
	// methodFull, methodIDsNewest, methodIDs; "" none since the daemon
	// started). Not stored: memory only.
	method string
}

// followed reports whether the node's notifications tell every change of
// its items, retractions and purges included (else reads are checked).
func (n nodeInfo) followed() bool { return !n.silentRetracts }

// limit is the number of items the service keeps in the node, 0 when
// unknown.
func (n nodeInfo) limit() int {
	return n.capacity
}

// analysis is what the analysers decided for a node.
type analysis struct {
	analyser, typ, subtype string
	toSync                 bool
	// parser: the analyser has a parser (its items are parsed).
	parser bool
}

// cached reports whether the cache holds (or is storing) items of the node.
func (n nodeInfo) cached() bool {
	return n.state == StateComplete || n.state == StatePartial || n.state == StateInProgress
}

// evKind is what happened to a node.
type evKind int

const (
	// evAnalysed: the node was analysed (analysis, under version).
	evAnalysed evKind = iota
	// evSyncStarted: a sync (or a reconciliation) started.
	evSyncStarted
	// evSyncDone: the whole node (or item_limit items: partial) is stored;
	// secured says notifications flow (subscription or +notify) and were
	// not overtaken by a change the listing may have missed; subscribed
	// says the profile is subscribed.
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
	// evReanalyse: the analysers that apply changed (cache.analysers); the
	// node must be analysed again.
	evReanalyse
	// evOverLimit: notifications took the node beyond cache.item_limit
	// (the oldest items were dropped): it is partial.
	evOverLimit
	// evConfigured: the node's configuration changed (maxItemsSet:
	// pubsub#max_items is maxItems, nil when unreadable). It is analysed
	// again; a lowered max_items makes a cached node not fresh (servers
	// differ in when they drop the extra items: the listing tells).
	evConfigured
	// evNotFresh: what is cached may differ from the service (a
	// re-published item's place is unknown, a published item could not be
	// fetched, the profile's cache was turned off): the node goes to the
	// network until reconciled.
	evNotFresh
	// evSyncInterrupted: the sync stopped because the profile's session
	// ended (a disconnection, a server restart): not a failure (no
	// backoff); it starts again when the profile connects.
	evSyncInterrupted
	// evConfigRead: the node's configuration was read: capacity (0:
	// unknown) from capSource, publishModel, silentRetracts; or, when
	// unreadable, only silentRetracts from the service's default
	// configuration.
	evConfigRead
	// evUnverified: the node holds more items than the service was seen
	// holding while its capacity is unknown: a check runs.
	evUnverified
	// evVerified: the check (or a whole listing) found remaining items on
	// the service; learned > 0 when the service had dropped items at that
	// count (its capacity).
	evVerified
)

// event is one input of the state machine.
type event struct {
	kind evKind
	// evAnalysed
	analysis analysis
	version  int64
	// evSyncDone
	partial, secured, subscribed bool
	// evSyncFailed
	err string
	// evPurged
	remaining int
	// evConfigured
	maxItemsSet bool
	maxItems    *int
	// evConfigRead (unreadable: only silentRetracts, from the service's
	// default configuration); evConfigured: silentRetracts when
	// retractSet (the new configuration has pubsub#notify_retract).
	capacity                   int
	capSource                  string
	publishModel               string
	unreadable                 bool
	silentRetracts, retractSet bool
	// evSyncDone: method is how the node was listed (reconcile.go).
	method string
	// evSyncDone, evVerified: how many items the service holds; evVerified:
	// learned is the capacity the check learned (0: none).
	count, learned int
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

// apply is the state machine: it returns n after e at time now. It is the
// only way a node's state changes.
func apply(n nodeInfo, e event, now time.Time) nodeInfo {
	switch e.kind {
	case evAnalysed:
		n.analysed = true
		n.version = e.version
		n.analysis = e.analysis
		switch {
		case n.state == StateInProgress || n.state == StateComplete || n.state == StatePartial:
			// A node already (being) synced stays so: `cache sync` syncs
			// nodes whatever the analysers say.
		case e.analysis.toSync && n.state == StateNoSync:
			n.state = StateNever
		case !e.analysis.toSync && n.state == StateNever:
			n.state = StateNoSync
		}
	case evSyncStarted:
		n.state = StateInProgress
		n.fresh = false
		n.resume = false
	case evSyncDone:
		n.attempts = 0
		n.nextAttempt = time.Time{}
		n.lastError = ""
		n.syncedAt = now
		n.subscribed = e.subscribed
		n.method = e.method
		n.verified, n.verifying = e.count, false
		if n.capSource == "learned" && e.count > n.capacity {
			// The service holds more than it was seen keeping: it was no
			// capacity (a removal that looked like one).
			n.capacity, n.capSource = 0, ""
		}
		if e.partial {
			n.state = StatePartial
			n.fresh = false
		} else {
			n.state = StateComplete
			n.fresh = e.secured
			n.wasOffline = false
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
		n.verifying = false
		n.wasOffline = true
	case evRestarted:
		n.fresh = false
		n.verifying = false
		n.wasOffline = true
		if n.state == StateInProgress {
			// The sync died with the daemon: start again when the profile
			// connects (items already stored are kept and reconciled by
			// the next sync).
			n.state = StateNever
			n.resume = true
		}
	case evSyncInterrupted:
		n.fresh = false
		n.wasOffline = true
		if n.state == StateInProgress {
			n.state = StateNever
			n.resume = true
			n.lastError = "interrupted: " + e.err
		}
	case evConfigRead:
		if e.unreadable {
			// The service's default: what the node's own configuration
			// said, when notified, stands (ejabberd's notify_config).
			switch {
			case !n.retractOwn:
				n.silentRetracts = e.silentRetracts
			case n.wasOffline:
				// The node may have been deleted and created again
				// meanwhile, with the default: checked if either says so.
				n.silentRetracts = n.silentRetracts || e.silentRetracts
			}
			break
		}
		n.silentRetracts, n.retractOwn = e.silentRetracts, true
		n.publishModel = e.publishModel
		switch {
		case e.capacity > 0:
			n.capacity, n.capSource = e.capacity, e.capSource
		case n.capSource != "learned":
			n.capacity, n.capSource = 0, ""
		}
	case evUnverified:
		if n.limit() == 0 {
			n.verifying = true
		}
	case evVerified:
		n.verified, n.verifying = e.count, false
		switch {
		case e.learned > 0 && e.learned == n.capCandidate:
			n.capacity, n.capSource, n.capCandidate = e.learned, "learned", 0
		case e.learned > 0:
			n.capCandidate = e.learned
		case e.count > n.capCandidate:
			n.capCandidate = 0 // the service holds more: no capacity there
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
	case evConfigured:
		n.analysed = false // analysed again on next use (no network request)
		if e.retractSet {
			n.silentRetracts, n.retractOwn = e.silentRetracts, true
		}
		if e.maxItemsSet {
			if lowers(n.knownMax(), e.maxItems) && n.cached() {
				n.fresh = false
			}
			// A changed max_items: a capacity read, learned or candidate
			// before is not the node's any more. The new value is not
			// taken as a bound the cache trims the node to: ejabberd
			// counts it per publisher (SOAK_SEED=4 SOAK_STEPS=30): the
			// node holds more once several publish. Unknown, the capacity
			// is checked against the service when the node holds more
			// than it was seen holding (verify.go), and learned again. A
			// configuration that repeats it (ejabberd notifies the whole
			// form) changes nothing.
			if maxItemsChanged(n, e.maxItems) {
				n.capacity, n.capSource, n.capCandidate = 0, "", 0
			}
			n.maxItems = e.maxItems
		}
	case evNotFresh:
		n.fresh = false
	}
	return n
}

// lowers reports whether a new pubsub#max_items (next) is a lower cap than
// the current one (cur; nil or -1: none known).
// knownMax is what n knows of the node's max_items: the last one a
// configuration gave, else its capacity (nil: unknown).
func (n nodeInfo) knownMax() *int {
	switch {
	case n.maxItems != nil:
		return n.maxItems
	case n.capacity > 0:
		c := n.capacity
		return &c
	}
	return nil
}

// maxItemsChanged reports whether next (a configuration's max_items)
// differs from what n knew (knownMax).
func maxItemsChanged(n nodeInfo, next *int) bool {
	cur := n.knownMax()
	return next == nil || cur == nil || *cur != *next
}

func lowers(cur, next *int) bool {
	return next != nil && *next > 0 && (cur == nil || *cur <= 0 || *next < *cur)
}
