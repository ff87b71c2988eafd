package session

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xdg-go/scram"
)

// Namespaces of stream negotiation.
const (
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsStream  = "http://etherx.jabber.org/streams"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
)

// Channel-binding types (RFC 5929, RFC 9266), as XEP-0440 names them.
const (
	cbTLSExporter       = "tls-exporter"
	cbTLSServerEndPoint = "tls-server-end-point"
	cbTLSUnique         = "tls-unique"
)

// scramHashes lists the SCRAM hashes, strongest first.
var scramHashes = []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"}

// saslChoice is the mechanism picked for a stream and how it binds to the
// TLS channel.
type saslChoice struct {
	// mechanism is the SASL mechanism, "" when none can be used.
	mechanism string
	// cb is the channel binding of a -PLUS mechanism (Type "" otherwise).
	cb scram.ChannelBinding
	// advertise is the gs2 flag "y" of plain SCRAM: the client could bind
	// to the channel but the server offered no -PLUS mechanism.
	advertise bool
}

// chooseSASL picks the strongest mechanism both sides offer on a stream
// whose TLS state is state (nil: not encrypted):
//
//   - SCRAM-SHA-512-PLUS, -256-PLUS, -1-PLUS when the channel binding can
//     be honoured (see channelBinding), channel binding before hash
//     strength: it is what defeats a man in the middle holding a
//     certificate the client trusts;
//   - then SCRAM-SHA-512, -256, -1, with the gs2 flag "y" when the client
//     could have bound the channel but the server offered no -PLUS (a
//     server that did offer them, stripped by an attacker, then fails the
//     exchange), and "n" when no channel binding is possible here;
//   - then PLAIN, only over TLS (the password travels as is).
//
// advertised are the XEP-0440 channel-binding types of the stream
// features (nil when the server advertises none).
func chooseSASL(offered, advertised []string, state *tls.ConnectionState) saslChoice {
	has := func(m string) bool {
		return slices.ContainsFunc(offered, func(o string) bool { return strings.EqualFold(strings.TrimSpace(o), m) })
	}
	cb, canBind := channelBinding(state, advertised)
	if canBind {
		for _, h := range scramHashes {
			if has(h + "-PLUS") {
				return saslChoice{mechanism: h + "-PLUS", cb: cb}
			}
		}
	}
	anyPlus := slices.ContainsFunc(offered, func(o string) bool { return strings.HasSuffix(strings.ToUpper(strings.TrimSpace(o)), "-PLUS") })
	for _, h := range scramHashes {
		if has(h) {
			// "y" only when the server offered no -PLUS at all. On TLS 1.3
			// with tls-unique the only possible binding, no binding is
			// possible (tls-unique is undefined there, RFC 9266): the flag
			// is "n". ejabberd 23.01 still advertises -PLUS on TLS 1.3
			// and accepts only tls-unique: "y" there would make it fail
			// the exchange as a downgrade, so "n" is also what works.
			return saslChoice{mechanism: h, advertise: canBind && !anyPlus}
		}
	}
	if state != nil && has("PLAIN") {
		return saslChoice{mechanism: "PLAIN"}
	}
	return saslChoice{}
}

// channelBinding returns the channel binding the client can honour on
// this TLS connection. With XEP-0440 types advertised: tls-exporter (TLS
// 1.3, or 1.2 with the extended master secret), then tls-server-end-point,
// then tls-unique (TLS 1.2 and below), each when advertised. Without
// XEP-0440: tls-unique, the default of RFC 5802, only on TLS 1.2 and
// below (it is undefined on TLS 1.3 and Go does not compute it there).
func channelBinding(state *tls.ConnectionState, advertised []string) (scram.ChannelBinding, bool) {
	if state == nil {
		return scram.ChannelBinding{}, false
	}
	unique := func() (scram.ChannelBinding, bool) {
		if state.Version <= tls.VersionTLS12 && len(state.TLSUnique) > 0 {
			return scram.NewTLSUniqueBinding(state.TLSUnique), true
		}
		return scram.ChannelBinding{}, false
	}
	if len(advertised) == 0 {
		return unique()
	}
	adv := func(t string) bool {
		return slices.ContainsFunc(advertised, func(a string) bool { return strings.EqualFold(a, t) })
	}
	if adv(cbTLSExporter) {
		if cb, err := scram.NewTLSExporterBinding(state); err == nil {
			return cb, true
		}
	}
	if adv(cbTLSServerEndPoint) {
		if cb, err := scram.NewTLSServerEndpointBinding(state); err == nil {
			return cb, true
		}
	}
	if adv(cbTLSUnique) {
		return unique()
	}
	return scram.ChannelBinding{}, false
}

// saslConv is one side of a SASL exchange: Step gets the server's data
// (nil for the initial response) and returns the client's next message.
type saslConv interface {
	Step(challenge []byte) ([]byte, error)
	// Verified reports whether the server has been authenticated too
	// (SCRAM's server signature); PLAIN has nothing to verify.
	Verified() bool
}

