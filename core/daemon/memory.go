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
// returnSyncGap (many nodes syncing one after the other), and has the
// database release what it can (storage.Store.ReleaseMemory: SQLite's page
// caches, the C allocator's free pages; after a quiet spell too). When the
// database pool has closed idle connections (storage.sqliteIdleTime), the C
// allocator's pages they freed go back too.
//
// Once the daemon has been quiet for returnIdleAfter (it allocated less
// than returnQuietRate per second: no sync, no requests to speak of), it
// returns the free pages once more if they are at least returnIdleMin: the
// garbage of the last requests after a burst (after the footprint
// benchmark's 100 reads, ≈ 8 MiB of free pages stayed resident beside
// 9 MiB live, below the burst rule's threshold); and, whatever the heap,
// the database closes its idle connections first (storage.Store.CloseIdle:
// their caches and their mappings of the database file, ≈ 12 MiB resident
// after that benchmark), once per quiet spell.
//
// It is the daemon's shipped default; BACKEND_MEMORY_RETURN=0 turns it off
// (docs/operations.md, "Memory").
const (
	returnPoll    = time.Second
	returnFreeMin = 16 << 20
	returnMinGap  = 5 * time.Second
	returnSyncMin = 32 << 20
	returnSyncGap = time.Second

	returnIdleAfter = 10 * time.Second
	returnIdleMin   = 4 << 20
	returnQuietRate = 256 << 10
)

// returnEnv is the environment variable that turns the returner off ("0").
const returnEnv = "BACKEND_MEMORY_RETURN"

// heapMetrics are the runtime metrics the returner reads: free heap pages
// still resident, the heap's objects (live and not yet swept), and the
// bytes allocated since the start.
var heapMetrics = [3]string{"/memory/classes/heap/free:bytes", "/memory/classes/heap/objects:bytes", "/gc/heap/allocs:bytes"}

// memoryReturner returns free heap memory to the OS after bursts. Its
// fields are owned by its run goroutine.
type memoryReturner struct {
	log     *slog.Logger
	db      releaser
	closed  int64 // the database's idle connections closed, at the last look
	samples []metrics.Sample
	last    time.Time // the last return
	returns int       // how many returns so far
	allocs  uint64    // bytes allocated since the start, at the last look
	seen    time.Time // when allocs was read
	quiet   time.Time // since when the daemon has been quiet (zero: it is not)
	settled time.Time // the quiet spell (its start) whose idle connections were closed
	freeOS  func()    // returns the free heap pages (nil: debug.FreeOSMemory; tests count)
}

// returnMemory runs the returner until ctx ends, listening to events for
// the ends of cache syncs.
func returnMemory(ctx context.Context, log *slog.Logger, events *core.Events, db releaser) {
	if os.Getenv(returnEnv) == "0" {
		return
	}
	r := &memoryReturner{log: log, db: db}
	for _, name := range heapMetrics {
		r.samples = append(r.samples, metrics.Sample{Name: name})
	}
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
	CloseIdle()
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
	r.step(ctx, syncEnded, r.samples[0].Value.Uint64(), r.samples[1].Value.Uint64(), r.samples[2].Value.Uint64(), time.Now())
}

// step decides and returns from the heap's figures read at now: free
// bytes of resident unused heap, live bytes of objects, bytes allocated
// since the start.
func (r *memoryReturner) step(ctx context.Context, syncEnded bool, free, live, allocs uint64, now time.Time) {
	r.noteQuiet(allocs, now)
	var quiet time.Duration
	if !r.quiet.IsZero() {
		quiet = now.Sub(r.quiet)
	}
	// Once per quiet spell, the database closes its idle connections
	// (before the collection: the C memory they free goes back with
	// the rest), whatever the heap.
	settle := !syncEnded && quiet >= returnIdleAfter && !r.settled.Equal(r.quiet)
	if settle {
		r.settled = r.quiet
		r.db.CloseIdle()
	}
	if !shouldReturn(free, live, syncEnded, now.Sub(r.last), quiet) {
		if settle {
			storage.TrimCHeap()
		}
		return
	}
	start := time.Now()
	if r.freeOS != nil {
		r.freeOS()
	} else {
		debug.FreeOSMemory()
	}
	if syncEnded || settle {
		if err := r.db.ReleaseMemory(ctx); err != nil {
			r.log.Warn("releasing the database's memory", "err", err)
		}
	}
	r.last = now.Add(time.Since(start))
	r.returns++
	r.log.Debug("returned free memory to the OS", "free_bytes", free, "objects_bytes", live, "after_sync", syncEnded, "quiet", quiet, "took", time.Since(start))
}

// noteQuiet updates since when the daemon has been quiet from the bytes
// allocated since the start, read at now: quiet while it allocates less
// than returnQuietRate per second.
func (r *memoryReturner) noteQuiet(allocs uint64, now time.Time) {
	if !r.seen.IsZero() {
		limit := uint64(now.Sub(r.seen).Seconds() * returnQuietRate)
		switch {
		case allocs-r.allocs > limit:
			r.quiet = time.Time{}
		case r.quiet.IsZero():
			r.quiet = r.seen
		}
	}
	r.allocs, r.seen = allocs, now
}

// shouldReturn says whether free bytes of resident, unused heap, beside
// live bytes of objects (live or not yet swept), are worth returning now,
// since the last return, at the end of a sync or not, the daemon having
// been quiet for that long (0: it is not).
func shouldReturn(free, live uint64, syncEnded bool, since, quiet time.Duration) bool {
	switch {
	case syncEnded:
		return free+live >= returnSyncMin && since >= returnSyncGap
	case quiet >= returnIdleAfter && since > quiet: // once per quiet spell
		return free >= returnIdleMin
	}
	return free >= returnFreeMin && free > live && since >= returnMinGap
}
