// Package config loads the daemon's configuration: documented defaults, then
// one TOML file under the XDG config directory, then BACKEND_* environment
// variables, then command-line flags (each layer overrides the previous one).
//
// Every key is declared once in [Keys] with its default and its help text;
// the configuration reference is generated from that table
// (`backend config reference`). An unknown key in the file refuses start-up.
// Keys under `params.` are daemon-wide defaults of per-profile parameters;
// they are kept as raw text here and checked once plugins have declared
// their parameters.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config is the daemon configuration. Field comments name the key.
type Config struct {
	// DataDir holds the database, the secret key, backups and locks (data_dir).
	DataDir string
	// Socket is the path of the API's Unix socket (socket).
	Socket string
	// LogLevel is debug, info, warn or error (log.level).
	LogLevel string
	// LogFormat is text or json (log.format).
	LogFormat string
	// APITCPAddress is an optional host:port for a TCP API listener (api.tcp_address).
	APITCPAddress string
	// APITokenFile holds the token that TCP clients must present (api.token_file).
	APITokenFile string
	// APITLSCert and APITLSKey are the TCP listener's certificate and key (api.tls_cert, api.tls_key).
	APITLSCert, APITLSKey string
	// APITCPPlaintext allows plain HTTP on the TCP listener: "", "loopback" or "insecure" (api.tcp_plaintext).
	APITCPPlaintext string
	// APIAllowedOrigins are the browser origins allowed on the TCP listener (api.allowed_origins).
	APIAllowedOrigins []string
	// APIMaxRequestBytes bounds every API request message, decompressed (api.max_request_bytes).
	APIMaxRequestBytes int64
	// MetricsAddress is an optional host:port serving /metrics without auth (metrics.address).
	MetricsAddress string
	// DatabaseDriver is sqlite3 or postgres (database.driver).
	DatabaseDriver string
	// DatabaseDSN is the PostgreSQL DSN, or an SQLite file path (database.dsn).
	DatabaseDSN string
	// PluginDirs lists directories searched for third-party plugin executables (plugins.dirs).
	PluginDirs []string
	// PluginPins are "NAME=SHA256" pins of third-party plugin executables (plugins.pins).
	PluginPins []string
	// Params holds daemon-wide defaults of per-profile parameters ("category.name" → raw text).
	Params map[string]string
	// File is the configuration file that was read ("" when none).
	File string
}

// Key documents one configuration key.
type Key struct {
	Name    string // dotted key as written in the TOML file
	Type    string // "string", "list", "integer"
	Default string // human-readable default
	Help    string
	get     func(*Config) any
	set     func(*Config, any) error
}

// Env is the environment variable that overrides the key.
func (k Key) Env() string {
	return "BACKEND_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(k.Name))
}

func str(get func(*Config) *string) (func(*Config) any, func(*Config, any) error) {
	return func(c *Config) any { return *get(c) }, func(c *Config, v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %T", v)
		}
		*get(c) = s
		return nil
	}
}

func list(get func(*Config) *[]string) (func(*Config) any, func(*Config, any) error) {
	return func(c *Config) any { return *get(c) }, func(c *Config, v any) error {
		switch x := v.(type) {
		case []string:
			*get(c) = x
		case string: // from the environment: a list separated by the OS path separator
			*get(c) = nil
			for _, p := range filepath.SplitList(x) {
				if p != "" {
					*get(c) = append(*get(c), p)
				}
			}
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("expected a list of strings, got an element of type %T", e)
				}
				out = append(out, s)
			}
			*get(c) = out
		default:
			return fmt.Errorf("expected a list of strings, got %T", v)
		}
		return nil
	}
}

func integer(get func(*Config) *int64) (func(*Config) any, func(*Config, any) error) {
	return func(c *Config) any { return *get(c) }, func(c *Config, v any) error {
		switch x := v.(type) {
		case int64:
			*get(c) = x
		case string: // from the environment
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return fmt.Errorf("expected an integer, got %q", x)
			}
			*get(c) = n
		default:
			return fmt.Errorf("expected an integer, got %T", v)
		}
		return nil
	}
}

