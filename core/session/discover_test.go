package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// fakeResolver answers SRV lookups from a table ("xmpps-client" and
// "xmpp-client" to records or an error).
type fakeResolver map[string]any

func (f fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	switch v := f[service].(type) {
	case []*net.SRV:
		return "_" + service + "._" + proto + "." + name + ".", v, nil
	case error:
		return "", nil, v
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: "_" + service + "._" + proto + "." + name, IsNotFound: true}
}

func srv(prio uint16, target string, port uint16) *net.SRV {
	return &net.SRV{Priority: prio, Target: target, Port: port}
}

func TestDiscover(t *testing.T) {
	ep := func(host string, port int, direct bool, origin string) Endpoint {
		return Endpoint{Host: host, Port: port, DirectTLS: direct, Origin: origin}
	}
	fallback := ep("example.org", 5222, false, OriginDomain)
	tests := []struct {
		name      string
		r         fakeResolver
		want      []Endpoint
		wantNotes []string
		wantErr   error
	}{
		{"no records: the domain on 5222", fakeResolver{}, []Endpoint{fallback}, nil, nil},
		{"both services merged by priority, direct TLS first on a tie", fakeResolver{
			"xmpps-client": []*net.SRV{srv(0, "a.example.org.", 5223), srv(10, "c.example.org.", 443)},
			"xmpp-client":  []*net.SRV{srv(0, "b.example.org.", 5222), srv(5, "d.example.org.", 5222)},
		}, []Endpoint{
			ep("a.example.org", 5223, true, OriginSRVDirectTLS), ep("b.example.org", 5222, false, OriginSRVStartTLS),
			ep("d.example.org", 5222, false, OriginSRVStartTLS), ep("c.example.org", 443, true, OriginSRVDirectTLS), fallback,
		}, nil, nil},
		{"the fallback is not repeated", fakeResolver{
			"xmpp-client": []*net.SRV{srv(0, "example.org.", 5222)},
		}, []Endpoint{ep("example.org", 5222, false, OriginSRVStartTLS)}, nil, nil},
		{"unsorted records are sorted by priority", fakeResolver{
			"xmpp-client": []*net.SRV{srv(20, "late.example.org.", 5222), srv(1, "early.example.org.", 5222)},
		}, []Endpoint{ep("early.example.org", 5222, false, OriginSRVStartTLS), ep("late.example.org", 5222, false, OriginSRVStartTLS), fallback}, nil, nil},
		{"'.' for direct TLS", fakeResolver{
			"xmpps-client": []*net.SRV{srv(0, ".", 0)},
			"xmpp-client":  []*net.SRV{srv(0, "xmpp.example.org.", 5222)},
		}, []Endpoint{ep("xmpp.example.org", 5222, false, OriginSRVStartTLS), fallback}, []string{"no direct TLS service"}, nil},
		{"'.' for STARTTLS: no fallback", fakeResolver{
			"xmpps-client": []*net.SRV{srv(0, "tls.example.org.", 5223)},
			"xmpp-client":  []*net.SRV{srv(0, ".", 0)},
		}, []Endpoint{ep("tls.example.org", 5223, true, OriginSRVDirectTLS)}, []string{"no STARTTLS service"}, nil},
		{"'.' for both: no service", fakeResolver{
			"xmpps-client": []*net.SRV{srv(0, ".", 0)},
			"xmpp-client":  []*net.SRV{srv(0, ".", 0)},
		}, nil, nil, ErrNoService},
		{"a failed lookup is noted, the fallback tried", fakeResolver{
			"xmpps-client": &net.DNSError{Err: "server misbehaving", Name: "_xmpps-client._tcp.example.org", IsTemporary: true},
		}, []Endpoint{fallback}, []string{"SRV lookup of _xmpps-client._tcp.example.org failed"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := discover(t.Context(), tt.r, "example.org", nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("discover = %v, %v; want %v", d, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(d.endpoints, tt.want) {
				t.Fatalf("discover = %v, %v\nwant %v", d.endpoints, err, tt.want)
			}
			for _, n := range tt.wantNotes {
				if !slices.ContainsFunc(d.notes, func(s string) bool { return strings.Contains(s, n) }) {
					t.Errorf("notes %q lack %q", d.notes, n)
				}
			}
		})
	}
}

// TestFakeEndpointsInTurn: the session tries the discovered endpoints in
// order, goes past refused and failing ones, and reports each failure when
// none works; a SASL failure stops at the first endpoint that gets there.
func TestFakeEndpointsInTurn(t *testing.T) {
	r := fakeResolver{
		"xmpps-client": []*net.SRV{srv(0, "dead.localhost.", 5223), srv(1, "nostarttls.localhost.", 5223)},
		"xmpp-client":  []*net.SRV{srv(2, "good.localhost.", 5222)},
	}
	newFake := func(behaviour map[string]func() *fakeServer) (*Session, *[]string) {
		s := New(Config{JID: "alice@localhost", Password: "fake-pw", Resource: "fake", Timeout: 5 * time.Second, PingInterval: -1,
			Log: testLogger(&logBuffer{t: t})}, Handlers{})
		s.cfg.tls.RootCAs = fakeCert(t).pool
		s.resolver = r
		var dialled []string
		s.dial = pipeDial(t, func(addr string) *fakeServer {
			dialled = append(dialled, addr)
			if mk := behaviour[addr]; mk != nil {
				return mk()
			}
			return nil // refused
		}, make(chan error, 8))
		return s, &dialled
	}
	// nostarttls answers on its direct TLS port with a server that is not
	// TLS: the handshake fails.
	notTLS := func() *fakeServer { return &fakeServer{noTLS: true, mechanisms: []string{"PLAIN"}} }
	good := func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw"} }

	s, dialled := newFake(map[string]func() *fakeServer{"nostarttls.localhost:5223": notTLS, "good.localhost:5222": good})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	info, _ := s.ConnInfo()
	_ = s.Stop(t.Context())
	want := []string{"dead.localhost:5223", "nostarttls.localhost:5223", "good.localhost:5222"}
	if !slices.Equal(*dialled, want) || info.Endpoint.Host != "good.localhost" || info.Endpoint.Origin != OriginSRVStartTLS || len(info.Failed) != 2 {
		t.Errorf("dialled %v, connected to %+v after %d failures; want %v", *dialled, info.Endpoint, len(info.Failed), want)
	}

	// Nothing works: every endpoint (the fallback included) is in the error.
	s, dialled = newFake(map[string]func() *fakeServer{"nostarttls.localhost:5223": notTLS})
	err := s.Start(t.Context())
	var ce *ConnectError
	if !errors.As(err, &ce) || len(ce.Attempts) != 4 || IsPermanent(err) {
		t.Fatalf("Start = %v; want a temporary ConnectError with 4 attempts", err)
	}
	msg := err.Error()
	for _, part := range []string{"all 4 endpoints failed", "1. dead.localhost:5223 (direct TLS, srv:_xmpps-client): ", "connection refused",
		"2. nostarttls.localhost:5223 (direct TLS, srv:_xmpps-client): tls handshake", "3. good.localhost:5222 (STARTTLS, srv:_xmpp-client)",
		"4. localhost:5222 (STARTTLS, domain)"} {
		if !strings.Contains(msg, part) {
			t.Errorf("error %q lacks %q", msg, part)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error on several lines: %q", msg)
	}

	// A wrong password stops at the first endpoint that reaches SASL.
	wrong := func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "other"} }
	s, dialled = newFake(map[string]func() *fakeServer{"good.localhost:5222": wrong, "localhost:5222": good})
	err = s.Start(t.Context())
	var auth *AuthError
	if !errors.As(err, &auth) || len(*dialled) != 3 {
		t.Errorf("Start = %v after dialling %v; want an AuthError and no further endpoint", err, *dialled)
	}
}

// TestFakeCertificateForJIDDomain: an SRV target whose name the
// certificate holds does not make the certificate valid for another JID
// domain (RFC 6120 §13.7.2.1: the reference identity is the domain).
func TestFakeCertificateForJIDDomain(t *testing.T) {
	s := New(Config{JID: "alice@other.test", Password: "fake-pw", Timeout: 5 * time.Second, PingInterval: -1,
		Log: testLogger(&logBuffer{t: t})}, Handlers{})
	s.cfg.tls.RootCAs = fakeCert(t).pool
	s.resolver = fakeResolver{"xmpp-client": []*net.SRV{srv(0, "localhost.", 5222)}, "xmpps-client": []*net.SRV{srv(0, ".", 0)}}
	s.dial = pipeDial(t, func(addr string) *fakeServer {
		if addr != "localhost:5222" {
			return nil
		}
		return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw"}
	}, make(chan error, 4))
	err := s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "certificate is valid for localhost, not other.test") {
		t.Fatalf("Start = %v; want the certificate refused for other.test", err)
	}
}