// newSASLConv starts a conversation for the choice. user is the account's
// localpart (the SASL authentication identity); no authorization identity
// is sent.
func newSASLConv(choice saslChoice, user, password string) (saslConv, error) {
	mechanism := choice.mechanism
	var hash scram.HashGeneratorFcn
	switch strings.TrimSuffix(mechanism, "-PLUS") {
	case "PLAIN":
		return &plainConv{user: user, password: password}, nil
	case "SCRAM-SHA-1":
		hash = scram.SHA1
	case "SCRAM-SHA-256":
		hash = scram.SHA256
	case "SCRAM-SHA-512":
		hash = scram.SHA512
	default:
		return nil, fmt.Errorf("unsupported sasl mechanism %q", mechanism)
	}
	client, err := hash.NewClient(user, password, "")
	if err != nil {
		// SASLprep refused the name or password; do not quote them.
		return nil, &AuthError{Mechanism: mechanism, Condition: "malformed-request", Text: "credentials rejected by SASLprep"}
	}
	var conv *scram.ClientConversation
	switch {
	case strings.HasSuffix(mechanism, "-PLUS"):
		conv = client.NewConversationWithChannelBinding(choice.cb)
	case choice.advertise:
		conv = client.NewConversationAdvertisingChannelBinding()
	default:
		conv = client.NewConversation()
	}
	return &scramConv{conv: conv}, nil
}

// plainConv is SASL PLAIN (RFC 4616).
type plainConv struct {
	user, password string
	sent           bool
}

func (p *plainConv) Step([]byte) ([]byte, error) {
	if p.sent {
		return nil, errors.New("unexpected sasl challenge for PLAIN")
	}
	p.sent = true
	return []byte("\x00" + p.user + "\x00" + p.password), nil
}

func (p *plainConv) Verified() bool { return true }

// scramConv is SCRAM-SHA-* (RFC 5802, RFC 7677) through xdg-go/scram, which
// checks the server's signature in the final step.
type scramConv struct {
	conv    *scram.ClientConversation
	started bool
}

func (s *scramConv) Step(challenge []byte) ([]byte, error) {
	in := string(challenge)
	if !s.started {
		in = ""
		s.started = true
	}
	if s.conv.Done() {
		return nil, errors.New("unexpected sasl challenge after the scram exchange")
	}
	out, err := s.conv.Step(in)
	if err != nil {
		// xdg-go/scram errors quote no secret (they name the failed check).
		return nil, fmt.Errorf("scram: %w", err)
	}
	return []byte(out), nil
}

func (s *scramConv) Verified() bool { return s.conv.Done() && s.conv.Valid() }

// saslElement is a SASL element received from the server.
type saslElement struct {
	// Local is "challenge", "success" or "failure".
	Local string
	// Data is the decoded base64 payload of a challenge or success.
	Data []byte
	// Condition and Text are those of a failure.
	Condition, Text string
}

// saslWire is the generic shape of a SASL element on the wire.
type saslWire struct {
	XMLName  xml.Name
	Data     string      `xml:",chardata"`
	Children []saslChild `xml:",any"`
}

type saslChild struct {
	XMLName xml.Name
	Data    string `xml:",chardata"`
}

// decodeSASL decodes the SASL element that starts with start.
func decodeSASL(dec *xml.Decoder, start xml.StartElement) (*saslElement, error) {
	if start.Name.Space != nsSASL {
		return nil, fmt.Errorf("expected a sasl element, got <%s xmlns=%q>", start.Name.Local, start.Name.Space)
	}
	var w saslWire
	if err := dec.DecodeElement(&w, &start); err != nil {
		return nil, fmt.Errorf("decode sasl <%s>: %w", start.Name.Local, err)
	}
	el := &saslElement{Local: start.Name.Local}
	switch start.Name.Local {
	case "challenge", "success":
		data, err := decodeBase64(w.Data)
		if err != nil {
			return nil, fmt.Errorf("decode sasl <%s>: %w", start.Name.Local, err)
		}
		el.Data = data
	case "failure":
		for _, c := range w.Children {
			switch {
			case c.XMLName.Local == "text":
				el.Text = strings.TrimSpace(c.Data)
			case el.Condition == "":
				el.Condition = c.XMLName.Local
			}
		}
		if el.Condition == "" {
			el.Condition = "undefined-condition"
		}
	default:
		return nil, fmt.Errorf("unexpected sasl element <%s>", start.Name.Local)
	}
	return el, nil
}

// decodeBase64 decodes SASL data: "=" or nothing is empty (RFC 6120 §6.4.2).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	if s == "" || s == "=" {
		return nil, nil
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("invalid base64 payload")
	}
	return data, nil
}

// encodeBase64 encodes SASL data, "=" for empty.
func encodeBase64(data []byte) string {
	if len(data) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(data)
}
