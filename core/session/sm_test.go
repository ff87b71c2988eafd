package session

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"gosrc.io/xmpp/stanza"
)

// inbox records the ids of the messages a session receives with a prefix.
type inbox struct {
	prefix string
	mu     sync.Mutex
	ids    []string
}

func (in *inbox) handler(m *stanza.Message) {
	if !strings.HasPrefix(m.Id, in.prefix) {
		return
	}
	in.mu.Lock()
	in.ids = append(in.ids, m.Id)
	in.mu.Unlock()
}

func (in *inbox) got() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return strings.Join(in.ids, ",")
}

// cutAndHold cuts the proxied connections and refuses new ones: the
// network is gone until the returned function restores it.
func cutAndHold(proxy *testsvc.Proxy) (restore func()) {
	proxy.RefuseNew(true)
	proxy.CutAll()
	return func() { proxy.RefuseNew(false) }
}

func chat(to, id string) stanza.Message {
	m := stanza.NewMessage(stanza.Attrs{To: to, Type: stanza.MessageTypeChat, Id: id})
	m.Body = id
	return m
}

// TestResumeDeliversBothWays: a stanza written while the network holds
// everything (then cut) is lost on the wire; messages sent to the session
// during the gap are held by the server. After the resumption, on both
// servers: the lost stanza reached its recipient once, the held messages
// arrived once and in order before the resumption was reported, an IQ in
// flight got its answer, the JID is the same, and no disconnection was
// reported.
func TestResumeDeliversBothWays(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			aliceIn := &inbox{prefix: "gap-"}
			var resumedSeen string // alice's inbox when Resumed ran
			var rec stateRecorder
			var connected, disconnected, resumed int
			var mu sync.Mutex
			cfg := testConfig(srv, "dave", "resume")
			cfg.Host, cfg.Port = "127.0.0.1", proxy.Port()
			alice, _ := startSession(t, cfg, Handlers{
				Message:      aliceIn.handler,
				StateChanged: rec.record,
				Connected:    func(context.Context, string) { mu.Lock(); connected++; mu.Unlock() },
				Disconnected: func(error) { mu.Lock(); disconnected++; mu.Unlock() },
				Resumed: func(string) {
					mu.Lock()
					resumed++
					resumedSeen = aliceIn.got()
					mu.Unlock()
				},
			})
			jid := alice.JID()
			bobIn := &inbox{prefix: "lost-"}
			bob, _ := startSession(t, testConfig(srv, "erin", "resume"), Handlers{Message: bobIn.handler})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			// The network holds everything: a message and a ping go into it.
			proxy.Pause()
			if err := alice.Send(ctx, chat(bob.JID(), "lost-1")); err != nil {
				t.Fatal(err)
			}
			ping := make(chan error, 1)
			go func() {
				_, err := alice.SendIQRaw(ctx, srv.Domain, "get", pingPayload)
				ping <- err
			}()
			time.Sleep(100 * time.Millisecond)
			restore := cutAndHold(proxy) // what the network held is gone
			proxy.Resume()
			eventually(t, 10*time.Second, "the loss noticed", func() bool { return rec.count(StateReconnecting) == 1 })
			for i := range 5 {
				if err := bob.Send(ctx, chat(jid, "gap-"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Second) // a gap with failing attempts
			restore()
			eventually(t, 20*time.Second, "the resumption", func() bool { return rec.count(StateResumed) == 1 && alice.State() == StateConnected })
			want := "gap-0,gap-1,gap-2,gap-3,gap-4"
			mu.Lock()
			if resumedSeen != want || connected != 1 || disconnected != 0 || resumed != 1 {
				t.Errorf("when resumed, alice had %q (want %s); connected %d, disconnected %d, resumed %d; want 1, 0, 1",
					resumedSeen, want, connected, disconnected, resumed)
			}
			mu.Unlock()
			if got := aliceIn.got(); got != want {
				t.Errorf("alice received %s, want %s", got, want)
			}
			select {
			case err := <-ping:
				if err != nil {
					t.Errorf("the ping in flight: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("the ping in flight was never answered")
			}
			eventually(t, 10*time.Second, "the lost message delivered", func() bool { return bobIn.got() != "" })
			time.Sleep(200 * time.Millisecond)
			if got := bobIn.got(); got != "lost-1" {
				t.Errorf("bob received %q, want lost-1 once", got)
			}
			if alice.JID() != jid {
				t.Errorf("JID %s after resumption, want %s", alice.JID(), jid)
			}
			if proxy.Accepted() < 3 {
				t.Errorf("%d connections: the gap saw no failed attempt", proxy.Accepted())
			}
		})
	}
}

// TestResumeWindowPassed: a gap longer than the server's window: the
// disconnection is reported when the window passes (ErrResumptionFailed),
// an IQ in flight fails with ErrDisconnected, and a fresh login follows
// once the network is back.
func TestResumeWindowPassed(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			w := startWatched(t, srv, "grace", "window", proxy, nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			proxy.Pause()
			ping := make(chan error, 1)
			go func() {
				_, err := w.SendIQRaw(ctx, srv.Domain, "get", pingPayload)
				ping <- err
			}()
			time.Sleep(100 * time.Millisecond)
			restore := cutAndHold(proxy)
			proxy.Resume()
			lost := time.Now()
			eventually(t, 30*time.Second, "the window's end", func() bool { return w.disconnected.Load() == 1 })
			t.Logf("disconnection reported %v after the loss (window %s)", time.Since(lost).Round(time.Millisecond), testsvc.ResumeWindow)
			if err := w.lastCause(); !errors.Is(err, ErrResumptionFailed) {
				t.Errorf("cause %v, want ErrResumptionFailed", err)
			}
			select {
			case err := <-ping:
				if !errors.Is(err, ErrDisconnected) {
					t.Errorf("the ping in flight: %v, want ErrDisconnected", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("the ping in flight never ended")
			}
			if w.State() != StateReconnecting {
				t.Errorf("state %s, want reconnecting", w.State())
			}
			restore()
			w.waitReconnected(t, 2)
			if w.resumed.Load() != 0 || w.states.count(StateResumed) != 0 {
				t.Error("resumed after the window")
			}
			if info, _ := w.ConnInfo(); info.Resumed || !info.Resumable {
				t.Errorf("ConnInfo %+v, want a fresh resumable binding", info)
			}
		})
	}
}

// TestHalfOpenNoticedByAck: with liveness checks off, a network that
// silently stops delivering is noticed by the <r/> that goes with the next
// stanza, within PingTimeout; the stream is then resumed and the stanza
// delivered once.
func TestHalfOpenNoticedByAck(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			w := startWatched(t, srv, "frank", "half-open", proxy, func(c *Config) {
				c.PingInterval = -1
				c.PingTimeout = 500 * time.Millisecond
			})
			bobIn := &inbox{prefix: "silent-"}
			bob, _ := startSession(t, testConfig(srv, "erin", "half-open"), Handlers{Message: bobIn.handler})
			jid := w.JID()
			proxy.Pause()
			if err := w.Send(context.Background(), chat(bob.JID(), "silent-1")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the silence noticed", func() bool { return w.states.count(StateReconnecting) == 1 })
			if cause := w.lastLoss(); !errors.Is(cause, ErrPingTimeout) {
				t.Errorf("cause = %v, want ErrPingTimeout", cause)
			}
			proxy.Resume()
			w.waitResumed(t, 1, jid)
			eventually(t, 10*time.Second, "the message delivered", func() bool { return bobIn.got() != "" })
			time.Sleep(200 * time.Millisecond)
			if got := bobIn.got(); got != "silent-1" {
				t.Errorf("bob received %q, want silent-1 once", got)
			}
		})
	}
}
