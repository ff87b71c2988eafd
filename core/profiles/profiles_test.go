package profiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/jid"
	"example.org/backend/core/params"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
	"example.org/backend/triggers"
)

var (
	sharedPG    *testsvc.Postgres
	sharedPGErr error
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sharedPG, sharedPGErr = testsvc.StartPostgres(ctx)
	cancel()
	code := m.Run()
	if err := sharedPG.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// fixture is a service over a fresh database.
type fixture struct {
	svc     *Service
	host    *core.Host
	store   *storage.Store
	logs    *testsvc.LogBuffer
	dataDir string // holds secret.key (and the SQLite file)
	dialect string
}

var engines = []string{storage.DriverSQLite, storage.DriverPostgres}

// forEachEngine runs f as a subtest on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, config map[string]string, f func(t *testing.T, fx *fixture)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { f(t, newFixture(t, e, config)) })
	}
}

func newFixture(t *testing.T, engine string, config map[string]string) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := storage.Config{Driver: engine, DataDir: dir}
	if engine == storage.DriverPostgres {
		testsvc.RequireOrSkip(t, sharedPGErr)
		testsvc.Uses(t, "postgres")
		dsn, err := sharedPG.NewDatabase(context.Background(), t.Name())
		if err != nil {
			t.Fatal(err)
		}
		cfg.DSN = dsn
	}
	store, err := storage.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logs := &testsvc.LogBuffer{}
	h := core.NewHost(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), "test")
	h.Store = store
	if h.Secrets, err = secrets.OpenBox(dir); err != nil {
		t.Fatal(err)
	}
	if err := DeclareConnection(h.Params); err != nil {
		t.Fatal(err)
	}
	if err := h.Params.CheckConfig(config); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: New(h, config), host: h, store: store, logs: logs, dataDir: dir, dialect: engine}
}

// counts returns the numbers of profile and param rows.
func (fx *fixture) counts(t *testing.T) (profiles, params int) {
	t.Helper()
	ctx := context.Background()
	p, err := fx.store.Client.Profile.Query().Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q, err := fx.store.Client.Param.Query().Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p, q
}

const testPassword = "pw-Zq81-unique-secret"

func (fx *fixture) createAlice(t *testing.T, extra map[string]string) {
	t.Helper()
	_, err := fx.svc.Create(context.Background(), CreateRequest{Name: "alice", JID: "alice@example.org", Password: testPassword, Params: extra})
	if err != nil {
		t.Fatal(err)
	}
}

func byKey(t *testing.T, rs []params.Resolved) map[string]params.Resolved {
	t.Helper()
	out := map[string]params.Resolved{}
	for _, r := range rs {
		out[r.Decl.Key()] = r
	}
	return out
}