func oneOf(name, v string, choices ...string) error {
	for _, c := range choices {
		if v == c {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", name, v, strings.Join(choices, ", "))
}

// Keys lists every configuration key, in documentation order.
var Keys = func() []Key {
	mk := func(name, typ, def, help string, g func(*Config) any, s func(*Config, any) error) Key {
		return Key{Name: name, Type: typ, Default: def, Help: help, get: g, set: s}
	}
	var ks []Key
	add := func(name, def, help string, f func(*Config) *string) {
		g, s := str(f)
		ks = append(ks, mk(name, "string", def, help, g, s))
	}
	add("data_dir", "$XDG_DATA_HOME/backend (~/.local/share/backend)",
		"Directory of the database, the secret key file, backups and locks. Created with mode 0700.",
		func(c *Config) *string { return &c.DataDir })
	add("socket", "$XDG_RUNTIME_DIR/backend.sock, or $XDG_DATA_HOME/backend/backend.sock without XDG_RUNTIME_DIR",
		"Unix socket of the API (mode 0600). Clients use the same default, --socket or BACKEND_SOCKET. --data-dir does not move it.",
		func(c *Config) *string { return &c.Socket })
	add("log.level", "info", "Log level: debug, info, warn or error.",
		func(c *Config) *string { return &c.LogLevel })
	add("log.format", "text", "Log format on stderr: text or json.",
		func(c *Config) *string { return &c.LogFormat })
	add("api.tcp_address", "", "Optional host:port of a TCP API listener. Every request must carry `Authorization: Bearer TOKEN` with the token of api.token_file.",
		func(c *Config) *string { return &c.APITCPAddress })
	add("api.token_file", "<data_dir>/api.token", "File holding the TCP API token (created with mode 0600 when missing).",
		func(c *Config) *string { return &c.APITokenFile })
	add("api.tls_cert", "", "PEM certificate (chain) of the TCP listener, with api.tls_key. Empty: a self-signed certificate generated into <data_dir>/api-tls.crt and api-tls.key (mode 0600) and kept; `serve` logs its SHA-256 fingerprint and `status` shows it, for the CLI's --tls-fingerprint.",
		func(c *Config) *string { return &c.APITLSCert })
	add("api.tls_key", "", "PEM private key of api.tls_cert.",
		func(c *Config) *string { return &c.APITLSKey })
	add("api.tcp_plaintext", "", "Plain HTTP instead of TLS on the TCP listener: \"\" (never: TLS), \"loopback\" (only on a loopback address) or \"insecure\" (any address: the token crosses the network in clear unless something else encrypts it).",
		func(c *Config) *string { return &c.APITCPPlaintext })
	g, s := list(func(c *Config) *[]string { return &c.APIAllowedOrigins })
	ks = append(ks, mk("api.allowed_origins", "list", "[]",
		"Browser origins (scheme://host[:port]) allowed to call the TCP listener, with CORS. A request carrying another Origin header is refused. Set it in the file (the environment form splits on ':', which URLs contain).", g, s))
	g, s = integer(func(c *Config) *int64 { return &c.APIMaxRequestBytes })
	ks = append(ks, mk("api.max_request_bytes", "integer", "4194304 (4 MiB)",
		"Largest API request message, in bytes, after decompression, on every route of the socket and of the TCP listener. A larger request (or a compressed one inflating beyond it) is refused with resource_exhausted.", g, s))
	add("metrics.address", "", "Optional host:port serving Prometheus metrics at /metrics without authentication (the API socket serves /metrics too).",
		func(c *Config) *string { return &c.MetricsAddress })
	add("database.driver", "sqlite3", "Database engine: sqlite3 (embedded) or postgres.",
		func(c *Config) *string { return &c.DatabaseDriver })
	add("database.dsn", "", "PostgreSQL DSN (postgres://user@host:port/db?sslmode=disable), or the SQLite file (default <data_dir>/backend.db).",
		func(c *Config) *string { return &c.DatabaseDSN })
	g, s = list(func(c *Config) *[]string { return &c.PluginDirs })
	ks = append(ks, mk("plugins.dirs", "list", "[\"<data_dir>/plugins\"]",
		"Directories searched for third-party plugin executables named backend-plugin-NAME (environment: paths separated by ':').", g, s))
	g, s = list(func(c *Config) *[]string { return &c.PluginPins })
	ks = append(ks, mk("plugins.pins", "list", "[]",
		"Optional sha256 pins of third-party plugins, as \"NAME=HEX\": a plugin whose executable differs is refused (environment: entries separated by ':').", g, s))
	return ks
}()

// DefaultMaxRequestBytes is the default of api.max_request_bytes.
const DefaultMaxRequestBytes = 4 << 20

// Default returns the configuration with every documented default applied,
// given the environment lookup function (os.LookupEnv in production).
func Default(lookup func(string) (string, bool)) Config {
	env := func(k string) string { v, _ := lookup(k); return v }
	home := env("HOME")
	dataHome := env("XDG_DATA_HOME")
	if dataHome == "" {
		dataHome = filepath.Join(home, ".local", "share")
	}
	return Config{
		DataDir:        filepath.Join(dataHome, "backend"),
		LogLevel:       "info",
		LogFormat:      "text",
		DatabaseDriver: "sqlite3",
		Params:         map[string]string{},

		APIMaxRequestBytes: DefaultMaxRequestBytes,
	}
}

// DefaultFile is the configuration file read when --config is not given:
// $XDG_CONFIG_HOME/backend/config.toml (~/.config/backend/config.toml).
func DefaultFile(lookup func(string) (string, bool)) string {
	if v, ok := lookup("XDG_CONFIG_HOME"); ok && v != "" {
		return filepath.Join(v, "backend", "config.toml")
	}
	home, _ := lookup("HOME")
	return filepath.Join(home, ".config", "backend", "config.toml")
}

// DefaultSocket is the API socket used by the daemon and the clients when
// neither --socket nor BACKEND_SOCKET nor the socket key is set.
func DefaultSocket(lookup func(string) (string, bool)) string {
	if v, ok := lookup("XDG_RUNTIME_DIR"); ok && v != "" {
		return filepath.Join(v, "backend.sock")
	}
	dataHome, _ := lookup("XDG_DATA_HOME")
	if dataHome == "" {
		home, _ := lookup("HOME")
		dataHome = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dataHome, "backend", "backend.sock")
}

// Overrides are the values given on the command line; empty means unset.
type Overrides struct {
	File    string // --config
	DataDir string // --data-dir
	Socket  string // --socket
}

// Load builds the configuration: defaults, the file (the one named by
// --config must exist; the default one may be absent), BACKEND_* variables,
// then flags. Unknown keys in the file and invalid values are errors naming
// the key.
func Load(o Overrides, lookup func(string) (string, bool)) (Config, error) {
	c := Default(lookup)
	file := o.File
	if file == "" {
		if v, ok := lookup("BACKEND_CONFIG"); ok && v != "" {
			file = v
		}
	}
	explicit := file != ""
	if !explicit {
		file = DefaultFile(lookup)
	}
	if err := c.readFile(file, explicit); err != nil {
		return Config{}, err
	}
	for _, k := range Keys {
		if v, ok := lookup(k.Env()); ok {
			if err := k.set(&c, v); err != nil {
				return Config{}, fmt.Errorf("environment %s: %w", k.Env(), err)
			}
		}
	}
	if o.DataDir != "" {
		c.DataDir = o.DataDir
	}
	if o.Socket != "" {
		c.Socket = o.Socket
	} else if v, ok := lookup("BACKEND_SOCKET"); ok && v != "" {
		c.Socket = v
	}
	c.fillDerived(lookup)
	return c, c.Validate()
}

func (c *Config) readFile(file string, explicit bool) error {
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var tree map[string]any
	if _, err := toml.Decode(string(raw), &tree); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	c.File = file
	flat := map[string]any{}
	flatten("", tree, flat)
	known := map[string]Key{}
	for _, k := range Keys {
		known[k.Name] = k
	}
	names := make([]string, 0, len(flat))
	for n := range flat {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		v := flat[n]
		if rest, ok := strings.CutPrefix(n, "params."); ok {
			c.Params[rest] = paramText(v)
			continue
		}
		k, ok := known[n]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown key %q (see `backend config reference` for the keys)", n))
			continue
		}
		if err := k.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", n, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config file %s: %w", file, errors.Join(errs...))
	}
	return nil
}

