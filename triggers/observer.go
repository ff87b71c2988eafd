package triggers

import "time"

// Dispatch describes one finished dispatch, for a DispatchObserver.
type Dispatch struct {
	// Point is the id of the point or event.
	Point string
	// Kind is KindIntercept (Run) or KindObserve (Notify).
	Kind string
	// Action is the decision that ended a Run (ActionContinue for Notify).
	Action Action
	// Failed is set when a handler or observer returned an error or panicked.
	Failed bool
	// Handlers is the length of the chain that was dispatched.
	Handlers int
	// Elapsed is the time the handlers took.
	Elapsed time.Duration
}

// DispatchObserver is told about every dispatch of a point or event that
// has handlers (dispatches of an empty chain cost nothing and are not
// reported). It runs on the dispatching goroutine, after the handlers: it
// must be quick and must not dispatch on the bus.
type DispatchObserver func(Dispatch)

// observerBox lets an atomic.Pointer hold a func.
type observerBox struct{ f DispatchObserver }

// SetObserver installs o as the bus's dispatch observer (nil removes it).
// The core uses it for metrics, so that this package depends on nothing.
// With an observer installed, a dispatch reads the clock twice and still
// does not allocate.
func (b *Bus) SetObserver(o DispatchObserver) {
	if o == nil {
		b.obs.Store(nil)
		return
	}
	b.obs.Store(&observerBox{f: o})
}
