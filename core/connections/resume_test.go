package connections

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"example.org/backend/core"
	"example.org/backend/core/profiles"
	"example.org/backend/core/session"
	"example.org/backend/internal/testsvc"
	"example.org/backend/triggers"
)

// busLog records the session points a plugin observes.
type busLog struct {
	mu     sync.Mutex
	points []string
	errs   []error
}

func (l *busLog) add(s string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.points = append(l.points, s)
	if err != nil {
		l.errs = append(l.errs, err)
	}
}

func (l *busLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.points, " ")
}

func (l *busLog) lastErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs[len(l.errs)-1]
}

// TestResumedIsNoDisconnection: on both servers, a TCP cut followed by a
// resumption fires neither session.disconnected nor session.connected nor
// the plugins' hooks, only session.resumed with the same JID and a
// session.state event "resumed"; a gap longer than the server's window
// then fires session.disconnected (ErrResumptionFailed) and, once the
// network is back, a fresh session.connected.
func TestResumedIsNoDisconnection(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := servers.Use(t, kind)
			proxy := testsvc.ProxyFor(t, srv)
			f := newFixture(t)
			_, err := f.ps.Create(context.Background(), profiles.CreateRequest{
				Name: "carol", JID: "carol@" + srv.Domain, Password: "carol-pw",
				Params: map[string]string{profiles.KeyHost: "127.0.0.1", profiles.KeyPort: strconv.Itoa(proxy.Port()), profiles.KeyCAFile: srv.CAFile},
			})
			if err != nil {
				t.Fatal(err)
			}
			bus := &busLog{}
			observe := func(p *triggers.Event[ProfileEvent], name string) triggers.Binding {
				return triggers.Observe(p, triggers.PriorityDefault, func(ctx context.Context, ev ProfileEvent) error {
					bus.add(name+":"+ev.JID, ev.Err)
					return nil
				})
			}
			f.host.Bus.Attach("test", observe(Connected, "connected"), observe(Resumed, "resumed"), observe(Disconnected, "disconnected"))
			defer f.host.Bus.DetachOwner("test")
			sub := f.host.Events.Subscribe("carol")
			defer sub.Close()
			ctx := context.Background()
			if err := f.m.Connect(ctx, "carol"); err != nil {
				t.Fatal(err)
			}
			x, _ := f.m.Session("carol")
			jid := x.JID()
			eventually(t, "the connected hooks", func() bool { return strings.Contains(f.hooks.String(), "connected:carol") })

			proxy.CutAll()
			eventually(t, "session.resumed", func() bool { return strings.Contains(bus.String(), "resumed:") })
			if got, want := bus.String(), "connected:"+jid+" resumed:"+jid; got != want {
				t.Errorf("bus points %q, want %q", got, want)
			}
			if got := f.hooks.String(); got != "connecting:carol connected:carol" {
				t.Errorf("plugin hooks %q: a resumed stream ran them", got)
			}
			if st := f.m.State("carol"); st != "connected" {
				t.Errorf("state %s after resumption", st)
			}
			states := stateEvents(t, sub, "resumed")
			if got := strings.Join(states.names, ","); got != "connecting,connected,reconnecting,resumed" {
				t.Errorf("session.state events %s", got)
			}
			if states.jids["resumed"] != jid || states.jids["connected"] != jid {
				t.Errorf("session.state JIDs %v, want %s", states.jids, jid)
			}
			if n := counterValue(f.m.resumptions.With("resumed")); n != 1 {
				t.Errorf("resumptions{resumed} = %v", n)
			}
			if n := counterValue(f.m.lost); n != 1 {
				t.Errorf("streams lost = %v", n)
			}

			// A gap longer than the window: a disconnection, then a fresh login.
			proxy.RefuseNew(true)
			proxy.CutAll()
			eventually(t, "session.disconnected", func() bool { return strings.Contains(bus.String(), "disconnected:") })
			if err := bus.lastErr(); !errors.Is(err, session.ErrResumptionFailed) {
				t.Errorf("disconnected with %v, want ErrResumptionFailed", err)
			}
			if _, err := f.m.Session("carol"); !errors.Is(err, core.ErrNotConnected) {
				t.Errorf("Session during the gap: %v", err)
			}
			proxy.RefuseNew(false)
			eventually(t, "a fresh session.connected", func() bool { return strings.Count(bus.String(), "connected:") == 3 })
			// The bus point fires before the plugins' ProfileConnected hooks run.
			eventually(t, "the fresh connected hooks", func() bool { return strings.Count(f.hooks.String(), "connected:carol") == 3 })
			if got := f.hooks.String(); got != "connecting:carol connected:carol disconnected:carol connecting:carol connected:carol" {
				t.Errorf("plugin hooks %q", got)
			}
			if n := counterValue(f.m.resumptions.With("failed")); n != 1 {
				t.Errorf("resumptions{failed} = %v", n)
			}
		})
	}
}

type stateLog struct {
	names []string
	jids  map[string]string
}

// stateEvents reads the session.state events until one with state last.
func stateEvents(t *testing.T, sub *core.Subscription, last string) stateLog {
	t.Helper()
	out := stateLog{jids: map[string]string{}}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-sub.C:
			m := ev.GetSessionState()
			if m == nil {
				continue
			}
			st := m.GetState()
			out.names = append(out.names, st)
			if m.Jid != nil {
				out.jids[st] = m.GetJid()
			}
			if st == last {
				return out
			}
		case <-timeout:
			t.Fatalf("no session.state %q: %v", last, out.names)
		}
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
