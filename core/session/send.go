package session

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"gosrc.io/xmpp/stanza"
)

// SendIQ sends an IQ get or set and waits for its answer, until ctx ends
// (no other timeout applies). An empty id is filled in. The answer must
// come from the request's 'to' (or, when 'to' is empty or the own bare
// JID, from the server on the account's behalf: no 'from', the bare JID,
// the full JID or the domain); answers from anyone else are dropped. A
// type="error" answer returns an *IQError; a stream that ends first
// returns ErrDisconnected; without a stream, ErrNotConnected.
func (s *Session) SendIQ(ctx context.Context, iq *stanza.IQ) (*stanza.IQ, error) {
	if iq == nil {
		return nil, errors.New("send iq: nil iq")
	}
	if iq.Type != stanza.IQTypeGet && iq.Type != stanza.IQTypeSet {
		return nil, fmt.Errorf("send iq: type %q, want get or set", iq.Type)
	}
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	if iq.Id == "" {
		iq.Id = s.newID()
	}
	iq.XMLName = xml.Name{Local: "iq"}
	data, err := xml.Marshal(iq)
	if err != nil {
		return nil, fmt.Errorf("send iq: encode: %w", err)
	}
	return s.sendIQ(ctx, c.b, iq.Id, iq.To, data, true, iq.Type == stanza.IQTypeGet)
}

// SendIQRaw sends an IQ of type typ ("get" or "set") to 'to' ("" for the
// own account) with payloadXML as its child, verbatim (it must be
// well-formed XML; namespaces are the caller's), and waits like SendIQ.
// The answer is decoded with the stanza package's type registry, so a
// payload type registered there (e.g. a raw-capturing pubsub type) gets
// the server's exact bytes.
func (s *Session) SendIQRaw(ctx context.Context, to, typ, payloadXML string) (*stanza.IQ, error) {
	if typ != string(stanza.IQTypeGet) && typ != string(stanza.IQTypeSet) {
		return nil, fmt.Errorf("send iq: type %q, want get or set", typ)
	}
	if err := checkWellFormed(payloadXML); err != nil {
		return nil, fmt.Errorf("send iq: payload: %w", err)
	}
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	id := s.newID()
	return s.sendIQ(ctx, c.b, id, to, []byte(iqXML(typ, id, to, payloadXML)), true, typ == string(stanza.IQTypeGet))
}

// sendIQ registers the request, writes it on the binding and waits for
// the answer. A lost connection does not end the wait when the binding
// is resumable: the request, or its answer, comes with the resumed
// stream; the wait ends with the binding (ErrDisconnected).
func (s *Session) sendIQ(ctx context.Context, b *binding, id, to string, data []byte, count, get bool) (*stanza.IQ, error) {
	p, err := s.tracker.register(id, to, data, get, s.resumptions.Load())
	if err != nil {
		return nil, err
	}
	defer s.tracker.forget(id, p)
	if err := b.send(ctx, data); err != nil {
		return nil, fmt.Errorf("send iq %s: %w", id, err)
	}
	if count {
		s.iqsSent.Add(1)
	}
	select {
	case res := <-p.reply:
		return iqAnswer(res)
	case <-ctx.Done():
		return nil, fmt.Errorf("iq %s to %q: %w", id, to, ctx.Err())
	case <-b.ended:
		select {
		case res := <-p.reply: // answered just before the end
			return iqAnswer(res)
		default:
			return nil, fmt.Errorf("iq %s to %q: %w", id, to, ErrDisconnected)
		}
	}
}

// iqAnswer turns an error answer into an *IQError.
func iqAnswer(res *stanza.IQ) (*stanza.IQ, error) {
	if res.Type == stanza.IQTypeError {
		return nil, newIQError(res)
	}
	return res, nil
}

// Send sends a stanza (message, presence, or an IQ whose answer the caller
// does not wait for) encoded by encoding/xml.
func (s *Session) Send(ctx context.Context, p stanza.Packet) error {
	data, err := xml.Marshal(p)
	if err != nil {
		return fmt.Errorf("send %s: encode: %w", p.Name(), err)
	}
	if err := checkStanza(string(data)); err != nil {
		return fmt.Errorf("send %s: %w", p.Name(), err)
	}
	return s.write(ctx, data)
}

// SendRaw sends one serialised stanza (a message, presence or iq element)
// verbatim. It is checked first: a malformed element would make the
// server close the stream, and stream management counts stanzas one by
// one.
func (s *Session) SendRaw(ctx context.Context, rawXML string) error {
	if err := checkStanza(rawXML); err != nil {
		return fmt.Errorf("send raw xml: %w", err)
	}
	return s.write(ctx, []byte(rawXML))
}

// write sends one stanza on the live connection's binding.
func (s *Session) write(ctx context.Context, data []byte) error {
	c := s.current()
	if c == nil {
		return ErrNotConnected
	}
	return c.b.send(ctx, data)
}

// checkStanza reports whether s is exactly one well-formed stanza: a
// message, presence or iq element (in the stream's namespace), with
// nothing but whitespace around it.
func checkStanza(s string) error {
	if err := checkWellFormed(s); err != nil {
		return err
	}
	dec := xml.NewDecoder(strings.NewReader(s))
	depth, elements := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("malformed xml: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				elements++
				if elements > 1 {
					return errors.New("more than one top-level element: send one stanza per call")
				}
				if n := tok.Name; n.Space != "" && n.Space != nsClient || n.Local != "message" && n.Local != "presence" && n.Local != "iq" {
					return fmt.Errorf("<%s xmlns=%q> is not a stanza (message, presence or iq)", n.Local, n.Space)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(tok)) > 0 {
				return errors.New("text outside the stanza")
			}
		}
	}
	if elements == 0 {
		return errors.New("no stanza")
	}
	return nil
}

// checkWellFormed reports whether s is a sequence of complete,
// well-formed XML elements (and character data), without a declaration.
func checkWellFormed(s string) error {
	dec := xml.NewDecoder(bytes.NewReader([]byte(s)))
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if depth != 0 {
				return errors.New("unclosed element")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("malformed xml: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
			if depth < 0 {
				return errors.New("unbalanced end element")
			}
		case xml.ProcInst:
			return errors.New("processing instructions are not allowed")
		case xml.Directive:
			return errors.New("directives are not allowed")
		case xml.CharData:
			_ = tok
		}
	}
}
