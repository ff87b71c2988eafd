package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"example.org/backend/core/config"
)

// TestReflectionAndHealth: on the socket and on the TCP listener (with the
// token), gRPC reflection lists every service of both API versions and
// health's own, with their descriptors, and health says SERVING for the
// daemon and each listed service, not_found for another name.
func TestReflectionAndHealth(t *testing.T) {
	port := freePort(t)
	_, cfg := start(t, func(c *config.Config) {
		c.APITCPAddress, c.APITCPPlaintext = fmt.Sprintf("127.0.0.1:%d", port), "loopback"
	})
	tok, err := os.ReadFile(cfg.APITokenFile)
	if err != nil {
		t.Fatal(err)
	}
	auth := http.Header{"Authorization": {"Bearer " + strings.TrimSpace(string(tok))}}
	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
		header http.Header
	}{
		{"socket", h2cClient("unix", cfg.Socket), "http://backend", http.Header{}},
		{"tcp", h2cClient("tcp", fmt.Sprintf("127.0.0.1:%d", port)), fmt.Sprintf("http://127.0.0.1:%d", port), auth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rc := grpcreflect.NewClient(tc.client, tc.base, connect.WithGRPC())
			stream := rc.NewStream(ctx, grpcreflect.WithRequestHeaders(tc.header))
			defer stream.Close()
			names, err := stream.ListServices()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range names {
				got = append(got, string(n))
			}
			for _, want := range []string{"backend.v2.DaemonService", "backend.v2.ProfileService", "backend.v2.SessionService",
				"backend.v2.PluginService", "backend.v1.DaemonService", "backend.v1.ProfileService", grpchealth.HealthV1ServiceName,
				grpcreflect.ReflectV1ServiceName} {
				if !slices.Contains(got, want) {
					t.Errorf("reflection lists %v, not %s", got, want)
				}
			}
			files, err := stream.FileContainingSymbol("backend.v2.Event")
			if err != nil || len(files) == 0 || !strings.HasPrefix(files[0].GetName(), "backend/v2/") {
				t.Errorf("descriptor of backend.v2.Event: %v %v", files, err)
			}
			hc := grpchealth.NewClient(tc.client, tc.base, connect.WithGRPC(), connect.WithInterceptors(headers(tc.header)))
			for _, svc := range []string{"", "backend.v2.DaemonService", "backend.v1.ProfileService"} {
				res, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: svc})
				if err != nil || res.Status != grpchealth.StatusServing {
					t.Errorf("health %q: %v %v", svc, res, err)
				}
			}
			if _, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: "nope.Service"}); connect.CodeOf(err) != connect.CodeNotFound {
				t.Errorf("health of an unknown service: %v", err)
			}
		})
	}
	// Without the token, TCP refuses reflection too.
	rc := grpcreflect.NewClient(h2cClient("tcp", fmt.Sprintf("127.0.0.1:%d", port)), fmt.Sprintf("http://127.0.0.1:%d", port), connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := rc.NewStream(ctx)
	defer stream.Close()
	if _, err := stream.ListServices(); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("reflection without the token: %v", err)
	}
}

// h2cClient speaks HTTP/2 without TLS (what gRPC clients do on the
// socket) to addr: bidirectional streams such as reflection need it.
func h2cClient(network, addr string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// headers sets h on every request.
func headers(h http.Header) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			for k, v := range h {
				req.Header()[k] = v
			}
			return next(ctx, req)
		}
	})
}