// dnsFor starts an in-test DNS server and stops it with the test.
func dnsFor(t *testing.T) *testsvc.DNSServer {
	t.Helper()
	d, err := testsvc.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// discoveredConfig is a configuration for user on srv without host or
// port: the session discovers the server through dnsServer.
func discoveredConfig(srv *testsvc.XMPPServer, user, resource, dnsServer string) Config {
	cfg := testConfig(srv, user, resource)
	cfg.Host, cfg.Port, cfg.DNSServer = "", 0, dnsServer
	cfg.Log = slog.New(slog.DiscardHandler)
	return cfg
}

// TestSRVDiscovery publishes the test servers in an in-test DNS server,
// on their non-default ports behind SRV targets (names that are not in
// the certificate), and connects with the JID and password only.
func TestSRVDiscovery(t *testing.T) {
	dead := freeTCPPort(t) // nothing listens there
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			d := dnsFor(t)
			// xmpp.target.test has an IPv6 address first (nothing listens
			// there: the servers are on 127.0.0.1) and an IPv4 one.
			d.SetHost("xmpp.target.test", "::1", "127.0.0.1")
			d.SetHost("dead.target.test", "127.0.0.1")
			d.SetSRV("_xmpps-client._tcp.localhost",
				testsvc.SRV{Priority: 0, Target: "dead.target.test", Port: uint16(dead)},
				testsvc.SRV{Priority: 5, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
			d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Priority: 10, Target: "xmpp.target.test", Port: uint16(srv.Port)})

			connect := func(t *testing.T, cfg Config) ConnInfo {
				t.Helper()
				s, _ := startSession(t, cfg, Handlers{})
				info, ok := s.ConnInfo()
				if !ok {
					t.Fatal("no ConnInfo")
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if _, err := s.SendIQRaw(ctx, srv.Domain, "get", pingPayload); err != nil {
					t.Fatalf("ping over the discovered stream: %v", err)
				}
				t.Logf("connected to %s at %s (%s, %s) after %d failed endpoints", info.Endpoint, info.Address, info.TLSVersion, info.Mechanism, len(info.Failed))
				return info
			}

			t.Run("direct TLS after a dead first target", func(t *testing.T) {
				info := connect(t, discoveredConfig(srv, "alice", "srv-direct", d.Addr))
				want := Endpoint{Host: "xmpp.target.test", Port: srv.DirectTLSPort, DirectTLS: true, Origin: OriginSRVDirectTLS}
				if info.Endpoint != want || len(info.Failed) != 1 || info.Failed[0].Endpoint.Host != "dead.target.test" {
					t.Errorf("endpoint %+v after %v; want %+v after the dead target", info.Endpoint, info.Failed, want)
				}
				if info.Address != fmt.Sprintf("127.0.0.1:%d", srv.DirectTLSPort) {
					t.Errorf("address %s: the IPv4 address should have won", info.Address)
				}
			})
			t.Run("STARTTLS when direct TLS is not offered", func(t *testing.T) {
				d.SetSRV("_xmpps-client._tcp.localhost", testsvc.SRV{Target: "."})
				defer d.SetSRV("_xmpps-client._tcp.localhost", testsvc.SRV{Priority: 5, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
				info := connect(t, discoveredConfig(srv, "alice", "srv-starttls", d.Addr))
				want := Endpoint{Host: "xmpp.target.test", Port: srv.Port, Origin: OriginSRVStartTLS}
				if info.Endpoint != want || len(info.Failed) != 0 {
					t.Errorf("endpoint %+v after %v; want %+v", info.Endpoint, info.Failed, want)
				}
			})
			t.Run("overrides skip discovery", func(t *testing.T) {
				before := d.Queries()
				info := connect(t, testConfig(srv, "alice", "srv-override"))
				if info.Endpoint.Origin != OriginConfigured || d.Queries() != before {
					t.Errorf("endpoint %+v, %d DNS queries; want the configured endpoint and none", info.Endpoint, d.Queries()-before)
				}
			})
			t.Run("every target fails", func(t *testing.T) {
				d.SetSRV("_xmpps-client._tcp.localhost", testsvc.SRV{Target: "dead.target.test", Port: uint16(dead)})
				d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Target: "nowhere.target.test", Port: 5222})
				defer func() {
					d.SetSRV("_xmpps-client._tcp.localhost",
						testsvc.SRV{Priority: 0, Target: "dead.target.test", Port: uint16(dead)},
						testsvc.SRV{Priority: 5, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
					d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Priority: 10, Target: "xmpp.target.test", Port: uint16(srv.Port)})
				}()
				cfg := discoveredConfig(srv, "alice", "srv-fail", d.Addr)
				cfg.Timeout = 5 * time.Second
				err := New(cfg, Handlers{}).Start(t.Context())
				var ce *ConnectError
				if !errors.As(err, &ce) || len(ce.Attempts) != 3 {
					t.Fatalf("Start = %v; want a ConnectError with 3 attempts", err)
				}
				for _, part := range []string{
					fmt.Sprintf("dead.target.test:%d (direct TLS, srv:_xmpps-client)", dead), "connection refused",
					"nowhere.target.test:5222 (STARTTLS, srv:_xmpp-client)", "lookup nowhere.target.test on " + d.Addr + ": no such host",
					"localhost:5222 (STARTTLS, domain)",
				} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q lacks %q", err, part)
					}
				}
			})
			t.Run("an IPv6-only target is dialled over IPv6", func(t *testing.T) {
				// The servers listen on 127.0.0.1 only: [::1] refuses.
				d.SetHost("v6only.target.test", "::1")
				d.SetSRV("_xmpps-client._tcp.localhost", testsvc.SRV{Target: "v6only.target.test", Port: uint16(srv.DirectTLSPort)})
				d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Target: "."})
				defer func() {
					d.SetSRV("_xmpps-client._tcp.localhost",
						testsvc.SRV{Priority: 0, Target: "dead.target.test", Port: uint16(dead)},
						testsvc.SRV{Priority: 5, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
					d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Priority: 10, Target: "xmpp.target.test", Port: uint16(srv.Port)})
				}()
				err := New(discoveredConfig(srv, "alice", "srv-v6", d.Addr), Handlers{}).Start(t.Context())
				if want := fmt.Sprintf("[::1]:%d", srv.DirectTLSPort); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Start = %v; want a failure dialling %s", err, want)
				}
			})
			t.Run("no service", func(t *testing.T) {
				d.SetSRV("_xmpps-client._tcp.localhost", testsvc.SRV{Target: "."})
				d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Target: "."})
				defer func() {
					d.SetSRV("_xmpps-client._tcp.localhost",
						testsvc.SRV{Priority: 0, Target: "dead.target.test", Port: uint16(dead)},
						testsvc.SRV{Priority: 5, Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
					d.SetSRV("_xmpp-client._tcp.localhost", testsvc.SRV{Priority: 10, Target: "xmpp.target.test", Port: uint16(srv.Port)})
				}()
				err := New(discoveredConfig(srv, "alice", "srv-none", d.Addr), Handlers{}).Start(t.Context())
				if !errors.Is(err, ErrNoService) || !IsPermanent(err) {
					t.Fatalf("Start = %v; want a permanent ErrNoService", err)
				}
			})
			t.Run("the certificate is checked for the JID's domain", func(t *testing.T) {
				// other.test's direct TLS record points at the same server,
				// whose certificate is for localhost: refused at the TLS
				// handshake, whatever the target's name.
				d.SetSRV("_xmpps-client._tcp.other.test", testsvc.SRV{Target: "xmpp.target.test", Port: uint16(srv.DirectTLSPort)})
				d.SetSRV("_xmpp-client._tcp.other.test", testsvc.SRV{Target: "."})
				cfg := discoveredConfig(srv, "alice", "srv-cert", d.Addr)
				cfg.JID = "alice@other.test"
				err := New(cfg, Handlers{}).Start(t.Context())
				want := "certificate is valid for localhost, pubsub.localhost, not other.test"
				if kind == testsvc.KindProsody {
					// Prosody refuses the SNI other.test before any certificate.
					want = "tls: unrecognized name"
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Start = %v; want %q", err, want)
				}
			})
		})
	}
}

