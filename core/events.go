package core

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/triggers"
)

// Events fans the typed events of the API's event stream (`backend
// events`, backend.v2.Event) out to subscribers (API streams). Events come
// from the bus only: the owner of an observer point bridges it to the API
// with an encoder (see Bridge), so a notification is published once, typed,
// and the API sees what plugins see. A subscriber that does not keep up is
// dropped with [Subscription.Lagged] set rather than slowing the daemon
// down; it can subscribe again.
//
// Events owns its subscriber set (under mu); a published event is shared
// by every subscriber and must not be modified once published.
type Events struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription receives events on C until Close or until it lags.
type Subscription struct {
	C       <-chan *backendv2.Event
	c       chan *backendv2.Event
	profile string
	ev      *Events
	lagged  bool
	closed  bool
}

// NewEvents returns an empty broker.
func NewEvents() *Events { return &Events{subs: map[*Subscription]struct{}{}} }

// subscriptionBuffer is how many events a subscriber may fall behind.
const subscriptionBuffer = 1024

// Subscribe returns a subscription to every event, or only to the events of
// profile (plus daemon-wide ones) when profile is not empty.
func (e *Events) Subscribe(profile string) *Subscription {
	c := make(chan *backendv2.Event, subscriptionBuffer)
	s := &Subscription{C: c, c: c, profile: profile, ev: e}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	return s
}

// Publish sends ev to every matching subscriber without blocking; its Time
// is set to now when unset. Publishers are the bridges of Bridge.
func (e *Events) Publish(ev *backendv2.Event) {
	if ev == nil {
		return
	}
	if ev.Time == nil {
		ev.Time = timestamppb.New(time.Now())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		if s.profile != "" && ev.Profile != "" && ev.Profile != s.profile {
			continue
		}
		select {
		case s.c <- ev:
		default:
			s.lagged = true
			s.closeLocked()
		}
	}
}

// Close ends the subscription; C is closed.
func (s *Subscription) Close() {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	delete(s.ev.subs, s)
	close(s.c)
}

// Lagged reports whether the subscription was dropped for falling behind.
func (s *Subscription) Lagged() bool {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return s.lagged
}

// Bridge returns the binding (an observer of e, run last) that encodes each
// notification of e with encode and publishes what it returns on events:
// nothing, one or several API events (the profile and the kind set; the
// time is set on publication). The owner of e declares it among its
// bindings; encode must be quick and must not block.
func Bridge[Req any](events *Events, e *triggers.Event[Req], encode func(Req) []*backendv2.Event) triggers.Binding {
	return triggers.Observe(e, triggers.PriorityLast, func(_ context.Context, req Req) error {
		for _, ev := range encode(req) {
			events.Publish(ev)
		}
		return nil
	})
}
