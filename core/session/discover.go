package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Origins of an endpoint: how the session found it.
const (
	// OriginSRVDirectTLS is an _xmpps-client._tcp SRV record (XEP-0368).
	OriginSRVDirectTLS = "srv:_xmpps-client"
	// OriginSRVStartTLS is an _xmpp-client._tcp SRV record (RFC 6120 §3.2.1).
	OriginSRVStartTLS = "srv:_xmpp-client"
	// OriginDomain is the fallback: the JID's domain on 5222 (RFC 6120
	// §3.2.2).
	OriginDomain = "domain"
	// OriginConfigured is connection.host / connection.port.
	OriginConfigured = "configured"
)

// Endpoint is one place a connection attempt goes to.
type Endpoint struct {
	// Host is the host name (an SRV target without its final dot, the
	// JID's domain, or the configured host) or IP address to dial. A name
	// is resolved to its IPv6 and IPv4 addresses, which are raced.
	Host string
	// Port is the TCP port.
	Port int
	// DirectTLS is TLS from the first byte (XEP-0368); false is STARTTLS.
	DirectTLS bool
	// Origin says how the endpoint was found (Origin* constants).
	Origin string
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// Kind is "direct TLS" or "STARTTLS".
func (e Endpoint) Kind() string {
	if e.DirectTLS {
		return "direct TLS"
	}
	return "STARTTLS"
}

// String is "host:port (kind, origin)".
func (e Endpoint) String() string {
	return e.Addr() + " (" + e.Kind() + ", " + e.Origin + ")"
}

// srvResolver looks up SRV records; *net.Resolver is one. Records come
// sorted by priority and shuffled by weight within a priority (RFC 2782),
// as net.Resolver.LookupSRV does.
type srvResolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// newResolver returns the resolver of a DNS server ("host:port"), or the
// system's for "".
func newResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// discovery is the outcome of looking a domain up.
type discovery struct {
	// endpoints are to be tried in order.
	endpoints []Endpoint
	// notes say what the lookups found that is worth reporting when no
	// endpoint works (failed SRV lookups, "." targets).
	notes []string
}

// ErrNoService is returned when the domain's SRV records say that it
// offers no XMPP client service ("." targets for both services).
var ErrNoService = errors.New("the domain publishes no XMPP client service")

// discover finds the endpoints of domain (in A-labels) as RFC 6120 §3.2
// and XEP-0368 say: the _xmpps-client._tcp (direct TLS) and
// _xmpp-client._tcp (STARTTLS) SRV records, merged by priority (a direct
// TLS record first when priorities tie) with each service's weighted
// order kept; then the domain itself on 5222 (the fallback) unless the
// records already hold it. A service whose only record has the target "."
// is decidedly not available (RFC 2782): "." for _xmpp-client also drops
// the fallback, and "." for both fails with ErrNoService. A lookup that
// fails (other than "no such name") is noted and treated as no records.
// fixErr, when not nil, rewrites lookup errors (see settings.namedServer).
func discover(ctx context.Context, r srvResolver, domain string, fixErr func(error) error) (discovery, error) {
	type result struct {
		srvs []*net.SRV
		err  error
	}
	services := []struct {
		name   string
		origin string
		direct bool
	}{{"xmpps-client", OriginSRVDirectTLS, true}, {"xmpp-client", OriginSRVStartTLS, false}}
	results := make([]chan result, len(services))
	for i, svc := range services {
		results[i] = make(chan result, 1)
		go func() {
			_, srvs, err := r.LookupSRV(ctx, svc.name, "tcp", domain)
			if err != nil && fixErr != nil {
				err = fixErr(err)
			}
			results[i] <- result{srvs, err}
		}()
	}
	var d discovery
	lists := make([][]prioritized, len(services))
	noService := make([]bool, len(services))
	for i, svc := range services {
		res := <-results[i]
		name := "_" + svc.name + "._tcp." + domain
		var dnsErr *net.DNSError
		switch {
		case res.err != nil && errors.As(res.err, &dnsErr) && dnsErr.IsNotFound:
			continue
		case res.err != nil && len(res.srvs) == 0:
			if ctx.Err() != nil {
				return d, fmt.Errorf("look up %s: %w", name, ctx.Err())
			}
			d.notes = append(d.notes, fmt.Sprintf("SRV lookup of %s failed: %v", name, res.err))
			continue
		case res.err != nil:
			// Some records were malformed and dropped; use the others.
			d.notes = append(d.notes, fmt.Sprintf("SRV lookup of %s: %v", name, res.err))
		}
		if len(res.srvs) == 1 && isRootTarget(res.srvs[0].Target) {
			noService[i] = true
			d.notes = append(d.notes, fmt.Sprintf("%s has the target \".\": no %s service", name, kindOf(svc.direct)))
			continue
		}
		for _, srv := range res.srvs {
			if isRootTarget(srv.Target) || srv.Port == 0 {
				continue
			}
			lists[i] = append(lists[i], prioritized{
				Endpoint: Endpoint{Host: strings.TrimSuffix(srv.Target, "."), Port: int(srv.Port), DirectTLS: svc.direct, Origin: svc.origin},
				priority: srv.Priority,
			})
		}
		// net.Resolver sorts already; a stable sort keeps its weighted order.
		slices.SortStableFunc(lists[i], func(a, b prioritized) int { return int(a.priority) - int(b.priority) })
	}
	if noService[0] && noService[1] {
		return d, fmt.Errorf("%s: %w (both SRV records have the target \".\")", domain, ErrNoService)
	}
	d.endpoints = mergeByPriority(lists[0], lists[1])
	if !noService[1] && !slices.ContainsFunc(d.endpoints, func(e Endpoint) bool {
		return !e.DirectTLS && e.Port == DefaultPort && strings.EqualFold(e.Host, domain)
	}) {
		d.endpoints = append(d.endpoints, Endpoint{Host: domain, Port: DefaultPort, Origin: OriginDomain})
	}
	return d, nil
}

func kindOf(direct bool) string {
	if direct {
		return "direct TLS"
	}
	return "STARTTLS"
}

func isRootTarget(t string) bool { return t == "." || t == "" }

// prioritized is an endpoint with the SRV priority it came with.
type prioritized struct {
	Endpoint
	priority uint16
}

// mergeByPriority merges the records of the direct TLS and the STARTTLS
// services: by priority (lowest first), direct TLS first on a tie, each
// list keeping its own order within a priority (the weighted shuffle of
// RFC 2782). Both lists are sorted by priority.
func mergeByPriority(direct, starttls []prioritized) []Endpoint {
	out := make([]Endpoint, 0, len(direct)+len(starttls))
	i, j := 0, 0
	for i < len(direct) || j < len(starttls) {
		if j == len(starttls) || i < len(direct) && direct[i].priority <= starttls[j].priority {
			out = append(out, direct[i].Endpoint)
			i++
		} else {
			out = append(out, starttls[j].Endpoint)
			j++
		}
	}
	return out
}
