// Package session is the XMPP client session of one account: stream
// negotiation, an ordered receive loop, an IQ tracker, liveness pings,
// service discovery and entity capabilities, and a supervisor that
// reconnects with backoff on a fresh transport.
//
// It builds on gosrc.io/xmpp v0.5.1 only for its TCP transport
// (xmpp.NewClientTransport: dial, stream open, STARTTLS, XML decoder) and
// its stanza package (types and stanza.NextPacket). The library's Client,
// Session, Router and StreamManager are not used: they deliver stanzas out
// of order, lose IQ replies and cannot reconnect (see
// reference/dependencies.md). SASL SCRAM comes from github.com/xdg-go/scram.
//
// # Negotiation
//
// A connection dials Config.Host:Config.Port (no SRV lookup: an empty Host
// means the JID's domain), requires STARTTLS (a server that does not offer
// it is refused), verifies the certificate for the JID's domain against the
// system roots plus Config.CAFile, authenticates with SASL (SCRAM-SHA-512,
// SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN; PLAIN only over TLS, which is
// always the case here; -PLUS variants are not offered because the
// transport does not expose the TLS state needed for channel binding),
// binds Config.Resource, establishes the legacy session when the server
// requires it, and sends an initial presence carrying the XEP-0115 caps
// element. A SASL failure is an *AuthError and is permanent: the supervisor
// never retries it.
//
// # Receive loop and ordering
//
// One goroutine per connection reads stanza.NextPacket in order. Messages
// and presences are handed to Handlers.Message and Handlers.Presence on that
// goroutine, in arrival order: handlers must be quick and must never wait
// for the network (in particular they must not call SendIQ and wait for its
// answer: the answer is read by the very goroutine they block). Hand work
// on to another goroutine or queue instead. IQ results and errors are
// matched to waiting SendIQ calls inline. Incoming IQ get/set requests are
// answered on their own goroutines (ping and disco#info are answered
// inline), so their replies are not ordered with respect to messages and
// presences; at most 64 requests are handled at a time per connection
// (beyond that the receive loop waits, which back-pressures the server).
//
// # Liveness and reconnection
//
// Every Config.PingInterval the session sends a XEP-0199 ping to its
// server; a ping unanswered within Config.PingTimeout, a read error (TCP
// reset), a stream error or the server's </stream:stream> ends the
// connection. The supervisor then reports Handlers.Disconnected and
// StateReconnecting, waits Config.Backoff(attempt) and connects again on a
// fresh transport; Handlers.Connected runs again after every successful
// reconnection (resynchronise caches there: stanzas sent while offline are
// lost, there is no stream management).
//
// # Secrets
//
// The password and the SASL exchange are never logged; the raw stream is
// never logged. Config implements slog.LogValuer without the password.
package session
