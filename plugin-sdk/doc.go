// Package sdk is the public SDK for writing external analyser/parser plugins
// for the backend daemon. Plugins run out of process and talk to the daemon
// over gRPC through hashicorp/go-plugin; authors never see go-plugin, gRPC or
// protobuf types.
//
// This module never imports the daemon's module.
package sdk

// ProtocolVersion is the version of the plugin wire protocol that this SDK
// speaks. The daemon negotiates it in the go-plugin handshake.
const ProtocolVersion = 1

// HandshakeCookieKey and HandshakeCookieValue make a plugin refuse to run
// when it is not started by the daemon.
const (
	HandshakeCookieKey   = "BACKEND_PLUGIN"
	HandshakeCookieValue = "d3f1c0b5-backend-plugin"
)
