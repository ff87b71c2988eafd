package testsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// --- a minimal XMPP client: TCP, stream, STARTTLS, SASL PLAIN, bind ---

const (
	nsTLS  = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind = "urn:ietf:params:xml:ns:xmpp-bind"
)

type streamFeatures struct {
	StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms *struct {
		Mechanism []string `xml:"mechanism"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms"`
	Bind *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
}

type xmppConn struct {
	net.Conn
	dec *xml.Decoder
	jid string
}

// openStream sends a stream header on the current connection and reads the
// server's header and features.
func (c *xmppConn) openStream(domain string) (streamFeatures, error) {
	var f streamFeatures
	c.dec = xml.NewDecoder(c.Conn)
	if _, err := io.WriteString(c.Conn, streamOpen(domain)); err != nil {
		return f, err
	}
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return f, fmt.Errorf("read stream header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return f, fmt.Errorf("got <%s>, want <stream:stream>", se.Name.Local)
			}
			break
		}
	}
	se, err := c.next()
	if err != nil {
		return f, err
	}
	if se.Name.Local != "features" {
		return f, fmt.Errorf("got <%s>, want <stream:features>", se.Name.Local)
	}
	return f, c.dec.DecodeElement(&f, &se)
}

// next returns the next top-level element's start.
func (c *xmppConn) next() (xml.StartElement, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return tok, nil
		case xml.EndElement:
			return xml.StartElement{}, fmt.Errorf("stream closed by the server")
		}
	}
}

// streamEnding is what a client saw when its stream ended.
type streamEnding struct {
	streamEnd   bool   // </stream:stream> was read
	streamError string // the condition of a <stream:error>, if any
}

// readToEnd reads until the stream ends or reading fails.
func (c *xmppConn) readToEnd() (streamEnding, error) {
	var e streamEnding
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return e, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			var el struct {
				Inner []struct {
					XMLName xml.Name
				} `xml:",any"`
			}
			if err := c.dec.DecodeElement(&el, &tok); err != nil {
				return e, err
			}
			if tok.Name.Local == "error" && len(el.Inner) > 0 {
				e.streamError = el.Inner[0].XMLName.Local
			}
		case xml.EndElement:
			e.streamEnd = true
			return e, nil
		}
	}
}

// discoInfo queries disco#info of jid and returns its identities as
// "category/type".
func (c *xmppConn) discoInfo(jid string) ([]string, error) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "<iq type='get' id='disco1' to='"+jid+
		"'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"); err != nil {
		return nil, err
	}
	for {
		se, err := c.next()
		if err != nil {
			return nil, err
		}
		var iq struct {
			ID         string `xml:"id,attr"`
			Type       string `xml:"type,attr"`
			Identities []struct {
				Category string `xml:"category,attr"`
				Type     string `xml:"type,attr"`
			} `xml:"http://jabber.org/protocol/disco#info query>identity"`
		}
		if err := c.dec.DecodeElement(&iq, &se); err != nil {
			return nil, err
		}
		if se.Name.Local != "iq" || iq.ID != "disco1" {
			continue // presence, messages, …
		}
		if iq.Type != "result" {
			return nil, fmt.Errorf("disco#info of %s: iq type %q", jid, iq.Type)
		}
		var out []string
		for _, id := range iq.Identities {
			out = append(out, id.Category+"/"+id.Type)
		}
		return out, nil
	}
}

// dialTLS connects, negotiates STARTTLS (trusting only the server's
// certificate) and returns the SASL mechanisms offered.
func dialTLS(ctx context.Context, addr string, srv *XMPPServer) (*xmppConn, []string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &xmppConn{Conn: conn}
	fail := func(err error) (*xmppConn, []string, error) {
		conn.Close()
		return nil, nil, err
	}
	f, err := c.openStream(srv.Domain)
	if err != nil {
		return fail(err)
	}
	if f.StartTLS == nil {
		return fail(errors.New("no starttls feature"))
	}
	if _, err := io.WriteString(conn, "<starttls xmlns='"+nsTLS+"'/>"); err != nil {
		return fail(err)
	}
	se, err := c.next()
	if err != nil || se.Name.Local != "proceed" {
		return fail(fmt.Errorf("starttls: got <%s>, %v", se.Name.Local, err))
	}
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		return fail(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fail(errors.New("bad CA file"))
	}
	tc := tls.Client(conn, &tls.Config{ServerName: srv.Domain, RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("tls handshake: %w", err))
	}
	c.Conn = tc
	if f, err = c.openStream(srv.Domain); err != nil {
		return fail(err)
	}
	if f.Mechanisms == nil {
		return fail(errors.New("no SASL mechanisms after STARTTLS"))
	}
	return c, f.Mechanisms.Mechanism, nil
}

