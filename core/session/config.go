package session

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"example.org/backend/core/jid"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPort         = 5222
	DefaultTimeout      = 15 * time.Second
	DefaultPingInterval = 30 * time.Second
	DefaultPingTimeout  = 15 * time.Second
	// DefaultCapsNode is the XEP-0115 node advertised in presence.
	DefaultCapsNode = "https://example.org/backend"
)

// Config is what a session needs to connect one account. It holds no
// reference to profile storage: the caller fills it.
type Config struct {
	// JID is the bare JID of the account (user@domain).
	JID string
	// Password is the account's password. It is never logged.
	Password string
	// Resource is the resource to bind; empty lets the server pick one.
	Resource string
	// Host is the host name or IP address to connect to. Empty Host and
	// zero Port mean discovery: the DNS SRV records of the JID's domain
	// (_xmpps-client._tcp for direct TLS, _xmpp-client._tcp for STARTTLS,
	// RFC 6120 §3.2 and XEP-0368), then the domain itself on 5222. A
	// non-empty Host, or a non-zero Port (with the JID's domain as host),
	// is the only endpoint tried: no SRV lookup is made.
	Host string
	// Port is the port of Host (or of the JID's domain); 0 means 5222 when
	// Host is set, discovery when it is not.
	Port int
	// DirectTLS makes the configured endpoint (Host or Port set) a direct
	// TLS one (XEP-0368: TLS from the first byte, ALPN xmpp-client)
	// instead of STARTTLS. Discovered endpoints say themselves which kind
	// they are.
	DirectTLS bool
	// DNSServer is the DNS server (an IP address, optionally with a port,
	// 53 by default) that resolves SRV records and host names; empty means
	// the system's resolver.
	DNSServer string
	// CAFile is a PEM file of extra trusted certificates (e.g. a
	// self-signed server's), added to the system roots.
	CAFile string
	// InsecureSkipVerify disables certificate verification (a warning is
	// logged at every connection). The zero value verifies, unlike the
	// TLSVerify flag first sketched for this API, so that a forgotten field
	// never weakens security.
	InsecureSkipVerify bool
	// Timeout bounds each endpoint's attempt: the TCP dial (every address
	// of the endpoint, IPv6 and IPv4 raced Happy Eyeballs style), the TLS
	// handshake and the whole stream negotiation; 0 means 15 s. It also
	// bounds each write of a stanza, plus a second per 16 KiB (a peer that
	// stops reading ends the connection). The context given to Start bounds the whole first
	// connection, every endpoint included.
	Timeout time.Duration
	// PingInterval is the period of the liveness checks (a stream
	// management <r/>, else a XEP-0199 ping to the server); 0 means 30 s,
	// negative disables them.
	PingInterval time.Duration
	// PingTimeout is how long a liveness ping may stay unanswered, and how
	// long the stream may stay silent after a stream management <r/>,
	// before the connection is declared dead (half-open); 0 means 15 s.
	PingTimeout time.Duration
	// Backoff returns the delay before reconnection attempt n (1, 2, …)
	// of a fresh login; nil means DefaultBackoff. (Resuming a stream is
	// tried sooner: see the package documentation.)
	Backoff func(attempt int) time.Duration
	// CapsNode is the XEP-0115 node; empty means DefaultCapsNode.
	CapsNode string
	// Log receives the session's logs; nil means slog.Default().
	Log *slog.Logger
}

// LogValue renders the configuration without its password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("jid", c.JID),
		slog.String("resource", c.Resource),
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.Bool("direct_tls", c.DirectTLS),
		slog.String("dns_server", c.DNSServer),
		slog.Bool("insecure_skip_verify", c.InsecureSkipVerify),
	)
}

// DefaultBackoff is exponential from 0.5 s (the first retry comes within
// 0.625 s), doubling per attempt, capped at 5 min, with ±25 % jitter so
// that many profiles do not reconnect in step.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := 500 * time.Millisecond
	for i := 1; i < attempt && d < 5*time.Minute; i++ {
		d *= 2
	}
	d = min(d, 5*time.Minute)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

