package profiles

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"

	"example.org/backend/core/jid"
	"example.org/backend/core/params"
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
			Help: "Server host name or IP address to connect to; empty means the JID's domain."},
		{Category: "connection", Name: "port", Type: params.TypeInt, Default: "5222", Min: params.Int64(1), Max: params.Int64(65535), NeedsReconnect: true,
			Help: "TCP port of the server's client-to-server (STARTTLS) service."},
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
	// Host is the host to connect to: connection.host, or the JID's domain
	// when that is empty (HostFromJID is then true).
	Host        string
	HostFromJID bool
	Port        int
	TLSVerify   bool
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
		slog.String("host", c.Host), slog.Int("port", c.Port), slog.Bool("tls_verify", c.TLSVerify),
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
