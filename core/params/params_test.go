package params

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testDecls declares one parameter of every type.
func testDecls() []Decl {
	return []Decl{
		{Category: "connection", Name: "port", Type: TypeInt, Default: "5222", Min: Int64(1), Max: Int64(65535), Help: "port", NeedsReconnect: true},
		{Category: "connection", Name: "host", Type: TypeString, Help: "host"},
		{Category: "connection", Name: "password", Type: TypeSecret, Help: "password"},
		{Category: "connection", Name: "tls_verify", Type: TypeBool, Default: "yes"},
		{Category: "connection", Name: "autoconnect", Type: TypeBool, Default: "false"},
		{Category: "cache", Name: "mode", Type: TypeEnum, Choices: []string{"off", "read", "full"}, Default: "full"},
		{Category: "cache", Name: "sync_interval", Type: TypeDuration, Default: "90m"},
		{Category: "cache", Name: "analysers", Type: TypeList},
		{Category: "cache", Name: "item_limit", Type: TypeInt, Default: "1000", Min: Int64(0)},
		{Category: "cache", Name: "offset", Type: TypeInt, Default: "0"},
	}
}

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	r := NewRegistry()
	if err := r.Declare("core", testDecls()...); err != nil {
		t.Fatalf("declare: %v", err)
	}
	return r
}

