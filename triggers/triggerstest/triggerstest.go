// Package triggerstest helps test code that uses the trigger bus: a Recorder
// that records calls as strings in order, handlers and observers that record
// themselves, and unique point ids for tests that declare points.
//
// A typical test asserts the exact call order:
//
//	var rec triggerstest.Recorder
//	h, err := bus.Attach("a",
//		triggers.Intercept(p, 10, triggerstest.Handler[*Req](&rec, "a", triggers.Continue[*Res]())))
//	...
//	if got, want := rec.String(), "a b"; got != want { ... }
package triggerstest

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"example.org/backend/triggers"
)

// Recorder records calls as strings, in order. The zero value is ready to
// use; it is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls []string
}

// Record appends call.
func (r *Recorder) Record(call string) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
}

// Calls returns a copy of the recorded calls, in order (nil when none).
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return nil
	}
	return append([]string(nil), r.calls...)
}

// String returns the recorded calls joined by single spaces.
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, " ")
}

// Len returns the number of recorded calls.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// Reset forgets every recorded call.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// Handler returns an interceptor that records name in r and returns d.
// Give Req explicitly; Res is inferred from d:
//
//	triggerstest.Handler[*Req](&rec, "cache", triggers.Answer(page))
func Handler[Req, Res any](r *Recorder, name string, d triggers.Decision[Res]) triggers.Handler[Req, Res] {
	return func(context.Context, Req) (triggers.Decision[Res], error) {
		r.Record(name)
		return d, nil
	}
}

// FailingHandler returns an interceptor that records name in r and returns
// err.
func FailingHandler[Req, Res any](r *Recorder, name string, err error) triggers.Handler[Req, Res] {
	return func(context.Context, Req) (triggers.Decision[Res], error) {
		r.Record(name)
		return triggers.Decision[Res]{}, err
	}
}

// Observer returns an observer that records name in r and returns err
// (which may be nil).
func Observer[Req any](r *Recorder, name string, err error) triggers.ObserverFunc[Req] {
	return func(context.Context, Req) error {
		r.Record(name)
		return err
	}
}

var idSeq atomic.Uint64

// UniqueID returns a point id that no other call returns in this process:
// prefix (a valid id, e.g. "test.items") followed by ".t<n>". Tests that
// declare points inside test functions need it, since ids are process-wide
// and tests may run several times (-count).
func UniqueID(prefix string) string {
	return prefix + ".t" + strconv.FormatUint(idSeq.Add(1), 10)
}
