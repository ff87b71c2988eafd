"""Versions, in one place (pyproject.toml reads SDK_VERSION)."""

# This SDK's own version, reported to the daemon by Describe.
SDK_VERSION = "0.1.0"

# The plugin wire protocol version (the Go SDK's sdk.ProtocolVersion),
# negotiated in the go-plugin handshake.
PROTOCOL_VERSION = 1