// settings is a validated Config with defaults applied.
type settings struct {
	Config
	account jid.JID // bare, canonical
	// asciiDomain is the account's domain in A-labels, for DNS and TLS.
	asciiDomain string
	// configured is the only endpoint to try (Host or Port set), nil for
	// discovery.
	configured *Endpoint
	// dnsServer is DNSServer as host:port ("" for the system's).
	dnsServer string
	// tls is the TLS client configuration (certificates checked for the
	// JID's domain). Tests may cap its MaxVersion.
	tls *tls.Config
}

// resolve validates cfg and applies defaults.
func resolve(cfg Config) (*settings, error) {
	account, err := jid.ParseAccount(cfg.JID)
	if err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	if cfg.Resource != "" {
		if err := jid.ValidateResource(cfg.Resource); err != nil {
			return nil, fmt.Errorf("session config: %w", err)
		}
	}
	if cfg.Password == "" {
		return nil, fmt.Errorf("session config: empty password for %s", account)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("session config: port %d out of range", cfg.Port)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.CapsNode == "" {
		cfg.CapsNode = DefaultCapsNode
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &settings{Config: cfg, account: account}
	if s.asciiDomain, err = jid.ASCIIDomain(account.Domain); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	if cfg.Host != "" || cfg.Port != 0 {
		host := s.asciiDomain
		if cfg.Host != "" {
			if host, err = hostASCII(cfg.Host); err != nil {
				return nil, fmt.Errorf("session config: host: %w", err)
			}
		}
		port := cfg.Port
		if port == 0 {
			port = DefaultPort
		}
		s.configured = &Endpoint{Host: host, Port: port, DirectTLS: cfg.DirectTLS, Origin: OriginConfigured}
	}
	if s.dnsServer, err = ParseDNSServer(cfg.DNSServer); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	if s.tls, err = tlsConfig(cfg, s.asciiDomain); err != nil {
		return nil, err
	}
	return s, nil
}

// hostASCII returns a host name in A-labels (DNS has no Unicode), an IP
// address as is.
func hostASCII(h string) (string, error) {
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return a.String(), nil
	}
	d, err := jid.ValidateDomain(h)
	if err != nil {
		return "", err
	}
	return jid.ASCIIDomain(d)
}

// ParseDNSServer checks a DNS server address (an IP address, optionally
// with a port; [IPv6]:port) and returns it as host:port, "" for "".
func ParseDNSServer(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	if ap, err := netip.ParseAddrPort(v); err == nil && ap.Addr().Zone() == "" && ap.Port() != 0 {
		return ap.String(), nil
	}
	return "", fmt.Errorf("DNS server %q is not an IP address with an optional port (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)", v)
}

// tlsConfig builds the TLS client configuration: certificates are checked
// for the JID's domain (never for Host or an SRV target: RFC 6120
// §13.7.2.1) against the system roots plus CAFile.
func tlsConfig(cfg Config, domain string) (*tls.Config, error) {
	c := &tls.Config{ServerName: domain, MinVersion: tls.VersionTLS12}
	if cfg.InsecureSkipVerify {
		c.InsecureSkipVerify = true
		return c, nil
	}
	if cfg.CAFile == "" {
		return c, nil // nil RootCAs: the system roots
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("session config: read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("session config: CA file %s holds no PEM certificate", cfg.CAFile)
	}
	c.RootCAs = pool
	return c, nil
}

// target names where the session connects, for logs: the configured
// endpoint, or the JID's domain when it is discovered.
func (s *settings) target() string {
	if s.configured != nil {
		return net.JoinHostPort(s.configured.Host, strconv.Itoa(s.configured.Port))
	}
	return s.asciiDomain + " (discovered)"
}
