// Package triggers is the trigger (hook) bus: named, typed points in a
// workflow where plugins run in priority order and may let the workflow
// continue, cancel it, answer it with a result, or skip the remaining
// handlers. It keeps the semantics of the ancestor's TriggerManager and
// depends on nothing but the standard library.
//
// # Usage
//
// The package that owns a workflow declares its points once, at package
// level, with a stable id used in logs, metrics, config and on the wire:
//
//	var GetItems = triggers.NewPoint[*GetItemsRequest, *ItemsPage]("pubsub.items.get",
//		"Fires before an items request is sent; Answer with a page to skip the network.")
//
// Ids are process-wide: NewPoint and NewEvent panic on an invalid id (see
// ValidateID) or one declared twice. A plugin declares its bindings as values
// and the host attaches them for the plugin's name; all of them go when the
// plugin stops (Handle.Remove, or Bus.DetachOwner):
//
//	h, err := bus.Attach("pubsubcache",
//		triggers.Intercept(xep0060.GetItems, triggers.PriorityCache, c.getItems),
//		triggers.Observe(xep0060.ItemsReceived, triggers.PriorityDefault, c.store))
//
// The workflow asks the bus, then acts on the Outcome:
//
//	out, err := triggers.Run(ctx, bus, GetItems, req)
//	switch {
//	case err != nil:       // a handler failed: abort
//	case out.Answered():   // use out.Result, do not send the request
//	case out.Cancelled():  // do not perform the action (out.By says who)
//	default:               // continue normally (ActionContinue or ActionSkipRest)
//	}
//
// # Ordering
//
// Handlers run in descending Priority (PriorityFirst, PriorityCache,
// PriorityDefault, PriorityLast are the named bands); equal priorities run
// in attach order, stably. An owner binds a point at most once: a second
// binding of the same owner on the same point is an error at Attach
// (ErrDuplicateBinding), never a silent replace. Attach is all or nothing.
//
// # Decisions and short-circuit
//
// A Handler returns a Decision and an error; continuing never depends on
// calling a next function. Continue lets the next handler run; Cancel stops
// the chain and the caller must not perform the action; Answer(r) stops it
// with r as the result (a cache hit); SkipRest stops the chain but the
// caller performs the action normally. The zero Decision is Continue. The
// Outcome of Run tells which decision ended the chain (ActionContinue when
// every handler continued or none is attached) and the owner that took it.
//
// # Observers
//
// An Event is a point nobody can cancel (the ancestor's triggers_no_cancel).
// Notify runs every ObserverFunc in the same order as interceptors; an
// observer's error or panic is collected and never stops the others.
//
// # Errors and panics
//
// A handler error stops Run and is returned as a *HandlerError, whose message
// is "triggers: <point id>/<owner>: <err>"; errors.Is and errors.As see the
// handler's error through it. A handler returning an unknown Action is an
// error too (ErrInvalidAction). A panic in a handler is recovered and
// returned as a *PanicError naming the point and the owner, with the panic
// value and the stack. Notify returns errors.Join of the same errors.
//
// # Concurrency
//
// A Bus is safe for concurrent use. Dispatch is lock-free: Run and Notify
// read an immutable snapshot through an atomic pointer, while Attach, Remove
// and DetachOwner copy the affected chains under a mutex and publish the
// copy. Changes made during a dispatch, even by its own handlers, only affect
// later dispatches. Handlers may call Run, Notify and Attach. The bus does
// not look at ctx: handlers do. Run and Notify do not allocate unless a
// handler fails.
//
// # Introspection
//
// Bus.Chains returns the resolved chain of every declared point and event,
// sorted by id, including those nobody binds: for `backend triggers list`
// and for logging the chains at start-up. Bus.Chain returns one of them.
//
// # Observing dispatches
//
// Bus.SetObserver installs a DispatchObserver told about every dispatch of
// a chain that has handlers (point, kind, ending action, failure, chain
// length, elapsed time); the core turns it into the bus dispatch metrics
// without this package depending on anything. It costs two clock reads per
// dispatch and no allocation.
//
// # Testing
//
// Package triggerstest has a Recorder and recording handlers and observers,
// so that a test asserts an exact call order as one string ("cache net"),
// and UniqueID for tests that declare points inside test functions (ids are
// process-wide and tests may run several times with -count). A nil *Bus is a
// bus with no handler, which is convenient in unit tests of a workflow.
package triggers
