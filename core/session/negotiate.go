package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"gosrc.io/xmpp/stanza"
)

// alpnXMPPClient is the ALPN protocol of direct TLS c2s (XEP-0368).
const alpnXMPPClient = "xmpp-client"

// negotiated is a stream ready for stanzas.
type negotiated struct {
	st    *stream
	bound string // the bound full JID ("" when resumed)
	info  ConnInfo
	// features are those of the last stream (after SASL).
	features *streamFeatures
	// sm is the server's <enabled/> on a fresh binding (nil: no stream
	// management).
	sm *smEnabled
	// resumed is the server's <resumed/> when the stream resumed the
	// requested binding (nil otherwise).
	resumed *smResumed
	// refused says why a requested resumption did not happen (the stream
	// then carries a fresh binding).
	refused error
}

// negotiate opens and negotiates a stream on st, a fresh connection to ep:
// TLS (direct, or STARTTLS, which the server must offer), SASL, then
// either the resumption of a binding (XEP-0198, when r asks for it and
// the server offers stream management) or resource binding, the legacy
// session where the server requires it, and stream management where the
// server offers it. A refused resumption goes on with a fresh binding on
// the same stream. The caller bounds the I/O with ctx
// (stream.deadlineFrom) and closes st on error.
func negotiate(ctx context.Context, s *settings, st *stream, ep Endpoint, r *resumeRequest) (*negotiated, error) {
	if ep.DirectTLS {
		cfg := s.tls.Clone()
		cfg.NextProtos = []string{alpnXMPPClient}
		if err := st.encrypt(ctx, cfg); err != nil {
			return nil, err
		}
		if p := st.tlsState.NegotiatedProtocol; p != "" && p != alpnXMPPClient {
			return nil, fmt.Errorf("direct tls: the server chose the ALPN protocol %q, not %s", p, alpnXMPPClient)
		}
	}
	if err := st.open(); err != nil {
		return nil, err
	}
	features, err := st.features()
	if err != nil {
		return nil, err
	}
	if st.tlsState == nil {
		if features.StartTLS == nil {
			return nil, &permanentError{fmt.Errorf("%s: %w", ep.Addr(), ErrNoTLS)}
		}
		if err := starttls(ctx, s, st); err != nil {
			return nil, err
		}
		if err := st.open(); err != nil {
			return nil, fmt.Errorf("restart stream after starttls: %w", err)
		}
		if features, err = st.features(); err != nil {
			return nil, err
		}
	}
	if s.InsecureSkipVerify {
		s.Log.Warn("xmpp: TLS certificate verification is disabled", "jid", s.account.String())
	}
	info := ConnInfo{
		TLSVersion:  tls.VersionName(st.tlsState.Version),
		CipherSuite: tls.CipherSuiteName(st.tlsState.CipherSuite),
	}
	auth, err := authenticate(st, s, features)
	if err != nil {
		return nil, err
	}
	info.Mechanism, info.ChannelBinding = auth.mechanism, auth.channelBinding
	if err := st.open(); err != nil {
		return nil, fmt.Errorf("restart stream after sasl: %w", err)
	}
	if features, err = st.features(); err != nil {
		return nil, err
	}
	n := &negotiated{st: st, info: info, features: features}
	if r != nil {
		if features.SM == nil {
			n.refused = errors.New("the server no longer offers stream management")
		} else {
			res, failed, err := resume(st, r)
			if err != nil {
				return nil, err
			}
			if res != nil {
				n.resumed = res
				return n, nil
			}
			n.refused = failed
		}
		if r.beforeFresh != nil {
			if err := r.beforeFresh(ctx); err != nil {
				return nil, err
			}
		}
	}
	if features.Bind == nil {
		return nil, errors.New("server offers no resource binding")
	}
	if n.bound, err = bind(st, s.Resource); err != nil {
		return nil, err
	}
	// RFC 3921 sessions are obsolete (RFC 6121); establish one only when
	// the server does not mark it optional.
	if features.Session != nil && features.Session.Optional == nil {
		if _, err := negotiationIQ(st, "session", "<session xmlns='"+nsSession+"'/>"); err != nil {
			return nil, fmt.Errorf("establish session: %w", err)
		}
	}
	if features.SM != nil {
		if n.sm, err = enableSM(st); err != nil {
			return nil, err
		}
		if n.sm == nil {
			s.Log.Info("xmpp: the server refused stream management", "jid", s.account.String())
		}
	}
	return n, nil
}

// enableSM enables stream management with resumption right after binding
// (XEP-0198 §3) and reads the answer inline: nil (no error) when the
// server answers <failed/>. Stanzas are counted from the answer on.
func enableSM(st *stream) (*smEnabled, error) {
	if err := st.write([]byte(smEnableXML)); err != nil {
		return nil, err
	}
	for {
		p, err := st.next()
		if err != nil {
			return nil, fmt.Errorf("enable stream management: read answer: %w", err)
		}
		switch p := p.(type) {
		case *smEnabled:
			return p, nil
		case *smFailed:
			return nil, nil
		case stanza.StreamError:
			return nil, streamError(p)
		case stanza.StreamClosePacket:
			return nil, ErrStreamClosed
		}
	}
}

