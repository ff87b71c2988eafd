package daemon

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/storage"
)

// Returning the Go heap's free memory after a burst.
//
// A node sync allocates far more than the daemon keeps (≈600 MB allocated
// for 5 000 items, a live heap of 50–80 MB while the listing is stored,
// ≈15 MB after). Once the burst is over, the Go runtime keeps the freed
// pages resident: its background scavenger gives back only what exceeds
// about 110 % of the next collection's goal, and slowly (after the
// footprint benchmark 20–45 MiB of Go heap stayed resident for 15 MiB
// live). The returner gives the free pages back at once
// (debug.FreeOSMemory: a collection, then every free page released) when
// they exceed both returnFreeMin and the live heap — more than a steady
// state of GOGC=100 holds, which leaves about one live heap of garbage —
// checked every returnPoll, at most once per returnMinGap. As soon as a
// cache sync ends (its event on the API's event stream) with at least
// returnSyncMin of heap resident, it returns the free pages whatever the
// live heap (much of it was the sync's garbage), at most once per
// returnSyncGap (many nodes syncing one after the other), and has the database
// release what it can (storage.Store.ReleaseMemory: SQLite's page caches,
// the C allocator's free pages). When the database pool has closed idle
// connections (storage.sqliteIdleTime), the C allocator's pages they freed
// go back too.
//
// It is the daemon's shipped default; BACKEND_MEMORY_RETURN=0 turns it off
// (docs/operations.md, "Memory").
const (
	returnPoll    = time.Second
	returnFreeMin = 16 << 20
	returnMinGap  = 5 * time.Second
	returnSyncMin = 32 << 20
	returnSyncGap = time.Second
)

// returnEnv is the environment variable that turns the returner off ("0").
const returnEnv = "BACKEND_MEMORY_RETURN"

// heapMetrics are the runtime metrics the returner reads: free heap pages
// still resident, and the heap's objects (live and not yet swept).
var heapMetrics = [2]string{"/memory/classes/heap/free:bytes", "/memory/classes/heap/objects:bytes"}

// memoryReturner returns free heap memory to the OS after bursts. Its
// fields are owned by its run goroutine.
type memoryReturner struct {
	log     *slog.Logger
	db      releaser
	closed  int64 // the database's idle connections closed, at the last look
	samples []metrics.Sample
	last    time.Time // the last return
	returns int       // how many returns so far
}

// returnMemory runs the returner until ctx ends, listening to events for
// the ends of cache syncs.
func returnMemory(ctx context.Context, log *slog.Logger, events *core.Events, db releaser) {
	if os.Getenv(returnEnv) == "0" {
		return
	}
	r := &memoryReturner{log: log, db: db, samples: []metrics.Sample{{Name: heapMetrics[0]}, {Name: heapMetrics[1]}}}
	t := time.NewTicker(returnPoll)
	defer t.Stop()
	sub := events.Subscribe("")
	defer func() { sub.Close() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check(ctx, false)
		case ev, ok := <-sub.C:
			if !ok { // lagged: listen again
				sub = events.Subscribe("")
				continue
			}
			if ev.GetCacheSync().GetDone() {
				r.check(ctx, true)
			}
		}
	}
}

// releaser is the database's side (storage.Store).
type releaser interface {
	ReleaseMemory(context.Context) error
	IdleClosed() int64
}

// check returns the free heap memory when it is worth it (at the end of a
// sync, with the database's), and the C allocator's free pages after the
// pool closed idle connections.
func (r *memoryReturner) check(ctx context.Context, syncEnded bool) {
	if n := r.db.IdleClosed(); n != r.closed {
		r.closed = n
		storage.TrimCHeap()
	}
	metrics.Read(r.samples)
	free, live := r.samples[0].Value.Uint64(), r.samples[1].Value.Uint64()
	if !shouldReturn(free, live, syncEnded, time.Since(r.last)) {
		return
	}
	start := time.Now()
	debug.FreeOSMemory()
	if syncEnded {
		if err := r.db.ReleaseMemory(ctx); err != nil {
			r.log.Warn("releasing the database's memory", "err", err)
		}
	}
	r.last = time.Now()
	r.returns++
	r.log.Debug("returned free memory to the OS", "free_bytes", free, "objects_bytes", live, "after_sync", syncEnded, "took", r.last.Sub(start))
}

// shouldReturn says whether free bytes of resident, unused heap, beside
// live bytes of objects (live or not yet swept), are worth returning now,
// since the last return and at the end of a sync or not.
func shouldReturn(free, live uint64, syncEnded bool, since time.Duration) bool {
	if syncEnded {
		return free+live >= returnSyncMin && since >= returnSyncGap
	}
	return free >= returnFreeMin && free > live && since >= returnMinGap
}