// login connects to addr and authenticates with SASL PLAIN, then binds
// resource.
func login(ctx context.Context, addr string, srv *XMPPServer, user, password, resource string) (*xmppConn, error) {
	c, mechs, err := dialTLS(ctx, addr, srv)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if !slices.Contains(mechs, "PLAIN") {
		return nil, fmt.Errorf("PLAIN not offered (%v)", mechs)
	}
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	if _, err := io.WriteString(c, "<auth xmlns='"+nsSASL+"' mechanism='PLAIN'>"+creds+"</auth>"); err != nil {
		return nil, err
	}
	se, err := c.next()
	if err != nil {
		return nil, err
	}
	if err := c.dec.Skip(); err != nil {
		return nil, err
	}
	if se.Name.Local != "success" {
		return nil, fmt.Errorf("authentication: <%s>", se.Name.Local)
	}
	f, err := c.openStream(srv.Domain)
	if err != nil {
		return nil, err
	}
	if f.Bind == nil {
		return nil, errors.New("no bind feature")
	}
	if _, err := io.WriteString(c, "<iq type='set' id='bind1'><bind xmlns='"+nsBind+"'><resource>"+
		resource+"</resource></bind></iq>"); err != nil {
		return nil, err
	}
	se, err = c.next()
	if err != nil {
		return nil, err
	}
	var iq struct {
		Type string `xml:"type,attr"`
		JID  string `xml:"urn:ietf:params:xml:ns:xmpp-bind bind>jid"`
	}
	if err := c.dec.DecodeElement(&iq, &se); err != nil {
		return nil, err
	}
	if iq.Type != "result" || iq.JID == "" {
		return nil, fmt.Errorf("bind: iq type %q, jid %q", iq.Type, iq.JID)
	}
	c.jid = iq.JID
	_ = c.SetDeadline(time.Time{})
	ok = true
	return c, nil
}

// RawClient is an independent XMPP client for tests: STARTTLS, SASL PLAIN,
// bind, then raw stanzas written as given. Tests use it where the daemon's
// own client would refuse or reshape what another client may send (a
// hostile publisher, for instance). It sends no presence. Its methods are
// safe for one goroutine at a time (mu serialises them).
type RawClient struct {
	mu   sync.Mutex
	c    *xmppConn
	next int
}

// RawLogin logs user in on s with resource.
func (s *XMPPServer) RawLogin(ctx context.Context, user, password, resource string) (*RawClient, error) {
	c, err := login(ctx, s.Addr(), s, user, password, resource)
	if err != nil {
		return nil, fmt.Errorf("raw login of %s: %w", user, err)
	}
	return &RawClient{c: c}, nil
}

// JID is the bound full JID.
func (r *RawClient) JID() string { return r.c.jid }

// Close ends the stream and the connection.
func (r *RawClient) Close() error {
	io.WriteString(r.c, "</stream:stream>")
	return r.c.Close()
}

// IQError is an IQ answered with type='error'; Condition is the first
// child of <error> (e.g. "not-acceptable"), Raw the whole error element.
type IQError struct {
	Condition string
	Raw       string
}

func (e *IQError) Error() string { return "iq error: " + e.Condition + ": " + e.Raw }

// IQ sends <iq type=typ to=to>inner</iq> and waits for its answer, skipping
// other stanzas; it returns the inner XML of a result, or an *IQError.
func (r *RawClient) IQ(ctx context.Context, typ, to, inner string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	id := "raw" + strconv.Itoa(r.next)
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	_ = r.c.SetDeadline(deadline)
	defer r.c.SetDeadline(time.Time{})
	toAttr := ""
	if to != "" {
		toAttr = " to='" + xmlAttr(to) + "'"
	}
	if _, err := io.WriteString(r.c, "<iq type='"+typ+"' id='"+id+"'"+toAttr+">"+inner+"</iq>"); err != nil {
		return "", err
	}
	for {
		se, err := r.c.next()
		if err != nil {
			return "", err
		}
		if se.Name.Local != "iq" || attrOf(se, "id") != id {
			if err := r.c.dec.Skip(); err != nil {
				return "", err
			}
			continue
		}
		var body struct {
			Inner string `xml:",innerxml"`
			Error *struct {
				Inner string `xml:",innerxml"`
				Conds []struct {
					XMLName xml.Name
				} `xml:",any"`
			} `xml:"error"`
		}
		if err := r.c.dec.DecodeElement(&body, &se); err != nil {
			return "", err
		}
		if attrOf(se, "type") == "error" {
			e := &IQError{Raw: body.Inner}
			if body.Error != nil && len(body.Error.Conds) > 0 {
				e.Condition = body.Error.Conds[0].XMLName.Local
			}
			return "", e
		}
		return body.Inner, nil
	}
}

// CreateNode creates node on service (empty: the client's own PEP) with
// the given configuration (var → value, e.g. pubsub#access_model=open).
func (r *RawClient) CreateNode(ctx context.Context, service, node string, config map[string]string) error {
	var b strings.Builder
	b.WriteString("<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='" + xmlAttr(node) + "'/>")
	if len(config) > 0 {
		b.WriteString("<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>")
		keys := make([]string, 0, len(config))
		for k := range config {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString("<field var='" + xmlAttr(k) + "'><value>" + xmlText(config[k]) + "</value></field>")
		}
		b.WriteString("</x></configure>")
	}
	b.WriteString("</pubsub>")
	_, err := r.IQ(ctx, "set", service, b.String())
	return err
}

// Publish publishes payload (raw XML, sent as is) as item id on node of
// service (empty: the client's own PEP).
func (r *RawClient) Publish(ctx context.Context, service, node, id, payload string) error {
	_, err := r.IQ(ctx, "set", service, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='"+xmlAttr(node)+
		"'><item id='"+xmlAttr(id)+"'>"+payload+"</item></publish></pubsub>")
	return err
}

func attrOf(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

var (
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", "'", "&apos;", `"`, "&quot;")
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
)

func xmlAttr(s string) string { return attrEscaper.Replace(s) }
func xmlText(s string) string { return textEscaper.Replace(s) }
