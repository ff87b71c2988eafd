package triggerstest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

func TestRecorder(t *testing.T) {
	var r triggerstest.Recorder
	if r.Calls() != nil || r.String() != "" || r.Len() != 0 {
		t.Fatalf("zero Recorder not empty")
	}
	r.Record("a")
	r.Record("b")
	calls := r.Calls()
	calls[0] = "mutated"
	if got := r.Calls(); !slices.Equal(got, []string{"a", "b"}) || r.String() != "a b" || r.Len() != 2 {
		t.Errorf("Calls = %v, String = %q", got, r.String())
	}
	r.Reset()
	if r.Len() != 0 {
		t.Errorf("Reset left %v", r.Calls())
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				r.Record("x")
			}
		})
	}
	wg.Wait()
	if r.Len() != 800 {
		t.Errorf("Len = %d, want 800", r.Len())
	}
}

func TestHelpers(t *testing.T) {
	errBoom := errors.New("boom")
	p := triggers.NewPoint[string, int](triggerstest.UniqueID("triggerstest.p"), "")
	e := triggers.NewEvent[string](triggerstest.UniqueID("triggerstest.e"), "")
	b := triggers.New()
	var r triggerstest.Recorder
	if _, err := b.Attach("a", triggers.Intercept(p, 2, triggerstest.Handler[string](&r, "a", triggers.Continue[int]())),
		triggers.Observe(e, 0, triggerstest.Observer[string](&r, "ea", errBoom))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach("b", triggers.Intercept(p, 1, triggerstest.Handler[string](&r, "b", triggers.Answer(7))),
		triggers.Observe(e, 1, triggerstest.Observer[string](&r, "eb", nil))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach("c", triggers.Intercept(p, 0, triggerstest.FailingHandler[string, int](&r, "c", errBoom))); err != nil {
		t.Fatal(err)
	}
	out, err := triggers.Run(context.Background(), b, p, "req")
	if err != nil || out.Result != 7 || out.By != "b" {
		t.Errorf("Run = %+v, %v", out, err)
	}
	if err := triggers.Notify(context.Background(), b, e, "req"); !errors.Is(err, errBoom) {
		t.Errorf("Notify = %v", err)
	}
	if got, want := r.String(), "a b eb ea"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
	b.DetachOwner("b")
	if _, err := triggers.Run(context.Background(), b, p, "req"); !errors.Is(err, errBoom) {
		t.Errorf("Run = %v, want boom from c", err)
	}
}

func TestUniqueID(t *testing.T) {
	a, b := triggerstest.UniqueID("x.y"), triggerstest.UniqueID("x.y")
	if a == b || !strings.HasPrefix(a, "x.y.t") {
		t.Errorf("UniqueID = %q, %q", a, b)
	}
	if err := triggers.ValidateID(a); err != nil {
		t.Error(err)
	}
}
