package triggers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"example.org/backend/triggers"
)

type benchReq struct {
	Service, Node string
	Max           int
}

type benchRes struct{ Items []string }

// Declared once: benchmarks and tests run several times with -count.
var (
	benchPoint = triggers.NewPoint[*benchReq, *benchRes]("bench.items.get", "benchmark point")
	benchEvent = triggers.NewEvent[*benchReq]("bench.items.seen", "benchmark event")
)

// noop is the no-op handler both benchmarks call.
func noop(context.Context, *benchReq) (triggers.Decision[*benchRes], error) {
	return triggers.Decision[*benchRes]{}, nil
}

func noopObserver(context.Context, *benchReq) error { return nil }

func benchHandlers(n int) []triggers.Handler[*benchReq, *benchRes] {
	hs := make([]triggers.Handler[*benchReq, *benchRes], n)
	for i := range hs {
		hs[i] = noop
	}
	return hs
}

// benchBus attaches n no-op handlers (one owner each) on benchPoint and n
// no-op observers on benchEvent.
func benchBus(tb testing.TB, n int) *triggers.Bus {
	tb.Helper()
	b := triggers.New()
	for i, h := range benchHandlers(n) {
		if _, err := b.Attach("owner"+strconv.Itoa(i),
			triggers.Intercept(benchPoint, triggers.Priority(i%3), h),
			triggers.Observe(benchEvent, triggers.Priority(i%3), noopObserver),
		); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

var sinkOutcome triggers.Outcome[*benchRes]

func BenchmarkRun(b *testing.B) {
	ctx := context.Background()
	req := &benchReq{Service: "pubsub.example.org", Node: "urn:xmpp:microblog:0", Max: 20}
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("handlers=%d", n), func(b *testing.B) {
			bus := benchBus(b, n)
			b.ReportAllocs()
			for b.Loop() {
				out, err := triggers.Run(ctx, bus, benchPoint, req)
				if err != nil {
					b.Fatal(err)
				}
				sinkOutcome = out
			}
		})
	}
}

// BenchmarkBaseline calls the same handler funcs through func values in a
// loop, with the same arguments and the same decision check per call: the
// floor Run is measured against.
func BenchmarkBaseline(b *testing.B) {
	ctx := context.Background()
	req := &benchReq{Service: "pubsub.example.org", Node: "urn:xmpp:microblog:0", Max: 20}
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("handlers=%d", n), func(b *testing.B) {
			hs := benchHandlers(n)
			b.ReportAllocs()
			for b.Loop() {
				var out triggers.Outcome[*benchRes]
				for _, h := range hs {
					d, err := h(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					if d.Action != triggers.ActionContinue {
						out = triggers.Outcome[*benchRes]{Result: d.Result, Action: d.Action}
						break
					}
				}
				sinkOutcome = out
			}
		})
	}
}

func BenchmarkNotify(b *testing.B) {
	ctx := context.Background()
	req := &benchReq{Service: "pubsub.example.org", Node: "urn:xmpp:microblog:0", Max: 20}
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("observers=%d", n), func(b *testing.B) {
			bus := benchBus(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if err := triggers.Notify(ctx, bus, benchEvent, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunParallel measures dispatch from every P at once: the read
// path takes no lock, so it should scale.
func BenchmarkRunParallel(b *testing.B) {
	req := &benchReq{Service: "pubsub.example.org", Node: "urn:xmpp:microblog:0", Max: 20}
	bus := benchBus(b, 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := triggers.Run(ctx, bus, benchPoint, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRunAllocs asserts that dispatch does not allocate, with 0, 1 and 10
// no-op handlers or observers (an allocation count, not a timing).
func TestRunAllocs(t *testing.T) {
	ctx := context.Background()
	req := &benchReq{Service: "s", Node: "n"}
	for _, n := range []int{0, 1, 10} {
		t.Run(fmt.Sprintf("handlers=%d", n), func(t *testing.T) {
			bus := benchBus(t, n)
			run := testing.AllocsPerRun(200, func() {
				if _, err := triggers.Run(ctx, bus, benchPoint, req); err != nil {
					t.Fatal(err)
				}
			})
			notify := testing.AllocsPerRun(200, func() {
				if err := triggers.Notify(ctx, bus, benchEvent, req); err != nil {
					t.Fatal(err)
				}
			})
			if run != 0 || notify != 0 {
				t.Errorf("allocs per dispatch: Run %v, Notify %v; want 0", run, notify)
			}
		})
	}
	t.Run("answer", func(t *testing.T) {
		bus := triggers.New()
		res := &benchRes{}
		if _, err := bus.Attach("cache", triggers.Intercept(benchPoint, triggers.PriorityCache,
			func(context.Context, *benchReq) (triggers.Decision[*benchRes], error) {
				return triggers.Answer(res), nil
			})); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(200, func() {
			out, _ := triggers.Run(ctx, bus, benchPoint, req)
			if out.Result != res {
				t.Fatal("no answer")
			}
		}); a != 0 {
			t.Errorf("allocs per answered dispatch: %v; want 0", a)
		}
	})
	t.Run("nil bus", func(t *testing.T) {
		if a := testing.AllocsPerRun(200, func() {
			_, _ = triggers.Run(ctx, nil, benchPoint, req)
			_ = triggers.Notify(ctx, nil, benchEvent, req)
		}); a != 0 {
			t.Errorf("allocs: %v; want 0", a)
		}
	})
}
