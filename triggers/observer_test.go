package triggers_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

// TestDispatchObserver checks what the observer is told for each way a
// dispatch ends, that empty chains are not reported, and that removing the
// observer stops the reports.
func TestDispatchObserver(t *testing.T) {
	p, e, empty := newPoint(t), newEvent(t), newPoint(t)
	b := triggers.New()
	var got []triggers.Dispatch
	b.SetObserver(func(d triggers.Dispatch) { got = append(got, d) })
	var r triggerstest.Recorder
	boom := errors.New("boom")
	mustAttach(t, b, "first", triggers.Intercept(p, 10, triggerstest.Handler[*getReq, *page](&r, "first", triggers.Continue[*page]())),
		triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "obs", boom)))
	mustAttach(t, b, "cache", triggers.Intercept(p, 5, triggerstest.Handler[*getReq, *page](&r, "cache", triggers.Answer(&page{}))),
		triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "obs2", nil)))
	ctx := context.Background()
	if _, err := triggers.Run(ctx, b, p, &getReq{}); err != nil {
		t.Fatal(err)
	}
	_ = triggers.Notify(ctx, b, e, &getReq{})
	if _, err := triggers.Run(ctx, b, empty, &getReq{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("reports = %+v, want 2 (the empty chain is not reported)", got)
	}
	if d := got[0]; d.Point != p.ID() || d.Kind != triggers.KindIntercept || d.Action != triggers.ActionAnswer || d.Failed || d.Handlers != 2 || d.Elapsed < 0 {
		t.Errorf("run report = %+v", d)
	}
	if d := got[1]; d.Point != e.ID() || d.Kind != triggers.KindObserve || d.Action != triggers.ActionContinue || !d.Failed || d.Handlers != 2 {
		t.Errorf("notify report = %+v", d)
	}

	// A failing and a panicking interceptor are reported as failed.
	fp := newPoint(t)
	mustAttach(t, b, "bad", triggers.Intercept(fp, 0, triggerstest.FailingHandler[*getReq, *page](&r, "bad", boom)))
	pp := newPoint(t)
	mustAttach(t, b, "panics", triggers.Intercept(pp, 0, func(context.Context, *getReq) (triggers.Decision[*page], error) { panic("no") }))
	got = nil
	_, _ = triggers.Run(ctx, b, fp, &getReq{})
	_, _ = triggers.Run(ctx, b, pp, &getReq{})
	if len(got) != 2 || !got[0].Failed || !got[1].Failed || got[1].Point != pp.ID() {
		t.Errorf("failure reports = %+v", got)
	}

	b.SetObserver(nil)
	got = nil
	_, _ = triggers.Run(ctx, b, p, &getReq{})
	if len(got) != 0 {
		t.Errorf("reports after SetObserver(nil): %+v", got)
	}
}

// TestDispatchObserverAllocs: an observer costs no allocation per dispatch.
func TestDispatchObserverAllocs(t *testing.T) {
	bus := benchBus(t, 3)
	n := 0
	bus.SetObserver(func(triggers.Dispatch) { n++ })
	ctx := context.Background()
	req := &benchReq{Service: "s", Node: "n"}
	a := testing.AllocsPerRun(200, func() {
		_, _ = triggers.Run(ctx, bus, benchPoint, req)
		_ = triggers.Notify(ctx, bus, benchEvent, req)
	})
	if a != 0 || n == 0 {
		t.Errorf("allocs per dispatch with an observer: %v (reports %d); want 0", a, n)
	}
}

// TestDispatchObserverConcurrent installs and removes observers while
// other goroutines dispatch (run with -race).
func TestDispatchObserverConcurrent(t *testing.T) {
	bus := benchBus(t, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				_, _ = triggers.Run(ctx, bus, benchPoint, &benchReq{})
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			bus.SetObserver(func(triggers.Dispatch) { mu.Lock(); count++; mu.Unlock() })
		} else {
			bus.SetObserver(nil)
		}
	}
	wg.Wait()
}
