package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"example.org/backend/internal/testsvc"
)

// TestConnectWithJIDAndPasswordOnly is the README's promise "with a real
// server, give the JID and the password only": the test server is
// published by SRV records in an in-test DNS server (non-default ports
// behind a target name its certificate does not hold, a dead first
// target, direct TLS preferred by priority), and the profile is created
// with --jid and --password-env alone. The daemon's config names the DNS
// server and trusts the test CA under [params] (connection.dns_server,
// connection.ca_file), as a deployment with its own resolver and CA would.
func TestConnectWithJIDAndPasswordOnly(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := servers.Use(t, kind)
			d, err := testsvc.StartDNS()
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			dead := freePort(t)
			d.SetHost("xmpp.target.test", "127.0.0.1")
			d.SetHost("dead.target.test", "127.0.0.1")
			publish := func() {
				d.SetSRV("_xmpps-client._tcp."+srv.Domain,
					testsvc.SRV{Priority: 0, Target: "dead.target.test", Port: uint16(dead)},
					testsvc.SRV{Priority: 1, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
				d.SetSRV("_xmpp-client._tcp."+srv.Domain, testsvc.SRV{Priority: 2, Target: "xmpp.target.test", Port: uint16(srv.Port)})
			}
			publish()

			e := newEnv(t)
			cfgDir := filepath.Join(e.dir, "config", "backend")
			if err := os.MkdirAll(cfgDir, 0o700); err != nil {
				t.Fatal(err)
			}
			config := fmt.Sprintf("[params]\n\"connection.dns_server\" = %q\n\"connection.ca_file\" = %q\n", d.Addr, srv.CAFile)
			if err := os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			e.vars = append(e.vars, "ALICE_PW=alice-pw")
			e.serve(t)
			if out, errs, code := e.cli(t, "profile", "create", "alice", "--jid", "Alice@"+strings.ToUpper(srv.Domain), "--password-env", "ALICE_PW"); code != exitOK {
				t.Fatalf("profile create: %d %s %s", code, out, errs)
			}
			connect := func() {
				t.Helper()
				out, errs, code := e.cli(t, "profile", "connect", "alice")
				if code != exitOK || !strings.Contains(out, "connected as alice@"+srv.Domain+"/") {
					t.Fatalf("profile connect: %d %s %s", code, out, errs)
				}
			}
			type shown struct {
				JID     string `json:"jid"`
				Session *struct {
					Endpoint        string   `json:"endpoint"`
					EndpointOrigin  string   `json:"endpoint_origin"`
					DirectTLS       bool     `json:"direct_tls"`
					Address         string   `json:"address"`
					TLSVersion      string   `json:"tls_version"`
					SASLMechanism   string   `json:"sasl_mechanism"`
					ChannelBinding  *string  `json:"channel_binding"`
					FailedEndpoints []string `json:"failed_endpoints"`
				} `json:"session"`
			}
			show := func() shown {
				t.Helper()
				out, errs, code := e.cli(t, "profile", "show", "alice", "-o", "json")
				var s shown
				if code != exitOK || json.Unmarshal([]byte(out), &s) != nil {
					t.Fatalf("profile show: %d %s %s", code, out, errs)
				}
				return s
			}

			connect()
			s := show()
			if s.JID != "alice@"+srv.Domain {
				t.Errorf("stored JID %q, want the canonical alice@%s", s.JID, srv.Domain)
			}
			if s.Session == nil || s.Session.Endpoint != fmt.Sprintf("xmpp.target.test:%d", srv.DirectTLSPort) ||
				s.Session.EndpointOrigin != "srv:_xmpps-client" || !s.Session.DirectTLS || s.Session.TLSVersion != "TLS 1.3" ||
				s.Session.SASLMechanism != "SCRAM-SHA-1" || s.Session.ChannelBinding != nil || len(s.Session.FailedEndpoints) != 1 ||
				!strings.Contains(s.Session.FailedEndpoints[0], "dead.target.test") {
				t.Errorf("session = %+v; want direct TLS to xmpp.target.test after the dead target, TLS 1.3, SCRAM-SHA-1", s.Session)
			}
			out, _, _ := e.cli(t, "profile", "show", "alice")
			for _, want := range []string{"endpoint", "xmpp.target.test", "direct TLS, srv:_xmpps-client", "TLS 1.3", "SCRAM-SHA-1 (channel binding: none)", "failed first"} {
				if !strings.Contains(out, want) {
					t.Errorf("profile show lacks %q:\n%s", want, out)
				}
			}

			// The domain stops offering direct TLS: STARTTLS on the next connection.
			if _, errs, code := e.cli(t, "profile", "disconnect", "alice"); code != exitOK {
				t.Fatal(errs)
			}
			d.SetSRV("_xmpps-client._tcp."+srv.Domain, testsvc.SRV{Target: "."})
			connect()
			if s := show(); s.Session == nil || s.Session.Endpoint != fmt.Sprintf("xmpp.target.test:%d", srv.Port) ||
				s.Session.EndpointOrigin != "srv:_xmpp-client" || s.Session.DirectTLS {
				t.Errorf("session = %+v; want STARTTLS to xmpp.target.test", s.Session)
			}

			// Nothing answers: one line listing every endpoint tried.
			if _, errs, code := e.cli(t, "profile", "disconnect", "alice"); code != exitOK {
				t.Fatal(errs)
			}
			d.SetSRV("_xmpps-client._tcp."+srv.Domain, testsvc.SRV{Target: "dead.target.test", Port: uint16(dead)})
			d.SetSRV("_xmpp-client._tcp."+srv.Domain, testsvc.SRV{Target: "."})
			_, stderr, code := e.cli(t, "profile", "connect", "alice")
			if code != exitFailed {
				t.Fatalf("connect with a dead server: exit %d, %s", code, stderr)
			}
			msg := oneLine(t, "dead server", stderr)
			wantAll(t, "dead server", msg, "cannot reach the XMPP server of "+srv.Domain, fmt.Sprintf("dead.target.test:%d (direct TLS, srv:_xmpps-client): connection refused", dead),
				"no STARTTLS service", "connection.dns_server "+d.Addr, "connection.host", "backend profile params alice")
			publish()
			connect()
		})
	}
}
