package triggers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

func TestNotify(t *testing.T) {
	errA := errors.New("observer a failed")
	errC := errors.New("observer c failed")
	e := newEvent(t)
	b := triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b, "low", triggers.Observe(e, triggers.PriorityLast, triggerstest.Observer[*getReq](&r, "low", nil)))
	mustAttach(t, b, "a", triggers.Observe(e, 10, triggerstest.Observer[*getReq](&r, "a", errA)))
	mustAttach(t, b, "p", triggers.Observe(e, 5, func(context.Context, *getReq) error {
		r.Record("p")
		panic("observer panic")
	}))
	mustAttach(t, b, "c", triggers.Observe(e, 5, triggerstest.Observer[*getReq](&r, "c", errC)))
	mustAttach(t, b, "ok", triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "ok", nil)))
	mustAttach(t, b, "p2", triggers.Observe(e, -5, func(context.Context, *getReq) error {
		r.Record("p2")
		panic(io.EOF)
	}))

	err := triggers.Notify(context.Background(), b, e, &getReq{})
	if got, want := r.String(), "a p c ok p2 low"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) || !errors.Is(err, io.EOF) {
		t.Errorf("err = %v, want errA, errC and io.EOF in it", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("err %T is not a joined error", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		var he *triggers.HandlerError
		var pe *triggers.PanicError
		switch {
		case errors.As(e, &pe):
			got = append(got, "panic:"+pe.Owner)
		case errors.As(e, &he):
			got = append(got, "error:"+he.Owner)
		}
	}
	if want := []string{"error:a", "panic:p", "error:c", "panic:p2"}; !slices.Equal(got, want) {
		t.Errorf("errors = %v, want %v", got, want)
	}
	wantMsg := strings.Join([]string{
		"triggers: " + e.ID() + "/a: observer a failed",
		"triggers: " + e.ID() + "/p: panic: observer panic",
		"triggers: " + e.ID() + "/c: observer c failed",
		"triggers: " + e.ID() + "/p2: panic: EOF",
	}, "\n")
	if err.Error() != wantMsg {
		t.Errorf("err =\n%s\nwant\n%s", err, wantMsg)
	}
}

func TestNotifySuccess(t *testing.T) {
	e := newEvent(t)
	b := triggers.New()
	if err := triggers.Notify(context.Background(), b, e, &getReq{}); err != nil {
		t.Errorf("Notify with no observer = %v", err)
	}
	var r triggerstest.Recorder
	mustAttach(t, b, "x", triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "x", nil)))
	mustAttach(t, b, "y", triggers.Observe(e, 1, triggerstest.Observer[*getReq](&r, "y", nil)))
	if err := triggers.Notify(context.Background(), b, e, &getReq{}); err != nil {
		t.Errorf("Notify = %v", err)
	}
	if got, want := r.String(), "y x"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestNilAndZeroBus(t *testing.T) {
	p, e := newPoint(t), newEvent(t)
	out, err := triggers.Run(context.Background(), nil, p, &getReq{})
	if err != nil || out != (triggers.Outcome[*page]{}) {
		t.Errorf("Run(nil bus) = %+v, %v", out, err)
	}
	if err := triggers.Notify(context.Background(), nil, e, &getReq{}); err != nil {
		t.Errorf("Notify(nil bus) = %v", err)
	}
	var b triggers.Bus
	run(t, &b, p)
	var r triggerstest.Recorder
	mustAttach(t, &b, "o", triggers.Intercept(p, 0, rec(&r, "o", triggers.Cancel[*page]())))
	if out := run(t, &b, p); !out.Cancelled() || r.String() != "o" {
		t.Errorf("zero bus: %+v, %q", out, r.String())
	}
	if ci, ok := (*triggers.Bus)(nil).Chain(p.ID()); !ok || len(ci.Handlers) != 0 {
		t.Errorf("nil bus Chain = %+v, %v", ci, ok)
	}
}

