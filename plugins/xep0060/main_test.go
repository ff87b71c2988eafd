package xep0060

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
	"example.org/backend/triggers"
)

var servers = testsvc.SharedXMPP{Accounts: map[string]string{
	"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw",
}}

func TestMain(m *testing.M) {
	code := m.Run()
	servers.StopAll()
	os.Exit(code)
}

var kinds = []string{testsvc.KindProsody, testsvc.KindEjabberd}

// fixture is a host with the connection manager and the plugin, and
// connected profiles named after their accounts.
type fixture struct {
	srv    *testsvc.XMPPServer
	host   *core.Host
	m      *connections.Manager
	plugin *Plugin
	c      *Client
	rec    *recorder
}

func newFixture(t *testing.T, srv *testsvc.XMPPServer, users ...string) *fixture {
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
	p := New()
	plugins := core.NewPlugins(h, p)
	m := connections.New(h, ps, plugins, connections.Options{PingInterval: -1, Timeout: 20 * time.Second,
		Backoff: func(int) time.Duration { return 100 * time.Millisecond }})
	h.Sessions = m
	if err := plugins.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, host: h, m: m, plugin: p, c: p.Client(), rec: newRecorder()}
	if _, err := h.Bus.Attach("test-recorder", f.rec.bindings()...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close(context.Background())
		plugins.Close(context.Background())
	})
	for _, u := range users {
		_, err := ps.Create(ctx, profiles.CreateRequest{
			Name: u, JID: u + "@" + srv.Domain, Password: u + "-pw",
			Params: map[string]string{profiles.KeyHost: srv.Host, profiles.KeyPort: strconv.Itoa(srv.Port), profiles.KeyCAFile: srv.CAFile},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Connect(ctx, u); err != nil {
			t.Fatalf("connect %s: %v", u, err)
		}
	}
	return f
}

// jid is the bare JID of a test account.
func (f *fixture) jid(user string) string { return user + "@" + f.srv.Domain }

// uniq returns a fresh node name.
func uniq(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// recorder keeps every pubsub bus event for assertions.
type recorder struct {
	mu     sync.Mutex
	events []any
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) add(v any) {
	r.mu.Lock()
	r.events = append(r.events, v)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func observe[T any](r *recorder, e *triggers.Event[T]) triggers.Binding {
	return triggers.Observe(e, triggers.PriorityDefault, func(ctx context.Context, v T) error { r.add(v); return nil })
}

func (r *recorder) bindings() []triggers.Binding {
	return []triggers.Binding{
		observe(r, EventItems), observe(r, EventPurge), observe(r, EventDelete),
		observe(r, EventConfiguration), observe(r, EventSubscription),
	}
}

// wait returns the first recorded event matching, waiting up to 20s.
func wait[T any](t *testing.T, r *recorder, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if v, ok := e.(T); ok && match(v) {
				r.mu.Unlock()
				return v
			}
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-deadline:
			var zero T
			t.Fatalf("timed out waiting for %s", what)
			return zero
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
