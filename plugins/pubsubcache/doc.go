// Package pubsubcache is the built-in pubsub cache (DESIGN §6): it decides
// per node, through the analyser registry, which nodes to cache; syncs them
// whole (RSM pages where the service honours RSM, one request otherwise),
// storing each item's exact payload bytes; parses them out of the writer;
// answers items requests on complete, fresh nodes from the database with
// the ids, order and payload bytes the service would give; and keeps them
// fresh with notifications.
//
// # The parts
//
// Each part owns its state, says so in its doc comment, and is the only one
// to change it:
//
//   - state.go: a node's state (nodeInfo) and apply, the pure transitions:
//     the only way a node's state changes.
//   - writer.go, writes.go: the writer, one goroutine, the one owner of
//     node state and the only writer of cached items and nodes. It applies
//     notifications (many per transaction), sync pages, parse results,
//     purges and every transition, in arrival order, and publishes each
//     node's new state to the table once its transaction committed. It
//     never waits for the network or a parser.
//   - nodes.go: the node table, the memory copy of every node row (written
//     by the writer only, read by anyone).
//   - store.go, store_items.go: the node store: every SQL statement of the
//     package. It holds no state but the profile id cache.
//   - decide.go: decide, the hit/miss decision for every request shape
//     (pure): answer from the cache (which RSM window), go to the network,
//     or bypass; and whether a sync should start. answerable, the part of
//     it that says whether cached items answer a request as the service
//     would, is shared with `cache get`.
//   - serve.go: the server: the GetItems handler reads the facts decide
//     needs, calls it, and reads the answer from the store. It holds no
//     state.
//   - syncer.go: the syncer: it owns the running sync jobs, the
//     per-profile sync slots and the interrupted syncs to resume. A job
//     lists the node (again when an item was re-published meanwhile), hands
//     pages to the writer, and waits until every item is parsed (or the
//     parser is down).
//   - parsequeue.go: the parse queue: it owns the backlog of items to
//     parse (held in memory up to a bound, read back from the database
//     beyond it), one worker per analyser; results go to the writer.
//   - behaviour.go: the learner: it owns each service's behaviour profile
//     (learned from answers and probes, stored) and the re-published items
//     whose place is being learned.
//   - pending.go: the profile's own publishes waiting for their server
//     copy.
//   - analysis.go: node analysis (the analyser registry's match), run in
//     the background; the analyses in flight.
//   - events.go: the bus handlers (notifications and sessions become
//     writes and transitions); manage.go and api.go: `cache get|sync|
//     status|purge|reset`; searchindex.go: the search side table.
//
// Who may call what: bus handlers, the server and the API enqueue writes
// (writer.enqueue, do, run) and read the table and the store; only code
// running in the writer (a wtx) changes node state or items; the syncer
// and the parse queue talk to the network and the parsers and hand what
// they got to the writer.
//
// Freshness: a node is fresh when it is complete, its notifications are
// secured (subscription, or +notify for PEP nodes) and the profile has not
// been disconnected nor the daemon restarted since it was synced. A node
// that is not fresh goes to the network while the profile is online, and a
// reconciliation (a new sync) starts; while the profile is offline it is
// answered from the cache with stale: true.
//
// Parsing: items are stored raw (parse_state pending when the node's
// analyser has a parser) and parsed by the parse queue; a search filter on
// a parsed path never matches an item whose parse is not ok.
package pubsubcache
