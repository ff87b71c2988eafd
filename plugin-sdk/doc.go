// Package sdk is the public SDK for writing external analyser/parser plugins
// for the backend daemon. Plugins run out of process and talk to the daemon
// over gRPC through hashicorp/go-plugin; authors never see go-plugin, gRPC or
// protobuf types.
//
// A plugin's main is a call to Serve, and nothing else before it (the daemon
// reads the handshake on the plugin's stdout, so a plugin never writes to
// stdout; logs go through Logger to stderr):
//
//	func main() {
//		err := sdk.Serve(&sdk.Plugin{
//			Name:      "hello",
//			Version:   "1.0.0",
//			Analysers: []sdk.Analyser{{Name: "hello", Type: "greeting", NodePrefix: "urn:example:hello", ToSync: true, Parser: "hello"}},
//			Parse:     sdk.ParseEach(parseHello),
//		})
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// Versioning: the wire protocol has an integer version (ProtocolVersion),
// negotiated in the go-plugin handshake; it changes only on breaking wire
// changes, and the daemon serves the current and the previous version. New
// capabilities are added as optional fields, never by changing old ones.
//
// This module never imports the daemon's module.
package sdk

import "example.org/backend/plugin-sdk/internal/wire"

// ProtocolVersion is the version of the plugin wire protocol that this SDK
// speaks. The daemon negotiates it in the go-plugin handshake.
const ProtocolVersion = wire.ProtocolVersion

// HandshakeCookieKey and HandshakeCookieValue make a plugin refuse to run
// when it is not started by the daemon.
const (
	HandshakeCookieKey   = wire.CookieKey
	HandshakeCookieValue = wire.CookieValue
)

// Version is the version of this SDK, reported to the daemon by Describe.
const Version = "0.1.0"

// MaxMessageSize is the largest message (one Parse batch or its answer) that
// plugin and daemon exchange: 64 MiB both ways, above gRPC's 4 MiB default.
// The daemon splits larger batches into several calls.
const MaxMessageSize = wire.MaxMessageSize
