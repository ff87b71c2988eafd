package session

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"sync"

	"gosrc.io/xmpp/stanza"
)

// negotiation is the stream negotiation of one connection attempt.
type negotiation struct {
	s *settings
	t transport

	// mu is held while the transport replaces its own fields (Connect,
	// StartTLS): the watchdog may only close the transport outside those.
	mu        sync.Mutex
	connected bool // Connect succeeded: the transport must be closed
	aborted   bool // the watchdog closed the transport
}

// negotiate dials and negotiates a stream on t: STARTTLS, SASL, bind and
// the legacy session. It returns the bound full JID and the decoder to read
// stanzas from. ctx (and Config.Timeout) bound everything but the two
// phases where the transport cannot be interrupted (see Config.Timeout).
// On error the transport is closed.
func negotiate(ctx context.Context, s *settings, t transport) (string, *xml.Decoder, error) {
	n := &negotiation{s: s, t: t}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	watchdogDone := make(chan struct{})
	stopWatchdog := context.AfterFunc(ctx, func() {
		defer close(watchdogDone)
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.connected && !n.aborted {
			n.aborted = true
			closeTransport(n.t)
		}
	})
	bound, dec, err := n.run()
	if !stopWatchdog() {
		<-watchdogDone // the watchdog fired: wait until it is done
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.aborted {
		if ctx.Err() != nil {
			err = fmt.Errorf("stream negotiation with %s: %w", s.addr, context.Cause(ctx))
		}
		return "", nil, err
	}
	if err != nil {
		if n.connected {
			closeTransport(n.t)
		}
		return "", nil, err
	}
	return bound, dec, nil
}

// locked runs f with the watchdog held off, unless it already fired.
func (n *negotiation) locked(f func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.aborted {
		return errors.New("negotiation aborted")
	}
	return f()
}

func (n *negotiation) run() (string, *xml.Decoder, error) {
	err := n.locked(func() error {
		// On failure nothing is left open: a failed dial opened nothing,
		// and a failed stream open closed the transport itself.
		if _, err := n.t.Connect(); err != nil {
			return fmt.Errorf("connect to %s: %w", n.s.addr, err)
		}
		n.connected = true
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	features, err := n.readFeatures()
	if err != nil {
		return "", nil, err
	}
	if _, ok := features.DoesStartTLS(); !ok {
		return "", nil, &permanentError{fmt.Errorf("negotiate with %s: %w", n.s.addr, ErrNoTLS)}
	}
	if err := n.starttls(); err != nil {
		return "", nil, err
	}
	if features, err = n.readFeatures(); err != nil {
		return "", nil, err
	}
	if err := n.authenticate(features.Mechanisms.Mechanism); err != nil {
		return "", nil, err
	}
	if _, err := n.t.StartStream(); err != nil {
		return "", nil, fmt.Errorf("restart stream after sasl: %w", err)
	}
	if features, err = n.readFeatures(); err != nil {
		return "", nil, err
	}
	if features.Bind.XMLName.Space != nsBind {
		return "", nil, errors.New("server offers no resource binding")
	}
	bound, err := n.bind()
	if err != nil {
		return "", nil, err
	}
	// RFC 3921 sessions are obsolete (RFC 6121); gosrc.io/xmpp cannot tell
	// an optional one, and establishing it is harmless when advertised.
	if features.Session.XMLName.Space == nsSession {
		if err := n.legacySession(); err != nil {
			return "", nil, err
		}
	}
	return bound, n.t.GetDecoder(), nil
}

// write sends one serialised element.
func (n *negotiation) write(s string) error {
	if _, err := n.t.Write([]byte(s)); err != nil {
		return fmt.Errorf("write to %s: %w", n.s.addr, err)
	}
	return nil
}

// nextStart returns the next top-level element's start, turning a stream
// error or the stream's end into errors.
func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, fmt.Errorf("read stream: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Space == nsStream && tok.Name.Local == "error" {
				var se stanza.StreamError
				if err := dec.DecodeElement(&se, &tok); err != nil {
					return xml.StartElement{}, fmt.Errorf("decode stream error: %w", err)
				}
				return xml.StartElement{}, streamError(se)
			}
			return tok, nil
		case xml.EndElement:
			if tok.Name.Space == nsStream && tok.Name.Local == "stream" {
				return xml.StartElement{}, ErrStreamClosed
			}
		}
	}
}

// streamError converts the library's stream error.
func streamError(se stanza.StreamError) *StreamError {
	cond := se.Error.Local
	if cond == "text" || cond == "" {
		cond = "undefined-condition"
	}
	return &StreamError{Condition: cond, Text: strings.TrimSpace(se.Text)}
}

// readFeatures reads <stream:features/>.
func (n *negotiation) readFeatures() (*stanza.StreamFeatures, error) {
	dec := n.t.GetDecoder()
	start, err := nextStart(dec)
	if err != nil {
		return nil, fmt.Errorf("read stream features: %w", err)
	}
	if start.Name.Space != nsStream || start.Name.Local != "features" {
		return nil, fmt.Errorf("read stream features: got <%s xmlns=%q>", start.Name.Local, start.Name.Space)
	}
	var f stanza.StreamFeatures
	if err := dec.DecodeElement(&f, &start); err != nil {
		return nil, fmt.Errorf("decode stream features: %w", err)
	}
	return &f, nil
}

