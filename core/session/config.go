package session

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"

	"example.org/backend/core/jid"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPort         = 5222
	DefaultTimeout      = 15 * time.Second
	DefaultPingInterval = 60 * time.Second
	DefaultPingTimeout  = 20 * time.Second
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
	// Host is the host name or IP address to connect to; empty means the
	// JID's domain. No DNS SRV lookup is made.
	Host string
	// Port is the c2s port (STARTTLS); 0 means 5222.
	Port int
	// CAFile is a PEM file of extra trusted certificates (e.g. a
	// self-signed server's), added to the system roots.
	CAFile string
	// InsecureSkipVerify disables certificate verification (a warning is
	// logged at every connection). The zero value verifies, unlike the
	// TLSVerify flag first sketched for this API, so that a forgotten field
	// never weakens security.
	InsecureSkipVerify bool
	// Timeout bounds the TCP dial and the whole stream negotiation of one
	// connection attempt; 0 means 15 s. The transport counts it in whole
	// seconds (rounded up), and uses it twice in ways the session cannot
	// shorten (gosrc.io/xmpp v0.5.1 keeps its net.Conn private): a
	// connection dropped by the server while the stream opens costs
	// Timeout (the transport waits that long for a stream close before
	// giving up), and a network that stalls inside the server's stream
	// header or the TLS handshake is only noticed by TCP keepalive. Stop
	// waits for such an attempt to end.
	Timeout time.Duration
	// PingInterval is the period of XEP-0199 liveness pings to the server;
	// 0 means 60 s, negative disables them.
	PingInterval time.Duration
	// PingTimeout is how long a liveness ping may stay unanswered before
	// the connection is declared dead; 0 means 20 s.
	PingTimeout time.Duration
	// Backoff returns the delay before reconnection attempt n (1, 2, …);
	// nil means DefaultBackoff.
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
		slog.Bool("insecure_skip_verify", c.InsecureSkipVerify),
	)
}

// DefaultBackoff is exponential from 1 s, doubling per attempt, capped at
// 5 min, with ±25 % jitter so that many profiles do not reconnect in step.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := time.Second
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
	account jid.JID // bare
	addr    string  // host:port
	tls     *tls.Config
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
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
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
	host := cfg.Host
	if host == "" {
		host = account.Domain
	}
	s := &settings{
		Config:  cfg,
		account: account,
		addr:    net.JoinHostPort(host, strconv.Itoa(cfg.Port)),
	}
	if s.tls, err = tlsConfig(cfg, account.Domain); err != nil {
		return nil, err
	}
	return s, nil
}

// tlsConfig builds the TLS client configuration: certificates are checked
// for the JID's domain (not Host) against the system roots plus CAFile.
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

// connectTimeoutSeconds is Timeout for the transport, in whole seconds,
// at least 1 (0 would mean no dial timeout, and Close would not wait for
// the ReceivedStreamClose signal).
func (s *settings) connectTimeoutSeconds() int {
	sec := int((s.Timeout + time.Second - 1) / time.Second)
	return max(sec, 1)
}
