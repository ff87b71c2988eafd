package session

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
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

// mechanismPreference lists the SASL mechanisms the session uses, best
// first. -PLUS variants are absent: channel binding needs the TLS state,
// which the transport keeps private.
var mechanismPreference = []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}

// pickMechanism returns the preferred mechanism among those offered, or "".
// PLAIN is only picked over TLS.
func pickMechanism(offered []string, secure bool) string {
	for _, m := range mechanismPreference {
		if m == "PLAIN" && !secure {
			continue
		}
		for _, o := range offered {
			if strings.EqualFold(strings.TrimSpace(o), m) {
				return m
			}
		}
	}
	return ""
}

// saslConv is one side of a SASL exchange: Step gets the server's data
// (nil for the initial response) and returns the client's next message.
type saslConv interface {
	Step(challenge []byte) ([]byte, error)
	// Verified reports whether the server has been authenticated too
	// (SCRAM's server signature); PLAIN has nothing to verify.
	Verified() bool
}

// newSASLConv starts a conversation for mechanism. user is the account's
// localpart (the SASL authentication identity); no authorization identity
// is sent.
func newSASLConv(mechanism, user, password string) (saslConv, error) {
	var hash scram.HashGeneratorFcn
	switch mechanism {
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
	return &scramConv{conv: client.NewConversation()}, nil
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
