package session

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"gosrc.io/xmpp/stanza"
)

// stream is the XML stream of one connection: it owns the network
// connection (TCP, then TLS), the decoder that reads it and the writing of
// bytes to it. Every byte the session exchanges with the server goes
// through a stream: elements are read with next (stanza.NextPacket on the
// decoder) and written with write, one element per call. Those two calls
// are where stream management (XEP-0198) counts stanzas.
//
// A stream is used by one goroutine at a time during negotiation, then by
// the connection's receive loop (reads) and its serialised writers
// (conn.write); close may be called from any goroutine.
type stream struct {
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or the TLS connection over it
	dec  *xml.Decoder

	// domain is the stream's 'to' (the account's canonical domain); from
	// is its 'from' once the stream is encrypted (RFC 6120 §4.7.1).
	domain, from string
	// tlsState is the state of the TLS connection, nil before TLS.
	tlsState *tls.ConnectionState
	// id is the stream id of the server's last stream header.
	id string

	// handshake runs a TLS client handshake over raw; tests replace it.
	handshake func(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, *tls.ConnectionState, error)
}

// newStream wraps a connected socket.
func newStream(raw net.Conn, domain, from string) *stream {
	return &stream{raw: raw, conn: raw, domain: domain, from: from, handshake: tlsHandshake}
}

// tlsHandshake is the real TLS client handshake.
func tlsHandshake(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, *tls.ConnectionState, error) {
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, nil, err
	}
	st := c.ConnectionState()
	return c, &st, nil
}

// encrypt runs the TLS handshake on the connection (direct TLS, or after
// <proceed/>) and reads the stream from the TLS layer from then on.
func (st *stream) encrypt(ctx context.Context, cfg *tls.Config) error {
	c, state, err := st.handshake(ctx, st.raw, cfg)
	if err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	st.conn, st.tlsState, st.dec = c, state, nil
	return nil
}

// open sends a stream header and reads the server's (RFC 6120 §4.2, §4.7):
// the first one on a connection and each restart after STARTTLS and SASL.
// The decoder is fresh for every stream.
func (st *stream) open() error {
	header := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='" + nsStream +
		"' to='" + escapeAttr(st.domain) + "'"
	if st.tlsState != nil && st.from != "" {
		header += " from='" + escapeAttr(st.from) + "'"
	}
	header += " version='1.0' xml:lang='en'>"
	if err := st.write([]byte(header)); err != nil {
		return err
	}
	st.dec = xml.NewDecoder(st.conn)
	for {
		tok, err := st.dec.Token()
		if err != nil {
			return fmt.Errorf("read stream header: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Space != nsStream || tok.Name.Local != "stream" {
				return fmt.Errorf("read stream header: got <%s xmlns=%q>, not a stream", tok.Name.Local, tok.Name.Space)
			}
			st.id = ""
			version := ""
			for _, a := range tok.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "id":
					st.id = a.Value
				case a.Name.Space == "" && a.Name.Local == "version":
					version = a.Value
				}
			}
			if major, _, _ := strings.Cut(version, "."); major == "" || major == "0" {
				return fmt.Errorf("read stream header: the server speaks a pre-1.0 XMPP stream (version %q)", version)
			}
			return nil
		case xml.ProcInst, xml.CharData, xml.Comment:
			// the XML declaration, whitespace
		default:
			return fmt.Errorf("read stream header: unexpected %T", tok)
		}
	}
}

// features reads <stream:features/>.
func (st *stream) features() (*streamFeatures, error) {
	start, err := nextStart(st.dec)
	if err != nil {
		return nil, fmt.Errorf("read stream features: %w", err)
	}
	if start.Name.Space != nsStream || start.Name.Local != "features" {
		return nil, fmt.Errorf("read stream features: got <%s xmlns=%q>", start.Name.Local, start.Name.Space)
	}
	var f streamFeatures
	if err := st.dec.DecodeElement(&f, &start); err != nil {
		return nil, fmt.Errorf("decode stream features: %w", err)
	}
	return &f, nil
}

// next reads the next top-level element, in order (the receive loop's
// only read): a stanza (stanza.Message, stanza.Presence, *stanza.IQ,
// decoded as stanza.NextPacket does), a stream management element
// (*smEnabled, *smResumed, *smFailed, *smRequest, *smAnswer), a
// stanza.StreamError, or stanza.StreamClosePacket for the stream's end.
// Any other top-level element is skipped and returned as *otherElement.
// A read error is returned as the reader's error (a deadline stays
// recognisable).
func (st *stream) next() (stanza.Packet, error) {
	for {
		tok, err := st.dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			if tok.Name.Space == nsStream && tok.Name.Local == "stream" {
				return stanza.StreamClosePacket{}, nil
			}
		case xml.StartElement:
			return decodeTopLevel(st.dec, tok)
		}
	}
}

