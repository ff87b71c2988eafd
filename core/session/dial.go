package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ConnInfo describes the live stream of a session: where it went and what
// it negotiated.
type ConnInfo struct {
	// Endpoint is the endpoint the stream was established with.
	Endpoint Endpoint
	// Address is the remote IP address and port of the connection.
	Address string
	// TLSVersion is e.g. "TLS 1.3"; CipherSuite the suite's name.
	TLSVersion, CipherSuite string
	// Mechanism is the SASL mechanism that authenticated the stream (e.g.
	// "SCRAM-SHA-256-PLUS").
	Mechanism string
	// ChannelBinding is the channel-binding type of a -PLUS mechanism
	// ("tls-unique", "tls-exporter", "tls-server-end-point"), "" without.
	ChannelBinding string
	// JID is the bound full JID.
	JID string
	// Since is when the stream was established.
	Since time.Time
	// Failed are the endpoints tried before this one, with their errors.
	Failed []Attempt
	// StreamManagement: XEP-0198 is enabled on the binding (stanzas are
	// acknowledged); Resumable: the server allows resuming it after a
	// lost connection.
	StreamManagement, Resumable bool
	// Resumed: this connection resumed the binding of an earlier one (the
	// JID is the same; Since is this connection's).
	Resumed bool
}

// dialer opens TCP connections; tests replace it.
type dialer func(ctx context.Context, network, address string) (net.Conn, error)

// netDialer is the real dialer: host names are resolved with r to their
// IPv6 and IPv4 addresses, which are tried Happy Eyeballs style (RFC 8305
// as net.Dialer does it: the first family first, the other 300 ms later
// if no connection is up yet, in parallel).
func netDialer(r *net.Resolver) dialer {
	d := &net.Dialer{Resolver: r}
	return d.DialContext
}

// establish finds the endpoints (the configured one, or discovery) and
// tries each in turn until one gives a negotiated stream. A SASL failure
// stops at once (the credentials are the same everywhere); other failures
// move on to the next endpoint, and when none is left the error is a
// *ConnectError listing them all. With r (a resumption), r.prefer are
// tried first, before any DNS lookup.
func (s *Session) establish(ctx context.Context, r *resumeRequest) (*negotiated, error) {
	ce := &ConnectError{Domain: s.cfg.account.Domain}
	tried := map[Endpoint]bool{}
	try := func(endpoints []Endpoint) (*negotiated, error) {
		for _, ep := range endpoints {
			key := ep
			key.Origin = ""
			if tried[key] {
				continue
			}
			tried[key] = true
			n, err := s.attempt(ctx, ep, r)
			if err == nil {
				n.info.Failed = ce.Attempts
				return n, nil
			}
			var auth *AuthError
			var hook *hookError
			if errors.As(err, &auth) || errors.As(err, &hook) {
				return nil, err
			}
			ce.Attempts = append(ce.Attempts, Attempt{Endpoint: ep, Err: err})
			if ctx.Err() != nil {
				return nil, ce
			}
			if len(endpoints) > 1 {
				s.log.Info("xmpp: endpoint failed, trying the next one", "endpoint", ep.String(), "err", err)
			}
		}
		return nil, nil
	}
	if r != nil {
		if n, err := try(r.prefer); n != nil || err != nil {
			return n, err
		}
	}
	var endpoints []Endpoint
	if s.cfg.configured != nil {
		endpoints = []Endpoint{*s.cfg.configured}
	} else {
		d, err := discover(ctx, s.resolver, s.cfg.asciiDomain, s.cfg.namedServer)
		if err != nil {
			if errors.Is(err, ErrNoService) {
				return nil, &permanentError{err}
			}
			if len(ce.Attempts) > 0 {
				ce.Notes = append(ce.Notes, err.Error())
				return nil, ce
			}
			return nil, err
		}
		endpoints, ce.Notes = d.endpoints, d.notes
		s.log.Debug("xmpp: discovered endpoints", "endpoints", fmt.Sprint(endpoints), "notes", fmt.Sprint(d.notes))
	}
	if n, err := try(endpoints); n != nil || err != nil {
		return n, err
	}
	return nil, ce
}

// attempt connects to one endpoint and negotiates a stream (resuming r's
// binding when r is set), within Config.Timeout.
func (s *Session) attempt(ctx context.Context, ep Endpoint, r *resumeRequest) (*negotiated, error) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	raw, err := s.dial(actx, "tcp", ep.Addr())
	if err != nil {
		return nil, timeoutCause(ctx, actx, s.cfg.Timeout, s.cfg.namedServer(err))
	}
	st := newStream(raw, s.cfg.account.Domain, s.cfg.account.String())
	if s.handshake != nil {
		st.handshake = s.handshake
	}
	release := st.deadlineFrom(actx)
	n, err := negotiate(actx, s.cfg, st, ep, r)
	if release() && err == nil {
		err = errors.New("negotiation interrupted")
	}
	if err != nil {
		// A resumption attempt never ends with a stream end: the server
		// may have resumed the binding on this stream already, and a
		// stream end would end it.
		if st.dec != nil && r == nil {
			st.close()
		} else {
			st.abort()
		}
		return nil, timeoutCause(ctx, actx, s.cfg.Timeout, err)
	}
	n.info.Endpoint = ep
	n.info.Address = raw.RemoteAddr().String()
	return n, nil
}

// namedServer makes a DNS error name the configured DNS server: the Go
// resolver names the system's (from resolv.conf) even when its Dial goes
// elsewhere. The error is the session's own, fresh from its lookup.
func (s *settings) namedServer(err error) error {
	var dnsErr *net.DNSError
	if s.dnsServer != "" && errors.As(err, &dnsErr) {
		dnsErr.Server = s.dnsServer
	}
	return err
}

// timeoutCause says when an attempt's error comes from its context: the
// caller's (Stop, Start's ctx) or the attempt's own timeout.
func timeoutCause(outer, attempt context.Context, timeout time.Duration, err error) error {
	switch {
	case outer.Err() != nil:
		return fmt.Errorf("%w: %w", context.Cause(outer), err)
	case attempt.Err() != nil:
		return fmt.Errorf("no answer within %s: %w", timeout, err)
	}
	return err
}
