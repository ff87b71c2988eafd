package apiserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/metrics"
)

type statusOK struct {
	backendv1connect.UnimplementedDaemonServiceHandler
}

func (statusOK) Status(context.Context, *connect.Request[backendv1.StatusRequest]) (*connect.Response[backendv1.StatusResponse], error) {
	return connect.NewResponse(&backendv1.StatusResponse{Version: "t"}), nil
}

// TestInterceptor: unary and streaming requests are recorded with their
// procedure and code, and /metrics behind RequireToken needs the token.
func TestInterceptor(t *testing.T) {
	reg := metrics.NewRegistry()
	ic, err := NewInterceptor(reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(backendv1connect.NewDaemonServiceHandler(statusOK{}, connect.WithInterceptors(ic)))
	mux.Handle("/metrics", reg.Handler())
	srv := httptest.NewServer(RequireToken("0123456789abcdef0123", mux))
	defer srv.Close()
	auth := connect.WithInterceptors(bearerInterceptor("0123456789abcdef0123"))
	c := backendv1connect.NewDaemonServiceClient(srv.Client(), srv.URL, auth)
	ctx := context.Background()
	if _, err := c.Status(ctx, connect.NewRequest(&backendv1.StatusRequest{})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTriggers(ctx, connect.NewRequest(&backendv1.ListTriggersRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("ListTriggers: %v", err)
	}
	stream, err := c.Events(ctx, connect.NewRequest(&backendv1.EventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	stream.Close()

	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without token: %d", code)
	}
	code, out := get("0123456789abcdef0123")
	if code != http.StatusOK {
		t.Fatalf("/metrics with token: %d", code)
	}
	for _, want := range []string{
		`backend_api_request_duration_seconds_count{code="ok",procedure="/backend.v1.DaemonService/Status"} 1`,
		`backend_api_request_duration_seconds_count{code="unimplemented",procedure="/backend.v1.DaemonService/ListTriggers"} 1`,
		`backend_api_request_duration_seconds_count{code="unimplemented",procedure="/backend.v1.DaemonService/Events"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
}

type bearerInterceptor string

func (b bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c := next(ctx, spec)
		c.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return c
	}
}

func (b bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
