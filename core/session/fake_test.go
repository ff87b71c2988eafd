package session

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"
	"gosrc.io/xmpp"
	"gosrc.io/xmpp/stanza"
)

// fakeTransport is a transport over one end of a net.Pipe; a fakeServer
// plays the server on the other end. "TLS" is simulated (no encryption).
type fakeTransport struct {
	conn    net.Conn
	dec     *xml.Decoder
	secure  bool
	closeCh chan struct{}
}

const clientHeader = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"

func (f *fakeTransport) Connect() (string, error) {
	f.closeCh = make(chan struct{})
	f.dec = xml.NewDecoder(f.conn)
	return f.StartStream()
}

func (f *fakeTransport) StartStream() (string, error) {
	if _, err := io.WriteString(f.conn, clientHeader); err != nil {
		return "", err
	}
	return stanza.InitStream(f.dec)
}

func (f *fakeTransport) StartTLS() error {
	f.secure = true
	f.dec = xml.NewDecoder(f.conn)
	return nil
}

func (f *fakeTransport) GetDecoder() *xml.Decoder    { return f.dec }
func (f *fakeTransport) IsSecure() bool              { return f.secure }
func (f *fakeTransport) Write(p []byte) (int, error) { return f.conn.Write(p) }
func (f *fakeTransport) ReceivedStreamClose()        { f.closeCh <- struct{}{} }

func (f *fakeTransport) Close() error {
	_, _ = io.WriteString(f.conn, "</stream:stream>")
	select {
	case <-f.closeCh:
	case <-time.After(time.Second):
	}
	return f.conn.Close()
}

// fakeServer scripts a server: STARTTLS (unless noTLS), SASL with the
// offered mechanisms, bind, then onStanza for each stanza.
type fakeServer struct {
	conn       net.Conn
	dec        *xml.Decoder
	noTLS      bool
	mechanisms []string
	password   string
	// tamperFinal corrupts SCRAM's server-final message.
	tamperFinal bool
	// failure, when set, is sent instead of a SASL success.
	failure  string
	onStanza func(fs *fakeServer, el *rawEl)
	wmu      sync.Mutex
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
				return &rawEl{XMLName: tok.Name}, nil // a stream header
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
	if _, err := fs.expect("stream"); err != nil {
		return err
	}
	fs.send("<stream:stream from='localhost' id='fake' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" +
		"<stream:features>" + features + "</stream:features>")
	return nil
}

// serve runs the script; it ends when the client closes.
func (fs *fakeServer) serve() error {
	defer fs.conn.Close()
	fs.dec = xml.NewDecoder(fs.conn)
	var mechs strings.Builder
	for _, m := range fs.mechanisms {
		mechs.WriteString("<mechanism>" + m + "</mechanism>")
	}
	saslFeatures := "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + mechs.String() + "</mechanisms>"
	if fs.noTLS {
		return fs.header(saslFeatures)
	}
	if err := fs.header("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"); err != nil {
		return err
	}
	if _, err := fs.expect("starttls"); err != nil {
		return err
	}
	fs.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	fs.dec = xml.NewDecoder(fs.conn)
	if err := fs.header(saslFeatures); err != nil {
		return err
	}
	if err := fs.sasl(); err != nil {
		return err
	}
	if err := fs.header("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"); err != nil {
		return err
	}
	bind, err := fs.expect("iq")
	if err != nil {
		return err
	}
	fs.send("<iq type='result' id='" + bind.attr("id") + "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/fake</jid></bind></iq>")
	for {
		el, err := fs.read()
		if err != nil {
			return nil
		}
		if fs.onStanza != nil {
			fs.onStanza(fs, el)
		}
	}
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
	if mech == "PLAIN" {
		if string(data) != "\x00alice\x00"+fs.password {
			fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
			return errors.New("wrong password")
		}
		fs.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
		return nil
	}
	hash := map[string]scram.HashGeneratorFcn{"SCRAM-SHA-1": scram.SHA1, "SCRAM-SHA-256": scram.SHA256}[mech]
	client, _ := hash.NewClient("alice", fs.password, "")
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: "fake-salt", Iters: 4096})
	srv, _ := hash.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	conv := srv.NewConversation()
	first, err := conv.Step(string(data))
	if err != nil {
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
		fs.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
		return err
	}
	if fs.tamperFinal {
		final = "v=" + base64.StdEncoding.EncodeToString([]byte("not the signature of this exchange"))
	}
	fs.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(final)) + "</success>")
	return nil
}

// fakeSession makes a session whose transports connect to fake servers
// made by mk (one per connection).
func fakeSession(t *testing.T, mk func() *fakeServer, h Handlers) (*Session, chan error) {
	t.Helper()
	s := New(Config{
		JID: "alice@localhost", Password: "fake-pw", Resource: "fake",
		Timeout: 5 * time.Second, PingInterval: -1, Backoff: fastBackoff,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, h)
	serverErrs := make(chan error, 16)
	s.newTransport = func(xmpp.TransportConfiguration) transport {
		c, srvEnd := net.Pipe()
		fs := mk()
		fs.conn = srvEnd
		go func() { serverErrs <- fs.serve() }()
		return &fakeTransport{conn: c}
	}
	return s, serverErrs
}

func TestFakeNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		server   func() *fakeServer
		wantMech string // "" when an error is expected
		wantErr  func(error) bool
	}{
		{"plain", func() *fakeServer { return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw"} }, "PLAIN", nil},
		{"scram preferred", func() *fakeServer {
			return &fakeServer{mechanisms: []string{"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"}, password: "fake-pw"}
		}, "SCRAM-SHA-256", nil},
		{"scram-sha-1", func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-1"}, password: "fake-pw"} }, "SCRAM-SHA-1", nil},
		{"scram wrong password", func() *fakeServer { return &fakeServer{mechanisms: []string{"SCRAM-SHA-1"}, password: "other"} }, "", func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "not-authorized" && IsPermanent(err)
		}},
		{"forged server signature", func() *fakeServer {
			return &fakeServer{mechanisms: []string{"SCRAM-SHA-256"}, password: "fake-pw", tamperFinal: true}
		}, "", func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "invalid-server-signature"
		}},
		{"failure with text", func() *fakeServer {
			return &fakeServer{mechanisms: []string{"PLAIN"}, failure: "<account-disabled/><text xml:lang='en'>gone fishing</text>"}
		}, "", func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "account-disabled" && a.Text == "gone fishing"
		}},
		{"no common mechanism", func() *fakeServer { return &fakeServer{mechanisms: []string{"X-OAUTH2", "SCRAM-SHA-1-PLUS"}} }, "", func(err error) bool {
			var a *AuthError
			return errors.As(err, &a) && a.Condition == "no-mechanism"
		}},
		{"no starttls", func() *fakeServer {
			return &fakeServer{noTLS: true, mechanisms: []string{"PLAIN"}, password: "fake-pw"}
		}, "", func(err error) bool {
			return errors.Is(err, ErrNoTLS) && IsPermanent(err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := fakeSession(t, tt.server, Handlers{})
			var logs logBuffer
			s.cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	}
	for _, tt := range tests {
		if got := replyFromMatches(normalizeJID(tt.to), tt.from, own); got != tt.want {
			t.Errorf("replyFromMatches(to %q, from %q) = %v, want %v", tt.to, tt.from, got, tt.want)
		}
	}
}

// TestFakeReconnectFreshTransport: after the server's stream end, the
// session reconnects on a new transport and Connected runs again.
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
		t.Errorf("%d transports, want 2", len(servers))
	}
}