// TestSRVWeights: within a priority, targets come first in proportion to
// their weight (RFC 2782), over the real resolver and DNS server.
func TestSRVWeights(t *testing.T) {
	d := dnsFor(t)
	d.SetSRV("_xmpp-client._tcp.weights.test",
		testsvc.SRV{Priority: 1, Weight: 90, Target: "heavy.weights.test", Port: 5222},
		testsvc.SRV{Priority: 1, Weight: 10, Target: "light.weights.test", Port: 5222},
		testsvc.SRV{Priority: 0, Weight: 0, Target: "first.weights.test", Port: 5222})
	r := newResolver(d.Addr)
	heavyFirst := 0
	const n = 200
	for range n {
		disc, err := discover(t.Context(), r, "weights.test", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(disc.endpoints) != 4 || disc.endpoints[0].Host != "first.weights.test" {
			t.Fatalf("endpoints %v: the priority-0 target must come first", disc.endpoints)
		}
		if disc.endpoints[1].Host == "heavy.weights.test" {
			heavyFirst++
		}
	}
	// Expected 180 of 200; below 140 is beyond any reasonable chance.
	if heavyFirst < 140 || heavyFirst == n {
		t.Errorf("the weight-90 target came first %d times of %d, want about 90 %%", heavyFirst, n)
	}
}

// freeTCPPort returns a loopback port nothing listens on.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
