package triggers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
