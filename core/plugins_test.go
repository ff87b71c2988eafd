package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/triggers"
	"example.org/backend/triggers/triggerstest"
)

// fake is a plugin recording its lifecycle calls into a shared log.
type fake struct {
	info       PluginInfo
	log        *callLog
	initErr    error
	connectErr error
	point      *triggers.Point[string, string]
	panicOn    string
}

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) { l.mu.Lock(); l.calls = append(l.calls, s); l.mu.Unlock() }
func (l *callLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.calls, " ")
}

func (f *fake) Info() PluginInfo { return f.info }
func (f *fake) Init(ctx context.Context, h *Host) error {
	f.log.add("init:" + f.info.ImportName)
	return f.initErr
}
func (f *fake) Bindings() []triggers.Binding {
	if f.point == nil {
		return nil
	}
	return []triggers.Binding{triggers.Intercept(f.point, triggers.PriorityDefault, func(ctx context.Context, req string) (triggers.Decision[string], error) {
		f.log.add("handle:" + f.info.ImportName)
		return triggers.Continue[string](), nil
	})}
}
func (f *fake) ProfileConnecting(ctx context.Context, p ProfileRef) error {
	f.log.add("connecting:" + f.info.ImportName)
	return f.connectErr
}
func (f *fake) ProfileConnected(ctx context.Context, p ProfileRef) error {
	if f.panicOn == "connected" {
		panic("boom")
	}
	f.log.add("connected:" + f.info.ImportName)
	return nil
}
func (f *fake) ProfileDisconnected(ctx context.Context, p ProfileRef) error {
	f.log.add("disconnected:" + f.info.ImportName)
	return nil
}
func (f *fake) Close(ctx context.Context) error {
	f.log.add("close:" + f.info.ImportName)
	return nil
}

func newFake(l *callLog, name string, deps ...string) *fake {
	return &fake{info: PluginInfo{Name: name, ImportName: name, Version: "1", Dependencies: deps}, log: l}
}

func testHost() *Host { return NewHost(slog.New(slog.NewTextHandler(io.Discard, nil)), "test") }

