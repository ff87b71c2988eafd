package session

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// testCert is a self-signed certificate for "localhost", its own CA.
type testCert struct {
	cert tls.Certificate
	pool *x509.CertPool
}

var (
	testCertOnce sync.Once
	testCertVal  testCert
)

func fakeCertVal() testCert { return testCertVal }

// fakeCert returns the certificate of the fake servers.
func fakeCert(t testing.TB) testCert {
	t.Helper()
	testCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		testCertVal = testCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
	})
	return testCertVal
}

// fakeServer scripts a server over one end of a loopback TCP connection
// (connPair), with real TLS
// (direct or after STARTTLS): SASL with the offered mechanisms (SCRAM
// through xdg-go/scram's server, channel binding included), bind, then
// onStanza for each stanza.
type fakeServer struct {
	conn       net.Conn
	dec        *xml.Decoder
	directTLS  bool
	noTLS      bool
	tlsMax     uint16 // 0: TLS 1.3
	mechanisms []string
	// cbTypes are advertised with XEP-0440 (none when empty).
	cbTypes []string
	// cbSupported makes SCRAM conversations support channel binding
	// (tls-unique, or tls-exporter with cbTypes): a "y" flag then fails.
	cbSupported bool
	password    string
	// tamperFinal corrupts SCRAM's server-final message.
	tamperFinal bool
	// failure, when set, is sent instead of a SASL success.
	failure  string
	onStanza func(fs *fakeServer, el *rawEl)
	// sm, when set, offers stream management (XEP-0198) with the state
	// shared by the connections of one test.
	sm  *fakeSM
	wmu sync.Mutex

	// gotMechanism and gotGS2 are what the client sent.
	mu           sync.Mutex
	gotMechanism string
	gotGS2       string
	gotFrom      string
}

// rawEl is a top-level element read by the fake server.
type rawEl struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e *rawEl) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (fs *fakeServer) send(s string) {
	fs.wmu.Lock()
	defer fs.wmu.Unlock()
	_, _ = io.WriteString(fs.conn, s)
}

func (fs *fakeServer) read() (*rawEl, error) {
	for {
		tok, err := fs.dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "stream" {
				return &rawEl{XMLName: tok.Name, Attrs: tok.Attr}, nil // a stream header
			}
			var el rawEl
			if err := fs.dec.DecodeElement(&el, &tok); err != nil {
				return nil, err
			}
			return &el, nil
		case xml.EndElement:
			if tok.Name.Local == "stream" {
				return nil, io.EOF
			}
		}
	}
}

func (fs *fakeServer) expect(local string) (*rawEl, error) {
	el, err := fs.read()
	if err != nil {
		return nil, err
	}
	if el.XMLName.Local != local {
		return nil, fmt.Errorf("fake server: got <%s>, want <%s>", el.XMLName.Local, local)
	}
	return el, nil
}

func (fs *fakeServer) header(features string) error {
	fs.dec = xml.NewDecoder(fs.conn)
	h, err := fs.expect("stream")
	if err != nil {
		return err
	}
	if f := h.attr("from"); f != "" {
		fs.mu.Lock()
		fs.gotFrom = f
		fs.mu.Unlock()
	}
	fs.send("<stream:stream from='localhost' id='fake' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" +
		"<stream:features>" + features + "</stream:features>")
	return nil
}

