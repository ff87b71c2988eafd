package xep0060

import (
	"context"
	"sync"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/plugins/xep0060/wire"
)

// notification is one parsed pubsub <event/> waiting for its profile's
// worker.
type notification struct {
	profile string
	service string
	items   []wire.Notification
}

// router hands notifications from the receive goroutines (which must not
// block) to one worker per profile, which keeps their arrival order, fetches
// header-only items and fires the bus events (bridged to the API by
// eventBindings). mu guards queues, each queue's fields and stopped.
type router struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	queues  map[string]*queue
	stopped bool
}

type queue struct {
	pending []notification
	wake    chan struct{}
	// enqueued and handled count the profile's notifications queued and
	// handled (their bus events fired); progress is closed, and replaced,
	// each time one is handled (settled waits on it).
	enqueued, handled uint64
	progress          chan struct{}
}

func newRouter(c *Client) *router {
	ctx, cancel := context.WithCancel(context.Background())
	return &router{c: c, ctx: ctx, cancel: cancel, queues: map[string]*queue{}}
}

// message is the session.message observer: it parses pubsub events and
// queues them, never blocking.
func (r *router) message(profile string, msg *stanza.Message) {
	if msg == nil || msg.Type == stanza.MessageTypeError {
		return
	}
	for _, ext := range msg.Extensions {
		ev, ok := ext.(*wire.Event)
		if !ok {
			continue
		}
		ns, err := wire.ParseEvent(ev.Inner)
		if err != nil {
			r.c.log.Warn("unreadable pubsub event", "profile", profile, "from", msg.From, "err", err)
			continue
		}
		if len(ns) > 0 {
			r.enqueue(notification{profile: profile, service: canonicalFrom(msg.From), items: ns})
		}
	}
}

func (r *router) enqueue(n notification) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	q := r.queues[n.profile]
	if q == nil {
		q = &queue{wake: make(chan struct{}, 1), progress: make(chan struct{})}
		r.queues[n.profile] = q
		r.wg.Add(1)
		go r.work(n.profile, q)
	}
	q.pending = append(q.pending, n)
	q.enqueued++
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (r *router) work(profile string, q *queue) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-q.wake:
		}
		for {
			r.mu.Lock()
			if len(q.pending) == 0 {
				r.mu.Unlock()
				break
			}
			n := q.pending[0]
			q.pending[0] = notification{}
			q.pending = q.pending[1:]
			r.mu.Unlock()
			r.handle(n)
			r.mu.Lock()
			q.handled++
			close(q.progress)
			q.progress = make(chan struct{})
			r.mu.Unlock()
			if r.ctx.Err() != nil {
				return
			}
		}
	}
}

// settled waits until every notification of profile queued so far was
// handled (not the ones queued meanwhile). Notifications are queued by
// the receive goroutine as their stanzas arrive, before any later stanza
// of the stream (an IQ answer) is handed over: once an answer is in hand,
// settled returns after the bus events of every notification the
// service sent before it. It must not be called from a bus handler of
// the notifications (the worker would wait for itself).
func (r *router) settled(ctx context.Context, profile string) error {
	r.mu.Lock()
	q := r.queues[profile]
	if q == nil {
		r.mu.Unlock()
		return nil
	}
	target := q.enqueued
	for q.handled < target {
		ch := q.progress
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
	return nil
}

// stop ends the workers; queued notifications are dropped.
func (r *router) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// handle routes one <event/>.
func (r *router) handle(n notification) {
	ctx := r.ctx
	c := r.c
	for _, e := range n.items {
		switch e.Kind {
		case wire.EventItems:
			notifyBus(ctx, c, EventItems, r.items(ctx, n, e))
		case wire.EventPurge:
			notifyBus(ctx, c, EventPurge, &NodeEvent{Profile: n.profile, Service: n.service, Node: e.Node})
		case wire.EventDelete:
			notifyBus(ctx, c, EventDelete, &NodeEvent{Profile: n.profile, Service: n.service, Node: e.Node, Redirect: e.Redirect})
		case wire.EventConfiguration:
			notifyBus(ctx, c, EventConfiguration, &ConfigurationEvent{Profile: n.profile, Service: n.service, Node: e.Node, Fields: e.Config})
		case wire.EventSubscription:
			notifyBus(ctx, c, EventSubscription, &SubscriptionEvent{Profile: n.profile, Service: n.service, Subscription: *e.Subscription})
		}
	}
}

// items builds the items event of one <items/>, fetching header-only items
// by id (one request for all of them).
func (r *router) items(ctx context.Context, n notification, e wire.Notification) *ItemsEvent {
	ev := &ItemsEvent{Profile: n.profile, Service: n.service, Node: e.Node, Retracted: e.Retracted, Items: make([]wire.Item, 0, len(e.Items))}
	var missing []string
	for _, it := range e.Items {
		if it.HeaderOnly && it.ID != "" {
			missing = append(missing, it.ID)
		}
	}
	fetched := map[string]wire.Item{}
	if len(missing) > 0 {
		page, err := r.c.FetchItems(ctx, &ItemsRequest{Profile: n.profile, Service: n.service, Node: e.Node, ItemIDs: missing})
		if err != nil {
			r.c.log.Warn("fetch of notified items failed", "profile", n.profile, "service", n.service, "node", e.Node, "ids", missing, "err", err)
		} else {
			for _, it := range page.Items {
				fetched[it.ID] = it
			}
		}
	}
	for _, it := range e.Items {
		if !it.HeaderOnly {
			ev.Items = append(ev.Items, it.Item)
			continue
		}
		if full, ok := fetched[it.ID]; ok {
			ev.Items = append(ev.Items, full)
		} else {
			ev.Missing = append(ev.Missing, it.ID)
		}
	}
	return ev
}
