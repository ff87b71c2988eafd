package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errDetached tells a writer that its connection no longer carries the
// binding: it tries again on the binding (which may have a newer
// connection, or queue the stanza for resumption).
var errDetached = errors.New("connection detached from its binding")

// binding is one resource binding on the server (RFC 6120 §7): the bound
// full JID and, with stream management (XEP-0198), its counters and the
// stanzas not yet acknowledged (sm). A binding outlives the connection
// that made it when a later connection resumes it; a fresh login makes a
// new one. Waiting IQs, incoming IQ handlers and Handlers.Connected live
// as long as the binding, not the connection.
//
// The Session owns its bindings: only the supervisor (and Start) create,
// attach, detach and end them. mu guards conn, sm and endpoint, which the
// receive loop, the writers and the supervisor share; the lock order is
// conn.wsem, then mu, and mu is never held across I/O. presenceVer is
// guarded by Session.presMu.
type binding struct {
	s   *Session
	jid string // the bound full JID

	ctx     context.Context // ends with the binding
	cancel  context.CancelFunc
	ended   chan struct{} // closed when the binding has ended for good
	endOnce sync.Once

	iqSem chan struct{}  // bounds incoming IQ handlers
	wg    sync.WaitGroup // incoming IQ handlers

	mu       sync.Mutex
	conn     *conn    // the connection carrying the binding; nil between connections
	sm       *smState // nil without stream management
	endpoint Endpoint // of the last connection

	presenceVer string // caps ver of the last presence sent (Session.presMu)
}

func newBinding(s *Session, jid string, sm *smState) *binding {
	ctx, cancel := context.WithCancel(context.Background())
	return &binding{s: s, jid: jid, ctx: ctx, cancel: cancel, ended: make(chan struct{}),
		iqSem: make(chan struct{}, maxConcurrentIQ), sm: sm}
}

// isEnded reports whether the binding has ended.
func (b *binding) isEnded() bool {
	select {
	case <-b.ended:
		return true
	default:
		return false
	}
}

// resumable reports whether the binding may be resumed after a lost
// connection: stream management with resumption, not ended.
func (b *binding) resumable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resumableLocked()
}

func (b *binding) resumableLocked() bool {
	return b.sm != nil && b.sm.id != "" && !b.isEnded()
}

// attach makes c the binding's connection.
func (b *binding) attach(c *conn) {
	b.mu.Lock()
	b.conn, b.endpoint = c, c.info.Endpoint
	b.mu.Unlock()
}

// detach forgets c if it carries the binding.
func (b *binding) detach(c *conn) {
	b.mu.Lock()
	if b.conn == c {
		b.conn = nil
	}
	b.mu.Unlock()
}

// finish ends the binding for good without reporting it: waiting IQs
// fail with ErrDisconnected, IQ handlers see their context end (and are
// waited for), stanzas still unacknowledged are dropped (their number is
// returned).
func (b *binding) finish() (dropped int) {
	b.endOnce.Do(func() {
		b.mu.Lock()
		b.conn = nil
		if b.sm != nil {
			dropped = len(b.sm.queue)
			b.sm.queue, b.sm.queueBytes = nil, 0
			if b.sm.room != nil {
				close(b.sm.room)
				b.sm.room = nil
			}
		}
		b.mu.Unlock()
		close(b.ended)
		b.cancel()
		b.wg.Wait()
	})
	return dropped
}

// send writes one stanza (message, presence or iq) of the binding: on its
// connection, counted and queued until acknowledged under stream
// management. Between a lost connection and its resumption the stanza is
// only queued, and goes out when the binding is resumed; a write that
// fails on a resumable binding is resent the same way (nil is returned:
// the stanza is on its way). Without a connection and without resumption,
// ErrDisconnected.
func (b *binding) send(ctx context.Context, data []byte) error {
	for {
		b.mu.Lock()
		c := b.conn
		if c == nil || c.ctx.Err() != nil {
			err := b.queueLocked(data)
			b.mu.Unlock()
			return err
		}
		b.mu.Unlock()
		queued, err := c.writeStanza(ctx, data)
		switch {
		case errors.Is(err, errDetached):
			continue
		case err != nil && queued && b.resumable():
			return nil
		}
		return err
	}
}

// queueLocked queues a stanza for the resumption of the binding (b.mu
// held; no connection carries it now).
func (b *binding) queueLocked(data []byte) error {
	if !b.resumableLocked() {
		return ErrDisconnected
	}
	if b.sm.full(len(data)) {
		return fmt.Errorf("%w (and %d stanzas already wait for the stream's resumption)", ErrDisconnected, len(b.sm.queue))
	}
	b.sm.push(data)
	return nil
}

// resumeRequest is what a connection attempt needs to resume the binding,
// nil when it cannot be resumed.
func (b *binding) resumeRequest() *resumeRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.resumableLocked() {
		return nil
	}
	r := &resumeRequest{id: b.sm.id, h: b.sm.in, previous: b.endpoint}
	if b.s.cfg.configured == nil {
		// The configured endpoint is the only one the user wants; a
		// discovered one gives way to the server's preference.
		if ep, ok := locationEndpoint(b.sm.location, b.endpoint); ok {
			r.prefer = append(r.prefer, ep)
		}
		if b.endpoint.Host != "" {
			r.prefer = append(r.prefer, b.endpoint)
		}
	}
	return r
}

// window is how long the server keeps the binding after a loss.
func (b *binding) window() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sm == nil {
		return 0
	}
	return b.sm.window
}

// resumeRequest asks a connection attempt to resume a binding.
type resumeRequest struct {
	id string
	h  uint32 // stanzas received on the binding
	// prefer are tried before the configured or discovered endpoints: the
	// server's <enabled location/>, then the last connection's endpoint.
	prefer   []Endpoint
	previous Endpoint
	// beforeFresh runs when the server refuses the resumption, before a
	// fresh binding on the same stream (the Connecting hook).
	beforeFresh func(ctx context.Context) error
}
