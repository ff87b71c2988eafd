package connections

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/core/profiles"
	"example.org/backend/core/secrets"
	"example.org/backend/core/session"
	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
	"example.org/backend/triggers"
)

var servers = testsvc.SharedXMPP{Accounts: map[string]string{
	"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw",
}}

func TestMain(m *testing.M) {
	code := m.Run()
	servers.StopAll()
	os.Exit(code)
}

var kinds = []string{testsvc.KindProsody, testsvc.KindEjabberd}

// hooks is a plugin recording its profile hooks.
type hooks struct {
	mu    sync.Mutex
	calls []string
}

func (h *hooks) Info() core.PluginInfo {
	return core.PluginInfo{Name: "hooks", ImportName: "hooks", Version: "1"}
}
func (h *hooks) add(s string) { h.mu.Lock(); h.calls = append(h.calls, s); h.mu.Unlock() }
func (h *hooks) ProfileConnecting(ctx context.Context, p core.ProfileRef) error {
	h.add("connecting:" + p.Name)
	return nil
}
func (h *hooks) ProfileConnected(ctx context.Context, p core.ProfileRef) error {
	h.add("connected:" + p.Name)
	return nil
}
func (h *hooks) ProfileDisconnected(ctx context.Context, p core.ProfileRef) error {
	h.add("disconnected:" + p.Name)
	return nil
}
func (h *hooks) String() string { h.mu.Lock(); defer h.mu.Unlock(); return strings.Join(h.calls, " ") }

type fixture struct {
	host  *core.Host
	ps    *profiles.Service
	m     *Manager
	hooks *hooks
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	store, err := storage.Open(ctx, storage.Config{DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := core.NewHost(log, "test")
	h.Store = store
	if h.Secrets, err = secrets.OpenBox(dir); err != nil {
		t.Fatal(err)
	}
	if err := profiles.DeclareConnection(h.Params); err != nil {
		t.Fatal(err)
	}
	ps := profiles.New(h, nil)
	hk := &hooks{}
	plugins := core.NewPlugins(h, hk)
	m := New(h, ps, plugins, Options{PingInterval: -1, Timeout: 10 * time.Second, Backoff: func(int) time.Duration { return 100 * time.Millisecond }})
	h.Sessions = m
	if _, err := h.Bus.Attach("core", EventBindings(h.Events)...); err != nil {
		t.Fatal(err)
	}
	if err := plugins.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close(context.Background())
		plugins.Close(context.Background())
	})
	return &fixture{host: h, ps: ps, m: m, hooks: hk}
}

