package connections

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"example.org/backend/core/profiles"
	"example.org/backend/core/session"
)

// connectError explains why the first connection of a profile failed, in
// one line that names the next step when the cause is a common mistake: a
// wrong password, a server that cannot be reached at the configured
// address, or a domain whose discovered endpoints all failed. The session
// error stays in the chain (errors.As finds an *session.AuthError or a
// *session.ConnectError).
func connectError(conn profiles.Connection, err error) error {
	name := conn.Profile
	var auth *session.AuthError
	if errors.As(err, &auth) && auth.Condition == "not-authorized" {
		// The server's text, when any, stays in the chain (and in the
		// session.state event), not in this line.
		return &hintError{err: err, msg: fmt.Sprintf(
			"connect profile %s: the server refused the credentials of %s (SASL %s): set the right password with `backend profile set %s %s -` (read from stdin)",
			name, conn.JID.Bare(), auth.Condition, name, profiles.KeyPassword)}
	}
	if errors.Is(err, session.ErrNoService) {
		return &hintError{err: err, msg: fmt.Sprintf(
			"connect profile %s: %s publishes no XMPP client service (its SRV records have the target \".\"): if the account is served elsewhere, set %s and %s (`backend profile params %s`)",
			name, conn.JID.Domain, profiles.KeyHost, profiles.KeyPort, name)}
	}
	var ce *session.ConnectError
	if errors.As(err, &ce) && len(ce.Attempts) > 0 {
		if len(ce.Attempts) == 1 && ce.Attempts[0].Endpoint.Origin == session.OriginConfigured {
			a := ce.Attempts[0]
			// The session's error is kept in the chain, not in the text: it
			// repeats the address, and this line says it all.
			return &hintError{err: err, msg: fmt.Sprintf(
				"connect profile %s: cannot reach the XMPP server at %s (%s): check %s and %s (`backend profile params %s`), or that the server runs",
				name, a.Endpoint.Addr(), shortCause(a.Err), profiles.KeyHost, profiles.KeyPort, name)}
		}
		var b strings.Builder
		for i, a := range ce.Attempts {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", a.Endpoint, shortCause(a.Err))
		}
		notes := ""
		if len(ce.Notes) > 0 {
			notes = " (" + strings.Join(ce.Notes, "; ") + ")"
		}
		return &hintError{err: err, msg: fmt.Sprintf(
			"connect profile %s: cannot reach the XMPP server of %s: tried %s%s: check the domain's DNS SRV records (_xmpps-client._tcp, _xmpp-client._tcp; resolver: %s), or set %s and %s (`backend profile params %s`)",
			name, conn.JID.Domain, b.String(), notes, resolverName(conn.DNSServer), profiles.KeyHost, profiles.KeyPort, name)}
	}
	return fmt.Errorf("connect profile %s: %w", name, err)
}

// resolverName names the resolver of a profile for messages.
func resolverName(dnsServer string) string {
	if dnsServer == "" {
		return "the system's, or " + profiles.KeyDNSServer
	}
	return profiles.KeyDNSServer + " " + dnsServer
}

// shortCause is the short cause of an unreachable endpoint, or the error.
func shortCause(err error) string {
	if c := unreachable(err); c != "" {
		return c
	}
	return err.Error()
}

// unreachable returns a short cause when err is a failure to reach the
// server (name resolution, refused connection, timeout), "" otherwise.
func unreachable(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		switch {
		case dns.IsNotFound:
			return "no such host " + dns.Name
		case dns.IsTimeout:
			return "name resolution of " + dns.Name + " timed out"
		default:
			return "cannot resolve " + dns.Name
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return "connection timed out"
		}
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err.Error()
		}
		return op.Err.Error()
	}
	return ""
}

// hintError is a connection failure whose text is rewritten for people;
// Unwrap gives the session's error.
type hintError struct {
	err error
	msg string
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }
