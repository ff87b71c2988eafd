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

// watched is a session whose connections, resumptions and
// disconnections are counted.
type watched struct {
	*Session
	srv          *testsvc.XMPPServer
	connected    atomic.Int32
	resumed      atomic.Int32
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
		Resumed: func(j string) {
			if j != w.JID() {
				t.Errorf("Resumed(%q), want the bound JID %q", j, w.JID())
			}
			w.resumed.Add(1)
		},
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

// lastLoss is the cause of the last reported Reconnecting state.
func (w *watched) lastLoss() error {
	r := &w.states
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.states) - 1; i >= 0; i-- {
		if r.states[i] == StateReconnecting {
			return r.errs[i]
		}
	}
	return nil
}

// waitResumed waits for the n-th resumption of the first binding (no
// other connection, no disconnection) and checks it with a ping.
func (w *watched) waitResumed(t *testing.T, n int32, jid string) {
	t.Helper()
	begin := time.Now()
	eventually(t, 30*time.Second, "resumption", func() bool {
		return w.resumed.Load() >= n && w.State() == StateConnected
	})
	t.Logf("resumed (%d) %v after the fault", n, time.Since(begin).Round(time.Millisecond))
	if c, d := w.connected.Load(), w.disconnected.Load(); c != 1 || d != 0 {
		t.Errorf("Connected %d times, Disconnected %d times; want 1 and 0", c, d)
	}
	if info, ok := w.ConnInfo(); !ok || !info.Resumed || info.JID != jid || w.JID() != jid {
		t.Errorf("after resumption: JID %q, ConnInfo %+v, want %s resumed", w.JID(), info, jid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.SendIQRaw(ctx, w.srv.Domain, "get", pingPayload); err != nil {
		t.Fatalf("ping after resumption %d: %v", n, err)
	}
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

// TestResumeAfterTCPCut: ten TCP resets, each followed by a resumption of
// the same binding (XEP-0198): no disconnection is reported, the JID
// stays, no goroutine piles up.
func TestResumeAfterTCPCut(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			w := startWatched(t, srv, "frank", "tcp-cut", proxy, nil)
			if info, _ := w.ConnInfo(); !info.StreamManagement || !info.Resumable {
				t.Fatalf("stream management not enabled: %+v", info)
			}
			jid := w.JID()
			baseline := runtime.NumGoroutine()
			for i := int32(1); i <= 10; i++ {
				proxy.CutAll()
				w.waitResumed(t, i, jid)
				// No goroutine piles up across reconnections (the
				// transport's close signal ends right after the close).
				eventually(t, 5*time.Second, "a flat goroutine count", func() bool {
					return runtime.NumGoroutine() <= baseline
				})
			}
			if proxy.Accepted() != 11 {
				t.Errorf("proxy accepted %d connections, want 11", proxy.Accepted())
			}
			if n := w.states.count(StateResumed); n != 10 {
				t.Errorf("%d resumed states, want 10: %v", n, w.states.states)
			}
		})
	}
}

// TestResumeAfterSilentNetwork: a network that silently stops delivering
// (a half-open connection) is noticed by the unanswered <r/> of the
// liveness check within PingInterval + PingTimeout, and the stream is
// resumed once the network is back.
func TestResumeAfterSilentNetwork(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			w := startWatched(t, srv, "frank", "silent", proxy, func(c *Config) {
				c.PingInterval = 200 * time.Millisecond
				c.PingTimeout = 500 * time.Millisecond
			})
			jid := w.JID()
			proxy.Pause()
			eventually(t, 10*time.Second, "the half-open connection noticed", func() bool { return w.states.count(StateReconnecting) == 1 })
			if cause := w.lastLoss(); !errors.Is(cause, ErrPingTimeout) {
				t.Errorf("cause = %v, want ErrPingTimeout", cause)
			}
			// New connections through a paused proxy stall too: the network
			// comes back.
			proxy.Resume()
			w.waitResumed(t, 1, jid)
		})
	}
}

// TestReconnectAfterServerRestart: the restarted server has forgotten the
// binding: the resumption is refused, a fresh login follows, reported as
// a disconnection (ErrResumptionFailed) then a connection.
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
			t.Logf("%s restart: lost by %v, disconnected by %v", kind, w.lastLoss(), w.lastCause())
			if w.resumed.Load() != 0 {
				t.Error("resumed a binding the server forgot")
			}
		})
	}
}

// TestStopWhileReconnecting: Stop ends a supervisor that is waiting to
// reconnect to a server refusing connections, with no goroutine left.
func TestStopWhileReconnecting(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	proxy := testsvc.ProxyFor(t, srv)
	// An endpoint that resets the connection fails the attempt at once,
	// not after Timeout: three attempts come well before one Timeout.
	w := startWatched(t, srv, "grace", "stop-reconnecting", proxy, func(c *Config) {
		c.Timeout = time.Minute
		c.Backoff = func(int) time.Duration { return 100 * time.Millisecond }
	})
	proxy.RefuseNew(true)
	proxy.CutAll()
	eventually(t, 20*time.Second, "failed reconnection attempts", func() bool { return proxy.Accepted() >= 4 })
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
	// The binding waiting for its resumption ends with Stop: reported once,
	// as a requested end.
	if n := w.disconnected.Load(); n != 1 || w.lastCause() != nil {
		t.Errorf("Disconnected %d times, last cause %v; want once, nil", n, w.lastCause())
	}
	if _, err := w.SendIQRaw(ctx, srv.Domain, "get", pingPayload); !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendIQRaw after Stop: %v, want ErrNotConnected", err)
	}
}