func (f *fixture) createProfile(t *testing.T, srv *testsvc.XMPPServer, name, user, password string, autoconnect bool) {
	t.Helper()
	_, err := f.ps.Create(context.Background(), profiles.CreateRequest{
		Name: name, JID: user + "@" + srv.Domain, Password: password,
		Params: map[string]string{
			profiles.KeyHost: srv.Host, profiles.KeyPort: strconv.Itoa(srv.Port), profiles.KeyCAFile: srv.CAFile,
			profiles.KeyAutoconnect: strconv.FormatBool(autoconnect),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectDisconnect(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := servers.Use(t, kind)
			f := newFixture(t)
			f.createProfile(t, srv, "alice", "alice", "alice-pw", false)
			sub := f.host.Events.Subscribe("alice")
			defer sub.Close()
			var connected []string
			var mu sync.Mutex
			f.host.Bus.Attach("test", triggers.Observe(Connected, triggers.PriorityDefault, func(ctx context.Context, ev ProfileEvent) error {
				mu.Lock()
				connected = append(connected, ev.JID)
				mu.Unlock()
				return nil
			}))
			defer f.host.Bus.DetachOwner("test")

			ctx := context.Background()
			if err := f.m.Connect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if st := f.m.State("alice"); st != "connected" {
				t.Errorf("state = %s", st)
			}
			eventually(t, "the connected hooks", func() bool { return strings.Contains(f.hooks.String(), "connected:alice") })
			if !strings.HasPrefix(f.hooks.String(), "connecting:alice connected:alice") {
				t.Errorf("hooks = %q", f.hooks)
			}
			mu.Lock()
			if len(connected) != 1 || !strings.HasPrefix(connected[0], "alice@"+srv.Domain+"/") {
				t.Errorf("session.connected = %v", connected)
			}
			mu.Unlock()
			x, err := f.m.Session("alice")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x.SendIQRaw(ctx, srv.Domain, "get", "<ping xmlns='urn:xmpp:ping'/>"); err != nil {
				t.Fatal(err)
			}
			if n := f.m.IQsSent()["alice"]; n < 1 {
				t.Errorf("IQs sent = %d", n)
			}
			p, _ := f.ps.Profile(ctx, "alice")
			if p.State != "connected" {
				t.Errorf("profiles report state %q", p.State)
			}
			// profile show's session: the configured endpoint, TLS, SASL.
			info, ok := f.ps.ConnInfo("alice")
			if !ok || info.Endpoint.Addr() != srv.Addr() || info.Endpoint.Origin != session.OriginConfigured ||
				!strings.HasPrefix(info.TLSVersion, "TLS 1.") || !strings.HasPrefix(info.Mechanism, "SCRAM-SHA-") || info.JID != x.JID() {
				t.Errorf("ConnInfo = %+v, %v", info, ok)
			}
			// Connecting again is a no-op.
			if err := f.m.Connect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Disconnect(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if st := f.m.State("alice"); st != "disconnected" {
				t.Errorf("after disconnect: state = %s", st)
			}
			if _, err := f.m.Session("alice"); !errors.Is(err, core.ErrNotConnected) {
				t.Errorf("session after disconnect: %v", err)
			}
			if _, ok := f.ps.ConnInfo("alice"); ok {
				t.Error("ConnInfo after disconnect")
			}
			eventually(t, "the disconnected hook", func() bool { return strings.Contains(f.hooks.String(), "disconnected:alice") })
			if n := f.m.IQsSent()["alice"]; n < 1 {
				t.Errorf("IQ counter lost on disconnect: %d", n)
			}
			// The event stream saw connecting → connected → disconnected.
			var states []string
			for len(sub.C) > 0 {
				if st := (<-sub.C).GetSessionState(); st != nil {
					states = append(states, st.GetState())
				}
			}
			if got := strings.Join(states, ","); !strings.Contains(got, "connected") || !strings.HasSuffix(got, "disconnected") {
				t.Errorf("session.state events = %s", got)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := servers.Use(t, kind)
			f := newFixture(t)
			f.createProfile(t, srv, "bob", "bob", "not-bobs-password", false)
			err := f.m.Connect(context.Background(), "bob")
			var auth *session.AuthError
			if !errors.As(err, &auth) || auth.Condition != "not-authorized" {
				t.Fatalf("err = %v, want an AuthError with not-authorized", err)
			}
			if !strings.Contains(err.Error(), "not-authorized") {
				t.Errorf("message does not name the condition: %v", err)
			}
			if st := f.m.State("bob"); st != "disconnected" {
				t.Errorf("state after a refused login = %s", st)
			}
		})
	}
}

// A plugin adding a disco feature makes every session re-send its presence
// with the new caps hash: another resource of the same account sees it.
func TestCapsResentWhenAPluginAddsAFeature(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := servers.Use(t, kind)
			f := newFixture(t)
			f.createProfile(t, srv, "carol", "carol", "carol-pw", false)
			ctx := context.Background()
			if err := f.m.Connect(ctx, "carol"); err != nil {
				t.Fatal(err)
			}
			x, _ := f.m.Session("carol")
			full := x.JID()

			var mu sync.Mutex
			vers := map[string]bool{}
			other := session.New(session.Config{JID: "carol@" + srv.Domain, Password: "carol-pw", Resource: "watcher",
				Host: srv.Host, Port: srv.Port, CAFile: srv.CAFile, PingInterval: -1,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
				session.Handlers{Presence: func(p *stanza.Presence) {
					if p.From != full {
						return
					}
					for _, e := range p.Extensions {
						if c, ok := e.(*capsExt); ok {
							mu.Lock()
							vers[c.Ver] = true
							mu.Unlock()
						}
					}
				}})
			if err := other.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer other.Stop(ctx)

			f.m.AddFeatures("microblog", "urn:xmpp:microblog:0+notify")
			want := session.CapsVer([]session.Identity{f.m.identity()}, append(baseFeatures(), "urn:xmpp:microblog:0+notify"))
			eventually(t, "a presence with the new caps hash "+want, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return vers[want]
			})
		})
	}
}

// capsExt decodes the XEP-0115 <c/> of presences (gosrc.io/xmpp has no
// presence type for it).
type capsExt struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/caps c"`
	Ver     string   `xml:"ver,attr"`
}

func (*capsExt) Namespace() string { return session.NSCaps }

func init() {
	stanza.TypeRegistry.MapExtension(stanza.PKTPresence, xml.Name{Space: session.NSCaps, Local: "c"}, capsExt{})
}

// baseFeatures are the features every session advertises by itself.
func baseFeatures() []string {
	return []string{session.NSCaps, session.NSDiscoInfo, session.NSPing}
}

func TestAutoconnectAndDelete(t *testing.T) {
	srv := servers.Use(t, testsvc.KindProsody)
	f := newFixture(t)
	f.createProfile(t, srv, "dave", "dave", "dave-pw", true)
	f.createProfile(t, srv, "manual", "alice", "alice-pw", false)
	ctx := context.Background()
	f.m.Autoconnect(ctx)
	eventually(t, "dave autoconnected", func() bool { return f.m.State("dave") == "connected" })
	if st := f.m.State("manual"); st != "disconnected" {
		t.Errorf("a profile without autoconnect is %s", st)
	}
	if err := f.ps.Delete(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	if st := f.m.State("dave"); st != "disconnected" {
		t.Errorf("deleted profile still %s", st)
	}
}

func TestUnknownProfile(t *testing.T) {
	f := newFixture(t)
	if err := f.m.Connect(context.Background(), "nobody"); !errors.Is(err, profiles.ErrNotFound) {
		t.Errorf("err = %v", err)
	}
}
