package profiles

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"

	"example.org/backend/core/jid"
	"example.org/backend/core/params"
	"example.org/backend/core/session"
)

// Keys of the connection parameters the core declares (DESIGN §9).
const (
	KeyJID         = "connection.jid"
	KeyPassword    = "connection.password"
	KeyHost        = "connection.host"
	KeyPort        = "connection.port"
	KeyTLSVerify   = "connection.tls_verify"
	KeyCAFile      = "connection.ca_file"
	KeyAutoconnect = "connection.autoconnect"
	KeyResource    = "connection.resource"
	KeyDirectTLS   = "connection.direct_tls"
	KeyDNSServer   = "connection.dns_server"
)

// Owner is the owner of the parameters the core declares.
const Owner = "core"

// ConnectionDecls returns the declarations of the connection parameters.
// connection.jid and connection.autoconnect mirror the columns of the
// profile (the columns are the one source of truth); the others are stored
// as parameter rows.
func ConnectionDecls() []params.Decl {
	return []params.Decl{
		{Category: "connection", Name: "jid", Type: params.TypeString, NeedsReconnect: true,
			Help: "Bare JID of the account (user@domain); set when the profile is created."},
		{Category: "connection", Name: "password", Type: params.TypeSecret, NeedsReconnect: true,
			Help: "Password of the account, stored encrypted; set it with `backend profile set NAME connection.password -` (read from stdin)."},
		{Category: "connection", Name: "host", Type: params.TypeString, Default: "", NeedsReconnect: true,
			Help: "Server host name or IP address to connect to, instead of discovering it; empty (with connection.port 0) discovers it: the DNS SRV records of the JID's domain (_xmpps-client._tcp for direct TLS, _xmpp-client._tcp for STARTTLS), then the domain on 5222. The certificate is always checked for the JID's domain."},
		{Category: "connection", Name: "port", Type: params.TypeInt, Default: "0", Min: params.Int64(0), Max: params.Int64(65535), NeedsReconnect: true,
			Help: "TCP port of connection.host (of the JID's domain when the host is empty), which skips discovery; 0 discovers the server, or means 5222 with connection.host set."},
		{Category: "connection", Name: "direct_tls", Type: params.TypeBool, Default: "false", NeedsReconnect: true,
			Help: "With connection.host or connection.port set: TLS from the first byte (XEP-0368, e.g. port 5223 or 443) instead of STARTTLS. Discovered servers say themselves which they offer."},
		{Category: "connection", Name: "dns_server", Type: params.TypeString, Default: "", NeedsReconnect: true,
			Help: "DNS server for the SRV and address lookups of this profile: an IP address with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53); empty uses the system's resolver."},
		{Category: "connection", Name: "tls_verify", Type: params.TypeBool, Default: "true", NeedsReconnect: true,
			Help: "Verify the server's TLS certificate; turn off only for testing."},
		{Category: "connection", Name: "ca_file", Type: params.TypeString, Default: "", NeedsReconnect: true,
			Help: "Absolute path of a PEM file of CA certificates trusted for this server, in addition to the system ones; empty for none."},
		{Category: "connection", Name: "autoconnect", Type: params.TypeBool, Default: "false",
			Help: "Connect this profile when the daemon starts."},
		{Category: "connection", Name: "resource", Type: params.TypeString, Default: "backend", NeedsReconnect: true,
			Help: "Resource asked for when binding the session; empty lets the server choose one."},
	}
}

// DeclareConnection declares the connection parameters in reg for the core.
func DeclareConnection(reg *params.Registry) error {
	return reg.Declare(Owner, ConnectionDecls()...)
}

// Connection is the resolved, typed connection parameters of a profile, for
// the session layer.
type Connection struct {
	// Profile is the profile's name.
	Profile string
	// JID is the bare JID of the account.
	JID jid.JID
	// Password is the decrypted password. Never log it.
	Password string
	// Host is connection.host: the host to connect to, "" to discover it
	// (unless Port is set).
	Host string
	// Port is connection.port: 0 discovers the server (or means 5222
	// with a Host).
	Port int
	// DirectTLS is connection.direct_tls (for a set Host or Port).
	DirectTLS bool
	// DNSServer is connection.dns_server, "" for the system's resolver.
	DNSServer string
	TLSVerify bool
	// CAFile is an extra PEM file of trusted CA certificates ("" for none).
	CAFile      string
	Autoconnect bool
	// Resource is the resource to ask for ("" lets the server choose).
	Resource string
}

// String describes c without its password, for logs.
func (c Connection) String() string {
	return "profile " + c.Profile + " jid " + c.JID.String() + " host " + c.Host
}

// GoString hides the password from %#v.
func (c Connection) GoString() string { return c.String() }

// LogValue renders c for log/slog without its password.
func (c Connection) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("profile", c.Profile), slog.String("jid", c.JID.String()),
		slog.String("host", c.Host), slog.Int("port", c.Port), slog.Bool("direct_tls", c.DirectTLS),
		slog.String("dns_server", c.DNSServer), slog.Bool("tls_verify", c.TLSVerify),
		slog.String("resource", c.Resource),
	)
}

// extraCheck validates what the type of a core parameter does not say.
// It gets the canonical text and returns the value to store.
type extraCheck func(v string) (string, *params.ValueError)

var extraChecks = map[string]extraCheck{
	KeyJID: func(v string) (string, *params.ValueError) {
		j, err := jid.ParseAccount(v)
		if err != nil {
			return "", &params.ValueError{Key: KeyJID, Reason: err.Error(), Accepts: "a bare JID user@domain"}
		}
		return j.String(), nil
	},
	KeyHost: func(v string) (string, *params.ValueError) {
		if v == "" {
			return v, nil
		}
		if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
			return a.String(), nil
		}
		d, err := jid.ValidateDomain(v)
		if err != nil || strings.HasPrefix(d, "[") {
			return "", &params.ValueError{Key: KeyHost, Reason: quote(v) + " is not a host name or IP address",
				Accepts: "a host name, an IP address, or empty for the JID's domain"}
		}
		return d, nil
	},
	KeyDNSServer: func(v string) (string, *params.ValueError) {
		out, err := session.ParseDNSServer(v)
		if err != nil {
			return "", &params.ValueError{Key: KeyDNSServer, Reason: quote(v) + " is not an IP address with an optional port",
				Accepts: "an IP address, IP:port or [IPv6]:port, or empty for the system's resolver"}
		}
		return out, nil
	},
	KeyCAFile: func(v string) (string, *params.ValueError) {
		if v == "" {
			return v, nil
		}
		if filepath.IsAbs(v) {
			return filepath.Clean(v), nil
		}
		return "", &params.ValueError{Key: KeyCAFile, Reason: quote(v) + " is not an absolute path",
			Accepts: "an absolute file path, or empty for none"}
	},
	KeyResource: func(v string) (string, *params.ValueError) {
		if v == "" {
			return v, nil
		}
		if err := jid.ValidateResource(v); err != nil {
			return "", &params.ValueError{Key: KeyResource, Reason: err.Error(), Accepts: "a JID resourcepart, or empty to let the server choose"}
		}
		return v, nil
	},
}
