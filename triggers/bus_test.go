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

	"go.uber.org/goleak"

	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type getReq struct{ Node string }

type page struct{ Items []string }

func newPoint(t *testing.T) *triggers.Point[*getReq, *page] {
	t.Helper()
	return triggers.NewPoint[*getReq, *page](triggerstest.UniqueID("test.items.get"), "test point")
}

func newEvent(t *testing.T) *triggers.Event[*getReq] {
	t.Helper()
	return triggers.NewEvent[*getReq](triggerstest.UniqueID("test.items.seen"), "test event")
}

// rec returns a handler recording name and returning d.
func rec(r *triggerstest.Recorder, name string, d triggers.Decision[*page]) triggers.Handler[*getReq, *page] {
	return triggerstest.Handler[*getReq](r, name, d)
}

var cont = triggers.Continue[*page]()

func mustAttach(t *testing.T, b *triggers.Bus, owner string, bs ...triggers.Binding) *triggers.Handle {
	t.Helper()
	h, err := b.Attach(owner, bs...)
	if err != nil {
		t.Fatalf("Attach(%q): %v", owner, err)
	}
	return h
}

func run(t *testing.T, b *triggers.Bus, p *triggers.Point[*getReq, *page]) triggers.Outcome[*page] {
	t.Helper()
	out, err := triggers.Run(context.Background(), b, p, &getReq{Node: "n"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

func TestRunOrder(t *testing.T) {
	type att struct {
		owner string
		prio  triggers.Priority
	}
	tests := []struct {
		name string
		atts []att
		want string
	}{
		{"none", nil, ""},
		{"one", []att{{"a", 0}}, "a"},
		{"descending priority", []att{{"low", -5}, {"high", 50}, {"mid", 0}}, "high mid low"},
		{"ties in attach order", []att{{"a", 0}, {"b", 0}, {"c", 0}}, "a b c"},
		{"ties stay stable among priorities", []att{
			{"d1", triggers.PriorityDefault}, {"c1", triggers.PriorityCache}, {"f1", triggers.PriorityFirst},
			{"l1", triggers.PriorityLast}, {"d2", triggers.PriorityDefault}, {"c2", triggers.PriorityCache},
			{"l2", triggers.PriorityLast}, {"f2", triggers.PriorityFirst}, {"d3", triggers.PriorityDefault},
		}, "f1 f2 c1 c2 d1 d2 d3 l1 l2"},
		{"extreme priorities", []att{{"min", -1 << 40}, {"max", 1 << 40}, {"zero", 0}}, "max zero min"},
		{"neighbours", []att{{"c", triggers.PriorityCache}, {"c+1", triggers.PriorityCache + 1}, {"c-1", triggers.PriorityCache - 1}}, "c+1 c c-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPoint(t)
			b := triggers.New()
			var r triggerstest.Recorder
			for _, a := range tt.atts {
				mustAttach(t, b, a.owner, triggers.Intercept(p, a.prio, rec(&r, a.owner, cont)))
			}
			out := run(t, b, p)
			if got := r.String(); got != tt.want {
				t.Errorf("calls = %q, want %q", got, tt.want)
			}
			if out.Action != triggers.ActionContinue || out.By != "" || out.Result != nil {
				t.Errorf("outcome = %+v, want zero (continue)", out)
			}
		})
	}
}

// TestRunOrderOneAttach checks the order when one Attach call binds several
// points, and that other points of the same bus are not affected.
func TestRunOrderOneAttach(t *testing.T) {
	p1, p2 := newPoint(t), newPoint(t)
	b := triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b, "x",
		triggers.Intercept(p1, 1, rec(&r, "x1", cont)),
		triggers.Intercept(p2, 1, rec(&r, "x2", cont)))
	mustAttach(t, b, "y",
		triggers.Intercept(p2, 2, rec(&r, "y2", cont)),
		triggers.Intercept(p1, 1, rec(&r, "y1", cont)))
	run(t, b, p1)
	r.Record("|")
	run(t, b, p2)
	if got, want := r.String(), "x1 y1 | y2 x2"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestRunDecisions(t *testing.T) {
	hit := &page{Items: []string{"i1"}}
	other := &page{Items: []string{"ignored"}}
	type h struct {
		owner string
		prio  triggers.Priority
		d     triggers.Decision[*page]
	}
	tests := []struct {
		name      string
		hs        []h
		wantCalls string
		want      triggers.Outcome[*page]
		answered  bool
		cancelled bool
		proceed   bool
	}{
		{
			name:      "no handler",
			want:      triggers.Outcome[*page]{Action: triggers.ActionContinue},
			proceed:   true,
			wantCalls: "",
		},
		{
			name:      "all continue",
			hs:        []h{{"a", 2, cont}, {"b", 1, cont}, {"c", 0, triggers.Decision[*page]{}}},
			wantCalls: "a b c",
			want:      triggers.Outcome[*page]{Action: triggers.ActionContinue},
			proceed:   true,
		},
		{
			name:      "cancel stops the chain",
			hs:        []h{{"a", 2, cont}, {"b", 1, triggers.Cancel[*page]()}, {"c", 0, cont}},
			wantCalls: "a b",
			want:      triggers.Outcome[*page]{Action: triggers.ActionCancel, By: "b"},
			cancelled: true,
		},
		{
			name:      "cancel ignores a result",
			hs:        []h{{"a", 0, triggers.Decision[*page]{Action: triggers.ActionCancel, Result: other}}},
			wantCalls: "a",
			want:      triggers.Outcome[*page]{Action: triggers.ActionCancel, By: "a"},
			cancelled: true,
		},
		{
			name:      "answer short-circuits with a result",
			hs:        []h{{"first", triggers.PriorityFirst, cont}, {"cache", triggers.PriorityCache, triggers.Answer(hit)}, {"net", 0, triggers.Answer(other)}},
			wantCalls: "first cache",
			want:      triggers.Outcome[*page]{Action: triggers.ActionAnswer, Result: hit, By: "cache"},
			answered:  true,
		},
		{
			name:      "answer nil is still an answer",
			hs:        []h{{"a", 0, triggers.Answer[*page](nil)}, {"b", -1, cont}},
			wantCalls: "a",
			want:      triggers.Outcome[*page]{Action: triggers.ActionAnswer, By: "a"},
			answered:  true,
		},
		{
			name:      "skip rest lets the workflow continue",
			hs:        []h{{"a", 2, cont}, {"b", 1, triggers.SkipRest[*page]()}, {"c", 0, triggers.Cancel[*page]()}},
			wantCalls: "a b",
			want:      triggers.Outcome[*page]{Action: triggers.ActionSkipRest, By: "b"},
			proceed:   true,
		},
		{
			name:      "skip rest ignores a result",
			hs:        []h{{"a", 0, triggers.Decision[*page]{Action: triggers.ActionSkipRest, Result: other}}},
			wantCalls: "a",
			want:      triggers.Outcome[*page]{Action: triggers.ActionSkipRest, By: "a"},
			proceed:   true,
		},
		{
			name:      "first decision wins",
			hs:        []h{{"a", 0, triggers.Cancel[*page]()}, {"b", 0, triggers.Answer(hit)}},
			wantCalls: "a",
			want:      triggers.Outcome[*page]{Action: triggers.ActionCancel, By: "a"},
			cancelled: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPoint(t)
			b := triggers.New()
			var r triggerstest.Recorder
			for _, h := range tt.hs {
				mustAttach(t, b, h.owner, triggers.Intercept(p, h.prio, rec(&r, h.owner, h.d)))
			}
			out := run(t, b, p)
			if got := r.String(); got != tt.wantCalls {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			if out != tt.want {
				t.Errorf("outcome = %+v, want %+v", out, tt.want)
			}
			if out.Answered() != tt.answered || out.Cancelled() != tt.cancelled || out.Proceed() != tt.proceed {
				t.Errorf("Answered/Cancelled/Proceed = %v/%v/%v, want %v/%v/%v",
					out.Answered(), out.Cancelled(), out.Proceed(), tt.answered, tt.cancelled, tt.proceed)
			}
		})
	}
}

func TestRunInvalidAction(t *testing.T) {
	p := newPoint(t)
	b := triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b, "bad", triggers.Intercept(p, 1, rec(&r, "bad", triggers.Decision[*page]{Action: 9})))
	mustAttach(t, b, "next", triggers.Intercept(p, 0, rec(&r, "next", cont)))
	out, err := triggers.Run(context.Background(), b, p, &getReq{})
	if !errors.Is(err, triggers.ErrInvalidAction) {
		t.Fatalf("err = %v, want ErrInvalidAction", err)
	}
	if want := "triggers: " + p.ID() + "/bad: invalid action 9"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if out != (triggers.Outcome[*page]{}) || r.String() != "bad" {
		t.Errorf("outcome %+v, calls %q", out, r.String())
	}
}

type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

func TestRunHandlerError(t *testing.T) {
	errSentinel := errors.New("item-not-found")
	tests := []struct {
		name string
		err  error
		is   error
	}{
		{"sentinel", errSentinel, errSentinel},
		{"wrapped sentinel", fmt.Errorf("lookup: %w", errSentinel), errSentinel},
		{"context", context.Canceled, context.Canceled},
		{"typed", &codeError{404}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPoint(t)
			b := triggers.New()
			var r triggerstest.Recorder
			mustAttach(t, b, "a", triggers.Intercept(p, 2, rec(&r, "a", cont)))
			mustAttach(t, b, "failing", triggers.Intercept(p, 1,
				triggerstest.FailingHandler[*getReq, *page](&r, "failing", tt.err)))
			mustAttach(t, b, "c", triggers.Intercept(p, 0, rec(&r, "c", triggers.Answer(&page{}))))

			out, err := triggers.Run(context.Background(), b, p, &getReq{})
			if err == nil {
				t.Fatal("Run: nil error")
			}
			if want := "triggers: " + p.ID() + "/failing: " + tt.err.Error(); err.Error() != want {
				t.Errorf("err = %q, want %q", err, want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			var he *triggers.HandlerError
			if !errors.As(err, &he) || he.Point != p.ID() || he.Owner != "failing" || he.Err != tt.err {
				t.Errorf("errors.As HandlerError = %+v", he)
			}
			var ce *codeError
			if errors.As(tt.err, &ce) && (!errors.As(err, &ce) || ce.code != 404) {
				t.Errorf("errors.As(codeError) does not see through")
			}
			if got := r.String(); got != "a failing" {
				t.Errorf("calls = %q, want %q", got, "a failing")
			}
			if out != (triggers.Outcome[*page]{}) {
				t.Errorf("outcome = %+v, want zero", out)
			}
		})
	}
}

func TestRunPanic(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		at      int // index of the panicking handler among 4
		value   any
		wantMsg string
		is      error
	}{
		{"first handler, string", 0, "kaboom", "panic: kaboom", nil},
		{"third handler, error", 2, errBoom, "panic: boom", errBoom},
		{"last handler, nil", 3, nil, "panic: panic called with nil argument", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPoint(t)
			b := triggers.New()
			var r triggerstest.Recorder
			var want []string
			for i := range 4 {
				owner := fmt.Sprintf("o%d", i)
				h := rec(&r, owner, cont)
				if i == tt.at {
					h = func(context.Context, *getReq) (triggers.Decision[*page], error) {
						r.Record(owner + "!")
						panic(tt.value)
					}
					want = append(want, owner+"!")
				} else if i < tt.at {
					want = append(want, owner)
				}
				mustAttach(t, b, owner, triggers.Intercept(p, triggers.Priority(10-i), h))
			}
			out, err := triggers.Run(context.Background(), b, p, &getReq{})
			var pe *triggers.PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want *PanicError", err, err)
			}
			owner := fmt.Sprintf("o%d", tt.at)
			if pe.Point != p.ID() || pe.Owner != owner {
				t.Errorf("PanicError point/owner = %q/%q, want %q/%q", pe.Point, pe.Owner, p.ID(), owner)
			}
			if tt.value != nil && pe.Value != tt.value {
				t.Errorf("PanicError.Value = %v, want %v", pe.Value, tt.value)
			}
			if !strings.Contains(string(pe.Stack), "TestRunPanic") {
				t.Errorf("PanicError.Stack does not show the handler:\n%s", pe.Stack)
			}
			if wantMsg := "triggers: " + p.ID() + "/" + owner + ": " + tt.wantMsg; err.Error() != wantMsg {
				t.Errorf("err = %q, want %q", err, wantMsg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if got, want := r.String(), strings.Join(want, " "); got != want {
				t.Errorf("calls = %q, want %q", got, want)
			}
			if out != (triggers.Outcome[*page]{}) {
				t.Errorf("outcome = %+v, want zero", out)
			}
			// The bus still works after a panic.
			r.Reset()
			mustAttach(t, b, "x", triggers.Intercept(p, 100, rec(&r, "x", triggers.Cancel[*page]())))
			if out := run(t, b, p); !out.Cancelled() || out.By != "x" {
				t.Errorf("after panic: outcome %+v", out)
			}
		})
	}
}

// TestRunNested checks that a handler may dispatch (Run or Notify) from
// inside a handler, and that a panic inside the inner dispatch is reported by
// the inner Run only.
func TestRunNested(t *testing.T) {
	outer, inner := newPoint(t), newPoint(t)
	b := triggers.New()
	var r triggerstest.Recorder
	mustAttach(t, b, "inner", triggers.Intercept(inner, 0, func(context.Context, *getReq) (triggers.Decision[*page], error) {
		r.Record("inner")
		panic("inner panic")
	}))
	mustAttach(t, b, "outer", triggers.Intercept(outer, 0, func(ctx context.Context, req *getReq) (triggers.Decision[*page], error) {
		r.Record("outer")
		_, err := triggers.Run(ctx, b, inner, req)
		var pe *triggers.PanicError
		if !errors.As(err, &pe) || pe.Owner != "inner" || pe.Point != inner.ID() {
			t.Errorf("inner Run err = %v", err)
		}
		return triggers.Answer(&page{}), nil
	}))
	out := run(t, b, outer)
	if !out.Answered() || out.By != "outer" || r.String() != "outer inner" {
		t.Errorf("outcome %+v, calls %q", out, r.String())
	}
}

func TestRemove(t *testing.T) {
	p := newPoint(t)
	b := triggers.New()
	var r triggerstest.Recorder
	ha := mustAttach(t, b, "a", triggers.Intercept(p, 0, rec(&r, "a", cont)))
	hb := mustAttach(t, b, "b", triggers.Intercept(p, 0, rec(&r, "b", cont)))
	mustAttach(t, b, "c", triggers.Intercept(p, 0, rec(&r, "c", cont)))
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, "a b c"},
		{hb.Remove, "a c"},
		{hb.Remove, "a c"}, // idempotent
		{func() { mustAttach(t, b, "b", triggers.Intercept(p, 0, rec(&r, "b2", cont))) }, "a c b2"},
		{ha.Remove, "c b2"},
		{func() { mustAttach(t, b, "a", triggers.Intercept(p, 1, rec(&r, "a2", cont))) }, "a2 c b2"},
		{ha.Remove, "a2 c b2"}, // an old handle does not remove a new binding of its owner
		{func() { (*triggers.Handle)(nil).Remove() }, "a2 c b2"},
	}
	for i, s := range steps {
		s.do()
		r.Reset()
		run(t, b, p)
		if got := r.String(); got != s.want {
			t.Errorf("step %d: calls = %q, want %q", i, got, s.want)
		}
	}
}

