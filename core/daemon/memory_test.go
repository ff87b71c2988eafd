package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core"
)

func TestShouldReturn(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name       string
		free, live uint64
		sync       bool
		since      time.Duration
		quiet      time.Duration
		want       bool
	}{
		{"steady state: about one live heap free", 15 * mib, 15 * mib, false, time.Minute, 0, false},
		{"small heap", 10 * mib, 2 * mib, false, time.Minute, 0, false},
		{"after a burst", 40 * mib, 15 * mib, false, time.Minute, 0, true},
		{"after a burst, returned just before", 40 * mib, 15 * mib, false, time.Second, 0, false},
		{"end of a large sync, garbage not swept", 5 * mib, 60 * mib, true, 2 * time.Second, 0, true},
		{"end of a large sync, returned just before", 5 * mib, 60 * mib, true, 100 * time.Millisecond, 0, false},
		{"end of a small sync", 4 * mib, 12 * mib, true, time.Minute, 0, false},
		{"quiet after requests: their garbage goes back", 8 * mib, 9 * mib, false, time.Minute, 11 * time.Second, true},
		{"quiet, not long enough", 8 * mib, 9 * mib, false, time.Minute, 5 * time.Second, false},
		{"quiet, returned during this quiet spell", 8 * mib, 9 * mib, false, 3 * time.Second, 20 * time.Second, false},
		{"quiet, little free", 2 * mib, 9 * mib, false, time.Minute, time.Minute, false},
		{"quiet, burst rule still applies", 40 * mib, 15 * mib, false, time.Minute, 0, true},
	} {
		if got := shouldReturn(c.free, c.live, c.sync, c.since, c.quiet); got != c.want {
			t.Errorf("%s: shouldReturn(%d MiB free, %d MiB live, sync %v, since %v, quiet %v) = %v, want %v", c.name, c.free/mib, c.live/mib, c.sync, c.since, c.quiet, got, c.want)
		}
	}
}

// TestNoteQuiet: the daemon is quiet from the first look at which it had
// allocated little, and no longer once it allocates more.
func TestNoteQuiet(t *testing.T) {
	var r memoryReturner
	t0 := time.Unix(1000, 0)
	r.noteQuiet(100<<20, t0)
	if !r.quiet.IsZero() {
		t.Fatal("quiet after one look")
	}
	r.noteQuiet(100<<20+1000, t0.Add(time.Second))
	if !r.quiet.Equal(t0) {
		t.Fatalf("quiet since %v, want %v", r.quiet, t0)
	}
	r.noteQuiet(100<<20+2000, t0.Add(2*time.Second))
	if !r.quiet.Equal(t0) {
		t.Fatalf("quiet spell restarted: since %v", r.quiet)
	}
	r.noteQuiet(110<<20, t0.Add(3*time.Second))
	if !r.quiet.IsZero() {
		t.Fatal("still quiet after allocating 10 MiB in a second")
	}
}

// fakeDB records the returner's calls.
type fakeDB struct {
	released chan struct{} // nil: counted only
	closed   int64
	releases int // ReleaseMemory calls
	closes   int // CloseIdle calls
}

func (f *fakeDB) ReleaseMemory(context.Context) error {
	f.releases++
	if f.released != nil {
		f.released <- struct{}{}
	}
	return nil
}
func (f *fakeDB) IdleClosed() int64 { return f.closed }
func (f *fakeDB) CloseIdle()        { f.closes++ }

// TestQuietSpells: once the daemon is quiet for returnIdleAfter, the
// database closes its idle connections once per quiet spell, whatever the
// heap; the free heap goes back (and the database releases its memory)
// when there is enough of it; a burst starts a new spell; the end of a
// sync never counts as one.
func TestQuietSpells(t *testing.T) {
	const mib = 1 << 20
	db := &fakeDB{}
	frees := 0
	r := &memoryReturner{log: slog.New(slog.DiscardHandler), db: db, freeOS: func() { frees++ }}
	ctx := context.Background()
	t0 := time.Unix(1000, 0)
	allocs := uint64(100 * mib)
	tick := func(s int, free uint64, alloc uint64, syncEnded bool) {
		allocs += alloc
		r.step(ctx, syncEnded, free, 9*mib, allocs, t0.Add(time.Duration(s)*time.Second))
	}
	for s := range 30 { // quiet, 8 MiB free
		tick(s, 8*mib, 1<<10, false)
	}
	if db.closes != 1 || db.releases != 1 || frees != 1 {
		t.Fatalf("first quiet spell: %d closes, %d releases, %d returns; want 1 each", db.closes, db.releases, frees)
	}
	tick(30, 8*mib, 50*mib, false) // a burst
	for s := 31; s < 60; s++ {     // quiet again, little free
		tick(s, 1*mib, 1<<10, false)
	}
	if db.closes != 2 || db.releases != 1 || frees != 1 {
		t.Fatalf("second quiet spell with 1 MiB free: %d closes, %d releases, %d returns; want 2, 1, 1", db.closes, db.releases, frees)
	}
	tick(60, 1*mib, 0, true) // a small sync ends while quiet
	if db.closes != 2 || db.releases != 1 {
		t.Fatalf("the end of a sync settled again: %d closes, %d releases", db.closes, db.releases)
	}
}

// TestReturnMemoryAtSyncEnd: the end of a cache sync, with a large heap,
// has the database release its memory; a sync still running does not.
func TestReturnMemoryAtSyncEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := core.NewEvents()
	db := &fakeDB{released: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() { returnMemory(ctx, slog.New(slog.DiscardHandler), events, db); close(done) }()
	keep := make([][]byte, 0, 48)
	for range 48 { // a large heap: 48 MiB live
		keep = append(keep, make([]byte, 1<<20))
	}
	// The returner subscribes when it starts: publish until it hears.
	publish := func(done bool) {
		events.Publish(&backendv2.Event{Event: &backendv2.Event_CacheSync{CacheSync: &backendv2.PubSubCacheSyncProgress{Done: done}}})
	}
	deadline := time.After(10 * time.Second)
	for released := false; !released; {
		publish(false)
		publish(true)
		select {
		case <-db.released:
			released = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("the end of a sync with a large heap released nothing")
		}
	}
	publish(false)
	select {
	case <-db.released:
		t.Fatal("a sync's progress released the database's memory")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-done
	_ = keep[len(keep)-1]
}

func TestReturnMemoryOff(t *testing.T) {
	t.Setenv(returnEnv, "0")
	done := make(chan struct{})
	go func() {
		returnMemory(context.Background(), slog.New(slog.DiscardHandler), core.NewEvents(), &fakeDB{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BACKEND_MEMORY_RETURN=0 does not turn the returner off")
	}
}