func (fs *fakeServer) startTLS(t testing.TB) error {
	cfg := &tls.Config{Certificates: []tls.Certificate{fakeCert(t).cert}, MaxVersion: fs.tlsMax, NextProtos: []string{"xmpp-client"}}
	tc := tls.Server(fs.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	fs.conn = tc
	return nil
}

// serve runs the script; it ends when the client closes.
func (fs *fakeServer) serve(t testing.TB) error {
	defer fs.conn.Close()
	var feats strings.Builder
	feats.WriteString("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>")
	for _, m := range fs.mechanisms {
		feats.WriteString("<mechanism>" + m + "</mechanism>")
	}
	feats.WriteString("</mechanisms>")
	if len(fs.cbTypes) > 0 {
		feats.WriteString("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>")
		for _, c := range fs.cbTypes {
			feats.WriteString("<channel-binding type='" + c + "'/>")
		}
		feats.WriteString("</sasl-channel-binding>")
	}
	switch {
	case fs.directTLS:
		if err := fs.startTLS(t); err != nil {
			return err
		}
	case fs.noTLS:
		return fs.header(feats.String())
	default:
		if err := fs.header("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"); err != nil {
			return err
		}
		if _, err := fs.expect("starttls"); err != nil {
			return err
		}
		fs.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		if err := fs.startTLS(t); err != nil {
			return err
		}
	}
	if err := fs.header(feats.String()); err != nil {
		return err
	}
	if err := fs.sasl(); err != nil {
		return err
	}
	postAuth := "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
	if fs.sm != nil {
		postAuth += "<sm xmlns='urn:xmpp:sm:3'/>"
	}
	if err := fs.header(postAuth); err != nil {
		return err
	}
	bind, err := fs.read()
	if err != nil {
		return err
	}
	resumed := false
	if bind.XMLName.Local == "resume" && fs.sm != nil {
		if resumed = fs.sm.resume(fs, bind); !resumed {
			if bind, err = fs.read(); err != nil {
				return err
			}
		}
	}
	if !resumed {
		if bind.XMLName.Local != "iq" {
			return fmt.Errorf("fake server: got <%s>, want the bind iq", bind.XMLName.Local)
		}
		fs.send("<iq type='result' id='" + bind.attr("id") + "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/fake</jid></bind></iq>")
		if fs.sm != nil {
			if _, err := fs.expect("enable"); err != nil {
				return err
			}
			fs.sm.enable(fs)
		}
	}
	for {
		el, err := fs.read()
		if err != nil {
			return nil
		}
		if fs.sm != nil && fs.sm.handle(fs, el) {
			continue
		}
		if fs.onStanza != nil {
			fs.onStanza(fs, el)
		}
	}
}

// serverCB is the channel binding the server computes for its side.
func (fs *fakeServer) serverCB(typ string) scram.ChannelBinding {
	tc, ok := fs.conn.(*tls.Conn)
	if !ok {
		return scram.ChannelBinding{}
	}
	st := tc.ConnectionState()
	switch typ {
	case cbTLSExporter:
		cb, _ := scram.NewTLSExporterBinding(&st)
		return cb
	case cbTLSServerEndPoint:
		// The server hashes its own certificate.
		own := tls.ConnectionState{PeerCertificates: []*x509.Certificate{fakeCertVal().cert.Leaf}}
		cb, _ := scram.NewTLSServerEndpointBinding(&own)
		return cb
	}
	if st.Version > tls.VersionTLS12 {
		return scram.ChannelBinding{}
	}
	return scram.NewTLSUniqueBinding(st.TLSUnique)
}

// sasl answers the client's <auth/>.
func (fs *fakeServer) sasl() error {
	auth, err := fs.expect("auth")
	if err != nil {
		return err
	}
	if fs.failure != "" {
		fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + fs.failure + "</failure>")
		return errors.New("sasl failure sent")
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth.Inner))
	if err != nil {
		return err
	}
	mech := auth.attr("mechanism")
	fs.mu.Lock()
	fs.gotMechanism = mech
	if i := strings.Index(string(data), ",,"); i >= 0 {
		fs.gotGS2 = string(data[:i+2])
	}
	fs.mu.Unlock()
	if mech == "PLAIN" {
		if string(data) != "\x00alice\x00"+fs.password {
			fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
			return errors.New("wrong password")
		}
		fs.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
		return nil
	}
	hash := map[string]scram.HashGeneratorFcn{"SCRAM-SHA-1": scram.SHA1, "SCRAM-SHA-256": scram.SHA256, "SCRAM-SHA-512": scram.SHA512}[strings.TrimSuffix(mech, "-PLUS")]
	if hash == nil {
		fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>")
		return fmt.Errorf("unknown mechanism %q", mech)
	}
	client, _ := hash.NewClient("alice", fs.password, "")
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: "fake-salt", Iters: 4096})
	srv, _ := hash.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	conv := srv.NewConversation()
	switch {
	case strings.HasSuffix(mech, "-PLUS"):
		typ := cbTLSUnique
		if g := fs.gotGS2; strings.HasPrefix(g, "p=") {
			typ = strings.TrimSuffix(strings.TrimPrefix(g, "p="), ",,")
		}
		conv = srv.NewConversationWithChannelBindingRequired(fs.serverCB(typ))
	case fs.cbSupported:
		typ := cbTLSUnique
		if len(fs.cbTypes) > 0 {
			typ = fs.cbTypes[0]
		}
		if cb := fs.serverCB(typ); cb.IsSupported() {
			conv = srv.NewConversationWithChannelBinding(cb)
		}
	}
	first, err := conv.Step(string(data))
	if err != nil {
		fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>" + escapeText(err.Error()) + "</text></failure>")
		return err
	}
	fs.send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(first)) + "</challenge>")
	resp, err := fs.expect("response")
	if err != nil {
		return err
	}
	data, _ = base64.StdEncoding.DecodeString(strings.TrimSpace(resp.Inner))
	final, err := conv.Step(string(data))
	if err != nil {
		fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>" + escapeText(err.Error()) + "</text></failure>")
		return err
	}
	if fs.tamperFinal {
		final = "v=" + base64.StdEncoding.EncodeToString([]byte("not the signature of this exchange"))
	}
	fs.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(final)) + "</success>")
	return nil
}

