package core

import (
	"sync"
	"time"
)

// Event is one item of the API's event stream (`backend events`).
type Event struct {
	// Type is e.g. "pubsub.items", "session.state", "cache.sync", "param.changed".
	Type string
	// Profile is the profile concerned, "" for daemon-wide events.
	Profile string
	Time    time.Time
	// Data holds the event's own fields (snake_case keys, JSON-encodable).
	Data map[string]any
}

// Events fans events out to subscribers (API streams). A subscriber that
// does not keep up is dropped with [Subscription.Lagged] set rather than
// slowing the daemon down; it can subscribe again.
type Events struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription receives events on C until Close or until it lags.
type Subscription struct {
	C       <-chan Event
	c       chan Event
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
	c := make(chan Event, subscriptionBuffer)
	s := &Subscription{C: c, c: c, profile: profile, ev: e}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	return s
}

// Publish sends ev to every matching subscriber without blocking.
func (e *Events) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
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
