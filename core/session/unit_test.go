package session

import (
	"bytes"
	"encoding/xml"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
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
			if s.addr != "example.org:5222" || s.Timeout != DefaultTimeout || s.tls.ServerName != "example.org" {
				t.Errorf("%s: defaults %s %s %q", tt.name, s.addr, s.Timeout, s.tls.ServerName)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
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

func TestPickMechanism(t *testing.T) {
	tests := []struct {
		offered []string
		secure  bool
		want    string
	}{
		{[]string{"PLAIN", "SCRAM-SHA-1"}, true, "SCRAM-SHA-1"},
		{[]string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}, true, "SCRAM-SHA-256"},
		{[]string{"PLAIN"}, true, "PLAIN"},
		{[]string{"PLAIN"}, false, ""},
		{[]string{"DIGEST-MD5", "X-OAUTH2"}, true, ""},
		{[]string{" scram-sha-1 "}, true, "SCRAM-SHA-1"},
	}
	for _, tt := range tests {
		if got := pickMechanism(tt.offered, tt.secure); got != tt.want {
			t.Errorf("pickMechanism(%v, %v) = %q, want %q", tt.offered, tt.secure, got, tt.want)
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

// replayTransport replays fixed server bytes and discards what the client
// writes: fuzzing the negotiation with arbitrary server input.
type replayTransport struct {
	r      *bytes.Reader
	dec    *xml.Decoder
	secure bool
}

func (r *replayTransport) Connect() (string, error) {
	r.dec = xml.NewDecoder(r.r)
	return r.StartStream()
}
func (r *replayTransport) StartStream() (string, error) { return initStream(r.dec) }
func (r *replayTransport) StartTLS() error {
	r.secure = true
	r.dec = xml.NewDecoder(r.r) // bytes.Reader is a ByteReader: no read-ahead is lost
	return nil
}
func (r *replayTransport) GetDecoder() *xml.Decoder    { return r.dec }
func (r *replayTransport) IsSecure() bool              { return r.secure }
func (r *replayTransport) Write(p []byte) (int, error) { return len(p), nil }
func (r *replayTransport) Close() error                { return nil }
func (r *replayTransport) ReceivedStreamClose()        {}

// initStream is stanza.InitStream (kept local so the fuzz target names
// what it exercises).
func initStream(dec *xml.Decoder) (string, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return "", io.ErrUnexpectedEOF
			}
			return "", nil
		}
	}
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
	cfg, err := resolve(Config{JID: "a@b", Password: "p", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := &replayTransport{r: bytes.NewReader(data)}
		bound, _, err := negotiate(t.Context(), cfg, tr)
		if err == nil && bound == "" {
			t.Error("negotiation succeeded without a bound JID")
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
