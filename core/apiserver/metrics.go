package apiserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/core/metrics"
)

// maxProcedures bounds the procedure label of the API metrics: the
// procedures of the services the core and the built-in plugins mount
// (about 50 today); Connect routes only those, so an unknown path never
// reaches the interceptor.
const maxProcedures = 128

// codes are the code label values: "ok" and the Connect error codes.
var codes = func() []string {
	out := []string{"ok"}
	for c := connect.CodeCanceled; c <= connect.CodeUnauthenticated; c++ {
		out = append(out, c.String())
	}
	return out
}()

// Interceptor records the duration and the code of every API request.
type Interceptor struct {
	h *metrics.Histogram
}

var _ connect.Interceptor = (*Interceptor)(nil)

// NewInterceptor declares backend_api_request_duration_seconds on reg and
// returns the interceptor that feeds it. Every Connect handler of the
// daemon takes it (core.APIRegistry.HandlerOptions).
func NewInterceptor(reg *metrics.Registry) (*Interceptor, error) {
	h, err := reg.Histogram("core", metrics.Opts{
		Name:   "backend_api_request_duration_seconds",
		Help:   "Duration of the API requests the daemon served, by procedure (/backend.v1.Service/Method) and code (ok, or the Connect error code); a stream counts once, when it ends.",
		Labels: []metrics.Label{{Name: "procedure", Max: maxProcedures}, {Name: "code", Values: codes}},
	})
	if err != nil {
		return nil, fmt.Errorf("declare API metrics: %w", err)
	}
	return &Interceptor{h: h}, nil
}

func (i *Interceptor) observe(procedure string, start time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
		if errors.Is(err, context.Canceled) && connect.CodeOf(err) == connect.CodeUnknown {
			code = connect.CodeCanceled.String()
		}
	}
	i.h.With(procedure, code).Observe(time.Since(start).Seconds())
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		if !req.Spec().IsClient {
			i.observe(req.Spec().Procedure, start, err)
		}
		return res, err
	}
}

// WrapStreamingClient implements connect.Interceptor (nothing to record:
// the daemon is the server).
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.observe(conn.Spec().Procedure, start, err)
		return err
	}
}
