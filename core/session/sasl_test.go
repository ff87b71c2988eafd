package session

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// TestNegotiatedMechanism asserts the SASL mechanism, channel binding and
// TLS version negotiated with each server configuration, over STARTTLS
// and direct TLS, with TLS 1.3 and with the client capped at TLS 1.2:
//
//   - Prosody 0.12 stores SHA-1 (password_hash default) or SHA-256 hashes
//     and offers that one SCRAM, with -PLUS only on TLS 1.2 (tls-unique);
//   - ejabberd 23.01 (auth_scram_hash sha512) offers SCRAM-SHA-512 and
//     -PLUS on every TLS version, but honours only tls-unique: on TLS 1.3
//     the session uses SCRAM-SHA-512 with gs2 "n".
//
// The SCRAM-only Prosody refuses PLAIN, so a success there is SCRAM's.
func TestNegotiatedMechanism(t *testing.T) {
	tests := []struct {
		server   string
		tls12    bool
		wantMech string
		wantCB   string
	}{
		{testsvc.KindProsody, false, "SCRAM-SHA-1", ""},
		{testsvc.KindProsody, true, "SCRAM-SHA-1-PLUS", "tls-unique"},
		{"prosody-scram", false, "SCRAM-SHA-256", ""},
		{"prosody-scram", true, "SCRAM-SHA-256-PLUS", "tls-unique"},
		{testsvc.KindEjabberd, false, "SCRAM-SHA-512", ""},
		{testsvc.KindEjabberd, true, "SCRAM-SHA-512-PLUS", "tls-unique"},
	}
	for _, tt := range tests {
		for _, direct := range []bool{false, true} {
			name := tt.server + map[bool]string{false: "/tls1.3", true: "/tls1.2"}[tt.tls12] + map[bool]string{false: "/starttls", true: "/direct-tls"}[direct]
			t.Run(name, func(t *testing.T) {
				srv := useServer(t, tt.server)
				cfg := testConfig(srv, "alice", "mech")
				if direct {
					cfg.Port, cfg.DirectTLS = srv.DirectTLSPort, true
				}
				logs := &logBuffer{t: t}
				cfg.Log = testLogger(logs)
				s := New(cfg, Handlers{})
				if tt.tls12 {
					s.cfg.tls.MaxVersion = tls.VersionTLS12
				}
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = s.Stop(t.Context()) }()
				info, ok := s.ConnInfo()
				wantTLS := map[bool]string{false: "TLS 1.3", true: "TLS 1.2"}[tt.tls12]
				if !ok || info.Mechanism != tt.wantMech || info.ChannelBinding != tt.wantCB || info.TLSVersion != wantTLS {
					t.Errorf("negotiated %s, channel binding %q, %s; want %s, %q, %s", info.Mechanism, info.ChannelBinding, info.TLSVersion, tt.wantMech, tt.wantCB, wantTLS)
				}
				if info.Endpoint.DirectTLS != direct || info.Endpoint.Port != cfg.Port || info.Address != net.JoinHostPort(srv.Host, strconv.Itoa(cfg.Port)) {
					t.Errorf("endpoint %+v, address %s; want port %d, direct TLS %v", info.Endpoint, info.Address, cfg.Port, direct)
				}
				t.Logf("%s: %s %s, %s (%s)", name, info.Endpoint, info.TLSVersion, info.Mechanism, info.CipherSuite)
				if strings.Contains(logs.String(), cfg.Password) {
					t.Error("the logs contain the password")
				}
			})
		}
	}
	// A wrong password over -PLUS is still a plain not-authorized.
	t.Run("wrong password over -PLUS", func(t *testing.T) {
		srv := useServer(t, testsvc.KindEjabberd)
		cfg := testConfig(srv, "alice", "mech-wrong")
		cfg.Password = "not-the-password"
		s := New(cfg, Handlers{})
		s.cfg.tls.MaxVersion = tls.VersionTLS12
		err := s.Start(t.Context())
		var auth *AuthError
		if !errors.As(err, &auth) || auth.Mechanism != "SCRAM-SHA-512-PLUS" || auth.Condition != "not-authorized" {
			t.Fatalf("Start = %v, want not-authorized over SCRAM-SHA-512-PLUS", err)
		}
		if strings.Contains(err.Error(), cfg.Password) {
			t.Error("the error quotes the password")
		}
	})
}

// TestDirectTLSWrongPort: a direct TLS attempt on a STARTTLS port fails
// within the timeout with a TLS error, and the session says so.
func TestDirectTLSWrongPort(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	cfg := testConfig(srv, "alice", "wrong-port")
	cfg.DirectTLS = true // on the STARTTLS port
	cfg.Timeout = 3 * time.Second
	err := New(cfg, Handlers{}).Start(t.Context())
	var ce *ConnectError
	if !errors.As(err, &ce) || len(ce.Attempts) != 1 || !strings.Contains(err.Error(), "direct TLS") || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("Start = %v, want a ConnectError naming the direct TLS endpoint and a TLS failure", err)
	}
}