// TestRemoveRemovesOnlyItsBindings checks a handle with bindings on several
// points, beside another owner's bindings.
func TestRemoveRemovesOnlyItsBindings(t *testing.T) {
	p1, p2 := newPoint(t), newPoint(t)
	e := newEvent(t)
	b := triggers.New()
	var r triggerstest.Recorder
	h := mustAttach(t, b, "x",
		triggers.Intercept(p1, 0, rec(&r, "x1", cont)),
		triggers.Intercept(p2, 0, rec(&r, "x2", cont)),
		triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "xe", nil)))
	mustAttach(t, b, "y",
		triggers.Intercept(p1, 0, rec(&r, "y1", cont)),
		triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "ye", nil)))
	dispatchAll := func() string {
		r.Reset()
		run(t, b, p1)
		run(t, b, p2)
		if err := triggers.Notify(context.Background(), b, e, &getReq{}); err != nil {
			t.Fatal(err)
		}
		return r.String()
	}
	if got, want := dispatchAll(), "x1 y1 x2 xe ye"; got != want {
		t.Errorf("before: %q, want %q", got, want)
	}
	if h.Owner() != "x" {
		t.Errorf("Owner() = %q", h.Owner())
	}
	h.Remove()
	if got, want := dispatchAll(), "y1 ye"; got != want {
		t.Errorf("after: %q, want %q", got, want)
	}
}

