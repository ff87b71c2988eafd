// Package sdktest runs a plugin in process for its author's tests: the
// plugin is served by the SDK's real gRPC service over an in-memory
// connection, and the test calls it through the daemon's own client
// (*host.Client), so requests and answers cross the same conversions, limits
// and panic handling as in production, without a subprocess.
//
//	func TestParse(t *testing.T) {
//		c := sdktest.Run(t, myplugin.Plugin())
//		res, err := c.Parse(context.Background(), sdk.ParseRequest{…})
//		…
//	}
package sdktest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
	"example.org/backend/plugin-sdk/internal/wire"
)

// Run serves p in process and returns a client connected to it. The plugin
// is stopped when the test ends (or by the client's Kill). An invalid plugin
// fails the test.
func Run(t testing.TB, p *sdk.Plugin) *host.Client {
	t.Helper()
	srv, icpt, err := wire.NewServer(p)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(append(wire.ServerOptions(), grpc.ChainUnaryInterceptor(icpt))...)
	pluginv1.RegisterPluginServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, wire.DialOptions()...)
	conn, err := grpc.NewClient("passthrough:///sdktest", opts...)
	if err != nil {
		gs.Stop()
		t.Fatalf("sdktest: connect: %v", err)
	}
	c := wire.NewHostClient(p.Name, pluginv1.NewPluginClient(conn), func() {
		_ = conn.Close()
		gs.Stop()
	}).(*host.Client)
	t.Cleanup(c.Kill)
	return c
}