// flatten turns nested tables into dotted keys. The params table is kept one
// level deep below "params." so that "params.cache.enabled" stays one key.
func flatten(prefix string, in map[string]any, out map[string]any) {
	for k, v := range in {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if m, ok := v.(map[string]any); ok && !(strings.HasPrefix(name, "params.") && strings.Count(name, ".") >= 2) {
			flatten(name, m, out)
			continue
		}
		out[name] = v
	}
}

// paramText renders a TOML value as the raw text a parameter parser takes.
func paramText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, strconv.Quote(fmt.Sprint(e)))
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		return fmt.Sprint(x)
	}
}

func (c *Config) fillDerived(lookup func(string) (string, bool)) {
	if c.Socket == "" {
		c.Socket = DefaultSocket(lookup)
	}
	if c.APITokenFile == "" {
		c.APITokenFile = filepath.Join(c.DataDir, "api.token")
	}
	if c.PluginDirs == nil {
		c.PluginDirs = []string{filepath.Join(c.DataDir, "plugins")}
	}
}

// Validate checks values that have a closed set of choices.
func (c *Config) Validate() error {
	var errs []error
	if err := oneOf("log.level", c.LogLevel, "debug", "info", "warn", "error"); err != nil {
		errs = append(errs, err)
	}
	if err := oneOf("log.format", c.LogFormat, "text", "json"); err != nil {
		errs = append(errs, err)
	}
	if err := oneOf("api.tcp_plaintext", c.APITCPPlaintext, "", "loopback", "insecure"); err != nil {
		errs = append(errs, err)
	}
	if err := oneOf("database.driver", c.DatabaseDriver, "sqlite3", "postgres"); err != nil {
		errs = append(errs, err)
	}
	if c.DatabaseDriver == "postgres" && c.DatabaseDSN == "" {
		errs = append(errs, errors.New("database.dsn: required when database.driver is postgres"))
	}
	if c.APIMaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("api.max_request_bytes: %d is too small (at least 1024)", c.APIMaxRequestBytes))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: empty (set HOME, XDG_DATA_HOME, --data-dir or BACKEND_DATA_DIR)"))
	}
	return errors.Join(errs...)
}

// Value returns the current value of a documented key (for display).
func (c *Config) Value(k Key) any { return k.get(c) }