// resume asks the server to resume r's binding (XEP-0198 §5) and reads
// the answer: res when resumed, else failed says why the server refused
// (the stream may then bind afresh).
func resume(st *stream, r *resumeRequest) (res *smResumed, failed error, err error) {
	if err := st.write([]byte(smResumeXML(r.id, r.h))); err != nil {
		return nil, nil, err
	}
	for {
		p, err := st.next()
		if err != nil {
			return nil, nil, fmt.Errorf("resume stream: read answer: %w", err)
		}
		switch p := p.(type) {
		case *smResumed:
			if p.previd != "" && p.previd != r.id {
				return nil, nil, fmt.Errorf("resume stream: the server resumed %q, not %q", p.previd, r.id)
			}
			return p, nil, nil
		case *smFailed:
			return nil, fmt.Errorf("the server refused the resumption: %s", p.condition), nil
		case stanza.StreamError:
			return nil, nil, streamError(p)
		case stanza.StreamClosePacket:
			return nil, nil, ErrStreamClosed
		}
	}
}

// starttls asks for TLS and runs the handshake (RFC 6120 §5.4).
func starttls(ctx context.Context, s *settings, st *stream) error {
	if err := st.write([]byte("<starttls xmlns='" + nsTLS + "'/>")); err != nil {
		return err
	}
	start, err := nextStart(st.dec)
	if err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if err := st.dec.Skip(); err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if start.Name.Space != nsTLS || start.Name.Local != "proceed" {
		return fmt.Errorf("starttls refused by the server: <%s>", start.Name.Local)
	}
	return st.encrypt(ctx, s.tls)
}

// authResult is the outcome of a SASL exchange.
type authResult struct {
	mechanism      string
	channelBinding string // "" without
}

// authenticate runs the SASL exchange (RFC 6120 §6) on the encrypted
// stream with the strongest mechanism both sides offer (see chooseSASL).
func authenticate(st *stream, s *settings, features *streamFeatures) (authResult, error) {
	offered := features.mechanisms()
	choice := chooseSASL(offered, features.channelBindings(), st.tlsState)
	if choice.mechanism == "" {
		return authResult{}, &AuthError{Condition: "no-mechanism", Text: "server offers " + strings.Join(offered, ", ")}
	}
	mech := choice.mechanism
	conv, err := newSASLConv(choice, s.account.Local, s.Password)
	if err != nil {
		return authResult{}, err
	}
	initial, err := conv.Step(nil)
	if err != nil {
		return authResult{}, &AuthError{Mechanism: mech, Condition: "malformed-request", Text: err.Error()}
	}
	if err := st.write([]byte("<auth xmlns='" + nsSASL + "' mechanism='" + mech + "'>" + encodeBase64(initial) + "</auth>")); err != nil {
		return authResult{}, err
	}
	for {
		start, err := nextStart(st.dec)
		if err != nil {
			return authResult{}, fmt.Errorf("sasl %s: %w", mech, err)
		}
		el, err := decodeSASL(st.dec, start)
		if err != nil {
			return authResult{}, fmt.Errorf("sasl %s: %w", mech, err)
		}
		switch el.Local {
		case "failure":
			return authResult{}, &AuthError{Mechanism: mech, Condition: el.Condition, Text: el.Text}
		case "challenge":
			resp, err := conv.Step(el.Data)
			if err != nil {
				_ = st.write([]byte("<abort xmlns='" + nsSASL + "'/>"))
				return authResult{}, &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: err.Error()}
			}
			if err := st.write([]byte("<response xmlns='" + nsSASL + "'>" + encodeBase64(resp) + "</response>")); err != nil {
				return authResult{}, err
			}
		case "success":
			if len(el.Data) > 0 {
				if _, err := conv.Step(el.Data); err != nil {
					return authResult{}, &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: err.Error()}
				}
			}
			if !conv.Verified() {
				return authResult{}, &AuthError{Mechanism: mech, Condition: "invalid-server-signature", Text: "the server did not prove it knows the credentials"}
			}
			s.Log.Debug("xmpp: authenticated", "jid", s.account.String(), "mechanism", mech, "channel_binding", choice.cb.Type)
			return authResult{mechanism: mech, channelBinding: string(choice.cb.Type)}, nil
		}
	}
}

// bind binds the resource and returns the full JID.
func bind(st *stream, resource string) (string, error) {
	res := ""
	if resource != "" {
		res = "<resource>" + escapeText(resource) + "</resource>"
	}
	iq, err := negotiationIQ(st, "bind", "<bind xmlns='"+nsBind+"'>"+res+"</bind>")
	if err != nil {
		return "", fmt.Errorf("bind resource: %w", err)
	}
	b, ok := iq.Payload.(*stanza.Bind)
	if !ok || b.Jid == "" {
		return "", errors.New("bind resource: the answer holds no jid")
	}
	return b.Jid, nil
}

// negotiationIQ sends an IQ set during negotiation and waits for its answer
// (nothing else may arrive before it).
func negotiationIQ(st *stream, id, payload string) (*stanza.IQ, error) {
	if err := st.write([]byte("<iq type='set' id='" + id + "'>" + payload + "</iq>")); err != nil {
		return nil, err
	}
	for {
		p, err := st.next()
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