func TestDetachOwner(t *testing.T) {
	p1, p2 := newPoint(t), newPoint(t)
	e := newEvent(t)
	b := triggers.New()
	var r triggerstest.Recorder
	h1 := mustAttach(t, b, "plug", triggers.Intercept(p1, 5, rec(&r, "plug1", cont)))
	mustAttach(t, b, "other", triggers.Intercept(p1, 0, rec(&r, "other1", cont)), triggers.Intercept(p2, 0, rec(&r, "other2", cont)))
	mustAttach(t, b, "plug", triggers.Intercept(p2, 5, rec(&r, "plug2", cont)), triggers.Observe(e, 0, triggerstest.Observer[*getReq](&r, "plug-e", nil)))

	if n := b.DetachOwner("plug"); n != 3 {
		t.Errorf("DetachOwner = %d, want 3", n)
	}
	if n := b.DetachOwner("plug"); n != 0 {
		t.Errorf("second DetachOwner = %d, want 0", n)
	}
	if n := b.DetachOwner("nobody"); n != 0 {
		t.Errorf("DetachOwner(nobody) = %d, want 0", n)
	}
	h1.Remove() // a no-op now
	run(t, b, p1)
	run(t, b, p2)
	if err := triggers.Notify(context.Background(), b, e, &getReq{}); err != nil {
		t.Fatal(err)
	}
	if got, want := r.String(), "other1 other2"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
	// The owner may come back, on the same points.
	mustAttach(t, b, "plug", triggers.Intercept(p1, 5, rec(&r, "plug1bis", cont)))
	r.Reset()
	run(t, b, p1)
	if got, want := r.String(), "plug1bis other1"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

// TestChangesDuringDispatch checks that a dispatch keeps the chain it
// started with, whatever its handlers attach or remove.
func TestChangesDuringDispatch(t *testing.T) {
	tests := []struct {
		name        string
		change      func(b *triggers.Bus, p *triggers.Point[*getReq, *page], r *triggerstest.Recorder, hc *triggers.Handle)
		first, next string
	}{
		{
			name: "remove a later handler",
			change: func(_ *triggers.Bus, _ *triggers.Point[*getReq, *page], _ *triggerstest.Recorder, hc *triggers.Handle) {
				hc.Remove()
			},
			first: "a b c", next: "a b",
		},
		{
			name: "detach the owner of a later handler",
			change: func(b *triggers.Bus, _ *triggers.Point[*getReq, *page], _ *triggerstest.Recorder, _ *triggers.Handle) {
				b.DetachOwner("c")
			},
			first: "a b c", next: "a b",
		},
		{
			name: "detach the running handler's own owner",
			change: func(b *triggers.Bus, _ *triggers.Point[*getReq, *page], _ *triggerstest.Recorder, _ *triggers.Handle) {
				b.DetachOwner("b")
			},
			first: "a b c", next: "a c",
		},
		{
			name: "attach a handler that would run next",
			change: func(b *triggers.Bus, p *triggers.Point[*getReq, *page], r *triggerstest.Recorder, _ *triggers.Handle) {
				if _, err := b.Attach("new", triggers.Intercept(p, 1, rec(r, "new", cont))); err != nil {
					panic(err)
				}
			},
			first: "a b c", next: "a b new c",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPoint(t)
			b := triggers.New()
			var r triggerstest.Recorder
			var hc *triggers.Handle
			done := false
			mustAttach(t, b, "a", triggers.Intercept(p, 3, rec(&r, "a", cont)))
			mustAttach(t, b, "b", triggers.Intercept(p, 2, func(context.Context, *getReq) (triggers.Decision[*page], error) {
				r.Record("b")
				if !done {
					done = true
					tt.change(b, p, &r, hc)
				}
				return cont, nil
			}))
			hc = mustAttach(t, b, "c", triggers.Intercept(p, 0, rec(&r, "c", cont)))
			run(t, b, p)
			if got := r.String(); got != tt.first {
				t.Errorf("dispatch in progress: %q, want %q", got, tt.first)
			}
			r.Reset()
			run(t, b, p)
			if got := r.String(); got != tt.next {
				t.Errorf("next dispatch: %q, want %q", got, tt.next)
			}
		})
	}
}

