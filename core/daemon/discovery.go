package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"example.org/backend/core"
)

// serviceNames are the fully-qualified names of the registered Connect
// services ("backend.v2.PubSubService"), from their paths.
func serviceNames(services []core.APIService) []string {
	var names []string
	for _, s := range services {
		if n := strings.Trim(s.Path, "/"); n != "" && strings.Contains(n, ".") {
			names = append(names, n)
		}
	}
	return names
}

// discoveryHandlers are gRPC server reflection (v1 and v1alpha) listing
// names, and the gRPC health service: the daemon ("") and each of names
// are SERVING while the database answers, NOT_SERVING otherwise; another
// name is not_found.
func discoveryHandlers(names []string, ping func(context.Context) error, opts ...connect.HandlerOption) map[string]http.Handler {
	all := append(append([]string{}, names...), grpchealth.HealthV1ServiceName)
	reflector := grpcreflect.NewStaticReflector(append(all, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName)...)
	out := map[string]http.Handler{}
	path, h := grpcreflect.NewHandlerV1(reflector, opts...)
	out[path] = h
	path, h = grpcreflect.NewHandlerV1Alpha(reflector, opts...)
	out[path] = h
	known := map[string]bool{"": true}
	for _, n := range all {
		known[n] = true
	}
	path, h = grpchealth.NewHandler(&healthChecker{known: known, ping: ping}, opts...)
	out[path] = h
	return out
}

// healthChecker answers health checks from a database ping.
type healthChecker struct {
	known map[string]bool
	ping  func(context.Context) error
}

func (c *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if !c.known[req.Service] {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q (see server reflection for the list)", req.Service))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.ping(ctx); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