func TestStartOrderAndClose(t *testing.T) {
	l := &callLog{}
	// Listed out of dependency order: cache needs pubsub, pubsub needs xmpp.
	cache := newFake(l, "cache", "pubsub")
	pubsub := newFake(l, "pubsub", "xmpp")
	xmpp := newFake(l, "xmpp")
	other := newFake(l, "other")
	ps := NewPlugins(testHost(), cache, other, pubsub, xmpp)
	if err := ps.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "init:xmpp init:pubsub init:cache init:other"; got != want {
		t.Errorf("init order = %q, want %q", got, want)
	}
	l.calls = nil
	ref := ProfileRef{Name: "alice", JID: "alice@example.org"}
	if err := ps.ProfileConnecting(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "connecting:xmpp connecting:pubsub connecting:cache connecting:other"; got != want {
		t.Errorf("connecting order = %q, want %q", got, want)
	}
	l.calls = nil
	if err := ps.ProfileConnected(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if n := len(l.calls); n != 4 {
		t.Errorf("connected ran %d hooks, want 4: %v", n, l)
	}
	l.calls = nil
	ps.ProfileDisconnected(context.Background(), ref)
	if got, want := l.String(), "disconnected:other disconnected:cache disconnected:pubsub disconnected:xmpp"; got != want {
		t.Errorf("disconnected order = %q, want %q", got, want)
	}
	l.calls = nil
	if err := ps.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "close:other close:cache close:pubsub close:xmpp"; got != want {
		t.Errorf("close order = %q, want %q", got, want)
	}
}

func TestProfileConnectingStopsAtError(t *testing.T) {
	l := &callLog{}
	a, b, c := newFake(l, "a"), newFake(l, "b"), newFake(l, "c")
	b.connectErr = errors.New("no")
	ps := NewPlugins(testHost(), a, b, c)
	ps.Start(context.Background())
	l.calls = nil
	err := ps.ProfileConnecting(context.Background(), ProfileRef{Name: "p"})
	if err == nil || !strings.Contains(err.Error(), "plugin b") {
		t.Fatalf("err = %v, want one naming plugin b", err)
	}
	if got := l.String(); got != "connecting:a connecting:b" {
		t.Errorf("calls = %q", got)
	}
}

func TestProfileConnectedParallelAndPanic(t *testing.T) {
	l := &callLog{}
	a, b := newFake(l, "a"), newFake(l, "b")
	b.panicOn = "connected"
	ps := NewPlugins(testHost(), a, b)
	ps.Start(context.Background())
	err := ps.ProfileConnected(context.Background(), ProfileRef{Name: "p"})
	if err == nil || !strings.Contains(err.Error(), "plugin b") || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("err = %v, want the panic of plugin b", err)
	}
	if !strings.Contains(l.String(), "connected:a") {
		t.Errorf("plugin a's hook did not run: %v", l)
	}
}

type blocking struct {
	*fake
	started chan struct{}
	release chan struct{}
}

func (b *blocking) ProfileConnected(ctx context.Context, p ProfileRef) error {
	b.started <- struct{}{}
	<-b.release
	return nil
}

// Connected hooks run concurrently: two hooks that each wait for the other to
// have started would deadlock if run one after the other.
func TestProfileConnectedRunsConcurrently(t *testing.T) {
	l := &callLog{}
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	x := &blocking{newFake(l, "x"), started, release}
	y := &blocking{newFake(l, "y"), started, release}
	ps := NewPlugins(testHost(), x, y)
	ps.Start(context.Background())
	done := make(chan error)
	go func() { done <- ps.ProfileConnected(context.Background(), ProfileRef{Name: "p"}) }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("connected hooks did not start concurrently")
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOrderErrors(t *testing.T) {
	l := &callLog{}
	cases := []struct {
		name    string
		plugins []Plugin
		want    []string
		is      error
	}{
		{"missing", []Plugin{newFake(l, "a", "nothere")}, []string{`"a" needs "nothere"`}, ErrMissingDependency},
		{"cycle", []Plugin{newFake(l, "a", "b"), newFake(l, "b", "c"), newFake(l, "c", "a")}, []string{"a → b → c → a"}, ErrDependencyCycle},
		{"self", []Plugin{newFake(l, "a", "a")}, []string{"a → a"}, ErrDependencyCycle},
		{"duplicate", []Plugin{newFake(l, "a"), newFake(l, "a")}, []string{`"a"`}, ErrDuplicatePlugin},
		{"bad name", []Plugin{newFake(l, "Bad Name")}, []string{"invalid import name"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Order(nil, c.plugins)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, not %v", err, c.is)
			}
		})
	}
}

type logBuf struct {
	mu sync.Mutex
	strings.Builder
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Builder.Write(p)
}

func TestMissingRecommendationWarns(t *testing.T) {
	var buf logBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := &callLog{}
	a := newFake(l, "a")
	a.info.Recommendations = []string{"absent", "b"}
	b := newFake(l, "b")
	order, err := Order(log, []Plugin{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if order[0] != Plugin(b) {
		t.Errorf("a present recommendation must start first")
	}
	if !strings.Contains(buf.String(), "recommended plugin missing") || !strings.Contains(buf.String(), "recommends=absent") {
		t.Errorf("no warning: %q", buf.String())
	}
}

var lifecyclePoint = triggers.NewPoint[string, string]("test.core.lifecycle", "test point")

func TestBindingsAttachedAndRemoved(t *testing.T) {
	l := &callLog{}
	a, b := newFake(l, "a"), newFake(l, "b", "a")
	a.point, b.point = lifecyclePoint, lifecyclePoint
	h := testHost()
	ps := NewPlugins(h, a, b)
	if err := ps.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ := h.Bus.Chain(lifecyclePoint.ID())
	if got := fmt.Sprint(owners(c)); got != "[a b]" {
		t.Errorf("chain = %s", got)
	}
	l.calls = nil
	triggers.Run(context.Background(), h.Bus, lifecyclePoint, "x")
	if got := l.String(); got != "handle:a handle:b" {
		t.Errorf("dispatch = %q", got)
	}
	ps.Close(context.Background())
	c, _ = h.Bus.Chain(lifecyclePoint.ID())
	if len(c.Handlers) != 0 {
		t.Errorf("bindings left after close: %v", owners(c))
	}
}

func TestInitFailureClosesStarted(t *testing.T) {
	l := &callLog{}
	a, b, c := newFake(l, "a"), newFake(l, "b"), newFake(l, "c")
	a.point = lifecyclePoint
	b.initErr = errors.New("broken")
	h := testHost()
	ps := NewPlugins(h, a, b, c)
	err := ps.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "init plugin b: broken") {
		t.Fatalf("err = %v", err)
	}
	if got := l.String(); got != "init:a init:b close:a" {
		t.Errorf("calls = %q", got)
	}
	ch, _ := h.Bus.Chain(lifecyclePoint.ID())
	if len(ch.Handlers) != 0 {
		t.Errorf("bindings of a left after failed start")
	}
}

func owners(c triggers.ChainInfo) []string {
	var out []string
	for _, h := range c.Handlers {
		out = append(out, h.Owner)
	}
	return out
}

func TestAPIRegistryRefusesDuplicate(t *testing.T) {
	var r APIRegistry
	if err := r.Register("a", "/x.v1.S/", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("b", "/x.v1.S/", nil); err == nil || !strings.Contains(err.Error(), "already registered by a") {
		t.Fatalf("err = %v", err)
	}
}

// keyed is an API event told apart by its key.
func keyed(profile, key string) *backendv2.Event {
	return &backendv2.Event{Profile: profile, Event: &backendv2.Event_ParamChanged{ParamChanged: &backendv2.ParamChangedEvent{Key: key}}}
}

func TestEventsFilterAndLag(t *testing.T) {
	e := NewEvents()
	all := e.Subscribe("")
	alice := e.Subscribe("alice")
	e.Publish(keyed("bob", "x"))
	e.Publish(keyed("alice", "y"))
	e.Publish(keyed("", "z"))
	if got := drain(all, 3); got != "x y z" {
		t.Errorf("all = %q", got)
	}
	if got := drain(alice, 2); got != "y z" {
		t.Errorf("alice = %q", got)
	}
	for range subscriptionBuffer + 1 {
		e.Publish(keyed("", "flood"))
	}
	if !all.Lagged() {
		t.Error("a subscriber that fell behind was not dropped")
	}
	alice.Close()
	alice.Close()
}

// TestBridge: a bus event reaches the API stream only through its bridge,
// encoded once per notification (none, one or several API events), timed,
// after the other observers.
func TestBridge(t *testing.T) {
	type change struct{ profile, keys string }
	ev := triggers.NewEvent[change](triggerstest.UniqueID("test.bridge"), "test")
	bus := triggers.New()
	e := NewEvents()
	sub := e.Subscribe("")
	var order []string
	if _, err := bus.Attach("api", Bridge(e, ev, func(c change) []*backendv2.Event {
		order = append(order, "bridge")
		var out []*backendv2.Event
		for _, k := range strings.Fields(c.keys) {
			out = append(out, keyed(c.profile, k))
		}
		return out
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Attach("plugin", triggers.Observe(ev, triggers.PriorityDefault, func(context.Context, change) error {
		order = append(order, "plugin")
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	for _, keys := range []string{"a b", "", "c"} {
		if err := triggers.Notify(context.Background(), bus, ev, change{"alice", keys}); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(sub, 3); got != "a b c" {
		t.Errorf("events = %q", got)
	}
	select {
	case x := <-sub.C:
		t.Errorf("extra event %v", x)
	default:
	}
	if strings.Join(order[:2], " ") != "plugin bridge" {
		t.Errorf("order = %v: the bridge must run last", order)
	}
}

func drain(s *Subscription, n int) string {
	var out []string
	for range n {
		ev := <-s.C
		if ev.GetTime() == nil {
			return "untimed event"
		}
		out = append(out, ev.GetParamChanged().GetKey())
	}
	return strings.Join(out, " ")
}

func TestCountersSnapshot(t *testing.T) {
	c := NewCounters(nil)
	c.Get(CounterPubsubItemsRequests).Add(2)
	s := c.Snapshot()
	if s[CounterPubsubItemsRequests] != 2 || s[CounterIQSent] != 0 {
		t.Errorf("snapshot = %v", s)
	}
}
