// Package wire holds what both halves of the plugin protocol share: the
// go-plugin handshake, the plugin set, the gRPC message limits, and the two
// hooks through which sdktest builds an in-process server and host client
// without exporting gRPC types from the public packages.
package wire

import (
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
)

// ProtocolVersion is the plugin protocol version this module speaks (the
// go-plugin handshake "app protocol version").
const ProtocolVersion = 1

// Handshake cookie: a plugin refuses to run unless the daemon started it.
const (
	CookieKey   = "BACKEND_PLUGIN"
	CookieValue = "d3f1c0b5-backend-plugin"
)

// PluginSetName is the name of the one plugin in the go-plugin plugin set.
const PluginSetName = "backend"

// MaxMessageSize is the largest gRPC message either side sends or accepts.
const MaxMessageSize = 64 << 20

// windowSize is the HTTP/2 flow-control window of each side, per stream and
// per connection. gRPC's default (64 KiB, grown by probing) is smaller than
// a 100-item answer: the sender waited for window updates in mid-message.
const windowSize = 8 << 20

// EnvLogLevel is the environment variable through which the host tells the
// plugin the lowest log level it keeps (trace, debug, info, warn, error).
const EnvLogLevel = "BACKEND_PLUGIN_LOG_LEVEL"

// Handshake returns the go-plugin handshake configuration. The protocol
// version itself is negotiated through VersionedPlugins.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{MagicCookieKey: CookieKey, MagicCookieValue: CookieValue}
}

// ServerOptions are the gRPC server options of the plugin side.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize)}
}

// DialOptions are the gRPC dial options of the host side.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize)}
}

// NewServer builds the gRPC service of a *sdk.Plugin (passed as any) with
// its logger; package sdk sets it at init.
var NewServer func(p any) (srv pluginv1.PluginServer, interceptor grpc.UnaryServerInterceptor, err error)

// NewHostClient wraps a connection into a *host.Client (returned as any);
// package host sets it at init. closeFn is called by Kill.
var NewHostClient func(name string, conn pluginv1.PluginClient, closeFn func()) any

var paramTypes = map[string]pluginv1.ParamType{
	"bool":     pluginv1.ParamType_PARAM_TYPE_BOOL,
	"int":      pluginv1.ParamType_PARAM_TYPE_INT,
	"string":   pluginv1.ParamType_PARAM_TYPE_STRING,
	"enum":     pluginv1.ParamType_PARAM_TYPE_ENUM,
	"duration": pluginv1.ParamType_PARAM_TYPE_DURATION,
	"list":     pluginv1.ParamType_PARAM_TYPE_LIST,
	"secret":   pluginv1.ParamType_PARAM_TYPE_SECRET,
}

// ParamTypeToProto maps a parameter type name ("bool", "int", …) to the
// wire enum; unknown names map to PARAM_TYPE_UNSPECIFIED.
func ParamTypeToProto(t string) pluginv1.ParamType { return paramTypes[t] }

// ParamTypeFromProto maps the wire enum back to a type name; "" when
// unknown.
func ParamTypeFromProto(t pluginv1.ParamType) string {
	for name, v := range paramTypes {
		if v == t {
			return name
		}
	}
	return ""
}

// init gives gRPC a default buffer pool (the process's) with a tier at
// every power of two from 256 B to the message limit. gRPC's own default
// jumps from 32 KiB to 1 MiB and zeroes a buffer's whole capacity on each
// reuse, so every Parse request and answer between 32 KiB and 1 MiB (a
// 100-item batch is 60-90 KiB each way) had a full megabyte cleared when
// marshalled and again when unmarshalled, on both sides: about 0.2 ms of a
// 3.5 ms call. With a tier per power of two a buffer is at most twice the
// message. gRPC requires this before any client or server exists, hence
// init; in the daemon only plugin connections use gRPC.
func init() {
	exps := make([]uint8, 0, 20)
	for e := uint8(8); 1<<e <= MaxMessageSize; e++ {
		exps = append(exps, e)
	}
	pool, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		panic("wire: buffer pool: " + err.Error()) // constant arguments: cannot fail
	}
	experimental.SetDefaultBufferPool(pool)
}
