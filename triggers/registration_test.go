package triggers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

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
