package session

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"go.uber.org/goleak"
)

// Accounts created on every test server, user to password.
var testAccounts = map[string]string{
	"alice": "alice-secret-pw",
	"bob":   "bob-secret-pw",
	"carol": "carol-secret-pw",
	"dave":  "dave-secret-pw",
	"erin":  "erin-secret-pw",
	"frank": "frank-secret-pw",
	"grace": "grace-secret-pw",
}

// server is one shared test server (or why it could not start).
type server struct {
	once sync.Once
	srv  *testsvc.XMPPServer
	err  error
}

var (
	prosody      server
	ejabberd     server
	prosodyScram server
)

func (s *server) get(start func() (*testsvc.XMPPServer, error)) (*testsvc.XMPPServer, error) {
	s.once.Do(func() { s.srv, s.err = start() })
	return s.srv, s.err
}

// opts are the options of the shared servers: every one has a direct TLS
// listener; Prosody stores SHA-1 (its default) and the SCRAM-only Prosody
// SHA-256 password hashes, so they offer SCRAM-SHA-1 and SCRAM-SHA-256;
// ejabberd stores SHA-512 ones and offers SCRAM-SHA-512.
func opts(kind string, scram bool) testsvc.XMPPOptions {
	o := testsvc.XMPPOptions{ScramOnly: scram, Accounts: testAccounts, LogDir: os.Getenv("SESSION_TEST_LOGDIR"), DirectTLS: true}
	switch {
	case kind == testsvc.KindEjabberd:
		o.PasswordHash = "SHA-512"
	case scram:
		o.PasswordHash = "SHA-256"
	}
	return o
}

// useServer returns the shared server of kind ("prosody", "ejabberd" or
// "prosody-scram"), started on first use, and records its use.
func useServer(t *testing.T, kind string) *testsvc.XMPPServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var srv *testsvc.XMPPServer
	var err error
	switch kind {
	case testsvc.KindProsody:
		srv, err = prosody.get(func() (*testsvc.XMPPServer, error) { return testsvc.StartProsody(ctx, opts(kind, false)) })
	case testsvc.KindEjabberd:
		srv, err = ejabberd.get(func() (*testsvc.XMPPServer, error) { return testsvc.StartEjabberd(ctx, opts(kind, false)) })
	case "prosody-scram":
		srv, err = prosodyScram.get(func() (*testsvc.XMPPServer, error) { return testsvc.StartProsody(ctx, opts(kind, true)) })
		kind = testsvc.KindProsody
	default:
		t.Fatalf("unknown server kind %q", kind)
	}
	testsvc.RequireXMPP(t, err)
	testsvc.Uses(t, kind)
	return srv
}

// kinds are the real servers every protocol test runs against.
var kinds = []string{testsvc.KindProsody, testsvc.KindEjabberd}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*server{&prosody, &ejabberd, &prosodyScram} {
		if err := s.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop server:", err)
		}
	}
	if code == 0 {
		// Every session was stopped by its test: no goroutine may be left.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// logBuffer collects a session's logs (to check them for secrets) and
// echoes them to the test log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// fastBackoff keeps reconnection tests short.
func fastBackoff(int) time.Duration { return 50 * time.Millisecond }

// testConfig is a configuration for user on srv (or addr, e.g. a proxy).
func testConfig(srv *testsvc.XMPPServer, user, resource string) Config {
	return Config{
		JID:          user + "@" + srv.Domain,
		Password:     testAccounts[user],
		Resource:     resource,
		Host:         srv.Host,
		Port:         srv.Port,
		CAFile:       srv.CAFile,
		Timeout:      15 * time.Second,
		PingInterval: -1,
		Backoff:      fastBackoff,
	}
}

// testLogger logs at debug level into l.
func testLogger(l *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startSession starts a session and stops it when the test ends; it checks
// that the logs never hold the password.
func startSession(t *testing.T, cfg Config, h Handlers) (*Session, *logBuffer) {
	t.Helper()
	logs := &logBuffer{t: t}
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(cfg, h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start session of %s: %v", cfg.JID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop session of %s: %v", cfg.JID, err)
		}
		if st := s.State(); st != StateDisconnected {
			t.Errorf("state after Stop = %s, want disconnected", st)
		}
		if strings.Contains(logs.String(), cfg.Password) {
			t.Errorf("the logs of %s contain the password", cfg.JID)
		}
	})
	return s, logs
}

// eventually waits until cond holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stateRecorder records state changes.
type stateRecorder struct {
	mu     sync.Mutex
	states []State
	errs   []error
}

func (r *stateRecorder) record(st State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, st)
	r.errs = append(r.errs, err)
}

func (r *stateRecorder) count(st State) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.states {
		if s == st {
			n++
		}
	}
	return n
}
