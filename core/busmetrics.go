package core

import (
	"fmt"

	"example.org/backend/core/metrics"
	"example.org/backend/triggers"
)

// maxPoints bounds the point label of the bus metrics: the points and
// events declared in the binary (about 30 today; external plugins cannot
// declare any).
const maxPoints = 128

// busOutcomes are the outcome label values of backend_bus_dispatch_seconds.
var busOutcomes = []string{"continue", "answer", "cancel", "skip_rest", "error"}

// instrumentBus makes every dispatch of bus observed in
// backend_bus_dispatch_duration_seconds{point,kind,outcome}.
func instrumentBus(bus *triggers.Bus, reg *metrics.Registry) error {
	h, err := reg.Histogram("core", metrics.Opts{
		Name: "backend_bus_dispatch_duration_seconds",
		Help: "Time the handlers of a trigger point took per dispatch, by point, kind (intercept or observe) and outcome (the decision that ended the chain, or error); dispatches of a point without handlers are not counted.",
		Labels: []metrics.Label{{Name: "point", Max: maxPoints}, {Name: "kind", Values: []string{triggers.KindIntercept, triggers.KindObserve}},
			{Name: "outcome", Values: busOutcomes}},
		Buckets: metrics.FastBuckets,
	})
	if err != nil {
		return fmt.Errorf("declare bus metrics: %w", err)
	}
	bus.SetObserver(func(d triggers.Dispatch) {
		outcome := "continue"
		switch {
		case d.Failed:
			outcome = "error"
		case d.Action == triggers.ActionAnswer:
			outcome = "answer"
		case d.Action == triggers.ActionCancel:
			outcome = "cancel"
		case d.Action == triggers.ActionSkipRest:
			outcome = "skip_rest"
		}
		h.With(d.Point, d.Kind, outcome).Observe(d.Elapsed.Seconds())
	})
	return nil
}
