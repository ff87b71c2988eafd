package session

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"
)

// TestCapsVer checks the XEP-0115 §5.2 example (and §5.3's input order
// independence).
func TestCapsVer(t *testing.T) {
	tests := []struct {
		name       string
		identities []Identity
		features   []string
		want       string
	}{
		{
			name:       "XEP-0115 5.2",
			identities: []Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}},
			features: []string{
				"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
				"http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc",
			},
			want: "QgayPKawpkPSDYmwT/WM94uAlu0=",
		},
		{
			name:       "XEP-0115 5.2, unsorted input",
			identities: []Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}},
			features: []string{
				"http://jabber.org/protocol/muc", "http://jabber.org/protocol/disco#items",
				"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
			},
			want: "QgayPKawpkPSDYmwT/WM94uAlu0=",
		},
	}
	for _, tt := range tests {
		if got := CapsVer(tt.identities, tt.features); got != tt.want {
			t.Errorf("%s: CapsVer = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestDiscoFeatures(t *testing.T) {
	d := newDiscoFeatures([]Identity{{Category: "client", Type: "pc", Name: "a'b"}},
		[]string{"urn:b", "urn:a", "urn:b", "", NSPing})
	want := []string{NSCaps, NSDiscoInfo, "urn:a", "urn:b", NSPing}
	if strings.Join(d.features, " ") != strings.Join(want, " ") {
		t.Errorf("features = %v, want %v", d.features, want)
	}
	q := d.queryXML("node#ver")
	if err := checkWellFormed(q); err != nil {
		t.Errorf("query %s: %v", q, err)
	}
	if !strings.Contains(q, "name='a&#39;b'") || !strings.Contains(q, "node='node#ver'") {
		t.Errorf("query = %s", q)
	}
	p := d.presenceXML(DefaultCapsNode)
	if !strings.Contains(p, "ver='"+d.ver+"'") || !strings.Contains(p, "hash='sha-1'") {
		t.Errorf("presence = %s", p)
	}
}

func TestResolveConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{JID: "a@example.org", Password: "x"}, ""},
		{"ok, canonical", Config{JID: "A@EXAMPLE.org.", Password: "x"}, ""},
		{"bad dns server", Config{JID: "a@example.org", Password: "x", DNSServer: "dns.example.org"}, "DNS server"},
		{"no localpart", Config{JID: "example.org", Password: "x"}, "localpart"},
		{"full jid", Config{JID: "a@example.org/r", Password: "x"}, "bare"},
		{"no password", Config{JID: "a@example.org"}, "empty password"},
		{"bad port", Config{JID: "a@example.org", Password: "x", Port: 70000}, "port"},
		{"missing CA", Config{JID: "a@example.org", Password: "x", CAFile: "/nonexistent/ca.pem"}, "CA file"},
	}
	for _, tt := range tests {
		s, err := resolve(tt.cfg)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			if s.configured != nil || s.account.String() != "a@example.org" || s.Timeout != DefaultTimeout || s.tls.ServerName != "example.org" {
				t.Errorf("%s: defaults %v %s %s %q", tt.name, s.configured, s.account, s.Timeout, s.tls.ServerName)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	// Overrides: a host, or a port alone, is the only endpoint.
	for _, tt := range []struct {
		cfg  Config
		want Endpoint
	}{
		{Config{Host: "xmpp.example.net"}, Endpoint{Host: "xmpp.example.net", Port: 5222, Origin: OriginConfigured}},
		{Config{Host: "192.0.2.1", Port: 5223, DirectTLS: true}, Endpoint{Host: "192.0.2.1", Port: 5223, DirectTLS: true, Origin: OriginConfigured}},
		{Config{Port: 5269}, Endpoint{Host: "xn--bcher-kva.example", Port: 5269, Origin: OriginConfigured}},
	} {
		tt.cfg.JID, tt.cfg.Password = "a@Bücher.example", "x"
		s, err := resolve(tt.cfg)
		if err != nil || s.configured == nil || *s.configured != tt.want || s.tls.ServerName != "xn--bcher-kva.example" {
			t.Errorf("resolve(%+v) = %+v, %v; want %+v and ServerName in A-labels", tt.cfg, s, err, tt.want)
		}
	}
	for in, want := range map[string]string{"192.0.2.53": "192.0.2.53:53", "127.0.0.1:5353": "127.0.0.1:5353", "::1": "[::1]:53", "[::1]:53": "[::1]:53"} {
		if got, err := ParseDNSServer(in); err != nil || got != want {
			t.Errorf("ParseDNSServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"dns.example.org", "1.2.3.4:0", "1.2.3.4:x", "[fe80::1%eth0]:53"} {
		if _, err := ParseDNSServer(in); err == nil {
			t.Errorf("ParseDNSServer(%q) accepted", in)
		}
	}
	// Start returns the configuration error, permanent.
	err := New(Config{JID: "nope"}, Handlers{}).Start(t.Context())
	if err == nil || !IsPermanent(err) {
		t.Errorf("Start with a bad config: %v", err)
	}
}

func TestConfigLogValueHidesPassword(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "cfg", Config{JID: "a@b", Password: "hunter2-secret"})
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("logged %s", buf.String())
	}
}

func TestDefaultBackoff(t *testing.T) {
	prev := time.Duration(0)
	for attempt := 1; attempt <= 20; attempt++ {
		d := DefaultBackoff(attempt)
		if d <= 0 || d > 5*time.Minute*5/4 {
			t.Errorf("attempt %d: %s out of range", attempt, d)
		}
		if attempt <= 5 && d < prev/2 {
			t.Errorf("attempt %d: %s shrank from %s", attempt, d, prev)
		}
		prev = d
	}
	// The first retry comes within 1 s, whatever the jitter.
	for range 1000 {
		if d := DefaultBackoff(1); d > time.Second || d < 375*time.Millisecond {
			t.Fatalf("first retry after %s, want 0.375–0.625 s", d)
		}
	}
	for range 1000 {
		if d := jittered(resumeRetryInterval); d < 400*time.Millisecond || d > 600*time.Millisecond {
			t.Fatalf("resumption retry after %s, want 0.4–0.6 s", d)
		}
	}
}

func TestCheckWellFormed(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"<a/>", true},
		{"<a xmlns='x'><b>t</b></a><c/>", true},
		{"<a>", false},
		{"<a></b>", false},
		{"</a>", false},
		{"<?xml version='1.0'?><a/>", false},
		{"<!DOCTYPE a><a/>", false},
		{"<a x='1' x='2'/>", true}, // encoding/xml does not reject duplicate attributes
		{"<a>&bogus;</a>", false},
	}
	for _, tt := range tests {
		if err := checkWellFormed(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkWellFormed(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

func TestChooseSASL(t *testing.T) {
	tls13 := &tls.ConnectionState{Version: tls.VersionTLS13}
	tls12 := &tls.ConnectionState{Version: tls.VersionTLS12, TLSUnique: []byte("finished")}
	tls12NoUnique := &tls.ConnectionState{Version: tls.VersionTLS12}
	tests := []struct {
		offered, cb []string
		state       *tls.ConnectionState
		want        string
		wantCB      string
		wantY       bool
	}{
		{[]string{"PLAIN", "SCRAM-SHA-1"}, nil, tls13, "SCRAM-SHA-1", "", false},
		{[]string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}, nil, tls13, "SCRAM-SHA-256", "", false},
		{[]string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"}, nil, tls13, "SCRAM-SHA-512", "", false},
		{[]string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}, nil, tls12, "SCRAM-SHA-256-PLUS", "tls-unique", false},
		{[]string{"SCRAM-SHA-512", "SCRAM-SHA-1-PLUS"}, nil, tls12, "SCRAM-SHA-1-PLUS", "tls-unique", false},
		{[]string{"SCRAM-SHA-512", "SCRAM-SHA-512-PLUS"}, nil, tls12NoUnique, "SCRAM-SHA-512", "", false},
		{[]string{"SCRAM-SHA-256"}, nil, tls12, "SCRAM-SHA-256", "", true},
		{[]string{"SCRAM-SHA-256"}, nil, tls13, "SCRAM-SHA-256", "", false},
		{[]string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, []string{"tls-unique"}, tls13, "SCRAM-SHA-1", "", false},
		{[]string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, []string{"tls-unique"}, tls12, "SCRAM-SHA-1-PLUS", "tls-unique", false},
		{[]string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, []string{"tls-unique"}, tls12NoUnique, "SCRAM-SHA-1", "", false},
		{[]string{"PLAIN"}, nil, tls13, "PLAIN", "", false},
		{[]string{"PLAIN"}, nil, nil, "", "", false},
		{[]string{"DIGEST-MD5", "X-OAUTH2"}, nil, tls13, "", "", false},
		{[]string{" scram-sha-1 "}, nil, tls13, "SCRAM-SHA-1", "", false},
	}
	for _, tt := range tests {
		got := chooseSASL(tt.offered, tt.cb, tt.state)
		if got.mechanism != tt.want || string(got.cb.Type) != tt.wantCB || got.advertise != tt.wantY {
			t.Errorf("chooseSASL(%v, %v, %+v) = %s cb %q y %v, want %s cb %q y %v", tt.offered, tt.cb, tt.state,
				got.mechanism, got.cb.Type, got.advertise, tt.want, tt.wantCB, tt.wantY)
		}
	}
}

// saslFromBytes runs the session's SASL element parsing on data.
func saslFromBytes(data []byte) (*saslElement, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	start, err := nextStart(dec)
	if err != nil {
		return nil, err
	}
	return decodeSASL(dec, start)
}

func FuzzDecodeSASL(f *testing.F) {
	for _, seed := range []string{
		"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcnZjTkhZSVk=</challenge>",
		"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</success>",
		"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
		"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text xml:lang='en'>no</text></failure>",
		"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
		"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
		"</stream:stream>",
		"<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		el, err := saslFromBytes(data)
		if err == nil && el.Local == "failure" && el.Condition == "" {
			t.Error("a failure without condition")
		}
	})
}

// replayConn replays fixed server bytes and discards what the client
// writes: fuzzing the negotiation with arbitrary server input.
type replayConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (r *replayConn) Read(p []byte) (int, error)       { return r.r.Read(p) }
func (r *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (r *replayConn) Close() error                     { return nil }
func (r *replayConn) SetDeadline(time.Time) error      { return nil }
func (r *replayConn) SetWriteDeadline(time.Time) error { return nil }

// fakeHandshake pretends to run TLS 1.2 (with a tls-unique value) on the
// replayed bytes.
func fakeHandshake(_ context.Context, raw net.Conn, _ *tls.Config) (net.Conn, *tls.ConnectionState, error) {
	return raw, &tls.ConnectionState{Version: tls.VersionTLS12, TLSUnique: []byte("0123456789ab")}, nil
}

const serverHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>"

func FuzzNegotiate(f *testing.F) {
	plain := serverHeader +
		"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>" +
		"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" +
		serverHeader + "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>" +
		"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" +
		serverHeader + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>" +
		"<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@b/c</jid></bind></iq>" +
		"<iq type='result' id='session'/>"
	f.Add([]byte(plain))
	f.Add([]byte(serverHeader + "<stream:features/>"))
	f.Add([]byte(serverHeader + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
	f.Add([]byte(strings.Replace(plain, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
		"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AAAA</challenge>", 1)))
	f.Add([]byte(strings.Replace(plain, "<iq type='result' id='bind'>", "<iq type='error' id='bind'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>", 1)))
	withSM := strings.Replace(plain, "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
		"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:3'/>", 1)
	f.Add([]byte(withSM + "<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300' location='[::1]:5222'/>"))
	f.Add([]byte(withSM + "<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"))
	f.Add([]byte(withSM + "<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='1' max='99999999999'/>"))
	cfg, err := resolve(Config{JID: "a@b", Password: "p", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	ep := Endpoint{Host: "b", Port: 5222, Origin: OriginDomain}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newStream(&replayConn{r: bytes.NewReader(data)}, "b", "a@b")
		st.handshake = fakeHandshake
		n, err := negotiate(t.Context(), cfg, st, ep, nil)
		if err == nil && (n.bound == "" || n.info.Mechanism == "") {
			t.Error("negotiation succeeded without a bound JID or a mechanism")
		}
		if err == nil && n.info.Mechanism == "PLAIN" && st.tlsState == nil {
			t.Error("PLAIN without TLS")
		}
	})
}

// FuzzStreamNext reads arbitrary server bytes after a stream header as
// the receive loop does: stanzas, stream management elements (counters
// checked), stream errors; it must never panic, and stream management
// values it accepts are sane.
func FuzzStreamNext(f *testing.F) {
	for _, seed := range []string{
		"<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='4294967295'/>",
		"<a xmlns='urn:xmpp:sm:3' h='-1'/>",
		"<a xmlns='urn:xmpp:sm:3' h='4294967296'/>",
		"<enabled xmlns='urn:xmpp:sm:3' id='x' resume='true' max='600' location='h:1'/>",
		"<resumed xmlns='urn:xmpp:sm:3' previd='x' h='7'/>",
		"<failed xmlns='urn:xmpp:sm:3' h='3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
		"<message id='m'><body>x</body></message><presence/><iq type='result' id='1'/>",
		"<unknown xmlns='urn:example'><deep><er/></deep></unknown><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
		"</stream:stream>",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newStream(&replayConn{r: bytes.NewReader(append([]byte(serverHeader), data...))}, "b", "a@b")
		if err := st.open(); err != nil {
			return
		}
		for range 64 {
			p, err := st.next()
			if err != nil {
				return
			}
			switch p := p.(type) {
			case *smEnabled:
				if p.max < 0 || p.max > maxResumeWindow {
					t.Errorf("window %s", p.max)
				}
				newSMState(p)
				locationEndpoint(p.location, Endpoint{Host: "b", Port: 5222})
			case stanza.StreamClosePacket, stanza.StreamError:
				return
			}
		}
	})
}

func FuzzCheckWellFormed(f *testing.F) {
	for _, s := range []string{"<a/>", "<a><b/></a>", "<a>", "x<y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkWellFormed(s) == nil {
			// Whatever passes must decode as a sequence of elements.
			dec := xml.NewDecoder(strings.NewReader("<w>" + s + "</w>"))
			for {
				if _, err := dec.Token(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("accepted %q but wrapping it fails: %v", s, err)
				}
			}
		}
	})
}