// pipeDial is a dialer whose connections (connPair) are served by
// servers made by mk for the dialled address (one per connection); a nil
// server refuses the connection.
func pipeDial(t testing.TB, mk func(addr string) *fakeServer, serverErrs chan error) dialer {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		fs := mk(addr)
		if fs == nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connect: connection refused")}
		}
		c, srvEnd, err := connPair()
		if err != nil {
			return nil, err
		}
		fs.conn = srvEnd
		go func() {
			err := fs.serve(t)
			select {
			case serverErrs <- err:
			default:
			}
		}()
		return c, nil
	}
}

// connPair returns the two ends of a loopback TCP connection. (net.Pipe
// has no buffer: a TLS peer that stops reading to send an alert while the
// other is still writing its flight deadlocks both.)
func connPair() (client, server net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	server = <-accepted
	if server == nil {
		client.Close()
		return nil, nil, errors.New("accept failed")
	}
	return client, server, nil
}

// fakeSession makes a session whose connections go to fake servers made by
// mk (one per connection), at the configured endpoint 127.0.0.1:5222.
func fakeSession(t *testing.T, mk func() *fakeServer, h Handlers) (*Session, chan error) {
	t.Helper()
	s := New(Config{
		JID: "alice@localhost", Password: "fake-pw", Resource: "fake", Host: "127.0.0.1", Port: 5222,
		Timeout: 5 * time.Second, PingInterval: -1, Backoff: fastBackoff,
		Log: fakeLog(),
	}, h)
	serverErrs := make(chan error, 16)
	s.cfg.tls.RootCAs = fakeCert(t).pool
	s.dial = pipeDial(t, func(string) *fakeServer { return mk() }, serverErrs)
	return s, serverErrs
}

