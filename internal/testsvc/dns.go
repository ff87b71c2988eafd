package testsvc

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// SRV is one SRV record of a DNSServer.
type SRV struct {
	Priority, Weight, Port uint16
	// Target is a host name; "." means the service is not offered.
	Target string
}

// DNSServer is an authoritative DNS server for tests on 127.0.0.1 (UDP and
// TCP on one free port) that answers the SRV, A and AAAA records set on
// it; other names are NXDOMAIN, other types of a known name are empty
// answers. Clients point their resolver at Addr (e.g. connection.dns_server).
// Its records are safe to change while it serves.
type DNSServer struct {
	// Addr is "127.0.0.1:PORT".
	Addr string

	udp, tcp *dns.Server

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	queries atomic.Int64
}

// StartDNS starts a DNS server; Close stops it.
func StartDNS() (*DNSServer, error) {
	s := &DNSServer{records: map[string][]dns.RR{}}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dns server: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil { // the port is taken on TCP: pick another
			pc.Close()
			lastErr = err
			continue
		}
		s.Addr = pc.LocalAddr().String()
		h := dns.HandlerFunc(s.serve)
		s.udp = &dns.Server{PacketConn: pc, Handler: h}
		s.tcp = &dns.Server{Listener: ln, Handler: h}
		udpUp, tcpUp := make(chan struct{}), make(chan struct{})
		s.udp.NotifyStartedFunc = func() { close(udpUp) }
		s.tcp.NotifyStartedFunc = func() { close(tcpUp) }
		go func() { _ = s.udp.ActivateAndServe() }()
		go func() { _ = s.tcp.ActivateAndServe() }()
		<-udpUp
		<-tcpUp
		return s, nil
	}
	return nil, fmt.Errorf("dns server: no free port for udp and tcp: %w", lastErr)
}

// Close stops the server.
func (s *DNSServer) Close() {
	if s == nil {
		return
	}
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Queries counts the questions answered so far.
func (s *DNSServer) Queries() int64 { return s.queries.Load() }

func fqdn(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// SetSRV replaces the SRV records of name (e.g. "_xmpp-client._tcp.localhost").
func (s *DNSServer) SetSRV(name string, records ...SRV) {
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rrs = append(rrs, &dns.SRV{
			Hdr:      dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 5},
			Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: dns.Fqdn(r.Target),
		})
	}
	s.set(name, dns.TypeSRV, rrs)
}

// SetHost replaces the A and AAAA records of name with addrs.
func (s *DNSServer) SetHost(name string, addrs ...string) {
	var a, aaaa []dns.RR
	for _, addr := range addrs {
		ip := netip.MustParseAddr(addr)
		hdr := dns.RR_Header{Name: fqdn(name), Class: dns.ClassINET, Ttl: 5}
		if ip.Is4() {
			hdr.Rrtype = dns.TypeA
			a = append(a, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			aaaa = append(aaaa, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	s.set(name, dns.TypeA, a)
	s.set(name, dns.TypeAAAA, aaaa)
}

// Remove forgets every record of name.
func (s *DNSServer) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, fqdn(name))
}

func (s *DNSServer) set(name string, typ uint16, rrs []dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fqdn(name)
	kept := s.records[n][:0:0]
	for _, rr := range s.records[n] {
		if rr.Header().Rrtype != typ {
			kept = append(kept, rr)
		}
	}
	s.records[n] = append(kept, rrs...)
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		s.mu.Lock()
		rrs, known := s.records[fqdn(q.Name)]
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		s.mu.Unlock()
		if !known {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}
