// Package session is the XMPP client session of one account: stream
// negotiation, an ordered receive loop, an IQ tracker, liveness checks,
// service discovery and entity capabilities, stream management with
// resumption (XEP-0198), and a supervisor that resumes the stream or
// reconnects with backoff on a fresh transport.
//
// The connection layer is the package's own: it dials, runs TLS (direct,
// or STARTTLS) and opens the XML streams on a net.Conn it owns (stream.go).
// From gosrc.io/xmpp v0.5.1 only the stanza package is used (types and
// stanza.NextPacket); the library's transport, Client, Session, Router and
// StreamManager are not: they deliver stanzas out of order, lose IQ
// replies, cannot reconnect, and keep the connection (hence the TLS state
// channel binding needs) private (see reference/dependencies.md). SASL
// SCRAM comes from github.com/xdg-go/scram.
//
// # Finding the server
//
// With Config.Host and Config.Port unset, the session discovers its server
// as RFC 6120 §3.2 and XEP-0368 say: the SRV records _xmpps-client._tcp
// (direct TLS, ALPN xmpp-client) and _xmpp-client._tcp (STARTTLS) of the
// JID's domain, merged by priority (direct TLS first on a tie) and by
// weight within a priority (RFC 2782), then the domain itself on 5222. A
// service whose only record has the target "." is decidedly not offered
// ("." for _xmpp-client also drops the fallback). Each endpoint is tried
// in turn; a host name is resolved to its IPv6 and IPv4 addresses, which
// are raced Happy Eyeballs style (net.Dialer: the second family 300 ms
// after the first). Config.DNSServer names the DNS server of these
// lookups (empty: the system's resolver). A set Host (or Port alone, with
// the domain as host) is the only endpoint tried, STARTTLS unless
// Config.DirectTLS. The certificate is always checked for the JID's domain
// (never for the SRV target or the configured host: RFC 6120 §13.7.2.1)
// against the system roots plus Config.CAFile. When no endpoint works, the
// error is a *ConnectError listing each endpoint tried and why it failed.
//
// # Negotiation
//
// On each endpoint: TLS (a server that does not offer STARTTLS is
// refused: the session never continues without TLS), then SASL with the
// strongest mechanism both sides offer: SCRAM-SHA-512-PLUS, -256-PLUS,
// -1-PLUS when the channel binding can be honoured (XEP-0440's advertised
// tls-exporter or tls-server-end-point, else tls-unique on TLS 1.2 and
// below), then SCRAM-SHA-512, -256, -1 (gs2 flag "y" when the client could
// have bound the channel but no -PLUS was offered, "n" when no binding is
// possible: on TLS 1.3 with tls-unique the only type), then PLAIN (only
// over TLS). Then resource binding (Config.Resource), the legacy session
// when the server requires it, and an initial presence carrying the
// XEP-0115 caps element. A SASL failure is an *AuthError and is
// permanent: the supervisor never retries it, and no further endpoint is
// tried. ConnInfo reports the endpoint, TLS version, mechanism and channel
// binding of the live stream.
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
// presences; at most 64 requests are handled at a time per binding
// (beyond that the receive loop waits, which back-pressures the server).
//
// # Liveness and reconnection
//
// Every Config.PingInterval the session checks its stream: with an <r/>
// under stream management, else with a XEP-0199 ping to the server. An
// <r/> (the liveness one, or one sent with a stanza) makes the receive
// loop expect traffic: when nothing arrives within Config.PingTimeout the
// connection is dropped as half-open; an unanswered ping, a read error
// (TCP reset), a stream error or the server's </stream:stream> end it
// too. A half-open connection is thus noticed within PingTimeout of the
// first stanza sent into it, and within PingInterval + PingTimeout when
// idle (45 s with the defaults). Without a resumable binding the
// supervisor reports Handlers.Disconnected and StateReconnecting, waits
// Config.Backoff(attempt) (DefaultBackoff: 0.5 s, doubling, ±25 %: the
// first retry within 1 s) and connects again on a fresh transport;
// Handlers.Connected runs again after every fresh login (resynchronise
// caches there). An endpoint that refuses or resets the connection fails
// the attempt at once.
//
// # Stream management (XEP-0198)
//
// Where the server offers it, stream management is enabled with
// resumption right after binding. A binding (binding.go: the bound full
// JID, the counters, the stanzas not yet acknowledged) outlives its
// connection. The stream's bytes have one reader (the connection's
// receive loop, stream.next), which counts the stanzas received and
// answers the server's <r/>, and one serialised writer of stanzas
// (conn.writeStanza), which counts the stanzas sent and keeps each in a
// bounded queue (500 stanzas, 16 MiB) until the server acknowledges it;
// an <r/> goes with a stanza whenever none is unanswered, so every queued
// stanza has an acknowledgement requested, and a writer finding the
// queue full waits for room. SendRaw and Send take one stanza per call.
//
// After a network failure (a read or write error, an unanswered <r/> or
// ping: the connection is dropped without a stream end, so the server
// keeps the binding) the supervisor reports StateReconnecting, but not
// Handlers.Disconnected, and tries to resume the binding within the
// server's window (<enabled max/>, 5 min when not announced): at once,
// then every 500 ms ±20 % for 30 s, then with Config.Backoff; the
// server's <enabled location/> first, then the last endpoint (a
// configured endpoint is the only one), then discovery. On <resumed h/>
// the session drops what the server acknowledged, resends the rest in
// order, and waits for the answer to a ping, which the server sends after
// the stanzas it held: when StateResumed and Handlers.Resumed are
// reported, the handlers have seen everything, and the JID is the same.
// IQs waiting for an answer keep waiting (their request or answer comes
// with the resumed stream), incoming IQ handlers keep running, and their
// answers are queued meanwhile; new sends between the loss and the
// resumption fail with ErrNotConnected. When the resumption fails (the
// server refuses it: restarted, window passed; or the window passes while
// the server cannot be reached) the binding ends: Handlers.Disconnected
// runs with an error wrapping ErrResumptionFailed, waiting IQs fail with
// ErrDisconnected, unacknowledged stanzas are dropped (logged), and a
// fresh login follows (on the same stream when the server refused it),
// with Handlers.Connected. A stream the server ends (</stream:stream> or a
// stream error) and Stop (which writes </stream:stream>) end the binding
// at once.
//
// # Secrets
//
// The password and the SASL exchange are never logged; the raw stream is
// never logged. Config implements slog.LogValuer without the password.
package session