// decodeTopLevel decodes the top-level element that start begins.
func decodeTopLevel(dec *xml.Decoder, start xml.StartElement) (stanza.Packet, error) {
	switch start.Name.Space {
	case nsClient:
		switch start.Name.Local {
		case "message":
			var m stanza.Message
			err := dec.DecodeElement(&m, &start)
			return m, err
		case "presence":
			var p stanza.Presence
			err := dec.DecodeElement(&p, &start)
			return p, err
		case "iq":
			iq := &stanza.IQ{}
			err := dec.DecodeElement(iq, &start)
			return iq, err
		}
	case nsStream:
		if start.Name.Local == "error" {
			var se stanza.StreamError
			err := dec.DecodeElement(&se, &start)
			return se, err
		}
	case nsSM:
		return decodeSM(dec, start)
	}
	if err := dec.Skip(); err != nil {
		return nil, err
	}
	return &otherElement{name: start.Name}, nil
}

// otherElement is a top-level element the session does not know (skipped).
type otherElement struct{ name xml.Name }

func (o *otherElement) Name() string { return "<" + o.name.Local + " xmlns='" + o.name.Space + "'>" }

// write sends serialised XML (one element, or a stream header) in one
// Write, so that concurrent writers (serialised by the caller) never
// interleave.
func (st *stream) write(data []byte) error {
	if _, err := st.conn.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// writeWithin writes data with a write deadline of d from now.
func (st *stream) writeWithin(data []byte, d time.Duration) error {
	_ = st.raw.SetWriteDeadline(time.Now().Add(d))
	return st.write(data)
}

// deadlineFrom makes ctx bound every read and write of the stream until
// the returned function is called: the connection gets ctx's deadline,
// and when ctx ends before, a deadline in the past that fails the pending
// I/O at once. The returned function clears the deadline; it reports
// whether ctx ended first (then the stream is unusable).
func (st *stream) deadlineFrom(ctx context.Context) (release func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = st.raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.raw.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !stop() {
			return true
		}
		_ = st.raw.SetDeadline(time.Time{})
		return false
	}
}

// close ends the stream: </stream:stream> (written within a second, not
// waiting for the server's own end), then the connection is closed (on
// TLS with close_notify).
func (st *stream) close() {
	_ = st.writeWithin([]byte("</stream:stream>"), time.Second)
	_ = st.conn.Close()
}

// abort closes the connection without a stream end.
func (st *stream) abort() { _ = st.conn.Close() }

// streamFeatures is <stream:features/> (RFC 6120 §4.3.2), with what the
// session uses: STARTTLS, SASL mechanisms and XEP-0440 channel-binding
// types, resource binding, the legacy session, and stream management
// (XEP-0198, recorded for later).
type streamFeatures struct {
	StartTLS       *featureStartTLS   `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms     *featureMechanisms `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms"`
	ChannelBinding *featureSASLCB     `xml:"urn:xmpp:sasl-cb:0 sasl-channel-binding"`
	Bind           *struct{}          `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	Session        *featureSession    `xml:"urn:ietf:params:xml:ns:xmpp-session session"`
	SM             *struct{}          `xml:"urn:xmpp:sm:3 sm"`
}

type featureStartTLS struct {
	Required *struct{} `xml:"required"`
}

type featureMechanisms struct {
	Mechanism []string `xml:"mechanism"`
}

type featureSASLCB struct {
	ChannelBinding []struct {
		Type string `xml:"type,attr"`
	} `xml:"channel-binding"`
}

type featureSession struct {
	Optional *struct{} `xml:"optional"`
}

// mechanisms lists the offered SASL mechanisms, trimmed.
func (f *streamFeatures) mechanisms() []string {
	if f.Mechanisms == nil {
		return nil
	}
	out := make([]string, 0, len(f.Mechanisms.Mechanism))
	for _, m := range f.Mechanisms.Mechanism {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// channelBindings lists the XEP-0440 channel-binding types the server
// advertises (nil when it advertises none).
func (f *streamFeatures) channelBindings() []string {
	if f.ChannelBinding == nil {
		return nil
	}
	var out []string
	for _, c := range f.ChannelBinding.ChannelBinding {
		if t := strings.TrimSpace(c.Type); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// nextStart returns the next top-level element's start, turning a stream
// error or the stream's end into errors.
func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
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
