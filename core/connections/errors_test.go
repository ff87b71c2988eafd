package connections

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"example.org/backend/core/jid"
	"example.org/backend/core/profiles"
	"example.org/backend/core/session"
)

// connectError turns the common first-connection failures into one line
// naming the next step, keeping the session's error in the chain.
func TestConnectErrorMessages(t *testing.T) {
	account, err := jid.ParseAccount("alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	conn := profiles.Connection{Profile: "alice", JID: account, Host: "xmpp.example.org", Port: 5222}
	configured := session.Endpoint{Host: "xmpp.example.org", Port: 5222, Origin: session.OriginConfigured}
	dial := func(inner error) error {
		return &session.ConnectError{Domain: "example.org", Attempts: []session.Attempt{{Endpoint: configured, Err: &net.OpError{Op: "dial", Net: "tcp", Err: inner}}}}
	}
	discovered := &session.ConnectError{Domain: "example.org", Notes: []string{"SRV lookup of _xmpps-client._tcp.example.org failed: timeout"}, Attempts: []session.Attempt{
		{Endpoint: session.Endpoint{Host: "a.example.org", Port: 5223, DirectTLS: true, Origin: session.OriginSRVDirectTLS},
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
		{Endpoint: session.Endpoint{Host: "example.org", Port: 5222, Origin: session.OriginDomain},
			Err: fmt.Errorf("tls handshake: %w", errors.New("x509: certificate signed by unknown authority"))},
	}}
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"wrong password", &session.AuthError{Mechanism: "SCRAM-SHA-1", Condition: "not-authorized", Text: "bad\nproof"},
			[]string{"refused the credentials of alice@example.org", "not-authorized", "backend profile set alice connection.password -"}},
		{"refused", dial(os.NewSyscallError("connect", syscall.ECONNREFUSED)),
			[]string{"xmpp.example.org:5222", "connection refused", "connection.host", "connection.port", "backend profile params alice"}},
		{"no such host", dial(&net.DNSError{Err: "no such host", Name: "xmpp.example.org", IsNotFound: true}),
			[]string{"xmpp.example.org:5222", "no such host xmpp.example.org", "connection.host", "backend profile params alice"}},
		{"dns timeout", dial(&net.DNSError{Err: "i/o timeout", Name: "xmpp.example.org", IsTimeout: true}),
			[]string{"xmpp.example.org:5222", "timed out", "connection.host"}},
		{"discovered endpoints", discovered,
			[]string{"cannot reach the XMPP server of example.org", "a.example.org:5223 (direct TLS, srv:_xmpps-client): connection refused",
				"example.org:5222 (STARTTLS, domain): tls handshake: x509: certificate signed by unknown authority",
				"SRV lookup of _xmpps-client._tcp.example.org failed", "DNS SRV records", "connection.dns_server", "connection.host", "backend profile params alice"}},
		{"no service", fmt.Errorf("example.org: %w", session.ErrNoService),
			[]string{"example.org publishes no XMPP client service", "connection.host", "backend profile params alice"}},
		{"other auth failure", &session.AuthError{Condition: "no-mechanism"},
			[]string{"connect profile alice", "no-mechanism"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := connectError(conn, tc.err)
			msg := got.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not contain %q", msg, w)
				}
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("the session's error is not in the chain of %v", got)
			}
		})
	}
}