func TestCreateListShowDelete(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		p, err := fx.svc.Create(ctx, CreateRequest{Name: "alice", JID: "alice@EXAMPLE.org", Password: testPassword,
			Params: map[string]string{KeyPort: "5223", KeyAutoconnect: "yes", KeyHost: "XMPP.example.org"}})
		if err != nil {
			t.Fatal(err)
		}
		want := Profile{Name: "alice", JID: "alice@example.org", Autoconnect: true, State: StateDisconnected}
		if p != want {
			t.Errorf("Create = %+v, want %+v", p, want)
		}
		if _, err := fx.svc.Create(ctx, CreateRequest{Name: "bob.2", JID: "bob@example.org"}); err != nil {
			t.Fatal(err)
		}
		list, err := fx.svc.List(ctx)
		if err != nil || len(list) != 2 || list[0] != want || list[1].Name != "bob.2" || list[1].Autoconnect {
			t.Fatalf("List = %+v, %v", list, err)
		}
		fx.svc.SetStateFunc(func(name string) string {
			if name == "alice" {
				return "connected"
			}
			return ""
		})
		if got, err := fx.svc.Profile(ctx, "alice"); err != nil || got.State != "connected" {
			t.Errorf("Profile with a state func = %+v, %v", got, err)
		}
		if got, _ := fx.svc.Profile(ctx, "bob.2"); got.State != StateDisconnected {
			t.Errorf("state of bob.2 = %q", got.State)
		}
		fx.svc.SetStateFunc(nil)

		rs, err := fx.svc.Params(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		m := byKey(t, rs)
		for _, k := range []string{KeyJID, KeyPassword, KeyHost, KeyPort, KeyTLSVerify, KeyCAFile, KeyAutoconnect, KeyResource} {
			if _, ok := m[k]; !ok {
				t.Errorf("Params lacks %s", k)
			}
		}
		for k, want := range map[string]params.Resolved{
			KeyJID:         {Value: "alice@example.org", Source: params.SourceProfile},
			KeyPassword:    {Value: params.Mask, Source: params.SourceProfile},
			KeyHost:        {Value: "xmpp.example.org", Source: params.SourceProfile},
			KeyPort:        {Value: "5223", Source: params.SourceProfile},
			KeyAutoconnect: {Value: "true", Source: params.SourceProfile},
			KeyTLSVerify:   {Value: "true", Source: params.SourceDefault},
			KeyResource:    {Value: "backend", Source: params.SourceDefault},
		} {
			if got := m[k]; got.Value != want.Value || got.Source != want.Source {
				t.Errorf("%s = %q from %s, want %q from %s", k, got.Value, got.Source, want.Value, want.Source)
			}
		}
		// The mirrored keys live in the profile's columns only.
		if _, n := fx.counts(t); n != 3 { // password, host, port
			t.Errorf("%d param rows, want 3", n)
		}

		if err := fx.svc.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := fx.svc.Delete(ctx, "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if np, nq := fx.counts(t); np != 1 || nq != 0 {
			t.Errorf("after delete: %d profiles, %d params; want 1, 0 (cascade)", np, nq)
		}
		if _, err := fx.svc.Params(ctx, "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("params of a deleted profile: %v", err)
		}
	})
}

func TestCreateRefusalsWriteNothing(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.createAlice(t, map[string]string{KeyPort: "5223"})
		before, _ := fx.svc.Params(ctx, "alice")
		np0, nq0 := fx.counts(t)
		for _, tc := range []struct {
			name string
			req  CreateRequest
			is   error
			msg  string
		}{
			{"duplicate", CreateRequest{Name: "alice", JID: "other@example.org", Password: "x", Params: map[string]string{KeyPort: "1"}}, ErrExists, `"alice"`},
			{"bad name", CreateRequest{Name: "-bob", JID: "bob@example.org"}, ErrInvalidName, "letters"},
			{"name with space", CreateRequest{Name: "bo b", JID: "bob@example.org"}, ErrInvalidName, "letters"},
			{"long name", CreateRequest{Name: strings.Repeat("b", 65), JID: "bob@example.org"}, ErrInvalidName, "64"},
			{"no jid", CreateRequest{Name: "bob"}, params.ErrInvalidValue, KeyJID},
			{"bad jid", CreateRequest{Name: "bob", JID: "bob@exa mple.org"}, params.ErrInvalidValue, "whitespace"},
			{"full jid", CreateRequest{Name: "bob", JID: "bob@example.org/res"}, params.ErrInvalidValue, "bare JID"},
			{"domain jid", CreateRequest{Name: "bob", JID: "example.org"}, params.ErrInvalidValue, "localpart"},
			{"bad port", CreateRequest{Name: "bob", JID: "bob@example.org", Params: map[string]string{KeyPort: "-1"}}, params.ErrInvalidValue, "0..65535"},
			{"unknown key", CreateRequest{Name: "bob", JID: "bob@example.org", Params: map[string]string{"connection.prot": "1"}}, params.ErrUnknownKey, "connection.port"},
		} {
			_, err := fx.svc.Create(ctx, tc.req)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: err = %v, want %v mentioning %q", tc.name, err, tc.is, tc.msg)
			}
		}
		if np, nq := fx.counts(t); np != np0 || nq != nq0 {
			t.Errorf("refused creations wrote rows: %d/%d profiles, %d/%d params", np, np0, nq, nq0)
		}
		after, _ := fx.svc.Params(ctx, "alice")
		if len(after) != len(before) {
			t.Fatal("params changed")
		}
		for i := range after {
			if after[i].Value != before[i].Value || after[i].Source != before[i].Source {
				t.Errorf("%s changed: %v → %v", after[i].Decl.Key(), before[i], after[i])
			}
		}
	})
}