// starttls upgrades the connection and restarts the stream.
func (n *negotiation) starttls() error {
	if err := n.write("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return err
	}
	start, err := nextStart(n.t.GetDecoder())
	if err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if err := n.t.GetDecoder().Skip(); err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if start.Name.Space != nsTLS || start.Name.Local != "proceed" {
		return fmt.Errorf("starttls refused by the server: <%s>", start.Name.Local)
	}
	if n.s.InsecureSkipVerify {
		n.s.Log.Warn("xmpp: TLS certificate verification is disabled", "jid", n.s.account.String())
	}
	err = n.locked(func() error {
		if err := n.t.StartTLS(); err != nil {
			return fmt.Errorf("tls handshake with %s: %w", n.s.addr, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !n.t.IsSecure() {
		return errors.New("tls not established after starttls")
	}
	if _, err := n.t.StartStream(); err != nil {
		return fmt.Errorf("restart stream after starttls: %w", err)
	}
	return nil
}

// authenticate runs the SASL exchange (the stream is already encrypted).
func (n *negotiation) authenticate(offered []string) error {
	mech := pickMechanism(offered, n.t.IsSecure())
	if mech == "" {
		return &AuthError{Condition: "no-mechanism", Text: "server offers " + strings.Join(offered, ", ")}
	}
	conv, err := newSASLConv(mech, n.s.account.Local, n.s.Password)
	if err != nil {
		return err
	}
	initial, err := conv.Step(nil)
	if err != nil {
		return &AuthError{Mechanism: mech, Condition: "malformed-request", Text: err.Error()}
	}
	if err := n.write("<auth xmlns='" + nsSASL + "' mechanism='" + mech + "'>" + encodeBase64(initial) + "</auth>"); err != nil {
		return err
	}
	dec := n.t.GetDecoder()
	for {
		start, err := nextStart(dec)
		if err != nil {
			return fmt.Errorf("sasl %s: %w", mech, err)
		}
		el, err := decodeSASL(dec, start)
		if err != nil {
			return fmt.Errorf("sasl %s: %w", mech, err)
		}
		switch el.Local {
		case "failure":
			return &AuthError{Mechanism: mech, Condition: el.Condition, Text: el.Text}
		case "challenge":
			resp, err := conv.Step(el.Data)
			if err != nil {
				_ = n.write("<abort xmlns='" + nsSASL + "'/>")
				return &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: err.Error()}
			}
			if err := n.write("<response xmlns='" + nsSASL + "'>" + encodeBase64(resp) + "</response>"); err != nil {
				return err
			}
		case "success":
			if len(el.Data) > 0 {
				if _, err := conv.Step(el.Data); err != nil {
					return &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: err.Error()}
				}
			}
			if !conv.Verified() {
				return &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: "the server did not prove it knows the credentials"}
			}
			n.s.Log.Debug("xmpp: authenticated", "jid", n.s.account.String(), "mechanism", mech)
			return nil
		}
	}
}

// bind binds the configured resource and returns the full JID.
func (n *negotiation) bind() (string, error) {
	res := ""
	if n.s.Resource != "" {
		res = "<resource>" + escapeText(n.s.Resource) + "</resource>"
	}
	iq, err := n.negotiationIQ("bind", "<bind xmlns='"+nsBind+"'>"+res+"</bind>")
	if err != nil {
		return "", fmt.Errorf("bind resource: %w", err)
	}
	b, ok := iq.Payload.(*stanza.Bind)
	if !ok || b.Jid == "" {
		return "", errors.New("bind resource: the answer holds no jid")
	}
	return b.Jid, nil
}

// legacySession establishes an RFC 3921 session.
func (n *negotiation) legacySession() error {
	if _, err := n.negotiationIQ("session", "<session xmlns='"+nsSession+"'/>"); err != nil {
		return fmt.Errorf("establish session: %w", err)
	}
	return nil
}

// negotiationIQ sends an IQ set during negotiation and waits for its answer
// (nothing else may arrive before it).
func (n *negotiation) negotiationIQ(id, payload string) (*stanza.IQ, error) {
	if err := n.write("<iq type='set' id='" + id + "'>" + payload + "</iq>"); err != nil {
		return nil, err
	}
	for {
		p, err := stanza.NextPacket(n.t.GetDecoder())
		if err != nil {
			return nil, fmt.Errorf("read answer: %w", err)
		}
		switch p := p.(type) {
		case *stanza.IQ:
			if p.Id != id {
				continue
			}
			if p.Type == stanza.IQTypeError {
				return nil, newIQError(p)
			}
			return p, nil
		case stanza.StreamError:
			return nil, streamError(p)
		case stanza.StreamClosePacket:
			return nil, ErrStreamClosed
		}
	}
}
