package session

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// watched is a session whose connections and disconnections are counted.
type watched struct {
	*Session
	srv          *testsvc.XMPPServer
	connected    atomic.Int32
	disconnected atomic.Int32
	mu           sync.Mutex
	causes       []error
	states       stateRecorder
}

// startWatched starts a session for user, through addr when not empty
// (e.g. a proxy), with cfgMod applied.
func startWatched(t *testing.T, srv *testsvc.XMPPServer, user, resource string, proxy *testsvc.Proxy, cfgMod func(*Config)) *watched {
	t.Helper()
	w := &watched{srv: srv}
	cfg := testConfig(srv, user, resource)
	if proxy != nil {
		cfg.Host, cfg.Port = "127.0.0.1", proxy.Port()
	}
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	w.Session, _ = startSession(t, cfg, Handlers{
		Connected: func(context.Context, string) { w.connected.Add(1) },
		Disconnected: func(err error) {
			w.mu.Lock()
			w.causes = append(w.causes, err)
			w.mu.Unlock()
			w.disconnected.Add(1)
		},
		StateChanged: w.states.record,
	})
	eventually(t, 10*time.Second, "Connected", func() bool { return w.connected.Load() == 1 })
	return w
}

// lastCause is the cause of the last disconnection.
func (w *watched) lastCause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.causes) == 0 {
		return nil
	}
	return w.causes[len(w.causes)-1]
}

// waitReconnected waits for the n-th connection and checks it with a ping.
func (w *watched) waitReconnected(t *testing.T, n int32) {
	t.Helper()
	begin := time.Now()
	eventually(t, 60*time.Second, "reconnection", func() bool {
		return w.connected.Load() >= n && w.State() == StateConnected
	})
	// A figure for the record (not asserted: machines are noisy).
	t.Logf("reconnected (connection %d) %v after the fault", n, time.Since(begin).Round(time.Millisecond))
	if got := w.disconnected.Load(); got != n-1 {
		t.Errorf("Disconnected called %d times, want %d", got, n-1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.SendIQRaw(ctx, w.srv.Domain, "get", pingPayload); err != nil {
		t.Fatalf("ping after reconnection %d: %v", n-1, err)
	}
}

func TestReconnectAfterServerClose(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			w := startWatched(t, srv, "erin", "server-close", nil, nil)
			if err := srv.CloseStream(context.Background(), w.JID()); err != nil {
				t.Fatal(err)
			}
			w.waitReconnected(t, 2)
			cause := w.lastCause()
			var se *StreamError
			switch kind {
			case testsvc.KindProsody: // c2s:close sends </stream:stream> only
				if !errors.Is(cause, ErrStreamClosed) {
					t.Errorf("cause = %v, want ErrStreamClosed", cause)
				}
			case testsvc.KindEjabberd: // kick_session: <conflict/> stream error
				if !errors.As(cause, &se) {
					t.Errorf("cause = %v, want a *StreamError", cause)
				}
			}
			if w.states.count(StateReconnecting) != 1 {
				t.Errorf("states %v", w.states.states)
			}
		})
	}
}

func TestReconnectAfterTCPCut(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy, err := testsvc.NewProxy(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			w := startWatched(t, srv, "frank", "tcp-cut", proxy, nil)
			baseline := runtime.NumGoroutine()
			for i := int32(2); i <= 11; i++ { // 10 reconnections
				proxy.CutAll()
				w.waitReconnected(t, i)
				// No goroutine piles up across reconnections (the
				// transport's close signal ends right after the close).
				eventually(t, 5*time.Second, "a flat goroutine count", func() bool {
					return runtime.NumGoroutine() <= baseline
				})
			}
			if proxy.Accepted() != 11 {
				t.Errorf("proxy accepted %d connections, want 11", proxy.Accepted())
			}
		})
	}
}

func TestReconnectAfterSilentNetwork(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy, err := testsvc.NewProxy(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			w := startWatched(t, srv, "frank", "silent", proxy, func(c *Config) {
				c.PingInterval = 200 * time.Millisecond
				c.PingTimeout = 500 * time.Millisecond
			})
			proxy.Pause()
			eventually(t, 10*time.Second, "the ping timeout", func() bool { return w.disconnected.Load() == 1 })
			if cause := w.lastCause(); !errors.Is(cause, ErrPingTimeout) {
				t.Errorf("cause = %v, want ErrPingTimeout", cause)
			}
			// New connections through a paused proxy stall too: the network
			// comes back.
			proxy.Resume()
			w.waitReconnected(t, 2)
		})
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			w := startWatched(t, srv, "erin", "restart", nil, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			w.waitReconnected(t, 2)
			t.Logf("%s restart: disconnected by %v", kind, w.lastCause())
		})
	}
}

// TestStopWhileReconnecting: Stop ends a supervisor that is waiting to
// reconnect to a server refusing connections, with no goroutine left.
func TestStopWhileReconnecting(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	proxy, err := testsvc.NewProxy(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// A connection reset during the stream open costs Timeout (the
	// transport waits that long for a stream close): keep it short.
	w := startWatched(t, srv, "grace", "stop-reconnecting", proxy, func(c *Config) { c.Timeout = time.Second })
	proxy.RefuseNew(true)
	proxy.CutAll()
	eventually(t, 20*time.Second, "failed reconnection attempts", func() bool { return proxy.Accepted() >= 3 })
	if w.State() != StateReconnecting {
		t.Errorf("state = %s, want reconnecting", w.State())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if w.State() != StateDisconnected {
		t.Errorf("state = %s", w.State())
	}
	if _, err := w.SendIQRaw(ctx, srv.Domain, "get", pingPayload); !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendIQRaw after Stop: %v, want ErrNotConnected", err)
	}
}