func TestPrecedence(t *testing.T) {
	config := map[string]string{KeyPort: "5269", KeyResource: "from-config"}
	forEachEngine(t, config, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.createAlice(t, nil)
		check := func(key, value string, src params.Source) {
			t.Helper()
			r, err := fx.svc.Param(ctx, "alice", key)
			if err != nil || r.Value != value || r.Source != src {
				t.Errorf("%s = %q from %s (%v), want %q from %s", key, r.Value, r.Source, err, value, src)
			}
		}
		check(KeyPort, "5269", params.SourceConfig)
		check(KeyResource, "from-config", params.SourceConfig)
		check(KeyTLSVerify, "true", params.SourceDefault)
		if _, err := fx.svc.Set(ctx, "alice", KeyPort, "5223"); err != nil {
			t.Fatal(err)
		}
		check(KeyPort, "5223", params.SourceProfile)
		check(KeyResource, "from-config", params.SourceConfig)
		// Another profile still sees the config value.
		if _, err := fx.svc.Create(ctx, CreateRequest{Name: "bob", JID: "bob@example.org"}); err != nil {
			t.Fatal(err)
		}
		if r, _ := fx.svc.Param(ctx, "bob", KeyPort); r.Value != "5269" || r.Source != params.SourceConfig {
			t.Errorf("bob's port = %v", r)
		}
		c, err := fx.svc.ConnectionSettings(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		want := Connection{Profile: "alice", JID: jid.JID{Local: "alice", Domain: "example.org"}, Password: testPassword,
			Port: 5223, TLSVerify: true, Resource: "from-config"}
		if c != want {
			t.Errorf("ConnectionSettings = %#v, want %#v", c, want)
		}
		// bob's port comes from the config.
		if _, err := fx.svc.Set(ctx, "bob", KeyPassword, testPassword); err != nil {
			t.Fatal(err)
		}
		if c, err := fx.svc.ConnectionSettings(ctx, "bob"); err != nil || c.Host != "" || c.Port != 5269 {
			t.Errorf("bob's ConnectionSettings = %#v, %v; want port 5269 from the config", c, err)
		}
	})
}

// TestConnectionSettingsDiscovery: without host and port (the port at its
// default, 0) the session layer gets Host "" and Port 0, so it discovers
// the server; the JID is canonical.
func TestConnectionSettingsDiscovery(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		if _, err := fx.svc.Create(ctx, CreateRequest{Name: "carol", JID: "Carol@Example.ORG", Password: "pw",
			Params: map[string]string{KeyDNSServer: "127.0.0.1:5353", KeyDirectTLS: "true"}}); err != nil {
			t.Fatal(err)
		}
		c, err := fx.svc.ConnectionSettings(ctx, "carol")
		want := Connection{Profile: "carol", JID: jid.JID{Local: "carol", Domain: "example.org"}, Password: "pw",
			DirectTLS: true, DNSServer: "127.0.0.1:5353", TLSVerify: true, Resource: "backend"}
		if err != nil || c != want {
			t.Errorf("ConnectionSettings = %#v, %v; want %#v (discovery: no host, no port)", c, err, want)
		}
	})
}