// fakeLog is the logger of fake sessions: silent, or debug on stderr
// with SESSION_TEST_DEBUG set.
func fakeLog() *slog.Logger {
	if os.Getenv("SESSION_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestFakeNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		server   func() *fakeServer
		direct   bool
		tls12    bool   // the client caps TLS at 1.2
		wantMech string // "" when an error is expected
		wantGS2  string // the gs2 header the server saw, "" to skip
		wantCB   string
		wantErr  func(error) bool
	}{
		{name: "plain", server: func() *fakeServer { return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw"} }, wantMech: "PLAIN"},
		{name: "scram preferred", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-256", wantGS2: "n,,"},
		{name: "scram-sha-512", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-1", "SCRAM-SHA-512", "SCRAM-SHA-256"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-512", wantGS2: "n,,"},
		{name: "tls 1.3: -PLUS offered but tls-unique impossible", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, password: "fake-pw", cbSupported: true}
		}, wantMech: "SCRAM-SHA-1", wantGS2: "n,,"},
		{name: "tls 1.2: -PLUS with tls-unique", tls12: true, server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-512", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-1-PLUS", wantGS2: "p=tls-unique,,", wantCB: "tls-unique"},
		{name: "tls 1.2: no -PLUS offered, y flag", tls12: true, server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-256", wantGS2: "y,,"},
		{name: "tls 1.2: y flag against a server that binds (downgrade detected)", tls12: true, server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw", cbSupported: true}
		}, wantErr: func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "not-authorized"
		}},
		{name: "xep-0440 tls-exporter on tls 1.3", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, cbTypes: []string{"tls-exporter", "tls-server-end-point"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-256-PLUS", wantGS2: "p=tls-exporter,,", wantCB: "tls-exporter"},
		{name: "xep-0440 tls-server-end-point", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-512-PLUS"}, cbTypes: []string{"tls-server-end-point"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-512-PLUS", wantGS2: "p=tls-server-end-point,,", wantCB: "tls-server-end-point"},
		{name: "xep-0440 tls-unique only, on tls 1.3", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, cbTypes: []string{"tls-unique"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-1", wantGS2: "n,,"},
		{name: "direct tls", direct: true, server: func() *fakeServer {
			return &fakeServer{directTLS: true, mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw"}
		}, wantMech: "SCRAM-SHA-256"},
		{name: "scram-sha-1", server: func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-1"}, password: "fake-pw"} }, wantMech: "SCRAM-SHA-1"},
		{name: "scram wrong password", server: func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-1"}, password: "other"} }, wantErr: func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "not-authorized" && IsPermanent(err)
		}},
		{name: "forged server signature", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw", tamperFinal: true}
		}, wantErr: func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "invalid-server-signature"
		}},
		{name: "failure with text", server: func() *fakeServer {
			return &fakeServer{mechanisms: []string{"PLAIN"}, failure: "<account-disabled/><text xml:lang='en'>gone fishing</text>"}
		}, wantErr: func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "account-disabled" && a.Text == "gone fishing"
		}},
		{name: "no common mechanism", server: func() *fakeServer { return &fakeServer{mechanisms: []string{"X-OAUTH2", "SCRAM-SHA-1-PLUS"}} }, wantErr: func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "no-mechanism"
		}},
		{name: "no starttls", server: func() *fakeServer {
			return &fakeServer{noTLS: true, mechanisms: []string{"PLAIN"}, password: "fake-pw"}
		}, wantErr: func(err error) bool {
			return errors.Is(err, ErrNoTLS) && IsPermanent(err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var server *fakeServer
			s, _ := fakeSession(t, func() *fakeServer { server = tt.server(); return server }, Handlers{})
			var logs logBuffer
			s.cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			if tt.direct {
				s.cfg.configured.DirectTLS = true
			}
			if tt.tls12 {
				s.cfg.tls.MaxVersion = tls.VersionTLS12
			}
			err := s.Start(context.Background())
			defer func() { _ = s.Stop(context.Background()) }()
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("Start error = %v", err)
				}
				if strings.Contains(err.Error(), "fake-pw") {
					t.Error("the error quotes the password")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.JID() != "alice@localhost/fake" {
				t.Errorf("JID = %q", s.JID())
			}
			info, ok := s.ConnInfo()
			if !ok || info.Mechanism != tt.wantMech || info.ChannelBinding != tt.wantCB || info.JID != s.JID() {
				t.Errorf("ConnInfo = %+v, %v; want mechanism %s, channel binding %q", info, ok, tt.wantMech, tt.wantCB)
			}
			wantTLS := "TLS 1.3"
			if tt.tls12 {
				wantTLS = "TLS 1.2"
			}
			if info.TLSVersion != wantTLS || info.Endpoint.DirectTLS != tt.direct || info.Endpoint.Origin != OriginConfigured {
				t.Errorf("ConnInfo = %+v; want %s, direct TLS %v, configured", info, wantTLS, tt.direct)
			}
			server.mu.Lock()
			gs2, from := server.gotGS2, server.gotFrom
			server.mu.Unlock()
			if tt.wantGS2 != "" && gs2 != tt.wantGS2 {
				t.Errorf("gs2 header %q, want %q", gs2, tt.wantGS2)
			}
			if from != "alice@localhost" {
				t.Errorf("stream 'from' on the encrypted stream = %q, want the bare JID", from)
			}
			if !strings.Contains(logs.String(), "mechanism="+tt.wantMech) {
				t.Errorf("logs %q lack mechanism %s", logs.String(), tt.wantMech)
			}
			if strings.Contains(logs.String(), "fake-pw") {
				t.Error("the logs contain the password")
			}
		})
	}
}

// TestFakeTrackerFromCheck: answers from the wrong entity are dropped; the
// genuine answer still arrives.
func TestFakeTrackerFromCheck(t *testing.T) {
	mk := func() *fakeServer {
		return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw", onStanza: func(fs *fakeServer, el *rawEl) {
			if el.XMLName.Local != "iq" || el.attr("type") != "get" {
				return
			}
			id, to := el.attr("id"), el.attr("to")
			// First a forged answer from another entity, then (for the
			// requests sent somewhere) the genuine one.
			fs.send("<iq type='result' id='" + id + "' from='mallory@localhost/x' to='alice@localhost/fake'/>")
			from := to
			switch to {
			case "":
				from = "" // the server answers for the account
			case "bob@localhost/never":
				return
			}
			if to == "localhost" {
				fs.send("<iq type='result' id='" + id + "' from='LOCALHOST'/>") // case differs: same JID
				return
			}
			fs.send("<iq type='result' id='" + id + "' from='" + from + "'><ok xmlns='urn:example'/></iq>")
		}}
	}
	s, _ := fakeSession(t, mk, Handlers{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	for _, to := range []string{"bob@localhost/res", "", "localhost", "alice@localhost"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := s.SendIQRaw(ctx, to, "get", "<q xmlns='urn:example'/>")
		cancel()
		if err != nil {
			t.Errorf("to %q: %v", to, err)
			continue
		}
		if strings.HasPrefix(res.From, "mallory") {
			t.Errorf("to %q: accepted the forged answer", to)
		}
	}
	// Only a forged answer comes: the request times out.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.SendIQRaw(ctx, "bob@localhost/never", "get", "<q xmlns='urn:example'/>"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("forged answer only: %v, want a deadline error", err)
	}
}

func TestReplyFromMatches(t *testing.T) {
	const own = "alice@localhost/res"
	tests := []struct {
		to, from string
		want     bool
	}{
		{"bob@localhost/x", "bob@localhost/x", true},
		{"bob@localhost/x", "Bob@LocalHost/x", true},
		{"bob@localhost/x", "bob@localhost/X", false},
		{"bob@localhost/x", "bob@localhost", false},
		{"bob@localhost/x", "", false},
		{"bob@localhost/x", "mallory@localhost/x", false},
		{"", "", true},
		{"", "alice@localhost", true},
		{"", own, true},
		{"", "localhost", true},
		{"", "bob@localhost", false},
		{"", "pubsub.localhost", false},
		{"alice@localhost", "", true},
		{"alice@localhost", "alice@localhost", true},
		{"pubsub.localhost", "pubsub.localhost", true},
		{"pubsub.localhost", "localhost", false},
		{"pubsub.localhost", "PUBSUB.LOCALHOST.", true},
		{"élodie@localhost", "ÉLODIE@localhost", true},
	}
	for _, tt := range tests {
		if got := replyFromMatches(normalizeJID(tt.to), tt.from, own); got != tt.want {
			t.Errorf("replyFromMatches(to %q, from %q) = %v, want %v", tt.to, tt.from, got, tt.want)
		}
	}
}

// TestFakeReconnectFreshTransport: after the server's stream end, the
// session reconnects on a new connection and Connected runs again.
func TestFakeReconnectFreshTransport(t *testing.T) {
	var mu sync.Mutex
	var servers []*fakeServer
	mk := func() *fakeServer {
		fs := &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw"}
		mu.Lock()
		servers = append(servers, fs)
		mu.Unlock()
		return fs
	}
	connected := make(chan struct{}, 4)
	s, _ := fakeSession(t, mk, Handlers{Connected: func(context.Context, string) { connected <- struct{}{} }})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	<-connected
	mu.Lock()
	first := servers[0]
	mu.Unlock()
	first.send("</stream:stream>")
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(servers) != 2 {
		t.Errorf("%d connections, want 2", len(servers))
	}
}
