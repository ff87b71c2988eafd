package session

import (
	"errors"
	"fmt"
	"strings"

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

// Attempt is one endpoint a connection tried, and why it failed.
type Attempt struct {
	Endpoint Endpoint
	Err      error
}

// ConnectError is a connection that no endpoint could establish. It lists
// every endpoint tried, in order, with why it failed, and what discovery
// noted (failed SRV lookups, "." targets). errors.Is and errors.As see the
// errors of the attempts.
type ConnectError struct {
	// Domain is the JID's domain.
	Domain string
	// Attempts are the endpoints tried, in order.
	Attempts []Attempt
	// Notes are discovery's remarks.
	Notes []string
}

func (e *ConnectError) Error() string {
	var b strings.Builder
	b.WriteString("connect to the XMPP server of " + e.Domain + ": ")
	switch len(e.Attempts) {
	case 0:
		b.WriteString("no endpoint to try")
	case 1:
		b.WriteString(e.Attempts[0].Endpoint.String() + ": " + e.Attempts[0].Err.Error())
	default:
		fmt.Fprintf(&b, "all %d endpoints failed: ", len(e.Attempts))
		for i, a := range e.Attempts {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%d. %s: %v", i+1, a.Endpoint, a.Err)
		}
	}
	if len(e.Notes) > 0 {
		b.WriteString(" (" + strings.Join(e.Notes, "; ") + ")")
	}
	return b.String()
}

// Unwrap returns the errors of the attempts.
func (e *ConnectError) Unwrap() []error {
	out := make([]error, 0, len(e.Attempts))
	for _, a := range e.Attempts {
		out = append(out, a.Err)
	}
	return out
}

// permanent reports whether every attempt failed for a reason that
// retrying would not fix.
func (e *ConnectError) permanent() bool {
	if len(e.Attempts) == 0 {
		return true
	}
	for _, a := range e.Attempts {
		if !IsPermanent(a.Err) {
			return false
		}
	}
	return true
}

// hookError is an error of the Connecting hook: permanent, and no other
// endpoint is tried.
type hookError struct{ err error }

func (e *hookError) Error() string { return "connecting hook: " + e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// permanentError marks errors the supervisor must not retry.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err is an error that reconnecting would not
// fix: an *AuthError, a configuration error, an error of the Connecting
// hook, a domain without XMPP service, or a *ConnectError whose every
// attempt failed permanently (e.g. no STARTTLS).
func IsPermanent(err error) bool {
	var auth *AuthError
	if errors.As(err, &auth) {
		return true
	}
	var ce *ConnectError
	if errors.As(err, &ce) {
		return ce.permanent()
	}
	var perm *permanentError
	var hook *hookError
	return errors.As(err, &perm) || errors.As(err, &hook)
}