func TestSetValidation(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.createAlice(t, nil)
		for _, tc := range []struct {
			key, value string
			want       string // canonical value stored, "" when refused
			err        string // part of the error when refused
		}{
			{KeyTLSVerify, "no", "false", ""},
			{KeyTLSVerify, "On", "true", ""},
			{KeyTLSVerify, "maybe", "", "true or false"},
			{KeyAutoconnect, "1", "true", ""},
			{KeyAutoconnect, "", "", "not a boolean"},
			{KeyPort, " 5223 ", "5223", ""},
			{KeyPort, "65535", "65535", ""},
			{KeyPort, "0", "0", ""},
			{KeyPort, "-1", "", "0..65535"},
			{KeyPort, "65536", "", "0..65535"},
			{KeyPort, "abc", "", "not an integer"},
			{KeyPort, "99999999999999999999", "", "out of range"},
			{KeyHost, "Server.Example.org", "server.example.org", ""},
			{KeyHost, "::1", "::1", ""},
			{KeyHost, "a b", "", "not a host name"},
			{KeyHost, "a\x00b", "", "NUL"},
			{KeyCAFile, "/etc/ssl/ca.pem", "/etc/ssl/ca.pem", ""},
			{KeyCAFile, "ca.pem", "", "absolute"},
			{KeyResource, "laptop", "laptop", ""},
			{KeyDNSServer, "192.0.2.53", "192.0.2.53:53", ""},
			{KeyDNSServer, "[2001:db8::53]:5353", "[2001:db8::53]:5353", ""},
			{KeyDNSServer, "", "", ""},
			{KeyDNSServer, "dns.example.org", "", "IP address"},
			{KeyDirectTLS, "yes", "true", ""},
			{KeyResource, "a\x01", "", "control"},
			{KeyJID, "alice@example.net", "alice@example.net", ""},
			{KeyJID, "Alice@EXAMPLE.net", "alice@example.net", ""},
			{KeyJID, "alice@example.net/x", "", "bare JID"},
			{KeyPassword, "", "", "empty"},
			{"connection.nope", "1", "", "unknown parameter"},
		} {
			before, _ := fx.svc.Params(ctx, "alice")
			r, err := fx.svc.Set(ctx, "alice", tc.key, tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.key) {
					t.Errorf("Set(%s, %q) = %v, want an error naming the key and containing %q", tc.key, tc.value, err, tc.err)
				}
				after, _ := fx.svc.Params(ctx, "alice")
				for i := range after {
					if after[i].Value != before[i].Value || after[i].Source != before[i].Source {
						t.Errorf("refused Set(%s, %q) changed %s", tc.key, tc.value, after[i].Decl.Key())
					}
				}
				continue
			}
			if err != nil || r.Value != tc.want || r.Source != params.SourceProfile {
				t.Errorf("Set(%s, %q) = %+v, %v; want %q", tc.key, tc.value, r, err, tc.want)
				continue
			}
			if got, _ := fx.svc.Param(ctx, "alice", tc.key); got.Value != tc.want {
				t.Errorf("after Set(%s, %q): Param = %q", tc.key, tc.value, got.Value)
			}
		}
		if p, _ := fx.svc.Profile(ctx, "alice"); p.JID != "alice@example.net" || !p.Autoconnect {
			t.Errorf("mirrored columns not updated: %+v", p)
		}
		if _, err := fx.svc.Set(ctx, "nobody", KeyPort, "5222"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Set on an unknown profile: %v", err)
		}
	})
}