func TestAttachErrors(t *testing.T) {
	p, p2 := newPoint(t), newPoint(t)
	var nilPoint *triggers.Point[*getReq, *page]
	var nilEvent *triggers.Event[*getReq]
	var r triggerstest.Recorder
	ok := triggers.Intercept(p2, 0, rec(&r, "ok", cont))
	tests := []struct {
		name  string
		owner string
		bs    []triggers.Binding
		is    error
	}{
		{"empty owner", "", []triggers.Binding{ok}, triggers.ErrInvalidBinding},
		{"nil binding", "o", []triggers.Binding{ok, nil}, triggers.ErrInvalidBinding},
		{"nil point", "o", []triggers.Binding{ok, triggers.Intercept(nilPoint, 0, rec(&r, "x", cont))}, triggers.ErrInvalidBinding},
		{"zero point", "o", []triggers.Binding{ok, triggers.Intercept(&triggers.Point[*getReq, *page]{}, 0, rec(&r, "x", cont))}, triggers.ErrInvalidBinding},
		{"zero event", "o", []triggers.Binding{ok, triggers.Observe(&triggers.Event[*getReq]{}, 0, triggerstest.Observer[*getReq](&r, "x", nil))}, triggers.ErrInvalidBinding},
		{"nil handler", "o", []triggers.Binding{ok, triggers.Intercept[*getReq, *page](p, 0, nil)}, triggers.ErrInvalidBinding},
		{"nil event", "o", []triggers.Binding{ok, triggers.Observe(nilEvent, 0, triggerstest.Observer[*getReq](&r, "x", nil))}, triggers.ErrInvalidBinding},
		{"nil observer", "o", []triggers.Binding{ok, triggers.Observe[*getReq](newEvent(t), 0, nil)}, triggers.ErrInvalidBinding},
		{"same point twice in one call", "o", []triggers.Binding{ok, triggers.Intercept(p, 0, rec(&r, "x", cont)), triggers.Intercept(p, 5, rec(&r, "y", cont))}, triggers.ErrDuplicateBinding},
		{"point already bound by the owner", "existing", []triggers.Binding{ok, triggers.Intercept(p, 9, rec(&r, "x", cont))}, triggers.ErrDuplicateBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := triggers.New()
			mustAttach(t, b, "existing", triggers.Intercept(p, 0, rec(&r, "existing", cont)))
			before := b.Chains()
			h, err := b.Attach(tt.owner, tt.bs...)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Attach err = %v, want %v", err, tt.is)
			}
			if h != nil {
				t.Errorf("Attach returned a handle with an error")
			}
			if !strings.HasPrefix(err.Error(), "triggers: attach") {
				t.Errorf("err = %q, want prefix %q", err, "triggers: attach")
			}
			// All or nothing: the valid binding on p2 was not attached.
			if after := b.Chains(); !slices.EqualFunc(before, after, chainInfoEqual) {
				t.Errorf("chains changed after a failed Attach")
			}
			r.Reset()
			run(t, b, p2)
			run(t, b, p)
			if got := r.String(); got != "existing" {
				t.Errorf("calls = %q, want %q", got, "existing")
			}
		})
	}
}

func chainInfoEqual(a, b triggers.ChainInfo) bool {
	return a.Point == b.Point && a.Kind == b.Kind && a.Doc == b.Doc && slices.Equal(a.Handlers, b.Handlers)
}

func TestAttachEmpty(t *testing.T) {
	b := triggers.New()
	h, err := b.Attach("o")
	if err != nil || h == nil {
		t.Fatalf("Attach with no binding = %v, %v", h, err)
	}
	h.Remove()
	h.Remove()
}

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
