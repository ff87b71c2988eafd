package session

import (
	"encoding/xml"

	"gosrc.io/xmpp"
)

// transport is the part of gosrc.io/xmpp's Transport the session uses. It
// is an interface so that unit tests can plug a fake server in; the real
// one is xmpp.NewClientTransport's *xmpp.XMPPTransport.
//
// Facts of the real transport the session relies on (v0.5.1):
//   - Connect dials (ConnectTimeout seconds) and opens the stream; when the
//     dial fails, nothing is open and Close must not be called (it would
//     wait ConnectTimeout for a signal no one sends).
//   - StartTLS and Connect replace the transport's connection, decoder and
//     reader fields: nothing else may touch the transport meanwhile.
//   - Close writes </stream:stream>, then waits up to ConnectTimeout for
//     ReceivedStreamClose before closing the connection; ReceivedStreamClose
//     blocks until a Close receives it. closeTransport pairs them.
type transport interface {
	Connect() (string, error)
	StartTLS() error
	StartStream() (string, error)
	GetDecoder() *xml.Decoder
	IsSecure() bool
	Write(p []byte) (int, error)
	Close() error
	ReceivedStreamClose()
}

// newXMPPTransport is the real transport.
func newXMPPTransport(cfg xmpp.TransportConfiguration) transport {
	return xmpp.NewClientTransport(cfg)
}

// closeTransport sends </stream:stream> and closes the connection at once,
// without waiting for the server's stream end and without leaking the
// goroutine that signals it. Call it at most once per connected transport.
func closeTransport(t transport) {
	go t.ReceivedStreamClose()
	_ = t.Close()
}