func TestChangeEvents(t *testing.T) {
	fx := newFixture(t, storage.DriverSQLite, nil)
	ctx := context.Background()
	fx.createAlice(t, nil)
	var mu sync.Mutex
	var seen []ParamChange
	h, err := fx.host.Bus.Attach("test", triggers.Observe(ParamChanged, triggers.PriorityDefault, func(ctx context.Context, c ParamChange) error {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Remove()
	bridges, err := fx.host.Bus.Attach("core", EventBindings(fx.host.Events)...)
	if err != nil {
		t.Fatal(err)
	}
	defer bridges.Remove()
	sub := fx.host.Events.Subscribe("alice")
	defer sub.Close()

	if _, err := fx.svc.Set(ctx, "alice", KeyPort, "5223"); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Set(ctx, "alice", KeyPassword, "new-"+testPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Set(ctx, "alice", KeyPort, "-1"); err == nil {
		t.Fatal("port -1 accepted")
	}
	want := []ParamChange{
		{Profile: "alice", Key: KeyPort, Type: params.TypeInt, Value: "5223", Source: params.SourceProfile, NeedsReconnect: true},
		{Profile: "alice", Key: KeyPassword, Type: params.TypeSecret, Value: params.Mask, Source: params.SourceProfile, Secret: true, NeedsReconnect: true},
	}
	mu.Lock()
	if len(seen) != len(want) || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("bus changes = %+v, want %+v", seen, want)
	}
	mu.Unlock()
	for i, w := range []struct {
		key   string
		value any
	}{{KeyPort, float64(5223)}, {KeyPassword, params.Mask}} {
		select {
		case ev := <-sub.C:
			m := ev.GetParamChanged()
			if m == nil || ev.Profile != "alice" || m.GetKey() != w.key || m.GetSource() != "profile" || !m.GetNeedsReconnect() ||
				m.GetValue().AsInterface() != w.value {
				t.Errorf("event %d = %+v, want %s = %#v (typed)", i, ev, w.key, w.value)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not published", i)
		}
	}
	select {
	case ev := <-sub.C:
		t.Errorf("unexpected event after a refused Set: %+v", ev)
	default:
	}
}

func TestSecretsAtRest(t *testing.T) {
	fx := newFixture(t, storage.DriverSQLite, nil)
	ctx := context.Background()
	fx.createAlice(t, nil)
	second := "second-" + testPassword
	if _, err := fx.svc.Set(ctx, "alice", KeyPassword, second); err != nil {
		t.Fatal(err)
	}
	if got, err := fx.svc.Secret(ctx, "alice", KeyPassword); err != nil || got != second {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	// Key file mode.
	st, err := os.Stat(filepath.Join(fx.dataDir, secrets.KeyFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	// The database files never hold the password in clear.
	fx.store.DB.ExecContext(ctx, "PRAGMA wal_checkpoint(FULL)")
	files, _ := filepath.Glob(filepath.Join(fx.dataDir, "backend.db*"))
	if len(files) == 0 {
		t.Fatal("no database file found")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{testPassword, second} {
			if bytes.Contains(raw, []byte(pw)) {
				t.Errorf("%s holds a password in clear", f)
			}
		}
	}
	// Nor do logs, Params or errors.
	rs, _ := fx.svc.Params(ctx, "alice")
	for _, r := range rs {
		if strings.Contains(r.Value, "pw-") {
			t.Errorf("Params shows %s = %q", r.Decl.Key(), r.Value)
		}
	}
	if strings.Contains(fx.logs.String(), "pw-") {
		t.Errorf("logs hold a password:\n%s", fx.logs)
	}
	// A sealed value moved to another profile does not open.
	if _, err := fx.svc.Create(ctx, CreateRequest{Name: "bob", JID: "bob@example.org", Password: "bob-password"}); err != nil {
		t.Fatal(err)
	}
	_, err = fx.store.DB.ExecContext(ctx, `UPDATE params SET secret = (SELECT secret FROM params p JOIN profiles f ON p.profile_id = f.id WHERE f.name = 'alice' AND p.name = 'password')
		WHERE profile_id = (SELECT id FROM profiles WHERE name = 'bob') AND name = 'password'`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Secret(ctx, "bob", KeyPassword); !errors.Is(err, ErrSecretUnavailable) {
		t.Errorf("secret moved to bob: %v", err)
	}
}

func TestLostKeyFile(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx *fixture) {
		ctx := context.Background()
		fx.createAlice(t, map[string]string{KeyPort: "5223"})
		if err := os.Remove(filepath.Join(fx.dataDir, secrets.KeyFileName)); err != nil {
			t.Fatal(err)
		}
		box, err := secrets.OpenBox(fx.dataDir) // a new key, as at the next start
		if err != nil {
			t.Fatal(err)
		}
		fx.host.Secrets = box
		svc := New(fx.host, nil)

		m := byKey(t, mustParams(t, svc, "alice"))
		if r := m[KeyPassword]; r.Value != params.Mask || r.Source != params.SourceProfile {
			t.Errorf("password after key loss = %+v, want listed as set", r)
		}
		if r := m[KeyPort]; r.Value != "5223" {
			t.Errorf("port after key loss = %+v", r)
		}
		_, err = svc.ConnectionSettings(ctx, "alice")
		if !errors.Is(err, ErrSecretUnavailable) || !strings.Contains(err.Error(), "backend profile set alice connection.password -") ||
			!strings.Contains(err.Error(), "another key file") {
			t.Fatalf("ConnectionSettings after key loss: %v", err)
		}
		// Other parameters still work, and setting the secret again fixes it.
		if _, err := svc.Set(ctx, "alice", KeyTLSVerify, "false"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Set(ctx, "alice", KeyPassword, "fresh-"+testPassword); err != nil {
			t.Fatal(err)
		}
		c, err := svc.ConnectionSettings(ctx, "alice")
		if err != nil || c.Password != "fresh-"+testPassword || c.TLSVerify || c.Port != 5223 {
			t.Fatalf("after setting it again: %v, %v", c, err)
		}
	})
}

func mustParams(t *testing.T, s *Service, name string) []params.Resolved {
	t.Helper()
	rs, err := s.Params(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestConnectionSettingsWithoutPassword(t *testing.T) {
	fx := newFixture(t, storage.DriverSQLite, nil)
	ctx := context.Background()
	if _, err := fx.svc.Create(ctx, CreateRequest{Name: "bob", JID: "bob@example.org", Params: map[string]string{KeyHost: "10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	_, err := fx.svc.ConnectionSettings(ctx, "bob")
	if !errors.Is(err, ErrSecretUnavailable) || !strings.Contains(err.Error(), "is not set") {
		t.Errorf("ConnectionSettings without a password: %v", err)
	}
	fx.svc.Set(ctx, "bob", KeyPassword, testPassword)
	c, err := fx.svc.ConnectionSettings(ctx, "bob")
	if err != nil || c.Host != "10.0.0.1" || c.Port != 0 || c.Password != testPassword {
		t.Errorf("ConnectionSettings = %v, %v", c, err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("connecting", "conn", c)
	printed := fmt.Sprintf("%v %+v %#v %s", c, c, c, logged.String())
	if strings.Contains(printed, testPassword) || !strings.Contains(printed, "bob@example.org") {
		t.Errorf("Connection printed or logged: %s", printed)
	}
}

func TestTypedValue(t *testing.T) {
	for _, tc := range []struct {
		t    params.Type
		in   string
		want any
	}{
		{params.TypeInt, "5", int64(5)},
		{params.TypeBool, "true", true},
		{params.TypeString, "", ""},
		{params.TypeSecret, "", nil},
		{params.TypeSecret, params.Mask, params.Mask},
		{params.TypeInt, "x", nil},
	} {
		if got := TypedValue(tc.t, tc.in); got != tc.want {
			t.Errorf("TypedValue(%s, %q) = %#v, want %#v", tc.t, tc.in, got, tc.want)
		}
	}
	if got := TypedValue(params.TypeList, `["a"]`).([]string); len(got) != 1 || got[0] != "a" {
		t.Errorf("list = %v", got)
	}
}
