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
	dial := func(inner error) error {
		return fmt.Errorf("connect to xmpp.example.org:5222: %w", &net.OpError{Op: "dial", Net: "tcp", Err: inner})
	}
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
