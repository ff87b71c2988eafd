package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
	"example.org/backend/plugin-sdk/internal/wire"
)

// parentPollInterval is how often the watchdog checks that the daemon that
// started the plugin is still its parent.
const parentPollInterval = 500 * time.Millisecond

// Serve runs the plugin until the daemon stops it. It must be the first thing
// main does: the daemon reads the handshake on stdout, so nothing may be
// written to stdout before (or after) it; use Logger for logs.
//
// Serve validates p, refuses to run when the daemon did not start the
// process (it returns an error for people), performs the go-plugin handshake
// (protocol version ProtocolVersion, gRPC, mutual TLS when the daemon asks),
// raises the message limits to MaxMessageSize, turns a panic in a handler
// into an error for that call, and exits the process if its parent (the
// daemon) goes away, even when the daemon was killed with SIGKILL. It returns
// nil when the daemon closed the plugin.
func Serve(p *Plugin) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("invalid plugin: %w", err)
	}
	if os.Getenv(wire.CookieKey) != wire.CookieValue {
		return fmt.Errorf("%s is a plugin of the backend daemon: the daemon starts it, it is not meant to be run by hand (install it in a plugin directory)", p.Name)
	}
	// The Go runtime's defaults (GOGC=100) are kept: GOGC=400, used before,
	// held 22 MiB of anonymous memory in the microblog plugin after a
	// 5 000-item sync for a live heap of 5 MB, against 10.5 MiB with the
	// default, for a few more collections of a small heap (issue 22).
	// go-plugin replaces os.Stderr after the handshake; logs must go to the
	// real stderr, which the daemon parses.
	hl := newHCLogger(p.Name, os.Stderr)
	log := slog.New(newHCLogHandler(hl))
	defaultLogger.Store(log)
	stop := watchParent(log)
	defer stop()

	srv := newServer(p)
	icpt := recoverInterceptor(log)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			wire.ProtocolVersion: {wire.PluginSetName: &grpcPlugin{srv: srv}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, wire.ServerOptions()...)
			return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(icpt))...)
		},
		Logger: hl,
	})
	return nil
}

// watchParent exits the process when its parent changes (the daemon died and
// the plugin was re-parented), so that no plugin outlives a killed daemon.
func watchParent(log *slog.Logger) (stop func()) {
	ppid := os.Getppid()
	if ppid <= 1 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(parentPollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if os.Getppid() != ppid {
					log.Warn("the daemon that started this plugin is gone; exiting", "parent_pid", ppid)
					os.Exit(3)
				}
			}
		}
	}()
	return func() { close(done) }
}

// grpcPlugin is the go-plugin plugin of the plugin side.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv pluginv1.PluginServer
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (g *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterPluginServer(s, g.srv)
	return nil
}

func (g *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("the plugin side has no client")
}