// TestBusesAreIndependent checks that two buses share the declared points
// but not their handlers.
func TestBusesAreIndependent(t *testing.T) {
	p := newPoint(t)
	b1, b2 := triggers.New(), triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b1, "o", triggers.Intercept(p, 0, rec(&r, "b1", cont)))
	mustAttach(t, b2, "o", triggers.Intercept(p, 0, rec(&r, "b2", cont)))
	run(t, b1, p)
	run(t, b2, p)
	b1.DetachOwner("o")
	run(t, b1, p)
	run(t, b2, p)
	if got, want := r.String(), "b1 b2 b2"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestChains(t *testing.T) {
	p := triggers.NewPoint[*getReq, *page](triggerstest.UniqueID("test.chains.b"), "the b point")
	empty := triggers.NewPoint[*getReq, *page](triggerstest.UniqueID("test.chains.a"), "nobody binds a")
	e := triggers.NewEvent[*getReq](triggerstest.UniqueID("test.chains.c"), "the c event")
	b := triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b, "low", triggers.Intercept(p, -3, rec(&r, "low", cont)))
	hh := mustAttach(t, b, "high", triggers.Intercept(p, 7, rec(&r, "high", cont)), triggers.Observe(e, 1, triggerstest.Observer[*getReq](&r, "h", nil)))
	mustAttach(t, b, "tie", triggers.Intercept(p, -3, rec(&r, "tie", cont)))

	chains := b.Chains()
	if !slices.IsSortedFunc(chains, func(a, b triggers.ChainInfo) int { return strings.Compare(a.Point, b.Point) }) {
		t.Errorf("Chains not sorted by point id")
	}
	find := func(chains []triggers.ChainInfo, id string) triggers.ChainInfo {
		t.Helper()
		i := slices.IndexFunc(chains, func(c triggers.ChainInfo) bool { return c.Point == id })
		if i < 0 {
			t.Fatalf("Chains has no %s", id)
		}
		c, ok := b.Chain(id)
		if !ok || !chainInfoEqual(c, chains[i]) {
			t.Errorf("Chain(%s) = %+v, %v; Chains has %+v", id, c, ok, chains[i])
		}
		return chains[i]
	}
	if got := find(chains, empty.ID()); got.Kind != triggers.KindIntercept || got.Doc != "nobody binds a" || got.Handlers == nil || len(got.Handlers) != 0 {
		t.Errorf("empty point: %+v", got)
	}
	got := find(chains, p.ID())
	if got.Kind != "intercept" || got.Doc != "the b point" {
		t.Errorf("point: %+v", got)
	}
	owners := func(hs []triggers.HandlerInfo) (s []string) {
		for _, h := range hs {
			s = append(s, fmt.Sprintf("%s@%d", h.Owner, h.Priority))
		}
		return s
	}
	if o, want := owners(got.Handlers), []string{"high@7", "low@-3", "tie@-3"}; !slices.Equal(o, want) {
		t.Errorf("handlers = %v, want %v", o, want)
	}
	if s := got.Handlers; !(s[1].Seq < s[2].Seq && s[1].Seq < s[0].Seq) {
		t.Errorf("seqs not in attach order: %+v", s)
	}
	ge := find(chains, e.ID())
	if ge.Kind != triggers.KindObserve || ge.Doc != "the c event" || !slices.Equal(owners(ge.Handlers), []string{"high@1"}) {
		t.Errorf("event: %+v", ge)
	}
	// Modifying the result does not touch the bus.
	got.Handlers[0].Owner = "mutated"
	hh.Remove()
	chains = b.Chains()
	if o, want := owners(find(chains, p.ID()).Handlers), []string{"low@-3", "tie@-3"}; !slices.Equal(o, want) {
		t.Errorf("after Remove: %v, want %v", o, want)
	}
	if hs := find(chains, e.ID()).Handlers; hs == nil || len(hs) != 0 {
		t.Errorf("event after Remove: %+v", hs)
	}
	if _, ok := b.Chain("test.chains.undeclared"); ok {
		t.Errorf("Chain(undeclared) found")
	}
}

func TestDeclare(t *testing.T) {
	id := triggerstest.UniqueID("test.declare")
	p := triggers.NewPoint[int, string](id, "doc of p")
	if p.ID() != id || p.Doc() != "doc of p" || p.String() != id {
		t.Errorf("point: %q %q %q", p.ID(), p.Doc(), p.String())
	}
	eid := triggerstest.UniqueID("test.declare")
	e := triggers.NewEvent[int](eid, "doc of e")
	if e.ID() != eid || e.Doc() != "doc of e" || e.String() != eid {
		t.Errorf("event: %q %q %q", e.ID(), e.Doc(), e.String())
	}
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("duplicate point", func() { triggers.NewPoint[int, string](id, "") })
	mustPanic("point with an event's id", func() { triggers.NewPoint[int, int](eid, "") })
	mustPanic("event with a point's id", func() { triggers.NewEvent[string](id, "") })
	mustPanic("invalid id", func() { triggers.NewPoint[int, string]("Bad.ID", "") })
	mustPanic("invalid event id", func() { triggers.NewEvent[int]("", "") })
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"pubsub.items.get", true},
		{"session.state", true},
		{"a", true},
		{"xep0060.items_get", true},
		{"cache.sync-done.v2", true},
		{"ext.0plugin", true},
		{"", false},
		{".pubsub", false},
		{"pubsub.", false},
		{"pubsub..get", false},
		{"Pubsub.get", false},
		{"pubsub.Get", false},
		{"0pubsub", false},
		{"_pubsub", false},
		{"pubsub items", false},
		{"pubsub/items", false},
		{"pubsub.ïtems", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		err := triggers.ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		a    triggers.Action
		want string
	}{
		{triggers.ActionContinue, "continue"},
		{triggers.ActionCancel, "cancel"},
		{triggers.ActionAnswer, "answer"},
		{triggers.ActionSkipRest, "skip-rest"},
		{triggers.Action(42), "Action(42)"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Action(%d).String() = %q, want %q", tt.a, got, tt.want)
		}
	}
	if d := (triggers.Decision[int]{}); d != triggers.Continue[int]() {
		t.Errorf("zero Decision is not Continue")
	}
	if d := triggers.Answer(3); d.Action != triggers.ActionAnswer || d.Result != 3 {
		t.Errorf("Answer(3) = %+v", d)
	}
	if triggers.Cancel[int]().Action != triggers.ActionCancel || triggers.SkipRest[int]().Action != triggers.ActionSkipRest {
		t.Errorf("Cancel/SkipRest actions wrong")
	}
}

