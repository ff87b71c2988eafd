package session

import (
	"errors"
	"fmt"

	"gosrc.io/xmpp/stanza"
)

var (
	// ErrNotConnected is returned by the send methods while the session has
	// no live stream (before Start, after Stop, while reconnecting).
	ErrNotConnected = errors.New("xmpp session not connected")
	// ErrDisconnected is returned by a SendIQ whose stream ended before the
	// answer came.
	ErrDisconnected = errors.New("xmpp stream ended before the answer")
	// ErrStreamClosed is the cause of a disconnection by the server's
	// </stream:stream>.
	ErrStreamClosed = errors.New("stream closed by the server")
	// ErrPingTimeout is the cause of a disconnection by an unanswered
	// liveness ping.
	ErrPingTimeout = errors.New("liveness ping unanswered")
	// ErrNoTLS is returned when the server does not offer STARTTLS: the
	// session never continues without TLS.
	ErrNoTLS = errors.New("server does not offer STARTTLS")
	// ErrStopped is returned when Stop interrupted Start.
	ErrStopped = errors.New("session stopped")
)

// AuthError is a SASL failure reported by the server (RFC 6120 §6.5), e.g.
// Condition "not-authorized" for a wrong password. It is permanent: the
// supervisor does not retry it.
type AuthError struct {
	// Mechanism is the SASL mechanism that was tried (e.g. "SCRAM-SHA-1").
	Mechanism string
	// Condition is the SASL error condition (e.g. "not-authorized"); it is
	// "no-mechanism" when client and server share no mechanism, and
	// "invalid-server-signature" when the server failed to prove it knows
	// the SCRAM credentials.
	Condition string
	// Text is the server's human-readable text, possibly empty.
	Text string
}

func (e *AuthError) Error() string {
	msg := "sasl authentication failed: " + e.Condition
	if e.Mechanism != "" {
		msg = "sasl " + e.Mechanism + " authentication failed: " + e.Condition
	}
	if e.Text != "" {
		msg += " (" + e.Text + ")"
	}
	return msg
}

// StreamError is a <stream:error/> sent by the server (RFC 6120 §4.9),
// e.g. "conflict", "policy-violation", "system-shutdown". The stream ends
// with it; the supervisor reconnects.
type StreamError struct {
	// Condition is the stream error condition.
	Condition string
	// Text is the server's human-readable text, possibly empty.
	Text string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("stream error %s: %s", e.Condition, e.Text)
	}
	return "stream error " + e.Condition
}

// IQError is an IQ answered with type="error".
type IQError struct {
	// Condition is the defined stanza error condition (RFC 6120 §8.3.3,
	// e.g. "item-not-found"). gosrc.io/xmpp keeps only one condition
	// element: when the server adds an application-specific condition
	// (e.g. pubsub#errors "unsupported"), the last one read is kept.
	Condition string
	// Type is the error type ("cancel", "modify", "auth", "wait").
	Type string
	// Text is the server's text, possibly empty.
	Text string
	// IQ is the whole error reply.
	IQ *stanza.IQ
}

func (e *IQError) Error() string {
	msg := "iq error " + e.Condition
	if e.Type != "" {
		msg += " (" + e.Type + ")"
	}
	if e.Text != "" {
		msg += ": " + e.Text
	}
	return msg
}

// newIQError builds the IQError of a type="error" reply.
func newIQError(iq *stanza.IQ) *IQError {
	e := &IQError{IQ: iq, Condition: "undefined-condition"}
	if iq.Error != nil {
		if iq.Error.Reason != "" {
			e.Condition = iq.Error.Reason
		}
		e.Type = string(iq.Error.Type)
		e.Text = iq.Error.Text
	}
	return e
}

// permanentError marks errors the supervisor must not retry.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err is an error that reconnecting would not
// fix: an *AuthError, a configuration error, or an error of the Connecting
// hook.
func IsPermanent(err error) bool {
	var auth *AuthError
	var perm *permanentError
	return errors.As(err, &auth) || errors.As(err, &perm)
}