func TestNormalize(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		key, raw string
		want     string // canonical form, when wantErr is ""
		wantErr  string // substring of the error
	}{
		// bool
		{key: "connection.tls_verify", raw: "true", want: "true"},
		{key: "connection.tls_verify", raw: "YES", want: "true"},
		{key: "connection.tls_verify", raw: " On ", want: "true"},
		{key: "connection.tls_verify", raw: "1", want: "true"},
		{key: "connection.tls_verify", raw: "False", want: "false"},
		{key: "connection.tls_verify", raw: "no", want: "false"},
		{key: "connection.tls_verify", raw: "OFF", want: "false"},
		{key: "connection.tls_verify", raw: "0", want: "false"},
		{key: "connection.tls_verify", raw: "", wantErr: `connection.tls_verify: "" is not a boolean (accepts true or false`},
		{key: "connection.tls_verify", raw: "maybe", wantErr: `"maybe" is not a boolean`},
		{key: "connection.tls_verify", raw: "2", wantErr: `"2" is not a boolean`},
		// int with both bounds
		{key: "connection.port", raw: "5222", want: "5222"},
		{key: "connection.port", raw: " +80 ", want: "80"},
		{key: "connection.port", raw: "1", want: "1"},
		{key: "connection.port", raw: "65535", want: "65535"},
		{key: "connection.port", raw: "0", wantErr: `connection.port: 0 is out of range (accepts an integer in 1..65535)`},
		{key: "connection.port", raw: "65536", wantErr: `65536 is out of range`},
		{key: "connection.port", raw: "abc", wantErr: `connection.port: "abc" is not an integer (accepts an integer in 1..65535)`},
		{key: "connection.port", raw: "0x50", wantErr: `"0x50" is not an integer`},
		{key: "connection.port", raw: "1_000", wantErr: `"1_000" is not an integer`},
		{key: "connection.port", raw: "99999999999999999999", wantErr: `"99999999999999999999" is out of range`},
		// int with a lower bound only, and unbounded
		{key: "cache.item_limit", raw: "0", want: "0"},
		{key: "cache.item_limit", raw: "-1", wantErr: `cache.item_limit: -1 is out of range (accepts an integer >= 0)`},
		{key: "cache.offset", raw: "-0", want: "0"},
		{key: "cache.offset", raw: "-9223372036854775808", want: "-9223372036854775808"},
		{key: "cache.offset", raw: "1.5", wantErr: `(accepts an integer)`},
		// enum
		{key: "cache.mode", raw: "read", want: "read"},
		{key: "cache.mode", raw: "READ", wantErr: `cache.mode: "READ" is not a valid choice (accepts one of: off, read, full)`},
		{key: "cache.mode", raw: " read", wantErr: `is not a valid choice`},
		{key: "cache.mode", raw: "", wantErr: `is not a valid choice`},
		// duration
		{key: "cache.sync_interval", raw: "90m", want: "1h30m0s"},
		{key: "cache.sync_interval", raw: "1h30m0s", want: "1h30m0s"},
		{key: "cache.sync_interval", raw: "0", want: "0s"},
		{key: "cache.sync_interval", raw: " 1.5s ", want: "1.5s"},
		{key: "cache.sync_interval", raw: "-1s", wantErr: `cache.sync_interval: "-1s" is negative (accepts a non-negative duration`},
		{key: "cache.sync_interval", raw: "10", wantErr: `"10" is not a duration`},
		{key: "cache.sync_interval", raw: "", wantErr: `"" is not a duration`},
		// list
		{key: "cache.analysers", raw: "", want: "[]"},
		{key: "cache.analysers", raw: "[]", want: "[]"},
		{key: "cache.analysers", raw: "atom, blog ,,x", want: `["atom","blog","x"]`},
		{key: "cache.analysers", raw: `["a,b", "c d"]`, want: `["a,b","c d"]`},
		{key: "cache.analysers", raw: `["<&>"]`, want: `["<&>"]`},
		{key: "cache.analysers", raw: `[""]`, want: `[""]`},
		{key: "cache.analysers", raw: "é", want: `["é"]`},
		{key: "cache.analysers", raw: `[1, 2]`, wantErr: `cache.analysers: "[1, 2]" is not a list: not a JSON array of strings`},
		{key: "cache.analysers", raw: `["a"`, wantErr: `is not a list`},
		{key: "cache.analysers", raw: `["a\u0000"]`, wantErr: `an item contains a NUL byte`},
		{key: "cache.analysers", raw: "a\xffb", wantErr: `not valid UTF-8`},
		// string
		{key: "connection.host", raw: "", want: ""},
		{key: "connection.host", raw: " xmpp.example.org ", want: " xmpp.example.org "},
		{key: "connection.host", raw: "a\x00b", wantErr: `connection.host: "a\x00b" contains a NUL byte (accepts any text without NUL bytes)`},
		{key: "connection.host", raw: "a\xffb", wantErr: `is not valid UTF-8`},
		{key: "connection.host", raw: strings.Repeat("x", MaxValueLen+1), wantErr: `is too long`},
		// secret
		{key: "connection.password", raw: "hunter2", want: "hunter2"},
		{key: "connection.password", raw: " spaces kept ", want: " spaces kept "},
		{key: "connection.password", raw: "", wantErr: `connection.password: the secret is empty (accepts any non-empty text`},
		{key: "connection.password", raw: "pw\x00x", wantErr: `the secret contains a NUL byte`},
		{key: "connection.password", raw: "pw\xffx", wantErr: `the secret is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%.20q", tt.key, tt.raw), func(t *testing.T) {
			got, err := r.Normalize(tt.key, tt.raw)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Normalize = %q, want an error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("error %q does not wrap ErrInvalidValue", err)
				}
				var ve *ValueError
				if !errors.As(err, &ve) || ve.Key != tt.key {
					t.Fatalf("error %q is not a *ValueError for %s", err, tt.key)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Normalize = %q, want %q", got, tt.want)
			}
			again, err := r.Normalize(tt.key, got)
			if err != nil || again != got {
				t.Fatalf("canonical form is not a fixed point: %q → %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeUnknownKey(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		key       string
		wantClose []string
	}{
		{key: "conection.port", wantClose: []string{"connection.port"}},
		{key: "Connection.Port", wantClose: []string{"connection.port"}},
		{key: "port", wantClose: []string{"connection.port"}},
		{key: "xmpp.port", wantClose: []string{"connection.port"}},
		{key: "cache", wantClose: []string{"cache.analysers", "cache.item_limit", "cache.mode"}},
		{key: "zzzzzzzz.qqqqq", wantClose: nil},
		{key: "", wantClose: nil},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := r.Normalize(tt.key, "1")
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("error %v does not wrap ErrUnknownKey", err)
			}
			var uk *UnknownKeyError
			if !errors.As(err, &uk) {
				t.Fatalf("error %v is not an *UnknownKeyError", err)
			}
			if !reflect.DeepEqual(uk.Close, tt.wantClose) {
				t.Fatalf("close keys = %q, want %q", uk.Close, tt.wantClose)
			}
			for _, k := range tt.wantClose {
				if !strings.Contains(err.Error(), k) {
					t.Fatalf("error %q does not name %s", err, k)
				}
			}
		})
	}
}

// TestUnknownKeyInKnownCategory: a name close to nothing in a known
// category lists that category's keys; an unknown category says where the
// keys are listed.
func TestUnknownKeyInKnownCategory(t *testing.T) {
	r := testRegistry(t)
	_, err := r.Normalize("cache.zzzzzz", "1")
	var uk *UnknownKeyError
	if !errors.As(err, &uk) || len(uk.Close) != 0 || len(uk.Category) == 0 || !strings.Contains(err.Error(), "(the cache parameters are cache.") {
		t.Errorf("cache.zzzzzz: %v (%+v)", err, uk)
	}
	for _, k := range uk.Category {
		if !strings.HasPrefix(k, "cache.") {
			t.Errorf("category list has %s", k)
		}
	}
	if _, err := r.Normalize("zzzzzzzz.qqqqq", "1"); err == nil || !strings.Contains(err.Error(), "`backend profile params PROFILE` lists them") {
		t.Errorf("unknown category: %v", err)
	}
}

func TestDeclare(t *testing.T) {
	tests := []struct {
		name    string
		decls   []Decl
		wantErr string // substring; "" for success
		is      error
	}{
		{name: "ok", decls: testDecls()},
		{name: "bad category", decls: []Decl{{Category: "Conn", Name: "x", Type: TypeBool, Default: "true"}}, wantErr: `"Conn.x": category`, is: ErrInvalidDecl},
		{name: "empty name", decls: []Decl{{Category: "conn", Name: "", Type: TypeString}}, wantErr: `"conn.": name`, is: ErrInvalidDecl},
		{name: "dotted name", decls: []Decl{{Category: "conn", Name: "a.b", Type: TypeString}}, wantErr: `"conn.a.b": name`, is: ErrInvalidDecl},
		{name: "unknown type", decls: []Decl{{Category: "conn", Name: "x", Type: "float"}}, wantErr: `unknown type "float"`, is: ErrInvalidDecl},
		{name: "bad int default", decls: []Decl{{Category: "conn", Name: "port", Type: TypeInt, Default: "0", Min: Int64(1)}}, wantErr: `"conn.port": default: 0 is out of range`, is: ErrInvalidDecl},
		{name: "empty int default", decls: []Decl{{Category: "conn", Name: "port", Type: TypeInt}}, wantErr: `"conn.port": default`, is: ErrInvalidDecl},
		{name: "min above max", decls: []Decl{{Category: "conn", Name: "port", Type: TypeInt, Default: "5", Min: Int64(10), Max: Int64(1)}}, wantErr: "min 10 is greater than max 1", is: ErrInvalidDecl},
		{name: "bounds on string", decls: []Decl{{Category: "conn", Name: "host", Type: TypeString, Max: Int64(1)}}, wantErr: "only to int", is: ErrInvalidDecl},
		{name: "enum without choices", decls: []Decl{{Category: "conn", Name: "m", Type: TypeEnum}}, wantErr: "needs choices", is: ErrInvalidDecl},
		{name: "enum duplicate choice", decls: []Decl{{Category: "conn", Name: "m", Type: TypeEnum, Choices: []string{"a", "a"}, Default: "a"}}, wantErr: `"a" is listed twice`, is: ErrInvalidDecl},
		{name: "enum bad default", decls: []Decl{{Category: "conn", Name: "m", Type: TypeEnum, Choices: []string{"a"}, Default: "b"}}, wantErr: `"b" is not a valid choice`, is: ErrInvalidDecl},
		{name: "choices on bool", decls: []Decl{{Category: "conn", Name: "b", Type: TypeBool, Default: "true", Choices: []string{"x"}}}, wantErr: "only to enum", is: ErrInvalidDecl},
		{name: "secret default", decls: []Decl{{Category: "conn", Name: "pw", Type: TypeSecret, Default: "hunter2"}}, wantErr: "cannot have a default", is: ErrInvalidDecl},
		{name: "bad duration default", decls: []Decl{{Category: "conn", Name: "d", Type: TypeDuration, Default: "-5s"}}, wantErr: "negative", is: ErrInvalidDecl},
		{name: "twice in one call", decls: []Decl{{Category: "conn", Name: "a", Type: TypeString}, {Category: "conn", Name: "a", Type: TypeString}}, wantErr: `"conn.a" is listed twice`, is: ErrInvalidDecl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			err := r.Declare("core", tt.decls...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Declare: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Declare error = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("Declare error %v does not wrap %v", err, tt.is)
			}
			if n := len(r.All()); n != 0 {
				t.Fatalf("a failed Declare left %d declarations", n)
			}
		})
	}
}

func TestDeclareConflicts(t *testing.T) {
	r := NewRegistry()
	if err := r.Declare("", Decl{Category: "a", Name: "b", Type: TypeString}); !errors.Is(err, ErrInvalidDecl) {
		t.Fatalf("empty owner: got %v", err)
	}
	if err := r.Declare("core", Decl{Category: "cache", Name: "enabled", Type: TypeBool, Default: "true"}); err != nil {
		t.Fatal(err)
	}
	// Another owner: refused, all or nothing.
	err := r.Declare("pubsubcache",
		Decl{Category: "cache", Name: "item_limit", Type: TypeInt, Default: "10"},
		Decl{Category: "cache", Name: "enabled", Type: TypeBool, Default: "false"})
	if !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), `"cache.enabled" is declared by core`) {
		t.Fatalf("conflict: got %v", err)
	}
	if _, ok := r.Lookup("cache.item_limit"); ok {
		t.Fatal("a refused Declare added cache.item_limit")
	}
	// The same owner: replaces.
	if err := r.Declare("core", Decl{Category: "cache", Name: "enabled", Type: TypeBool, Default: "off", Help: "new"}); err != nil {
		t.Fatalf("redeclare by the same owner: %v", err)
	}
	d, ok := r.Lookup("cache.enabled")
	if !ok || d.Help != "new" || d.Default != "false" || d.Owner != "core" {
		t.Fatalf("after redeclare: %+v", d)
	}
	// RemoveOwner frees the key for another owner.
	r.RemoveOwner("core")
	if len(r.All()) != 0 {
		t.Fatal("RemoveOwner left declarations")
	}
	if err := r.Declare("pubsubcache", Decl{Category: "cache", Name: "enabled", Type: TypeBool, Default: "true"}); err != nil {
		t.Fatalf("declare after RemoveOwner: %v", err)
	}
}

func TestDeclareCanonicalDefaultsAndCopies(t *testing.T) {
	r := testRegistry(t)
	want := map[string]string{
		"connection.tls_verify": "true",
		"cache.sync_interval":   "1h30m0s",
		"cache.analysers":       "[]",
		"connection.host":       "",
		"connection.password":   "",
	}
	for k, v := range want {
		d, ok := r.Lookup(k)
		if !ok || d.Default != v {
			t.Errorf("%s default = %q, want %q", k, d.Default, v)
		}
	}
	// Callers cannot alter the registry through returned declarations.
	d, _ := r.Lookup("cache.mode")
	d.Choices[0] = "changed"
	d2, _ := r.Lookup("connection.port")
	*d2.Max = 1
	if got, err := r.Normalize("cache.mode", "off"); err != nil || got != "off" {
		t.Fatalf("registry altered through Lookup: %q %v", got, err)
	}
	if _, err := r.Normalize("connection.port", "5222"); err != nil {
		t.Fatalf("registry altered through Lookup: %v", err)
	}
	// All is sorted by key.
	var keys []string
	for _, d := range r.All() {
		keys = append(keys, d.Key())
	}
	if !sortedStrings(keys) || len(keys) != len(testDecls()) {
		t.Fatalf("All keys = %q", keys)
	}
	if got := len(r.Owned("core")); got != len(keys) {
		t.Fatalf("Owned(core) = %d declarations, want %d", got, len(keys))
	}
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestBounds(t *testing.T) {
	tests := []struct {
		d    Decl
		want string
	}{
		{Decl{Type: TypeInt, Min: Int64(1), Max: Int64(65535)}, "1..65535"},
		{Decl{Type: TypeInt, Min: Int64(0)}, ">= 0"},
		{Decl{Type: TypeInt, Max: Int64(-3)}, "<= -3"},
		{Decl{Type: TypeInt}, ""},
		{Decl{Type: TypeEnum, Choices: []string{"a", "b"}}, "one of: a, b"},
		{Decl{Type: TypeString}, ""},
		{Decl{Type: TypeSecret}, ""},
	}
	for _, tt := range tests {
		if got := tt.d.Bounds(); got != tt.want {
			t.Errorf("Bounds(%+v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	d := Decl{Category: "connection", Name: "port", Type: TypeSecret}
	if d.Key() != "connection.port" || !d.Secret() {
		t.Fatalf("Key/Secret: %q %v", d.Key(), d.Secret())
	}
}

func TestResolvePrecedence(t *testing.T) {
	r := testRegistry(t)
	tests := []struct {
		name          string
		key           string
		profile, conf map[string]string
		want          string
		src           Source
		wantErr       string
	}{
		{name: "default", key: "connection.port", want: "5222", src: SourceDefault},
		{name: "config over default", key: "connection.port", conf: map[string]string{"connection.port": " 5223"}, want: "5223", src: SourceConfig},
		{name: "profile over config", key: "connection.port", profile: map[string]string{"connection.port": "5224"}, conf: map[string]string{"connection.port": "5223"}, want: "5224", src: SourceProfile},
		{name: "profile over default", key: "cache.sync_interval", profile: map[string]string{"cache.sync_interval": "5m0s"}, want: "5m0s", src: SourceProfile},
		{name: "empty string profile value is a value", key: "connection.host", profile: map[string]string{"connection.host": ""}, conf: map[string]string{"connection.host": "cfg"}, want: "", src: SourceProfile},
		{name: "list from config is canonicalized", key: "cache.analysers", conf: map[string]string{"cache.analysers": "atom,blog"}, want: `["atom","blog"]`, src: SourceConfig},
		{name: "secret set", key: "connection.password", profile: map[string]string{"connection.password": "x"}, want: Mask, src: SourceProfile},
		{name: "secret unset", key: "connection.password", want: "", src: SourceDefault},
		{name: "secret empty placeholder is unset", key: "connection.password", profile: map[string]string{"connection.password": ""}, want: "", src: SourceDefault},
		{name: "secret in config refused", key: "connection.password", conf: map[string]string{"connection.password": "hunter2"}, wantErr: "cannot be set in the config file"},
		{name: "bad config value", key: "connection.port", conf: map[string]string{"connection.port": "abc"}, wantErr: `config params.connection.port: connection.port: "abc" is not an integer`},
		{name: "stale profile value", key: "cache.mode", profile: map[string]string{"cache.mode": "gone"}, wantErr: `stored profile value: cache.mode: "gone" is not a valid choice`},
		{name: "unknown key", key: "nope.nope", wantErr: "unknown parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.key, tt.profile, tt.conf)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve error = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error %q shows the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got.Value != tt.want || got.Source != tt.src || got.Decl.Key() != tt.key {
				t.Fatalf("Resolve = %q from %s (%s), want %q from %s", got.Value, got.Source, got.Decl.Key(), tt.want, tt.src)
			}
		})
	}
}

func TestResolveAll(t *testing.T) {
	r := testRegistry(t)
	profile := map[string]string{
		"connection.port":     "5300",
		"connection.password": "placeholder",
		"cache.mode":          "stale",        // no longer a choice: falls back to config
		"unknown.key":         "ignored here", // not declared
	}
	config := map[string]string{
		"cache.mode":       "read",
		"cache.item_limit": "-5", // invalid: falls back to the default
	}
	got, err := r.ResolveAll(profile, config)
	if err == nil || !strings.Contains(err.Error(), "cache.mode") || !strings.Contains(err.Error(), "cache.item_limit") {
		t.Fatalf("ResolveAll error = %v, want one naming cache.mode and cache.item_limit", err)
	}
	if len(got) != len(testDecls()) {
		t.Fatalf("ResolveAll returned %d entries, want %d", len(got), len(testDecls()))
	}
	byKey := map[string]Resolved{}
	var keys []string
	for _, res := range got {
		byKey[res.Decl.Key()] = res
		keys = append(keys, res.Decl.Key())
	}
	if !sortedStrings(keys) {
		t.Fatalf("not sorted: %q", keys)
	}
	want := map[string]struct {
		v string
		s Source
	}{
		"connection.port":       {"5300", SourceProfile},
		"connection.password":   {Mask, SourceProfile},
		"cache.mode":            {"read", SourceConfig},
		"cache.item_limit":      {"1000", SourceDefault},
		"connection.tls_verify": {"true", SourceDefault},
	}
	for k, w := range want {
		if res := byKey[k]; res.Value != w.v || res.Source != w.s {
			t.Errorf("%s = %q from %s, want %q from %s", k, res.Value, res.Source, w.v, w.s)
		}
	}
	if _, err := r.ResolveAll(nil, nil); err != nil {
		t.Fatalf("ResolveAll with defaults only: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	r := testRegistry(t)
	if err := r.CheckConfig(nil); err != nil {
		t.Fatalf("empty config: %v", err)
	}
	if err := r.CheckConfig(map[string]string{"connection.port": "5222", "cache.analysers": "a,b", "cache.mode": "off"}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	err := r.CheckConfig(map[string]string{
		"connection.port":     "99999",
		"conection.host":      "x",
		"connection.password": "hunter2-in-config",
		"cache.mode":          "off",
	})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("CheckConfig error %v is not a *ConfigError", err)
	}
	if len(ce.Errs) != 3 {
		t.Fatalf("CheckConfig found %d bad keys, want 3: %v", len(ce.Errs), err)
	}
	msg := err.Error()
	for _, want := range []string{"connection.port: 99999 is out of range", `unknown parameter "conection.host" (did you mean connection.host?)`, "connection.password: a secret cannot be set"} {
		if !strings.Contains(msg, want) {
			t.Errorf("CheckConfig error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("CheckConfig error %q shows the secret", msg)
	}
	if strings.Contains(msg, "cache.mode") {
		t.Errorf("CheckConfig error %q names a good key", msg)
	}
	if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidValue) {
		t.Errorf("CheckConfig error does not wrap ErrUnknownKey and ErrInvalidValue")
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	r := testRegistry(t)
	const secret = "s3cr3t-VALUE-do-not-show"
	values := []string{
		secret + "\x00",
		secret + "\xff",
		strings.Repeat(secret, MaxValueLen/len(secret)+1),
	}
	for _, v := range values {
		_, err := r.Normalize("connection.password", v)
		if err == nil {
			t.Fatalf("Normalize accepted a bad secret")
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(fmt.Sprintf("%+v %#v", err, err), "s3cr3t") {
			t.Fatalf("error shows the secret: %v", err)
		}
	}
	for _, call := range []func() error{
		func() error { return r.CheckConfig(map[string]string{"connection.password": secret}) },
		func() error {
			_, err := r.Resolve("connection.password", nil, map[string]string{"connection.password": secret})
			return err
		},
		func() error {
			_, err := r.ResolveAll(nil, map[string]string{"connection.password": secret})
			return err
		},
	} {
		err := call()
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("error = %v, want an error without the secret", err)
		}
	}
}

func TestParsers(t *testing.T) {
	if b, err := ParseBool("true"); err != nil || !b {
		t.Errorf("ParseBool(true) = %v, %v", b, err)
	}
	if b, err := ParseBool("false"); err != nil || b {
		t.Errorf("ParseBool(false) = %v, %v", b, err)
	}
	if _, err := ParseBool("t"); err == nil {
		t.Errorf("ParseBool(t): no error")
	}
	if v, err := ParseInt("-42"); err != nil || v != -42 {
		t.Errorf("ParseInt(-42) = %v, %v", v, err)
	}
	if _, err := ParseInt("4.2"); err == nil {
		t.Errorf("ParseInt(4.2): no error")
	}
	if v, err := ParseDuration("1h30m0s"); err != nil || v != 90*time.Minute {
		t.Errorf("ParseDuration = %v, %v", v, err)
	}
	if _, err := ParseDuration("-1s"); err == nil {
		t.Errorf("ParseDuration(-1s): no error")
	}
	if l, err := ParseList(`["a","b"]`); err != nil || !reflect.DeepEqual(l, []string{"a", "b"}) {
		t.Errorf("ParseList = %q, %v", l, err)
	}
	if l, err := ParseList(`[]`); err != nil || l == nil || len(l) != 0 {
		t.Errorf("ParseList([]) = %#v, %v", l, err)
	}
	if got := FormatList(nil); got != "[]" {
		t.Errorf("FormatList(nil) = %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := testRegistry(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("plugin%d", i)
			for j := range 50 {
				d := Decl{Category: owner, Name: fmt.Sprintf("p%d", j), Type: TypeInt, Default: "1"}
				if err := r.Declare(owner, d); err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Normalize(d.Key(), "2"); err != nil {
					t.Error(err)
					return
				}
				_, _ = r.ResolveAll(nil, nil)
			}
			r.RemoveOwner(owner)
		}()
	}
	wg.Wait()
	if got := len(r.All()); got != len(testDecls()) {
		t.Fatalf("after concurrent use: %d declarations", got)
	}
}
