// Package wire holds what both halves of the plugin protocol share: the
// go-plugin handshake, the plugin set, the gRPC message limits, and the two
// hooks through which sdktest builds an in-process server and host client
// without exporting gRPC types from the public packages.
package wire

import (
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

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
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize)}
}

// DialOptions are the gRPC dial options of the host side.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))}
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
