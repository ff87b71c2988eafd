package triggers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Handler is an interceptor: it inspects (and may modify, if Req is a
// pointer) the request and decides what happens next. A non-nil error stops
// the chain and reaches the caller of Run; the Decision is then ignored.
type Handler[Req, Res any] func(ctx context.Context, req Req) (Decision[Res], error)

// ObserverFunc is an observer: it is told about something and cannot stop
// it. Its error is collected by Notify and never stops the other observers.
type ObserverFunc[Req any] func(ctx context.Context, req Req) error

// Run dispatches req through the chain of p, in order (descending priority,
// ties in attach order), until a handler decides something else than
// ActionContinue. The Outcome says what ended the chain and who decided.
//
// A handler error stops the chain and is returned as a *HandlerError
// ("triggers: <point id>/<owner>: <err>"); a panic in a handler is recovered
// and returned as a *PanicError. In both cases the Outcome is zero.
//
// Run reads a snapshot of the chain: attaching or removing handlers during
// the dispatch (even from a handler) affects only later dispatches. Run does
// not look at ctx; handlers do. A nil b behaves as a bus with no handler.
// Run does not allocate unless a handler fails.
func Run[Req, Res any](ctx context.Context, b *Bus, p *Point[Req, Res], req Req) (Outcome[Res], error) {
	if b != nil {
		if s := b.snap.Load(); s != nil && p.m.idx < len(s.chains) {
			if c := s.chains[p.m.idx]; c != nil {
				ch := c.(*chain[Handler[Req, Res]])
				o := b.obs.Load()
				if o == nil {
					return runChain(ctx, p.m.id, ch, req)
				}
				start := time.Now()
				out, err := runChain(ctx, p.m.id, ch, req)
				o.f(Dispatch{Point: p.m.id, Kind: KindIntercept, Action: out.Action, Failed: err != nil,
					Handlers: len(ch.hs), Elapsed: time.Since(start)})
				return out, err
			}
		}
	}
	return Outcome[Res]{}, nil
}

// runChain runs the handlers of c. One deferred recover covers the whole
// chain; i tells which handler panicked.
func runChain[Req, Res any](ctx context.Context, id string, c *chain[Handler[Req, Res]], req Req) (out Outcome[Res], err error) {
	i := 0
	defer func() {
		if r := recover(); r != nil {
			out, err = Outcome[Res]{}, newPanicError(id, c.infos[i].Owner, r)
		}
	}()
	for hs := c.hs; i < len(hs); i++ {
		d, herr := hs[i](ctx, req)
		if herr != nil {
			return Outcome[Res]{}, &HandlerError{Point: id, Owner: c.infos[i].Owner, Err: herr}
		}
		switch d.Action {
		case ActionContinue:
		case ActionAnswer:
			return Outcome[Res]{Result: d.Result, Action: ActionAnswer, By: c.infos[i].Owner}, nil
		case ActionCancel, ActionSkipRest:
			return Outcome[Res]{Action: d.Action, By: c.infos[i].Owner}, nil
		default:
			return Outcome[Res]{}, &HandlerError{Point: id, Owner: c.infos[i].Owner,
				Err: fmt.Errorf("%w %d", ErrInvalidAction, d.Action)}
		}
	}
	return Outcome[Res]{}, nil
}

// Notify runs every observer of e, in order (descending priority, ties in
// attach order). An observer's error (*HandlerError) or panic (*PanicError)
// never stops the others; Notify returns errors.Join of all of them, nil
// when every observer succeeded (or none is attached).
//
// Like Run, Notify reads a snapshot, does not look at ctx, accepts a nil b
// and does not allocate unless an observer fails.
func Notify[Req any](ctx context.Context, b *Bus, e *Event[Req], req Req) error {
	if b == nil {
		return nil
	}
	s := b.snap.Load()
	if s == nil || e.m.idx >= len(s.chains) || s.chains[e.m.idx] == nil {
		return nil
	}
	c := s.chains[e.m.idx].(*chain[ObserverFunc[Req]])
	o := b.obs.Load()
	var start time.Time
	if o != nil {
		start = time.Now()
	}
	var errs []error
	for i := 0; i < len(c.hs); {
		i = notifyFrom(ctx, e.m.id, c, req, i, &errs)
	}
	if o != nil {
		o.f(Dispatch{Point: e.m.id, Kind: KindObserve, Failed: len(errs) > 0, Handlers: len(c.hs), Elapsed: time.Since(start)})
	}
	return errors.Join(errs...)
}

// notifyFrom runs the observers of c from index i and returns the index of
// the next observer to run: len(c.hs) when done, or the one after an
// observer that panicked. One deferred recover covers the run.
func notifyFrom[Req any](ctx context.Context, id string, c *chain[ObserverFunc[Req]], req Req, i int, errs *[]error) (next int) {
	next = i
	defer func() {
		if r := recover(); r != nil {
			*errs = append(*errs, newPanicError(id, c.infos[next].Owner, r))
			next++
		}
	}()
	for hs := c.hs; next < len(hs); next++ {
		if err := hs[next](ctx, req); err != nil {
			*errs = append(*errs, &HandlerError{Point: id, Owner: c.infos[next].Owner, Err: err})
		}
	}
	return next
}
