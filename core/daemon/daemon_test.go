package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core"
	"example.org/backend/core/config"
	"example.org/backend/core/connections"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/triggers"
)

// shortDir returns a temp dir with a path short enough for Unix sockets.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("/tmp", "bd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type plug struct{}

func (plug) Info() core.PluginInfo {
	return core.PluginInfo{Name: "P", ImportName: "p", Version: "0.1"}
}

type startOption func(*Options)

func withFirstParty(m map[string]*sdk.Plugin) startOption {
	return func(o *Options) { o.FirstParty = m }
}

// start runs a daemon in-process and returns it once ready.
func start(t *testing.T, mut func(*config.Config), opts ...startOption) (*Daemon, config.Config) {
	t.Helper()
	dir := shortDir(t)
	cfg := config.Default(func(string) (string, bool) { return "", false })
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Socket = filepath.Join(dir, "api.sock")
	cfg.APITokenFile = filepath.Join(dir, "data", "api.token")
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Daemon, 1)
	exited := make(chan struct{})
	var runErr error
	go func() {
		defer close(exited)
		o := Options{Config: cfg, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Builtins: []core.Plugin{plug{}}, Ready: func(d *Daemon) { ready <- d }}
		for _, f := range opts {
			f(&o)
		}
		runErr = Run(ctx, o)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if runErr != nil {
			t.Errorf("daemon exit: %v", runErr)
		}
		if _, err := os.Stat(cfg.Socket); !os.IsNotExist(err) {
			t.Errorf("socket left behind after shutdown: %v", err)
		}
	})
	select {
	case d := <-ready:
		return d, cfg
	case <-exited:
		t.Fatalf("daemon did not start: %v", runErr)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30s")
	}
	return nil, cfg
}

func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

func TestStatusAndTriggers(t *testing.T) {
	d, cfg := start(t, nil)
	d.Host.Counters.Get(core.CounterPubsubItemsRequests).Add(3)
	st, err := os.Stat(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %o, want 600", st.Mode().Perm())
	}
	c := backendv1connect.NewDaemonServiceClient(unixClient(cfg.Socket), "http://backend")
	res, err := c.Status(context.Background(), connect.NewRequest(&backendv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Version != "test" || res.Msg.Counters[core.CounterPubsubItemsRequests] != 3 {
		t.Errorf("status = %v", res.Msg)
	}
	if len(res.Msg.Plugins) != 1 || res.Msg.Plugins[0].Name != "p" || res.Msg.Plugins[0].State != "running" {
		t.Errorf("plugins = %v", res.Msg.Plugins)
	}
	if _, err := c.ListTriggers(context.Background(), connect.NewRequest(&backendv1.ListTriggersRequest{})); err != nil {
		t.Fatal(err)
	}
	// Prometheus metrics on the socket.
	resp, err := unixClient(cfg.Socket).Get("http://backend/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "backend_pubsub_items_requests_total 3") {
		t.Errorf("metrics lack the counter:\n%.500s", body)
	}
}

// TestEventsStream: a bus event reaches both streams through its bridge,
// once: typed on v2 (a "resumed" session state included), as type and
// data_json on the deprecated v1; another profile's events are filtered.
func TestEventsStream(t *testing.T) {
	d, cfg := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v2 := backendv2connect.NewDaemonServiceClient(unixClient(cfg.Socket), "http://backend")
	s2, err := v2.Events(ctx, connect.NewRequest(&backendv2.EventsRequest{Profile: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Receive() || s2.Msg().GetStarted() == nil {
		t.Fatalf("no started: %v", s2.Err())
	}
	v1 := backendv1connect.NewDaemonServiceClient(unixClient(cfg.Socket), "http://backend")
	s1, err := v1.Events(ctx, connect.NewRequest(&backendv1.EventsRequest{Profile: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if !s1.Receive() || s1.Msg().Type != "stream.started" {
		t.Fatalf("no stream.started: %v", s1.Err())
	}
	for _, c := range []connections.StateChange{
		{Profile: "bob", State: "connected"},
		{Profile: "alice", State: "resumed"},
		{Profile: "alice", State: "reconnecting", Err: errors.New("connection lost")},
	} {
		if err := triggers.Notify(ctx, d.Host.Bus, connections.StateChanged, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"resumed <nil>", "reconnecting connection lost"} {
		if !s2.Receive() {
			t.Fatal(s2.Err())
		}
		ev := s2.Msg()
		st := ev.GetSessionState()
		if got := fmt.Sprintf("%s %v", st.GetState(), errText(st.Error)); ev.GetProfile() != "alice" || got != want || ev.GetTime() == nil {
			t.Errorf("v2 event = %v, want alice %s (bob's event must be filtered out)", ev, want)
		}
		if !s1.Receive() {
			t.Fatal(s1.Err())
		}
		old := s1.Msg()
		var data map[string]any
		json.Unmarshal(old.DataJson, &data)
		if got := fmt.Sprintf("%v %v", data["state"], data["error"]); old.Profile != "alice" || old.Type != "session.state" || got != want {
			t.Errorf("v1 event = %v (data %v), want %s", old, data, want)
		}
	}
}

func errText(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func TestTCPRequiresToken(t *testing.T) {
	port := freePort(t)
	_, cfg := start(t, func(c *config.Config) {
		c.APITCPAddress, c.APITCPPlaintext = fmt.Sprintf("127.0.0.1:%d", port), "loopback" // TLS: cmd/backend TestTCPListenerTLS
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := backendv1connect.NewDaemonServiceClient(http.DefaultClient, base)
	_, err := c.Status(context.Background(), connect.NewRequest(&backendv1.StatusRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("without token: err = %v, want unauthenticated", err)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("metrics over TCP without token: %d", resp.StatusCode)
	}
	st, err := os.Stat(cfg.APITokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v mode %v", err, st)
	}
	tok, _ := os.ReadFile(cfg.APITokenFile)
	req := connect.NewRequest(&backendv1.StatusRequest{})
	req.Header().Set("Authorization", "Bearer wrong"+strings.TrimSpace(string(tok)))
	if _, err := c.Status(context.Background(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("wrong token: err = %v", err)
	}
	req = connect.NewRequest(&backendv1.StatusRequest{})
	req.Header().Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if _, err := c.Status(context.Background(), req); err != nil {
		t.Errorf("with token: %v", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	_, cfg := start(t, nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Same data directory, another socket: the database lock refuses it.
	same := cfg
	same.Socket = filepath.Join(shortDir(t), "other.sock")
	err := Run(context.Background(), Options{Config: same, Version: "test", Log: quiet})
	if err == nil || !strings.Contains(err.Error(), "database is in use by another daemon") {
		t.Fatalf("second daemon on the same database: err = %v", err)
	}
	// Another data directory, same socket: the socket lock refuses it.
	other := cfg
	other.DataDir = filepath.Join(shortDir(t), "data")
	err = Run(context.Background(), Options{Config: other, Version: "test", Log: quiet})
	if err == nil || !strings.Contains(err.Error(), "another daemon is already running") {
		t.Fatalf("second daemon on the same socket: err = %v", err)
	}
	// The first one still answers.
	c := backendv1connect.NewDaemonServiceClient(unixClient(cfg.Socket), "http://backend")
	if _, err := c.Status(context.Background(), connect.NewRequest(&backendv1.StatusRequest{})); err != nil {
		t.Fatalf("first daemon broken by the second: %v", err)
	}
}