// traceReq carries the priorities seen by one dispatch.
type traceReq struct{ seen []triggers.Priority }

// TestConcurrentDispatch dispatches from many goroutines while others attach
// and remove handlers. Each dispatch must see one consistent chain: sorted by
// descending priority, with the permanent handlers present. Run with -race.
func TestConcurrentDispatch(t *testing.T) {
	p := triggers.NewPoint[*traceReq, string](triggerstest.UniqueID("test.concurrent"), "")
	e := triggers.NewEvent[*traceReq](triggerstest.UniqueID("test.concurrent.event"), "")
	b := triggers.New()
	record := func(prio triggers.Priority) triggers.Handler[*traceReq, string] {
		return func(_ context.Context, req *traceReq) (triggers.Decision[string], error) {
			req.seen = append(req.seen, prio)
			return triggers.Continue[string](), nil
		}
	}
	observe := func(prio triggers.Priority) triggers.ObserverFunc[*traceReq] {
		return func(_ context.Context, req *traceReq) error {
			req.seen = append(req.seen, prio)
			return nil
		}
	}
	mustAttach(t, b, "first", triggers.Intercept(p, triggers.PriorityFirst, record(triggers.PriorityFirst)),
		triggers.Observe(e, triggers.PriorityFirst, observe(triggers.PriorityFirst)))
	mustAttach(t, b, "last", triggers.Intercept(p, triggers.PriorityLast, func(_ context.Context, req *traceReq) (triggers.Decision[string], error) {
		req.seen = append(req.seen, triggers.PriorityLast)
		return triggers.Answer("done"), nil
	}), triggers.Observe(e, triggers.PriorityLast, observe(triggers.PriorityLast)))

	const (
		dispatchers = 8
		writers     = 4
		rounds      = 300
	)
	check := func(seen []triggers.Priority) error {
		if len(seen) < 2 || seen[0] != triggers.PriorityFirst || seen[len(seen)-1] != triggers.PriorityLast {
			return fmt.Errorf("permanent handlers missing: %v", seen)
		}
		if !slices.IsSortedFunc(seen, func(a, b triggers.Priority) int { return int(b - a) }) {
			return fmt.Errorf("not in descending priority: %v", seen)
		}
		return nil
	}
	var wg sync.WaitGroup
	errc := make(chan error, dispatchers+writers)
	stop := make(chan struct{})
	for range dispatchers {
		wg.Go(func() {
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := &traceReq{}
				out, err := triggers.Run(ctx, b, p, req)
				if err == nil && (!out.Answered() || out.Result != "done" || out.By != "last") {
					err = fmt.Errorf("outcome %+v", out)
				}
				if err == nil {
					err = check(req.seen)
				}
				if err == nil {
					req = &traceReq{}
					err = triggers.Notify(ctx, b, e, req)
					if err == nil {
						err = check(req.seen)
					}
				}
				if err == nil {
					_ = b.Chains()
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			for i := range rounds {
				owner := fmt.Sprintf("w%d-%d", w, i%7)
				prio := triggers.Priority((w*31+i*17)%200 - 100)
				h, err := b.Attach(owner, triggers.Intercept(p, prio, record(prio)), triggers.Observe(e, prio, observe(prio)))
				if err != nil {
					if !errors.Is(err, triggers.ErrDuplicateBinding) {
						errc <- err
						return
					}
					b.DetachOwner(owner)
					continue
				}
				if i%3 == 0 {
					h.Remove()
				}
			}
		})
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
